import { execFile, execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const root = path.resolve(import.meta.dirname, '..', '..');
const serverlessBin = createRequire(path.join(root, 'package.json')).resolve('serverless/bin/serverless.js');

export interface Resource {
  Type: string;
  Properties: Record<string, unknown>;
  Condition?: string;
}
export interface Template {
  Resources: Record<string, Resource>;
  Parameters?: Record<string, { Type: string; Default?: string }>;
  Conditions?: Record<string, unknown>;
}
export interface Packaged {
  dir: string;
  template: Template;
  /** What `serverless package` printed (stdout, then stderr): its plugins' warnings among it. */
  output: string;
  /** The code-cache training runs that went through, by the marker each wrote (infra/esbuild/train-code-cache.ts). */
  codeCachesTrained: { function: string; training: string | null }[];
}

// Packaging runs in a network namespace with only loopback (brought up: the inference function's
// code-cache training serves itself from the local emulators) when the machine allows one, so a
// single attempt to reach AWS or instance metadata fails the run instead of passing unnoticed.
// Either way the credentials are dummies and any SDK call is pointed at a closed loopback port.
const LOOPBACK_ONLY = ['-rn', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"'];
export const isolated = (() => {
  try {
    execFileSync('unshare', [...LOOPBACK_ONLY, 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** Build outputs and local state that a copy of the service must not carry. */
const NOT_COPIED = new Set(['node_modules', '.git', '.serverless', '.esbuild', '.build', '.local', 'scratch', 'tmp', 'bench', 'layers/onnxruntime/dist']);
const workDirs: string[] = [];

/**
 * Packages a copy of the service with `serverless package`, offline: serverless-esbuild always stages
 * artifacts in `<service>/.serverless`, whatever --package says, so two runs in one directory (these
 * tests in parallel, or someone's `npm run package`) would overwrite each other's zips.
 */
export async function packageService(name: string, params: Record<string, string>, stage = 'test'): Promise<Packaged> {
  const work = await mkdtemp(path.join(tmpdir(), `ai-mass-package-${name}-`));
  workDirs.push(work);
  const service = path.join(work, 'service');
  const dir = path.join(work, 'out');
  await cp(root, service, {
    recursive: true,
    filter: (source) =>
      !NOT_COPIED.has(path.relative(root, source).split(path.sep).join('/')) && !path.basename(source).startsWith('.esbuild') && !source.endsWith('.lock'),
  });
  await symlink(path.join(root, 'node_modules'), path.join(service, 'node_modules'), 'dir');
  // Packaging's own temporary files (serverless-esbuild leaves its zip staging folders behind) go
  // under the work folder, which the tests remove.
  const temp = path.join(work, 'tmp');
  await mkdir(temp);
  const trained = path.join(work, 'code-cache-trained');
  await mkdir(trained);
  const args = [serverlessBin, 'package', '--stage', stage, '--package', dir, ...Object.entries(params).map(([k, v]) => `--param=${k}=${v}`)];
  const [file, argv] = isolated ? ['unshare', [...LOOPBACK_ONLY, process.execPath, ...args]] : [process.execPath, args];
  const { stdout, stderr } = await run(file, argv, {
    cwd: service,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: temp, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_EC2_METADATA_DISABLED: 'true', AWS_ENDPOINT_URL: 'http://127.0.0.1:9', AI_MASS_CODE_CACHE_TRAINED_DIR: trained },
    // Four stacks package at once in package.test.ts; on a shared two-core machine one took over 300 s.
    timeout: 600_000,
  });
  const codeCachesTrained = (await Promise.all((await readdir(trained)).map(async (file) => JSON.parse(await readFile(path.join(trained, file), 'utf8')) as Packaged['codeCachesTrained'][number])))
    .sort((a, b) => a.function.localeCompare(b.function));
  return { dir, template: JSON.parse(await readFile(path.join(dir, 'cloudformation-template-update-stack.json'), 'utf8')) as Template, output: `${stdout}${stderr}`, codeCachesTrained };
}

export async function removePackagedServices(): Promise<void> {
  await Promise.all(workDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}
