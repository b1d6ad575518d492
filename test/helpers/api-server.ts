import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { apiEvent } from './batch-stack.ts';

/**
 * An HTTP API on loopback as the CLI reaches it: each request becomes API Gateway's payload v2 event
 * (apiEvent), handed to `route` (an API function's handler, or a choice between several as API
 * Gateway routes them to their functions), and its result is the response.
 */
export async function serveApi(route: (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>): Promise<{ server: Server; url: string }> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const result = await route(apiEvent(req.method!, new URL(req.url!, 'http://x').pathname, body === '' ? undefined : body));
    res.writeHead(result.statusCode!, result.headers as Record<string, string>).end(result.body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}
