import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | undefined;

/**
 * A full garbage collection, for code that handles a model several times the size of V8's heap: the
 * buffers it dropped (bytes read for a check, parts of an upload) live outside the heap, and V8,
 * which does not see onnxruntime's native allocations either, would keep them until much later,
 * so they would add to the next step's peak instead of being returned first.
 */
export function releaseDroppedMemory(): void {
  if (!collect) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  collect();
}
