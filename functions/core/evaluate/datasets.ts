import * as z from 'zod';
import ort, { type Tensor } from '../onnx/ort.ts';
import { BadRequestError, ConflictError, IntegrityError, NotFoundError } from '../platform/errors.ts';
import { IdxFormatError, parseIdx } from './idx.ts';
import { keys } from '../artifacts/keys.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName } from '../artifacts/names.ts';
import { sha256Hex } from '../platform/hash.ts';
import { decodeJsonExactly, decodeJsonTensorData, elementCount, NeedsExactParse, type TensorData } from '../v2/codec.ts';
import { DATATYPES, isV2Datatype, V2_DATATYPES, type V2Datatype } from '../v2/datatypes.ts';

/**
 * Evaluation data sets under `datasets/<name>/`: either JSONL rows (one V2 JSON infer request's
 * `inputs` per line plus `label` or `target`) or an IDX images + labels pair (the MNIST family).
 * Every row of a data set has the same input names, datatypes and shapes, so rows can be batched.
 */
export const datasetInputSchema = z.object({
  name: z.string().min(1),
  datatype: z.enum(V2_DATATYPES),
  /** The shape of one row's tensor, as its V2 JSON has it (usually [1, ...]). */
  shape: z.array(z.number().int().nonnegative()),
});
export type DatasetInput = z.infer<typeof datasetInputSchema>;

export const imageLayoutSchema = z.object({
  height: z.number().int().positive(),
  width: z.number().int().positive(),
  channels: z.number().int().positive(),
  /** The value of a fully bright pixel: 255 for raw bytes, 1 for normalised images. */
  maxValue: z.number().positive(),
});
export type ImageLayout = z.infer<typeof imageLayoutSchema>;

