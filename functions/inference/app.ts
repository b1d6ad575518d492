import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { BadRequestError, HttpError, InferenceRuntimeError, NotFoundError, NotReadyError, PayloadTooLargeError } from '../core/platform/errors.ts';
import type { InferenceService } from '../core/serving/inference-service.ts';
import { assertValidName } from '../core/artifacts/names.ts';
import { MetricUnit, recordMetric } from '../core/platform/observability.ts';
import {
  acceptedEncoding, contentEncoding, decodeBody, encodeBody, errorResponse, header, lambdaPayloadBytes, LAMBDA_RESPONSE_LIMIT_BYTES, pathSegment,
} from '../adapters/http.ts';
import { decodeInferRequest, encodeInferResponse, INFERENCE_HEADER_CONTENT_LENGTH, parseHeaderLength } from '../core/v2/codec.ts';
import type { CaptureWriter } from '../core/monitor/capture.ts';

export interface InferenceHandlerDeps {
  service: InferenceService;
  maxBodyBytes: number;
  logger: Logger;
  metrics: Metrics;
  /** Data capture (monitor/capture.ts): takes each answered request; returns at once, never throws. */
  capture?: Pick<CaptureWriter, 'offer'> | undefined;
}

type Result = APIGatewayProxyStructuredResultV2;

const MODEL_ROUTE = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(?:\/(ready|infer|config))?\/?$/;
const VERSIONS_ROUTE = /^\/v2\/models\/([^/]+)\/versions\/?$/;
/**
 * The routes of the API's other functions under /v2 (infra/serverless/*.yml; a unit test holds the
 * two together). Their paths belong to them, so the catch-all, which brings their wrong methods
 * here, answers those with 405 rather than 404.
 */
export const OTHER_FUNCTION_ROUTES = [
  'POST /v2/batches',
  'GET /v2/batches/{id}',
  'POST /v2/models/{name}/versions/{version}/evaluate',
  'GET /v2/models/{name}/versions/{version}/evaluations/{id}',
  'GET /v2/models/{name}/versions/{version}/evaluations/{id}/report.html',
  'POST /v2/models/{name}/versions/{version}/quantize',
  'GET /v2/models/{name}/quantizations/{job}',
  'POST /v2/models/{name}/versions/{version}/train',
  'POST /v2/models/{name}/versions/{version}/monitor',
  'GET /v2/models/{name}/aliases/{alias}',
  'PUT /v2/models/{name}/aliases/{alias}',
  'POST /v2/models/{name}/aliases/{alias}/promote',
  'POST /v2/models/{name}/aliases/{alias}/rollback',
  'PUT /v2/pipelines/{name}',
  'GET /v2/pipelines/{name}',
  'GET /v2/pipelines/{name}/versions/{version}',
  'GET /v2/jobs/{id}',
  'POST /v2/jobs/{id}/cancel',
  'POST /v2/federations',
  'GET /v2/federations/{id}',
  'GET /v2/federations/{id}/rounds/{round}',
  'POST /v2/federations/{id}/resume',
  'POST /v2/federations/{id}/clients',
  'GET /v2/federations/{id}/clients/{client}/task',
  'POST /v2/federations/{id}/rounds/{round}/updates/{client}',
  'POST /v2/studies',
  'GET /v2/studies/{id}',
] as const;

const OTHER_ROUTE_PATTERNS = OTHER_FUNCTION_ROUTES.map((key) => {
  const [method, path] = key.split(' ') as [string, string];
  return { method, pattern: new RegExp(`^${path.replace(/\./g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}/?$`) };
});

/** The methods another function serves on a path; empty when no other function has it. */
function otherFunctionMethods(path: string): string[] {
  return OTHER_ROUTE_PATTERNS.filter((r) => r.pattern.test(path)).map((r) => r.method);
}

/** A caller that sends this header always lands on the same side of a canary split. */
export const STICKY_HEADER = 'x-mass-route-key';
/** Counted by model and version when onnxruntime fails on a request that passed validation. */
export const RUNTIME_FAILURE_METRIC = 'InferenceRuntimeFailures';

