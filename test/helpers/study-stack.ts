import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import { createPkSkTable } from '../../functions/core/aws/dynamo-tables.ts';
import { StudyTable, type StudyTableOptions } from '../../functions/core/tune/study-table.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';

/** dynalite with a (pk, sk) table, and study tables on it, each a separate worker's view with its own client. */
export interface StudyStack {
  emulators: Emulators;
  tableName: string;
  /** A worker's own StudyTable (its own DynamoDB client, as separate Lambdas have). */
  worker(options?: StudyTableOptions): StudyTable;
  stop(): Promise<void>;
}

export async function startStudyStack(name: string): Promise<StudyStack> {
  const emulators = await startEmulators();
  const tableName = `${name}-registry`;
  await createPkSkTable(createDynamoClient({ endpoint: emulators.dynamoEndpoint }), tableName);
  return {
    emulators,
    tableName,
    worker: (options) => new StudyTable(createDynamoClient({ endpoint: emulators.dynamoEndpoint }), tableName, options),
    stop: () => emulators.stop(),
  };
}
