/**
 * What a deployment's tier can serve, checked at registration so a model that cannot fit is refused
 * with the reason rather than registered and then failing every cold start (README "Tiers").
 *
 * Two rules, both from the model file alone:
 * - its size: serving holds the model's bytes, the session's copy of its weights and onnxruntime's
 *   working memory, so a tier serves models up to (memory - SERVING_BASE_MIB) / SERVING_MODEL_FACTOR;
 * - its declared allocations: any tensor whose size the graph fixes statically (an initializer, a
 *   Constant, a sparse tensor once densified, a ConstantOfShape of a constant shape, a value_info or
 *   graph output with a static shape) larger than the tier's memory, or constant data that together
 *   is, can never be allocated there (a 100 GB ConstantOfShape in a 1 KB file).
 */
import { BadRequestError } from '../platform/errors.ts';
import { onnx, type AttributeProtoInit, type GraphProtoInit, type ModelProto, type NodeProtoInit, type TensorProtoInit, type ValueInfoProtoInit } from '../onnx/model-proto.ts';
import type { onnx as OnnxTypes } from 'onnx-proto';

/** The tier the register function assumes when the deployment does not say (serverless.yml's default tier, standard). */
export const DEFAULT_SERVING_MEMORY_MIB = 2048;
/** Serving memory besides the model: Node, onnxruntime, the SDK clients (bench registry: serve_base_rss_mb). */
export const SERVING_BASE_MIB = 125;
/**
 * Peak serving memory per byte of model above that base, from a fresh process loading it as the
 * inference function does (bench registry: memory.*.serve_peak_rss_mb): the downloaded artifact,
 * the session's packed weights and onnxruntime's working memory. The larger of the measured models.
 */
export const SERVING_MODEL_FACTOR = 2.4;

const MIB = 1024 * 1024;

/** The largest model file a function with this much memory serves. */
export function largestServableModelBytes(memoryMiB: number): number {
  return Math.max(0, Math.floor(((memoryMiB - SERVING_BASE_MIB) * MIB) / SERVING_MODEL_FACTOR));
}

/** A model that cannot fit the tier it would be served by: the uploader's to fix (a smaller model, a larger tier). */
export class ModelTooLargeForTierError extends BadRequestError {
  constructor(message: string) {
    super(message);
    this.name = 'ModelTooLargeForTierError';
  }
}

const mib = (bytes: bigint | number) => (Number(bytes) < MIB ? `${bytes} bytes` : `${Math.round(Number(bytes) / MIB)} MiB`);

/** Bytes per element of each ONNX tensor type, times 2 (4-bit types take half a byte); strings count as a pointer. */
const DOUBLE_ELEMENT_BYTES: Readonly<Record<number, bigint>> = {
  1: 8n, 2: 2n, 3: 2n, 4: 4n, 5: 4n, 6: 8n, 7: 16n, 8: 16n, 9: 2n, 10: 4n, 11: 16n, 12: 8n, 13: 16n, 14: 16n, 15: 32n, 16: 4n,
  17: 2n, 18: 2n, 19: 2n, 20: 2n, 21: 1n, 22: 1n, 23: 1n,
};

function elementsOf(dims: readonly (number | { toString(): string })[] | null | undefined): bigint {
  let product = 1n;
  for (const d of dims ?? []) {
    const n = BigInt(d.toString());
    if (n < 0n) return 0n; // not a size onnxruntime would allocate; its loader refuses it
    product *= n;
  }
  return product;
}

function bytesOf(dataType: number | null | undefined, elements: bigint): bigint {
  return (elements * (DOUBLE_ELEMENT_BYTES[dataType ?? 1] ?? 16n) + 1n) / 2n;
}

const tensorBytes = (t: TensorProtoInit | null | undefined) => (t ? bytesOf(t.dataType, elementsOf(t.dims)) : 0n);
const sparseBytes = (s: OnnxTypes.ISparseTensorProto | null | undefined) => (s ? bytesOf(s.values?.dataType, elementsOf(s.dims)) : 0n);

/** A declared allocation and where it is, for the message. */
interface Declared {
  bytes: bigint;
  where: string;
}

function staticValueBytes(value: ValueInfoProtoInit): bigint | undefined {
  const tensor = value.type?.tensorType;
  const dims = tensor?.shape?.dim;
  if (!tensor || !dims || dims.some((d) => d.dimValue === null || d.dimValue === undefined || d.dimParam)) return undefined;
  return bytesOf(tensor.elemType, elementsOf(dims.map((d) => d.dimValue!)));
}

/** int64 values of a constant tensor (a ConstantOfShape's shape), or undefined when not available. */
function int64Values(tensor: TensorProtoInit | undefined): bigint[] | undefined {
  if (!tensor || tensor.dataType !== onnx.TensorProto.DataType.INT64) return undefined;
  if (tensor.rawData && tensor.rawData.byteLength > 0) {
    const view = new DataView(tensor.rawData.buffer, tensor.rawData.byteOffset, tensor.rawData.byteLength);
    return Array.from({ length: Math.floor(view.byteLength / 8) }, (_, i) => view.getBigInt64(i * 8, true));
  }
  return (tensor.int64Data ?? []).map((v) => BigInt(v.toString()));
}

