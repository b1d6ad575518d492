import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

/**
 * zod/mini for the schemas on a cold start's path (config, manifest, V2 request): the same parsers
 * and issues as `zod`, without the methods classic zod builds on every schema instance, and its
 * module is a fifth of the size. Measured in fresh processes, loading it and building an object
 * schema took 2.6-4.5 ms against 7.5-13 ms for classic zod. Classic zod sets English messages on its
 * first schema; mini has none of its own, so they are set here (a config both share, process-wide).
 * Import it as a namespace (`import * as z`), as the README says for zod itself.
 */
config(en());

// Re-exported name by name (not as one namespace object), so esbuild still drops what is unused.
export * from 'zod/mini';
