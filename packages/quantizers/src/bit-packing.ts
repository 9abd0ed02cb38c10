import { InvalidDataError } from '@layerquant/core';

/**
 * Packing of integer codes into 32-bit words, row by row: `floor(32 / bits)` codes per word, least significant bits
 * first, every row padded to whole words (so 3-bit stores 10 codes per word and 5-bit 6, as HQQ's 3bit_32 does).
 */
export const PACKING = 'rows-u32-lsb';

/** Codes per 32-bit word at `bits` bits. */
export function codesPerWord(bits: number): number {
  return Math.floor(32 / bits);
}

/** 32-bit words one row of `columns` codes takes. */
export function wordsPerRow(columns: number, bits: number): number {
  return Math.ceil(columns / codesPerWord(bits));
}

/** Packs row-major codes of a [rows, columns] matrix. Codes must already be in [0, 2^bits). */
export function packCodes(codes: Uint8Array, rows: number, columns: number, bits: number): Uint32Array {
  const perWord = codesPerWord(bits);
  const stride = wordsPerRow(columns, bits);
  const packed = new Uint32Array(rows * stride);
  if (bits === 8 && columns % 4 === 0) {
    // little-endian bytes are already this layout
    new Uint8Array(packed.buffer).set(codes);
    return packed;
  }
  for (let r = 0; r < rows; r++) {
    let source = r * columns;
    const rowEnd = source + columns;
    for (let word = r * stride; source < rowEnd; word++) {
      let value = 0;
      const end = Math.min(source + perWord, rowEnd);
      for (let shift = 0; source < end; source++, shift += bits) value |= codes[source]! << shift;
      packed[word] = value >>> 0;
    }
  }
  return packed;
}

/** Inverse of packCodes. */
export function unpackCodes(packed: Uint32Array, rows: number, columns: number, bits: number): Uint8Array {
  const perWord = codesPerWord(bits);
  const stride = wordsPerRow(columns, bits);
  if (packed.length !== rows * stride) {
    throw new InvalidDataError('packed codes', `${packed.length} words for a [${rows}, ${columns}] matrix at ${bits} bits; expected ${rows * stride}`);
  }
  const codes = new Uint8Array(rows * columns);
  if (bits === 8 && columns % 4 === 0) {
    codes.set(new Uint8Array(packed.buffer, packed.byteOffset, codes.length));
    return codes;
  }
  const mask = (1 << bits) - 1;
  for (let r = 0; r < rows; r++) {
    let target = r * columns;
    const rowEnd = target + columns;
    for (let word = r * stride; target < rowEnd; word++) {
      let value = packed[word]!;
      const end = Math.min(target + perWord, rowEnd);
      for (; target < end; target++, value >>>= bits) codes[target] = value & mask;
    }
  }
  return codes;
}
