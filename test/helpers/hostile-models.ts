/**
 * Models that try to read a file through external data, one per place a tensor can hide: each
 * names `location` (relative, as an attacker would write it) and asks for the file's first 16 bytes
 * as its output `y` (FP32 [4] or [2, 2]).
 */
import { encodeModel, onnx, type GraphProtoInit, type TensorProtoInit } from '../../functions/core/onnx/model-proto.ts';
import { graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';

const AttributeType = onnx.AttributeProto.AttributeType;

/** 16 bytes of `location` as an FP32 [4] tensor. */
export function externalTensor(name: string, location: string): TensorProtoInit {
  return {
    name,
    dataType: onnx.TensorProto.DataType.FLOAT,
    dims: [4],
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: location },
      { key: 'length', value: '16' },
    ],
  };
}

function sparse(name: string, location: string) {
  return {
    values: externalTensor(name, location),
    indices: { name: `${name}_indices`, dataType: onnx.TensorProto.DataType.INT64, dims: [4], int64Data: [0, 1, 2, 3] },
    dims: [2, 2],
  };
}

const square = () => [valueInfo('y', 'float32', [2, 2])];

export function sparseInitializerModel(location: string): Uint8Array {
  const g: GraphProtoInit = { ...graph({ name: 'g', nodes: [node('Identity', ['s'], ['y'], {}, 'read')], inputs: [], outputs: square() }), sparseInitializer: [sparse('s', location)] };
  return encodeModel(model({ graph: g, opset: 17, irVersion: 8 }));
}

export function sparseConstantModel(location: string): Uint8Array {
  const constant = { opType: 'Constant', name: 'c', input: [], output: ['c_out'], attribute: [{ name: 'sparse_value', type: AttributeType.SPARSE_TENSOR, sparseTensor: sparse('v', location) }] };
  const g = graph({ name: 'g', nodes: [constant, node('Identity', ['c_out'], ['y'], {}, 'read')], inputs: [], outputs: square() });
  return encodeModel(model({ graph: g, opset: 17, irVersion: 8 }));
}

/** A model-local function whose body holds a Constant in external data; the main graph calls it. */
export function functionBodyModel(location: string): Uint8Array {
  const constant = { opType: 'Constant', name: 'fc', input: [], output: ['out'], attribute: [{ name: 'value', type: AttributeType.TENSOR, t: externalTensor('', location) }] };
  const g = graph({ name: 'g', nodes: [{ opType: 'leak', domain: 'local.fn', name: 'call', input: [], output: ['y'] }], inputs: [], outputs: [valueInfo('y', 'float32', [4])] });
  const m = model({ graph: g, opset: 17, irVersion: 8 });
  m.opsetImport = [...(m.opsetImport ?? []), { domain: 'local.fn', version: 1 }];
  m.functions = [{ name: 'leak', domain: 'local.fn', input: [], output: ['out'], node: [constant], opsetImport: [{ domain: '', version: 17 }] }];
  return encodeModel(m);
}

/** An initializer in external data two subgraphs deep: If -> then_branch -> If -> then_branch (input `cond`: true reads it). */
export function nestedSubgraphModel(location: string): Uint8Array {
  const leaf = (withExternal: boolean) =>
    graph({
      name: withExternal ? 'leaf' : 'plain',
      nodes: [node('Identity', ['k'], ['out'])],
      inputs: [],
      outputs: [valueInfo('out', 'float32', [4])],
      initializers: [withExternal ? externalTensor('k', location) : tensorFromFloat32('k', [4], [0, 0, 0, 0])],
    });
  const inner = { opType: 'If', name: 'inner', input: ['cond'], output: ['out'], attribute: [
    { name: 'then_branch', type: AttributeType.GRAPH, g: leaf(true) },
    { name: 'else_branch', type: AttributeType.GRAPH, g: leaf(false) },
  ] };
  const thenBranch = graph({ name: 'then', nodes: [inner], inputs: [], outputs: [valueInfo('out', 'float32', [4])] });
  const outer = { opType: 'If', name: 'outer', input: ['cond'], output: ['y'], attribute: [
    { name: 'then_branch', type: AttributeType.GRAPH, g: thenBranch },
    { name: 'else_branch', type: AttributeType.GRAPH, g: leaf(false) },
  ] };
  const g = graph({ name: 'g', nodes: [outer], inputs: [valueInfo('cond', 'bool', [])], outputs: [valueInfo('y', 'float32', [4])] });
  return encodeModel(model({ graph: g, opset: 17, irVersion: 8 }));
}

/**
 * A function's attribute default (FunctionProto.attribute_proto, field 11) holding a tensor in
 * external data. The protobuf schema we decode with predates that field, so it is appended on the
 * wire: a decoder that drops unknown fields never sees it, onnxruntime does.
 */
export function functionAttributeDefaultModel(location: string): Uint8Array {
  const attribute = onnx.AttributeProto.encode({ name: 'weights', type: AttributeType.TENSOR, t: externalTensor('', location) }).finish();
  const fn = onnx.FunctionProto.encode({ name: 'withdefault', domain: 'local.fn', input: ['x'], output: ['x_out'], attribute: [], node: [node('Identity', ['x'], ['x_out'])], opsetImport: [{ domain: '', version: 17 }] }).finish();
  const fnWithDefault = Buffer.concat([fn, field(11, attribute)]);
  const g = graph({ name: 'g', nodes: [node('Identity', ['x'], ['y'])], inputs: [valueInfo('x', 'float32', [4])], outputs: [valueInfo('y', 'float32', [4])] });
  return Buffer.concat([encodeModel(model({ graph: g, opset: 17, irVersion: 8 })), field(25, fnWithDefault)]);
}

function varint(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return out;
}

/** A length-delimited field on the wire. */
function field(number: number, body: Uint8Array): Uint8Array {
  return Buffer.concat([Uint8Array.from([...varint(number * 8 + 2), ...varint(body.length)]), body]);
}
