#!/usr/bin/env node
// The CLI is TypeScript run by Node 24's type stripping. An older node on PATH hands over to the
// Node 24 the project pins, so `mass` behaves the same however it is started.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const major = Number(process.versions.node.split('.')[0]);
if (major >= 24) {
  await import('../functions/cli/mass.ts');
} else {
  const pinned = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  const entry = fileURLToPath(new URL('../functions/cli/mass.ts', import.meta.url));
  const run = spawnSync(pinned, [entry, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(run.status ?? 1);
}
