/**
 * The handler's boot module: the pre-warm's requests (core/coldstart/boot-fetch.ts) go on the wire here, and
 * are answered while the rest of the function loads. Packaged, it is a script of its own that the
 * handler's shim runs before the main bundle is even read and compiled, and whose `ready` it awaits
 * first (infra/esbuild/plugins.ts); unpackaged (tests, tools), it is handler.ts's first import,
 * evaluated before the rest. Running what follows is synchronous, so `ready` is when the requests
 * are written, or BOOT_SEND_WAIT_MS at most (a slow DNS answer or TLS handshake must not hold init
 * up longer).
 */
import { startBootFetch } from '../core/coldstart/boot-fetch.ts';
import { MONITORING_SETTING, monitoringConfigKey } from '../core/monitor/config-location.ts';

/**
 * Signing and connecting take 10-16 ms of a cold start here (node:crypto and node:net load on the
 * way); at a 10 ms bound most runs gave up before the requests were written, and the main bundle's
 * parse then held them until after it (measured: the artifact's first byte 30-50 ms later).
 */
const BOOT_SEND_WAIT_MS = 30;

/** The models' monitoring configs come along: data capture reads them on each model's first request. */
export const bootFetch = startBootFetch(process.env, { modelConfig: { setting: MONITORING_SETTING, objectKey: monitoringConfigKey } });
export const ready: Promise<unknown> = Promise.race([bootFetch.sent, new Promise((resolve) => setTimeout(resolve, BOOT_SEND_WAIT_MS).unref())]);
