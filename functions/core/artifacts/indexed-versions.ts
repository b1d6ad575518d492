/**
 * Which of a model's indexed versions serve. A module of its own, importing nothing, because the boot
 * fetch (coldstart/boot-fetch.ts) needs these filters too: importing them from model-store.ts put
 * that module and its manifest schema (zod) into the handler's boot script, before the pre-warm's
 * requests go on the wire.
 */

/** A version as the store needs to know it: whether it serves, and whether a user uploaded it (no lineage). */
export interface IndexedVersion {
  version: string;
  status: string;
  lineage?: unknown;
}

/** The versions that serve (not retired), in the records' order. */
export function registeredVersions(records: readonly IndexedVersion[]): string[] {
  return records.filter((v) => v.status === 'registered').map((v) => v.version);
}

/** The serving versions a user uploaded (no lineage): the default route of a model without a default alias. */
export function uploadedVersions(records: readonly IndexedVersion[]): string[] {
  return records.filter((v) => v.status === 'registered' && !v.lineage).map((v) => v.version);
}
