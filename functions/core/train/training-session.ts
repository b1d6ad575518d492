/**
 * Runs a training-step graph step after step. The carried state (parameters, optimizer state,
 * running statistics) lives in two preallocated sets of tensors used in turn: one step reads set A
 * and onnxruntime writes its outputs straight into set B, the next step the other way round, so no
 * step allocates or copies state.
 */
import ort, { type InferenceSession, type Tensor } from '../onnx/ort.ts';
import type { StateTensor, StateValues, TrainingGraph } from './training-graph.ts';

/** A copy of every carried tensor, by graph input name: what a checkpoint stores. */
export interface TrainingState {
  step: number;
  values: Record<string, StateValues>;
}

function cloneValues(values: StateValues): StateValues {
  return values.slice() as StateValues;
}

export class TrainingSession {
  readonly graph: TrainingGraph;
  private readonly session: InferenceSession;
  private current: Map<string, Tensor>;
  private spare: Map<string, Tensor>;
  private steps = 0;

  private constructor(graph: TrainingGraph, session: InferenceSession) {
    this.graph = graph;
    this.session = session;
    const tensors = (entry: StateTensor) => new ort.Tensor(entry.type, cloneValues(entry.initial), entry.dims);
    this.current = new Map(graph.state.map((entry) => [entry.input, tensors(entry)]));
    this.spare = new Map(graph.state.map((entry) => [entry.input, tensors(entry)]));
  }

  static async create(graph: TrainingGraph, options: InferenceSession.SessionOptions = {}): Promise<TrainingSession> {
    if (!graph.learningRateInput) throw new Error('this graph has no optimizer: build it with one to train, or run it as a gradient graph');
    return new TrainingSession(graph, await ort.InferenceSession.create(graph.bytes, options));
  }

  /** Steps taken so far (restored with the state). */
  get stepCount(): number {
    return this.steps;
  }

  /** One optimizer step on a batch (model inputs plus the loss's inputs); returns the batch's loss. */
  async step(batch: Readonly<Record<string, Tensor>>, learningRate: number): Promise<number> {
    if (!(learningRate >= 0) || !Number.isFinite(learningRate)) throw new RangeError(`learning rate ${learningRate} is not a finite number >= 0`);
    const rate = this.graph.floatType === 'float32' ? Float32Array.of(learningRate) : Float64Array.of(learningRate);
    const feeds: Record<string, Tensor> = { ...batch, [this.graph.learningRateInput as string]: new ort.Tensor(this.graph.floatType, rate, []) };
    const fetches: Record<string, Tensor | null> = { [this.graph.lossOutput]: null };
    for (const entry of this.graph.state) {
      feeds[entry.input] = this.current.get(entry.input) as Tensor;
      fetches[entry.output] = this.spare.get(entry.input) as Tensor;
    }
    const result = await this.session.run(feeds, fetches);
    [this.current, this.spare] = [this.spare, this.current];
    this.steps++;
    return Number((result[this.graph.lossOutput] as Tensor).data[0]);
  }

  /** The current value of one carried tensor (a view, valid until the next step). */
  value(input: string): StateValues {
    const tensor = this.current.get(input);
    if (!tensor) throw new Error(`"${input}" is not carried state of this training graph`);
    return tensor.data as StateValues;
  }

  /** Trained parameters and running statistics, copied: what goes back into the inference model. */
  trainedValues(): Map<string, Float32Array | Float64Array> {
    return new Map(
      this.graph.state.filter((entry) => entry.role !== 'optimizer').map((entry) => [entry.input, cloneValues(this.value(entry.input)) as Float32Array | Float64Array]),
    );
  }

  /** A copy of the whole state, to checkpoint. */
  saveState(): TrainingState {
    return { step: this.steps, values: Object.fromEntries(this.graph.state.map((entry) => [entry.input, cloneValues(this.value(entry.input))])) };
  }

  /** Continues from a saved state; refuses one that does not match this graph. */
  restoreState(state: TrainingState): void {
    for (const entry of this.graph.state) {
      const values = state.values[entry.input];
      const tensor = this.current.get(entry.input) as Tensor;
      if (!values || values.length !== tensor.data.length || values.constructor !== tensor.data.constructor) {
        throw new Error(`the saved state does not match this training graph at "${entry.input}"`);
      }
      (tensor.data as StateValues).set(values as never);
    }
    this.steps = state.step;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
