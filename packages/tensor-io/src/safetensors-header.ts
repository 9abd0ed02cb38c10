import { DTYPE_BYTES, SafetensorsFormatError, UnsupportedDTypeError, elementCount, type DType } from '@layerquant/core';
import { READABLE_DTYPES, isDType } from './dtype.js';

// The safetensors header format, without file access (browser-safe): the Node reader and a page share it.

/** Where a tensor lives: `byteOffset` is absolute in `file`. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly file: string;
  readonly byteOffset: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  readonly file: string;
  /** Bytes before the data section: 8 + header length. */
  readonly dataStart: number;
  readonly tensors: readonly TensorInfo[];
  readonly metadata: Readonly<Record<string, string>>;
}

/** Largest header the reader accepts (the format's own limit, as the reference implementation enforces). */
export const MAX_HEADER_BYTES = 100_000_000;
/**
 * Deepest JSON nesting accepted in a header. A valid header needs 3 (header, tensor entry, shape); the reference
 * parser (serde_json) stops at 128. A bound keeps a hostile header from exhausting the stack.
 */
const MAX_HEADER_DEPTH = 64;

const PLAIN_INTEGER = /^(?:0|-?[1-9][0-9]*)$/;

/**
 * One pass over the raw header text before JSON.parse, for what JSON.parse cannot report: duplicate keys (it keeps
 * the last one silently), nesting too deep, and numbers that are not exact integers (a fraction, an exponent, or
 * beyond 2^53 would be rounded to a different integer). Every number in a safetensors header is an unsigned size.
 * Malformed JSON is left to JSON.parse; this pass only has to terminate and throw typed errors.
 */
function scanHeaderText(text: string, file: string): void {
  // One frame per open object (a set of its keys) or array (null).
  const frames: Array<Set<string> | null> = [];
  let expectKey = false;
  let topKey: string | undefined;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < n && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (j >= n) return; // unterminated string: JSON.parse reports it
      const frame = frames[frames.length - 1];
      if (expectKey && frame) {
        let key: string;
        try {
          key = JSON.parse(text.slice(i, j + 1)) as string;
        } catch {
          return; // bad escape: JSON.parse reports it
        }
        if (frame.has(key)) {
          const where = frames.length === 1 ? undefined : topKey;
          throw new SafetensorsFormatError(file, `key "${key}" appears twice in the header${where ? ` entry "${where}"` : ''}; a JSON reader keeps only one of them, so the file is ambiguous and corrupt`, frames.length === 1 && key !== '__metadata__' ? key : where);
        }
        frame.add(key);
        if (frames.length === 1) topKey = key;
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      frames.push(c === 0x7b ? new Set() : null);
      if (frames.length > MAX_HEADER_DEPTH) {
        throw new SafetensorsFormatError(file, `header JSON is nested more than ${MAX_HEADER_DEPTH} levels deep; a safetensors header needs 3, the file is corrupt`, frames.length > 1 ? topKey : undefined);
      }
      expectKey = c === 0x7b;
      i++;
      continue;
    }
    if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      frames.pop();
      expectKey = false;
      i++;
      continue;
    }
    if (c === 0x2c /* , */) {
      expectKey = frames[frames.length - 1] != null;
      i++;
      continue;
    }
    if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < n && /[0-9eE.+-]/.test(text[j]!)) j++;
      const literal = text.slice(i, j);
      if (!PLAIN_INTEGER.test(literal)) {
        throw new SafetensorsFormatError(file, `number ${literal} in the header is not an integer; shapes and data_offsets are unsigned integers`, frames.length > 1 ? topKey : undefined);
      }
      if (!Number.isSafeInteger(Number(literal))) {
        throw new SafetensorsFormatError(file, `number ${literal} in the header is beyond 2^53 and cannot be read exactly; the header is corrupt`, frames.length > 1 ? topKey : undefined);
      }
      i = j;
      continue;
    }
    i++;
  }
}

