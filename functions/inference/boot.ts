/**
 * The handler's boot module: the pre-warm's requests (core/boot-fetch.ts) go on the wire here, and
 * are answered while the rest of the function loads. Packaged, it is a bundle of its own that the
 * handler's shim evaluates before the main bundle is even read and parsed (infra/esbuild/plugins.ts);
 * unpackaged (tests, tools), it is handler.ts's first import, evaluated before the rest. Evaluating
 * what follows is synchronous, so it waits until the requests are written, at most
 * BOOT_SEND_WAIT_MS (a slow DNS answer or TLS handshake must not hold init up).
 */
import { startBootFetch } from '../core/boot-fetch.ts';

const BOOT_SEND_WAIT_MS = 10;

export const bootFetch = startBootFetch();
await Promise.race([bootFetch.sent, new Promise((resolve) => setTimeout(resolve, BOOT_SEND_WAIT_MS).unref())]);
