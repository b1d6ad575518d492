import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * Starts batch worker processes on this machine: the same entry point as the GPU container
 * (infra/gpu-worker/worker.ts), against the local emulators. Used by `mass worker`, the local stack
 * and the tests that kill workers.
 */
export const WORKER_ENTRY = fileURLToPath(new URL('./worker.ts', import.meta.url));
/**
 * As the container runs it (infra/gpu-worker/Dockerfile): rows allocate a lot of short-lived values
 * (a larger young generation), and a shard's network buffers and result text start a full collection
 * of the worker's ~30 MB heap every few thousand JSONL rows unless the old generation may grow first.
 */
export const WORKER_NODE_FLAGS = ['--max-semi-space-size=64', '--initial-old-space-size=256'];

export interface WorkerLine {
  level: string;
  message: string;
  pid: number;
  [field: string]: unknown;
}

export interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** Resolves with the first log line that matches. */
  waitFor(match: (line: WorkerLine) => boolean, timeoutMs?: number): Promise<WorkerLine>;
  lines: WorkerLine[];
}

export function startWorkerProcess(env: Record<string, string>, onLine?: (line: WorkerLine) => void): WorkerProcess {
  const child = spawn(process.execPath, [...WORKER_NODE_FLAGS, WORKER_ENTRY], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: WorkerLine[] = [];
  const waiters = new Set<{ match: (line: WorkerLine) => boolean; resolve: (line: WorkerLine) => void }>();
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: WorkerLine;
    try {
      line = JSON.parse(text) as WorkerLine;
    } catch {
      line = { level: 'info', message: text, pid: child.pid ?? 0 };
    }
    lines.push(line);
    onLine?.(line);
    for (const w of waiters) if (w.match(line)) { waiters.delete(w); w.resolve(line); }
  });
  createInterface({ input: child.stderr! }).on('line', (text) => {
    stderr.push(text);
    if (stderr.length > 50) stderr.shift();
  });
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  return {
    child,
    pid: child.pid ?? 0,
    exited,
    lines,
    waitFor(match, timeoutMs = 30_000) {
      const found = lines.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = { match, resolve: (line: WorkerLine) => { clearTimeout(timer); resolve(line); } };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`worker ${child.pid}: no matching log line within ${timeoutMs} ms; stderr: ${stderr.join('\n')}`));
        }, timeoutMs);
        waiters.add(waiter);
        void exited.then((code) => {
          if (waiters.delete(waiter)) {
            clearTimeout(timer);
            reject(new Error(`worker ${child.pid} exited (${code}) before a matching log line; stderr: ${stderr.join('\n')}`));
          }
        });
      });
    },
  };
}

export function startWorkerProcesses(count: number, env: Record<string, string>, onLine?: (line: WorkerLine) => void): WorkerProcess[] {
  return Array.from({ length: count }, () => startWorkerProcess(env, onLine));
}

/** SIGTERM, as ECS sends on scale-in, then waits for every worker to drain and exit. */
export async function stopWorkerProcesses(workers: readonly WorkerProcess[]): Promise<void> {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
  await Promise.all(workers.map((w) => w.exited));
}
