import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headInput, planShards, readShardLines } from '../../functions/core/batch/input.ts';
import { putText, startBatchStack, type BatchStack } from '../helpers/batch-stack.ts';

// Byte-range reading on the real S3 emulator: whatever the shard size, every line belongs to
// exactly one shard, in order.
let stack: BatchStack;

beforeAll(async () => {
  stack = await startBatchStack();
});

afterAll(async () => {
  await stack?.stop();
});

describe('readShardLines', () => {
  it('gives every line to exactly one shard for every shard size, with CRLF, blank lines and no final newline', async () => {
    // Prepare: lines of 1 to 40 bytes, some multi-byte UTF-8, some blank.
    const lines = Array.from({ length: 60 }, (_, i) => (i % 13 === 5 ? '' : `${i}:${'é'.repeat(i % 7)}${'x'.repeat((i * 7) % 31)}`));
    const text = lines.map((l, i) => (i % 4 === 0 ? `${l}\r\n` : `${l}\n`)).join('').slice(0, -1);
    await putText(stack, 'batches/inputs/lines.txt', text);
    const object = await headInput(stack.s3, stack.resources.bucket, 'batches/inputs/lines.txt');
    const expected = lines.filter((l) => l !== '');

    for (const shardBytes of [1, 2, 3, 7, 16, 50, 333, object.size]) {
      // Act
      const read: string[] = [];
      for (const range of planShards(object.size, shardBytes)) read.push(...(await readShardLines(stack.s3, object, range.start, range.end, { chunkBytes: 5 })));

      // Assert
      expect(read, `shard size ${shardBytes}`).toEqual(expected);
    }
  });

  it('fails loudly when the input changed since it was planned', async () => {
    await putText(stack, 'batches/inputs/changing.jsonl', 'a\nb\n');
    const object = await headInput(stack.s3, stack.resources.bucket, 'batches/inputs/changing.jsonl');
    await putText(stack, 'batches/inputs/changing.jsonl', 'c\nd\n');
    await expect(readShardLines(stack.s3, object, 0, object.size)).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
  });
});
