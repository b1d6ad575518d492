import type { Router } from '@aws-lambda-powertools/event-handler/http';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { BadRequestError, NotFoundError } from '../core/errors.ts';
import { errorResponse, type ErrorLog } from './http.ts';

/** Fields API Gateway leaves out when empty, and serverless-offline (the local stack) sends as null. */
const OPTIONAL_FIELDS = ['body', 'pathParameters', 'queryStringParameters', 'stageVariables', 'cookies'] as const;

/** The event as API Gateway sends it: Powertools' router refuses a null where it expects a field to be absent. */
export function withoutNulls(event: APIGatewayProxyEventV2): APIGatewayProxyEventV2 {
  const copy: Record<string, unknown> = { ...event };
  for (const field of OPTIONAL_FIELDS) if (copy[field] === null) delete copy[field];
  return copy as unknown as APIGatewayProxyEventV2;
}

/** The router's unknown routes, malformed path escapes and thrown errors, answered as every API function answers them. */
export function answerRouterErrors(app: Router, log: ErrorLog): void {
  const result = (r: APIGatewayProxyStructuredResultV2) => r as never;
  app.notFound(async (_error, { event }) => {
    const { method, path } = (event as APIGatewayProxyEventV2).requestContext.http;
    return result(errorResponse(new NotFoundError(`no route for ${method} ${path}`), log));
  });
  // The router decodes path parameters itself: a malformed %-escape is the client's error.
  app.errorHandler(URIError, async (_error, { event }) =>
    result(errorResponse(new BadRequestError(`malformed percent-encoding in path ${JSON.stringify((event as APIGatewayProxyEventV2).rawPath.slice(0, 200))}`), log)),
  );
  app.errorHandler(Error, async (error) => result(errorResponse(error, log)));
}
