// ONNX models built at test time, never downloaded: a minimal subset of the ONNX schema (the
// fields a graph of MatMul/Add/Relu with float initializers needs, numbered as in onnx.proto),
// encoded with protobufjs. Models are fully connected stacks:
//   x[batch, in] -> MatMul W1 -> Add b1 -> Relu -> ... -> MatMul Wn -> Add bn -> y[batch, out]
// (Relu between layers, none after the last). Opset 17, IR version 8.
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';

const ONNX_SUBSET = `
syntax = "proto3";
package onnx;

message OperatorSetIdProto {
  string domain = 1;
  int64 version = 2;
}

message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
  }
  repeated Dimension dim = 1;
}

message TypeProto {
  message Tensor {
    int32 elem_type = 1;
    TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
}

message ValueInfoProto {
  string name = 1;
  TypeProto type = 2;
}

message TensorProto {
  repeated int64 dims = 1;
  int32 data_type = 2;
  repeated float float_data = 4;
  string name = 8;
  bytes raw_data = 9;
}

message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  string domain = 7;
}

message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
}

message ModelProto {
  int64 ir_version = 1;
  string producer_name = 2;
  string producer_version = 3;
  GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
}
`;

/** TensorProto.DataType FLOAT. */
const FLOAT = 1;
export const OPSET = 17;
export const IR_VERSION = 8;

let modelType: protobuf.Type | undefined;
function modelProto(): protobuf.Type {
  modelType ??= protobuf.parse(ONNX_SUBSET, { keepCase: true }).root.lookupType('onnx.ModelProto');
  return modelType;
}

/** One fully connected layer: weights row-major [inputs][outputs]. */
export interface Dense {
  inputs: number;
  outputs: number;
  weights: Float32Array;
  bias: Float32Array;
}

export interface MlpSpec {
  /** Rows of x; a number, or a name for a free (batch) dimension. */
  batch: number | string;
  layers: Dense[];
}

export interface BuiltModel {
  spec: MlpSpec;
  bytes: Buffer;
  inputName: string;
  outputName: string;
}

function valueInfo(name: string, dims: (number | string)[]): object {
  return {
    name,
    type: { tensor_type: { elem_type: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } },
  };
}

function initializer(name: string, dims: number[], data: Float32Array): object {
  // raw_data is little-endian; copy so that a view into a larger buffer encodes only itself.
  const raw = Buffer.alloc(data.length * 4);
  for (let i = 0; i < data.length; i++) raw.writeFloatLE(data[i] as number, i * 4);
  return { name, dims, data_type: FLOAT, raw_data: raw };
}

/** Encode an MLP as an ONNX ModelProto. */
export function buildMlp(spec: MlpSpec, opts: { name?: string } = {}): BuiltModel {
  if (spec.layers.length === 0) throw new Error('an MLP needs at least one layer');
  const nodes: object[] = [];
  const inits: object[] = [];
  let current = 'x';
  spec.layers.forEach((l, i) => {
    if (l.weights.length !== l.inputs * l.outputs || l.bias.length !== l.outputs) throw new Error(`layer ${i}: weights or bias of the wrong size`);
    const prev = spec.layers[i - 1];
    if (prev !== undefined && prev.outputs !== l.inputs) throw new Error(`layer ${i} takes ${l.inputs} inputs, layer ${i - 1} gives ${prev.outputs}`);
    inits.push(initializer(`W${i}`, [l.inputs, l.outputs], l.weights), initializer(`b${i}`, [l.outputs], l.bias));
    const last = i === spec.layers.length - 1;
    nodes.push({ op_type: 'MatMul', name: `matmul${i}`, input: [current, `W${i}`], output: [`mm${i}`] });
    const sum = last ? 'y' : `sum${i}`;
    nodes.push({ op_type: 'Add', name: `add${i}`, input: [`mm${i}`, `b${i}`], output: [sum] });
    if (!last) {
      nodes.push({ op_type: 'Relu', name: `relu${i}`, input: [sum], output: [`h${i}`] });
      current = `h${i}`;
    }
  });
  const first = spec.layers[0] as Dense;
  const lastLayer = spec.layers[spec.layers.length - 1] as Dense;
  const model = {
    ir_version: IR_VERSION,
    producer_name: 'feather-test',
    producer_version: '1',
    opset_import: [{ domain: '', version: OPSET }],
    graph: {
      name: opts.name ?? 'mlp',
      node: nodes,
      initializer: inits,
      input: [valueInfo('x', [spec.batch, first.inputs])],
      output: [valueInfo('y', [spec.batch, lastLayer.outputs])],
    },
  };
  const type = modelProto();
  const message = type.fromObject(model);
  return { spec, bytes: Buffer.from(type.encode(message).finish()), inputName: 'x', outputName: 'y' };
}

/** The same forward pass in plain JavaScript (float64 accumulation), for checking a runtime. */
export function mlpForward(spec: MlpSpec, x: Float32Array, rows: number): Float64Array {
  let h: Float64Array = Float64Array.from(x);
  spec.layers.forEach((l, i) => {
    const out = new Float64Array(rows * l.outputs);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < l.outputs; o++) {
        let acc = l.bias[o] as number;
        for (let k = 0; k < l.inputs; k++) acc += (h[r * l.inputs + k] as number) * (l.weights[k * l.outputs + o] as number);
        out[r * l.outputs + o] = i < spec.layers.length - 1 ? Math.max(0, acc) : acc;
      }
    }
    h = out;
  });
  return h;
}

/** Deterministic pseudo-random floats in [-scale, scale) (mulberry32). */
export function randomFloats(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

function denseLayer(inputs: number, outputs: number, seed: number): Dense {
  // He-style scale keeps activations bounded through a deep Relu stack.
  const scale = Math.sqrt(6 / inputs);
  return { inputs, outputs, weights: randomFloats(inputs * outputs, seed, scale), bias: randomFloats(outputs, seed + 7919, 0.1) };
}

/** The tiny MLP: x[1,4] -> 8 -> Relu -> y[1,3], random weights from `seed`. */
export function tinyMlp(seed = 1): BuiltModel {
  return buildMlp({ batch: 1, layers: [denseLayer(4, 8, seed), denseLayer(8, 3, seed + 1)] }, { name: 'tiny-mlp' });
}

export interface HeavyOptions {
  /** MatMul layers (default 6). */
  layers?: number;
  /** Width of every layer (default 512). */
  width?: number;
  /** Rows of x (default 32). */
  batch?: number;
  seed?: number;
}

/**
 * A stack of square MatMuls heavy enough to take about a millisecond on one x86-64 core with
 * the defaults: 6 × (32×512 · 512×512) ≈ 50 M multiply-adds over 6 MiB of weights.
 */
export function heavyModel(opts: HeavyOptions = {}): BuiltModel {
  const layers = opts.layers ?? 6;
  const width = opts.width ?? 512;
  const seed = opts.seed ?? 11;
  return buildMlp({
    batch: opts.batch ?? 32,
    layers: Array.from({ length: layers }, (_v, i) => denseLayer(width, width, seed + i * 2)),
  }, { name: 'heavy' });
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Write `<root>/<name>/model.onnx` (the layout the runner expects under /models). */
export function writeModel(root: string, name: string, bytes: Buffer): { dir: string; file: string; sha256: string } {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const file = join(dir, 'model.onnx');
  writeFileSync(file, bytes, { mode: 0o644 });
  return { dir, file, sha256: sha256(bytes) };
}
