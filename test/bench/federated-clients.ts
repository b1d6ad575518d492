// The benchmark's simulated clients, trained in worker threads (FEDERATED_BENCH_WORKERS, default the
// machine's parallelism): each worker holds one TrainingSession of the 2NN and the MNIST training
// images in shared memory; a client's training is the session reset to the global weights, then E
// epochs of seeded batches of B of that client's rows. A client's result depends on the global,
// its rows and its seed only, so the rounds are the same whatever the number of workers.
import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { gatherBatch, seededPermutation, type TrainingData } from '../../functions/core/train/loop.ts';
import { buildTrainingGraph } from '../../functions/core/train/training-graph.ts';
import { TrainingSession } from '../../functions/core/train/training-session.ts';
import { readParameters } from '../../functions/core/federated/parameters.ts';

export interface ClientSetup {
  model: Uint8Array;
  /** The training images (rows of 784) in shared memory, and their labels. */
  images: Float32Array;
  labels: Int32Array;
  /** Each client's rows of the training set. */
  rows: Uint32Array[];
  epochs: number;
  batchSize: number;
  learningRate: number;
}

interface Job {
  id: number;
  global: Float64Array;
  client: number;
  seed: number;
}

async function trainer(setup: ClientSetup) {
  const graph = buildTrainingGraph(setup.model, { loss: { kind: 'cross-entropy' }, optimizer: { kind: 'sgd' } });
  const session = await TrainingSession.create(graph, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const { layout } = readParameters(setup.model);
  const data: TrainingData = { columns: [{ name: 'input', datatype: 'FP32', rowShape: [1, 784], rowSize: 784, data: setup.images }], labels: setup.labels };
  const state = session.saveState();
  return async (job: Job): Promise<Float64Array> => {
    for (const entry of layout.entries) state.values[entry.name] = Float32Array.from(job.global.subarray(entry.offset, entry.offset + entry.length));
    session.restoreState({ step: 0, values: state.values });
    const rows = setup.rows[job.client] as Uint32Array;
    const batchRows = new Uint32Array(setup.batchSize);
    for (let epoch = 0; epoch < setup.epochs; epoch++) {
      const order = seededPermutation(rows.length, (job.seed + epoch * 7919) >>> 0);
      for (let start = 0; start + setup.batchSize <= rows.length; start += setup.batchSize) {
        for (let k = 0; k < setup.batchSize; k++) batchRows[k] = rows[order[start + k] as number] as number;
        await session.step(gatherBatch(data, batchRows, 'float32'), setup.learningRate);
      }
    }
    const out = new Float64Array(job.global.length);
    const trained = session.trainedValues();
    for (const entry of layout.entries) out.set(trained.get(entry.name) as Float32Array, entry.offset);
    return out;
  };
}

if (!isMainThread && parentPort) {
  const train = await trainer(workerData as ClientSetup);
  const port = parentPort;
  // One session per worker: jobs run one after another.
  let queue = Promise.resolve();
  port.on('message', (job: Job) => {
    queue = queue.then(() =>
      train(job).then(
        (weights) => port.postMessage({ id: job.id, weights }, [weights.buffer as ArrayBuffer]),
        (error: Error) => port.postMessage({ id: job.id, error: error.message }),
      ),
    );
  });
  port.postMessage({ ready: true });
}

/** A pool of client trainers: `train` runs one round's clients across the workers. */
export class ClientPool {
  private readonly workers: Worker[];
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (weights: Float64Array) => void; reject: (error: Error) => void }>();

  private constructor(workers: Worker[]) {
    this.workers = workers;
    for (const worker of workers) {
      worker.on('message', (message: { id?: number; weights?: Float64Array; error?: string }) => {
        if (message.id === undefined) return;
        const waiter = this.waiting.get(message.id);
        this.waiting.delete(message.id);
        if (message.error !== undefined) waiter?.reject(new Error(message.error));
        else waiter?.resolve(message.weights as Float64Array);
      });
    }
  }

  static async start(setup: ClientSetup, count = Number(process.env.FEDERATED_BENCH_WORKERS ?? availableParallelism())): Promise<ClientPool> {
    const workers = Array.from({ length: Math.max(1, count) }, () => new Worker(new URL(import.meta.url), { workerData: setup }));
    await Promise.all(workers.map((worker) => new Promise<void>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('message', () => resolve());
    })));
    return new ClientPool(workers);
  }

  get size(): number {
    return this.workers.length;
  }

  /** Trains the clients from the global weights, round-robin over the workers; results in the clients' order. */
  train(global: Float64Array, clients: readonly number[], seedOf: (client: number) => number): Promise<Float64Array[]> {
    return Promise.all(
      clients.map((client, index) => {
        const id = this.next++;
        const worker = this.workers[index % this.workers.length] as Worker;
        return new Promise<Float64Array>((resolve, reject) => {
          this.waiting.set(id, { resolve, reject });
          worker.postMessage({ id, global, client, seed: seedOf(client) } satisfies Job);
        });
      }),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}
