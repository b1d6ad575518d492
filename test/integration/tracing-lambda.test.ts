import { createSocket, type Socket } from 'node:dgram';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import middy from '@middy/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';

// The tracer in a Lambda-like environment (the variables Lambda sets with tracing Active, the X-Ray
// daemon a UDP socket on loopback): the handler's subsegment, with its cold-start annotation, and
// each AWS call of a client made before the tracer was imported reach the daemon.
const TRACE_ID = '1-5759e988-bd862e3fe1be46a994272793';
let emulators: Emulators;
let daemon: Socket;
const segments: Record<string, unknown>[] = [];

beforeAll(async () => {
  emulators = await startEmulators();
  daemon = createSocket('udp4');
  // A datagram is a JSON header line, then the segment document.
  daemon.on('message', (message) => segments.push(JSON.parse(message.toString('utf8').split('\n')[1]!) as Record<string, unknown>));
  await new Promise<void>((resolve) => daemon.bind(0, '127.0.0.1', resolve));
  Object.assign(process.env, {
    POWERTOOLS_TRACE_ENABLED: 'true',
    POWERTOOLS_SERVICE_NAME: 'ai-mass',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
    LAMBDA_TASK_ROOT: '/var/task',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    _HANDLER: 'functions/test/handler.handler',
    _X_AMZN_TRACE_ID: `Root=${TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1`,
    AWS_XRAY_DAEMON_ADDRESS: `127.0.0.1:${daemon.address().port}`,
    AWS_XRAY_LOG_LEVEL: 'silent',
  });
});

afterAll(async () => {
  daemon.close();
  await emulators.stop();
});

describe('the tracer, switched on, in Lambda', () => {
  it("sends the handler's subsegment and its AWS calls to the daemon", async () => {
    const { traced } = await import('../../functions/core/platform/tracing.ts');
    const { createS3Client } = await import('../../functions/core/aws/clients.ts');
    const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
    const handler = traced(
      middy(async () => {
        await s3.send(new CreateBucketCommand({ Bucket: 'lambda-traced' }));
        return 'done';
      }),
    );
    expect(await handler({}, { functionName: 'f', awsRequestId: 'r1' } as never)).toBe('done');
    expect(s3.middlewareStack.identify().some((m) => m.startsWith('XRaySDKInstrumentation'))).toBe(true);
    const deadline = Date.now() + 5000;
    while (!segments.some((s) => s.name === '## functions/test/handler.handler') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    const handlerSegment = segments.find((s) => s.name === '## functions/test/handler.handler');
    expect(handlerSegment).toMatchObject({ trace_id: TRACE_ID, annotations: { ColdStart: true, Service: 'ai-mass' } });
    // The S3 call, a subsegment of the handler's (sent with it or on its own).
    const all = JSON.stringify(segments);
    expect(all).toContain('"name":"S3"');
    expect(all).toContain('"operation":"CreateBucket"');
  });
});
