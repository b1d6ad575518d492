import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { InvalidShardMessageError, parseShardMessage, type ShardScorer } from '../core/batch/shard-scorer.ts';
import { MetricUnit, recordMetric } from '../core/platform/observability.ts';

export interface BatchScoreHandlerDeps {
  scorer: ShardScorer;
  logger: Logger;
  metrics: Metrics;
}

/**
 * The shard queue's event source: each record is one shard, scored in turn (one onnxruntime session
 * already uses every vCPU). A shard that throws is reported in batchItemFailures, so only it is
 * redelivered, and after maxReceiveCount it moves to the dead-letter queue.
 */
export function createBatchScoreHandler(deps: BatchScoreHandlerDeps) {
  const { scorer, logger, metrics } = deps;
  return async function batchScoreHandler(event: SQSEvent): Promise<SQSBatchResponse> {
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      try {
        const message = parseShardMessage(record.body);
        logger.appendKeys({ job: message.job, shard: message.shard });
        const outcome = await scorer.score(message);
        if (outcome.status === 'scored') {
          recordMetric(metrics, 'BatchRowsScored', MetricUnit.Count, outcome.rows - outcome.failed, { model: message.model });
          recordMetric(metrics, 'BatchRowsFailed', MetricUnit.Count, outcome.failed, { model: message.model });
          recordMetric(metrics, 'BatchShardMs', MetricUnit.Milliseconds, outcome.ms, { model: message.model });
        } else {
          logger.info('shard skipped', { reason: outcome.reason });
        }
      } catch (error) {
        const level = error instanceof InvalidShardMessageError ? 'error' : 'warn';
        logger[level]('shard failed; it will be redelivered', { messageId: record.messageId, receiveCount: record.attributes?.ApproximateReceiveCount, error: error as Error });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      } finally {
        logger.removeKeys(['job', 'shard']);
      }
    }
    return { batchItemFailures };
  };
}

/** The dead-letter queue's event source: each record is a shard that exhausted its receives. */
export function createBatchDeadLetterHandler(deps: Omit<BatchScoreHandlerDeps, 'metrics'> & { metrics: Metrics }) {
  const { scorer, logger, metrics } = deps;
  return async function batchDeadLetterHandler(event: SQSEvent): Promise<SQSBatchResponse> {
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      let message;
      try {
        message = parseShardMessage(record.body);
      } catch (error) {
        // Not a shard: nothing to account for; the log keeps the body for whoever investigates.
        logger.error('dead-letter message is not a shard; dropped', { messageId: record.messageId, body: record.body.slice(0, 1000), error: (error as Error).message });
        continue;
      }
      try {
        const outcome = await scorer.deadLetter(message);
        recordMetric(metrics, 'BatchShardsDead', MetricUnit.Count, 1, { model: message.model });
        logger.warn('dead shard recorded', { job: message.job, shard: message.shard, ...outcome });
      } catch (error) {
        logger.error('dead shard could not be recorded', { job: message.job, shard: message.shard, error: error as Error });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures };
  };
}
