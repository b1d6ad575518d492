import type { SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { EnqueueError, sendAllMessages } from '../../functions/core/jobs/step-queue.ts';
import { planShards } from '../../functions/core/batch/input.ts';
import { MAX_SHARDS } from '../../functions/core/batch/schemas.ts';

/** An SQS client whose SendMessageBatch fails the entries `fail` picks, recording every call. */
function flakySqs(fail: (id: string) => { code: string; sender: boolean } | undefined) {
  const calls: string[][] = [];
  const client = {
    async send(command: { input: { Entries: { Id: string }[] } }) {
      const ids = command.input.Entries.map((e) => e.Id);
      calls.push(ids);
      const failed = ids.flatMap((id) => {
        const f = fail(id);
        return f ? [{ Id: id, Code: f.code, SenderFault: f.sender, Message: 'no' }] : [];
      });
      return { Successful: ids.filter((id) => !failed.some((f) => f.Id === id)).map((Id) => ({ Id })), Failed: failed };
    },
  };
  return { sqs: client as unknown as SQSClient, calls };
}

const messages = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `s${i}`, body: `{"shard":${i}}` }));
const noSleep = { sleep: async () => {}, concurrency: 1 };

describe('sendAllMessages', () => {
  it('sends in batches of ten and retries exactly the entries that failed', async () => {
    // s3 fails twice, s12 once, then each goes through.
    const failures = new Map([['s3', 2], ['s12', 1]]);
    const { sqs, calls } = flakySqs((id) => {
      const left = failures.get(id) ?? 0;
      failures.set(id, left - 1);
      return left > 0 ? { code: 'InternalError', sender: false } : undefined;
    });
    await sendAllMessages(sqs, 'q', messages(15), noSleep);
    expect(calls).toEqual([
      ['s0', 's1', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9'],
      ['s3'],
      ['s3'],
      ['s10', 's11', 's12', 's13', 's14'],
      ['s12'],
    ]);
  });

  it('gives up after its attempts with the entries that never went', async () => {
    const { sqs, calls } = flakySqs((id) => (id === 's1' ? { code: 'ServiceUnavailable', sender: false } : undefined));
    const error = await sendAllMessages(sqs, 'q', messages(2), { ...noSleep, attempts: 3 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EnqueueError);
    expect((error as EnqueueError).message).toBe('1 message(s) could not be sent after 3 attempts');
    expect((error as EnqueueError).failed).toEqual([{ id: 's1', code: 'ServiceUnavailable', message: 'no' }]);
    expect(calls).toHaveLength(3);
  });

  it('does not retry a sender fault, which would fail the same way again', async () => {
    const { sqs, calls } = flakySqs((id) => (id === 's0' ? { code: 'InvalidMessageContents', sender: true } : undefined));
    await expect(sendAllMessages(sqs, 'q', messages(1), noSleep)).rejects.toThrow('SQS refused 1 message(s): s0: InvalidMessageContents no');
    expect(calls).toHaveLength(1);
  });
});

describe('planShards', () => {
  it('covers the input with contiguous byte ranges', () => {
    expect(planShards(10, 4)).toEqual([
      { shard: 0, start: 0, end: 4 },
      { shard: 1, start: 4, end: 8 },
      { shard: 2, start: 8, end: 10 },
    ]);
    expect(planShards(0, 4)).toEqual([]);
  });

  it('grows the shard size rather than exceed MAX_SHARDS', () => {
    const shards = planShards(MAX_SHARDS * 10 + 5, 1);
    expect(shards.length).toBeLessThanOrEqual(MAX_SHARDS);
    expect(shards.at(-1)!.end).toBe(MAX_SHARDS * 10 + 5);
  });
});
