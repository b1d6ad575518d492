import { createServer } from 'node:net';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { buildApp } from 'fauxqs';
import dynalite from 'dynalite';
// fauxqs's own startFauxqs() wires its persistence but listens on every interface; its stores and
// persistence classes are not exported, so they are imported from its files to do the same on loopback.
import { SqsStore } from '../../node_modules/fauxqs/dist/sqs/sqsStore.js';
import { SnsStore } from '../../node_modules/fauxqs/dist/sns/snsStore.js';
import { S3Store } from '../../node_modules/fauxqs/dist/s3/s3Store.js';
import { PersistenceManager } from '../../node_modules/fauxqs/dist/persistence.js';
import { FileS3Persistence } from '../../node_modules/fauxqs/dist/s3/fileS3Persistence.js';

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

/**
 * The largest single PUT the local S3 takes: a model at the size limit (DEFAULT_MAX_MODEL_BYTES,
 * 512 MiB; test/integration/emulators.test.ts holds the two together) with room for the request's
 * aws-chunked framing. fauxqs's own limit (11 MiB) is meant for multipart parts; S3 takes 5 GB in one PUT.
 */
export const LOCAL_S3_MAX_PUT_BYTES = (512 + 8) * 1024 * 1024;

export interface EmulatorOptions {
  awsPort?: number;
  dynamoPort?: number;
  /**
   * Keep the emulators' state in this folder and find it again on the next start: S3 objects as
   * files under s3/, SQS and SNS in sqs/ (SQLite), DynamoDB in dynamodb/ (LevelDB). Every write
   * reaches the file system before it is answered, so a killed process loses nothing it answered.
   * Undefined keeps everything in memory (tests).
   */
  dataDir?: string | undefined;
}

interface FauxqsStores {
  sqsStore: SqsStore;
  snsStore: SnsStore;
  s3Store: S3Store;
  close(): void;
}

/** What fauxqs's startFauxqs() does with a data folder: load the saved state, then write every change through. */
async function persistentFauxqsStores(dataDir: string): Promise<FauxqsStores> {
  await mkdir(join(dataDir, 'sqs'), { recursive: true });
  const sqsStore = new SqsStore();
  const snsStore = new SnsStore();
  const s3Store = new S3Store();
  const messages = new PersistenceManager(join(dataDir, 'sqs'));
  const objects = new FileS3Persistence(join(dataDir, 's3'));
  messages.loadSqsAndSns(sqsStore, snsStore);
  objects.loadS3(s3Store);
  sqsStore.persistence = messages;
  snsStore.persistence = messages;
  for (const queue of sqsStore.allQueues()) queue.persistence = messages;
  s3Store.persistence = objects;
  return {
    sqsStore,
    snsStore,
    s3Store,
    close() {
      messages.close();
      objects.close();
    },
  };
}

export async function startEmulators(options: EmulatorOptions = {}): Promise<Emulators> {
  const awsPort = options.awsPort ?? 0;
  const dynamoPort = options.dynamoPort ?? 0;
  await assertPortFree(awsPort, 'S3/SQS emulator');
  await assertPortFree(dynamoPort, 'DynamoDB emulator');
  const stores = options.dataDir ? await persistentFauxqsStores(options.dataDir) : undefined;
  // fauxqs's own startFauxqs() listens on 0.0.0.0 (every interface); its app, listened on here, stays on loopback.
  const fauxqs = buildApp({ logger: false, host: '127.0.0.1', ...(stores ? { stores } : {}) });
  if (stores) fauxqs.addHook('preClose', (done) => { stores.close(); done(); });
  // S3 bodies go through fauxqs's catch-all parser, made with its 11 MiB limit: the same parser again
  // with the model size limit (routes with no limit of their own use their parser's).
  fauxqs.removeContentTypeParser('*');
  fauxqs.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: LOCAL_S3_MAX_PUT_BYTES }, (_request, body, done) => done(null, body));
  await fauxqs.listen({ port: awsPort, host: '127.0.0.1' });
  const fauxqsAddress = fauxqs.server.address();
  if (fauxqsAddress === null || typeof fauxqsAddress === 'string') throw new Error('fauxqs did not bind a port');
  if (options.dataDir) await mkdir(join(options.dataDir, 'dynamodb'), { recursive: true });
  const dynamo = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(options.dataDir ? { path: join(options.dataDir, 'dynamodb') } : {}) });
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
