import { NonFiniteWeightError, type DType } from '@layerquant/core';

/**
 * The first NaN or infinity in raw little-endian tensor bytes (its flat index and value), or undefined. Reads the exponent bits in place
 * (one pass, no decoded copy); integer dtypes have no such values.
 */
export function firstNonFinite(bytes: Uint8Array, dtype: DType): { index: number; value: string } | undefined {
  const width = dtype === 'F64' ? 8 : dtype === 'F32' ? 4 : dtype === 'F16' || dtype === 'BF16' ? 2 : 0;
  if (width === 0) return undefined;
  const count = Math.floor(bytes.byteLength / width);
  const aligned = bytes.byteOffset % width === 0;
  const source = aligned ? bytes : bytes.slice();
  const at = (index: number, bits: number, mantissaMask: number, signMask: number) => ({
    index,
    value: (bits & mantissaMask) !== 0 ? 'NaN' : (bits & signMask) !== 0 ? '-Infinity' : 'Infinity',
  });
  switch (dtype) {
    case 'BF16':
    case 'F16': {
      const mask = dtype === 'BF16' ? 0x7f80 : 0x7c00;
      const words = new Uint16Array(source.buffer, source.byteOffset, count);
      for (let i = 0; i < count; i++) {
        if ((words[i]! & mask) === mask) return at(i, words[i]!, dtype === 'BF16' ? 0x007f : 0x03ff, 0x8000);
      }
      return undefined;
    }
    case 'F32': {
      const words = new Uint32Array(source.buffer, source.byteOffset, count);
      for (let i = 0; i < count; i++) {
        if ((words[i]! & 0x7f800000) === 0x7f800000) return at(i, words[i]!, 0x007fffff, 0x80000000);
      }
      return undefined;
    }
    default: {
      const values = new Float64Array(source.buffer, source.byteOffset, count);
      for (let i = 0; i < count; i++) {
        // Weights are computed on in float32: a finite F64 beyond its range becomes an infinity too.
        const v = values[i]!;
        const single = Math.fround(v);
        if (single !== single || single === Infinity || single === -Infinity) return { index: i, value: Number.isFinite(v) ? `${v} (beyond float32)` : String(v) };
      }
      return undefined;
    }
  }
}

/** Throws NonFiniteWeightError naming the tensor, the first bad flat index and its row/column. */
export function checkFinite(tensor: string, file: string, dtype: DType, shape: readonly number[], bytes: Uint8Array): void {
  const bad = firstNonFinite(bytes, dtype);
  if (bad) throw new NonFiniteWeightError(tensor, file, bad.index, bad.value, shape);
}
