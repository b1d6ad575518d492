import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { gunzipSync, gzipSync, deflateSync } from 'node:zlib';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { float32ToFloat16Bits } from '../../functions/core/onnx/builder.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { decodeInferResponse, encodeInferRequest } from '../../functions/core/v2/codec.ts';
import { createInferenceHandler, RUNTIME_FAILURE_METRIC } from '../../functions/inference/app.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { registerTransportModels, TRANSPORT_MODELS } from '../helpers/transport-models.ts';
import { tritonclientRequest } from '../helpers/tritonclient.ts';

const ALTERED_TEXT =
  'the request body arrived as text with U+FFFD in it, the character that replaces bytes that are not UTF-8, so it may not be the bytes that were sent: ' +
  'send binary and compressed requests with Content-Type: application/octet-stream (or none), and write U+FFFD in a JSON string as \\ufffd';

// The inference handler in process, with the events API Gateway (HTTP API, payload 2.0) delivers:
// bodies of a non-text Content-Type (or none) base64-encoded, text types as a string.
let emulators: Emulators;
let store: ModelRepository;

interface EventOptions {
  headers?: Record<string, string>;
  /** How the gateway passed the body: base64 (binary) or as a string (text types). */
  as?: 'base64' | 'text';
}

function event(method: string, path: string, body?: Uint8Array | string, options: EventOptions = {}): APIGatewayProxyEventV2 {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body === undefined ? undefined : Buffer.from(body);
  const asText = options.as === 'text' || (options.as === undefined && typeof body === 'string');
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: '',
    headers: options.headers ?? {},
    requestContext: { http: { method, path } },
    ...(bytes !== undefined ? { body: asText ? bytes.toString('utf8') : bytes.toString('base64'), isBase64Encoded: !asText } : { isBase64Encoded: false }),
  } as unknown as APIGatewayProxyEventV2;
}

function handlerWith(preload: string[] = [], options: { requireWarmup?: boolean; maxBodyBytes?: number } = {}) {
  const sessions = new ModelSessions({ store, intraOpThreads: 1, requireWarmup: options.requireWarmup ?? true });
  const service = new InferenceService({ store, sessions, serviceVersion: 'test' });
  const { logger, metrics } = createObservability('ai-mass-test');
  logger.setLogLevel('SILENT');
  return { handler: createInferenceHandler({ service, maxBodyBytes: options.maxBodyBytes ?? 6 * 1024 * 1024, logger, metrics }), ready: service.preloadModels(preload) };
}

const bodyOf = (r: APIGatewayProxyStructuredResultV2) => (r.isBase64Encoded ? Buffer.from(r.body!, 'base64') : Buffer.from(r.body ?? ''));
const jsonOf = (r: APIGatewayProxyStructuredResultV2) => JSON.parse(bodyOf(r).toString('utf8'));
const statusAndJson = (r: APIGatewayProxyStructuredResultV2) => [r.statusCode, jsonOf(r)];

beforeAll(async () => {
  emulators = await startEmulators();
  const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
  await s3.send(new CreateBucketCommand({ Bucket: 'transport-test' }));
  store = new ModelRepository({ s3, bucket: 'transport-test', cacheDir: `${process.env.TMPDIR ?? '/tmp'}/ai-mass-transport-test` });
  await registerTransportModels(store);
});

afterAll(async () => {
  await emulators?.stop();
});

describe('the test models', () => {
  it('pass the ONNX checker', async () => {
    for (const bytes of Object.values(TRANSPORT_MODELS)) await checkOnnxModel(bytes);
  });
});

