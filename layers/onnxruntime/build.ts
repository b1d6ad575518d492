// Builds the onnxruntime-node Lambda layer: layers/onnxruntime/dist/nodejs/node_modules/ and
// layers/onnxruntime/dist/onnxruntime-layer.zip (Lambda mounts it at /opt, so the packages resolve
// from /opt/nodejs/node_modules).
//
// The layer carries only onnxruntime-node and onnxruntime-common. The AWS SDK is deliberately not in
// it: the nodejs24.x runtime already ships SDK v3, and each handler bundles (and so pins) the few
// clients it uses, which tree-shakes far smaller than a whole SDK in a layer and cold-starts faster
// than the runtime's copy. onnxruntime-node is the one thing esbuild cannot bundle (a native addon
// next to a 45 MB shared library), so it is the one thing the layer is for.
//
// Files are copied from the project's own node_modules (the version package-lock.json pins, already
// tested here) through an allowlist, rather than installed afresh: no network, and the layer we ship
// is byte for byte the runtime the tests load. Its install-time dependencies (adm-zip, global-agent
// fetch CUDA providers during postinstall) are never loaded at run time and stay out.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const layerDir = path.dirname(fileURLToPath(import.meta.url));
const projectRoot = path.resolve(layerDir, '..', '..');

export const LAYER_DIST = path.join(layerDir, 'dist');
export const LAYER_NODE_MODULES = path.join(LAYER_DIST, 'nodejs', 'node_modules');
export const LAYER_ZIP = path.join(LAYER_DIST, 'onnxruntime-layer.zip');
export const LAYER_MANIFEST = path.join(LAYER_DIST, 'layer-manifest.json');

/** The architecture the stack deploys (serverless.yml `architecture: x86_64`), in Node's naming. */
const TARGET = { platform: 'linux', arch: 'x64' } as const;

/** Everything a package needs at run time; anything not matched (docs, types, sources, maps, other platforms) is left out. */
const KEEP: Record<string, (relPath: string) => boolean> = {
  'onnxruntime-node': (p) =>
    p === 'package.json' ||
    p === 'LICENSE' ||
    /^dist\/[^/]+\.js$/.test(p) ||
    // The CPU provider lives inside libonnxruntime; libonnxruntime_providers_{shared,cuda,tensorrt}
    // only exist for GPU builds and would add hundreds of MB that a Lambda can never use.
    new RegExp(`^bin/napi-v6/${TARGET.platform}/${TARGET.arch}/(onnxruntime_binding\\.node|libonnxruntime\\.so(\\.[0-9.]+)?)$`).test(p),
  'onnxruntime-common': (p) =>
    p === 'package.json' ||
    p === 'LICENSE' ||
    // Both builds: onnxruntime-node requires the CJS one, a handler importing onnxruntime-common gets the ESM one.
    /^dist\/(cjs|esm)\/([^/]+\.js|package\.json)$/.test(p),
};

export interface LayerManifest {
  onnxruntimeVersion: string;
  platform: string;
  arch: string;
  files: number;
  unzippedBytes: number;
  zipBytes: number;
  zipSha256: string;
}

function listFiles(root: string, rel = ''): string[] {
  return readdirSync(path.join(root, rel), { withFileTypes: true }).flatMap((entry) => {
    const child = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) return listFiles(root, child);
    return entry.isFile() ? [child] : [];
  });
}

function sizeOf(root: string): { files: number; bytes: number } {
  const files = listFiles(root);
  return { files: files.length, bytes: files.reduce((sum, f) => sum + statSync(path.join(root, f)).size, 0) };
}

/** Where Node would load `name` from when required from `fromDir` (package.json itself may be hidden by `exports`). */
function packageDir(name: string, fromDir: string): string {
  const lookups = createRequire(path.join(fromDir, 'noop.js')).resolve.paths(name) ?? [];
  const found = lookups.map((dir) => path.join(dir, name)).find((dir) => existsSync(path.join(dir, 'package.json')));
  if (!found) throw new Error(`${name} is not installed (run npm ci)`);
  return found;
}

