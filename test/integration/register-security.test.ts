import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdtemp, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from '../../functions/core/onnx/ort.ts';
import { BadRequestError } from '../../functions/core/platform/errors.ts';
import { decodeModel } from '../../functions/core/onnx/model-proto.ts';
import { candidateFromBytes, examineCandidate, factsOf } from '../../functions/core/artifacts/candidate-session.ts';
import { registerUpload, rejectionKey } from '../../functions/core/registry/register-upload.ts';
import { functionAttributeDefaultModel, functionBodyModel, nestedSubgraphModel, sparseConstantModel, sparseInitializerModel } from '../helpers/hostile-models.ts';
import { startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';

/**
 * The attack of issue 15: a model whose tensor names a file by a relative path, which onnxruntime
 * reads from the working directory when the model comes as a buffer. Here the working directory
 * holds a canary file the hostile models point at; its access time is set in the past before each
 * test, so any read of it shows.
 */
const SECRET = 'CANARY-0123456789abcdef-CANARY-0';
const LONG_AGO = new Date('2020-01-01T00:00:00Z');

let stack: RegistryStack;
let canary: string;
let previousCwd: string;

beforeAll(async () => {
  stack = await startRegistryStack('register-security');
  const workdir = await mkdtemp(join(tmpdir(), 'register-cwd-'));
  canary = join(workdir, 'canary.bin');
  await writeFile(canary, SECRET);
  previousCwd = process.cwd();
  process.chdir(workdir);
});

afterAll(async () => {
  if (previousCwd) process.chdir(previousCwd);
  await stack?.stop();
});

beforeEach(async () => {
  await utimes(canary, LONG_AGO, new Date());
});

const canaryWasRead = async () => (await stat(canary)).atimeMs !== LONG_AGO.getTime();

/** Every object in the bucket, with its body as text. */
async function bucketContents(): Promise<Map<string, string>> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.store.bucket }));
  const contents = new Map<string, string>();
  for (const o of listed.Contents ?? []) contents.set(o.Key!, Buffer.from((await stack.store.getObjectBytes(o.Key!))!).toString('latin1'));
  return contents;
}

const HINT = 'uses external data; save the model with its weights inside the .onnx file (onnx.save(model, path, save_as_external_data=False)) and upload that';

/** Hostile models onnxruntime really runs, reading the canary, when nothing stops it. */
const READING = [
  ['a sparse initializer', sparseInitializerModel, {}, `sparse initializer "s" in graph main ${HINT}`],
  ['a sparse Constant', sparseConstantModel, {}, `attribute "sparse_value" of node "c" (Constant) in graph main ${HINT}`],
  ['a model-local function body', functionBodyModel, {}, `attribute "value" of node "fc" (Constant) in function "leak" ${HINT}`],
  ['a nested subgraph', nestedSubgraphModel, { cond: new ort.Tensor('bool', [true], []) }, `initializer "k" in graph main/outer.then_branch/inner.then_branch ${HINT}`],
] as const;

describe('a model cannot read a file of ours through external data', () => {
  it.each(READING)('%s: onnxruntime on its own reads the canary (the hostile model works)', async (_case, build, feeds) => {
    const session = await ort.InferenceSession.create(build('canary.bin'), { logSeverityLevel: 4 });
    const { y } = await session.run(feeds);
    await session.release();
    expect(Buffer.from((y!.data as Float32Array).buffer).toString('latin1')).toBe(SECRET.slice(0, 16));
    expect(await canaryWasRead()).toBe(true);
  });

  const refused: [string, (location: string) => Uint8Array, string][] = [
    ...READING.map(([name, build, , reason]): [string, (location: string) => Uint8Array, string] => [name, build, reason]),
    ['a function attribute default (a field our decoder drops)', functionAttributeDefaultModel, `the default of attribute "weights" in function "withdefault" ${HINT}`],
  ];
  it.each(refused)('%s: the upload is refused with where the tensor is, registers nothing, and the canary is never opened', async (_case, build, reason) => {
    const model = `hostile-${_case.toLowerCase().replace(/\W+/g, '-').slice(0, 40)}`;
    const key = `incoming/${model}/m.onnx`;
    await stack.s3.send(new PutObjectCommand({ Bucket: stack.store.bucket, Key: key, Body: build('canary.bin') }));
    const outcome = await registerUpload(stack.store, { bucket: stack.store.bucket, key });
    expect(outcome).toEqual({ status: 'rejected', reason, rejectionKey: rejectionKey(key) });
    const record = JSON.parse(Buffer.from((await stack.store.getObjectBytes(rejectionKey(key)))!).toString('utf8'));
    expect(record).toMatchObject({ upload: key, reason });
    expect(await canaryWasRead()).toBe(false);
    const contents = await bucketContents();
    expect([...contents.keys()].filter((k) => k.startsWith('models/'))).toEqual([]);
    expect([...contents.values()].some((body) => body.includes('CANARY'))).toBe(false);
    expect(await stack.store.listVersions(model)).toEqual([]);
    expect(await stack.store.registry!.allocateVersion(model)).toBe('1'); // the refused upload took no number
  });

  it.each(READING)('%s: past the check, onnxruntime finds no file of ours either (the second layer on its own)', async (_case, build) => {
    const bytes = build('canary.bin');
    const candidate = await candidateFromBytes(bytes);
    const failure = await examineCandidate(candidate, factsOf(decodeModel(bytes)), 'not-checked').finally(() => candidate.dispose()).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(BadRequestError);
    // Resolved inside the candidate's private folder, where nothing but the model is.
    expect((failure as Error).message).toMatch(
      /^onnxruntime cannot load the model: .*(External data path does not exist: "canary\.bin"|should be stored in canary\.bin, but it is not regular file\.)/s,
    );
    expect(await canaryWasRead()).toBe(false);
  });
});
