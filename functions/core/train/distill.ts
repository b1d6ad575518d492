/**
 * Knowledge distillation: a teacher's softened probabilities as the target of a student, with the
 * loss alpha x KL(teacher/T || student/T) x T^2 + (1 - alpha) x CE(labels) (Hinton et al.), or KL
 * alone on unlabelled data. The teacher runs in onnxruntime on each batch as the student sees it
 * (after augmentation), or once over the data set when batches are not augmented.
 */
import ort, { type InferenceSession, type Tensor } from '../onnx/ort.ts';
import { decodeModel, encodeModel } from '../onnx/model-proto.ts';
import { valueInfo } from '../onnx/builder.ts';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { TrainingGraphError } from './gradients.ts';
import { gatherBatch, type LoopOptions, type TrainingData } from './loop.ts';
import type { LossTerm } from './losses.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { ModelSessions } from '../sessions/model-sessions.ts';
import { pipelineSessionLoader } from '../pipelines/session.ts';
import { inputScaleOf, type TeacherSignature } from './student.ts';
import { readPipelineSpec } from '../pipelines/read.ts';
import { stepTargets } from '../pipelines/spec.ts';
import { isCanonicalVersion } from '../artifacts/names.ts';

export interface DistillationSettings {
  temperature: number;
  /** Weight of the KL term; 1 - alpha goes to cross-entropy on labels when the data has them. */
  alpha: number;
}

/** The loss terms: KL x T^2 weighted alpha plus CE weighted 1 - alpha, or KL alone without labels. */
export function distillationLoss(settings: DistillationSettings, labelled: boolean): LossTerm[] {
  if (!(settings.temperature > 0)) throw new RangeError(`temperature must be positive, got ${settings.temperature}`);
  if (!(settings.alpha >= 0 && settings.alpha <= 1)) throw new RangeError(`alpha must be in [0, 1], got ${settings.alpha}`);
  if (!labelled) return [{ kind: 'kl-divergence', temperature: settings.temperature }];
  const terms: LossTerm[] = [];
  if (settings.alpha > 0) terms.push({ kind: 'kl-divergence', temperature: settings.temperature, weight: settings.alpha });
  if (settings.alpha < 1) terms.push({ kind: 'cross-entropy', weight: 1 - settings.alpha });
  return terms;
}

/** softmax(logits / T) per row of `classes`. */
export function softenedProbabilities(logits: Float32Array, classes: number, temperature: number): Float32Array {
  const out = new Float32Array(logits.length);
  for (let row = 0; row < logits.length / classes; row++) {
    const base = row * classes;
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, (logits[base + c] as number) / temperature);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += out[base + c] = Math.exp((logits[base + c] as number) / temperature - max);
    for (let c = 0; c < classes; c++) out[base + c] = (out[base + c] as number) / sum;
  }
  return out;
}

/** What runs a teacher: an onnxruntime session, or a pipeline's executor behind the same interface. */
type TeacherRunner = Pick<InferenceSession, 'inputNames' | 'run' | 'release'>;

/** A row that is a probability distribution (every value at least 0, summing to 1): a Softmax's output. */
function isDistribution(values: Float32Array): boolean {
  let sum = 0;
  for (const v of values) {
    if (!(v >= 0)) return false;
    sum += v;
  }
  return Math.abs(sum - 1) <= 1e-4;
}

/**
 * A teacher run for its logits: a model's (the input of its final Softmax when it has one, else its
 * first output), or a registered pipeline's first output through the pipeline executor (each row
 * that is a probability distribution, as a Softmax or an ensemble's mean gives, is turned into
 * logits by its log: softmax(log p / T) is p tempered by T).
 */
export class Teacher {
  readonly classes: number;
  private readonly session: TeacherRunner;
  private readonly logitsName: string;
  private readonly pipeline: boolean;

  private constructor(session: TeacherRunner, logitsName: string, classes: number, pipeline = false) {
    this.session = session;
    this.logitsName = logitsName;
    this.classes = classes;
    this.pipeline = pipeline;
  }

  static async create(bytes: Uint8Array, options: InferenceSession.SessionOptions = {}): Promise<Teacher> {
    const proto = decodeModel(bytes);
    const g = proto.graph as OnnxTypes.GraphProto;
    const output = g.output[0];
    if (!output?.name) throw new TrainingGraphError('the teacher has no output');
    const outputName = output.name;
    const producer = g.node.find((n) => (n.output ?? []).includes(outputName));
    let logitsName = outputName;
    if (producer?.opType === 'Softmax') {
      logitsName = producer.input?.[0] as string;
      if (!g.output.some((o) => o.name === logitsName)) g.output.push(valueInfo(logitsName, 'float32') as OnnxTypes.ValueInfoProto);
    }
    const classes = Number(output.type?.tensorType?.shape?.dim?.at(-1)?.dimValue ?? 0);
    if (!(classes > 0)) throw new TrainingGraphError(`the teacher's output "${output.name}" has no static class dimension`);
    return new Teacher(await ort.InferenceSession.create(encodeModel(proto), options), logitsName, classes);
  }

  /** A registered pipeline version as the teacher: its step models load as batch scoring loads them. */
  static async fromPipeline(store: ModelRepository, manifest: ModelManifest, intraOpThreads?: number): Promise<Teacher> {
    const signature = pipelineTeacherSignature(manifest);
    const sessions = new ModelSessions({ store, intraOpThreads, composite: pipelineSessionLoader(store) });
    const loaded = await sessions.get(manifest);
    return new Teacher(loaded.session, signature.outputName, signature.classes, true);
  }

