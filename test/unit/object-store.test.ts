import { describe, expect, it } from 'vitest';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';

/** Every value reachable from `root` through its properties (own and inherited, enumerable or not), functions included. */
function reachable(root: object, depth = 3): unknown[] {
  const seen = new Set<unknown>();
  const visit = (value: unknown, left: number) => {
    if (value === null || (typeof value !== 'object' && typeof value !== 'function') || seen.has(value)) return;
    seen.add(value);
    if (left === 0 || typeof value === 'function') return;
    for (let o: object | null = value as object; o && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
      for (const name of Object.getOwnPropertyNames(o)) {
        const descriptor = Object.getOwnPropertyDescriptor(o, name)!;
        if ('value' in descriptor) visit(descriptor.value, left - 1);
      }
    }
  };
  visit(root, depth);
  return [...seen];
}

describe('the model store', () => {
  it('hands out no S3 client: requests go through its object store, which keeps the client to itself', () => {
    const s3 = createS3Client({ endpoint: 'http://127.0.0.1:9' });
    const lazy = () => Promise.resolve(s3);
    const store = new ModelRepository({ s3: lazy, bucket: 'models', cacheDir: '/nonexistent' });
    const values = reachable(store);
    expect(values).toContain(store.objects);
    expect(values).not.toContain(s3);
    expect(values).not.toContain(lazy);
    expect(Object.keys(store.objects)).toEqual(['bucket']);
    expect(store.objects.bucket).toBe('models');
  });
});
