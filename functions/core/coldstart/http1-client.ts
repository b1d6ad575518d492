/**
 * One HTTP/1.1 request on a connection of its own, whose response body the socket reads straight
 * into memory the caller owns (net/tls `onread` with a buffer per read). Only the boot fetch uses
 * it, for its few large GETs from S3 and one DynamoDB Query. node:http hands its body over as a new
 * 64 KB Buffer per read, which the caller then copies again: a 15 MB artifact over loopback took
 * 75-92 ms through node:http against 18-25 ms read in place, in fresh processes (the difference is
 * most of a cold start's transfer). Deliberately narrow: a body is read only when it carries
 * Content-Length (S3 and DynamoDB send it for what the boot fetch reads); a response framed any other
 * way still gives its status, and reading its body fails: the boot fetch then falls back to the SDK.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import type tlsModule from 'node:tls';

/** node:tls loads on the first https request only: about 9 ms of a cold start that talks plain HTTP. */
let tls: typeof tlsModule | undefined;
const loadTls = () => (tls ??= createRequire(import.meta.url)('node:tls') as typeof tlsModule);

export interface Http1Request {
  method: string;
  /**
   * Sent as given, in order; must include host (SigV4 signs it). A promise lets the connection
   * (and a TLS handshake) proceed while the headers are signed; its rejection fails the request.
   */
  headers: Record<string, string> | Promise<Record<string, string>>;
  body?: string | undefined;
  /** A connection that gets no data for this long fails. */
  idleTimeoutMs: number;
  /** Told once the request is written to the socket, or failed. */
  onWritten?: (() => void) | undefined;
}

export interface Http1Response {
  status: number;
  /** Header names in lower case; a repeated header's values joined with ", ". */
  headers: Map<string, string>;
  /** Undefined when the body is not framed by Content-Length (chunked, or until close): it cannot be read. */
  contentLength: number | undefined;
  /** Reads the body into `into`, whose length must be contentLength; resolves once it is all in. */
  readInto(into: Uint8Array): Promise<void>;
  /** The body as UTF-8 text. */
  text(): Promise<string>;
  /** Closes the connection without reading the body. */
  discard(): void;
}

/** A response head larger than this fails (S3's and DynamoDB's are well under 2 KB). */
const MAX_HEAD_BYTES = 16 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');

export class Http1Error extends Error {
  override name = 'Http1Error';
}

/** Parses a response head ("HTTP/1.1 206 Partial Content\r\nname: value\r\n..."), without its blank line. */
export function parseResponseHead(head: string): { status: number; headers: Map<string, string> } {
  const [statusLine = '', ...lines] = head.split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine);
  if (!match) throw new Http1Error(`not an HTTP/1.1 status line: ${JSON.stringify(statusLine.slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Http1Error(`malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const before = headers.get(name);
    headers.set(name, before === undefined ? value : `${before}, ${value}`);
  }
  return { status: Number(match[1]), headers };
}

/** The body's length; undefined when it is framed another way (chunked, or until close). */
function contentLengthOf(headers: Map<string, string>): number | undefined {
  if (headers.has('transfer-encoding')) return undefined;
  const value = headers.get('content-length');
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new Http1Error(`malformed content-length: ${JSON.stringify(value)}`);
  return Number(value);
}

/** Why a body cannot be read: its framing. */
function unframed(headers: Map<string, string>): Http1Error {
  const encoding = headers.get('transfer-encoding');
  return new Http1Error(encoding ? `unsupported transfer-encoding: ${encoding}` : 'no content-length');
}

