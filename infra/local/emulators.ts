import { createServer } from 'node:net';
import { once } from 'node:events';
import { buildApp } from 'fauxqs';
import dynalite from 'dynalite';

/**
 * The AWS-protocol emulators the local stack and the tests run on loopback: fauxqs serves S3 and SQS
 * on one port, dynalite serves DynamoDB. Port 0 picks a free port (tests); the local stack passes fixed ones.
 */
export interface Emulators {
  /** S3 and SQS endpoint, e.g. http://127.0.0.1:4566 */
  awsEndpoint: string;
  dynamoEndpoint: string;
  stop(): Promise<void>;
}


export class PortInUseError extends Error {
  constructor(port: number, what: string) {
    super(`port ${port} (${what}) is already in use: stop whatever holds it, or choose another port`);
    this.name = 'PortInUseError';
  }
}

/** Throws PortInUseError when something already listens on 127.0.0.1:port. */
export async function assertPortFree(port: number, what: string): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  probe.listen(port, '127.0.0.1');
  try {
    await once(probe, 'listening');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new PortInUseError(port, what);
    throw error;
  } finally {
    probe.close();
  }
}

export async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const address = probe.address();
  probe.close();
  await once(probe, 'close');
  if (address === null || typeof address === 'string') throw new Error('no port assigned');
  return address.port;
}

export async function startEmulators(options: { awsPort?: number; dynamoPort?: number } = {}): Promise<Emulators> {
  const awsPort = options.awsPort ?? 0;
  const dynamoPort = options.dynamoPort ?? 0;
  await assertPortFree(awsPort, 'S3/SQS emulator');
  await assertPortFree(dynamoPort, 'DynamoDB emulator');
  // fauxqs's own startFauxqs() listens on 0.0.0.0 (every interface); its app, listened on here, stays on loopback.
  const fauxqs = buildApp({ logger: false, host: '127.0.0.1' });
  await fauxqs.listen({ port: awsPort, host: '127.0.0.1' });
  const fauxqsAddress = fauxqs.server.address();
  if (fauxqsAddress === null || typeof fauxqsAddress === 'string') throw new Error('fauxqs did not bind a port');
  const dynamo = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  dynamo.listen(dynamoPort, '127.0.0.1');
  await once(dynamo, 'listening');
  const address = dynamo.address();
  if (address === null || typeof address === 'string') throw new Error('dynalite did not bind a port');
  return {
    awsEndpoint: `http://127.0.0.1:${fauxqsAddress.port}`,
    dynamoEndpoint: `http://127.0.0.1:${address.port}`,
    async stop() {
      await fauxqs.close();
      await new Promise<void>((resolve) => dynamo.close(() => resolve()));
    },
  };
}
