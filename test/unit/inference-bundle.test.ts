import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Metafile } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');

/** The inputs a bundle evaluates at import: reachable from the entry by static imports and requires. */
function evaluatedAtImport(metafile: Metafile, entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const imp of metafile.inputs[file]?.imports ?? []) {
      if (imp.kind !== 'dynamic-import' && !imp.external) visit(imp.path);
    }
  };
  visit(entry);
  return seen;
}

/** The resolution serverless.yml's esbuild settings use (ESM, node, module before main). */
function bundleInference() {
  return build({
      entryPoints: [join(root, 'functions/inference/handler.ts')],
      absWorkingDir: root,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      mainFields: ['module', 'main'],
      external: ['onnxruntime-node'],
      write: false,
      outdir: join(root, '.esbuild-test-unused'),
      metafile: true,
      logLevel: 'error',
    });
}

describe("the inference function's bundle", () => {
  it('evaluates no AWS SDK client at import: S3 and DynamoDB load on first use (lazy-clients.ts)', async () => {
    const result = await bundleInference();
    const atImport = [...evaluatedAtImport(result.metafile, 'functions/inference/handler.ts')];
    const clients = atImport.filter((file) => /node_modules\/@aws-sdk\/(client-|lib-)/.test(file));
    expect(clients).toEqual([]);
    // ...and they are in the bundle, for when a request needs them.
    const bundled = Object.keys(result.metafile.inputs);
    expect(bundled.some((file) => file.includes('node_modules/@aws-sdk/client-s3/'))).toBe(true);
    expect(bundled.some((file) => file.includes('node_modules/@aws-sdk/lib-dynamodb/'))).toBe(true);
    // The boot fetch's signer is the one part of the SDK's code that runs first thing.
    expect(atImport.some((file) => file.includes('node_modules/@smithy/signature-v4/'))).toBe(true);
  });

  it('evaluates no tracer at import: the X-Ray SDK loads only where tracing is on (platform/tracing.ts)', async () => {
    const result = await bundleInference();
    const atImport = [...evaluatedAtImport(result.metafile, 'functions/inference/handler.ts')];
    expect(atImport.filter((file) => /node_modules\/(@aws-lambda-powertools\/tracer|aws-xray-sdk-core)\//.test(file))).toEqual([]);
    expect(Object.keys(result.metafile.inputs).some((file) => file.includes('node_modules/@aws-lambda-powertools/tracer/'))).toBe(true);
  });

  it('carries zod/mini and one locale, not classic zod (functions/core/platform/zod-mini.ts), and its messages are English', async () => {
    const { outputs } = (await bundleInference()).metafile;
    // What ends up in the output (tree shaking leaves the other locales parsed, with no bytes in it).
    const zod = Object.values(outputs)
      .flatMap((output) => Object.entries(output.inputs))
      .filter(([file, { bytesInOutput }]) => file.includes('node_modules/zod/') && bytesInOutput > 0)
      .map(([file]) => file);
    expect(zod.filter((file) => file.includes('/v4/classic/'))).toEqual([]);
    expect(zod.filter((file) => file.includes('/v4/locales/')).map((file) => file.split('/').pop())).toEqual(['en.js']);
    // In a process of its own, so no classic zod elsewhere can have set the messages first.
    const script = `const { inferRequestHeaderSchema } = await import(${JSON.stringify(pathToFileURL(join(root, 'functions/core/v2/schemas.ts')).href)});
console.log(JSON.stringify(inferRequestHeaderSchema.safeParse({ inputs: [{ name: '', shape: [], datatype: 'FP32' }] }).error.issues.map((i) => i.message)));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual(['Too small: expected string to have >=1 characters']);
  });
});
