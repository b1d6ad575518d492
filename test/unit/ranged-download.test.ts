import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../functions/core/platform/errors.ts';
import { ARTIFACT_FIRST_PARTS, downloadRanged, PART_BYTES, type RangeReader, type RangeResponse } from '../../functions/core/artifacts/ranged-download.ts';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * Ranges of an in-memory object answered as S3 answers them (206 with the full size, 416 for a
 * range that starts at or past the end), with every request recorded. `claimedSize` makes the
 * server contradict itself: the size it tells differs from the bytes it refuses at.
 */
function objectReader(object: Uint8Array, requests: string[], claimedSize = object.length): RangeReader {
  return async (start, end) => {
    requests.push(`${start}-${end}`);
    if (start >= object.length) return 'beyond-end';
    const body = object.subarray(start, Math.min(end + 1, object.length));
    return {
      total: claimedSize,
      readInto: async (out, at, limit) => {
        if (at + body.length > limit) throw new IntegrityError('over the limit');
        out.set(body, at);
        return body.length;
      },
      discard: () => undefined,
    } satisfies RangeResponse;
  };
}

describe('downloadRanged with the size unknown', () => {
  it('sends the first parts of an artifact together, before any answer, and takes a refused second range as the end', async () => {
    const object = new Uint8Array(randomBytes(3 * 1024 * 1024 + 7));
    const requests: string[] = [];
    const download = downloadRanged('m.ort', objectReader(object, requests), { firstParts: ARTIFACT_FIRST_PARTS });
    expect(requests).toEqual([`0-${PART_BYTES - 1}`, `${PART_BYTES}-${2 * PART_BYTES - 1}`]); // synchronously, in the call
    const downloaded = await download;
    expect(downloaded?.sha256).toBe(sha256(object));
    expect(Buffer.compare(downloaded!.bytes, object)).toBe(0);
    expect(requests).toHaveLength(2);
  });

  it('asks for one part first by default, and for the rest once its answer tells the size', async () => {
    const object = new Uint8Array(randomBytes(2 * PART_BYTES + 1));
    const requests: string[] = [];
    const download = downloadRanged('m.onnx', objectReader(object, requests));
    expect(requests).toEqual([`0-${PART_BYTES - 1}`]);
    const downloaded = await download;
    expect(downloaded?.sha256).toBe(sha256(object));
    expect(requests.slice(1).sort()).toEqual([`${2 * PART_BYTES}-${2 * PART_BYTES}`, `${PART_BYTES}-${2 * PART_BYTES - 1}`]);
  });

  it('refuses an object whose server refuses a range before the end it tells', async () => {
    const object = new Uint8Array(randomBytes(1024));
    const liar = objectReader(object, [], PART_BYTES + 1024); // says it is bigger than the range it refuses
    await expect(downloadRanged('m.ort', liar, { firstParts: 2 })).rejects.toThrow(IntegrityError);
    await expect(downloadRanged('m.ort', liar, { firstParts: 2 })).rejects.toThrow(/refused as past the end of 8389632 bytes/);
  });

  it('gives an empty object for one whose every range is refused, and undefined for one that does not exist', async () => {
    const requests: string[] = [];
    const empty = await downloadRanged('empty', objectReader(new Uint8Array(0), requests), { firstParts: 2 });
    expect(empty).toEqual({ bytes: new Uint8Array(0), sha256: sha256(new Uint8Array(0)) });
    expect(requests).toEqual([`0-${PART_BYTES - 1}`, `${PART_BYTES}-${2 * PART_BYTES - 1}`]);
    await expect(downloadRanged('none', async () => undefined, { firstParts: 2 })).resolves.toBeUndefined();
  });
});