export const datasetManifestSchema = z.object({
  name: z.string(),
  format: z.enum(['jsonl', 'idx']),
  rows: z.number().int().positive(),
  /** What each row carries: a class index (classification), a target (regression), or nothing (agreement only). */
  labels: z.enum(['label', 'target', 'none']),
  /** Classification: one more than the highest label. */
  classes: z.number().int().positive().optional(),
  /** Regression: numbers per row's target. */
  targetSize: z.number().int().positive().optional(),
  inputs: z.array(datasetInputSchema).min(1),
  /** Set when the (single) input is an image, which enables the robustness scenario. */
  image: imageLayoutSchema.optional(),
  /** sha256 over the data file(s), in the order they are listed in `files`. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().positive(),
  files: z.array(z.string()).min(1),
  notes: z.string().default(''),
  created: z.string(),
});
export type DatasetManifest = z.infer<typeof datasetManifestSchema>;

export interface DatasetColumn {
  name: string;
  datatype: V2Datatype;
  rowShape: number[];
  rowSize: number;
  /** Every row's elements, row after row. */
  data: TensorData;
}

/** A data set decoded into columns, ready to be cut into batches. */
export interface LoadedDataset {
  manifest: DatasetManifest;
  columns: DatasetColumn[];
  labels?: Int32Array | undefined;
  targets?: Float64Array | undefined;
}

const rowSchema = z.object({
  inputs: z
    .array(z.object({ name: z.string().min(1), datatype: z.string(), shape: z.array(z.number().int().nonnegative()), data: z.unknown() }))
    .min(1),
  label: z.number().int().nonnegative().optional(),
  target: z.union([z.number(), z.array(z.number())]).optional(),
});

export interface JsonlOptions {
  /** Allow rows with neither label nor target (agreement with a reference version only). */
  unlabelled?: boolean | undefined;
  image?: ImageLayout | undefined;
}

function concatTyped(parts: TensorData[], datatype: V2Datatype, total: number): TensorData {
  if (datatype === 'BYTES') return (parts as string[][]).flat();
  const first = parts[0] as Tensor.DataType & { constructor: new (n: number) => Tensor.DataType };
  const out = new first.constructor(total) as unknown as { set(a: ArrayLike<unknown>, o: number): void };
  let at = 0;
  for (const p of parts) {
    out.set(p as ArrayLike<unknown>, at);
    at += (p as ArrayLike<unknown>).length;
  }
  return out as unknown as TensorData;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

type DatasetRow = z.infer<typeof rowSchema>;

/** One line parsed as the online endpoint parses a body (decodeJsonExactly), and its inputs decoded. */
function readRow(line: string, where: string): { row: DatasetRow; data: TensorData[] } {
  return decodeJsonExactly(line, where, (json, parsed) => {
    const result = rowSchema.safeParse(json);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new BadRequestError(`${where}: ${issue?.path.length ? `${issue.path.join('.')}: ` : ''}${issue?.message ?? 'malformed row'}`);
    }
    return { row: result.data, data: result.data.inputs.map((input) => decodeRowInput(input, parsed, where)) };
  });
}

function decodeRowInput(input: DatasetRow['inputs'][number], parsed: 'plain' | 'exact', where: string): TensorData {
  if (!isV2Datatype(input.datatype)) throw new BadRequestError(`${where}: input '${input.name}' has unknown datatype '${input.datatype}'`);
  try {
    return decodeJsonTensorData(input.name, input.datatype, input.data, input.shape, { parsed });
  } catch (error) {
    if (error instanceof NeedsExactParse) throw error;
    throw new BadRequestError(`${where}: ${(error as Error).message}`);
  }
}

/** Parses and validates JSONL rows; every refusal names the data set and the line. */
export function parseJsonlDataset(name: string, bytes: Uint8Array, options: JsonlOptions = {}): Omit<LoadedDataset, 'manifest'> & {
  inputs: DatasetInput[];
  rows: number;
  labelKind: DatasetManifest['labels'];
  classes?: number;
  targetSize?: number;
} {
  const lines = Buffer.from(bytes).toString('utf8').split('\n');
  const parts = new Map<string, TensorData[]>();
  let inputs: DatasetInput[] | undefined;
  let labelKind: DatasetManifest['labels'] | undefined;
  const labels: number[] = [];
  const targets: number[] = [];
  let targetSize: number | undefined;
  let rows = 0;
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!.trim();
    if (line === '') continue;
    const where = `data set '${name}' line ${index + 1}`;
    const { row, data: rowData } = readRow(line, where);
    const kind: DatasetManifest['labels'] = row.label !== undefined ? 'label' : row.target !== undefined ? 'target' : 'none';
    if (row.label !== undefined && row.target !== undefined) throw new BadRequestError(`${where} has both label and target; give one`);
    if (kind === 'none' && !options.unlabelled) {
      throw new BadRequestError(`${where} has neither label nor target (push with --unlabelled for agreement-only data)`);
    }
    if (labelKind === undefined) labelKind = kind;
    else if (kind !== labelKind) {
      throw new BadRequestError(`${where} has ${kind === 'none' ? 'no label' : `a ${kind}`} but the rows before it have ${labelKind === 'none' ? 'none' : `a ${labelKind}`}`);
    }
    if (row.label !== undefined) labels.push(row.label);
    if (row.target !== undefined) {
      const values = typeof row.target === 'number' ? [row.target] : row.target;
      if (targetSize === undefined) targetSize = values.length;
      else if (values.length !== targetSize) {
        throw new BadRequestError(`${where}: target has ${values.length} numbers but earlier rows have ${targetSize}`);
      }
      targets.push(...values);
    }
    const rowInputs: DatasetInput[] = [];
    row.inputs.forEach((input, i) => {
      if (rowInputs.some((r) => r.name === input.name)) throw new BadRequestError(`${where}: input '${input.name}' appears more than once`);
      rowInputs.push({ name: input.name, datatype: input.datatype as V2Datatype, shape: input.shape });
      const list = parts.get(input.name) ?? [];
      list.push(rowData[i]!);
      parts.set(input.name, list);
    });
    if (inputs === undefined) inputs = rowInputs;
    else {
      const expected = inputs.map((i) => `${i.name} ${i.datatype} ${shapeText(i.shape)}`).join(', ');
      const actual = rowInputs.map((i) => `${i.name} ${i.datatype} ${shapeText(i.shape)}`).join(', ');
      if (expected !== actual) throw new BadRequestError(`${where} has inputs ${actual} but line 1 has ${expected}; every row must match`);
    }
    rows++;
  }
  if (rows === 0 || !inputs) throw new BadRequestError(`data set '${name}' has no rows`);
  const columns = inputs.map((input): DatasetColumn => {
    const rowSize = elementCount(input.shape);
    return { ...input, rowShape: input.shape, rowSize, data: concatTyped(parts.get(input.name)!, input.datatype, rowSize * rows) };
  });
  if (options.image) assertImageFits(name, inputs, options.image);
  return {
    inputs,
    rows,
    columns,
    labelKind: labelKind!,
    ...(labelKind === 'label' ? { labels: Int32Array.from(labels), classes: Math.max(...labels) + 1 } : {}),
    ...(labelKind === 'target' ? { targets: Float64Array.from(targets), targetSize: targetSize! } : {}),
  };
}

function assertImageFits(name: string, inputs: DatasetInput[], image: ImageLayout): void {
  const count = image.height * image.width * image.channels;
  if (inputs.length !== 1 || elementCount(inputs[0]!.shape) !== count) {
    throw new BadRequestError(
      `data set '${name}': an image of ${image.height}x${image.width}x${image.channels} needs exactly one input of ${count} elements per row`,
    );
  }
}