/**
 * The infer body as the client sent it: a string for a plain JSON body, else bytes. API Gateway
 * (HTTP API, payload 2.0) base64-encodes every body whose Content-Type is not text (none, octet-stream,
 * form data...), and passes text types (text/*, JSON, XML, JavaScript) as a string decoded as UTF-8,
 * where bytes that are not UTF-8 become U+FFFD. A body that arrived as a string is the bytes that were
 * sent only if it has no U+FFFD: otherwise it is refused, never decoded from altered bytes (a JSON
 * string that means U+FFFD can say so as \ufffd).
 */
const ALTERED_TEXT =
  'the request body arrived as text with U+FFFD in it, the character that replaces bytes that are not UTF-8, so it may not be the bytes that were sent: ' +
  'send binary and compressed requests with Content-Type: application/octet-stream (or none), and write U+FFFD in a JSON string as \\ufffd';

async function requestBody(event: APIGatewayProxyEventV2, limit: number): Promise<string | Buffer> {
  const body = event.body ?? '';
  const declared = Number(header(event, 'content-length') ?? NaN);
  const size = event.isBase64Encoded ? Math.floor((body.length * 3) / 4) : Buffer.byteLength(body);
  const largest = Number.isFinite(declared) ? Math.max(declared, size) : size;
  if (largest > limit) throw new PayloadTooLargeError(`request body of ${largest} bytes exceeds the limit of ${limit} bytes`);
  const encoding = contentEncoding(event);
  const headerLength = header(event, INFERENCE_HEADER_CONTENT_LENGTH);
  if (!event.isBase64Encoded && body.includes('\uFFFD')) throw new BadRequestError(ALTERED_TEXT);
  if (!event.isBase64Encoded && headerLength === undefined && encoding === 'identity') return body;
  const alignFor = encoding === 'identity' ? headerLength : undefined;
  const bytes = event.isBase64Encoded
    ? decodeBase64Body(body, alignFor)
    : alignedBytes(Buffer.byteLength(body), alignFor, (out, at) => out.write(body, at, 'utf8'));
  return encoding === 'identity' ? bytes : decodeBody(bytes, encoding, limit);
}

/**
 * Bytes written into a buffer so that the binary tensor data after a JSON header of `headerLength`
 * bytes starts 8-byte aligned: the tensors then view the body instead of copying it
 * (typedArrayFromBytes). Buffer memory itself starts 8-byte aligned.
 */
function alignedBytes(size: number, headerLength: string | undefined, write: (out: Buffer, at: number) => number): Buffer {
  const jsonLength = (headerLength !== undefined ? parseHeaderLength(headerLength) : undefined) ?? 0; // a bad one is refused by the decoder
  const pad = (8 - (jsonLength % 8)) % 8;
  const out = Buffer.allocUnsafe(pad + size);
  const written = write(out, pad);
  return out.subarray(pad, pad + written);
}

/** A base64 body (API Gateway's form of a binary one), decoded aligned as alignedBytes says. */
export function decodeBase64Body(body: string, headerLength: string | undefined): Buffer {
  return alignedBytes(Buffer.byteLength(body, 'base64'), headerLength, (out, at) => out.write(body, at, 'base64'));
}

/**
 * A successful response, compressed when the client accepts gzip or deflate, and refused (413) when
 * Lambda could not return it: its limit counts the result's JSON, so base64's growth of a binary
 * body and the escaping of a text one count too.
 */
