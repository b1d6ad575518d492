/**
 * The training run behind a packaged handler's code caches (infra/esbuild/plugins.ts runs it in a
 * fresh process): loads the handler through its shim, lets the function's own training exercise it
 * when it has one, then writes the caches of what that compiled.
 * Usage: node train-code-cache.ts <handler shim> [<training module>]
 * With AI_MASS_CODE_CACHE_TRAINED_DIR set, a run that went through writes `<function folder>.json`
 * there: the package tests' proof that each training ran, which a failed run's caches are not.
 */
import { writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SAVE_CODE_CACHE } from './script-loader.ts';

/** A function's training: loads the handler (as Lambda's init would) and serves it what its cold path serves. */
export type CacheTraining = (load: () => Promise<Record<string, unknown>>) => Promise<void>;

const [shim, training] = process.argv.slice(2);
if (!shim) throw new Error('usage: train-code-cache.ts <handler shim> [<training module>]');
const load = () => import(pathToFileURL(shim).href) as Promise<Record<string, unknown>>;
let failure: unknown;
if (training) {
  const { train } = (await import(pathToFileURL(training).href)) as { train: CacheTraining };
  await train(load).catch((error: unknown) => (failure = error));
} else {
  // With endpoints on a closed port an init may fail: what it compiled up to there is cached all the same.
  await load().catch(() => undefined);
}
const save = (globalThis as Record<symbol, (() => void) | undefined>)[SAVE_CODE_CACHE];
if (!save) throw new Error(`${shim} did not load through the script loader`);
save();
if (failure) {
  // The caches hold what ran, but the function's training did not go through: say so.
  process.stderr.write(`training of ${shim} failed: ${failure instanceof Error ? failure.stack : String(failure)}\n`);
  process.exit(1);
}
const trainedDir = process.env.AI_MASS_CODE_CACHE_TRAINED_DIR;
if (trainedDir) {
  const name = basename(dirname(shim));
  writeFileSync(join(trainedDir, `${name}.json`), JSON.stringify({ function: name, training: training ? basename(training, '.ts') : null }));
}
process.exit(0);
