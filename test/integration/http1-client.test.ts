import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http1Request, parseResponseHead, type Http1Request } from '../../functions/core/coldstart/http1-client.ts';

// Real servers on loopback: node:http and node:https for well-formed answers, raw sockets for the
// malformed ones no HTTP server library sends.
const FIXTURES = join(import.meta.dirname, '..', '..', 'fixtures', 'tls');
const BODY = randomBytes(3 * 1024 * 1024 + 17);
const NOT_FOUND = '<Error><Code>NoSuchKey</Code></Error>';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}
let seen: Seen[] = [];

function serve(req: http.IncomingMessage, res: http.ServerResponse) {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => (body += c));
  req.on('end', () => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
    if (req.url === '/object') {
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      const [start, end] = range ? [Number(range[1]), Number(range[2])] : [0, BODY.length - 1];
      res.writeHead(range ? 206 : 200, { 'content-length': end - start + 1, ...(range ? { 'content-range': `bytes ${start}-${end}/${BODY.length}` } : {}) });
      res.end(BODY.subarray(start, end + 1));
    } else if (req.url === '/echo') {
      const answer = Buffer.from(JSON.stringify({ got: body }));
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length, 'x-twice': ['a', 'b'] });
      res.end(answer);
    } else if (req.url === '/chunked') {
      res.writeHead(200, { 'content-type': 'text/plain' }); // no length: node:http sends it chunked
      res.write('part one, ');
      res.end('part two');
    } else {
      res.writeHead(404, { 'content-type': 'application/xml', 'content-length': NOT_FOUND.length });
      res.end(NOT_FOUND);
    }
  });
}