export interface IdxOptions {
  /** The model input the images feed (default `input`). */
  inputName?: string | undefined;
  /** One row's shape (default [1, height*width]); FP32 pixels as the IDX file has them (0..255). */
  shape?: number[] | undefined;
}

/** An IDX images file [N, H, W] (or [N, H, W, C]) and an IDX labels file [N] as one data set. */
export function parseIdxDataset(name: string, images: Uint8Array, labelBytes: Uint8Array, options: IdxOptions = {}) {
  const read = (bytes: Uint8Array, what: string) => {
    try {
      return parseIdx(bytes);
    } catch (error) {
      if (error instanceof IdxFormatError) throw new BadRequestError(`data set '${name}' ${what}: ${error.message}`);
      throw error;
    }
  };
  const img = read(images, 'images');
  const lab = read(labelBytes, 'labels');
  if (img.dims.length !== 3 && img.dims.length !== 4) {
    throw new BadRequestError(`data set '${name}' images: expected dims [N, height, width] or [N, height, width, channels], got [${img.dims.join(', ')}]`);
  }
  if (lab.dims.length !== 1) throw new BadRequestError(`data set '${name}' labels: expected dims [N], got [${lab.dims.join(', ')}]`);
  const [rows, height, width, channels = 1] = img.dims as [number, number, number, number?];
  if (lab.dims[0] !== rows) {
    throw new BadRequestError(`data set '${name}': ${rows} images but ${lab.dims[0]} labels; an IDX data set needs one label per image`);
  }
  if (rows === 0) throw new BadRequestError(`data set '${name}' has no rows`);
  const rowSize = height * width * channels;
  const shape = options.shape ?? [1, rowSize];
  if (elementCount(shape) !== rowSize) {
    throw new BadRequestError(`data set '${name}': row shape ${shapeText(shape)} has ${elementCount(shape)} elements but each image has ${rowSize}`);
  }
  const input: DatasetInput = { name: options.inputName ?? 'input', datatype: 'FP32', shape };
  const labels = Int32Array.from(lab.data);
  return {
    inputs: [input],
    rows,
    columns: [{ ...input, rowShape: shape, rowSize, data: Float32Array.from(img.data) }] as DatasetColumn[],
    labelKind: 'label' as const,
    labels,
    classes: labels.reduce((m, v) => Math.max(m, v), 0) + 1,
    image: { height, width, channels, maxValue: 255 },
  };
}

export type DatasetUpload =
  | { format: 'jsonl'; rows: Uint8Array; unlabelled?: boolean | undefined; image?: ImageLayout | undefined }
  | { format: 'idx'; images: Uint8Array; labels: Uint8Array; inputName?: string | undefined; shape?: number[] | undefined };

export interface PushDatasetInput {
  name: string;
  upload: DatasetUpload;
  notes?: string | undefined;
  now?: () => Date;
}

/**
 * Validates a data set completely, then writes its files and, last, its manifest. Data sets are
 * immutable like model versions: the same content again is a no-op, different content a conflict.
 */
export async function pushDataset(store: ModelRepository, input: PushDatasetInput): Promise<DatasetManifest> {
  const name = assertValidName(input.name, 'data set');
  const { upload } = input;
  const files: { key: string; bytes: Uint8Array }[] =
    upload.format === 'jsonl'
      ? [{ key: keys.datasetRows(name), bytes: upload.rows }]
      : [
          { key: keys.datasetImages(name), bytes: upload.images },
          { key: keys.datasetLabels(name), bytes: upload.labels },
        ];
  const parsed =
    upload.format === 'jsonl'
      ? { ...parseJsonlDataset(name, upload.rows, upload), image: upload.image }
      : parseIdxDataset(name, upload.images, upload.labels, upload);
  const sha256 = datasetSha256(files.map((f) => f.bytes));
  const manifest: DatasetManifest = {
    name,
    format: upload.format,
    rows: parsed.rows,
    labels: parsed.labelKind,
    ...('classes' in parsed && parsed.classes !== undefined ? { classes: parsed.classes } : {}),
    ...('targetSize' in parsed && parsed.targetSize !== undefined ? { targetSize: parsed.targetSize } : {}),
    inputs: parsed.inputs,
    ...(parsed.image ? { image: parsed.image } : {}),
    sha256,
    bytes: files.reduce((n, f) => n + f.bytes.byteLength, 0),
    files: files.map((f) => f.key),
    notes: input.notes ?? '',
    created: (input.now ?? (() => new Date()))().toISOString(),
  };
  const existing = await readDatasetManifest(store, name).catch((error: unknown) => {
    if (error instanceof NotFoundError) return undefined;
    throw error;
  });
  if (existing) {
    if (existing.sha256 === sha256) return existing;
    throw new ConflictError(`data set '${name}' already exists with different content; data sets are immutable, push it under a new name`);
  }
  // In parts (lib-storage's Upload): a data set can be far larger than one request should carry.
  for (const file of files) await store.putObjectBytes(file.key, file.bytes);
  await store.objects.put(keys.datasetManifest(name), JSON.stringify(manifest, null, 2), { contentType: 'application/json' });
  return manifest;
}

