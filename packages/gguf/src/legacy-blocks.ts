import { fitAffine, fitSymmetric } from './block-solvers.js';
import { halfTable, toHalfBits } from './half.js';

// ggml's legacy blocks of 32 values (layouts from ggml-common.h): Q8_0 (fp16 d, 32 int8; x = d q), Q4_0 (fp16 d,
// 16 bytes; x = d (q - 8), value j in the low nibble of byte j and value j + 16 in its high nibble), Q4_1 (fp16 d,
// fp16 m, 16 bytes; x = d q + m), Q5_0 / Q5_1 (as Q4, plus a 32-bit mask of the fifth bits: bit j for value j).
// The reference encoders follow ggml-quants.c's quantize_row_*_ref exactly, in float32 arithmetic (Math.fround at
// every step), so their bytes equal llama-quantize's without an imatrix. Under an importance vector the encoders
// search the scale (block-solvers.ts) instead, as llama.cpp's imatrix encoders do with their own weighting.

export const LEGACY_BLOCK = 32;
const f = Math.fround;

/** C's (int8_t) / (uint8_t) conversion of a float in range: truncation toward zero. */
const truncate = (v: number) => (v < 0 ? Math.ceil(v) : Math.floor(v));
/** C's roundf: half away from zero. */
const roundAway = (v: number) => (v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5));

function setHalf(out: Uint8Array, at: number, bits: number): void {
  out[at] = bits & 0xff;
  out[at + 1] = bits >> 8;
}

function getHalf(bytes: Uint8Array, at: number): number {
  return halfTable()[bytes[at]! | (bytes[at + 1]! << 8)]!;
}

