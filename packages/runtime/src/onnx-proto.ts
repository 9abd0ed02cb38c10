/**
 * A minimal protobuf writer for the ONNX messages layerquant needs (ModelProto, GraphProto, NodeProto,
 * TensorProto, ValueInfoProto, AttributeProto). Field numbers are those of onnx/onnx.proto3.
 * Messages are kept as lists of byte chunks so that large initializers are copied once, at the end.
 */

/** ONNX TensorProto.DataType values used here. */
export const OnnxDataType = Object.freeze({
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
} as const);
export type OnnxDataTypeValue = (typeof OnnxDataType)[keyof typeof OnnxDataType];

const WIRE_VARINT = 0;
const WIRE_FIXED32 = 5;
const WIRE_LENGTH = 2;

const textEncoder = new TextEncoder();

/** A protobuf message under construction: chunks plus their total length. */
export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private scratch: number[] = [];
  length = 0;

  private flushScratch(): void {
    if (this.scratch.length === 0) return;
    this.chunks.push(Uint8Array.from(this.scratch));
    this.scratch = [];
  }

  private pushByte(byte: number): void {
    this.scratch.push(byte);
    this.length += 1;
  }

  private pushVarint(value: number | bigint): void {
    // Negative int64 values are written as their 64-bit two's complement (10 bytes), as protobuf does.
    let v = typeof value === 'bigint' ? BigInt.asUintN(64, value) : value < 0 ? BigInt.asUintN(64, BigInt(value)) : value;
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw new RangeError(`varint ${v} is not a safe integer`);
      while (v > 0x7f) {
        this.pushByte((v % 128) | 0x80);
        v = Math.floor(v / 128);
      }
      this.pushByte(v);
      return;
    }
    while (v > 0x7fn) {
      this.pushByte(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.pushByte(Number(v));
  }

  private tag(field: number, wire: number): void {
    this.pushVarint(field * 8 + wire);
  }

  varint(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.pushVarint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    for (const b of bytes) this.pushByte(b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LENGTH);
    this.pushVarint(value.byteLength);
    this.flushScratch();
    this.chunks.push(value);
    this.length += value.byteLength;
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, textEncoder.encode(value));
  }

  message(field: number, message: ProtoWriter): this {
    this.tag(field, WIRE_LENGTH);
    this.pushVarint(message.length);
    this.flushScratch();
    message.flushScratch();
    this.chunks.push(...message.chunks);
    this.length += message.length;
    return this;
  }

  /** Packed repeated int64 (dims, ints). */
  packedVarints(field: number, values: readonly (number | bigint)[]): this {
    const inner = new ProtoWriter();
    for (const v of values) inner.pushVarint(v);
    inner.flushScratch();
    return this.bytes(field, concatChunks(inner.chunks, inner.length));
  }

  /** Packed repeated float. */
  packedFloats(field: number, values: readonly number[]): this {
    const data = new Float32Array(values);
    return this.bytes(field, littleEndianBytes(data));
  }

  finish(): Uint8Array {
    this.flushScratch();
    return concatChunks(this.chunks, this.length);
  }
}

