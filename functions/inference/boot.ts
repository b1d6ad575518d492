/**
 * Imported first by handler.ts, so this runs before the rest of the bundle is evaluated: the
 * pre-warm's GETs (core/boot-fetch.ts) go on the wire, and the response comes in while the SDK,
 * zod and Powertools load. Evaluating the bundle is synchronous, so it waits until the requests are
 * written, at most BOOT_SEND_WAIT_MS (a slow DNS answer or TLS handshake must not hold init up).
 */
import { startBootFetch } from '../core/boot-fetch.ts';

const BOOT_SEND_WAIT_MS = 10;

export const bootFetch = startBootFetch();
await Promise.race([bootFetch.sent, new Promise((resolve) => setTimeout(resolve, BOOT_SEND_WAIT_MS).unref())]);
