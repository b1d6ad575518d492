import { join } from 'node:path';
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

describe("the inference function's bundle", () => {
  it('evaluates no AWS SDK client at import: S3 and DynamoDB load on first use (lazy-clients.ts)', async () => {
    // The resolution serverless.yml's esbuild settings use (ESM, node, module before main).
    const result = await build({
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
});
