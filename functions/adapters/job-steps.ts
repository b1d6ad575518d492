import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import * as z from 'zod';
import type { StepMessage } from '../core/jobs/record.ts';
import type { JobRuntime } from '../core/jobs/runtime.ts';

const stepMessageSchema = z.strictObject({ job: z.string().min(1), step: z.string().min(1) });

/** A step message's body, as every consumer of a step queue reads it (the Lambda adapter below, the GPU container's own poller). */
export function parseStepMessage(body: string, messageId: string): StepMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    throw new Error(`step message ${messageId} is not JSON`, { cause: error });
  }
  return stepMessageSchema.parse(parsed);
}

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
      const message = parseStepMessage(record.body, record.messageId);
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

/**
 * The dead-letter queue's consumer: each message there is a step no delivery could end, which the
 * runtime ends `failed` with that reason (the job then ends by its kind's rule). A message that is
 * not a step message is logged and dropped: there is no job to tell.
 */
export function createJobDeadLetterHandler(runtime: JobRuntime, log: Log = () => undefined) {
  const processor = new BatchProcessor(EventType.SQS);
  return async function jobDeadLetterHandler(event: SQSEvent): Promise<SQSBatchResponse> {
    const recordHandler = async (record: SQSRecord) => {
      let parsed: ReturnType<typeof stepMessageSchema.safeParse>;
      try {
        parsed = stepMessageSchema.safeParse(JSON.parse(record.body));
      } catch (error) {
        log('error', 'dead-letter message is not JSON; dropped', { messageId: record.messageId, error: (error as Error).message });
        return 'dropped';
      }
      if (!parsed.success) {
        log('error', 'dead-letter message is not a step message; dropped', { messageId: record.messageId, body: record.body.slice(0, 200) });
        return 'dropped';
      }
      const outcome = await runtime.deadLetter(parsed.data);
      log('warn', 'dead-lettered step handled', { ...parsed.data, outcome });
      return outcome;
    };
    return processPartialResponse(event, recordHandler, processor, { throwOnFullBatchFailure: false });
  };
}
