import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';

let emulators: Emulators;
beforeAll(async () => {
  emulators = await startEmulators();
});
afterAll(async () => {
  await emulators?.stop();
});

/** How a TCP connection to host:port ends: 'connected', or the error's code. */
function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** This machine's own addresses other than loopback: a connection to them never leaves the host. */
const ownAddresses = Object.values(networkInterfaces())
  .flat()
  .filter((a) => a !== undefined && !a.internal && a.family === 'IPv4')
  .map((a) => a!.address);

describe('the local emulators', () => {
  it.skipIf(ownAddresses.length === 0)("listen on loopback only: the machine's other addresses refuse them", async () => {
    for (const endpoint of [emulators.awsEndpoint, emulators.dynamoEndpoint]) {
      const port = Number(new URL(endpoint).port);
      expect(await tryConnect('127.0.0.1', port)).toBe('connected');
      for (const address of ownAddresses) expect(await tryConnect(address, port), `${address}:${port}`).toBe('ECONNREFUSED');
    }
  });
});
