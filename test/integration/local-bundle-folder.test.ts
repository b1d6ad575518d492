import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { localBundleFolder } from '../../infra/local/stack.ts';

// `npx serverless package` empties serverless-esbuild's work folder before it builds; the local stack
// serves its handlers from such a folder too. The two must never be the same folder.
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const run = promisify(execFile);

/** serverless-esbuild's work folder as the framework resolves serverless.yml with this environment. */
async function resolvedWorkFolder(extraEnv: Record<string, string>, ...params: string[]): Promise<string> {
  const env = { ...process.env, ...extraEnv };
  if (!('AI_MASS_ESBUILD_WORK_FOLDER' in extraEnv)) delete env.AI_MASS_ESBUILD_WORK_FOLDER;
  const { stdout } = await run(process.execPath, [join(ROOT, 'node_modules', 'serverless', 'bin', 'serverless.js'), 'print', ...params, '--path', 'custom.esbuild.outputWorkFolder'], {
    cwd: ROOT,
    env,
    timeout: 180_000,
  });
  return stdout.trim();
}

describe('build folders', () => {
  it('differ between `serverless package` and the local stack, and between two local stacks', async () => {
    const [packaging, local, second] = await Promise.all([
      resolvedWorkFolder({}),
      resolvedWorkFolder({ AI_MASS_ESBUILD_WORK_FOLDER: localBundleFolder(3120) }, '--stage', 'local', '--param', 'runtimeTarget=local'),
      resolvedWorkFolder({ AI_MASS_ESBUILD_WORK_FOLDER: localBundleFolder(3130) }, '--stage', 'local', '--param', 'runtimeTarget=local'),
    ]);
    expect([packaging, local, second]).toEqual(['.esbuild', join('.local', 'esbuild-3120'), join('.local', 'esbuild-3130')]);
  }, 240_000);
});
