import { GgufFormatError, InvalidOptionError } from '@layerquant/core';
import { ggmlType, ggmlTypeById, ggufTensorBytes, type GgmlTypeInfo, type GgmlTypeName } from './ggml-types.js';

// The GGUF container (llama.cpp's ggml/src/gguf.cpp and docs/gguf.md), without file access (browser-safe): the header
// writer with its exact layout, and the strict header parser that the node reader and a page share. Little-endian
// throughout: magic "GGUF", version, tensor count, metadata count, typed key/value pairs, the tensor table (ggml
// dimension order, innermost first), padding to the alignment, then the tensors, each padded to the alignment.

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
/** Versions whose layout this reader knows (2 and 3 differ only in byte-order support; 1 had 32-bit counts). */
export const GGUF_READABLE_VERSIONS: readonly number[] = Object.freeze([2, 3]);
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const GGUF_ALIGNMENT_KEY = 'general.alignment';
/** ggml's GGML_MAX_NAME is 64 bytes with the terminating NUL. */
export const GGUF_MAX_TENSOR_NAME_BYTES = 63;
export const GGUF_MAX_DIMS = 4;

/** The value types of GGUF metadata, at their ids. */
export const GGUF_VALUE_TYPES = Object.freeze(['UINT8', 'INT8', 'UINT16', 'INT16', 'UINT32', 'INT32', 'FLOAT32', 'BOOL', 'STRING', 'ARRAY', 'UINT64', 'INT64', 'FLOAT64'] as const);
export type GgufValueTypeName = (typeof GGUF_VALUE_TYPES)[number];
export type GgufScalarType = Exclude<GgufValueTypeName, 'ARRAY'>;
export type GgufNumberType = Exclude<GgufScalarType, 'STRING' | 'BOOL' | 'UINT64' | 'INT64'>;
export type GgufScalar = string | number | bigint | boolean;

/** One metadata value with its GGUF type (64-bit integers as bigint, so they stay exact). */
export type GgufValue =
  | { readonly type: 'STRING'; readonly value: string }
  | { readonly type: 'BOOL'; readonly value: boolean }
  | { readonly type: 'UINT64' | 'INT64'; readonly value: bigint }
  | { readonly type: GgufNumberType; readonly value: number }
  | { readonly type: 'ARRAY'; readonly itemType: GgufScalarType; readonly value: readonly GgufScalar[] };

/** Metadata in file order. */
export type GgufMetadata = ReadonlyMap<string, GgufValue>;

/** Constructors of typed metadata values. */
export const gguf = Object.freeze({
  string: (value: string): GgufValue => ({ type: 'STRING', value }),
  bool: (value: boolean): GgufValue => ({ type: 'BOOL', value }),
  u32: (value: number): GgufValue => ({ type: 'UINT32', value }),
  i32: (value: number): GgufValue => ({ type: 'INT32', value }),
  f32: (value: number): GgufValue => ({ type: 'FLOAT32', value }),
  u64: (value: number | bigint): GgufValue => ({ type: 'UINT64', value: BigInt(value) }),
  array: (itemType: GgufScalarType, value: readonly GgufScalar[]): GgufValue => ({ type: 'ARRAY', itemType, value }),
});

const SCALAR_BYTES: Readonly<Record<Exclude<GgufScalarType, 'STRING'>, number>> = Object.freeze({
  UINT8: 1, INT8: 1, BOOL: 1, UINT16: 2, INT16: 2, UINT32: 4, INT32: 4, FLOAT32: 4, UINT64: 8, INT64: 8, FLOAT64: 8,
});

const utf8 = new TextEncoder();
const utf8Bytes = (text: string) => utf8.encode(text).length;

function scalarBytes(type: GgufScalarType, value: GgufScalar): number {
  return type === 'STRING' ? 8 + utf8Bytes(value as string) : SCALAR_BYTES[type];
}

