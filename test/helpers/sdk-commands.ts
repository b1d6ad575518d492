import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';

/**
 * Calls `seen` with each command's name and input as the real client sends it (before signing and
 * retries), so a test can assert exactly which requests a path makes. Nothing is changed or mocked.
 */
export function onCommand(client: S3Client | DynamoDBClient, seen: (name: string, input: Record<string, unknown>) => void): void {
  (client as S3Client).middlewareStack.add(
    (next, context) => async (args) => {
      seen(String(context.commandName), args.input as Record<string, unknown>);
      return next(args);
    },
    { step: 'initialize', name: 'recordCommands' },
  );
}
