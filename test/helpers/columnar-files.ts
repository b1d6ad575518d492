import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';

/**
 * Columnar test inputs written by the tools users write them with: Parquet by DuckDB (`COPY ... TO
 * ... (FORMAT parquet)`), .npy and .npz by NumPy itself (Debian's python3-numpy), never by our code.
 */
const execFileAsync = promisify(execFile);

async function inTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'ai-mass-columnar-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The Parquet file DuckDB writes for `select` (a query over nothing but itself), with the COPY options given. */
export async function duckdbParquet(select: string, options = ''): Promise<Uint8Array> {
  return inTempDir(async (dir) => {
    const instance = await DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    try {
      const path = join(dir, 'out.parquet');
      await connection.run(`COPY (${select}) TO '${path}' (FORMAT parquet${options ? `, ${options}` : ''})`);
      return new Uint8Array(await readFile(path));
    } finally {
      connection.closeSync();
      instance.closeSync();
    }
  });
}

/**
 * What NumPy saves for a Python expression of `np` arrays: `np.save` of one array (.npy) or
 * `np.savez` / `np.savez_compressed` of named ones (.npz, given as `dict(name=array, ...)`).
 */
export async function numpyFile(kind: 'npy' | 'npz' | 'npz-compressed', expression: string): Promise<Uint8Array> {
  return inTempDir(async (dir) => {
    const path = join(dir, kind === 'npy' ? 'out.npy' : 'out.npz');
    const save = kind === 'npy' ? `np.save(path, ${expression})` : `np.${kind === 'npz' ? 'savez' : 'savez_compressed'}(path, **(${expression}))`;
    await execFileAsync('/usr/bin/python3', ['-c', `import sys, numpy as np\npath = sys.argv[1]\n${save}`, path]);
    return new Uint8Array(await readFile(path));
  });
}