describe('binary bodies are bytes end to end', () => {
  const values = Float32Array.of(16.07077, -1.5, 3.25, 0.1);
  const doubled = Array.from(values, (v) => Math.fround(v * 2));

  it("answers tritonclient's own request bytes (no Content-Type) exactly, as the gateway passes them (base64)", async () => {
    const { handler } = handlerWith();
    const request = tritonclientRequest('x', [1, 4], 'FP32', Buffer.from(values.buffer));
    const response = await handler(event('POST', '/v2/models/double/infer', request.body, { headers: request.headers }));
    expect(response.statusCode).toBe(200);
    expect(response.headers!['inference-header-content-length']).toBeDefined();
    const decoded = decodeInferResponse(bodyOf(response), Number(response.headers!['inference-header-content-length']));
    expect(decoded.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([['y', 'FP32', [1, 4]]]);
    expect(Array.from(decoded.outputs[0]!.data as Float32Array)).toEqual(doubled);
  });

  it('refuses a binary body that arrived as text with bytes replaced, naming the fix', async () => {
    const { handler } = handlerWith();
    const request = tritonclientRequest('x', [1, 4], 'FP32', Buffer.from(values.buffer));
    // A JSON Content-Type makes the gateway pass the body as UTF-8 text: -1.5's 0xC0 byte becomes U+FFFD.
    const response = await handler(event('POST', '/v2/models/double/infer', request.body, { headers: { ...request.headers, 'content-type': 'application/json' }, as: 'text' }));
    expect(statusAndJson(response)).toEqual([400, { error: ALTERED_TEXT }]);
  });

  it('refuses a JSON body that arrived as text with bytes replaced (a BYTES element that was not UTF-8)', async () => {
    const { handler } = handlerWith();
    const body = Buffer.concat([Buffer.from('{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":["'), Buffer.from([0xff, 0xfe]), Buffer.from('"]}]}')]);
    const response = await handler(event('POST', '/v2/models/double/infer', body, { headers: { 'content-type': 'application/json' }, as: 'text' }));
    expect(statusAndJson(response)).toEqual([400, { error: ALTERED_TEXT }]);
  });

  it('takes a binary body that arrived as text when its bytes are valid UTF-8 (nothing was replaced)', async () => {
    const { handler } = handlerWith();
    // Four floats whose every byte is ASCII (2.7514e0, 7.8e2, ...): valid UTF-8 survives text as it was.
    const bytes = Buffer.from('\x10\x20\x30\x40\x11\x22\x33\x44\x01\x02\x03\x3f\x7f\x7e\x7d\x3c', 'latin1');
    const ascii = new Float32Array(Uint8Array.from(bytes).buffer);
    expect(Buffer.from(bytes.toString('utf8')).equals(bytes)).toBe(true);
    const request = tritonclientRequest('x', [1, 4], 'FP32', bytes);
    const response = await handler(event('POST', '/v2/models/double/infer', request.body, { headers: { ...request.headers, 'content-type': 'application/json' }, as: 'text' }));
    expect(response.statusCode).toBe(200);
    const decoded = decodeInferResponse(bodyOf(response), Number(response.headers!['inference-header-content-length']));
    expect(Array.from(decoded.outputs[0]!.data as Float32Array)).toEqual(Array.from(ascii, (v) => Math.fround(v * 2)));
  });
});

describe('FP16 through a real session', () => {
  it('runs FP16 binary inputs and returns FP16 outputs bit-exact', async () => {
    const { handler } = handlerWith(['half']);
    const bits = Uint16Array.from([1.5, -2, 0.333251953125], float32ToFloat16Bits);
    const encoded = encodeInferRequest([{ name: 'x', datatype: 'FP16', shape: [1, 3], data: bits }], { binary: true, binaryDataOutput: true });
    const response = await handler(event('POST', '/v2/models/half/infer', encoded.body, { headers: { 'inference-header-content-length': String(encoded.jsonLength) } }));
    expect(response.statusCode).toBe(200);
    const decoded = decodeInferResponse(bodyOf(response), Number(response.headers!['inference-header-content-length']));
    expect(decoded.outputs[0]!.datatype).toBe('FP16');
    expect(Array.from(decoded.outputs[0]!.data as Uint16Array)).toEqual(Array.from([3, -4, 0.66650390625], float32ToFloat16Bits));
  });
});

describe('FP16 in JSON through a real session', () => {
  it('reads FP16 JSON values into the session and writes the answer as the shortest FP16 text', async () => {
    const { handler } = handlerWith(['half']);
    const body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP16', shape: [1, 3], data: [1.5, -2, 0.333251953125] }] });
    const response = await handler(event('POST', '/v2/models/half/infer', body, { headers: { 'content-type': 'application/json' }, as: 'text' }));
    expect(response.statusCode).toBe(200);
    const answer = JSON.parse(response.body!) as { outputs: { datatype: string; data: number[] }[] };
    expect(answer.outputs[0]!.datatype).toBe('FP16');
    expect(answer.outputs[0]!.data).toEqual([3, -4, 0.6665]);
  });
});

describe('a warm-up that fails', () => {
  it('leaves the model not ready, with the reason, on readiness and on the model', async () => {
    const { handler, ready } = handlerWith(['reshape-two']);
    await ready;
    const reason = "model 'reshape-two' version '1' is not ready: its warm-up run failed: ";
    const health = await handler(event('GET', '/v2/health/ready'));
    expect(health.statusCode).toBe(503);
    expect(jsonOf(health).error).toMatch(new RegExp(`^pre-warmed models failed to load: reshape-two \\(${reason.replace(/[()]/g, '\\$&')}.*Reshape.*\\)$`));
    expect(jsonOf(health).error).not.toMatch(/\.cc|\.h:|onnxruntime::/);
    const model = await handler(event('GET', '/v2/models/reshape-two/ready'));
    expect(model.statusCode).toBe(503);
    expect(jsonOf(model).error.startsWith(reason)).toBe(true);
  });
});

describe('runtime failures', () => {
  it('answers a runtime failure on valid input with a clean 500 and counts it by model', async () => {
    const { handler } = handlerWith([], { requireWarmup: false });
    const written: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    let response;
    try {
      response = await handler(event('POST', '/v2/models/reshape-two/infer', JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [3], data: [1, 2, 3] }] })));
    } finally {
      spy.mockRestore();
    }
    expect(response.statusCode).toBe(500);
    const message: string = jsonOf(response).error;
    expect(message).toMatch(/^model 'reshape-two' version '1' failed while running: .*Reshape/);
    expect(message).not.toMatch(/\.cc|\.h:|onnxruntime::|\/onnxruntime_src/);
    const metrics = written.filter((line) => line.includes('"_aws"')).map((line) => JSON.parse(line));
    const runtimeFailures = metrics.filter((m) => RUNTIME_FAILURE_METRIC in m);
    expect(runtimeFailures.map((m) => m._aws.CloudWatchMetrics[0].Dimensions[0])).toEqual([['service', 'model', 'version'], ['service']]);
    expect(runtimeFailures[0]).toMatchObject({ [RUNTIME_FAILURE_METRIC]: 1, model: 'reshape-two', version: '1' });
    // The series the stack's alarm names: the service dimension alone (serverless.yml, InferenceRuntimeFailuresAlarm).
    expect(runtimeFailures[1]).toMatchObject({ [RUNTIME_FAILURE_METRIC]: 1, service: 'ai-mass-test' });
    expect(metrics.find((m) => 'Errors' in m)).toMatchObject({ Errors: 1, errorClass: 'InferenceRuntimeError' });
    const fine = await handler(event('POST', '/v2/models/reshape-two/infer', JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [2], data: [1, 2] }] })));
    expect([fine.statusCode, jsonOf(fine).outputs[0].data]).toEqual([200, [1, 2]]);
  });
});

