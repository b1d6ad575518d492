import { execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

// Lambda runs bundles with no node_modules beside them, where protobufjs's runtime require of `long`
// finds nothing: int64 fields must still decode exactly there.
describe('int64 fields in a bundled function', () => {
  it('decode as exact Long values, INT64_MAX included', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'int64-bundle-'));
    const entry = join(dir, 'entry.ts');
    await writeFile(
      entry,
      `import { decodeModel, encodeModel, int64ToBigInt } from ${JSON.stringify(join(process.cwd(), 'functions/core/onnx/model-proto.ts'))};
const bytes = encodeModel({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph: { name: 'g', node: [{ opType: 'Slice', input: ['x'], output: ['y'], attribute: [{ name: 'ends', type: 7, ints: ['9223372036854775807'] }] }] } });
const decoded = decodeModel(bytes);
const ends = decoded.graph.node[0].attribute[0].ints[0];
console.log(JSON.stringify({ type: ends.constructor.name, value: int64ToBigInt(ends).toString() }));`,
    );
    await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', outfile: join(dir, 'out.mjs'), logLevel: 'error',
      banner: { js: "import { createRequire as __r } from 'node:module'; const require = __r(import.meta.url);" } });
    const out = execFileSync(process.execPath, [join(dir, 'out.mjs')], { cwd: dir, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ type: 'Long', value: '9223372036854775807' });
  });
});