/** The signed value of largest magnitude in a block (the first one on ties), as the symmetric ref encoders pick it. */
function signedAbsMax(x: Float32Array, start: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < LEGACY_BLOCK; j++) {
    const v = x[start + j]!;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

function minMax(x: Float32Array, start: number): [number, number] {
  let min = 3.4028234663852886e38;
  let max = -3.4028234663852886e38;
  for (let j = 0; j < LEGACY_BLOCK; j++) {
    const v = x[start + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

/** Packs 32 codes of 4 or 5 bits into `qs` (16 bytes) and, for 5 bits, the fifth bits into `qh` (4 bytes). */
function packNibbles(codes: ArrayLike<number>, out: Uint8Array, qsAt: number, qhAt: number | undefined): void {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const a = codes[j]!;
    const b = codes[j + 16]!;
    out[qsAt + j] = (a & 0x0f) | ((b & 0x0f) << 4);
    qh |= ((a >> 4) & 1) << j;
    qh |= ((b >> 4) & 1) << (j + 16);
  }
  if (qhAt !== undefined) {
    out[qhAt] = qh & 0xff;
    out[qhAt + 1] = (qh >>> 8) & 0xff;
    out[qhAt + 2] = (qh >>> 16) & 0xff;
    out[qhAt + 3] = (qh >>> 24) & 0xff;
  }
}

function unpackNibbles(bytes: Uint8Array, qsAt: number, qhAt: number | undefined, codes: Uint8Array): void {
  const qh = qhAt === undefined ? 0 : (bytes[qhAt]! | (bytes[qhAt + 1]! << 8) | (bytes[qhAt + 2]! << 16) | (bytes[qhAt + 3]! << 24)) >>> 0;
  for (let j = 0; j < 16; j++) {
    codes[j] = (bytes[qsAt + j]! & 0x0f) | (((qh >>> j) & 1) << 4);
    codes[j + 16] = (bytes[qsAt + j]! >> 4) | (((qh >>> (j + 16)) & 1) << 4);
  }
}

/** Layout of one legacy type: bytes per block, where d, m, qh and qs sit, the code range and whether it has a min. */
interface LegacyLayout {
  readonly bytes: number;
  readonly bits: 4 | 5 | 8;
  readonly hasMin: boolean;
}

export const LEGACY_LAYOUTS = Object.freeze({
  Q4_0: { bytes: 18, bits: 4, hasMin: false },
  Q4_1: { bytes: 20, bits: 4, hasMin: true },
  Q5_0: { bytes: 22, bits: 5, hasMin: false },
  Q5_1: { bytes: 24, bits: 5, hasMin: true },
  Q8_0: { bytes: 34, bits: 8, hasMin: false },
} satisfies Record<string, LegacyLayout>);
export type LegacyType = keyof typeof LEGACY_LAYOUTS;

/** Offsets of the parts of a block: fp16 d at 0, fp16 m at 2 (with a min), then qh (5 bits), then qs. */
function offsets(layout: LegacyLayout): { qh: number | undefined; qs: number } {
  const afterScales = layout.hasMin ? 4 : 2;
  return layout.bits === 5 ? { qh: afterScales, qs: afterScales + 4 } : { qh: undefined, qs: afterScales };
}

/** ggml-quants.c's quantize_row_{q4_0,q4_1,q5_0,q5_1,q8_0}_ref, byte for byte. */
export function encodeLegacyReference(type: LegacyType, x: Float32Array): Uint8Array {
  const layout = LEGACY_LAYOUTS[type];
  const blocks = x.length / LEGACY_BLOCK;
  const out = new Uint8Array(blocks * layout.bytes);
  const codes = new Uint8Array(LEGACY_BLOCK);
  const { qh, qs } = offsets(layout);
  for (let b = 0; b < blocks; b++) {
    const start = b * LEGACY_BLOCK;
    const at = b * layout.bytes;
    if (type === 'Q8_0') {
      let amax = 0;
      for (let j = 0; j < LEGACY_BLOCK; j++) amax = Math.max(amax, Math.abs(x[start + j]!));
      const d = f(amax / 127);
      const id = d ? f(1 / d) : 0;
      setHalf(out, at, toHalfBits(d));
      for (let j = 0; j < LEGACY_BLOCK; j++) out[at + 2 + j] = roundAway(f(x[start + j]! * id)) & 0xff;
      continue;
    }
    if (!layout.hasMin) {
      const half = layout.bits === 4 ? 8 : 16;
      const top = 2 * half - 1;
      const d = f(signedAbsMax(x, start) / -half);
      const id = d ? f(1 / d) : 0;
      setHalf(out, at, toHalfBits(d));
      for (let j = 0; j < LEGACY_BLOCK; j++) codes[j] = Math.min(top, truncate(f(f(x[start + j]! * id) + (half + 0.5))));
    } else {
      const top = (1 << layout.bits) - 1;
      const [min, max] = minMax(x, start);
      const d = f(f(max - min) / top);
      const id = d ? f(1 / d) : 0;
      setHalf(out, at, toHalfBits(d));
      setHalf(out, at + 2, toHalfBits(min));
      for (let j = 0; j < LEGACY_BLOCK; j++) {
        const v = truncate(f(f(f(x[start + j]! - min) * id) + 0.5));
        // Q4_1's ref clamps to 15; Q5_1's keeps the uint8 conversion as it is.
        codes[j] = layout.bits === 4 ? Math.min(top, v) : v & 0xff;
      }
    }
    packNibbles(codes, out, at + qs, qh === undefined ? undefined : at + qh);
  }
  return out;
}

/**
 * An importance-weighted encoder of our own for the legacy types: per block, the scale (and min) minimizing
 * sum w (x - xhat)^2 over a searched grid, stored in fp16, then every value rounded to its nearest level.
 */
export function encodeLegacyWeighted(type: LegacyType, values: Float32Array, rowLength: number, importance: Float32Array): Uint8Array {
  const layout = LEGACY_LAYOUTS[type];
  const blocks = values.length / LEGACY_BLOCK;
  const x = new Float64Array(LEGACY_BLOCK);
  const weights = new Float64Array(LEGACY_BLOCK);
  const out = new Uint8Array(blocks * layout.bytes);
  const codes = new Uint8Array(LEGACY_BLOCK);
  const { qh, qs } = offsets(layout);
  const table = halfTable();
  for (let b = 0; b < blocks; b++) {
    const column = (b * LEGACY_BLOCK) % rowLength;
    for (let j = 0; j < LEGACY_BLOCK; j++) {
      x[j] = values[b * LEGACY_BLOCK + j]!;
      weights[j] = importance[column + j]!;
    }
    const start = 0;
    const at = b * layout.bytes;
    if (layout.hasMin) {
      const top = (1 << layout.bits) - 1;
      const fit = fitAffine(x, weights, start, LEGACY_BLOCK, top, false);
      const dBits = toHalfBits(fit.scale);
      const mBits = toHalfBits(fit.offset);
      const d = table[dBits]!;
      const m = table[mBits]!;
      setHalf(out, at, dBits);
      setHalf(out, at + 2, mBits);
      for (let j = 0; j < LEGACY_BLOCK; j++) {
        const l = d > 0 ? Math.round((x[start + j]! - m) / d) : 0;
        codes[j] = l < 0 ? 0 : l > top ? top : l;
      }
    } else {
      const half = layout.bits === 8 ? 128 : 1 << (layout.bits - 1);
      const fit = fitSymmetric(x, weights, start, LEGACY_BLOCK, layout.bits === 8 ? -127 : -half, half - 1);
      const dBits = toHalfBits(fit.scale);
      const d = table[dBits]!;
      setHalf(out, at, dBits);
      for (let j = 0; j < LEGACY_BLOCK; j++) {
        let l = d !== 0 ? Math.round(x[start + j]! / d) : 0;
        l = l < -half ? -half : l > half - 1 ? half - 1 : l;
        if (layout.bits === 8) out[at + 2 + j] = l & 0xff;
        else codes[j] = l + half;
      }
      if (layout.bits === 8) continue;
    }
    packNibbles(codes, out, at + qs, qh === undefined ? undefined : at + qh);
  }
  return out;
}

/**
 * ggml-quants.c's dequantize_row_* for the legacy types: x = multiplier * code - offset as legacyFields reads them
 * (each value computed in float64, where the products are exact, and rounded once).
 */
export function decodeLegacy(type: LegacyType, bytes: Uint8Array, elements: number): Float32Array {
  const layout = LEGACY_LAYOUTS[type];
  const out = new Float32Array(elements);
  const codes = new Uint8Array(LEGACY_BLOCK);
  for (let b = 0; b < elements / LEGACY_BLOCK; b++) {
    const { multiplier, offset } = legacyFields(type, bytes, b * layout.bytes, codes);
    const start = b * LEGACY_BLOCK;
    for (let j = 0; j < LEGACY_BLOCK; j++) out[start + j] = multiplier * codes[j]! - offset;
  }
  return out;
}

/**
 * Writes one legacy block from given codes and fp16 bits of d (and m, for Q4_1 / Q5_1): the exact mapping of affine
 * checkpoints. Codes are as the block stores them: 0 .. 2^bits - 1 (Q8_0: -128 .. 127).
 */
export function writeLegacyBlock(type: LegacyType, out: Uint8Array, at: number, codes: ArrayLike<number>, dBits: number, mBits = 0): void {
  const layout = LEGACY_LAYOUTS[type];
  setHalf(out, at, dBits);
  if (type === 'Q8_0') {
    for (let j = 0; j < LEGACY_BLOCK; j++) out[at + 2 + j] = codes[j]! & 0xff;
    return;
  }
  if (layout.hasMin) setHalf(out, at + 2, mBits);
  const { qh, qs } = offsets(layout);
  packNibbles(codes, out, at + qs, qh === undefined ? undefined : at + qh);
}

/**
 * Reads block `at` as its 32 codes (0 .. 2^bits - 1; Q8_0's int8 shifted by 128) and the multiplier and offset with
 * x = multiplier * code - offset (d and d times the centre; Q4_1 / Q5_1: d and -m): decodeLegacy's values.
 */
export function legacyFields(type: LegacyType, bytes: Uint8Array, at: number, codes: Uint8Array): { multiplier: number; offset: number } {
  const layout = LEGACY_LAYOUTS[type];
  const d = getHalf(bytes, at);
  if (type === 'Q8_0') {
    for (let j = 0; j < LEGACY_BLOCK; j++) codes[j] = ((bytes[at + 2 + j]! << 24) >> 24) + 128;
  } else {
    const { qh, qs } = offsets(layout);
    unpackNibbles(bytes, at + qs, qh === undefined ? undefined : at + qh, codes);
  }
  return layout.hasMin ? { multiplier: d, offset: -getHalf(bytes, at + 2) } : { multiplier: d, offset: centreOf(type) * d };
}

/** The code a symmetric legacy block centres its values on (x = d (code - centre)); Q8_0's codes are int8 + 128. */
function centreOf(type: LegacyType): number {
  return type === 'Q8_0' ? 128 : 1 << (LEGACY_LAYOUTS[type].bits - 1);
}

/** Q8_0's signed codes of the block writeLegacyFields is writing (one call at a time). */
const SIGNED_CODES = new Int16Array(LEGACY_BLOCK);

/** Writes block `at` from codes, multiplier and offset as legacyFields reads them; false where they are not such a block's. */
export function writeLegacyFields(type: LegacyType, out: Uint8Array, at: number, codes: Uint8Array, multiplier: number, offset: number): boolean {
  const layout = LEGACY_LAYOUTS[type];
  const table = halfTable();
  const dBits = toHalfBits(multiplier);
  if (table[dBits] !== multiplier) return false;
  if (layout.hasMin) {
    const mBits = toHalfBits(-offset);
    if (table[mBits] !== -offset) return false;
    writeLegacyBlock(type, out, at, codes, dBits, mBits);
    return true;
  }
  if (offset !== centreOf(type) * multiplier) return false;
  if (type === 'Q8_0') {
    for (let j = 0; j < LEGACY_BLOCK; j++) SIGNED_CODES[j] = codes[j]! - 128;
    writeLegacyBlock(type, out, at, SIGNED_CODES, dBits);
  } else {
    writeLegacyBlock(type, out, at, codes, dBits);
  }
  return true;
}
