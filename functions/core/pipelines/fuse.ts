import { createHash } from 'node:crypto';
import { BadRequestError } from '../platform/errors.ts';
import { valueInfo, type TensorElementType } from '../onnx/builder.ts';
import {
  decodeModel, encodeModel, int64ToNumber, onnx,
  type GraphProtoInit, type ModelProto, type ModelProtoInit, type NodeProtoInit, type TensorProtoInit, type ValueInfoProtoInit,
} from '../onnx/model-proto.ts';
import { isCanonicalVersion } from '../artifacts/names.ts';
import { DATATYPES } from '../v2/datatypes.ts';
import type { TensorMetadata } from '../v2/schemas.ts';
import { parseSource, REQUEST_SOURCE, type PipelineSpec } from './spec.ts';

/**
 * Fused mode: a pipeline of static steps (model steps with pinned versions) compiled into one ONNX
 * graph, so onnxruntime plans and optimizes across steps and the result is a model like any other
 * (quantized, evaluated, canaried). Every name of a step is prefixed with `<step>/`; a step input is
 * wired to the tensor its source names; opsets take the highest version of each domain; identical
 * initializers are kept once.
 */

/** Why a pipeline cannot be fused, or undefined when it can. */
export function fuseRefusal(spec: PipelineSpec): string | undefined {
  for (const step of spec.steps) {
    if (step.kind !== 'model') return `step '${step.id}' is a ${step.kind}; fused mode takes model steps only (a static chain or DAG)`;
    if (step.version === undefined || !isCanonicalVersion(step.version)) {
      return `step '${step.id}' follows ${step.version === undefined ? "its model's default route" : `alias '${step.version}'`}; fused mode needs pinned versions`;
    }
  }
  return undefined;
}

const ELEMENT_TYPE = (datatype: TensorMetadata['datatype']): TensorElementType => DATATYPES[datatype].ort as TensorElementType;

/** A boundary tensor's value info, its dynamic dimensions named `<tensor>_<axis>`. */
function boundaryInfo(t: TensorMetadata): ValueInfoProtoInit {
  return valueInfo(t.name, ELEMENT_TYPE(t.datatype), t.shape.map((d, i) => (d < 0 ? `${t.name}_${i}` : d)));
}

/** The identity of an initializer's value: its type, dims and data, not its name. */
function initializerKey(tensor: TensorProtoInit): string {
  const bytes = onnx.TensorProto.encode({ ...tensor, name: '', docString: '' }).finish();
  return createHash('sha256').update(bytes).digest('hex');
}

function renameValueInfo(info: ValueInfoProtoInit, rename: (n: string) => string, dimPrefix: string): ValueInfoProtoInit {
  const tensorType = info.type?.tensorType;
  const shape = tensorType?.shape;
  return {
    ...info,
    name: rename(info.name ?? ''),
    ...(tensorType && shape
      ? { type: { ...info.type, tensorType: { ...tensorType, shape: { dim: (shape.dim ?? []).map((d) => (d.dimParam ? { ...d, dimParam: `${dimPrefix}${d.dimParam}` } : d)) } } } }
      : {}),
  };
}

/** The graph with every name renamed (subgraphs too: their references to outer names must follow). */
function renameGraph(graph: GraphProtoInit, rename: (n: string) => string, prefix: string): GraphProtoInit {
  const renameNode = (node: NodeProtoInit): NodeProtoInit => ({
    ...node,
    name: node.name ? `${prefix}${node.name}` : node.name,
    input: (node.input ?? []).map(rename),
    output: (node.output ?? []).map(rename),
    attribute: (node.attribute ?? []).map((a) => ({
      ...a,
      ...(a.g ? { g: renameGraph(a.g, rename, prefix) } : {}),
      ...(a.graphs?.length ? { graphs: a.graphs.map((g) => renameGraph(g, rename, prefix)) } : {}),
    })),
  });
  return {
    ...graph,
    name: `${prefix}${graph.name ?? ''}`,
    node: (graph.node ?? []).map(renameNode),
    input: (graph.input ?? []).map((v) => renameValueInfo(v, rename, prefix)),
    output: (graph.output ?? []).map((v) => renameValueInfo(v, rename, prefix)),
    initializer: (graph.initializer ?? []).map((t) => ({ ...t, name: rename(t.name ?? '') })),
    sparseInitializer: (graph.sparseInitializer ?? []).map((s) => ({
      ...s,
      ...(s.values ? { values: { ...s.values, name: rename(s.values.name ?? '') } } : {}),
      ...(s.indices ? { indices: { ...s.indices, name: rename(s.indices.name ?? '') } } : {}),
    })),
    valueInfo: (graph.valueInfo ?? []).map((v) => renameValueInfo(v, rename, prefix)),
  };
}

