import { createHash } from 'node:crypto';

/** sha256 of bytes as lowercase hex: the identity of every model file a manifest names. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** sha256 of a file, read through one reused buffer: no garbage however large the file. */
export async function sha256OfFile(path: string): Promise<string> {
  const { open } = await import('node:fs/promises');
  const file = await open(path, 'r');
  try {
    const hash = createHash('sha256');
    const buffer = new Uint8Array(1024 * 1024);
    for (let position = 0; ; ) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) return hash.digest('hex');
      hash.update(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
  } finally {
    await file.close();
  }
}