/** Bytes of one key/value pair in the header. */
export function ggufMetadataEntryBytes(key: string, value: GgufValue): number {
  let bytes = 8 + utf8Bytes(key) + 4;
  if (value.type === 'ARRAY') {
    bytes += 4 + 8;
    if (value.itemType === 'STRING') for (const item of value.value) bytes += 8 + utf8Bytes(item as string);
    else bytes += value.value.length * SCALAR_BYTES[value.itemType];
  } else {
    bytes += scalarBytes(value.type, value.value);
  }
  return bytes;
}

/** A tensor as the header describes it: `shape` in Hugging Face order ([rows, columns]); the file stores it reversed. */
export interface GgufTensorSpec {
  readonly name: string;
  readonly type: GgmlTypeName | GgmlTypeInfo;
  readonly shape: readonly number[];
}

export interface GgufTensorPlacement {
  readonly name: string;
  readonly type: GgmlTypeInfo;
  readonly shape: readonly number[];
  /** Offset in the data section (a multiple of the alignment). */
  readonly offset: number;
  readonly byteLength: number;
}

/** Where everything of a GGUF file lies: the exact file size before anything is encoded. */
export interface GgufLayout {
  readonly alignment: number;
  /** Bytes of magic, counts, metadata and tensor table. */
  readonly headerBytes: number;
  /** headerBytes padded to the alignment: where the data section starts. */
  readonly dataStart: number;
  readonly tensors: readonly GgufTensorPlacement[];
  /** Bytes of all tensors without padding. */
  readonly tensorBytes: number;
  /** Alignment padding: after the header and after every tensor (the last one included, as llama.cpp writes). */
  readonly paddingBytes: number;
  /** The whole file: dataStart + tensors + their padding. */
  readonly fileBytes: number;
}

const pad = (n: number, alignment: number) => Math.ceil(n / alignment) * alignment;

function alignmentOf(metadata: GgufMetadata): number {
  const value = metadata.get(GGUF_ALIGNMENT_KEY);
  if (value === undefined) return GGUF_DEFAULT_ALIGNMENT;
  if (value.type !== 'UINT32' || value.value <= 0 || (value.value & (value.value - 1)) !== 0) {
    throw new InvalidOptionError(GGUF_ALIGNMENT_KEY, `must be a UINT32 power of 2, got ${value.type} ${String(value.value)}`);
  }
  return value.value;
}

function checkTensorSpec(spec: GgufTensorSpec): GgmlTypeInfo {
  const bytes = utf8Bytes(spec.name);
  if (bytes === 0 || bytes > GGUF_MAX_TENSOR_NAME_BYTES) {
    throw new InvalidOptionError('tensor name', `"${spec.name}" has ${bytes} bytes; GGUF tensor names have 1 to ${GGUF_MAX_TENSOR_NAME_BYTES}`);
  }
  if (spec.shape.length < 1 || spec.shape.length > GGUF_MAX_DIMS || !spec.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new InvalidOptionError('tensor shape', `"${spec.name}" has shape [${spec.shape.join(', ')}]; GGUF holds 1 to ${GGUF_MAX_DIMS} non-negative dimensions`);
  }
  return typeof spec.type === 'string' ? ggmlType(spec.type) : spec.type;
}

/**
 * The exact layout of a GGUF file with this metadata and these tensors, in this order: the cost model's whole-file
 * overhead is `fileBytes - tensorBytes` (header, metadata, tensor table, alignment padding).
 */
export function ggufLayout(metadata: GgufMetadata, tensors: readonly GgufTensorSpec[]): GgufLayout {
  const alignment = alignmentOf(metadata);
  let headerBytes = 4 + 4 + 8 + 8;
  for (const [key, value] of metadata) headerBytes += ggufMetadataEntryBytes(key, value);
  const placements: GgufTensorPlacement[] = [];
  let offset = 0;
  let tensorBytes = 0;
  const names = new Set<string>();
  for (const spec of tensors) {
    const type = checkTensorSpec(spec);
    if (names.has(spec.name)) throw new InvalidOptionError('tensor name', `"${spec.name}" appears twice; GGUF tensor names are unique`);
    names.add(spec.name);
    headerBytes += 8 + utf8Bytes(spec.name) + 4 + 8 * spec.shape.length + 4 + 8;
    const byteLength = ggufTensorBytes(type, spec.shape, spec.name);
    placements.push(Object.freeze({ name: spec.name, type, shape: Object.freeze([...spec.shape]), offset, byteLength }));
    offset += pad(byteLength, alignment);
    tensorBytes += byteLength;
  }
  const dataStart = tensors.length > 0 ? pad(headerBytes, alignment) : headerBytes;
  const fileBytes = dataStart + offset;
  return Object.freeze({ alignment, headerBytes, dataStart, tensors: Object.freeze(placements), tensorBytes, paddingBytes: fileBytes - headerBytes - tensorBytes, fileBytes });
}

