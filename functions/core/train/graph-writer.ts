/**
 * Appends nodes and constants to a graph under construction, with unique names, and knows the float
 * type the training graph computes in (FP32 or FP64: FP64 lets the gradient tests use central
 * differences at full precision).
 */
import { attr, node, tensorFromFloat32, tensorFromInt64, type AttributeValue } from '../onnx/builder.ts';
import { onnx, type NodeProtoInit, type TensorProtoInit } from '../onnx/model-proto.ts';

export type FloatType = 'float32' | 'float64';

export const floatDataType: Record<FloatType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
};

/** A FLOAT64 tensor stored as little-endian raw_data (builder.ts writes FP32, INT* and FP16 only). */
export function tensorFromFloat64(name: string, dims: readonly number[], data: Float64Array | readonly number[]): TensorProtoInit {
  const count = dims.reduce((product, dim) => product * dim, 1);
  if (count !== data.length) throw new RangeError(`tensor "${name}": dims [${dims.join(', ')}] hold ${count} elements but ${data.length} values were given`);
  const rawData = new Uint8Array(data.length * 8);
  const view = new DataView(rawData.buffer);
  for (let index = 0; index < data.length; index++) view.setFloat64(index * 8, data[index] as number, true);
  return { name, dims: [...dims], dataType: onnx.TensorProto.DataType.DOUBLE, rawData };
}

export function tensorFromFloat(type: FloatType, name: string, dims: readonly number[], data: ArrayLike<number>): TensorProtoInit {
  const values = Array.from(data);
  return type === 'float32' ? tensorFromFloat32(name, dims, values) : tensorFromFloat64(name, dims, values);
}

export class GraphWriter {
  readonly nodes: NodeProtoInit[] = [];
  readonly initializers: TensorProtoInit[] = [];
  private readonly taken: Set<string>;
  private readonly constants = new Map<string, string>();

  readonly floatType: FloatType;

  constructor(floatType: FloatType, takenNames: Iterable<string>) {
    this.floatType = floatType;
    this.taken = new Set(takenNames);
  }

  /** A name no tensor or node of the graph uses yet. */
  fresh(base: string): string {
    let name = base;
    for (let suffix = 1; this.taken.has(name); suffix++) name = `${base}_${suffix}`;
    this.taken.add(name);
    return name;
  }

  reserve(name: string): void {
    this.taken.add(name);
  }

  /** Emits one node; returns its output names (fresh ones from `outputs` as bases). */
  emit(opType: string, inputs: readonly string[], outputs: readonly string[], attributes: Readonly<Record<string, AttributeValue>> = {}): string[] {
    const outputNames = outputs.map((output) => this.fresh(output));
    this.nodes.push(node(opType, inputs, outputNames, attributes, this.fresh(`${opType}:${outputNames[0]}`)));
    return outputNames;
  }

  /** Emits a one-output node. */
  op(opType: string, inputs: readonly string[], output: string, attributes: Readonly<Record<string, AttributeValue>> = {}): string {
    return this.emit(opType, inputs, [output], attributes)[0] as string;
  }

  /** Emits a node under names chosen by the caller (a forward node copied as it was). */
  push(nodeProto: NodeProtoInit): void {
    for (const output of nodeProto.output ?? []) if (output) this.taken.add(output);
    this.nodes.push(nodeProto);
  }

  /** A float constant in the graph's type (scalars are shared). */
  float(values: number | readonly number[], dims?: readonly number[]): string {
    const data = typeof values === 'number' ? [values] : values;
    const shape = dims ?? (typeof values === 'number' ? [] : [data.length]);
    const key = `f:${shape.join('x')}:${data.join(',')}`;
    const known = this.constants.get(key);
    if (known) return known;
    const name = this.fresh(typeof values === 'number' ? `const.${values}` : 'const.floats');
    this.initializers.push(tensorFromFloat(this.floatType, name, shape, data));
    this.constants.set(key, name);
    return name;
  }

  /** An INT64 1-D constant (axes, shapes, split sizes). */
  ints(values: readonly number[]): string {
    const key = `i:${values.join(',')}`;
    const known = this.constants.get(key);
    if (known) return known;
    const name = this.fresh(`const.ints.${values.join('_') || 'empty'}`);
    this.initializers.push(tensorFromInt64(name, [values.length], values));
    this.constants.set(key, name);
    return name;
  }

  /** An INT64 scalar constant. */
  intScalar(value: number): string {
    const key = `is:${value}`;
    const known = this.constants.get(key);
    if (known) return known;
    const name = this.fresh(`const.int.${value}`);
    this.initializers.push(tensorFromInt64(name, [], [value]));
    this.constants.set(key, name);
    return name;
  }

  /** A BOOL scalar constant. */
  bool(value: boolean): string {
    const key = `b:${value}`;
    const known = this.constants.get(key);
    if (known) return known;
    const name = this.fresh(`const.${value}`);
    this.initializers.push({ name, dims: [], dataType: onnx.TensorProto.DataType.BOOL, int32Data: [value ? 1 : 0] });
    this.constants.set(key, name);
    return name;
  }

  /** A tensor of zeros shaped like `like` (dynamic shape), in the graph's float type. */
  zerosLike(like: string, base: string): string {
    const shape = this.op('Shape', [like], `${base}.shape`);
    return this.op('ConstantOfShape', [shape], base, { value: attr.tensor(tensorFromFloat(this.floatType, 'value', [1], [0])) });
  }

  /** The element count of `tensor` as a float scalar. */
  countOf(tensor: string, base: string): string {
    const size = this.op('Size', [tensor], `${base}.size`);
    return this.op('Cast', [size], base, { to: attr.int(floatDataType[this.floatType]) });
  }

  /** Dimension `axis` of `tensor` (negative counts from the end) as an INT64 [1]. */
  dim(tensor: string, axis: number, base: string): string {
    const shape = this.op('Shape', [tensor], `${base}.shape`);
    return this.op('Gather', [shape, this.ints([axis])], base, { axis: attr.int(0) });
  }
}
