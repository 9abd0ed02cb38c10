/**
 * A small reader for the parts of an ONNX file that `layerquant inspect` reports: nodes (operator, name, integer
 * attributes), initializers (name, type, dims, byte size) and graph inputs/outputs with their shapes. Field numbers
 * are those of onnx/onnx.proto3. Tensor payloads are skipped, not copied. Every length and varint is checked against
 * the end of its message: a truncated or corrupt file is an InvalidDataError naming it, never a loop past the buffer.
 */
import { InvalidDataError } from '@layerquant/core';

export interface OnnxNodeSummary {
  readonly opType: string;
  readonly name: string;
  readonly domain: string;
  readonly inputs: readonly string[];
  /** Integer attributes (K, N, bits, block_size, accuracy_level, ...). */
  readonly ints: Readonly<Record<string, number>>;
}

export interface OnnxInitializerSummary {
  readonly name: string;
  readonly dataType: number;
  readonly dims: readonly number[];
  /** Bytes of raw_data, or of the external data it points at. */
  readonly bytes: number;
  readonly external: boolean;
}

export interface OnnxFileSummary {
  readonly nodes: readonly OnnxNodeSummary[];
  readonly initializers: readonly OnnxInitializerSummary[];
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  /** Graph inputs and outputs with their shapes (numbers, or names of symbolic dimensions). */
  readonly inputValues: readonly OnnxValueSummary[];
  readonly outputValues: readonly OnnxValueSummary[];
  readonly opsets: Readonly<Record<string, number>>;
}

export interface OnnxValueSummary {
  readonly name: string;
  readonly shape: ReadonlyArray<number | string>;
}

/** A protobuf structure that runs past the end of its message: the file is truncated or not protobuf. */
class TruncatedError extends RangeError {}

class Reader {
  offset: number;
  constructor(readonly bytes: Uint8Array, start = 0, readonly end = bytes.length) {
    this.offset = start;
  }
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.offset >= this.end) throw new TruncatedError(`a varint runs past the end of its message at byte ${this.offset}`);
      const byte = this.bytes[this.offset++]!;
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) return result;
      scale *= 128;
    }
    throw new TruncatedError(`a varint longer than 10 bytes at byte ${this.offset}`);
  }
  skip(length: number): number {
    const start = this.offset;
    if (length > this.end - this.offset) throw new TruncatedError(`a field of ${length} bytes at byte ${start} runs past the end of its message (byte ${this.end})`);
    this.offset += length;
    return start;
  }
  /** Yields (field, wire type, reader-or-value) for each field of the message. */
  *fields(): Generator<{ field: number; wire: number; value: number; start: number; length: number }> {
    while (this.offset < this.end) {
      const tag = this.varint();
      const field = Math.floor(tag / 8);
      const wire = tag % 8;
      if (field === 0) throw new TruncatedError(`field number 0 at byte ${this.offset}`);
      if (wire === 0) yield { field, wire, value: this.varint(), start: 0, length: 0 };
      else if (wire === 2) {
        const length = this.varint();
        const start = this.skip(length);
        yield { field, wire, value: 0, start, length };
      } else if (wire === 5) {
        yield { field, wire, value: 0, start: this.skip(4), length: 4 };
      } else if (wire === 1) {
        yield { field, wire, value: 0, start: this.skip(8), length: 8 };
      } else throw new TruncatedError(`unsupported protobuf wire type ${wire} at byte ${this.offset}`);
    }
  }
}

const decoder = new TextDecoder();

function text(bytes: Uint8Array, start: number, length: number): string {
  return decoder.decode(bytes.subarray(start, start + length));
}

function packedVarints(bytes: Uint8Array, start: number, length: number): number[] {
  const r = new Reader(bytes, start, start + length);
  const out: number[] = [];
  while (r.offset < r.end) out.push(r.varint());
  return out;
}

function readNode(bytes: Uint8Array, start: number, length: number): OnnxNodeSummary {
  let opType = '';
  let name = '';
  let domain = '';
  const inputs: string[] = [];
  const ints: Record<string, number> = {};
  for (const f of new Reader(bytes, start, start + length).fields()) {
    if (f.field === 1) inputs.push(text(bytes, f.start, f.length));
    else if (f.field === 3) name = text(bytes, f.start, f.length);
    else if (f.field === 4) opType = text(bytes, f.start, f.length);
    else if (f.field === 7) domain = text(bytes, f.start, f.length);
    else if (f.field === 5) {
      let attribute = '';
      let value: number | undefined;
      for (const a of new Reader(bytes, f.start, f.start + f.length).fields()) {
        if (a.field === 1) attribute = text(bytes, a.start, a.length);
        else if (a.field === 3) value = a.value;
      }
      if (value !== undefined) ints[attribute] = value;
    }
  }
  return { opType, name, domain, inputs, ints };
}

const ELEMENT_BYTES: Readonly<Record<number, number>> = { 1: 4, 2: 1, 3: 1, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8 };