class ByteWriter {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  position = 0;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }
  u8(v: number) { this.view.setUint8(this.position, v); this.position += 1; }
  i8(v: number) { this.view.setInt8(this.position, v); this.position += 1; }
  u16(v: number) { this.view.setUint16(this.position, v, true); this.position += 2; }
  i16(v: number) { this.view.setInt16(this.position, v, true); this.position += 2; }
  u32(v: number) { this.view.setUint32(this.position, v, true); this.position += 4; }
  i32(v: number) { this.view.setInt32(this.position, v, true); this.position += 4; }
  f32(v: number) { this.view.setFloat32(this.position, v, true); this.position += 4; }
  f64(v: number) { this.view.setFloat64(this.position, v, true); this.position += 8; }
  u64(v: bigint | number) { this.view.setBigUint64(this.position, BigInt(v), true); this.position += 8; }
  i64(v: bigint) { this.view.setBigInt64(this.position, v, true); this.position += 8; }
  string(text: string) {
    const encoded = utf8.encode(text);
    this.u64(encoded.length);
    this.bytes.set(encoded, this.position);
    this.position += encoded.length;
  }
}

function checkScalar(key: string, type: GgufScalarType, value: GgufScalar): void {
  const fail = (why: string) => {
    throw new InvalidOptionError(`metadata "${key}"`, `${String(value)} ${why}`);
  };
  switch (type) {
    case 'STRING': if (typeof value !== 'string') fail('is not a string'); return;
    case 'BOOL': if (typeof value !== 'boolean') fail('is not a boolean'); return;
    case 'UINT64': if (typeof value !== 'bigint' || value < 0n || value >= 2n ** 64n) fail('is not a UINT64 (bigint)'); return;
    case 'INT64': if (typeof value !== 'bigint' || value < -(2n ** 63n) || value >= 2n ** 63n) fail('is not an INT64 (bigint)'); return;
    case 'FLOAT32': case 'FLOAT64': if (typeof value !== 'number') fail('is not a number'); return;
    default: {
      const bits = { UINT8: 8, INT8: 8, UINT16: 16, INT16: 16, UINT32: 32, INT32: 32 }[type];
      const signed = type.startsWith('INT');
      const [min, max] = signed ? [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] : [0, 2 ** bits - 1];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) fail(`is not a ${type}`);
    }
  }
}

function writeScalar(w: ByteWriter, type: GgufScalarType, value: GgufScalar): void {
  switch (type) {
    case 'UINT8': return w.u8(value as number);
    case 'INT8': return w.i8(value as number);
    case 'UINT16': return w.u16(value as number);
    case 'INT16': return w.i16(value as number);
    case 'UINT32': return w.u32(value as number);
    case 'INT32': return w.i32(value as number);
    case 'FLOAT32': return w.f32(value as number);
    case 'FLOAT64': return w.f64(value as number);
    case 'BOOL': return w.u8(value ? 1 : 0);
    case 'UINT64': return w.u64(value as bigint);
    case 'INT64': return w.i64(value as bigint);
    case 'STRING': return w.string(value as string);
  }
}

/**
 * The header of a GGUF file (everything before the data section, padding included) and its layout. The tensors'
 * bytes follow at `layout.dataStart + placement.offset`, each padded with zeros to the alignment.
 */