export function http1Request(url: URL, request: Http1Request): Promise<Http1Response> {
  const secure = url.protocol === 'https:';
  if (!secure && url.protocol !== 'http:') return Promise.reject(new Http1Error(`unsupported protocol ${url.protocol}`));
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1'); // an IPv6 literal without its brackets
  const port = Number(url.port || (secure ? 443 : 80));

  return new Promise<Http1Response>((resolveHead, rejectHead) => {
    const head = Buffer.allocUnsafe(MAX_HEAD_BYTES);
    let headLength = 0;
    let response: Http1Response | undefined;
    /** Body bytes that came in with the head, before a destination was given. */
    let early: Uint8Array = new Uint8Array(0);
    let into: Uint8Array | undefined;
    let received = 0;
    let finishBody: { resolve: () => void; reject: (error: Error) => void } | undefined;
    let failure: Error | undefined;
    /** Where a read goes when it cannot go in place: between the head and readInto, or past the body. */
    let staging: Buffer | undefined;

    const fail = (error: Error) => {
      if (failure) return;
      failure = error;
      socket.destroy();
      if (!response) rejectHead(error);
      else finishBody?.reject(error);
    };
    const bodyComplete = () => {
      socket.destroy(); // one request per connection: nothing else will come on it
      finishBody?.resolve();
    };
    /** Where the next read goes: the head buffer, then the caller's memory at the next byte. */
    const nextBuffer = (): Uint8Array => {
      if (!response) return head.subarray(headLength);
      if (into && received < into.length) return into.subarray(received);
      return (staging ??= Buffer.allocUnsafe(64 * 1024));
    };
    const isAt = (buffer: Uint8Array, target: Uint8Array, offset: number) => buffer.buffer === target.buffer && buffer.byteOffset === target.byteOffset + offset;
    const onHeadRead = (chunk: Uint8Array): boolean => {
      if (!isAt(chunk, head, headLength)) head.set(chunk.subarray(0, MAX_HEAD_BYTES - headLength), headLength);
      headLength = Math.min(MAX_HEAD_BYTES, headLength + chunk.length);
      const end = head.subarray(0, headLength).indexOf(HEAD_END);
      if (end < 0) {
        if (headLength === MAX_HEAD_BYTES) fail(new Http1Error(`response head over ${MAX_HEAD_BYTES} bytes`));
        return !failure;
      }
      try {
        const { status, headers } = parseResponseHead(head.toString('latin1', 0, end));
        const contentLength = contentLengthOf(headers);
        early = Buffer.from(head.subarray(end + HEAD_END.length, headLength)); // a copy: head is not kept
        if (contentLength !== undefined && early.length > contentLength) throw new Http1Error(`response sent ${early.length} bytes for a content-length of ${contentLength}`);
        response = makeResponse(status, headers, contentLength);
      } catch (error) {
        fail(error as Error);
        return false;
      }
      resolveHead(response);
      return false; // until readInto names the destination, the socket waits (its data stays in the kernel)
    };
    const onRead = (length: number, buffer: Uint8Array): boolean => {
      if (failure) return false;
      const chunk = buffer.subarray(0, length);
      if (!response) return onHeadRead(chunk);
      const remaining = into ? into.length - received : 0;
      if (length > remaining) {
        fail(new Http1Error(`response sent more than its content-length of ${response.contentLength}`));
        return false;
      }
      if (!isAt(chunk, into!, received)) into!.set(chunk, received); // read into staging: copy it in place
      received += length;
      if (received === into!.length) bodyComplete();
      return true;
    };

    const makeResponse = (status: number, headers: Map<string, string>, contentLength: number | undefined): Http1Response => {
      const readInto = (target: Uint8Array): Promise<void> => {
        if (contentLength === undefined) {
          socket.destroy();
          return Promise.reject(unframed(headers));
        }
        if (into) return Promise.reject(new Http1Error('the body was already read'));
        if (target.length !== contentLength) return Promise.reject(new Http1Error(`readInto needs ${contentLength} bytes, got ${target.length}`));
        if (failure) return Promise.reject(failure);
        into = target;
        const body = new Promise<void>((resolve, reject) => (finishBody = { resolve, reject }));
        target.set(early);
        received = early.length;
        if (received === contentLength) bodyComplete();
        else socket.resume();
        return body;
      };
      return {
        status,
        headers,
        contentLength,
        readInto,
        async text() {
          const bytes = new Uint8Array(contentLength ?? 0);
          await readInto(bytes);
          return new TextDecoder().decode(bytes);
        },
        discard() {
          failure ??= new Http1Error('discarded');
          socket.destroy();
        },
      };
    };

    const onread = { buffer: nextBuffer, callback: onRead };
    const socket = secure
      ? loadTls().connect({ host, port, servername: net.isIP(host) ? undefined : host, ALPNProtocols: ['http/1.1'], onread } as tlsModule.ConnectionOptions)
      : net.connect({ host, port, onread });
    socket.setNoDelay(true);
    socket.setTimeout(request.idleTimeoutMs, () => fail(new Http1Error(`${request.method} ${url.pathname}: no data for ${request.idleTimeoutMs} ms`)));
    socket.on('error', fail);
    socket.on('close', () => {
      if (!response) return fail(new Http1Error(`${request.method} ${url.pathname}: the connection closed before a response`));
      const got = into ? received : early.length;
      if (response.contentLength !== undefined && got < response.contentLength) fail(new Http1Error(`${request.method} ${url.pathname}: the connection closed after ${got} of ${response.contentLength} body bytes`));
    });

    let written = false;
    const wrote = () => {
      if (written) return;
      written = true;
      request.onWritten?.();
    };
    socket.once('close', wrote);
    Promise.resolve(request.headers).then(
      (headers) => {
        if (failure) return;
        const lines = [`${request.method} ${url.pathname}${url.search} HTTP/1.1`];
        for (const [name, value] of Object.entries(headers)) {
          // A line break in a header would end it early and start another (header injection).
          if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) return fail(new Http1Error(`header ${JSON.stringify(name)} has a line break`));
          lines.push(`${name}: ${value}`);
        }
        const body = request.body === undefined ? undefined : Buffer.from(request.body, 'utf8');
        if (body) lines.push(`content-length: ${body.length}`);
        lines.push('connection: close', '', '');
        const requestHead = Buffer.from(lines.join('\r\n'), 'latin1');
        socket.write(body ? Buffer.concat([requestHead, body]) : requestHead, wrote);
      },
      (error: Error) => fail(error),
    );
  });
}
