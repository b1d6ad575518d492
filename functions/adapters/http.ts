import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { BadRequestError, HttpError, PayloadTooLargeError } from '../core/errors.ts';
import { MetricUnit, recordMetric } from '../core/observability.ts';

/**
 * What every HTTP API handler shares: JSON responses, JSON request bodies, path segments and headers
 * of an API Gateway (payload v2) event, and the one mapping of errors to responses: client errors exposed as
 * `{"error": "..."}`, anything else a plain 500 that never carries the cause.
 */
export type HttpResult = APIGatewayProxyStructuredResultV2;

export function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): HttpResult {
  return { statusCode, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
}

export function pathSegment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new BadRequestError(`malformed path segment ${JSON.stringify(raw)}`);
  }
}

export interface JsonBodyOptions {
  /** Larger bodies get 413 before they are parsed. */
  maxBytes: number;
  /** Added to the 413's message: where a larger input goes instead. */
  tooLargeHint?: string;
  /** What an empty body means; without it, an empty body gets 400. */
  empty?: unknown;
  /** Added to the 400 for an empty body: what to send. */
  emptyHint?: string;
}

/** A JSON request body, base64-decoded when API Gateway encoded it: 413 over `maxBytes`, 400 when not JSON. */
export function jsonBody(event: APIGatewayProxyEventV2, options: JsonBodyOptions): unknown {
  const raw = event.isBase64Encoded ? Buffer.from(event.body ?? '', 'base64').toString('utf8') : (event.body ?? '');
  const bytes = Buffer.byteLength(raw);
  if (bytes > options.maxBytes) {
    const hint = options.tooLargeHint ? `; ${options.tooLargeHint}` : '';
    throw new PayloadTooLargeError(`request body of ${bytes} bytes exceeds the limit of ${options.maxBytes} bytes${hint}`);
  }
  if (raw.trim() === '') {
    if ('empty' in options) return options.empty;
    throw new BadRequestError(`request body is empty${options.emptyHint ? `; ${options.emptyHint}` : ''}`);
  }
  try {
    return JSON.parse(raw);
  } catch (error) {
    throw new BadRequestError(`request body is not valid JSON: ${(error as Error).message}`);
  }
}

/** A request header by its lower-case name, whatever case the client used. */
export function header(event: APIGatewayProxyEventV2, name: string): string | undefined {
  const headers = event.headers ?? {};
  return headers[name] ?? Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
}

export type ErrorLog = (level: 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;

/** The response for an error a handler caught; with `metrics`, counted as `Errors` by error class. */
export function errorResponse(error: unknown, log: ErrorLog, metrics?: Metrics): HttpResult {
  if (metrics) recordMetric(metrics, 'Errors', MetricUnit.Count, 1, { errorClass: (error as Error)?.name ?? 'Error' });
  if (error instanceof HttpError && error.expose) {
    log('warn', 'request refused', { statusCode: error.statusCode, error: error.message });
    return json(error.statusCode, { error: error.message });
  }
  log('error', 'request failed', { error: error instanceof Error ? { name: error.name, message: error.message, stack: error.stack } : String(error) });
  return json(500, { error: 'internal server error' });
}
