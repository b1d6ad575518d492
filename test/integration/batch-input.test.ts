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

    // Chunks of 5 bytes: the last line mostly ends past the first GET's margin; of 64 KB, within it.
    for (const chunkBytes of [5, 64 * 1024]) {
      for (const shardBytes of [1, 2, 3, 7, 16, 50, 333, object.size]) {
        // Act
        const read: string[] = [];
        for (const range of planShards(object.size, shardBytes)) read.push(...(await readShardLines(stack.s3, object, range.start, range.end, { chunkBytes })));

        // Assert
        expect(read, `shard size ${shardBytes}, chunks of ${chunkBytes}`).toEqual(expected);
      }
    }
  });

  it('fails a shard whose last row runs longer than the row limit past its range', async () => {
    await putText(stack, 'batches/inputs/long-row.jsonl', `a\n${'x'.repeat(100)}\nb\n`);
    const object = await headInput(stack.s3, stack.resources.bucket, 'batches/inputs/long-row.jsonl');
    for (const chunkBytes of [5, 30]) {
      await expect(readShardLines(stack.s3, object, 0, 4, { chunkBytes, maxRowBytes: 20 })).rejects.toThrow('a row starting before byte 4 is longer than 20 bytes');
    }
    expect(await readShardLines(stack.s3, object, 0, 4, { chunkBytes: 30, maxRowBytes: 200 })).toEqual(['a', 'x'.repeat(100)]);
  });

  it('fails loudly when the input changed since it was planned', async () => {
    await putText(stack, 'batches/inputs/changing.jsonl', 'a\nb\n');
    const object = await headInput(stack.s3, stack.resources.bucket, 'batches/inputs/changing.jsonl');
    await putText(stack, 'batches/inputs/changing.jsonl', 'c\nd\n');
    await expect(readShardLines(stack.s3, object, 0, object.size)).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
  });
});
