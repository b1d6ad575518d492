// Why the inference function keeps its own routes: the cost per request of Powertools' router (the
// router every other API function uses) against the inference app's path match, on the same event
// with a binary body, side by side. Writes bench/results/router.json.
import type { Context } from 'aws-lambda';
import { json } from '../../functions/adapters/http.ts';
import { ApiRouter } from '../../functions/adapters/router.ts';
import { apiEvent } from '../helpers/batch-stack.ts';
import { median, writeResults } from './common.ts';

const MODEL_ROUTE = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(?:\/(ready|infer|config))?\/?$/;

export async function runRouterBench(): Promise<Record<string, unknown>> {
  const result: Record<string, unknown> = {};
  for (const mib of [0, 1, 4]) {
    const event = { ...apiEvent('POST', '/v2/models/mnist/infer'), headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(mib * 1024 * 1024, 7).toString('base64'), isBase64Encoded: true };
    const answer = json(200, { ok: true });
    const router = new ApiRouter(() => undefined).on('POST', '/v2/models/:name/infer', async ({ event: e }) => (Buffer.from(e.body ?? '', 'base64'), answer)).handler();
    const direct = async (e: typeof event) => (MODEL_ROUTE.exec(e.rawPath), Buffer.from(e.body ?? '', 'base64'), answer);
    const time = async (fn: () => Promise<unknown>) => {
      for (let i = 0; i < 10; i++) await fn();
      const samples: number[] = [];
      for (let i = 0; i < 60; i++) {
        const t = performance.now();
        await fn();
        samples.push(performance.now() - t);
      }
      return median(samples);
    };
    const routerMs = await time(() => router(event, {} as Context));
    const directMs = await time(() => direct(event));
    result[`body_${mib}mib`] = { router_ms: +routerMs.toFixed(3), own_route_ms: +directMs.toFixed(3), router_over_own: +(routerMs / directMs).toFixed(2) };
  }
  console.log(result);
  await writeResults('router', result);
  return result;
}
