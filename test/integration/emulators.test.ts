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
/**
 * On Linux all of 127.0.0.0/8 reaches this host through lo: a server bound to 127.0.0.1 refuses
 * 127.0.0.2, one bound to every interface (0.0.0.0 or ::) accepts it. So the check has an address
 * to try on a host with no other one (a container with loopback only), instead of skipping.
 */
const otherLoopback = process.platform === 'linux' ? ['127.0.0.2'] : [];
const probed = [...otherLoopback, ...ownAddresses];

describe('the local emulators', () => {
  it("listen on 127.0.0.1 only: another loopback address and the machine's other addresses refuse them", async () => {
    expect(probed, `no address other than 127.0.0.1 to probe on ${process.platform} (no interface with one, and not Linux's 127.0.0.0/8)`).not.toEqual([]);
    for (const endpoint of [emulators.awsEndpoint, emulators.dynamoEndpoint]) {
      const port = Number(new URL(endpoint).port);
      expect(await tryConnect('127.0.0.1', port)).toBe('connected');
      for (const address of probed) expect(await tryConnect(address, port), `${address}:${port}`).toBe('ECONNREFUSED');
    }
  });
});