function copyPackage(name: string): void {
  // onnxruntime-common is resolved from onnxruntime-node, so a nested copy wins over a hoisted one, as at run time.
  const from = name === 'onnxruntime-node' ? projectRoot : packageDir('onnxruntime-node', projectRoot);
  const source = packageDir(name, from);
  const keep = KEEP[name];
  if (!keep) throw new Error(`no allowlist for ${name}`);
  const kept = listFiles(source).filter(keep);
  for (const rel of kept) {
    const to = path.join(LAYER_NODE_MODULES, name, rel);
    mkdirSync(path.dirname(to), { recursive: true });
    cpSync(path.join(source, rel), to, { dereference: true });
  }
  if (name === 'onnxruntime-node' && !kept.some((p) => p.endsWith('/onnxruntime_binding.node'))) {
    throw new Error(`onnxruntime-node in ${source} has no ${TARGET.platform}/${TARGET.arch} binding`);
  }
}

/** Fixed modes and timestamps, and a sorted entry list, so the same inputs give the same zip (and the same layer hash). */
function normalise(root: string): string[] {
  const fixed = new Date('2020-01-01T00:00:00Z');
  const entries: string[] = [];
  const walk = (rel: string): void => {
    const abs = path.join(root, rel);
    const isDir = statSync(abs).isDirectory();
    chmodSync(abs, isDir ? 0o755 : 0o644);
    utimesSync(abs, fixed, fixed);
    entries.push(isDir ? `${rel}/` : rel);
    if (isDir) for (const name of readdirSync(abs).sort()) walk(`${rel}/${name}`);
  };
  walk('nodejs');
  return entries;
}

function zipLayer(entries: string[]): void {
  try {
    execFileSync('zip', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('the zip command is required to build the layer (apt-get install zip)');
  }
  rmSync(LAYER_ZIP, { force: true });
  // -X: no extra attributes (uid/gid, extended timestamps) that would make the zip differ between machines.
  execFileSync('zip', ['-X', '-q', '-9', LAYER_ZIP, '-@'], { cwd: LAYER_DIST, input: entries.join('\n') });
}

function build(): LayerManifest {
  rmSync(LAYER_DIST, { recursive: true, force: true });
  mkdirSync(LAYER_NODE_MODULES, { recursive: true });
  for (const name of Object.keys(KEEP)) copyPackage(name);

  zipLayer(normalise(LAYER_DIST));

  const version = (JSON.parse(readFileSync(path.join(LAYER_NODE_MODULES, 'onnxruntime-node', 'package.json'), 'utf8')) as { version: string }).version;
  const { files, bytes } = sizeOf(path.join(LAYER_DIST, 'nodejs'));
  const zip = readFileSync(LAYER_ZIP);
  const manifest: LayerManifest = {
    onnxruntimeVersion: version,
    platform: TARGET.platform,
    arch: TARGET.arch,
    files,
    unzippedBytes: bytes,
    zipBytes: zip.length,
    zipSha256: createHash('sha256').update(zip).digest('hex'),
  };
  writeFileSync(LAYER_MANIFEST, `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

const LOCK_DIR = `${LAYER_DIST}.lock`;
const STALE_LOCK_MS = 5 * 60_000;

/** Test files run in parallel workers and may all ask for the layer; mkdir is atomic, so one builds and the rest wait. */
function withLock<T>(work: () => T): T {
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const lock = statSync(LOCK_DIR, { throwIfNoEntry: false });
      // A lock older than any build is left by a killed process.
      if (lock && Date.now() - lock.mtimeMs > STALE_LOCK_MS) rmSync(LOCK_DIR, { recursive: true, force: true });
      else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
  try {
    return work();
  } finally {
    rmSync(LOCK_DIR, { recursive: true, force: true });
  }
}

function installedVersion(): string {
  const dir = packageDir('onnxruntime-node', projectRoot);
  return (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The manifest of an existing build of the installed onnxruntime-node, or a fresh build when there is none. */
export function ensureLayer(): LayerManifest {
  return withLock(() => {
    if (existsSync(LAYER_MANIFEST) && existsSync(LAYER_ZIP)) {
      const manifest = JSON.parse(readFileSync(LAYER_MANIFEST, 'utf8')) as LayerManifest;
      if (manifest.onnxruntimeVersion === installedVersion()) return manifest;
    }
    return build();
  });
}

export function buildLayer(): LayerManifest {
  return withLock(build);
}

const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const m = buildLayer();
  console.log(
    `onnxruntime-node ${m.onnxruntimeVersion} ${m.platform}/${m.arch}: ${m.files} files, ` +
      `unzipped ${mib(m.unzippedBytes)} (${m.unzippedBytes} bytes), zip ${mib(m.zipBytes)} -> ${path.relative(projectRoot, LAYER_ZIP)}`,
  );
}
