import { createSocket, type Socket } from 'node:dgram';
import { CreateBucketCommand, ListBucketsCommand } from '@aws-sdk/client-s3';
import middy from '@middy/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';

// The tracer outside Lambda (the local stack, tests): with tracing switched on by the stage's
// parameter but no Lambda environment and no X-Ray daemon, it must send nothing, print nothing and
// change no answer. tracing-lambda.test.ts runs it in a Lambda-like environment, where it sends.
let emulators: Emulators;
let daemon: Socket;
const datagrams: Buffer[] = [];

beforeAll(async () => {
  emulators = await startEmulators();
  daemon = createSocket('udp4');
  daemon.on('message', (message) => datagrams.push(message));
  await new Promise<void>((resolve) => daemon.bind(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  daemon.close();
  await emulators.stop();
});

describe('the tracer, switched off', () => {
  it('leaves handlers and clients as they are and is never imported', async () => {
    const { traced, traceClient, tracerImported } = await import('../../functions/core/platform/tracing.ts');
    const { createS3Client } = await import('../../functions/core/aws/clients.ts');
    const handler = middy(async (event: { n: number }) => ({ doubled: event.n * 2 }));
    const use = vi.spyOn(handler, 'use');
    expect(traced(handler, { POWERTOOLS_TRACE_ENABLED: 'false' })).toBe(handler);
    expect(traced(handler, {})).toBe(handler);
    expect(use).not.toHaveBeenCalled();
    const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
    expect(traceClient(s3, {})).toBe(s3);
    expect(s3.middlewareStack.identify().some((m) => m.startsWith('XRaySDKInstrumentation'))).toBe(false);
    expect(tracerImported()).toBe(false);
  });

  it('refuses a malformed switch with its name', async () => {
    const { tracingEnabled } = await import('../../functions/core/platform/tracing.ts');
    expect(() => tracingEnabled({ POWERTOOLS_TRACE_ENABLED: 'yes' })).toThrow(/POWERTOOLS_TRACE_ENABLED/);
  });
});

describe('the tracer, switched on, outside Lambda', () => {
  it('imports the tracer, answers as without it, and sends and prints nothing', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, { POWERTOOLS_TRACE_ENABLED: 'true', AWS_XRAY_DAEMON_ADDRESS: `127.0.0.1:${(daemon.address()).port}` });
    delete process.env.AWS_EXECUTION_ENV;
    delete process.env.LAMBDA_TASK_ROOT;
    const printed = (['log', 'info', 'warn', 'error', 'debug'] as const).map((level) => vi.spyOn(console, level));
    try {
      const { traced, tracerImported } = await import('../../functions/core/platform/tracing.ts');
      const { createS3Client } = await import('../../functions/core/aws/clients.ts');
      const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
      const handler = traced(
        middy(async (event: { bucket: string }) => {
          await s3.send(new CreateBucketCommand({ Bucket: event.bucket }));
          return (await s3.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name);
        }),
      );
      const failing = traced(
        middy(async () => {
          throw new Error('the handler failed');
        }),
      );
      const context = { functionName: 'f', awsRequestId: 'r1' } as never;
      expect(await handler({ bucket: 'traced-bucket' }, context)).toEqual(['traced-bucket']);
      await expect(failing({}, context)).rejects.toThrow('the handler failed');
      expect(tracerImported()).toBe(true);
      // The Tracer finds no Lambda environment and disables itself: the client is left as it was.
      expect(s3.middlewareStack.identify().some((m) => m.startsWith('XRaySDKInstrumentation'))).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(datagrams).toEqual([]);
      for (const spy of printed) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of printed) spy.mockRestore();
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    }
  });
});
