/**
 * A federation's state in the registry table, one partition per federation, changed only by
 * conditional writes (several clients, the deadline consumer and the aggregation step act on it at
 * once):
 *   FED#<id> / FED              the federation: request, state, current round and global version, history
 *   FED#<id> / CLIENT#<client>  a joined client: sha256 of its token, its masking public key
 *   FED#<id> / ROUND#<000042>   a round: attempt, selected clients, deadline, accepted updates, result
 */
import { GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { isConditionFailure } from '../aws/errors.ts';
import { ConditionalTable, strip } from '../jobs/conditional-table.ts';
import type { FederationRequest } from './request.ts';

export type FederationState = 'waiting' | 'running' | 'paused' | 'completed' | 'failed';
export type RoundState = 'open' | 'unmasking' | 'aggregating' | 'done' | 'timed-out';

export interface RoundSummary {
  round: number;
  version: string;
  participants: string[];
  examples: number;
  accuracy?: number;
  loss?: number;
  epsilon?: number;
  /** The clip norm this round's updates were clipped to (differential privacy). */
  clip?: number;
  finished: string;
}

export interface FederationRecord {
  id: string;
  model: string;
  request: FederationRequest;
  state: FederationState;
  reason?: string;
  /** The version the next round trains from. */
  globalVersion: string;
  sourceVersion: string;
  /** The round now open or aggregating (0 before the first). */
  round: number;
  clients: number;
  seed: number;
  /** Accumulated RDP per order (privacy.ts RDP_ORDERS), when the federation has differential privacy. */
  rdp?: number[];
  /** The next round's clip norm under adaptive clipping. */
  clipNorm?: number;
  history: RoundSummary[];
  created: string;
  updated: string;
}

export interface ClientRecord {
  client: string;
  tokenSha256: string;
  publicKey?: string;
  joined: string;
}

export interface AcceptedUpdate {
  sha256: string;
  examples: number;
  accepted: string;
}

export interface RoundRecord {
  federation: string;
  round: number;
  attempt: number;
  state: RoundState;
  globalVersion: string;
  selected: string[];
  /** Epoch milliseconds. */
  deadline: number;
  updates: Record<string, AcceptedUpdate>;
  received: number;
  /** Secure aggregation after a dropout: the selected clients that never delivered. */
  dropped?: string[];
  /** Each survivor's pair seeds with the dropped clients (base64url), once revealed. */
  reveals?: Record<string, Record<string, string>>;
  revealed?: number;
  job?: string;
  reason?: string;
  /** Set when the round is done: what the federation's history records. */
  summary?: RoundSummary;
  /** The federation's accumulated RDP after this round (differential privacy). */
  rdp?: number[];
  /** The clip norm adaptive clipping chose for the next round. */
  clipNorm?: number;
  opened: string;
  updated: string;
}

const fedKey = (id: string) => ({ pk: `FED#${id}`, sk: 'FED' });
const clientKey = (id: string, client: string) => ({ pk: `FED#${id}`, sk: `CLIENT#${client}` });
const roundKey = (id: string, round: number) => ({ pk: `FED#${id}`, sk: `ROUND#${String(round).padStart(6, '0')}` });

export class FederationTable extends ConditionalTable {

  private async get<T>(key: Record<string, string>): Promise<T | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }));
    return strip<T>(out.Item);
  }

  createFederation(record: FederationRecord): Promise<boolean> {
    return this.putIfAbsent({ ...fedKey(record.id), ...record });
  }

  getFederation(id: string): Promise<FederationRecord | undefined> {
    return this.get(fedKey(id));
  }

  /** Adds a client; false when its id is taken. Counts it on the federation in a second write. */
  async addClient(id: string, record: ClientRecord): Promise<FederationRecord | undefined> {
    if (!(await this.putIfAbsent({ ...clientKey(id, record.client), ...record }))) return undefined;
    return this.update<FederationRecord>(fedKey(id), { UpdateExpression: 'ADD #clients :one SET #updated = :now', ExpressionAttributeValues: { ':one': 1, ':now': record.joined } });
  }

  getClient(id: string, client: string): Promise<ClientRecord | undefined> {
    return this.get(clientKey(id, client));
  }

  async listClients(id: string): Promise<ClientRecord[]> {
    const items: ClientRecord[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.doc.send(
        new QueryCommand({ TableName: this.tableName, KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)', ExpressionAttributeValues: { ':pk': `FED#${id}`, ':prefix': 'CLIENT#' }, ConsistentRead: true, ExclusiveStartKey: start }),
      );
      items.push(...(out.Items ?? []).map((item) => strip<ClientRecord>(item) as ClientRecord));
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  }

  /** Sets attributes when the federation is in one of `from` (and, with `round`, at that round). */
  setFederation(id: string, from: readonly FederationState[], set: Partial<FederationRecord>, round?: number): Promise<FederationRecord | undefined> {
    const values: Record<string, unknown> = {};
    const names: Record<string, string> = {};
    const sets = Object.entries(set).map(([name, value], index) => {
      names[`#a${index}`] = name;
      values[`:a${index}`] = value;
      return `#a${index} = :a${index}`;
    });
    from.forEach((state, index) => (values[`:from${index}`] = state));
    if (round !== undefined) values[':round'] = round;
    return this.update(fedKey(id), {
      UpdateExpression: `SET ${sets.join(', ')}`,
      ConditionExpression: `#state IN (${from.map((_, index) => `:from${index}`).join(', ')})${round !== undefined ? ' AND #round = :round' : ''}`,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }

  /** Opens attempt `round.attempt` of a round: a new item, or a timed-out earlier attempt replaced. */
  async openRound(round: RoundRecord): Promise<boolean> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...roundKey(round.federation, round.round), ...round },
          ConditionExpression: 'attribute_not_exists(pk) OR (#state = :timedOut AND #attempt < :attempt)',
          ExpressionAttributeNames: { '#state': 'state', '#attempt': 'attempt' },
          ExpressionAttributeValues: { ':timedOut': 'timed-out', ':attempt': round.attempt },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }

  getRound(id: string, round: number): Promise<RoundRecord | undefined> {
    return this.get(roundKey(id, round));
  }

  /** Records one client's update in an open round, once: undefined when the round is not open or the client already delivered. */
  acceptUpdate(id: string, round: number, attempt: number, client: string, update: AcceptedUpdate): Promise<RoundRecord | undefined> {
    return this.update(roundKey(id, round), {
      UpdateExpression: 'SET #updates.#client = :update, #updated = :now ADD #received :one',
      ConditionExpression: '#state = :open AND #attempt = :attempt AND attribute_not_exists(#updates.#client)',
      ExpressionAttributeNames: { '#client': client },
      ExpressionAttributeValues: { ':update': update, ':now': update.accepted, ':one': 1, ':open': 'open', ':attempt': attempt },
    });
  }

  /** Records a survivor's revealed seeds once, while the round is unmasking; undefined when it was not. */
  acceptReveal(id: string, round: number, attempt: number, client: string, seeds: Record<string, string>): Promise<RoundRecord | undefined> {
    return this.update(roundKey(id, round), {
      UpdateExpression: 'SET #reveals.#client = :seeds, #updated = :now ADD #revealed :one',
      ConditionExpression: '#state = :unmasking AND #attempt = :attempt AND attribute_not_exists(#reveals.#client)',
      ExpressionAttributeNames: { '#client': client },
      ExpressionAttributeValues: { ':seeds': seeds, ':now': new Date().toISOString(), ':one': 1, ':unmasking': 'unmasking', ':attempt': attempt },
    });
  }

  /** Moves a round attempt from one state to another; undefined when it had moved on. */
  moveRound(id: string, round: number, attempt: number, from: RoundState, to: RoundState, set: Partial<RoundRecord> = {}): Promise<RoundRecord | undefined> {
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = { ':from': from, ':to': to, ':attempt': attempt, ':now': new Date().toISOString() };
    const sets = Object.entries(set).map(([name, value], index) => {
      names[`#s${index}`] = name;
      values[`:s${index}`] = value;
      return `#s${index} = :s${index}`;
    });
    return this.update(roundKey(id, round), {
      UpdateExpression: `SET #state = :to, #updated = :now${sets.length ? `, ${sets.join(', ')}` : ''}`,
      ConditionExpression: '#state = :from AND #attempt = :attempt',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }

  /** Appends a finished round to the federation's history, once (at round `round`, running). */
  recordRound(id: string, summary: RoundSummary, set: Partial<FederationRecord>): Promise<FederationRecord | undefined> {
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = { ':summary': [summary], ':running': 'running', ':round': summary.round, ':version': summary.version };
    const sets = Object.entries(set).map(([name, value], index) => {
      names[`#s${index}`] = name;
      values[`:s${index}`] = value;
      return `#s${index} = :s${index}`;
    });
    return this.update(fedKey(id), {
      UpdateExpression: `SET #history = list_append(#history, :summary)${sets.length ? `, ${sets.join(', ')}` : ''}`,
      ConditionExpression: '#state = :running AND #round = :round AND #globalVersion <> :version',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }
}
