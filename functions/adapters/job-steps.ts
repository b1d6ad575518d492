import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import * as z from 'zod';
import type { StepMessage } from '../core/jobs/record.ts';
import type { JobRuntime, StepDelivery, StepRunOutcome } from '../core/jobs/runtime.ts';

const stepMessageSchema = z.strictObject({ job: z.string().min(1), step: z.string().min(1) });

/** A step message's body, as every consumer of a step queue reads it (the Lambda adapter below, the container worker). */
export function parseStepMessage(body: string, messageId: string): StepMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    throw new Error(`step message ${messageId} is not JSON`, { cause: error });
  }
  return stepMessageSchema.parse(parsed);
}

type Log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;

/**
 * One step message, as every consumer of a step queue runs it (the Lambda handler below, the
 * container worker): parsed, then run by the job runtime. Returns what the runtime did (the message
 * may be deleted); throws for a message to hand out again (StepRetryError from the runtime) or one
 * that is not a step message.
 */
export async function runStepMessage(runtime: JobRuntime, body: string, messageId: string, delivery: StepDelivery, log: Log = () => undefined): Promise<StepRunOutcome> {
  const message = parseStepMessage(body, messageId);
  try {
    const outcome = await runtime.runStep(message, delivery);
    log('info', 'step message handled', { ...message, outcome });
    return outcome;
  } catch (error) {
    log('warn', 'step message handed back to the queue', { ...message, messageId, error: (error as Error).message });
    throw error;
  }
}

/**
 * The SQS side of the job runtime, for every kind's worker: Powertools' BatchProcessor runs each
 * record and reports the ones to hand out again (a failed attempt, a step another worker holds) as
 * batch item failures; the others are deleted. A message that is not a step message fails every
 * time, so it ends in the queue's dead-letter queue, where it can be read.
 */
export function createJobStepHandler(runtime: JobRuntime, log: Log = () => undefined) {
  const processor = new BatchProcessor(EventType.SQS);
  return async function jobStepHandler(event: SQSEvent, context: Pick<Context, 'getRemainingTimeInMillis'>): Promise<SQSBatchResponse> {
    const recordHandler = (record: SQSRecord) =>
      runStepMessage(runtime, record.body, record.messageId, { receiptHandle: record.receiptHandle, remainingMs: () => context.getRemainingTimeInMillis() }, log);
    return processPartialResponse(event, recordHandler, processor, { throwOnFullBatchFailure: false });
  };
}

/**
 * The dead-letter queue's consumer: each message there is a step no delivery could end, which the
 * runtime ends `failed` with that reason (the job then ends by its kind's rule). A message that is
 * not a step message is logged and dropped: there is no job to tell.
 */
/**
 * One message of a step queue's dead-letter queue, as every consumer runs it: a step message is
 * ended by the runtime; anything else is logged and dropped ('dropped'): there is no job to tell.
 */
export async function runDeadLetterMessage(runtime: JobRuntime, body: string, messageId: string, log: Log = () => undefined): Promise<StepRunOutcome | 'dropped'> {
  let parsed: ReturnType<typeof stepMessageSchema.safeParse>;
  try {
    parsed = stepMessageSchema.safeParse(JSON.parse(body));
  } catch (error) {
    log('error', 'dead-letter message is not JSON; dropped', { messageId, error: (error as Error).message });
    return 'dropped';
  }
  if (!parsed.success) {
    log('error', 'dead-letter message is not a step message; dropped', { messageId, body: body.slice(0, 200) });
    return 'dropped';
  }
  const outcome = await runtime.deadLetter(parsed.data);
  log('warn', 'dead-lettered step handled', { ...parsed.data, outcome });
  return outcome;
}

export function createJobDeadLetterHandler(runtime: JobRuntime, log: Log = () => undefined) {
  const processor = new BatchProcessor(EventType.SQS);
  return async function jobDeadLetterHandler(event: SQSEvent): Promise<SQSBatchResponse> {
    const recordHandler = (record: SQSRecord) => runDeadLetterMessage(runtime, record.body, record.messageId, log);
    return processPartialResponse(event, recordHandler, processor, { throwOnFullBatchFailure: false });
  };
}