describe('compressed requests and responses', () => {
  const request = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });

  it.each([
    ['gzip', gzipSync],
    ['deflate', deflateSync],
  ] as const)('decodes a %s request body', async (coding, compress) => {
    const { handler } = handlerWith();
    const response = await handler(event('POST', '/v2/models/double/infer', compress(Buffer.from(request)), { headers: { 'content-encoding': coding } }));
    expect([response.statusCode, jsonOf(response).outputs[0].data]).toEqual([200, [2, 4, 6, 8]]);
  });

  it("decodes tritonclient's gzip-compressed binary request (the header length counts the uncompressed JSON) and answers in gzip", async () => {
    const { handler } = handlerWith();
    const values = Float32Array.of(16.07077, -1.5, 3.25, 0.1);
    const request = tritonclientRequest('x', [1, 4], 'FP32', Buffer.from(values.buffer));
    const response = await handler(event('POST', '/v2/models/double/infer', gzipSync(request.body), {
      headers: { 'inference-header-content-length': request.headers['inference-header-content-length']!, 'content-encoding': 'gzip', 'accept-encoding': 'gzip' },
    }));
    expect([response.statusCode, response.headers!['content-encoding']]).toEqual([200, 'gzip']);
    const decoded = decodeInferResponse(gunzipSync(bodyOf(response)), Number(response.headers!['inference-header-content-length']));
    expect(Array.from(decoded.outputs[0]!.data as Float32Array)).toEqual(Array.from(values, (v) => Math.fround(v * 2)));
  });

  it('answers a decompression bomb with 413 without inflating it whole', async () => {
    const { handler } = handlerWith([], { maxBodyBytes: 100_000 });
    const bomb = gzipSync(Buffer.alloc(50_000_000, 0x20));
    expect(bomb.length).toBeLessThan(100_000);
    const response = await handler(event('POST', '/v2/models/double/infer', bomb, { headers: { 'content-encoding': 'gzip' } }));
    expect(statusAndJson(response)).toEqual([413, { error: 'request body decompresses to more than the limit of 100000 bytes' }]);
  });

  it('refuses an encoding it does not know and a body that is not what it says', async () => {
    const { handler } = handlerWith();
    const br = await handler(event('POST', '/v2/models/double/infer', Buffer.from('x'), { headers: { 'content-encoding': 'br' } }));
    expect(statusAndJson(br)).toEqual([415, { error: 'Content-Encoding "br" is not supported; send gzip, deflate or an uncompressed body' }]);
    const notGzip = await handler(event('POST', '/v2/models/double/infer', Buffer.from(request), { headers: { 'content-encoding': 'gzip' } }));
    expect(statusAndJson(notGzip)).toEqual([400, { error: 'request body is not valid gzip data: incorrect header check' }]);
  });

  it('compresses the answer when the client accepts gzip', async () => {
    const { handler } = handlerWith();
    const response = await handler(event('POST', '/v2/models/double/infer', request, { headers: { 'accept-encoding': 'deflate;q=0.5, gzip' } }));
    expect([response.statusCode, response.headers!['content-encoding'], response.isBase64Encoded]).toEqual([200, 'gzip', true]);
    expect(JSON.parse(gunzipSync(Buffer.from(response.body!, 'base64')).toString()).outputs[0].data).toEqual([2, 4, 6, 8]);
  });
});

