import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { PromiseCache } from '../../functions/core/platform/promise-cache.ts';

describe('PromiseCache', () => {
  it('reads a key once, keeps the most recently used, and forgets the least recently used past its size', async () => {
    const cache = new PromiseCache<string>(2);
    const reads: string[] = [];
    const get = (key: string) => cache.get(key, async () => (reads.push(key), `value of ${key}`));

    expect(await get('a')).toBe('value of a');
    await get('b');
    await get('a'); // a is now the most recently used
    await get('c'); // so b goes
    await get('a');
    await get('b');

    expect(reads).toEqual(['a', 'b', 'c', 'b']);
  });

  it('gives every caller of a failed read its failure, and reads again on the next call', async () => {
    const cache = new PromiseCache<number>(4);
    let calls = 0;
    const read = () => (++calls === 1 ? Promise.reject(new Error('unreachable')) : Promise.resolve(calls));
    const first = cache.get('k', read);
    const joined = cache.get('k', read);

    await expect(first).rejects.toThrow('unreachable');
    await expect(joined).rejects.toThrow('unreachable');
    expect(await cache.get('k', read)).toBe(2);
    expect(await cache.get('k', read)).toBe(2);
  });

  it('reads a key again once its time to live has passed since its read', async () => {
    const cache = new PromiseCache<number>(4, 20);
    let calls = 0;
    const read = async () => ++calls;

    expect(await cache.get('k', read)).toBe(1);
    expect(await cache.get('k', read)).toBe(1);
    await sleep(40);
    expect(await cache.get('k', read)).toBe(2);
  });
});
