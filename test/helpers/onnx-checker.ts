/**
 * Runs the reference ONNX checker (Debian's python3-onnx, IR ≤ 8, opset ≤ 17) over a model file or
 * its bytes. Every model file our code writes should pass it, so tests call this rather than trusting
 * onnxruntime alone, which loads some models the spec forbids.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

// The system interpreter, not whatever python3 is first on PATH: only it has the onnx module.
const checkerPython = '/usr/bin/python3';
const checkerScript = 'import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)';

export class OnnxCheckerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OnnxCheckerError';
  }
}

/** Resolves when the checker accepts the model; throws OnnxCheckerError carrying its stderr otherwise. */
export async function checkOnnxModel(pathOrBytes: string | Uint8Array): Promise<void> {
  let directory: string | undefined;
  let path: string;
  if (typeof pathOrBytes === 'string') {
    path = pathOrBytes;
  } else {
    directory = await mkdtemp(join(tmpdir(), 'onnx-checker-'));
    path = join(directory, 'model.onnx');
    await writeFile(path, pathOrBytes);
  }
  try {
    await execFileAsync(checkerPython, ['-c', checkerScript, path], { maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim() ?? '';
    // The Python traceback says only where in onnx it failed; the exception line says why.
    const reasonStart = stderr.search(/^[\w.]*(Error|Exception): /m);
    const reason = reasonStart >= 0 ? stderr.slice(reasonStart).replace(/^[\w.]*\.(\w+: )/, '$1') : stderr;
    const subject = typeof pathOrBytes === 'string' ? pathOrBytes : `the model (${pathOrBytes.byteLength} bytes)`;
    throw new OnnxCheckerError(`ONNX checker rejected ${subject}: ${reason || (error as Error).message}`, { cause: error });
  } finally {
    if (directory) await rm(directory, { recursive: true, force: true });
  }
}