  /** The teacher's logits for a batch (the feeds it needs are picked by name). */
  async logits(feeds: Readonly<Record<string, Tensor>>): Promise<Float32Array> {
    const inputs = Object.fromEntries(this.session.inputNames.map((name) => [name, feeds[name] as Tensor]));
    const out = (await this.session.run(inputs, [this.logitsName]))[this.logitsName] as Tensor;
    const logits = Float32Array.from(out.data as Float32Array);
    if (this.pipeline) {
      for (let row = 0; row < logits.length / this.classes; row++) {
        const values = logits.subarray(row * this.classes, (row + 1) * this.classes);
        if (isDistribution(values)) for (let c = 0; c < values.length; c++) values[c] = Math.log(Math.max(values[c] as number, 1e-30));
      }
    }
    return logits;
  }

  /** Logits for every row of a data set, `batchSize` rows at a time. */
  async logitsForAll(data: TrainingData, rows: number, batchSize = 512): Promise<Float32Array> {
    const all = new Float32Array(rows * this.classes);
    for (let start = 0; start < rows; start += batchSize) {
      const chosen = Uint32Array.from({ length: Math.min(batchSize, rows - start) }, (_, i) => start + i);
      all.set(await this.logits(gatherBatch({ columns: data.columns }, chosen, 'float32')), start * this.classes);
    }
    return all;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/**
 * A pipeline teacher's signature, from its manifest: its first input (FP32, static after the batch:
 * the training rows feed it as FP32) and its first output, [batch, classes]. A student of it ends in
 * a Softmax (its targets are probabilities), under the pipeline's output name.
 */
export function pipelineTeacherSignature(manifest: ModelManifest): TeacherSignature {
  const input = manifest.inputs[0];
  const output = manifest.outputs[0];
  const what = `pipeline '${manifest.name}' version '${manifest.version}'`;
  if (!input || !output) throw new TrainingGraphError(`${what} has no input or no output`);
  if (manifest.inputs.length !== 1) throw new TrainingGraphError(`${what} has ${manifest.inputs.length} inputs; a teacher takes one`);
  if (input.datatype !== 'FP32') throw new TrainingGraphError(`${what} takes ${input.datatype} input '${input.name}'; a teacher is fed the training rows as FP32`);
  const inputDims = input.shape.slice(1);
  if (inputDims.length === 0 || inputDims.some((d) => !(d > 0))) throw new TrainingGraphError(`${what}'s input '${input.name}' needs static dimensions after the batch to size a student, got [${input.shape.join(', ')}]`);
  const classes = output.shape.at(-1) ?? 0;
  if (output.datatype !== 'FP32' || output.shape.length !== 2 || !(classes > 0)) {
    throw new TrainingGraphError(`${what}'s output '${output.name}' must be FP32 [batch, classes] with static classes, got ${output.datatype} [${output.shape.join(', ')}]`);
  }
  return { inputName: input.name, inputDims, outputName: output.name, classes, softmax: true, inputScale: 1 };
}

/**
 * A pipeline teacher's signature with its input scale: the scalar its first models multiply the
 * request's input by (each step model that reads `$request.<input>`, pinned to a version), when they
 * all agree, as a model teacher's own (1 / 255 for raw pixels); else 1.
 */
export async function pipelineTeacherSignatureOf(store: ModelRepository, manifest: ModelManifest): Promise<TeacherSignature> {
  const signature = pipelineTeacherSignature(manifest);
  const spec = await readPipelineSpec(store, manifest);
  const scales = new Set<number>();
  for (const step of spec.steps) {
    const reads = Object.entries(step.inputs).filter(([, source]) => source === `$request.${signature.inputName}`).map(([name]) => name);
    if (reads.length === 0) continue;
    for (const target of stepTargets(step)) {
      if (target.version === undefined || !isCanonicalVersion(target.version)) scales.add(1);
      else {
        const proto = decodeModel((await store.getModelBytes(await store.getManifest(target.model, target.version))).bytes);
        for (const input of reads) scales.add(inputScaleOf(proto, input));
      }
    }
  }
  return { ...signature, inputScale: scales.size === 1 ? [...scales][0]! : 1 };
}

/** The teacher's argmax per row: the labels an unlabelled data set is validated against (agreement with the teacher). */
export function argmaxLabels(logits: Float32Array, classes: number): Int32Array {
  const labels = new Int32Array(logits.length / classes);
  for (let row = 0; row < labels.length; row++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if ((logits[row * classes + c] as number) > (logits[row * classes + best] as number)) best = c;
    labels[row] = best;
  }
  return labels;
}

/**
 * The loop's batch hook that adds `teacher_probabilities`: from logits computed once for every row
 * (`precomputed`), or by running the teacher on the batch as given (after augmentation).
 */
export function teacherBatches(teacher: Teacher, temperature: number, precomputed?: Float32Array): NonNullable<LoopOptions['prepareBatch']> {
  const classes = teacher.classes;
  return async (feeds, rows) => {
    let logits: Float32Array;
    if (precomputed) {
      logits = new Float32Array(rows.length * classes);
      rows.forEach((row, i) => logits.set(precomputed.subarray(row * classes, (row + 1) * classes), i * classes));
    } else logits = await teacher.logits(feeds);
    return { ...feeds, teacher_probabilities: new ort.Tensor('float32', softenedProbabilities(logits, classes, temperature), [rows.length, classes]) };
  };
}
