import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { HttpError, NotFoundError, NotReadyError, PayloadTooLargeError } from '../core/errors.ts';
import type { InferenceService } from '../core/inference-service.ts';
import { MetricUnit } from '../core/observability.ts';
import { errorResponse, header, json, pathSegment } from '../adapters/http.ts';
import { decodeInferRequest, encodeInferResponse, INFERENCE_HEADER_CONTENT_LENGTH, parseHeaderLength } from '../core/v2/codec.ts';

export interface InferenceHandlerDeps {
  service: InferenceService;
  maxBodyBytes: number;
  logger: Logger;
  metrics: Metrics;
}

type Result = APIGatewayProxyStructuredResultV2;

const MODEL_ROUTE = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(?:\/(ready|infer))?\/?$/;
const VERSIONS_ROUTE = /^\/v2\/models\/([^/]+)\/versions\/?$/;
/** A caller that sends this header always lands on the same side of a canary split. */
export const STICKY_HEADER = 'x-mass-route-key';




/** The body (text as it came, binary as bytes), refused before any decoding when it is over the limit. */
function requestBody(event: APIGatewayProxyEventV2, limit: number): string | Buffer {
  const body = event.body ?? '';
  const declared = Number(header(event, 'content-length') ?? NaN);
  const size = event.isBase64Encoded ? Math.floor((body.length * 3) / 4) : Buffer.byteLength(body);
  const largest = Number.isFinite(declared) ? Math.max(declared, size) : size;
  if (largest > limit) throw new PayloadTooLargeError(`request body of ${largest} bytes exceeds the limit of ${limit} bytes`);
  return event.isBase64Encoded ? decodeBase64Body(body, header(event, INFERENCE_HEADER_CONTENT_LENGTH)) : body;
}

/**
 * A base64 body (API Gateway's form of a binary one) decoded so that its binary tensor data, after
 * the JSON header, starts 8-byte aligned: the tensors then view the body instead of copying it
 * (typedArrayFromBytes). Buffer memory itself starts 8-byte aligned.
 */
export function decodeBase64Body(body: string, headerLength: string | undefined): Buffer {
  const jsonLength = (headerLength !== undefined ? parseHeaderLength(headerLength) : undefined) ?? 0; // a bad one is refused by the decoder
  const pad = (8 - (jsonLength % 8)) % 8;
  const out = Buffer.allocUnsafe(pad + Buffer.byteLength(body, 'base64'));
  const written = out.write(body, pad, 'base64');
  return out.subarray(pad, pad + written);
}

/** API Gateway HTTP API (payload v2) adapter for the Open Inference Protocol V2 REST API. */
export function createInferenceHandler(deps: InferenceHandlerDeps) {
  const { service, logger, metrics } = deps;

  async function route(event: APIGatewayProxyEventV2): Promise<Result> {
    const method = event.requestContext.http.method.toUpperCase();
    const path = event.rawPath;
    const allow = (m: string) => {
      if (method !== m) throw new HttpError(405, `method ${method} is not allowed on ${path}; use ${m}`);
    };
    if (path === '/v2' || path === '/v2/') {
      allow('GET');
      return json(200, service.serverMetadata());
    }
    if (path === '/v2/health/live') {
      allow('GET');
      return json(200, { live: true });
    }
    if (path === '/v2/health/ready') {
      allow('GET');
      if (!(await service.checkReady())) throw new NotReadyError(service.notReadyReason());
      return json(200, { ready: true });
    }
    const listing = VERSIONS_ROUTE.exec(path);
    if (listing) {
      allow('GET');
      return json(200, await service.versionDetails(pathSegment(listing[1]!)));
    }
    const match = MODEL_ROUTE.exec(path);
    if (!match) throw new NotFoundError(`no route for ${method} ${path}`);
    const name = pathSegment(match[1]!);
    const version = match[2] === undefined ? undefined : pathSegment(match[2]);
    const action = match[3];
    logger.appendKeys({ model: name, ...(version ? { version } : {}) });

    if (action === undefined) {
      allow('GET');
      return json(200, await service.modelMetadata(name, version));
    }
    if (action === 'ready') {
      allow('GET');
      const model = await service.loadModel(name, version);
      return json(200, { name, version: model.version, ready: true });
    }
    allow('POST');
    const body = requestBody(event, deps.maxBodyBytes);
    const request = decodeInferRequest(body, header(event, INFERENCE_HEADER_CONTENT_LENGTH));
    const started = performance.now();
    const { response, binaryOutputs, model } = await service.infer(name, version, request, header(event, STICKY_HEADER));
    const ms = performance.now() - started;
    logger.appendKeys({ version: model.version });
    metrics.addDimensions({ model: name, version: model.version });
    metrics.addMetric('InferenceLatency', MetricUnit.Milliseconds, ms);
    const encoded = encodeInferResponse(response, binaryOutputs);
    if (encoded.jsonLength === undefined) {
      return { statusCode: 200, headers: { 'content-type': 'application/json' }, body: encoded.body.toString('utf8') };
    }
    return {
      statusCode: 200,
      headers: {
        'content-type': 'application/octet-stream',
        [INFERENCE_HEADER_CONTENT_LENGTH]: String(encoded.jsonLength),
      },
      body: encoded.body.toString('base64'),
      isBase64Encoded: true,
    };
  }

  return async function inferenceHandler(event: APIGatewayProxyEventV2): Promise<Result> {
    logger.resetKeys();
    try {
      return await route(event);
    } catch (error) {
      return errorResponse(error, (level, message, fields) => logger[level](message, fields), metrics);
    }
  };
}
