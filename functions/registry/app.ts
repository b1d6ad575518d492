import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import * as z from 'zod';
import { BadRequestError, HttpError, NotFoundError } from '../core/errors.ts';
import { errorResponse, json, jsonBody } from '../adapters/http.ts';
import { assertValidAlias, assertValidName, shown } from '../core/names.ts';
import { promote, rollback, setRoutes, type RolloutDeps } from '../core/registry/rollout.ts';
import { describePipeline, pushPipeline } from '../core/pipeline/registry.ts';

export interface RegistryHandlerDeps extends RolloutDeps {
  logger: Logger;
}

type Result = APIGatewayProxyStructuredResultV2;

const ALIAS_ROUTE = /^\/v2\/models\/([^/]+)\/aliases\/([^/]+)(?:\/(promote|rollback))?\/?$/;
const PIPELINE_ROUTE = /^\/v2\/pipelines\/([^/]+)(?:\/versions\/([^/]+))?\/?$/;

const promoteSchema = z.object({
  version: z.string(),
  canary_weight: z.number().int().min(1).max(100).optional(),
  revision: z.number().int().nonnegative().optional(),
  force: z.boolean().optional(),
});
const routesSchema = z.object({
  routes: z.array(z.object({ version: z.string(), weight: z.number() })),
  revision: z.number().int().nonnegative(),
});
/** Registry requests are a few small fields: larger bodies are refused before they are parsed. */
const MAX_BODY = 64 * 1024;
const rollbackSchema = z.object({ revision: z.number().int().nonnegative().optional() });


/** Longer than any valid name even fully percent-encoded (64 characters, 3 bytes each): refused undecoded. */
const MAX_SEGMENT = 3 * 64;

/**
 * A model or alias name from the path, checked before any table call (a key over DynamoDB's limit
 * would be a 500): 400 for anything invalid, with at most 80 characters of it in the message.
 */
function nameSegment(raw: string, what: 'model name' | 'alias'): string {
  let value: string;
  try {
    value = raw.length > MAX_SEGMENT ? raw : decodeURIComponent(raw);
  } catch {
    throw new BadRequestError(`invalid ${what} ${shown(raw)}: not a valid percent-encoded path segment`);
  }
  return what === 'alias' ? assertValidAlias(value) : assertValidName(value, what);
}

function parse<T>(schema: z.ZodType<T>, event: APIGatewayProxyEventV2): T {
  const parsed = schema.safeParse(jsonBody(event, { maxBytes: MAX_BODY, empty: {} }));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new BadRequestError(`invalid request${issue?.path.length ? ` at ${issue.path.join('.')}` : ''}: ${issue?.message}`);
  }
  return parsed.data;
}

/** Rollouts over the HTTP API: read an alias, set its routes, promote (fully or as a canary), roll back. */
export function createRegistryHandler(deps: RegistryHandlerDeps) {
  async function route(event: APIGatewayProxyEventV2): Promise<Result> {
    const method = event.requestContext.http.method.toUpperCase();
    const pipeline = PIPELINE_ROUTE.exec(event.rawPath);
    if (pipeline) return pipelineRoute(method, event, nameSegment(pipeline[1]!, 'model name'), pipeline[2] === undefined ? undefined : nameSegment(pipeline[2], 'model name'));
    const match = ALIAS_ROUTE.exec(event.rawPath);
    if (!match) throw new NotFoundError(`no route for ${method} ${event.rawPath}`);
    const model = nameSegment(match[1]!, 'model name');
    const alias = nameSegment(match[2]!, 'alias');
    const action = match[3];
    if (action === 'promote' && method === 'POST') {
      const body = parse(promoteSchema, event);
      return json(200, await promote(deps, { model, alias, version: body.version, canaryWeight: body.canary_weight, revision: body.revision, force: body.force }));
    }
    if (action === 'rollback' && method === 'POST') {
      const body = parse(rollbackSchema, event);
      return json(200, await rollback(deps, { model, alias, revision: body.revision }));
    }
    if (action === undefined && method === 'PUT') {
      const body = parse(routesSchema, event);
      return json(200, await setRoutes(deps, { model, alias, routes: body.routes, revision: body.revision }));
    }
    if (action === undefined && method === 'GET') {
      const record = await deps.store.registry!.getAlias(model, alias);
      if (!record) throw new NotFoundError(`model '${model}' has no alias '${alias}'`);
      return json(200, record);
    }
    throw new HttpError(405, `method ${method} is not allowed on ${event.rawPath}`);
  }

  /** PUT registers a pipeline version (201); GET shows the latest pipeline version, or the one named. */
  async function pipelineRoute(method: string, event: APIGatewayProxyEventV2, name: string, version: string | undefined): Promise<Result> {
    if (method === 'PUT' && version === undefined) {
      const { manifest, resolved, fused } = await pushPipeline(deps.store, { name, spec: jsonBody(event, { maxBytes: MAX_BODY }) });
      return json(201, {
        name,
        version: manifest.version,
        created: manifest.created,
        inputs: manifest.inputs,
        outputs: manifest.outputs,
        resolved: resolved.resolved,
        ...(fused ? { fused: { version: fused.manifest.version, lineage: fused.manifest.lineage, max_abs_diff: fused.maxAbsDiff, deduplicated_initializers: fused.deduplicated } } : {}),
      });
    }
    if (method === 'GET') return json(200, await describePipeline(deps.store, name, version));
    throw new HttpError(405, `method ${method} is not allowed on ${event.rawPath}; use ${version === undefined ? 'GET or PUT' : 'GET'}`);
  }

  return async function registryHandler(event: APIGatewayProxyEventV2): Promise<Result> {
    try {
      return await route(event);
    } catch (error) {
      return errorResponse(error, (level, message, fields) => deps.logger[level](message, fields));
    }
  };
}