function respond(event: APIGatewayProxyEventV2, statusCode: number, body: Buffer, headers: Record<string, string>, binary: boolean, tooLargeHint: string): Result {
  const coding = acceptedEncoding(event);
  const out = coding ? encodeBody(body, coding) : body;
  const result: Result = coding || binary
    ? { statusCode, headers: { ...headers, ...(coding ? { 'content-encoding': coding, vary: 'accept-encoding' } : {}) }, body: out.toString('base64'), isBase64Encoded: true }
    : { statusCode, headers, body: out.toString('utf8') };
  const bytes = lambdaPayloadBytes(result);
  if (bytes > LAMBDA_RESPONSE_LIMIT_BYTES) {
    throw new PayloadTooLargeError(`the response would be ${bytes} bytes, over Lambda's limit of ${LAMBDA_RESPONSE_LIMIT_BYTES} bytes for a response; ${tooLargeHint}`);
  }
  return result;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

/** API Gateway HTTP API (payload v2) adapter for the Open Inference Protocol V2 REST API. */
export function createInferenceHandler(deps: InferenceHandlerDeps) {
  const { service, logger, metrics } = deps;

  async function route(event: APIGatewayProxyEventV2): Promise<Result> {
    const method = event.requestContext.http.method.toUpperCase();
    const path = event.rawPath;
    const allow = (m: string) => {
      if (method !== m) throw new HttpError(405, `method ${method} is not allowed on ${path}; use ${m}`);
    };
    const ok = (body: unknown) => respond(event, 200, Buffer.from(JSON.stringify(body)), JSON_HEADERS, false, 'ask for less');
    if (path === '/v2' || path === '/v2/') {
      allow('GET');
      return ok(service.serverMetadata());
    }
    if (path === '/v2/health/live') {
      allow('GET');
      return ok({ live: true });
    }
    if (path === '/v2/health/ready') {
      allow('GET');
      if (!(await service.checkReady())) throw new NotReadyError(service.notReadyReason());
      return ok({ ready: true });
    }
    const listing = VERSIONS_ROUTE.exec(path);
    if (listing) {
      allow('GET');
      return ok(await service.versionDetails(assertValidName(pathSegment(listing[1]!), 'model name')));
    }
    const match = MODEL_ROUTE.exec(path);
    const others = otherFunctionMethods(path);
    if (others.length > 0) throw new HttpError(405, `method ${method} is not allowed on ${path}; use ${others.join(' or ')}`);
    if (!match) throw new NotFoundError(`no route for ${method} ${path.length > 200 ? `${path.slice(0, 200)}...` : path}`);
    // Checked before anything reads the registry: an invalid name is a 400 that quotes at most its start.
    const name = assertValidName(pathSegment(match[1]!), 'model name');
    const version = match[2] === undefined ? undefined : assertValidName(pathSegment(match[2]), 'version');
    const action = match[3];
    logger.appendKeys({ model: name, ...(version ? { version } : {}) });

    if (action === undefined) {
      allow('GET');
      return ok(await service.modelMetadata(name, version));
    }
    if (action === 'ready') {
      allow('GET');
      const model = await service.load(name, version);
      return ok({ name, version: model.version, ready: true });
    }
    if (action === 'config') {
      allow('GET');
      return ok(await service.modelConfig(name, version));
    }
    allow('POST');
    const body = await requestBody(event, deps.maxBodyBytes);
    const request = decodeInferRequest(body, header(event, INFERENCE_HEADER_CONTENT_LENGTH));
    const started = performance.now();
    const { response, binaryOutputs, model, manifest } = await service.infer(name, version, request, header(event, STICKY_HEADER));
    const ms = performance.now() - started;
    logger.appendKeys({ version: model.version });
    metrics.addDimensions({ model: name, version: model.version });
    metrics.addDimensions({}); // the service-wide series too: the one the stack's latency alarm can name
    metrics.addMetric('InferenceLatency', MetricUnit.Milliseconds, ms);
    const encoded = encodeInferResponse(response, binaryOutputs);
    deps.capture?.offer({ model: name, version: model.version, manifest, request, outputs: response.outputs });
    const hint = encoded.jsonLength === undefined
      ? 'ask for binary outputs (the binary tensor data extension: "binary_data_output": true) or send a smaller batch'
      : 'send a smaller batch';
    if (encoded.jsonLength === undefined) return respond(event, 200, encoded.body, JSON_HEADERS, false, hint);
    return respond(event, 200, encoded.body, { 'content-type': 'application/octet-stream', [INFERENCE_HEADER_CONTENT_LENGTH]: String(encoded.jsonLength) }, true, hint);
  }

  return async function inferenceHandler(event: APIGatewayProxyEventV2): Promise<Result> {
    logger.resetKeys();
    try {
      return await route(event);
    } catch (error) {
      if (error instanceof InferenceRuntimeError) {
        recordMetric(metrics, RUNTIME_FAILURE_METRIC, MetricUnit.Count, 1, { model: error.model, version: error.version });
        // Once more with the service dimension alone: the one series the stack's alarm can name.
        recordMetric(metrics, RUNTIME_FAILURE_METRIC, MetricUnit.Count, 1, {});
      }
      return errorResponse(error, (level, message, fields) => logger[level](message, fields), metrics);
    }
  };
}
