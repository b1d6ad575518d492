import { execFileSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { graph, model, node, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { createInferenceHandler } from '../../functions/inference/app.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

// The V2 codec's exactness through the inference handler and a real onnxruntime session: a model
// that hands every input back (identity), so what comes out is what the codec let in.
let emulators: Emulators;
let handler: ReturnType<typeof createInferenceHandler>;

/** Identity for INT64, UINT64, FP32, FP64 and BYTES; FP32 cast to FP16 for an FP16 output. */
function identityModel(): Uint8Array {
  const kinds = [['i64', 'int64'], ['u64', 'uint64'], ['f32', 'float32'], ['f64', 'float64'], ['s', 'string']] as const;
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      graph: graph({
        name: 'identity',
        nodes: [...kinds.map(([name]) => node('Identity', [name], [`${name}_out`])), node('Cast', ['f32'], ['h_out'], { to: { type: 'int', value: 10 } })],
        inputs: kinds.map(([name, type]) => valueInfo(name, type, ['n'])),
        outputs: [...kinds.map(([name, type]) => valueInfo(`${name}_out`, type, ['n'])), valueInfo('h_out', 'float16', ['n'])],
      }),
    }),
  );
}

function infer(body: string | Buffer, headers: Record<string, string> = {}) {
  const binary = Buffer.isBuffer(body);
  return handler({
    version: '2.0',
    routeKey: '$default',
    rawPath: '/v2/models/identity/infer',
    rawQueryString: '',
    headers,
    requestContext: { http: { method: 'POST', path: '/v2/models/identity/infer' } },
    body: binary ? body.toString('base64') : body,
    isBase64Encoded: binary,
  } as unknown as APIGatewayProxyEventV2);
}

/** A request for the identity model with every input given as JSON text; `n` elements each. */
function request(data: { i64: string; u64: string; f32: string; f64: string; s: string }, n: number, outputs = ',"outputs":[{"name":"i64_out"},{"name":"u64_out"},{"name":"f32_out"},{"name":"f64_out"},{"name":"s_out"},{"name":"h_out"}]') {
  const input = (name: string, datatype: string, values: string) => `{"name":"${name}","datatype":"${datatype}","shape":[${n}],"data":${values}}`;
  return `{"inputs":[${input('i64', 'INT64', data.i64)},${input('u64', 'UINT64', data.u64)},${input('f32', 'FP32', data.f32)},${input('f64', 'FP64', data.f64)},${input('s', 'BYTES', data.s)}]${outputs}}`;
}

const ones = { i64: '[1,1,1]', u64: '[1,1,1]', f32: '[1,1,1]', f64: '[1,1,1]', s: '["a","b","c"]' };

beforeAll(async () => {
  emulators = await startEmulators();
  const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
  await s3.send(new CreateBucketCommand({ Bucket: 'exact-test' }));
  const store = new ModelRepository({ s3, bucket: 'exact-test', cacheDir: await mkdtemp(join(tmpdir(), 'exact-test-')) });
  const bytes = identityModel();
  await checkOnnxModel(bytes);
  await pushModel(store, { name: 'identity', version: '1', bytes });
  const sessions = new ModelSessions({ store, intraOpThreads: 1 });
  const service = new InferenceService({ store, sessions, serviceVersion: 'test' });
  const { logger, metrics } = createObservability('ai-mass-test');
  logger.setLogLevel('SILENT');
  handler = createInferenceHandler({ service, maxBodyBytes: 6 * 1024 * 1024, logger, metrics });
});

afterAll(async () => {
  await emulators?.stop();
});

