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

/** Largest header the reader accepts (the format's own limit is 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/**
 * Parses and validates a safetensors header. `fileSize` is the size of the whole file: offsets that run past the
 * data, overlap, or disagree with shape x dtype are errors naming the file and tensor.
 */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  if (fileSize < 8 || prefix.length < 8) {
    throw new SafetensorsFormatError(file, `truncated: ${fileSize} bytes is shorter than the 8-byte header length; the file is not a complete safetensors file, download it again`);
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES) {
    throw new SafetensorsFormatError(file, `header length ${headerLength} is implausibly large; this is not a safetensors file`);
  }
  if (8 + headerLength > fileSize) {
    throw new SafetensorsFormatError(file, `header length ${headerLength} runs past the end of the file (${fileSize} bytes); the file is truncated, download it again`);
  }
  if (prefix.length < 8 + headerLength) throw new RangeError('prefix shorter than the header');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(8, 8 + headerLength)));
  } catch (error) {
    throw new SafetensorsFormatError(file, 'header is not valid JSON; the file is corrupt or not a safetensors file', undefined, { cause: error });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SafetensorsFormatError(file, 'header is not a JSON object');
  }
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const tensors: TensorInfo[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null) throw new SafetensorsFormatError(file, '__metadata__ is not an object of strings');
      metadata = Object.fromEntries(Object.entries(entry).map(([k, v]) => [k, String(v)]));
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null || typeof e.dtype !== 'string' || !Array.isArray(e.shape) || !Array.isArray(e.data_offsets)) {
      throw new SafetensorsFormatError(file, 'entry needs dtype, shape and data_offsets', name);
    }
    if (!isDType(e.dtype)) throw new UnsupportedDTypeError(file, name, e.dtype, READABLE_DTYPES);
    const shape = e.shape as unknown[];
    if (!shape.every((d) => Number.isInteger(d) && (d as number) >= 0)) {
      throw new SafetensorsFormatError(file, `shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
    }
    const [begin, end] = e.data_offsets as unknown[];
    if (e.data_offsets.length !== 2 || !Number.isInteger(begin) || !Number.isInteger(end) || (begin as number) < 0 || (end as number) < (begin as number)) {
      throw new SafetensorsFormatError(file, `data_offsets ${JSON.stringify(e.data_offsets)} must be two integers [begin, end] with begin <= end`, name);
    }
    const byteLength = (end as number) - (begin as number);
    const expected = elementCount(shape as number[]) * DTYPE_BYTES[e.dtype];
    if (byteLength !== expected) {
      throw new SafetensorsFormatError(file, `shape ${JSON.stringify(shape)} of ${e.dtype} needs ${expected} bytes but data_offsets span ${byteLength}; the header is corrupt`, name);
    }
    if ((end as number) > dataSize) {
      throw new SafetensorsFormatError(file, `data_offsets end ${end as number} runs past the data section (${dataSize} bytes); the file is truncated, download it again`, name);
    }
    tensors.push({ name, dtype: e.dtype, shape: Object.freeze([...(shape as number[])]), file, byteOffset: dataStart + (begin as number), byteLength });
  }
  const sorted = [...tensors].sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1]!;
    const current = sorted[i]!;
    if (current.byteOffset < previous.byteOffset + previous.byteLength && current.byteLength > 0 && previous.byteLength > 0) {
      throw new SafetensorsFormatError(file, `data_offsets overlap those of "${previous.name}"; the header is corrupt`, current.name);
    }
  }
  return Object.freeze({ file, dataStart, tensors: Object.freeze(tensors), metadata: Object.freeze(metadata) });
}

/** Parses a whole safetensors file held in memory (e.g. fetched in a browser). */
export function parseSafetensorsBytes(bytes: Uint8Array, name = '<memory>'): { header: SafetensorsHeader; raw(tensor: string): Uint8Array } {
  const header = parseSafetensorsHeader(bytes, bytes.byteLength, name);
  return {
    header,
    raw(tensor) {
      const info = header.tensors.find((t) => t.name === tensor);
      if (!info) throw new SafetensorsFormatError(name, 'no such tensor', tensor);
      return bytes.subarray(info.byteOffset, info.byteOffset + info.byteLength);
    },
  };
}