export interface FuseResult {
  bytes: Uint8Array;
  /** Initializers found identical in an earlier step and kept once. */
  deduplicated: number;
}

/**
 * Compiles the pipeline into one model. `models` holds each step's registered model file by step
 * id; `inputs` and `outputs` are the pipeline's signature (validation's), which the fused model keeps.
 */
export function fusePipeline(spec: PipelineSpec, order: readonly string[], models: ReadonlyMap<string, Uint8Array>, inputs: readonly TensorMetadata[], outputs: readonly TensorMetadata[]): FuseResult {
  const refusal = fuseRefusal(spec);
  if (refusal) throw new BadRequestError(`cannot fuse: ${refusal}`);
  const byId = new Map(spec.steps.map((s) => [s.id, s] as const));
  const opsets = new Map<string, number>();
  let irVersion = 0;
  const nodes: NodeProtoInit[] = [];
  const initializers: TensorProtoInit[] = [];
  const sparse: NonNullable<GraphProtoInit['sparseInitializer']> = [];
  const valueInfos: ValueInfoProtoInit[] = [];
  const functions = new Map<string, { key: string; proto: NonNullable<ModelProtoInit['functions']>[number] }>();
  const kept = new Map<string, string>(); // initializer value -> the name it is kept under
  let deduplicated = 0;
  const wire = (src: string) => {
    const { step, tensor } = parseSource(src);
    return step === REQUEST_SOURCE ? tensor : `${step}/${tensor}`;
  };

  for (const id of order) {
    const step = byId.get(id)!;
    const proto: ModelProto = decodeModel(models.get(id)!);
    irVersion = Math.max(irVersion, int64ToNumber(proto.irVersion));
    for (const o of proto.opsetImport) {
      const domain = o.domain === 'ai.onnx' ? '' : (o.domain ?? '');
      opsets.set(domain, Math.max(opsets.get(domain) ?? 0, int64ToNumber(o.version)));
    }
    for (const f of proto.functions ?? []) {
      const key = `${f.domain ?? ''}:${f.name ?? ''}`;
      const value = createHash('sha256').update(onnx.FunctionProto.encode(f).finish()).digest('hex');
      const existing = functions.get(key);
      if (existing && existing.key !== value) throw new BadRequestError(`cannot fuse: step '${id}' defines function ${key} differently from an earlier step`);
      functions.set(key, { key: value, proto: f });
    }
    const main = proto.graph!;
    const initializerNames = new Set((main.initializer ?? []).map((t) => t.name ?? ''));
    const renamed = new Map<string, string>();
    for (const input of main.input ?? []) {
      const name = input.name ?? '';
      if (initializerNames.has(name)) continue; // an IR < 4 initializer listed as an input
      const src = (step.inputs as Record<string, string>)[name];
      if (src === undefined) throw new BadRequestError(`cannot fuse: input '${name}' of step '${id}' has no source`);
      renamed.set(name, wire(src));
    }
    for (const t of main.initializer ?? []) {
      const key = initializerKey(t);
      const existing = kept.get(key);
      if (existing) {
        renamed.set(t.name ?? '', existing);
        deduplicated += 1;
      }
    }
    const rename = (n: string) => (n === '' ? '' : (renamed.get(n) ?? `${id}/${n}`));
    const graph = renameGraph(main, rename, `${id}/`);
    nodes.push(...(graph.node ?? []));
    for (const t of graph.initializer ?? []) {
      if (initializers.some((x) => x.name === t.name)) continue; // deduplicated: kept under an earlier step's name
      initializers.push(t);
      kept.set(initializerKey(t), t.name ?? '');
    }
    sparse.push(...(graph.sparseInitializer ?? []));
    const fed = new Set(renamed.values());
    valueInfos.push(...(graph.valueInfo ?? []), ...(graph.output ?? []).filter((o) => !fed.has(o.name ?? '')));
  }

  for (const output of spec.outputs) nodes.push({ opType: 'Identity', input: [wire(output.source)], output: [output.name], name: `output/${output.name}`, attribute: [] });
  const model: ModelProtoInit = {
    irVersion,
    opsetImport: [...opsets].map(([domain, version]) => ({ domain, version })),
    producerName: 'ai-mass-fuse',
    producerVersion: '1',
    docString: `AI Mass fused pipeline: ${order.map((id) => { const s = byId.get(id)!; return s.kind === 'model' ? `${id}=${s.model}:${s.version}` : id; }).join(', ')}`,
    graph: {
      name: 'fused-pipeline',
      node: nodes,
      input: inputs.map(boundaryInfo),
      output: outputs.map(boundaryInfo),
      initializer: initializers,
      sparseInitializer: sparse,
      valueInfo: valueInfos,
    },
    functions: [...functions.values()].map((f) => f.proto),
  };
  return { bytes: encodeModel(model), deduplicated };
}