describe('exact values through the inference handler and onnxruntime', () => {
  const extremes = request(
    {
      i64: '[9223372036854775807,-9223372036854775808,9007199254740993]',
      u64: '[18446744073709551615,9007199254740993,0]',
      f32: '[NaN,-Infinity,0.1]',
      f64: '[Infinity,-0.0,0.1]',
      s: '["wörld","𝄞",""]',
    },
    3,
  );

  it('answers 64-bit integers, NaN/Infinity, -0, shortest FP32 and FP16 and UTF-8 text exactly as sent', async () => {
    const response = await infer(extremes);
    expect(response.statusCode).toBe(200);
    expect(response.body).toBe(
      '{"model_name":"identity","model_version":"1","outputs":[' +
        '{"name":"i64_out","datatype":"INT64","shape":[3],"data":[9223372036854775807,-9223372036854775808,9007199254740993]},' +
        '{"name":"u64_out","datatype":"UINT64","shape":[3],"data":[18446744073709551615,9007199254740993,0]},' +
        '{"name":"f32_out","datatype":"FP32","shape":[3],"data":[NaN,-Infinity,0.1]},' +
        '{"name":"f64_out","datatype":"FP64","shape":[3],"data":[Infinity,-0.0,0.1]},' +
        '{"name":"s_out","datatype":"BYTES","shape":[3],"data":["wörld","𝄞",""]},' +
        '{"name":"h_out","datatype":"FP16","shape":[3],"data":[NaN,-Infinity,0.1]}]}',
    );
  });

  it("gives Python's json module the same values", async () => {
    const response = await infer(extremes);
    let printed: string;
    try {
      printed = execFileSync('python3', ['-c', 'import json, sys; print([[repr(v) for v in o["data"]] for o in json.load(sys.stdin)["outputs"]])'], {
        input: response.body,
        encoding: 'utf8',
      }).trim();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // no python3 on this machine
      throw error;
    }
    expect(printed).toBe(
      "[['9223372036854775807', '-9223372036854775808', '9007199254740993'], ['18446744073709551615', '9007199254740993', '0'], " +
        "['nan', '-inf', '0.1'], ['inf', '-0.0', '0.1'], [\"'wörld'\", \"'𝄞'\", \"''\"], ['nan', '-inf', '0.1']]",
    );
  });

  it('reads an empty outputs list as every output', async () => {
    const response = await infer(request(ones, 3, ',"outputs":[]'));
    expect(response.statusCode).toBe(200);
    expect(JSON.parse(response.body!).outputs.map((o: { name: string }) => o.name).sort()).toEqual(['f32_out', 'f64_out', 'h_out', 'i64_out', 's_out', 'u64_out']);
  });

  it.each([
    ['an FP64 literal beyond its range', { ...ones, f64: '[1,1e400,1]' }, 3, "input 'f64': element 1 is 1e400, beyond the range of FP64 (largest finite value 1.7976931348623157e+308); NaN, Infinity and -Infinity are accepted as bare tokens"],
    ['an FP32 value beyond float32', { ...ones, f32: '[1,1,3.5e38]' }, 3, "input 'f32': element 2 is 3.5e+38, beyond the range of FP32 (largest finite value 3.4028234663852886e+38); NaN, Infinity and -Infinity are accepted as bare tokens"],
    ['a UINT64 beyond 2^64-1', { ...ones, u64: '[18446744073709551616,1,1]' }, 3, "input 'u64': element 0 is 18446744073709551616, expected an integer in [0, 18446744073709551615] for UINT64"],
    ['a non-integer INT64', { ...ones, i64: '[1,9007199254740993.5,1]' }, 3, "input 'i64': element 1 is 9007199254740993.5, expected an integer for INT64"],
    ['NaN for an integer', { ...ones, i64: '[1,1,NaN]' }, 3, "input 'i64': element 2 is NaN, expected an integer for INT64"],
    ['ragged nesting', { ...ones, f32: '[[1,1],[1]]' }, 3, "input 'f32': data has 2 elements where shape [3] needs 3"],
    ['nesting deeper than the shape', { ...ones, f32: `[${'['.repeat(60_000)}${']'.repeat(60_000)},1,1]` }, 3, "input 'f32': data[0] is an array, deeper than shape [3] allows"],
    ['a lone surrogate in BYTES', { ...ones, s: '["a","\\udc00","c"]' }, 3, "input 's': BYTES element 1 holds a lone UTF-16 surrogate, which has no UTF-8 form"],
  ])('refuses %s with a 400 naming the input and element', async (_case, data, n, message) => {
    const response = await infer(request(data, n));
    expect([response.statusCode, JSON.parse(response.body!)]).toEqual([400, { error: message }]);
  });

  it('refuses a binary BYTES element that is not UTF-8 instead of altering it', async () => {
    const element = Buffer.from([0xc3, 0x28]);
    const chunk = Buffer.concat([Buffer.from([element.length, 0, 0, 0]), element]);
    const header = Buffer.from(request({ ...ones, s: '[]' }, 1).replace('"shape":[1],"data":[]', `"shape":[1],"parameters":{"binary_data_size":${chunk.length}}`).replace(/\[1,1,1\]/g, '[1]'));
    const response = await infer(Buffer.concat([header, chunk]), { 'inference-header-content-length': String(header.length) });
    expect([response.statusCode, JSON.parse(response.body!)]).toEqual([
      400,
      { error: "input 's': BYTES element 0 is not valid UTF-8; onnxruntime-node carries string tensors as text, so BYTES elements must be UTF-8" },
    ]);
  });
});
