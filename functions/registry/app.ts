import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import * as z from 'zod';
import { BadRequestError, NotFoundError } from '../core/platform/errors.ts';
import { json, jsonBody, type ErrorLog } from '../adapters/http.ts';
import { ApiRouter } from '../adapters/router.ts';
import { assertValidAlias, assertValidName } from '../core/artifacts/names.ts';
import { promote, rollback, setRoutes, type RolloutDeps } from '../core/registry/rollout.ts';
import { describePipeline, pushPipeline } from '../core/pipelines/registry.ts';

export interface RegistryHandlerDeps extends RolloutDeps {
  logger: Logger;
}

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


/**
 * A model or alias name from the path (the router decoded it), checked before any table call (a key
 * over DynamoDB's limit would be a 500): 400 for anything invalid, with at most 80 characters of it
 * in the message.
 */
function nameSegment(value: string, what: 'model name' | 'alias'): string {
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
  const log: ErrorLog = (level, message, fields) => deps.logger[level](message, fields);
  const target = (params: Record<string, string>) => ({ model: nameSegment(params.name!, 'model name'), alias: nameSegment(params.alias!, 'alias') });
  return new ApiRouter(log)
    .on('GET', '/v2/models/:name/aliases/:alias', async ({ params }) => {
      const { model, alias } = target(params);
      const record = await deps.store.registry!.getAlias(model, alias);
      if (!record) throw new NotFoundError(`model '${model}' has no alias '${alias}'`);
      return json(200, record);
    })
    .on('PUT', '/v2/models/:name/aliases/:alias', async ({ params, event }) => {
      const { model, alias } = target(params);
      const body = parse(routesSchema, event);
      return json(200, await setRoutes(deps, { model, alias, routes: body.routes, revision: body.revision }));
    })
    .on('POST', '/v2/models/:name/aliases/:alias/promote', async ({ params, event }) => {
      const { model, alias } = target(params);
      const body = parse(promoteSchema, event);
      return json(200, await promote(deps, { model, alias, version: body.version, canaryWeight: body.canary_weight, revision: body.revision, force: body.force }));
    })
    .on('POST', '/v2/models/:name/aliases/:alias/rollback', async ({ params, event }) => {
      const { model, alias } = target(params);
      const body = parse(rollbackSchema, event);
      return json(200, await rollback(deps, { model, alias, revision: body.revision }));
    })
    .on('PUT', '/v2/pipelines/:name', async ({ params, event }) => {
      const name = nameSegment(params.name!, 'model name');
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
    })
    // GET shows the latest pipeline version, or the one named.
    .on('GET', '/v2/pipelines/:name', async ({ params }) => json(200, await describePipeline(deps.store, nameSegment(params.name!, 'model name'), undefined)))
    .on('GET', '/v2/pipelines/:name/versions/:version', async ({ params }) =>
      json(200, await describePipeline(deps.store, nameSegment(params.name!, 'model name'), nameSegment(params.version!, 'model name'))),
    )
    .handler();
}
