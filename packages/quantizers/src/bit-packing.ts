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

/** Bits a row takes when each column has its own width. */
function rowBits(columnBits: Uint8Array): number {
  let total = 0;
  for (const b of columnBits) total += b;
  return total;
}

/**
 * Packs row-major codes whose columns have different widths (`columnBits`, 0 to 8): each row one bitstream, codes in
 * column order, least significant bits first (a code may span two words), padded to `stride` words per row.
 */
export function packColumnCodes(codes: Uint8Array, rows: number, columns: number, columnBits: Uint8Array, stride: number): Uint32Array {
  if (rowBits(columnBits) > 32 * stride) throw new RangeError(`columns of ${rowBits(columnBits)} bits do not fit rows of ${stride} words`);
  const packed = new Uint32Array(rows * stride);
  for (let r = 0; r < rows; r++) {
    let bit = r * stride * 32;
    for (let c = 0; c < columns; c++) {
      const width = columnBits[c]!;
      if (width === 0) continue;
      const code = codes[r * columns + c]!;
      const word = bit >>> 5;
      const shift = bit & 31;
      packed[word] = (packed[word]! | (code << shift)) >>> 0;
      if (shift + width > 32) packed[word + 1] = (packed[word + 1]! | (code >>> (32 - shift))) >>> 0;
      bit += width;
    }
  }
  return packed;
}

/** Inverse of packColumnCodes. */
export function unpackColumnCodes(packed: Uint32Array, rows: number, columns: number, columnBits: Uint8Array, stride: number): Uint8Array {
  if (columnBits.length !== columns) throw new InvalidDataError('column widths', `${columnBits.length} widths for ${columns} columns`);
  if (packed.length !== rows * stride || rowBits(columnBits) > 32 * stride) {
    throw new InvalidDataError('packed codes', `${packed.length} words do not hold ${rows} rows of ${rowBits(columnBits)} bits in ${stride} words each`);
  }
  const codes = new Uint8Array(rows * columns);
  for (let r = 0; r < rows; r++) {
    let bit = r * stride * 32;
    for (let c = 0; c < columns; c++) {
      const width = columnBits[c]!;
      if (width === 0) continue;
      const word = bit >>> 5;
      const shift = bit & 31;
      let value = packed[word]! >>> shift;
      if (shift + width > 32) value |= packed[word + 1]! << (32 - shift);
      codes[r * columns + c] = value & ((1 << width) - 1);
      bit += width;
    }
  }
  return codes;
}
