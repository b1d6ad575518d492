import type { MiddlewareObj } from '@middy/core';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import { readEnv } from './env.ts';

/**
 * X-Ray through the Powertools Tracer, on only where the stage's `tracing` parameter is Active
 * (serverless.yml sets POWERTOOLS_TRACE_ENABLED from it). The tracer and the X-Ray SDK are imported
 * only when tracing is on: off, no function (the inference function's cold start above all) evaluates
 * them. On, they are imported during init (started by the first `traced` or `traceClient` call), and
 * the middleware waits for them on the first invocation. Outside Lambda (no AWS_EXECUTION_ENV: the
 * local stack, tests) the Tracer disables itself and sends nothing.
 */
type TracerModules = { tracer: Tracer; middleware: MiddlewareObj };

let loading: Promise<TracerModules> | undefined;
let loaded: TracerModules | undefined;
/** Clients made before the tracer was imported, captured as soon as it is. */
const pending: { middlewareStack: unknown }[] = [];

export function tracingEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return readEnv(['POWERTOOLS_TRACE_ENABLED'], env).POWERTOOLS_TRACE_ENABLED === 'true';
}

function load(): Promise<TracerModules> {
  loading ??= (async () => {
    const [{ Tracer }, { captureLambdaHandler }] = await Promise.all([import('@aws-lambda-powertools/tracer'), import('@aws-lambda-powertools/tracer/middleware')]);
    const tracer = new Tracer();
    // A model's outputs are data, and can exceed a segment's 64 KB: the response is not recorded.
    const middleware = captureLambdaHandler(tracer, { captureResponse: false }) as MiddlewareObj;
    for (const client of pending.splice(0)) tracer.captureAWSv3Client(client);
    loaded = { tracer, middleware };
    return loaded;
  })();
  return loading;
}

/** Whether this environment has imported the tracer (tests: off means never). */
export const tracerImported = (): boolean => loaded !== undefined;

/** The handler with the tracer's middleware (a subsegment per invocation, cold-start and service annotations) when tracing is on; as it was when off. */
export function traced<H extends { use(middleware: MiddlewareObj): H }>(handler: H, env: NodeJS.ProcessEnv = process.env): H {
  if (!tracingEnabled(env)) return handler;
  void load();
  const middleware = async () => (loaded ?? (await load())).middleware;
  return handler.use({
    before: async (request) => (await middleware()).before?.(request),
    after: async (request) => (await middleware()).after?.(request),
    onError: async (request) => (await middleware()).onError?.(request),
  });
}

/** An AWS SDK v3 client whose calls are subsegments when tracing is on; the client itself either way. */
export function traceClient<C extends { middlewareStack: unknown }>(client: C, env: NodeJS.ProcessEnv = process.env): C {
  if (!tracingEnabled(env)) return client;
  if (loaded) loaded.tracer.captureAWSv3Client(client);
  else {
    pending.push(client);
    void load();
  }
  return client;
}