function readInitializer(bytes: Uint8Array, start: number, length: number): OnnxInitializerSummary {
  let name = '';
  let dataType = 0;
  let dims: number[] = [];
  let raw = -1;
  let external = false;
  let externalLength = -1;
  for (const f of new Reader(bytes, start, start + length).fields()) {
    if (f.field === 1) dims = f.wire === 2 ? packedVarints(bytes, f.start, f.length) : [...dims, f.value];
    else if (f.field === 2) dataType = f.value;
    else if (f.field === 8) name = text(bytes, f.start, f.length);
    else if (f.field === 9) raw = f.length;
    else if (f.field === 14) external = f.value === 1;
    else if (f.field === 13) {
      let key = '';
      let value = '';
      for (const e of new Reader(bytes, f.start, f.start + f.length).fields()) {
        if (e.field === 1) key = text(bytes, e.start, e.length);
        else if (e.field === 2) value = text(bytes, e.start, e.length);
      }
      if (key === 'length') externalLength = Number(value);
    }
  }
  const count = dims.reduce((a, b) => a * b, 1);
  const bytesOf = raw >= 0 ? raw : externalLength >= 0 ? externalLength : count * (ELEMENT_BYTES[dataType] ?? 0);
  return { name, dataType, dims, bytes: bytesOf, external };
}

/** ValueInfoProto: name (1), type (2) -> TypeProto.tensor_type (1) -> shape (2) -> dim (1) -> dim_value (1) | dim_param (2). */
function readValue(bytes: Uint8Array, start: number, length: number): OnnxValueSummary {
  let name = '';
  const shape: Array<number | string> = [];
  const inside = (s: number, l: number, field: number, visit: (s: number, l: number) => void) => {
    for (const f of new Reader(bytes, s, s + l).fields()) if (f.field === field && f.wire === 2) visit(f.start, f.length);
  };
  for (const f of new Reader(bytes, start, start + length).fields()) {
    if (f.field === 1 && f.wire === 2) name = text(bytes, f.start, f.length);
    else if (f.field === 2 && f.wire === 2) {
      inside(f.start, f.length, 1, (ts, tl) =>
        inside(ts, tl, 2, (ss, sl) =>
          inside(ss, sl, 1, (ds, dl) => {
            let dim: number | string = '?';
            for (const d of new Reader(bytes, ds, ds + dl).fields()) {
              if (d.field === 1 && d.wire === 0) dim = d.value;
              else if (d.field === 2 && d.wire === 2) dim = text(bytes, d.start, d.length);
            }
            shape.push(dim);
          }),
        ),
      );
    }
  }
  return { name, shape };
}

/**
 * Reads the node, initializer and input/output lists of ONNX protobuf bytes. `file` names the bytes in errors: a
 * truncated or corrupt file, or one with no graph (an empty file), is an InvalidDataError naming it.
 */
export function readOnnxSummary(bytes: Uint8Array, file = 'the ONNX file'): OnnxFileSummary {
  try {
    return readSummary(bytes);
  } catch (error) {
    if (error instanceof TruncatedError) throw new InvalidDataError(file, `is not a complete ONNX model (${error.message}); the file is truncated or corrupt, export the model again`, { cause: error });
    throw error;
  }
}

function readSummary(bytes: Uint8Array): OnnxFileSummary {
  const nodes: OnnxNodeSummary[] = [];
  const initializers: OnnxInitializerSummary[] = [];
  const inputValues: OnnxValueSummary[] = [];
  const outputValues: OnnxValueSummary[] = [];
  const opsets: Record<string, number> = {};
  let graphs = 0;
  for (const m of new Reader(bytes).fields()) {
    if (m.field === 8) {
      let domain = '';
      let version = 0;
      for (const f of new Reader(bytes, m.start, m.start + m.length).fields()) {
        if (f.field === 1) domain = text(bytes, f.start, f.length);
        else if (f.field === 2) version = f.value;
      }
      opsets[domain] = version;
    }
    if (m.field !== 7) continue;
    if (m.wire !== 2) throw new TruncatedError(`the graph field has wire type ${m.wire}`);
    graphs++;
    for (const f of new Reader(bytes, m.start, m.start + m.length).fields()) {
      if (f.wire !== 2) continue;
      if (f.field === 1) nodes.push(readNode(bytes, f.start, f.length));
      else if (f.field === 5) initializers.push(readInitializer(bytes, f.start, f.length));
      else if (f.field === 11) inputValues.push(readValue(bytes, f.start, f.length));
      else if (f.field === 12) outputValues.push(readValue(bytes, f.start, f.length));
    }
  }
  // An empty file parses as an empty message: a model has one graph with nodes.
  if (graphs !== 1 || nodes.length === 0) throw new TruncatedError(graphs === 0 ? 'it has no graph' : graphs > 1 ? `it has ${graphs} graphs` : 'its graph has no nodes');
  return { nodes, initializers, inputs: inputValues.map((v) => v.name), outputs: outputValues.map((v) => v.name), inputValues, outputValues, opsets };
}