describe("Triton's classification extension", () => {
  const request = (model: string, count: number) => JSON.stringify({
    inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: [0.1, 0.7, 0.2, 0.7, 5, -1, 3, 4] }],
    outputs: [{ name: 'y', parameters: { classification: count } }],
  });

  it('answers class_count with the top classes per batch row as value:index', async () => {
    const { handler } = handlerWith();
    const response = await handler(event('POST', '/v2/models/double/infer', request('double', 2)));
    expect(statusAndJson(response)).toEqual([200, {
      model_name: 'double', model_version: '1',
      outputs: [{ name: 'y', datatype: 'BYTES', shape: [2, 2], data: ['1.400000:1', '1.400000:3', '10.000000:0', '8.000000:3'] }],
    }]);
  });

  it("adds the labels of the model's metadata, and caps the count at the number of classes", async () => {
    const { handler } = handlerWith();
    const response = await handler(event('POST', '/v2/models/scores/infer', request('scores', 9)));
    expect(jsonOf(response).outputs).toEqual([{
      name: 'y', datatype: 'BYTES', shape: [2, 4],
      data: ['1.400000:1:dog', '1.400000:3:fish', '0.400000:2:bird', '0.200000:0:cat', '10.000000:0:cat', '8.000000:3:fish', '6.000000:2:bird', '-2.000000:1:dog'],
    }]);
  });
  it("takes the manifest's labels before the model's own", async () => {
    const manifest = await pushModel(store, { name: 'labelled', version: '1', bytes: TRANSPORT_MODELS.scores! });
    await store.putManifest({ ...manifest, labels: { y: ['zero', 'one', 'two', 'three'] } });
    const { handler } = handlerWith();
    const response = await handler(event('POST', '/v2/models/labelled/infer', request('labelled', 1)));
    expect(jsonOf(response).outputs[0].data).toEqual(['1.400000:1:one', '10.000000:0:zero']);
  });
});

describe('model configuration', () => {
  it("describes a version in Triton's model-configuration JSON", async () => {
    const { handler } = handlerWith();
    for (const path of ['/v2/models/double/config', '/v2/models/double/versions/1/config']) {
      expect(statusAndJson(await handler(event('GET', path)))).toEqual([200, {
        name: 'double', platform: 'onnxruntime_onnx', backend: 'onnxruntime', version_policy: { specific: { versions: [1] } },
        max_batch_size: 1024,
        input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [4] }],
        output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [4] }],
        default_model_filename: 'model.onnx',
      }]);
    }
    expect(jsonOf(await handler(event('GET', '/v2/models/half/config')))).toMatchObject({ max_batch_size: 0, input: [{ name: 'x', data_type: 'TYPE_FP16', dims: [1, 3] }] });
  });
});

