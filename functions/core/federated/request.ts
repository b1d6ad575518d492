/**
 * What a federation may be asked to do: one schema for the API, the CLI and the tests.
 */
import * as z from 'zod';
import { BadRequestError } from '../platform/errors.ts';
import { NAME_PATTERN, VERSION_PATTERN } from '../artifacts/names.ts';
import { averagingKinds, type StrategySpec } from './strategies.ts';

const positive = z.number().positive().finite();

export const strategySchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('fedavg') }),
  z.strictObject({ kind: z.literal('fedavgm'), serverLearningRate: positive.optional(), momentum: z.number().min(0).lt(1).optional() }),
  z.strictObject({ kind: z.enum(['fedadam', 'fedyogi', 'fedadagrad']), serverLearningRate: positive.optional(), beta1: z.number().min(0).lt(1).optional(), beta2: z.number().min(0).lt(1).optional(), tau: positive.optional() }),
  z.strictObject({ kind: z.literal('fedprox'), mu: z.number().min(0).finite() }),
  z.strictObject({ kind: z.literal('median') }),
  z.strictObject({ kind: z.literal('trimmed-mean'), beta: z.number().min(0).lt(0.5).optional() }),
  z.strictObject({ kind: z.literal('multi-krum'), byzantine: z.number().int().min(0), selected: z.number().int().min(1).optional() }),
  z.strictObject({ kind: z.literal('bulyan'), byzantine: z.number().int().min(0) }),
]);

export const federationRequestSchema = z
  .strictObject({
    model: z.string().regex(NAME_PATTERN, 'model names match [a-z0-9][a-z0-9._-]{0,63}'),
    /** The version the first round starts from (default: the model's highest). */
    version: z.string().regex(VERSION_PATTERN).optional(),
    rounds: z.number().int().min(1).max(10_000),
    /** Clients selected per round: a count, or a fraction of those joined. */
    clientsPerRound: z.number().int().min(1).max(10_000).optional(),
    clientFraction: z.number().gt(0).max(1).optional(),
    /** Updates a round needs to aggregate; fewer by the deadline and the round is retried. */
    minClients: z.number().int().min(1).optional(),
    roundTimeoutSeconds: z.number().int().min(1).max(7 * 86_400).default(600),
    /** Attempts of a round after the first before the federation pauses. */
    maxRetries: z.number().int().min(0).max(20).default(2),
    strategy: strategySchema.default({ kind: 'fedavg' }),
    privacy: z
      .strictObject({
        /** The clip norm (with `adaptive`, the first round's). */
        clip: positive,
        /** Above 0: at 0 the accountant's epsilon is unbounded (no privacy; leave `privacy` out). */
        noiseMultiplier: z.number().gt(0, 'noiseMultiplier must be above 0 (at 0 nothing is private: leave privacy out)').finite(),
        delta: z.number().gt(0).lt(1).default(1e-5),
        /** Adaptive clipping (Andrew et al. 2021): the clip norm follows the target quantile of the update norms. */
        adaptive: z
          .strictObject({
            targetQuantile: z.number().min(0).max(1).default(0.5),
            learningRate: positive.default(0.2),
            countStddev: z.number().min(0).finite().optional(),
          })
          .optional(),
      })
      .optional(),
    secureAggregation: z.boolean().default(false),
    local: z
      .strictObject({
        epochs: z.number().int().min(1).max(1000).default(1),
        batchSize: z.number().int().min(1).max(65_536).default(10),
        learningRate: positive.default(0.01),
      })
      .default({ epochs: 1, batchSize: 10, learningRate: 0.01 }),
    /** A data set (`mass dataset push`) each round's global model is evaluated on. */
    evalDataset: z.string().regex(NAME_PATTERN).optional(),
    /** Seeds client selection (and the DP noise when set): the same seed, the same selection. */
    seed: z.number().int().min(0).max(2 ** 32 - 1).optional(),
    maxUpdateBytes: z.number().int().min(1024).max(512 * 1024 * 1024).optional(),
  })
  .superRefine((request, context) => {
    if ((request.clientsPerRound === undefined) === (request.clientFraction === undefined)) context.addIssue({ code: 'custom', message: 'give exactly one of clientsPerRound and clientFraction' });
    if (request.clientsPerRound !== undefined && request.minClients !== undefined && request.minClients > request.clientsPerRound) {
      context.addIssue({ code: 'custom', message: `minClients ${request.minClients} is more than clientsPerRound ${request.clientsPerRound}` });
    }
    if (request.privacy && !averagingKinds.has(request.strategy.kind)) context.addIssue({ code: 'custom', message: `differential privacy needs an averaging strategy (fedavg, fedprox, fedavgm, fedadam, fedyogi, fedadagrad), not ${request.strategy.kind}` });
    if (request.secureAggregation && !averagingKinds.has(request.strategy.kind)) context.addIssue({ code: 'custom', message: `secure aggregation gives the server only the sum, so it needs an averaging strategy, not ${request.strategy.kind}` });
    const selection = request.minClients ?? request.clientsPerRound;
    if (request.strategy.kind === 'bulyan' && selection !== undefined && selection < 4 * request.strategy.byzantine + 3) {
      context.addIssue({ code: 'custom', message: `bulyan with byzantine ${request.strategy.byzantine} needs at least ${4 * request.strategy.byzantine + 3} updates a round (n >= 4f + 3); minClients or clientsPerRound is ${selection}` });
    }
    const adaptive = request.privacy?.adaptive;
    if (request.privacy && adaptive && request.privacy.noiseMultiplier > 0 && request.clientsPerRound !== undefined) {
      const countStddev = adaptive.countStddev ?? request.clientsPerRound / 20;
      if (!(request.privacy.noiseMultiplier ** -2 - (2 * countStddev) ** -2 > 0)) {
        context.addIssue({ code: 'custom', message: `adaptive clipping at noise multiplier ${request.privacy.noiseMultiplier} needs a count noise (countStddev) above ${request.privacy.noiseMultiplier / 2}; with ${request.clientsPerRound} clients a round the default is ${countStddev}` });
      }
    }
    if (request.secureAggregation && request.privacy) context.addIssue({ code: 'custom', message: 'secure aggregation and server-side differential privacy cannot be combined here (the server cannot clip what it cannot see)' });
  });

export type FederationRequest = z.infer<typeof federationRequestSchema>;

export function parseFederationRequest(body: unknown): FederationRequest {
  const parsed = federationRequestSchema.safeParse(body);
  if (!parsed.success) throw new BadRequestError(`invalid federation request: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** The mu a client's loss uses: FedProx's, or 0. */
export const proximalMu = (strategy: StrategySpec) => (strategy.kind === 'fedprox' ? strategy.mu : 0);
