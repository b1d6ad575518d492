import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** How the shaper slows each connection's responses. */
export interface NetworkProfile {
  /** Held before each connection's first response byte (a store's first-byte latency). */
  firstByteMs: number;
  /** The most one connection carries, in MB/s (10^6 bytes); 0 for no cap. */
  perConnectionMBps: number;
}

export interface NetworkShaper {
  /** Where clients connect instead of the upstream, e.g. http://127.0.0.1:40123 */
  url: string;
  /** Response bytes passed on to clients so far, all connections together. */
  bytesSent(): number;
  close(): Promise<void>;
}

/** The time the shaper reads and waits on: the real one, or a test's own to see each wait it asks for. */
export interface ShaperClock {
  now(): number;
  sleep(ms: number): Promise<unknown>;
}
const REAL_CLOCK: ShaperClock = { now: () => performance.now(), sleep };

/**
 * A TCP forwarder on 127.0.0.1 that makes a loopback emulator answer like a store across a
 * network: each connection's response waits `firstByteMs` for its first byte and then flows at no
 * more than `perConnectionMBps`. Requests pass straight through. On loopback a 15 MB download takes
 * ~10 ms, which hides what parallel ranged GETs and early requests are for; the benchmark runs its
 * cold starts through this as well. Only the timing changes: the bytes are the emulator's.
 */
export async function startNetworkShaper(upstream: string, profile: NetworkProfile, clock: ShaperClock = REAL_CLOCK): Promise<NetworkShaper> {
  const { hostname, port } = new URL(upstream);
  const sockets = new Set<net.Socket>();
  let bytesSent = 0;
  const server = net.createServer((client) => {
    const origin = net.connect({ host: hostname, port: Number(port) });
    for (const socket of [client, origin]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(origin);
    client.on('error', () => origin.destroy());
    client.on('close', () => origin.destroy());
    origin.on('error', () => client.destroy());
    void (async () => {
      let flowingSince = 0;
      let sent = 0;
      try {
        for await (const chunk of origin as AsyncIterable<Buffer>) {
          if (flowingSince === 0) {
            await clock.sleep(profile.firstByteMs);
            flowingSince = clock.now();
          }
          if (profile.perConnectionMBps > 0) {
            const due = flowingSince + (sent / (profile.perConnectionMBps * 1e6)) * 1000;
            const wait = due - clock.now();
            if (wait >= 1) await clock.sleep(wait);
          }
          sent += chunk.length;
          bytesSent += chunk.length;
          if (!client.write(chunk)) await new Promise((drained) => client.once('drain', drained));
        }
        client.end();
      } catch {
        client.destroy();
      }
    })();
  });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  const { port: shaped } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${shaped}`,
    bytesSent: () => bytesSent,
    close: () =>
      new Promise<void>((closed) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => closed());
      }),
  };
}
