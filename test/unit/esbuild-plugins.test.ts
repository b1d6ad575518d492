import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import plugins, { builtinsThroughRequire } from '../../infra/esbuild/plugins.ts';

const BANNER = "import { createRequire as __r } from 'node:module'; const require = __r(import.meta.url);";

/** Bundles one handler as serverless.yml does (ESM, minified, our plugins) into <dir>/build/functions/demo/. */
async function bundleHandler(source: string, beside: Record<string, string> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'esbuild-plugins-'));
  await writeFile(join(dir, 'handler.ts'), source);
  for (const [name, text] of Object.entries(beside)) await writeFile(join(dir, name), text);
  const outdir = join(dir, 'build', 'functions', 'demo');
  await build({
    entryPoints: [join(dir, 'handler.ts')], bundle: true, minify: true, sourcemap: true, platform: 'node', format: 'esm',
    outdir, outExtension: { '.js': '.mjs' }, banner: { js: BANNER }, plugins, logLevel: 'error',
  });
  return { dir, outdir };
}

/** Calls a handler in a fresh process: its answer, and what the script loader said about each code cache (stderr). */
function invoke(handlerFile: string, event: unknown, exportName = 'handler') {
  const script = `const m = await import(${JSON.stringify(pathToFileURL(handlerFile).href)}); console.log(JSON.stringify(await m[${JSON.stringify(exportName)}](${JSON.stringify(event)})));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH, AI_MASS_CODE_CACHE_DEBUG: '1' } });
  if (run.status !== 0) throw new Error(`handler failed: ${run.stderr}`);
  return { answer: JSON.parse(run.stdout.trim()) as unknown, cacheLog: run.stderr };
}

describe('esbuild plugins of the deployed bundles', () => {
  it("turn ESM imports of Node's built-ins into require(), keeping named, default and dynamic imports working", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'esbuild-plugins-'));
    await writeFile(join(dir, 'entry.ts'), `import { STATUS_CODES } from 'node:http';
import https from 'https';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as util from 'node:util';
export const answer = {
  ok: STATUS_CODES[200],
  agent: typeof https.Agent,
  dynamic: typeof (await import('node:http')).request,
  hash: createHash('sha256').update('x').digest('hex').slice(0, 8),
  readFile: typeof readFile,
  format: util.format('%s!', 'hi'),
};`);
    await build({
      entryPoints: [join(dir, 'entry.ts')], bundle: true, minify: true, platform: 'node', format: 'esm',
      outfile: join(dir, 'entry.mjs'), banner: { js: BANNER }, plugins: [builtinsThroughRequire], logLevel: 'error',
    });
    const out = await readFile(join(dir, 'entry.mjs'), 'utf8');
    expect(out).not.toMatch(/from\s*"(node:)?(https?|crypto|fs\/promises|util)"/);
    expect(out).not.toMatch(/import\(\s*"(node:)?https?"\s*\)/);
    for (const name of ['http', 'https', 'crypto', 'fs/promises', 'util']) expect(out).toContain(`("node:${name}")`); // require(), renamed by the minifier
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', `console.log(JSON.stringify((await import(${JSON.stringify(pathToFileURL(join(dir, 'entry.mjs')).href)})).answer))`], { encoding: 'utf8' });
    expect(JSON.parse(run.stdout)).toEqual({ ok: 'OK', agent: 'function', dynamic: 'function', hash: '2d711642', readFile: 'function', format: 'hi!' });
  });

  it('ship a handler as a shim and a CommonJS bundle with a code cache that a moved copy (as unpacked in /var/task) accepts', async () => {
    const { dir, outdir } = await bundleHandler(`const table = Array.from({ length: 64 }, (_, i) => i * i);
export const handler = async (event: { n: number }) => ({
  square: table[event.n],
  url: import.meta.url.endsWith('/handler.app.cjs'),
  dynamic: typeof (await import('node:os')).cpus,
});`);
    expect((await readdir(outdir)).sort()).toEqual(['handler.app.cjs', 'handler.app.cjs.map', 'handler.app.cjs.v8-cache', 'handler.mjs']);
    expect(await readFile(join(outdir, 'handler.app.cjs'), 'utf8')).toMatch(/\/\/# sourceMappingURL=handler\.app\.cjs\.map\n?$/);
    expect(await readFile(join(outdir, 'handler.mjs'), 'utf8')).toMatch(/^\/\/ Generated at packaging \(infra\/esbuild\/plugins\.ts\)/);

    const moved = join(dir, 'var', 'task', 'functions', 'demo');
    await mkdir(moved, { recursive: true });
    await cp(outdir, moved, { recursive: true });
    const { answer, cacheLog } = invoke(join(moved, 'handler.mjs'), { n: 20 });
    expect(answer).toEqual({ square: 400, url: true, dynamic: 'function' });
    expect(cacheLog).toBe(`code cache for ${join(moved, 'handler.app.cjs')}: accepted\n`);
  });

  it('make the code cache after the handler ran, so it holds the functions its init compiled', async () => {
    // One large function, called during init (its ready) in one handler and never in the other.
    const body = Array.from({ length: 400 }, (_, i) => `  v = (v * ${i + 3} + ${i}) % 1000003;`).join('\n');
    const source = (called: boolean) => `function work(seed: number) {\n  let v = seed;\n${body}\n  return v;\n}
export const ready = Promise.resolve(${called ? 'work(7)' : '0'});
export const handler = async () => ({ value: await ready });`;
    const called = await bundleHandler(source(true));
    const notCalled = await bundleHandler(source(false));
    const size = async (outdir: string) => (await stat(join(outdir, 'handler.app.cjs.v8-cache'))).size;
    expect(await size(called.outdir)).toBeGreaterThan((await size(notCalled.outdir)) + 2000);
    expect(invoke(join(called.outdir, 'handler.mjs'), {}).answer).toEqual({ value: expect.any(Number) as number });
  });

  it("await the handler's exported ready before its import resolves, and re-export every named handler but ready", async () => {
    const { outdir } = await bundleHandler(`const g = globalThis as { inited?: boolean };
export const ready = new Promise<void>((resolve) => setTimeout(() => { g.inited = true; resolve(); }, 50));
export const api = async () => ({ api: g.inited === true });
export const worker = async () => ({ worker: g.inited === true });`);
    expect(invoke(join(outdir, 'handler.mjs'), {}, 'api').answer).toEqual({ api: true });
    expect(invoke(join(outdir, 'handler.mjs'), {}, 'worker').answer).toEqual({ worker: true });
    const names = spawnSync(process.execPath, ['--input-type=module', '-e', `console.log(Object.keys(await import(${JSON.stringify(pathToFileURL(join(outdir, 'handler.mjs')).href)})).sort().join())`], { encoding: 'utf8' });
    expect(names.stdout.trim()).toBe('api,worker');
  });

  it("bundle a handler's ./boot.ts as a script of its own, run first with its ready awaited, and shared with the bundle as one module", async () => {
    const { outdir } = await bundleHandler(
      `import { bootOrder } from './boot.ts';
import { shared } from './shared.ts';
const g = globalThis as { order?: string[] };
g.order!.push('app');
export const handler = async () => ({ bootOrder, order: g.order, shared: shared() });`,
      {
        'boot.ts': `import { shared } from './shared.ts';
const g = globalThis as { order?: string[] };
(g.order ??= []).push('boot');
export const bootOrder = 'BOOT_RAN_' + g.order.length + shared();
export const ready = new Promise<void>((resolve) => setTimeout(() => { g.order!.push('boot-ready'); resolve(); }, 20));`,
        'shared.ts': 'export const shared = () => "-shared";',
      },
    );
    expect((await readdir(outdir)).sort()).toEqual([
      'handler.app.cjs', 'handler.app.cjs.map', 'handler.app.cjs.v8-cache', 'handler.boot.cjs', 'handler.boot.cjs.map', 'handler.boot.cjs.v8-cache', 'handler.mjs',
    ]);
    const app = await readFile(join(outdir, 'handler.app.cjs'), 'utf8');
    expect(app).toMatch(/require\("\.\/handler\.boot\.cjs"\)/); // the bundle requires the boot module, not a copy of it
    expect(app).not.toContain('BOOT_RAN_');
    expect(await readFile(join(outdir, 'handler.boot.cjs'), 'utf8')).toContain('BOOT_RAN_');
    // Evaluated once, before the bundle, whose evaluation waits for the boot's ready; code both import (shared.ts) is in each file.
    const { answer, cacheLog } = invoke(join(outdir, 'handler.mjs'), {});
    expect(answer).toEqual({ bootOrder: 'BOOT_RAN_1-shared', order: ['boot', 'boot-ready', 'app'], shared: '-shared' });
    expect(cacheLog).toBe(`code cache for ${join(outdir, 'handler.boot.cjs')}: accepted\ncode cache for ${join(outdir, 'handler.app.cjs')}: accepted\n`);
  });

  it('still ship the code cache of a handler whose module throws during the training run', async () => {
    const { outdir } = await bundleHandler(`const table = new Map([[1, 'one']]);
if (!process.env.SOME_CONFIG) throw new Error('SOME_CONFIG environment variable is not set');
export const handler = async () => table.get(1);`);
    expect((await stat(join(outdir, 'handler.app.cjs.v8-cache'))).size).toBeGreaterThan(32);
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(pathToFileURL(join(outdir, 'handler.mjs')).href)})`], { encoding: 'utf8', env: { PATH: process.env.PATH, AI_MASS_CODE_CACHE_DEBUG: '1' } });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`code cache for ${join(outdir, 'handler.app.cjs')}: accepted\n`);
    expect(run.stderr).toContain('SOME_CONFIG environment variable is not set');
  });

  it('leave a handler to compile as usual when its source changed after packaging, V8 refuses its cache, or the cache is gone', async () => {
    // handler runs during init, so the cache holds its compiled code: V8 alone checks only the source's length.
    const { outdir } = await bundleHandler('export const handler = async () => ({ version: 1 });\nexport const ready = handler();');
    const app = join(outdir, 'handler.app.cjs');
    await writeFile(app, (await readFile(app, 'utf8')).replace('version:1', 'version:2'));
    const changed = invoke(join(outdir, 'handler.mjs'), {});
    expect(changed.answer).toEqual({ version: 2 });
    expect(changed.cacheLog).toBe(`code cache for ${app}: stale\n`);
    const rebuilt = await bundleHandler('export const handler = async () => ({ version: 3 });');
    const otherFlags = spawnSync(process.execPath, ['--no-opt', '--input-type=module', '-e', `const m = await import(${JSON.stringify(pathToFileURL(join(rebuilt.outdir, 'handler.mjs')).href)}); console.log(JSON.stringify(await m.handler()));`], { encoding: 'utf8', env: { PATH: process.env.PATH, AI_MASS_CODE_CACHE_DEBUG: '1' } });
    expect(JSON.parse(otherFlags.stdout)).toEqual({ version: 3 });
    expect(otherFlags.stderr).toBe(`code cache for ${join(rebuilt.outdir, 'handler.app.cjs')}: rejected\n`);
    await rm(`${app}.v8-cache`);
    const without = invoke(join(outdir, 'handler.mjs'), {});
    expect(without.answer).toEqual({ version: 2 });
    expect(without.cacheLog).toBe(`code cache for ${app}: absent\n`);
  });
});