describe('routes, outputs and inputs', () => {
  it('serves a model without inputs, with every output for an empty outputs filter', async () => {
    const { handler } = handlerWith(['constant']);
    for (const body of [{ inputs: [] }, { inputs: [], outputs: [] }]) {
      const response = await handler(event('POST', '/v2/models/constant/infer', JSON.stringify(body)));
      expect(statusAndJson(response)).toEqual([200, { model_name: 'constant', model_version: '1', outputs: [{ name: 'y', datatype: 'FP32', shape: [2], data: [1.5, -2.25] }] }]);
    }
  });

  it('answers unknown routes with 404 and wrong methods with 405, both as {"error"}', async () => {
    const { handler } = handlerWith();
    expect(statusAndJson(await handler(event('GET', '/v2/nothing/here')))).toEqual([404, { error: 'no route for GET /v2/nothing/here' }]);
    expect(statusAndJson(await handler(event('DELETE', '/v2/models/double')))).toEqual([405, { error: 'method DELETE is not allowed on /v2/models/double; use GET' }]);
    expect(statusAndJson(await handler(event('POST', '/v2/models/double/config')))).toEqual([405, { error: 'method POST is not allowed on /v2/models/double/config; use GET' }]);
    expect(statusAndJson(await handler(event('PUT', '/v2/health/live')))).toEqual([405, { error: 'method PUT is not allowed on /v2/health/live; use GET' }]);
    // Another function's path: the catch-all brings its wrong methods here.
    expect(statusAndJson(await handler(event('DELETE', '/v2/models/double/aliases/prod')))).toEqual([405, { error: 'method DELETE is not allowed on /v2/models/double/aliases/prod; use GET or PUT' }]);
  });

  it('refuses a 2,000-character model name with 400 before any registry read, quoting only its start', async () => {
    const { handler } = handlerWith();
    const name = 'a'.repeat(2000);
    for (const path of [`/v2/models/${name}`, `/v2/models/${name}/versions`, `/v2/models/${name}/infer`]) {
      const response = await handler(event(path.endsWith('infer') ? 'POST' : 'GET', path, path.endsWith('infer') ? '{"inputs":[]}' : undefined));
      expect(statusAndJson(response)).toEqual([400, { error: `invalid model name "${'a'.repeat(80)}...": must match [a-z0-9][a-z0-9._-]{0,63}` }]);
    }
  });
});

describe("responses over Lambda's payload limit", () => {
  it('refuses a JSON answer over 6 MB before sending it, naming the binary extension, and sends the same answer in binary', async () => {
    const { handler } = handlerWith();
    const data = Float32Array.from({ length: 1_000_000 }, (_, i) => i / 7);
    const json = encodeInferRequest([{ name: 'x', datatype: 'FP32', shape: [1, data.length], data }], { binary: true });
    const asJson = await handler(event('POST', '/v2/models/double-any/infer', json.body, { headers: { 'inference-header-content-length': String(json.jsonLength) } }));
    expect(asJson.statusCode).toBe(413);
    expect(jsonOf(asJson).error).toMatch(/^the response would be \d+ bytes, over Lambda's limit of 6291456 bytes for a response; ask for binary outputs \(the binary tensor data extension: "binary_data_output": true\) or send a smaller batch$/);
    const binary = encodeInferRequest([{ name: 'x', datatype: 'FP32', shape: [1, data.length], data }], { binary: true, binaryDataOutput: true });
    const asBinary = await handler(event('POST', '/v2/models/double-any/infer', binary.body, { headers: { 'inference-header-content-length': String(binary.jsonLength) } }));
    expect(asBinary.statusCode).toBe(200);
  });

  it("counts base64's growth of a binary answer", async () => {
    const { handler } = handlerWith();
    // 4.9 MB of output is 6.5 MB once base64-encoded.
    const data = new Float32Array(1_225_000);
    const binary = encodeInferRequest([{ name: 'x', datatype: 'FP32', shape: [1, data.length], data }], { binary: true, binaryDataOutput: true });
    const response = await handler(event('POST', '/v2/models/double-any/infer', binary.body, { headers: { 'inference-header-content-length': String(binary.jsonLength) } }));
    expect(response.statusCode).toBe(413);
    expect(jsonOf(response).error).toMatch(/^the response would be (\d+) bytes, over Lambda's limit of 6291456 bytes for a response; send a smaller batch$/);
    expect(Number(/would be (\d+)/.exec(jsonOf(response).error)![1])).toBeGreaterThan(4 * Math.ceil(4_900_000 / 3));
  });
});