const DESCRIBE_LIMIT = 60;
function describe(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > DESCRIBE_LIMIT ? `${text.slice(0, DESCRIBE_LIMIT)}...` : text;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isSize(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Parses and validates a safetensors header by the format's own rules (those of huggingface/safetensors):
 * the header length fits the file and the header is UTF-8 JSON of exactly that length (trailing spaces allowed);
 * no key twice; `__metadata__` maps strings to strings; every tensor has a known dtype, a shape of non-negative
 * integers and data_offsets whose span is exactly shape x dtype bytes; sorted by offset, the tensors cover the
 * data section from 0 to its end with no hole, no overlap and no trailing byte. `fileSize` is the size of the
 * whole file. Every violation is a SafetensorsFormatError (UnsupportedDTypeError for a dtype layerquant does
 * not read) naming the file and the tensor.
 */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  if (fileSize < 8 || prefix.length < 8) {
    throw new SafetensorsFormatError(file, `truncated: ${fileSize} bytes is shorter than the 8-byte header length; the file is not a complete safetensors file, download it again`);
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const rawLength = view.getBigUint64(0, true);
  if (rawLength > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsFormatError(file, `header length ${rawLength} is larger than the format's limit of ${MAX_HEADER_BYTES} bytes; this is not a safetensors file`);
  }
  const headerLength = Number(rawLength);
  if (headerLength < 2) {
    throw new SafetensorsFormatError(file, `header length ${headerLength} is too small for a JSON object; the file is corrupt`);
  }
  if (8 + headerLength > fileSize) {
    throw new SafetensorsFormatError(file, `header length ${headerLength} runs past the end of the file (${fileSize} bytes); the file is truncated, download it again`);
  }
  if (prefix.length < 8 + headerLength) throw new RangeError('prefix shorter than the header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(8, 8 + headerLength));
  } catch (error) {
    throw new SafetensorsFormatError(file, 'header is not valid UTF-8; the file is corrupt or not a safetensors file', undefined, { cause: error });
  }
  scanHeaderText(text, file);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new SafetensorsFormatError(
      file,
      `header is not valid JSON of exactly the ${headerLength} bytes the header length gives; the file is corrupt or not a safetensors file`,
      undefined,
      { cause: error },
    );
  }
  if (!isPlainObject(json)) throw new SafetensorsFormatError(file, 'header is not a JSON object');
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const tensors: TensorInfo[] = [];
  const begins = new Map<TensorInfo, number>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (entry === null) continue; // the reference reader takes null as "no metadata"
      if (!isPlainObject(entry)) throw new SafetensorsFormatError(file, `__metadata__ must be an object of string values, got ${describe(entry)}`);
      for (const [key, value] of Object.entries(entry)) {
        if (typeof value !== 'string') {
          throw new SafetensorsFormatError(file, `__metadata__["${key}"] is ${describe(value)}; metadata values must be strings`);
        }
      }
      metadata = { ...(entry as Record<string, string>) };
      continue;
    }
    if (!isPlainObject(entry) || !('dtype' in entry) || !('shape' in entry) || !('data_offsets' in entry)) {
      throw new SafetensorsFormatError(file, 'entry needs dtype, shape and data_offsets', name);
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string') throw new SafetensorsFormatError(file, `dtype ${describe(dtype)} is not a string`, name);
    if (!isDType(dtype)) throw new UnsupportedDTypeError(file, name, dtype, READABLE_DTYPES);
    if (!Array.isArray(shape) || !shape.every(isSize)) {
      throw new SafetensorsFormatError(file, `shape ${describe(shape)} is not a list of non-negative integers`, name);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !isSize(offsets[0]) || !isSize(offsets[1]) || offsets[1] < offsets[0]) {
      throw new SafetensorsFormatError(file, `data_offsets ${describe(offsets)} must be two non-negative integers [begin, end] with begin <= end`, name);
    }
    const [begin, end] = offsets as [number, number];
    let elements = 1;
    for (const d of shape) elements *= d;
    const expected = elements * DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(expected)) {
      throw new SafetensorsFormatError(file, `shape ${describe(shape)} of ${dtype} has more bytes than can be addressed; the header is corrupt`, name);
    }
    const byteLength = end - begin;
    if (byteLength !== expected) {
      throw new SafetensorsFormatError(file, `shape ${JSON.stringify(shape)} of ${dtype} needs ${expected} bytes but data_offsets span ${byteLength}; the header is corrupt`, name);
    }
    if (end > dataSize) {
      throw new SafetensorsFormatError(file, `data_offsets end ${end} runs past the data section (${dataSize} bytes); the file is truncated, download it again`, name);
    }
    const info: TensorInfo = { name, dtype, shape: Object.freeze([...shape]), file, byteOffset: dataStart + begin, byteLength };
    tensors.push(info);
    begins.set(info, begin);
  }
  // Sorted by (begin, end), the tensors must tile the data section exactly: a zero-length tensor cannot hide an
  // overlap, and a header length that is a few bytes off shows up as a hole or trailing bytes.
  const sorted = [...tensors].sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  let cursor = 0;
  let previous: TensorInfo | undefined;
  for (const t of sorted) {
    const begin = begins.get(t)!;
    if (begin < cursor) {
      throw new SafetensorsFormatError(file, `data_offsets [${begin}, ${begin + t.byteLength}] overlap those of "${previous!.name}" (which end at ${cursor}); the header is corrupt`, t.name);
    }
    if (begin > cursor) {
      throw new SafetensorsFormatError(
        file,
        `data_offsets start at ${begin} but ${previous ? `"${previous.name}" ends` : 'the data section starts'} at ${cursor}: ${begin - cursor} bytes of the data belong to no tensor; the header is corrupt`,
        t.name,
      );
    }
    cursor = begin + t.byteLength;
    previous = t;
  }
  if (cursor !== dataSize) {
    throw new SafetensorsFormatError(
      file,
      `the tensors end at data byte ${cursor} but the data section has ${dataSize} bytes (${dataSize - cursor} trailing bytes); the header length or the data_offsets are wrong, the file is corrupt`,
      previous?.name,
    );
  }
  return Object.freeze({ file, dataStart, tensors: Object.freeze(tensors), metadata: Object.freeze(metadata) });
}

/** Parses a whole safetensors file held in memory (e.g. fetched in a browser). */
export function parseSafetensorsBytes(bytes: Uint8Array, name = '<memory>'): { header: SafetensorsHeader; raw(tensor: string): Uint8Array } {
  const header = parseSafetensorsHeader(bytes, bytes.byteLength, name);
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  return {
    header,
    raw(tensor) {
      const info = byName.get(tensor);
      if (!info) throw new SafetensorsFormatError(name, 'no such tensor', tensor);
      return bytes.subarray(info.byteOffset, info.byteOffset + info.byteLength);
    },
  };
}
