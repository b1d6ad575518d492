import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { BadRequestError, HttpError, PayloadTooLargeError, UnsupportedMediaTypeError } from '../core/platform/errors.ts';
import { MetricUnit, recordMetric } from '../core/platform/observability.ts';
import { parseExactly } from '../core/v2/codec.ts';

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
  /**
   * Numbers read exactly (parseJsonExact): bare NaN and ±Infinity tokens, and numbers a double
   * cannot hold as NumberText, for a body whose values are passed on rather than used (batch rows).
   */
  exactNumbers?: boolean;
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
  if (options.exactNumbers) return parseExactly(raw, 'request body');
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
    if (error.statusCode >= 500 && error.statusCode !== 503) {
      // A fault whose message is safe to show (already cleaned): the log keeps the cause as it was.
      log('error', 'request failed', { statusCode: error.statusCode, error: error.message, cause: (error.cause as Error | undefined)?.message });
    } else {
      log('warn', 'request refused', { statusCode: error.statusCode, error: error.message });
    }
    return json(error.statusCode, { error: error.message });
  }
  log('error', 'request failed', { error: error instanceof Error ? { name: error.name, message: error.message, stack: error.stack } : String(error) });
  return json(500, { error: 'internal server error' });
}

/** Lambda's limit on a synchronous invocation's response: the whole JSON result, base64 bodies included. */
export const LAMBDA_RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024;

/** How many bytes Lambda counts for a result: its JSON form, where a text body is escaped and a binary one is base64. */
export function lambdaPayloadBytes(result: HttpResult): number {
  const body = result.body ?? '';
  const envelope = Buffer.byteLength(JSON.stringify({ ...result, body: '' }));
  if (result.isBase64Encoded) return envelope + body.length; // base64 needs no escaping
  return envelope - 2 + Buffer.byteLength(JSON.stringify(body));
}

export type BodyEncoding = 'identity' | 'gzip' | 'deflate';

/** node:zlib on first use: most requests are not compressed, and loading it costs every cold start. */
const zlib = () => process.getBuiltinModule('node:zlib');

/** The request's Content-Encoding: identity, gzip or deflate; anything else is a 415. */
export function contentEncoding(event: APIGatewayProxyEventV2): BodyEncoding {
  const value = (header(event, 'content-encoding') ?? 'identity').trim().toLowerCase();
  if (value === '' || value === 'identity') return 'identity';
  if (value === 'gzip' || value === 'x-gzip') return 'gzip';
  if (value === 'deflate') return 'deflate';
  throw new UnsupportedMediaTypeError(`Content-Encoding ${JSON.stringify(value.slice(0, 40))} is not supported; send gzip, deflate or an uncompressed body`);
}

/** The encoding to answer in from Accept-Encoding: gzip, else deflate, when the client takes one (q > 0). */
export function acceptedEncoding(event: APIGatewayProxyEventV2): 'gzip' | 'deflate' | undefined {
  const accepted = new Map<string, number>();
  for (const part of (header(event, 'accept-encoding') ?? '').split(',')) {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => /^\s*q=([\d.]+)\s*$/.exec(p)).find(Boolean);
    if (coding) accepted.set(coding, q ? Number(q[1]) : 1);
  }
  for (const coding of ['gzip', 'deflate'] as const) {
    if ((accepted.get(coding) ?? accepted.get('*') ?? 0) > 0) return coding;
  }
  return undefined;
}

/**
 * A compressed body decoded with its output capped at `maxBytes`: zlib stops once the cap is passed,
 * so a decompression bomb costs at most the cap, and is a 413.
 */
export async function decodeBody(bytes: Buffer, encoding: Exclude<BodyEncoding, 'identity'>, maxBytes: number): Promise<Buffer> {
  const options = { maxOutputLength: maxBytes };
  const { gunzip, inflate, inflateRaw } = zlib();
  const run = (method: typeof gunzip) => new Promise<Buffer>((resolve, reject) => method(bytes, options, (error, out) => (error ? reject(error) : resolve(out))));
  try {
    if (encoding === 'gzip') return await run(gunzip);
    // HTTP's deflate is zlib-wrapped (RFC 9110); some clients send raw deflate, which has no zlib header.
    return await run(inflate).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'Z_DATA_ERROR' && /header/i.test(error.message)) return run(inflateRaw);
      throw error;
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') throw new PayloadTooLargeError(`request body decompresses to more than the limit of ${maxBytes} bytes`, { cause: error });
    throw new BadRequestError(`request body is not valid ${encoding} data: ${(error as Error).message}`, { cause: error });
  }
}

/** A response body compressed in the encoding the client accepts. */
export function encodeBody(body: Buffer, encoding: 'gzip' | 'deflate'): Buffer {
  return encoding === 'gzip' ? zlib().gzipSync(body) : zlib().deflateSync(body);
}
