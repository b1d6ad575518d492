import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import { createSnsClient } from '../aws/clients.ts';
import type { Lineage } from '../artifacts/manifest.ts';
import { readEnv } from '../platform/env.ts';

/**
 * What users hear about: every registration, promotion and rollback, published to one SNS topic
 * (subscribe email, SQS, a Lambda or a webhook). The message attribute `type` lets subscribers filter.
 */
export type ModelEventType =
  | 'ModelVersionRegistered'
  | 'ModelPromoted'
  | 'ModelRolledBack'
  | 'ModelTrafficChanged'
  /** A drift report found drift (monitor/jobs.ts); `details` has the report's key and drifted features. */
  | 'ModelDriftDetected'
  /** The canary guard rolled a canary back (monitor/guard.ts); `details` has both versions' figures. */
  | 'ModelCanaryRolledBack';

export interface ModelEvent {
  type: ModelEventType;
  model: string;
  version: string;
  notes?: string;
  lineage?: Lineage | null;
  alias?: string;
  routes?: { version: string; weight: number }[];
  details?: Record<string, unknown>;
  at: string;
}

export interface ModelEventPublisher {
  publish(event: ModelEvent): Promise<void>;
}

export class SnsModelEvents implements ModelEventPublisher {
  private readonly sns: SNSClient;
  private readonly topicArn: string;

  constructor(sns: SNSClient, topicArn: string) {
    this.sns = sns;
    this.topicArn = topicArn;
  }

  async publish(event: ModelEvent): Promise<void> {
    await this.sns.send(
      new PublishCommand({
        TopicArn: this.topicArn,
        Subject: `${event.type}: ${event.model} ${event.version}`.slice(0, 99),
        Message: JSON.stringify(event),
        MessageAttributes: {
          type: { DataType: 'String', StringValue: event.type },
          model: { DataType: 'String', StringValue: event.model },
        },
      }),
    );
  }
}

/** The events topic of this stack (MODEL_EVENTS_TOPIC_ARN), for the functions that announce changes. */
export function modelEventsFromEnv(env: NodeJS.ProcessEnv = process.env): SnsModelEvents | undefined {
  const topic = readEnv(['MODEL_EVENTS_TOPIC_ARN'], env).MODEL_EVENTS_TOPIC_ARN;
  return topic ? new SnsModelEvents(createSnsClient(), topic) : undefined;
}
