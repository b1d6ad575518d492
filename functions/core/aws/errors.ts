/**
 * AWS errors told apart by name, so the code that checks them needs no SDK module loaded (the
 * inference bundle evaluates no SDK client at import: lazy-clients.ts).
 */

/** A DynamoDB conditional write whose condition did not hold (a lost race, or a state moved on). */
export function isConditionFailure(error: unknown): boolean {
  return (error as { name?: string })?.name === 'ConditionalCheckFailedException';
}