/**
 * Every allocation the model fixes statically, by walking every graph and function body: the largest
 * one, and all constant data together.
 */
export function declaredAllocations(model: ModelProto): { largest: Declared | undefined; constantBytes: bigint } {
  let largest: Declared | undefined;
  let constantBytes = 0n;
  const consider = (bytes: bigint, where: string, constant: boolean) => {
    if (constant) constantBytes += bytes;
    if (!largest || bytes > largest.bytes) largest = { bytes, where };
  };
  const quoted = (name: string | null | undefined) => JSON.stringify((name ?? '').slice(0, 80));

  const walkNodes = (nodes: readonly NodeProtoInit[], scope: string, constants: Map<string, TensorProtoInit>) => {
    for (const node of nodes) {
      const here = `node ${quoted(node.name || node.output?.[0])} (${node.opType}) in ${scope}`;
      for (const attribute of node.attribute ?? []) considerAttribute(attribute, here);
      if (node.opType === 'Constant' && node.attribute?.[0]?.t && node.output?.[0]) constants.set(node.output[0], node.attribute[0].t);
      if (node.opType === 'ConstantOfShape') {
        const shape = int64Values(constants.get(node.input?.[0] ?? ''));
        if (shape) {
          const value = node.attribute?.find((a) => a.name === 'value')?.t;
          const elements = shape.reduce((p, d) => (d < 0n ? 0n : p * d), 1n);
          consider(bytesOf(value?.dataType ?? onnx.TensorProto.DataType.FLOAT, elements), `the output of ${here}`, false);
        }
      }
      for (const attribute of node.attribute ?? []) {
        if (attribute.g) walkGraph(attribute.g, `${scope}/${node.name || node.opType}.${attribute.name}`, new Map(constants));
        for (const g of attribute.graphs ?? []) walkGraph(g, `${scope}/${node.name || node.opType}.${attribute.name}`, new Map(constants));
      }
    }
  };
  const considerAttribute = (attribute: AttributeProtoInit, here: string) => {
    const where = `attribute ${quoted(attribute.name)} of ${here}`;
    if (attribute.t) consider(tensorBytes(attribute.t), where, true);
    for (const t of attribute.tensors ?? []) consider(tensorBytes(t), where, true);
    if (attribute.sparseTensor) consider(sparseBytes(attribute.sparseTensor), where, true);
    for (const s of attribute.sparseTensors ?? []) consider(sparseBytes(s), where, true);
  };
  const walkGraph = (graph: GraphProtoInit, path: string, constants: Map<string, TensorProtoInit>) => {
    const scope = `graph ${path}`;
    for (const t of graph.initializer ?? []) {
      consider(tensorBytes(t), `initializer ${quoted(t.name)} in ${scope}`, true);
      constants.set(t.name ?? '', t);
    }
    for (const s of graph.sparseInitializer ?? []) consider(sparseBytes(s), `sparse initializer ${quoted(s.values?.name)} in ${scope}`, true);
    for (const v of [...(graph.valueInfo ?? []), ...(graph.output ?? [])]) {
      const bytes = staticValueBytes(v);
      if (bytes !== undefined) consider(bytes, `value ${quoted(v.name)} in ${scope}`, false);
    }
    walkNodes(graph.node ?? [], scope, constants);
  };
  walkGraph(model.graph!, 'main', new Map());
  for (const fn of model.functions ?? []) walkNodes(fn.node ?? [], `function ${quoted(fn.name)}`, new Map());
  return { largest, constantBytes };
}

/** Refuses a model the tier with `memoryMiB` of serving memory cannot hold (see the rules above). */
export function assertFitsTier(model: ModelProto, modelBytes: number, memoryMiB: number): void {
  const memory = BigInt(memoryMiB) * BigInt(MIB);
  const servable = largestServableModelBytes(memoryMiB);
  if (modelBytes > servable) {
    throw new ModelTooLargeForTierError(
      `model of ${mib(modelBytes)} is larger than this deployment's tier serves: at most ${mib(servable)} with ${memoryMiB} MiB of memory (README "Tiers"); use a larger tier or a smaller model`,
    );
  }
  const { largest, constantBytes } = declaredAllocations(model);
  if (largest && largest.bytes > memory) {
    throw new ModelTooLargeForTierError(
      `${largest.where} declares ${mib(largest.bytes)}, more than the ${memoryMiB} MiB of memory this deployment's tier serves with`,
    );
  }
  if (constantBytes > memory) {
    throw new ModelTooLargeForTierError(
      `the model's constant tensors declare ${mib(constantBytes)} together, more than the ${memoryMiB} MiB of memory this deployment's tier serves with`,
    );
  }
}
