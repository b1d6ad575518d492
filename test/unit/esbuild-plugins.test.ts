import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import plugins from '../../infra/esbuild/plugins.ts';

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

/** Calls a handler in a fresh process: its answer, and what Node's compile cache logged (stderr). */
function invoke(handlerFile: string, event: unknown, exportName = 'handler') {
  const script = `const m = await import(${JSON.stringify(pathToFileURL(handlerFile).href)}); console.log(JSON.stringify(await m[${JSON.stringify(exportName)}](${JSON.stringify(event)})));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH, NODE_DEBUG_NATIVE: 'COMPILE_CACHE' } });
  if (run.status !== 0) throw new Error(`handler failed: ${run.stderr}`);
  return { answer: JSON.parse(run.stdout.trim()) as unknown, cacheLog: run.stderr };
}

describe('esbuild plugins of the deployed bundles', () => {
  it("turn ESM imports of Node's built-ins into require(), keeping named, default and dynamic imports working", async () => {
    const { outdir } = await bundleHandler(`import { STATUS_CODES } from 'node:http';
import https from 'https';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as util from 'node:util';
export const handler = async () => ({
  ok: STATUS_CODES[200],
  agent: typeof https.Agent,
  dynamic: typeof (await import('node:http')).request,
  hash: createHash('sha256').update('x').digest('hex').slice(0, 8),
  readFile: typeof readFile,
  format: util.format('%s!', 'hi'),
});`);
    const app = await readFile(join(outdir, 'handler.app.mjs'), 'utf8');
    expect(app).not.toMatch(/from\s*"(node:)?(https?|crypto|fs\/promises|util)"/);
    expect(app).not.toMatch(/import\(\s*"(node:)?https?"\s*\)/);
    for (const name of ['http', 'https', 'crypto', 'fs/promises', 'util']) expect(app).toContain(`("node:${name}")`); // require(), renamed by the minifier
    expect(invoke(join(outdir, 'handler.mjs'), {}).answer).toEqual({ ok: 'OK', agent: 'function', dynamic: 'function', hash: '2d711642', readFile: 'function', format: 'hi!' });
  });

  it('ship a handler shim with a portable compile cache that a moved copy (as unpacked in /var/task) accepts', async () => {
    const { dir, outdir } = await bundleHandler(`const table = Array.from({ length: 64 }, (_, i) => i * i);
export const handler = async (event: { n: number }) => ({ square: table[event.n] });`);
    expect((await readdir(outdir)).sort()).toEqual(['handler.app.mjs', 'handler.app.mjs.map', 'handler.compile-cache', 'handler.mjs']);
    expect(await readFile(join(outdir, 'handler.app.mjs'), 'utf8')).toMatch(/\/\/# sourceMappingURL=handler\.app\.mjs\.map\n?$/);
    expect(await readdir(join(outdir, 'handler.compile-cache'))).toEqual([expect.stringMatching(new RegExp(`^${process.version}-${process.arch}-`))]);

    const moved = join(dir, 'var', 'task', 'functions', 'demo');
    await mkdir(moved, { recursive: true });
    await cp(outdir, moved, { recursive: true });
    const { answer, cacheLog } = invoke(join(moved, 'handler.mjs'), { n: 20 });
    expect(answer).toEqual({ square: 400 });
    const appUrl = pathToFileURL(join(moved, 'handler.app.mjs')).href;
    expect(cacheLog).toContain(`V8 code cache for ESM ${appUrl} was accepted`);
  });

  it('re-export every named handler of a file (one file serves several functions)', async () => {
    const { outdir } = await bundleHandler(`export const api = async () => 'api';
export const worker = async () => 'worker';`);
    expect(await readFile(join(outdir, 'handler.mjs'), 'utf8')).toContain('export const { api, worker } = await import("./handler.app.mjs");');
    expect(invoke(join(outdir, 'handler.mjs'), {}, 'api').answer).toBe('api');
    expect(invoke(join(outdir, 'handler.mjs'), {}, 'worker').answer).toBe('worker');
  });

  it("bundle a handler's ./boot.ts on its own, which the shim runs before loading the bundle, as one shared module", async () => {
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
export const bootOrder = 'BOOT_RAN_' + g.order.length + shared();`,
        'shared.ts': 'export const shared = () => "-shared";',
      },
    );
    expect((await readdir(outdir)).sort()).toEqual(['handler.app.mjs', 'handler.app.mjs.map', 'handler.boot.mjs', 'handler.boot.mjs.map', 'handler.compile-cache', 'handler.mjs']);
    const shimText = await readFile(join(outdir, 'handler.mjs'), 'utf8');
    expect(shimText.indexOf('await import("./handler.boot.mjs");')).toBeGreaterThan(shimText.indexOf('enableCompileCache('));
    expect(shimText.indexOf('await import("./handler.boot.mjs");')).toBeLessThan(shimText.indexOf('await import("./handler.app.mjs");'));
    const app = await readFile(join(outdir, 'handler.app.mjs'), 'utf8');
    expect(app).toMatch(/from\s*"\.\/handler\.boot\.mjs"/); // the bundle imports the boot module, not a copy of it
    expect(app).not.toContain('BOOT_RAN_');
    expect(await readFile(join(outdir, 'handler.boot.mjs'), 'utf8')).toContain('BOOT_RAN_');
    // Evaluated once, before the bundle; code both import (shared.ts) is in each file.
    expect(invoke(join(outdir, 'handler.mjs'), {}).answer).toEqual({ bootOrder: 'BOOT_RAN_1-shared', order: ['boot', 'app'], shared: '-shared' });
  });

  it('leave a handler whose source changed after packaging to compile as usual', async () => {
    const { outdir } = await bundleHandler('export const handler = async () => ({ version: 1 });');
    const app = join(outdir, 'handler.app.mjs');
    await writeFile(app, (await readFile(app, 'utf8')).replace('version:1', 'version:2'));
    const { answer, cacheLog } = invoke(join(outdir, 'handler.mjs'), {});
    expect(answer).toEqual({ version: 2 });
    expect(cacheLog).not.toContain(`V8 code cache for ESM ${pathToFileURL(app).href} was accepted`);
  });
});
