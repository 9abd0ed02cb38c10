/**
 * A small reader for the parts of an ONNX file that `layerquant inspect` reports: nodes (operator, name, integer
 * attributes), initializers (name, type, dims, byte size) and graph inputs/outputs. Field numbers are those of
 * onnx/onnx.proto3. Tensor payloads are skipped, not copied.
 */

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
  readonly opsets: Readonly<Record<string, number>>;
}

class Reader {
  offset: number;
  constructor(readonly bytes: Uint8Array, start = 0, readonly end = bytes.length) {
    this.offset = start;
  }
  varint(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      const byte = this.bytes[this.offset++]!;
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) return result;
      scale *= 128;
    }
  }
  /** Yields (field, wire type, reader-or-value) for each field of the message. */
  *fields(): Generator<{ field: number; wire: number; value: number; start: number; length: number }> {
    while (this.offset < this.end) {
      const tag = this.varint();
      const field = Math.floor(tag / 8);
      const wire = tag % 8;
      if (wire === 0) yield { field, wire, value: this.varint(), start: 0, length: 0 };
      else if (wire === 2) {
        const length = this.varint();
        const start = this.offset;
        this.offset += length;
        yield { field, wire, value: 0, start, length };
      } else if (wire === 5) {
        this.offset += 4;
        yield { field, wire, value: 0, start: this.offset - 4, length: 4 };
      } else if (wire === 1) {
        this.offset += 8;
        yield { field, wire, value: 0, start: this.offset - 8, length: 8 };
      } else throw new RangeError(`unsupported protobuf wire type ${wire} at byte ${this.offset}`);
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

/** Reads the node, initializer and input/output lists of ONNX protobuf bytes. */
export function readOnnxSummary(bytes: Uint8Array): OnnxFileSummary {
  const nodes: OnnxNodeSummary[] = [];
  const initializers: OnnxInitializerSummary[] = [];
  const inputs: string[] = [];
  const outputs: string[] = [];
  const opsets: Record<string, number> = {};
  const valueName = (start: number, length: number) => {
    for (const f of new Reader(bytes, start, start + length).fields()) if (f.field === 1) return text(bytes, f.start, f.length);
    return '';
  };
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
    for (const f of new Reader(bytes, m.start, m.start + m.length).fields()) {
      if (f.field === 1) nodes.push(readNode(bytes, f.start, f.length));
      else if (f.field === 5) initializers.push(readInitializer(bytes, f.start, f.length));
      else if (f.field === 11) inputs.push(valueName(f.start, f.length));
      else if (f.field === 12) outputs.push(valueName(f.start, f.length));
    }
  }
  return { nodes, initializers, inputs, outputs, opsets };
}