export function encodeGgufHeader(metadata: GgufMetadata, tensors: readonly GgufTensorSpec[]): { bytes: Uint8Array; layout: GgufLayout } {
  for (const [key, value] of metadata) {
    if (key.length === 0) throw new InvalidOptionError('metadata', 'a key is empty; GGUF keys are non-empty strings');
    if (value.type === 'ARRAY') {
      if (!GGUF_VALUE_TYPES.includes(value.itemType) || (value.itemType as string) === 'ARRAY') {
        throw new InvalidOptionError(`metadata "${key}"`, `array item type ${String(value.itemType)} is not a GGUF scalar type (arrays of arrays are not readable by llama.cpp)`);
      }
      for (const item of value.value) checkScalar(key, value.itemType, item);
    } else {
      checkScalar(key, value.type, value.value);
    }
  }
  const layout = ggufLayout(metadata, tensors);
  const w = new ByteWriter(layout.dataStart);
  for (const c of GGUF_MAGIC) w.u8(c.charCodeAt(0));
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [key, value] of metadata) {
    w.string(key);
    w.u32(GGUF_VALUE_TYPES.indexOf(value.type));
    if (value.type === 'ARRAY') {
      w.u32(GGUF_VALUE_TYPES.indexOf(value.itemType));
      w.u64(value.value.length);
      for (const item of value.value) writeScalar(w, value.itemType, item);
    } else {
      writeScalar(w, value.type, value.value);
    }
  }
  for (const t of layout.tensors) {
    w.string(t.name);
    w.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) w.u64(t.shape[d]!);
    w.u32(t.type.id);
    w.u64(t.offset);
  }
  if (w.position !== layout.headerBytes) throw new Error(`GGUF header: wrote ${w.position} bytes, layout says ${layout.headerBytes}`);
  return { bytes: w.bytes, layout };
}

// ---- reading ------------------------------------------------------------------------------------------------------

/** A tensor of a GGUF file. */
export interface GgufTensorInfo {
  readonly name: string;
  readonly type: GgmlTypeInfo;
  /** Dimensions as the file stores them (ggml order: innermost first). */
  readonly dims: readonly number[];
  /** Dimensions in Hugging Face order ([rows, columns] for a matrix): `dims` reversed. */
  readonly shape: readonly number[];
  readonly elements: number;
  /** Offset in the data section, as the tensor table gives it. */
  readonly offset: number;
  /** Absolute offset in the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

export interface GgufHeader {
  readonly file: string;
  readonly version: number;
  readonly alignment: number;
  readonly metadata: GgufMetadata;
  readonly tensors: readonly GgufTensorInfo[];
  /** Bytes of magic, counts, metadata and tensor table. */
  readonly headerBytes: number;
  /** Where the data section starts (headerBytes padded to the alignment). */
  readonly dataStart: number;
  readonly fileSize: number;
}

/** Thrown by parseGgufHeader when `prefix` ends before the header does: read at least `needed` bytes and parse again. */
export class GgufHeaderIncomplete extends Error {
  constructor(readonly needed: number) {
    super(`the GGUF header needs at least ${needed} bytes`);
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });
const lenientUtf8 = new TextDecoder('utf-8');

