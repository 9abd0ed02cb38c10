import { DTYPE_BYTES, type DType } from '@layerquant/core';

export const READABLE_DTYPES: readonly DType[] = Object.freeze(['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL']);

export function isDType(value: string): value is DType {
  return Object.prototype.hasOwnProperty.call(DTYPE_BYTES, value);
}

/** Exact: a bfloat16 is the top half of a float32. */
export function bf16BitsToFloat32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16;
  return new Float32Array(out.buffer);
}

let f16Table: Float32Array | undefined;

/** All 65536 half-precision values as float32 (exact, subnormals and infinities included). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) table[h] = sign * mantissa * 2 ** -24;
    else if (exponent === 31) table[h] = mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else table[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  f16Table = table;
  return table;
}

export function f16BitsToFloat32(bits: Uint16Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}

/** float32 -> bfloat16 bits, round to nearest even (as torch does); NaN stays NaN. */
export function float32ToBf16Bits(values: Float32Array): Uint16Array {
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = u32[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x007fffff) !== 0) {
      out[i] = (x >>> 16) | 0x0040; // quiet NaN
      continue;
    }
    const roundingBias = 0x7fff + ((x >>> 16) & 1);
    out[i] = ((x + roundingBias) >>> 16) & 0xffff;
  }
  return out;
}

/** The IEEE half bits of one float32 given by its bits: round to nearest even, overflow to infinity, subnormals exact. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mantissa & ((1 << shift) - 1);
    let value = mantissa >>> shift;
    if (rest > half || (rest === half && (value & 1))) value++;
    return sign | value;
  }
  let value = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (value & 1))) value++; // may carry into the exponent: correct
  return sign | value;
}

/** float32 -> IEEE half bits, round to nearest even, overflow to infinity, subnormals exact. */
export function float32ToF16Bits(values: Float32Array): Uint16Array {
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32BitsToF16Bits(u32[i]!);
  return out;
}

/** Decodes raw little-endian bytes of a dtype into float32 (exact for F32/F16/BF16 and small ints). */
export function decodeToFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const { buffer, byteOffset, byteLength } = aligned;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buffer.slice(byteOffset, byteOffset + byteLength));
    case 'F64':
      return Float32Array.from(new Float64Array(buffer, byteOffset, byteLength / 8));
    case 'BF16':
      return bf16BitsToFloat32(new Uint16Array(buffer, byteOffset, byteLength / 2));
    case 'F16':
      return f16BitsToFloat32(new Uint16Array(buffer, byteOffset, byteLength / 2));
    case 'I64': {
      const v = new BigInt64Array(buffer, byteOffset, byteLength / 8);
      const out = new Float32Array(v.length);
      for (let i = 0; i < v.length; i++) out[i] = Number(v[i]);
      return out;
    }
    case 'I32':
      return Float32Array.from(new Int32Array(buffer, byteOffset, byteLength / 4));
    case 'I16':
      return Float32Array.from(new Int16Array(buffer, byteOffset, byteLength / 2));
    case 'I8':
      return Float32Array.from(new Int8Array(buffer, byteOffset, byteLength));
    case 'U8':
    case 'BOOL':
      return Float32Array.from(new Uint8Array(buffer, byteOffset, byteLength));
  }
}

export type TensorData =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint32Array
  | BigInt64Array;

/**
 * Bytes to store `data` as `dtype`. A Float32Array is converted to F16/BF16 (round to nearest even);
 * a Uint8Array is taken as the raw bytes; other typed arrays must already match the dtype's width.
 */
export function encodeTensorData(dtype: DType, data: TensorData): Uint8Array {
  if (data instanceof Uint8Array && dtype !== 'U8' && dtype !== 'BOOL' && dtype !== 'I8') {
    return data; // raw bytes
  }
  if (data instanceof Float32Array) {
    if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (dtype === 'BF16') return new Uint8Array(float32ToBf16Bits(data).buffer);
    if (dtype === 'F16') return new Uint8Array(float32ToF16Bits(data).buffer);
    if (dtype === 'F64') return new Uint8Array(Float64Array.from(data).buffer);
  }
  if (data.BYTES_PER_ELEMENT !== DTYPE_BYTES[dtype]) {
    throw new TypeError(`a ${data.constructor.name} cannot be stored as ${dtype}`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
