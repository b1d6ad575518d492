import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import * as z from 'zod';
import type { JobRuntime } from '../core/jobs/runtime.ts';

const stepMessageSchema = z.strictObject({ job: z.string().min(1), step: z.string().min(1) });

/**
 * The SQS side of the job runtime, for every kind's worker: Powertools' BatchProcessor runs each
 * record and reports the ones to hand out again (a failed attempt, a step another worker holds) as
 * batch item failures; the others are deleted. A message that is not a step message fails every
 * time, so it ends in the queue's dead-letter queue, where it can be read.
 */
type Log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;

export function createJobStepHandler(runtime: JobRuntime, log: Log = () => undefined) {
  const processor = new BatchProcessor(EventType.SQS);
  return async function jobStepHandler(event: SQSEvent, context: Pick<Context, 'getRemainingTimeInMillis'>): Promise<SQSBatchResponse> {
    const recordHandler = async (record: SQSRecord) => {
      let body: unknown;
      try {
        body = JSON.parse(record.body);
      } catch (error) {
        throw new Error(`step message ${record.messageId} is not JSON`, { cause: error });
      }
      const message = stepMessageSchema.parse(body);
      try {
        const outcome = await runtime.runStep(message, { receiptHandle: record.receiptHandle, remainingMs: () => context.getRemainingTimeInMillis() });
        log('info', 'step message handled', { ...message, outcome });
        return outcome;
      } catch (error) {
        log('warn', 'step message handed back to the queue', { ...message, messageId: record.messageId, error: (error as Error).message });
        throw error;
      }
    };
    return processPartialResponse(event, recordHandler, processor, { throwOnFullBatchFailure: false });
  };
}