/** A server that writes `reply` on each connection, as given (then waits, or closes when `close`). */
async function rawServer(reply: (socket: net.Socket) => void): Promise<{ url: string; close: () => Promise<void> }> {
  const server = net.createServer((socket) => {
    socket.once('data', () => reply(socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      server.close();
      return Promise.resolve();
    },
  };
}

/**
 * The next connection `server` accepts: `accepted` resolves when it is opened, `closed` with the
 * bytes the server had read from it once it closed. An event to wait on, where a sleep would only
 * hope that nothing more is coming.
 */
function nextConnection(server: net.Server): { accepted: Promise<void>; closed: Promise<number> } {
  let accept!: () => void;
  const accepted = new Promise<void>((resolve) => (accept = resolve));
  const closed = new Promise<number>((resolve) =>
    server.once('connection', (socket: net.Socket) => {
      accept();
      socket.once('close', () => resolve(socket.bytesRead));
    }),
  );
  return { accepted, closed };
}

let httpServer: http.Server;
let httpsServer: https.Server;
let base: string;
let secureBase: string;

const get = (path: string, extra: Partial<Http1Request> = {}, at = base) => {
  const url = new URL(path, at);
  return http1Request(url, { method: 'GET', headers: { host: url.host }, idleTimeoutMs: 5_000, ...extra });
};

beforeAll(async () => {
  httpServer = http.createServer(serve);
  httpsServer = https.createServer({ key: readFileSync(join(FIXTURES, 'localhost.key')), cert: readFileSync(join(FIXTURES, 'localhost.crt')) }, serve);
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => httpsServer.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
  secureBase = `https://localhost:${(httpsServer.address() as AddressInfo).port}`;
});
afterAll(async () => {
  httpServer?.closeAllConnections();
  httpsServer?.closeAllConnections();
  await new Promise((resolve) => httpServer?.close(resolve));
  await new Promise((resolve) => httpsServer?.close(resolve));
});

describe('parseResponseHead', () => {
  it('reads the status and the headers, names in lower case, repeats joined', () => {
    const { status, headers } = parseResponseHead('HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nX-A: 1\r\nx-a:  2 \r\nETag: "e:1"');
    expect(status).toBe(206);
    expect([...headers]).toEqual([
      ['content-length', '10'],
      ['x-a', '1, 2'],
      ['etag', '"e:1"'],
    ]);
  });

  it('refuses what is not an HTTP/1 head', () => {
    expect(() => parseResponseHead('SSH-2.0-OpenSSH_9.6')).toThrow('not an HTTP/1.1 status line: "SSH-2.0-OpenSSH_9.6"');
    expect(() => parseResponseHead('HTTP/1.1 200 OK\r\nno colon here')).toThrow('malformed header line: "no colon here"');
  });
});

describe('http1Request against node:http on loopback', () => {
  it('reads a ranged body straight into the buffer it is given, and sends the request as asked', async () => {
    seen = [];
    let written = 0;
    const url = new URL('/object', base);
    const response = await http1Request(url, { method: 'GET', headers: { host: url.host, range: 'bytes=1000-2000999' }, idleTimeoutMs: 5_000, onWritten: () => written++ });
    expect(response.status).toBe(206);
    expect(response.contentLength).toBe(2_000_000);
    expect(response.headers.get('content-range')).toBe(`bytes 1000-2000999/${BODY.length}`);
    const into = new Uint8Array(2_000_010);
    await response.readInto(into.subarray(5, 2_000_005));
    expect(Buffer.from(into.subarray(5, 2_000_005)).equals(BODY.subarray(1000, 2_001_000))).toBe(true);
    expect([...into.subarray(0, 5), ...into.subarray(2_000_005)]).toEqual(new Array(10).fill(0)); // nothing outside it
    expect(written).toBe(1);
    expect(seen).toEqual([{ method: 'GET', url: '/object', headers: { host: url.host, range: 'bytes=1000-2000999', connection: 'close' }, body: '' }]);
  });

  it('reads a whole object larger than the socket reads it in', async () => {
    const response = await get('/object');
    const into = new Uint8Array(response.contentLength!);
    await response.readInto(into);
    expect(Buffer.from(into).equals(BODY)).toBe(true);
  });

  it('sends a POST body with its content-length and reads the answer as text', async () => {
    seen = [];
    const response = await get('/echo', { method: 'POST', body: '{"TableName":"ü"}' });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-twice')).toBe('a, b');
    expect(JSON.parse(await response.text())).toEqual({ got: '{"TableName":"ü"}' });
    expect(seen[0]!.headers['content-length']).toBe(String(Buffer.byteLength('{"TableName":"ü"}')));
  });

  it('connects while its headers are still being made, and fails without sending when they cannot be', async () => {
    seen = [];
    const url = new URL('/echo', base);
    let sign!: (headers: Record<string, string>) => void;
    const first = nextConnection(httpServer);
    const pending = http1Request(url, { method: 'GET', headers: new Promise((resolve) => (sign = resolve)), idleTimeoutMs: 5_000 });
    await first.accepted; // the server accepted a connection while the headers were still unsigned
    expect(seen).toEqual([]);
    sign({ host: url.host, 'x-signed': 'yes' });
    expect(await (await pending).text()).toBe('{"got":""}');
    expect(seen.map((s) => s.headers['x-signed'])).toEqual(['yes']);
    expect(await first.closed).toBeGreaterThan(0);

    let written = 0;
    let refuse!: (error: Error) => void;
    const second = nextConnection(httpServer);
    const refused = http1Request(url, { method: 'GET', headers: new Promise((_, reject) => (refuse = reject)), idleTimeoutMs: 5_000, onWritten: () => written++ });
    await second.accepted;
    refuse(new Error('no credentials'));
    await expect(refused).rejects.toThrow('no credentials');
    expect(await second.closed).toBe(0); // the connection closed with not one byte sent on it
    expect(seen).toHaveLength(1);
    expect(written).toBe(1); // told, so a caller waiting for the write goes on
  });

  it('refuses a header with a line break, sending nothing', async () => {
    seen = [];
    const url = new URL('/echo', base);
    const connection = nextConnection(httpServer);
    // The headers come once the connection is open, so that it is there to stay silent on.
    const headers = connection.accepted.then(() => ({ host: url.host, 'x-a': 'v\r\nx-injected: 1' }));
    await expect(http1Request(url, { method: 'GET', headers, idleTimeoutMs: 5_000 })).rejects.toThrow('header "x-a" has a line break');
    expect(await connection.closed).toBe(0);
    expect(seen).toEqual([]);
  });

  it('gives a 404 with its length, and discards it unread', async () => {
    const response = await get('/missing');
    expect(response.status).toBe(404);
    expect(response.contentLength).toBe(NOT_FOUND.length);
    response.discard();
    await expect(response.readInto(new Uint8Array(response.contentLength!))).rejects.toThrow('discarded');
  });

  it('gives a chunked answer its status, and refuses to read its body (the boot fetch then falls back to the SDK)', async () => {
    const response = await get('/chunked');
    expect([response.status, response.contentLength, response.headers.get('transfer-encoding')]).toEqual([200, undefined, 'chunked']);
    await expect(response.text()).rejects.toThrow('unsupported transfer-encoding: chunked');
    await expect(response.readInto(new Uint8Array(18))).rejects.toThrow('unsupported transfer-encoding: chunked');
  });

  it('refuses a buffer of the wrong length and a second read', async () => {
    const response = await get('/echo');
    const length = response.contentLength!;
    await expect(response.readInto(new Uint8Array(length + 1))).rejects.toThrow(`readInto needs ${length} bytes, got ${length + 1}`);
    expect(await response.text()).toBe('{"got":""}');
    await expect(response.text()).rejects.toThrow('the body was already read');
  });

  it('fails when nothing listens', async () => {
    const closed = await rawServer(() => undefined);
    await closed.close();
    await expect(get('/object', {}, closed.url)).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('http1Request against malformed answers', () => {
  it('fails a body cut short by a closed connection', async () => {
    const server = await rawServer((s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345'));
    const response = await get('/x', {}, server.url);
    await expect(response.readInto(new Uint8Array(10))).rejects.toThrow('GET /x: the connection closed after 5 of 10 body bytes');
    await server.close();
  });

  it('fails an answer that sends more than its content-length', async () => {
    const server = await rawServer((s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more'));
    await expect(get('/x', {}, server.url)).rejects.toThrow('response sent 15 bytes for a content-length of 5');
    await server.close();
  });

  it('fails the body of an answer without a length, and an answer with a malformed one, a head over 16 KB, or not HTTP', async () => {
    const noLength = await rawServer((s) => s.end('HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nuntil close'));
    const unframed = await get('/x', {}, noLength.url);
    expect([unframed.status, unframed.contentLength]).toEqual([404, undefined]);
    await expect(unframed.text()).rejects.toThrow('no content-length');
    const badLength = await rawServer((s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n'));
    await expect(get('/x', {}, badLength.url)).rejects.toThrow('malformed content-length: "12abc"');
    const huge = await rawServer((s) => s.write(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(17_000)}\r\n\r\n`));
    await expect(get('/x', {}, huge.url)).rejects.toThrow('response head over 16384 bytes');
    const notHttp = await rawServer((s) => s.end('SSH-2.0-OpenSSH_9.6\r\n\r\n'));
    await expect(get('/x', {}, notHttp.url)).rejects.toThrow('not an HTTP/1.1 status line');
    await Promise.all([noLength.close(), badLength.close(), huge.close(), notHttp.close()]);
  });

  it('gives up on a connection that goes quiet', async () => {
    const server = await rawServer((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n123'));
    const response = await get('/x', { idleTimeoutMs: 200 }, server.url);
    await expect(response.readInto(new Uint8Array(10))).rejects.toThrow('GET /x: no data for 200 ms');
    await server.close();
  });
});

describe('http1Request over TLS', () => {
  it('refuses a certificate it does not trust, then reads in place over TLS once the CA is trusted', async () => {
    await expect(get('/object', {}, secureBase)).rejects.toThrow(/self-signed certificate/);
    const defaults = tls.getCACertificates('default');
    tls.setDefaultCACertificates([...defaults, readFileSync(join(FIXTURES, 'localhost.crt'), 'utf8')]);
    try {
      const response = await get('/object', { headers: { host: new URL(secureBase).host, range: 'bytes=0-1048575' } }, secureBase);
      expect(response.status).toBe(206);
      const into = new Uint8Array(response.contentLength!);
      await response.readInto(into);
      expect(Buffer.from(into).equals(BODY.subarray(0, 1_048_576))).toBe(true);
    } finally {
      tls.setDefaultCACertificates(defaults);
    }
  });
});