function datasetSha256(parts: Uint8Array[]): string {
  return sha256Hex(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
}

export async function readDatasetManifest(store: ModelRepository, name: string): Promise<DatasetManifest> {
  assertValidName(name, 'data set');
  const bytes = await store.getObjectBytes(keys.datasetManifest(name));
  if (!bytes) throw new NotFoundError(`unknown data set '${name}'`);
  return datasetManifestSchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
}

// Decoded data sets are kept for the life of the environment: a long evaluation's chunks reuse them.
const loaded = new Map<string, Promise<LoadedDataset>>();

/** Reads and decodes a data set, checking its files against the manifest's sha256. */
export function loadDataset(store: ModelRepository, manifest: DatasetManifest): Promise<LoadedDataset> {
  const cacheKey = `${store.bucket}/${manifest.name}/${manifest.sha256}`;
  let load = loaded.get(cacheKey);
  if (!load) {
    load = readDataset(store, manifest);
    load.catch(() => loaded.delete(cacheKey));
    loaded.set(cacheKey, load);
  }
  return load;
}

async function readDataset(store: ModelRepository, manifest: DatasetManifest): Promise<LoadedDataset> {
  const parts: Uint8Array[] = [];
  for (const key of manifest.files) {
    const bytes = await store.getObjectBytes(key);
    if (!bytes) throw new NotFoundError(`data set '${manifest.name}' is missing its file ${key}`);
    parts.push(bytes);
  }
  if (datasetSha256(parts) !== manifest.sha256) {
    throw new IntegrityError(`data set '${manifest.name}': its files do not match the manifest's sha256`);
  }
  const parsed =
    manifest.format === 'jsonl'
      ? parseJsonlDataset(manifest.name, parts[0]!, { unlabelled: true })
      : parseIdxDataset(manifest.name, parts[0]!, parts[1]!, { inputName: manifest.inputs[0]!.name, shape: manifest.inputs[0]!.shape });
  return { manifest, columns: parsed.columns, labels: parsed.labels, targets: 'targets' in parsed ? parsed.targets : undefined };
}

/**
 * Refuses a data set whose rows do not fit the model's inputs, with the first mismatch named.
 * Returns whether rows can be stacked into batches (every input has a dynamic first dimension and
 * rows of one along it).
 */
export function matchDatasetToModel(dataset: DatasetManifest, model: ModelManifest): { batchable: boolean } {
  const prefix = `rows of data set '${dataset.name}' do not match model '${model.name}' version '${model.version}'`;
  const provided = new Map(dataset.inputs.map((i) => [i.name, i]));
  for (const spec of model.inputs) {
    const input = provided.get(spec.name);
    if (!input) {
      throw new BadRequestError(`${prefix}: the model needs input '${spec.name}', the rows have ${dataset.inputs.map((i) => `'${i.name}'`).join(', ')}`);
    }
    if (input.datatype !== spec.datatype) {
      throw new BadRequestError(`${prefix}: input '${spec.name}' is ${input.datatype} but the model expects ${spec.datatype}`);
    }
    const fits = input.shape.length === spec.shape.length && spec.shape.every((d, i) => d < 0 || d === input.shape[i]);
    if (!fits) {
      throw new BadRequestError(
        `${prefix}: input '${spec.name}' has shape ${shapeText(input.shape)} but the model expects ${shapeText(spec.shape)} (-1 is any size)`,
      );
    }
  }
  const extra = dataset.inputs.filter((i) => !model.inputs.some((s) => s.name === i.name));
  if (extra.length > 0) {
    throw new BadRequestError(`${prefix}: the model has no input ${extra.map((i) => `'${i.name}'`).join(', ')}`);
  }
  return { batchable: model.inputs.every((s) => s.shape[0] === -1 && provided.get(s.name)!.shape[0] === 1) };
}

/** Feeds for rows [start, end): views into the columns, stacked along the first dimension. */
export function batchFeeds(dataset: LoadedDataset, start: number, end: number, override?: Map<string, TensorData>): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  const rows = end - start;
  for (const column of dataset.columns) {
    const source = override?.get(column.name) ?? column.data;
    const part = Array.isArray(source)
      ? source.slice(start * column.rowSize, end * column.rowSize)
      : (source as Float32Array).subarray(start * column.rowSize, end * column.rowSize);
    const shape = rows === 1 ? column.rowShape : [rows * column.rowShape[0]!, ...column.rowShape.slice(1)];
    feeds[column.name] = new ort.Tensor(DATATYPES[column.datatype].ort, part as never, shape);
  }
  return feeds;
}
