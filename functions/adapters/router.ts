import { Router } from '@aws-lambda-powertools/event-handler/http';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { BadRequestError, HttpError, NotFoundError } from '../core/platform/errors.ts';
import { errorResponse, type ErrorLog, type HttpResult } from './http.ts';

/** Fields API Gateway leaves out when empty, and serverless-offline (the local stack) sends as null. */
const OPTIONAL_FIELDS = ['body', 'pathParameters', 'queryStringParameters', 'stageVariables', 'cookies'] as const;

/** The event as API Gateway sends it: the router refuses a null where it expects a field to be absent. */
function withoutNulls(event: APIGatewayProxyEventV2): APIGatewayProxyEventV2 {
  const copy: Record<string, unknown> = { ...event };
  for (const field of OPTIONAL_FIELDS) if (copy[field] === null) delete copy[field];
  return copy as unknown as APIGatewayProxyEventV2;
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';

/** What a route's handler gets: the path parameters (decoded by the router) and the event itself. */
export interface RouteRequest {
  params: Record<string, string>;
  event: APIGatewayProxyEventV2;
}

export type RouteHandler = (request: RouteRequest) => Promise<HttpResult>;

/**
 * An API function's routes, declared once with Powertools' router (`/v2/models/:name/...`). Every
 * error, the router's own included, is answered by adapters/http.ts's one mapping as `{"error"}`:
 * an unknown path 404, a known path with another method 405 naming the methods it has, a malformed
 * percent-escape 400. Used by every API function but inference, which keeps its own routes: the
 * router turns each event into a Web Request and back, a cost on every large binary body
 * (README, "Routing").
 */
export class ApiRouter {
  private readonly app = new Router();
  private readonly declared: { method: Method; pattern: RegExp }[] = [];

  private readonly log: ErrorLog;
  private readonly metrics: Metrics | undefined;

  /** `metrics`: where an answered error is also counted (adapters/http.ts, errorResponse). */
  constructor(log: ErrorLog, metrics?: Metrics) {
    this.log = log;
    this.metrics = metrics;
    // Handlers return API Gateway results, which the router passes through as they are.
    const result = (r: HttpResult) => r as never;
    this.app.notFound(async (_error, { event }) => {
      const { method, path } = (event as APIGatewayProxyEventV2).requestContext.http;
      const allowed = this.methodsOn(path);
      const error = allowed.length > 0 ? new HttpError(405, `method ${method} is not allowed on ${path}; use ${allowed.join(' or ')}`) : new NotFoundError(`no route for ${method} ${path}`);
      return result(errorResponse(error, this.log, this.metrics));
    });
    this.app.errorHandler(URIError, async (_error, { event }) =>
      result(errorResponse(new BadRequestError(`malformed percent-encoding in path ${JSON.stringify((event as APIGatewayProxyEventV2).rawPath.slice(0, 200))}`), this.log, this.metrics)),
    );
    this.app.errorHandler(Error, async (error) => result(errorResponse(error, this.log, this.metrics)));
  }

  on(method: Method, path: string, handler: RouteHandler): this {
    this.declared.push({ method, pattern: new RegExp(`^${path.replace(/\./g, '\\.').replace(/:[A-Za-z]+/g, '[^/]+')}/?$`) });
    const register = { GET: this.app.get, POST: this.app.post, PUT: this.app.put, DELETE: this.app.delete, PATCH: this.app.patch }[method].bind(this.app);
    register(path as `/${string}`, async ({ params, event }) => (await handler({ params: params as Record<string, string>, event: event as APIGatewayProxyEventV2 })) as never);
    return this;
  }

  /** The methods declared on a path, in declaration order. */
  methodsOn(path: string): Method[] {
    return [...new Set(this.declared.filter((r) => r.pattern.test(path)).map((r) => r.method))];
  }

  /** The Lambda handler; without a context (a local server, a test) the routes get an empty one: none of them reads it. */
  handler(): (event: APIGatewayProxyEventV2, context?: Context) => Promise<APIGatewayProxyStructuredResultV2> {
    return async (event, context) => (await this.app.resolve(withoutNulls(event), context ?? ({} as Context))) as APIGatewayProxyStructuredResultV2;
  }
}
