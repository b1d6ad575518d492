let collect: (() => void) | undefined;

/**
 * A full garbage collection, for code that handles a model several times the size of V8's heap: the
 * buffers it dropped (bytes read for a check, parts of an upload) live outside the heap, and V8,
 * which does not see onnxruntime's native allocations either, would keep them until much later,
 * so they would add to the next step's peak instead of being returned first. The built-ins it needs
 * are loaded on first use: the serving path imports this module and never calls it.
 */
export function releaseDroppedMemory(): void {
  if (!collect) {
    process.getBuiltinModule('node:v8').setFlagsFromString('--expose-gc');
    collect = process.getBuiltinModule('node:vm').runInNewContext('gc') as () => void;
  }
  collect();
}