class ByteReader {
  private readonly view: DataView;
  position = 0;
  constructor(private readonly bytes: Uint8Array, private readonly fileSize: number, private readonly file: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  need(n: number, what: string, tensor?: string): void {
    if (this.position + n > this.fileSize) {
      throw new GgufFormatError(this.file, `${what} at byte ${this.position} runs past the end of the file (${this.fileSize} bytes); the file is truncated, download or export it again`, tensor);
    }
    if (this.position + n > this.bytes.length) throw new GgufHeaderIncomplete(this.position + n);
  }
  u8(what: string) { this.need(1, what); return this.view.getUint8(this.position++); }
  i8(what: string) { this.need(1, what); return this.view.getInt8(this.position++); }
  u16(what: string) { this.need(2, what); const v = this.view.getUint16(this.position, true); this.position += 2; return v; }
  i16(what: string) { this.need(2, what); const v = this.view.getInt16(this.position, true); this.position += 2; return v; }
  u32(what: string, tensor?: string) { this.need(4, what, tensor); const v = this.view.getUint32(this.position, true); this.position += 4; return v; }
  i32(what: string, tensor?: string) { this.need(4, what, tensor); const v = this.view.getInt32(this.position, true); this.position += 4; return v; }
  f32(what: string) { this.need(4, what); const v = this.view.getFloat32(this.position, true); this.position += 4; return v; }
  f64(what: string) { this.need(8, what); const v = this.view.getFloat64(this.position, true); this.position += 8; return v; }
  u64(what: string, tensor?: string) { this.need(8, what, tensor); const v = this.view.getBigUint64(this.position, true); this.position += 8; return v; }
  i64(what: string) { this.need(8, what); const v = this.view.getBigInt64(this.position, true); this.position += 8; return v; }
  /** A u64 that must be a safe integer no larger than `limit`. */
  size(what: string, limit: number, tensor?: string): number {
    const raw = this.u64(what, tensor);
    if (raw > MAX_SAFE || Number(raw) > limit) {
      throw new GgufFormatError(this.file, `${what} is ${raw}, more than the ${limit} the rest of the file can hold; the file is corrupt`, tensor);
    }
    return Number(raw);
  }
  string(what: string, strict: boolean, tensor?: string): string {
    const length = this.size(`length of ${what}`, this.fileSize - this.position - 8, tensor);
    this.need(length, what, tensor);
    const raw = this.bytes.subarray(this.position, this.position + length);
    this.position += length;
    if (!strict) return lenientUtf8.decode(raw);
    try {
      return fatalUtf8.decode(raw);
    } catch (error) {
      throw new GgufFormatError(this.file, `${what} is not valid UTF-8; the file is corrupt`, tensor, { cause: error });
    }
  }
}

function readScalar(r: ByteReader, type: GgufScalarType, key: string, file: string): GgufScalar {
  const what = `value of "${key}"`;
  switch (type) {
    case 'UINT8': return r.u8(what);
    case 'INT8': return r.i8(what);
    case 'UINT16': return r.u16(what);
    case 'INT16': return r.i16(what);
    case 'UINT32': return r.u32(what);
    case 'INT32': return r.i32(what);
    case 'FLOAT32': return r.f32(what);
    case 'FLOAT64': return r.f64(what);
    case 'UINT64': return r.u64(what);
    case 'INT64': return r.i64(what);
    case 'STRING': return r.string(what, false);
    case 'BOOL': {
      const byte = r.u8(what);
      if (byte > 1) throw new GgufFormatError(file, `metadata "${key}" is a BOOL stored as ${byte}; a BOOL is 0 or 1, the file is corrupt`);
      return byte === 1;
    }
  }
}

function valueType(r: ByteReader, file: string, key: string, what: string): GgufValueTypeName {
  const id = r.i32(`${what} of "${key}"`);
  const name = GGUF_VALUE_TYPES[id];
  if (name === undefined) {
    throw new GgufFormatError(file, `metadata "${key}" has ${what} ${id}, not a GGUF value type (0-${GGUF_VALUE_TYPES.length - 1}); the file is corrupt`);
  }
  return name;
}

/**
 * Parses and validates a GGUF header by llama.cpp's own rules (gguf.cpp's gguf_init_from_file), plus the file size:
 * magic and version; counts the file can hold; non-empty, unique, UTF-8 keys with known value types (no arrays of
 * arrays, BOOL 0 or 1); general.alignment a UINT32 power of 2; unique tensor names under 64 bytes; 1-4 dimensions;
 * a known ggml type whose block size divides the row; offsets that place the tensors one after the other in table
 * order, each padded to the alignment; and a file whose size is exactly the data section's end (the last tensor's
 * padding may be absent). Every violation is a GgufFormatError naming the file and the key or tensor.
 * `prefix` holds the first bytes of the file (at least the header); `fileSize` is the size of the whole file.
 * A prefix shorter than the header throws GgufHeaderIncomplete with the bytes needed.
 */
export function parseGgufHeader(prefix: Uint8Array, fileSize: number, file: string): GgufHeader {
  if (fileSize < 24) {
    if (prefix.length >= 4 && String.fromCharCode(...prefix.subarray(0, 4)) !== GGUF_MAGIC) {
      throw new GgufFormatError(file, 'does not start with "GGUF"; it is not a GGUF file');
    }
    throw new GgufFormatError(file, `truncated: ${fileSize} bytes is shorter than the 24-byte GGUF preamble; the file is not a complete GGUF file`);
  }
  const r = new ByteReader(prefix, fileSize, file);
  r.need(24, 'preamble');
  const magic = String.fromCharCode(...prefix.subarray(0, 4));
  r.position = 4;
  if (magic !== GGUF_MAGIC) throw new GgufFormatError(file, `starts with ${JSON.stringify(magic)}, not "GGUF"; it is not a GGUF file`);
  const version = r.u32('version');
  if (!GGUF_READABLE_VERSIONS.includes(version)) {
    throw new GgufFormatError(file, `is GGUF version ${version}; layerquant reads versions ${GGUF_READABLE_VERSIONS.join(' and ')} (${version === 1 ? 'convert it again with a current llama.cpp' : 'the file is corrupt or big-endian'})`);
  }
  // Each tensor info takes at least 8 + 1 + 4 + 8 + 4 + 8 bytes, each key/value pair at least 8 + 1 + 4 + 1.
  const tensorCount = r.size('tensor count', Math.floor((fileSize - 24) / 33));
  const kvCount = r.size('metadata count', Math.floor((fileSize - 24) / 14));
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string(`key of metadata entry ${i}`, true);
    if (key.length === 0) throw new GgufFormatError(file, `metadata entry ${i} has an empty key; the file is corrupt`);
    if (metadata.has(key)) throw new GgufFormatError(file, `metadata key "${key}" appears twice; the file is ambiguous and corrupt`);
    const type = valueType(r, file, key, 'type');
    if (type === 'ARRAY') {
      const itemType = valueType(r, file, key, 'array item type');
      if (itemType === 'ARRAY') throw new GgufFormatError(file, `metadata "${key}" is an array of arrays, which GGUF readers do not accept; the file is corrupt`);
      const itemBytes = itemType === 'STRING' ? 8 : SCALAR_BYTES[itemType];
      const count = r.size(`item count of "${key}"`, Math.floor((fileSize - r.position - 8) / itemBytes));
      const items: GgufScalar[] = new Array(count);
      for (let j = 0; j < count; j++) items[j] = readScalar(r, itemType, key, file);
      metadata.set(key, Object.freeze({ type: 'ARRAY', itemType, value: Object.freeze(items) }));
    } else {
      metadata.set(key, Object.freeze({ type, value: readScalar(r, type, key, file) }) as GgufValue);
    }
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const alignmentValue = metadata.get(GGUF_ALIGNMENT_KEY);
  if (alignmentValue !== undefined) {
    if (alignmentValue.type !== 'UINT32') throw new GgufFormatError(file, `metadata "${GGUF_ALIGNMENT_KEY}" is ${alignmentValue.type}; it must be UINT32`);
    alignment = alignmentValue.value;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) {
      throw new GgufFormatError(file, `metadata "${GGUF_ALIGNMENT_KEY}" is ${alignment}, not a power of 2; the file is corrupt`);
    }
  }
  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  const pending: Array<{ name: string; type: GgmlTypeInfo; dims: number[]; elements: number; offset: number; byteLength: number }> = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string(`name of tensor ${i}`, true);
    if (name.length === 0) throw new GgufFormatError(file, `tensor ${i} has an empty name; the file is corrupt`);
    if (utf8Bytes(name) > GGUF_MAX_TENSOR_NAME_BYTES) {
      throw new GgufFormatError(file, `the name has ${utf8Bytes(name)} bytes; ggml holds at most ${GGUF_MAX_TENSOR_NAME_BYTES}, the file is corrupt`, name);
    }
    if (names.has(name)) throw new GgufFormatError(file, 'the name appears twice in the tensor table; the file is ambiguous and corrupt', name);
    names.add(name);
    const dimCount = r.u32('dimension count', name);
    if (dimCount < 1 || dimCount > GGUF_MAX_DIMS) {
      throw new GgufFormatError(file, `has ${dimCount} dimensions; GGUF tensors have 1 to ${GGUF_MAX_DIMS}, the file is corrupt`, name);
    }
    const dims: number[] = [];
    let elements = 1;
    for (let d = 0; d < dimCount; d++) {
      const raw = r.u64(`dimension ${d}`, name);
      // ggml reads dimensions as int64; a negative one (top bit set) or one past 2^53 is corrupt.
      if (raw > MAX_SAFE) throw new GgufFormatError(file, `dimension ${d} is ${BigInt.asIntN(64, raw)}; dimensions are non-negative and below 2^53, the file is corrupt`, name);
      dims.push(Number(raw));
      elements *= Number(raw);
    }
    if (!Number.isSafeInteger(elements)) throw new GgufFormatError(file, `has ${dims.join(' x ')} elements, more than can be addressed; the file is corrupt`, name);
    const typeId = r.i32('type', name);
    const type = ggmlTypeById(typeId);
    if (!type) throw new GgufFormatError(file, `has ggml type ${typeId}, which llama.cpp does not define (or has removed); the file is corrupt or needs a newer reader`, name);
    if (dims[0]! % type.blockSize !== 0) {
      throw new GgufFormatError(file, `is ${type.name} with rows of ${dims[0]} values, not a multiple of its block size ${type.blockSize}; the file is corrupt`, name);
    }
    const byteLength = (elements / type.blockSize) * type.blockBytes;
    const offset = r.u64('data offset', name);
    if (offset > MAX_SAFE) throw new GgufFormatError(file, `data offset ${offset} is beyond 2^53; the file is corrupt`, name);
    pending.push({ name, type, dims, elements, offset: Number(offset), byteLength });
  }
  const headerBytes = r.position;
  const dataStart = tensorCount > 0 ? pad(headerBytes, alignment) : headerBytes;
  // llama.cpp places tensor i at the sum of the padded sizes of the tensors before it: no gap, overlap or reordering.
  let expected = 0;
  for (const t of pending) {
    if (t.offset !== expected) {
      const previous = tensors[tensors.length - 1];
      throw new GgufFormatError(
        file,
        `data offset is ${t.offset} but ${previous ? `"${previous.name}" ends (padded to ${alignment} bytes) at ${expected}` : 'the data section starts at 0'}; tensors lie one after the other in table order, the file is corrupt`,
        t.name,
      );
    }
    const byteOffset = dataStart + t.offset;
    if (byteOffset + t.byteLength > fileSize) {
      throw new GgufFormatError(file, `${t.type.name} [${t.dims.join(', ')}] needs ${t.byteLength} bytes at ${byteOffset} but the file ends at ${fileSize}; the file is truncated, download or export it again`, t.name);
    }
    tensors.push(Object.freeze({ name: t.name, type: t.type, dims: Object.freeze(t.dims), shape: Object.freeze([...t.dims].reverse()), elements: t.elements, offset: t.offset, byteOffset, byteLength: t.byteLength }));
    expected = t.offset + pad(t.byteLength, alignment);
  }
  const last = tensors[tensors.length - 1];
  const minimumEnd = last ? last.byteOffset + last.byteLength : headerBytes;
  const maximumEnd = last ? dataStart + expected : dataStart;
  if (fileSize > maximumEnd) {
    throw new GgufFormatError(file, `has ${fileSize - maximumEnd} bytes after the end of the data section (${maximumEnd}); the tensor table or the file is corrupt`, last?.name);
  }
  if (fileSize < minimumEnd) throw new GgufFormatError(file, `ends at ${fileSize}, before the header does (${minimumEnd}); the file is truncated`);
  return Object.freeze({ file, version, alignment, metadata, tensors: Object.freeze(tensors), headerBytes, dataStart, fileSize });
}

/** Parses a whole GGUF file held in memory (fetched in a browser, or a test's bytes). */
export function parseGgufBytes(bytes: Uint8Array, name = '<memory>'): { header: GgufHeader; raw(tensor: string): Uint8Array } {
  const header = parseGgufHeader(bytes, bytes.byteLength, name);
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  return {
    header,
    raw(tensor) {
      const info = byName.get(tensor);
      if (!info) throw new GgufFormatError(name, 'no such tensor in the file', tensor);
      return bytes.subarray(info.byteOffset, info.byteOffset + info.byteLength);
    },
  };
}
