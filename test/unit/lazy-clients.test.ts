import { describe, expect, it } from 'vitest';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { lazyDynamoClient, lazyS3Client } from '../../functions/core/aws/lazy-clients.ts';

describe('clients made on first use', () => {
  it('make one client however many callers ask at once, configured as the eager factories make them', async () => {
    const s3 = lazyS3Client({ endpoint: 'http://127.0.0.1:9', region: 'eu-west-1' });
    const [a, b] = await Promise.all([s3(), s3()]);
    expect(a).toBe(b);
    expect(await s3()).toBe(a);
    const eager = createS3Client({ endpoint: 'http://127.0.0.1:9', region: 'eu-west-1' });
    expect(await a.config.region()).toBe(await eager.config.region());
    expect(a.config.forcePathStyle).toBe(true);
    expect(await a.config.endpoint!()).toEqual(await eager.config.endpoint!());
    const dynamo = lazyDynamoClient({ endpoint: 'http://127.0.0.1:8', region: 'eu-west-1' });
    expect(await dynamo()).toBe(await dynamo());
    expect((await (await dynamo()).config.endpoint!()).port).toBe(8);
  });
});
