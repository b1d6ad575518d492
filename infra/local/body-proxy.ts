/**
 * The local HTTP API's front door: a loopback proxy before serverless-offline that makes it pass
 * request bodies to the handlers as API Gateway's HTTP API does (payload 2.0), bytes untouched.
 *
 * serverless-offline 14 (src/events/http/HttpServer.js, lambda-events/LambdaProxyIntegrationEventV2.js)
 * base64-encodes a body only when its Content-Type contains `application/octet-stream` or
 * `multipart/form-data`; every other body, including one with no Content-Type, it decodes as UTF-8
 * text, so bytes that are not UTF-8 reach the handler as U+FFFD. API Gateway base64-encodes every body
 * whose Content-Type is not a text type (none included). So a body with no text Content-Type, or one
 * that declares binary content (the binary tensor data extension's header, a Content-Encoding),
 * is forwarded with `Content-Type: application/octet-stream`, which makes serverless-offline pass
 * its raw bytes base64-encoded with `isBase64Encoded: true`; everything else goes through unchanged.
 * Responses come back as they are.
 */
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import { once } from 'node:events';

/** Content types API Gateway passes to Lambda as text; every other body arrives base64-encoded. */
export function isTextContentType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const media = contentType.split(';')[0]!.trim().toLowerCase();
  return media.startsWith('text/') || ['application/json', 'application/xml', 'application/javascript'].includes(media);
}

/** Whether serverless-offline must be told that this request's body is bytes. */
export function forwardAsBytes(headers: IncomingHttpHeaders): boolean {
  const encoding = headers['content-encoding']?.trim().toLowerCase();
  return (
    !isTextContentType(headers['content-type']) ||
    headers['inference-header-content-length'] !== undefined ||
    (encoding !== undefined && encoding !== '' && encoding !== 'identity')
  );
}

export interface BodyProxy {
  stop(): Promise<void>;
}

export async function startBodyProxy(options: { port: number; targetPort: number; host?: string }): Promise<BodyProxy> {
  const host = options.host ?? '127.0.0.1';
  const server = createServer((incoming, outgoing) => {
    const headers = { ...incoming.headers };
    const hasBody = incoming.headers['content-length'] !== undefined ? incoming.headers['content-length'] !== '0' : incoming.headers['transfer-encoding'] !== undefined;
    if (hasBody && forwardAsBytes(incoming.headers)) headers['content-type'] = 'application/octet-stream';
    const upstream = request({ host, port: options.targetPort, method: incoming.method, path: incoming.url, headers }, (answer) => {
      outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(outgoing);
    });
    upstream.on('error', (error) => {
      if (outgoing.headersSent) {
        outgoing.destroy(error);
        return;
      }
      outgoing.writeHead(502, { 'content-type': 'application/json' });
      outgoing.end(JSON.stringify({ error: `the local API (serverless-offline) did not answer: ${error.message}` }));
    });
    incoming.pipe(upstream);
  });
  server.listen(options.port, host);
  await once(server, 'listening');
  return {
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
