import { ModelStore, type ModelStoreOptions } from '../artifacts/model-store.ts';
import type { ModelEventPublisher } from './events.ts';
import type { RegistryTable } from './registry-table.ts';

export interface ModelRepositoryOptions extends ModelStoreOptions {
  /** The registry's table: version numbers, status, lineage and aliases. */
  registry?: RegistryTable | undefined;
  /** Where registrations and rollouts are announced. */
  events?: ModelEventPublisher | undefined;
}

/**
 * The registry's view of the models: the artifact store (bucket, manifests, hash-checked bytes)
 * joined with the registry table and the events. Registration, rollouts and routing take a
 * repository; code that only reads artifacts takes the store it extends, which knows nothing of
 * the registry but the VersionIndex it is given.
 */
export class ModelRepository extends ModelStore {
  declare readonly registry: RegistryTable | undefined;
  readonly events: ModelEventPublisher | undefined;

  constructor(options: ModelRepositoryOptions) {
    super(options);
    this.events = options.events;
  }
}
