/**
 * onnxruntime's messages name the C++ file, line and function that failed
 * (`/onnxruntime_src/.../matmul_helper.h:61 onnxruntime::common::Status onnxruntime::...(...) left operand
 * cannot broadcast on dim 0`). Those are the runtime's internals, not something a caller can act on, so
 * every message of the runtime that reaches a user, a rejection record or a log shown to a user goes
 * through here first: the path and the function signature that follows it are removed, the text
 * that explains the failure is kept.
 */
const SOURCE_PATH = /(?:(?:\b[A-Za-z]:)?(?:[/\\][\w.+@-]+)+\.(?:cc|cpp|cxx|c|h|hpp|cu|cuh|inc)(?::\d+)?|\b[\w+-]+\.(?:cc|cpp|cxx|c|h|hpp|cu|cuh|inc):\d+)/g;
/** A C++ signature right after the path: a return type and/or qualified name, then a parameter list. */
const SIGNATURE_START = /^\s+(?:[\w:<>,~*&]+\s+)*?[\w~]+(?:::[\w~<>]+)+\s*\(/;

/** onnxruntime's checks write `file:line function message`; an unqualified function is one word. */
const BARE_FUNCTION = /^\s+[A-Za-z_~][\w~]*(?=\s)/;

function skipSignature(text: string, from: number, hasLine: boolean): number {
  const head = SIGNATURE_START.exec(text.slice(from));
  if (!head) {
    const bare = hasLine ? BARE_FUNCTION.exec(text.slice(from)) : null;
    return bare ? from + bare[0].length : from;
  }
  let i = from + head[0].length;
  let depth = 1;
  while (i < text.length && depth > 0) {
    const c = text[i++];
    if (c === '(') depth++;
    else if (c === ')') depth--;
  }
  if (depth > 0) return from;
  const tail = /^(?:\s*const)?(?:\s*\[with [^\]]*\])?/.exec(text.slice(i));
  return i + (tail ? tail[0].length : 0);
}

/** The message of an error thrown by onnxruntime, without source paths or C++ signatures. */
export function runtimeMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  let out = '';
  let last = 0;
  for (const match of text.matchAll(SOURCE_PATH)) {
    out += text.slice(last, match.index);
    last = skipSignature(text, match.index + match[0].length, /:\d+$/.test(match[0]));
  }
  out += text.slice(last);
  return out.replace(/[ \t]{2,}/g, ' ').replace(/\s+$/, '').trim();
}