function concatChunks(chunks: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The bytes of a typed array in little-endian order (ONNX raw_data is little-endian). */
export function littleEndianBytes(data: TensorData): Uint8Array {
  if (!LITTLE_ENDIAN && data.BYTES_PER_ELEMENT > 1) {
    throw new RangeError('big-endian hosts are not supported by the ONNX writer');
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

// ---- ONNX messages ------------------------------------------------------------------------------

/** Tensor payloads; a Uint16Array holds IEEE half-precision bits (FLOAT16). */
export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array;

export interface OnnxTensor {
  readonly name: string;
  readonly dataType: OnnxDataTypeValue;
  readonly dims: readonly number[];
  readonly data: TensorData;
}

export type OnnxAttributeValue = number | bigint | string | readonly number[] | OnnxTensor | { readonly float: number };

export interface OnnxNode {
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  readonly domain?: string;
  /** Integers are INT attributes unless wrapped as `{ float }`; arrays of integers are INTS. */
  readonly attributes?: Readonly<Record<string, OnnxAttributeValue>>;
}

/** A graph input or output: element type and dims (a string dim is symbolic, e.g. "batch"). */
export interface OnnxValueInfo {
  readonly name: string;
  readonly dataType: OnnxDataTypeValue;
  readonly dims: readonly (number | string)[];
}

export interface OnnxGraph {
  readonly name: string;
  readonly nodes: readonly OnnxNode[];
  readonly initializers: readonly OnnxTensor[];
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
}

export interface OnnxModel {
  readonly graph: OnnxGraph;
  /** Opset per domain; '' is the default ONNX domain. */
  readonly opsets: Readonly<Record<string, number>>;
  readonly producerName?: string;
  readonly irVersion?: number;
}

const ATTRIBUTE_FLOAT = 1;
const ATTRIBUTE_INT = 2;
const ATTRIBUTE_STRING = 3;
const ATTRIBUTE_TENSOR = 4;
const ATTRIBUTE_FLOATS = 6;
const ATTRIBUTE_INTS = 7;

/** Where an initializer's bytes live when they are kept outside the protobuf (ONNX external data). */
export interface ExternalDataLocation {
  /** File name relative to the model file. */
  readonly location: string;
  readonly offset: number;
  readonly length: number;
}

export function encodeTensor(tensor: OnnxTensor, external?: ExternalDataLocation): ProtoWriter {
  const w = new ProtoWriter();
  if (tensor.dims.length > 0) w.packedVarints(1, tensor.dims);
  w.varint(2, tensor.dataType);
  w.string(8, tensor.name);
  if (!external) {
    w.bytes(9, littleEndianBytes(tensor.data));
    return w;
  }
  // TensorProto.external_data (13): StringStringEntryProto { key = 1, value = 2 }; data_location (14) = EXTERNAL (1).
  for (const [key, value] of [['location', external.location], ['offset', String(external.offset)], ['length', String(external.length)]] as const) {
    w.message(13, new ProtoWriter().string(1, key).string(2, value));
  }
  w.varint(14, 1);
  return w;
}

function encodeAttribute(name: string, value: OnnxAttributeValue): ProtoWriter {
  const w = new ProtoWriter();
  w.string(1, name);
  if (typeof value === 'number' || typeof value === 'bigint') {
    if (typeof value === 'number' && !Number.isInteger(value)) {
      throw new RangeError(`attribute "${name}": ${value} is not an integer; wrap floats as { float: value }`);
    }
    w.varint(3, value).varint(20, ATTRIBUTE_INT);
  } else if (typeof value === 'string') {
    w.string(4, value).varint(20, ATTRIBUTE_STRING);
  } else if (Array.isArray(value)) {
    const values = value as readonly number[];
    if (values.every((v) => Number.isInteger(v))) w.packedVarints(8, values).varint(20, ATTRIBUTE_INTS);
    else w.packedFloats(7, values).varint(20, ATTRIBUTE_FLOATS);
  } else if ('float' in (value as object)) {
    w.float(2, (value as { float: number }).float).varint(20, ATTRIBUTE_FLOAT);
  } else {
    w.message(5, encodeTensor(value as OnnxTensor)).varint(20, ATTRIBUTE_TENSOR);
  }
  return w;
}

function encodeNode(node: OnnxNode): ProtoWriter {
  const w = new ProtoWriter();
  for (const input of node.inputs) w.string(1, input);
  for (const output of node.outputs) w.string(2, output);
  if (node.name) w.string(3, node.name);
  w.string(4, node.opType);
  for (const [name, value] of Object.entries(node.attributes ?? {})) w.message(5, encodeAttribute(name, value));
  if (node.domain) w.string(7, node.domain);
  return w;
}

function encodeValueInfo(info: OnnxValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of info.dims) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.varint(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoWriter().varint(1, info.dataType).message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, info.name).message(2, type);
}

export function encodeGraph(graph: OnnxGraph, external?: ReadonlyMap<string, ExternalDataLocation>): ProtoWriter {
  const w = new ProtoWriter();
  for (const node of graph.nodes) w.message(1, encodeNode(node));
  w.string(2, graph.name);
  for (const init of graph.initializers) w.message(5, encodeTensor(init, external?.get(init.name)));
  for (const input of graph.inputs) w.message(11, encodeValueInfo(input));
  for (const output of graph.outputs) w.message(12, encodeValueInfo(output));
  return w;
}

/** Serializes a model to ONNX protobuf bytes (IR version 8 by default, which opset 17 needs). */
export function encodeModel(model: OnnxModel, external?: ReadonlyMap<string, ExternalDataLocation>): Uint8Array {
  return modelWriter(model, external).finish();
}

/**
 * The byte length encodeModel would give, without joining the bytes: tensors are referenced, never copied, so a
 * model whose initializers are views of one zero buffer (a size prediction) costs no memory beyond its nodes.
 */
export function encodedModelLength(model: OnnxModel, external?: ReadonlyMap<string, ExternalDataLocation>): number {
  return modelWriter(model, external).length;
}

/** Bytes one node adds to a graph (its NodeProto with the field tag and length prefix). */
export function encodedNodeLength(node: OnnxNode): number {
  const length = encodeNode(node).length;
  return 1 + varintLength(length) + length;
}

/** Bytes one initializer adds to a graph (its TensorProto with the field tag and length prefix), data inside. */
export function encodedInitializerLength(tensor: Omit<OnnxTensor, 'data'>, dataBytes: number): number {
  const header = encodeTensor({ ...tensor, data: new Uint8Array(0) }).length;
  const length = header + dataBytes + varintLength(dataBytes) - varintLength(0);
  return 1 + varintLength(length) + length;
}

/** Bytes of a protobuf varint. */
export function varintLength(value: number): number {
  let bytes = 1;
  for (let v = value; v > 0x7f; v = Math.floor(v / 128)) bytes++;
  return bytes;
}

function modelWriter(model: OnnxModel, external?: ReadonlyMap<string, ExternalDataLocation>): ProtoWriter {
  const w = new ProtoWriter();
  w.varint(1, model.irVersion ?? 8);
  w.string(2, model.producerName ?? 'layerquant');
  w.message(7, encodeGraph(model.graph, external));
  for (const [domain, version] of Object.entries(model.opsets)) {
    const opset = new ProtoWriter();
    if (domain) opset.string(1, domain);
    opset.varint(2, version);
    w.message(8, opset);
  }
  return w;
}

/** A model whose large initializers are kept in a side file: the protobuf and the data file's chunks, in order. */
export interface ModelWithExternalData {
  readonly model: Uint8Array;
  /** The bytes of the data file, concatenated in this order (not joined: the file may exceed 2 GiB). */
  readonly data: readonly Uint8Array[];
  readonly dataBytes: number;
}

/**
 * Serializes a model with every initializer of at least `minBytes` moved into the external data file `location`
 * (the layout onnxruntime and transformers.js read: `model.onnx` + `model.onnx_data`). Tensors are 64-byte aligned.
 */
export function encodeModelWithExternalData(model: OnnxModel, location: string, minBytes = 1024): ModelWithExternalData {
  const external = new Map<string, ExternalDataLocation>();
  const data: Uint8Array[] = [];
  let offset = 0;
  for (const init of model.graph.initializers) {
    if (init.data.byteLength < minBytes) continue;
    const padding = (64 - (offset % 64)) % 64;
    if (padding) data.push(new Uint8Array(padding));
    offset += padding;
    external.set(init.name, { location, offset, length: init.data.byteLength });
    data.push(littleEndianBytes(init.data));
    offset += init.data.byteLength;
  }
  return { model: encodeModel(model, external), data, dataBytes: offset };
}
