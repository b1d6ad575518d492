import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import * as z from 'zod';
import { BadRequestError } from '../core/platform/errors.ts';
import type { FederationRecord, RoundRecord } from '../core/federated/federation-table.ts';
import type { FederationService } from '../core/federated/rounds.ts';
import { header, json, jsonBody, type ErrorLog } from '../adapters/http.ts';
import { ApiRouter } from '../adapters/router.ts';

type Log = ErrorLog & ((level: 'info', message: string, fields: Record<string, unknown>) => void);

export interface FederationApiDeps {
  service: FederationService;
  log: Log;
}

const MAX_BODY = 64 * 1024;

/** The client token join issued, in its own header: Authorization is the gateway's (JWT or SigV4). */
export const CLIENT_TOKEN_HEADER = 'x-mass-client-token';

function clientToken(event: APIGatewayProxyEventV2): string | undefined {
  return header(event, CLIENT_TOKEN_HEADER);
}

function roundNumber(raw: string): number {
  if (!/^[1-9][0-9]{0,5}$/.test(raw)) throw new BadRequestError(`round ${JSON.stringify(raw.slice(0, 20))} is not a round number`);
  return Number(raw);
}

export function federationView(federation: FederationRecord, round?: RoundRecord) {
  const base = `/v2/federations/${federation.id}`;
  return { federation, ...(round ? { round } : {}), links: { self: base, join: `${base}/clients`, ...(federation.state === 'paused' ? { resume: `${base}/resume` } : {}) } };
}

/**
 * The federation API: create and read federations (managers), join, fetch a task and report an
 * update (data owners, with the token join gave them). Routes are declared once (adapters/router.ts).
 */
export function createFederationApiHandler(deps: FederationApiDeps): (event: APIGatewayProxyEventV2, context?: Context) => Promise<APIGatewayProxyStructuredResultV2> {
  const { service } = deps;
  const status = async (id: string) => {
    const federation = await service.get(id);
    const round = federation.round > 0 ? await service.getRound(id, federation.round) : undefined;
    return federationView(federation, round);
  };
  return new ApiRouter(deps.log)
    .on('POST', '/v2/federations', async ({ event }) => {
      const federation = await service.create(jsonBody(event, { maxBytes: MAX_BODY }));
      deps.log('info', 'federation created', { federation: federation.id });
      return json(201, federationView(federation), { location: `/v2/federations/${federation.id}` });
    })
    .on('GET', '/v2/federations/:id', async ({ params }) => json(200, await status(params.id!)))
    .on('GET', '/v2/federations/:id/rounds/:round', async ({ params }) => {
      await service.get(params.id!);
      return json(200, await service.getRound(params.id!, roundNumber(params.round!)));
    })
    .on('POST', '/v2/federations/:id/resume', async ({ params }) => {
      await service.resume(params.id!);
      return json(200, await status(params.id!));
    })
    .on('POST', '/v2/federations/:id/clients', async ({ params, event }) => {
      const body = z.strictObject({ publicKey: z.string().optional() }).safeParse(jsonBody(event, { maxBytes: MAX_BODY, empty: {} }));
      if (!body.success) throw new BadRequestError(`invalid join request: ${z.prettifyError(body.error)}`);
      return json(201, await service.join(params.id!, body.data));
    })
    .on('GET', '/v2/federations/:id/clients/:client/task', async ({ params, event }) => json(200, await service.task(params.id!, params.client!, clientToken(event))))
    .on('POST', '/v2/federations/:id/rounds/:round/updates/:client', async ({ params, event }) => {
      // An empty body reports the uploaded update; {unmask: {dropped client: seed}} is a survivor's reveal after a dropout.
      const body = z.strictObject({ unmask: z.record(z.string().max(64), z.string().max(64)).optional() }).safeParse(jsonBody(event, { maxBytes: MAX_BODY, empty: {} }));
      if (!body.success) throw new BadRequestError(`invalid update report: ${z.prettifyError(body.error)}`);
      const round = roundNumber(params.round!);
      if (body.data.unmask) return json(200, await service.reveal(params.id!, round, params.client!, clientToken(event), body.data.unmask));
      return json(200, await service.submit(params.id!, round, params.client!, clientToken(event)));
    })
    .handler();
}

const deadlineSchema = z.strictObject({ federation: z.string().min(1).max(64), round: z.number().int().positive(), attempt: z.number().int().positive() });

/** The deadline queue's consumer: each message closes, retries or pauses a round (service.deadline). */
export function createDeadlineHandler(service: FederationService, log: Log) {
  const processor = new BatchProcessor(EventType.SQS);
  return async function deadlineHandler(event: SQSEvent): Promise<SQSBatchResponse> {
    const recordHandler = async (record: SQSRecord) => {
      let body: unknown;
      try {
        body = JSON.parse(record.body);
      } catch (error) {
        throw new Error(`deadline message ${record.messageId} is not JSON`, { cause: error });
      }
      const message = deadlineSchema.parse(body);
      const outcome = await service.deadline(message);
      log('info', 'round deadline handled', { ...message, outcome });
      return outcome;
    };
    return processPartialResponse(event, recordHandler, processor, { throwOnFullBatchFailure: false });
  };
}
