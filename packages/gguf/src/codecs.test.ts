import { seededNormal } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { decodeGgml, encodeGgml } from './codecs.js';
import { GGML_CODEC_TYPES, ggmlBitsPerWeight, ggufTensorBytes, type GgmlTypeName } from './ggml-types.js';

// ---- an independent float64 decoder, written from the block layouts of ggml-common.h --------------------------------

/** IEEE half from its two little-endian bytes, in float64 (subnormals included). */
function half(bytes: Uint8Array, at: number): number {
  const h = bytes[at]! + 256 * bytes[at + 1]!;
  const sign = h >= 0x8000 ? -1 : 1;
  const exponent = Math.floor(h / 1024) % 32;
  const mantissa = h % 1024;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
const bit = (byte: number, i: number) => Math.floor(byte / 2 ** i) % 2;
const bitsOf = (byte: number, from: number, count: number) => Math.floor(byte / 2 ** from) % 2 ** count;
const int8 = (byte: number) => (byte >= 128 ? byte - 256 : byte);

/** Value e (0..31) of a legacy block: the j-th byte holds values j (low nibble) and j + 16 (high nibble). */
function nibble(bytes: Uint8Array, qs: number, e: number): number {
  return e < 16 ? bitsOf(bytes[qs + e]!, 0, 4) : bitsOf(bytes[qs + e - 16]!, 4, 4);
}

function oracleDecode(type: GgmlTypeName, bytes: Uint8Array, n: number): Float64Array {
  const out = new Float64Array(n);
  const blockBytes = ggufTensorBytes(type, [type.endsWith('_K') ? 256 : type.startsWith('Q') ? 32 : 1]);
  const blockSize = type.endsWith('_K') ? 256 : type.startsWith('Q') ? 32 : 1;
  for (let b = 0; b < n / blockSize; b++) {
    const at = b * blockBytes;
    for (let e = 0; e < blockSize; e++) {
      let v: number;
      switch (type) {
        case 'F32': v = new DataView(bytes.buffer, bytes.byteOffset).getFloat32(at, true); break;
        case 'F16': v = half(bytes, at); break;
        case 'BF16': v = new DataView(new Uint8Array([0, 0, bytes[at]!, bytes[at + 1]!]).buffer).getFloat32(0, true); break;
        case 'Q8_0': v = half(bytes, at) * int8(bytes[at + 2 + e]!); break;
        case 'Q4_0': v = half(bytes, at) * (nibble(bytes, at + 2, e) - 8); break;
        case 'Q4_1': v = half(bytes, at) * nibble(bytes, at + 4, e) + half(bytes, at + 2); break;
        case 'Q5_0': v = half(bytes, at) * (nibble(bytes, at + 6, e) + 16 * bit(bytes[at + 2 + Math.floor(e / 8)]!, e % 8) - 16); break;
        case 'Q5_1': v = half(bytes, at) * (nibble(bytes, at + 8, e) + 16 * bit(bytes[at + 4 + Math.floor(e / 8)]!, e % 8)) + half(bytes, at + 2); break;
        case 'Q2_K': {
          // scales[16] qs[64] d dmin; sub-block e/16; 2-bit value in byte (e/128)*32 + e%32 at bits 2*((e%128)/32).
          const sc = bytes[at + Math.floor(e / 16)]!;
          const q = bitsOf(bytes[at + 16 + 32 * Math.floor(e / 128) + (e % 32)]!, 2 * Math.floor((e % 128) / 32), 2);
          v = half(bytes, at + 80) * bitsOf(sc, 0, 4) * q - half(bytes, at + 82) * bitsOf(sc, 4, 4);
          break;
        }
        case 'Q3_K': {
          // hmask[32] qs[64] scales[12] d; 6-bit scale j: low 4 bits in scales[j % 8] (nibble j / 8), high 2 bits in
          // scales[8 + j % 4] at bits 2 * (j / 4).
          const j = Math.floor(e / 16);
          const scale = bitsOf(bytes[at + 96 + (j % 8)]!, 4 * Math.floor(j / 8), 4) + 16 * bitsOf(bytes[at + 96 + 8 + (j % 4)]!, 2 * Math.floor(j / 4), 2) - 32;
          const low = bitsOf(bytes[at + 32 + 32 * Math.floor(e / 128) + (e % 32)]!, 2 * Math.floor((e % 128) / 32), 2);
          const high = bit(bytes[at + (e % 32)]!, Math.floor(e / 32));
          v = half(bytes, at + 108) * scale * (low + 4 * high - 4);
          break;
        }
        case 'Q4_K':
        case 'Q5_K': {
          // d dmin scales[12] [qh[32]] qs[128]; sub-block j = e/32 of 8; 6-bit scale and min: for j < 4 the low 6
          // bits of bytes j and j + 4; for j >= 4 the nibbles of byte j + 4 plus the top 2 bits of bytes j - 4 and j.
          const j = Math.floor(e / 32);
          const s = (k: number) => bytes[at + 4 + k]!;
          const scale = j < 4 ? bitsOf(s(j), 0, 6) : bitsOf(s(j + 4), 0, 4) + 16 * bitsOf(s(j - 4), 6, 2);
          const min = j < 4 ? bitsOf(s(j + 4), 0, 6) : bitsOf(s(j + 4), 4, 4) + 16 * bitsOf(s(j), 6, 2);
          const chunk = Math.floor(e / 64);
          const upper = e % 64 >= 32;
          const qs = type === 'Q4_K' ? 16 : 48;
          let q = bitsOf(bytes[at + qs + 32 * chunk + (e % 32)]!, upper ? 4 : 0, 4);
          if (type === 'Q5_K') q += 16 * bit(bytes[at + 16 + (e % 32)]!, 2 * chunk + (upper ? 1 : 0));
          v = half(bytes, at) * scale * q - half(bytes, at + 2) * min;
          break;
        }
        case 'Q6_K': {
          // ql[128] qh[64] scales[16] d; in each half of 128 values, quarter k = (e%128)/32: low 4 bits in
          // ql[64h + e%32 + 32*(k%2)] (high nibble for k >= 2), top 2 bits in qh[32h + e%32] at bits 2k.
          const h = Math.floor(e / 128);
          const k = Math.floor((e % 128) / 32);
          const low = bitsOf(bytes[at + 64 * h + (e % 32) + 32 * (k % 2)]!, k >= 2 ? 4 : 0, 4);
          const high = bitsOf(bytes[at + 128 + 32 * h + (e % 32)]!, 2 * k, 2);
          v = half(bytes, at + 208) * int8(bytes[at + 192 + Math.floor(e / 16)]!) * (low + 16 * high - 32);
          break;
        }
      }
      out[b * blockSize + e] = v;
    }
  }
  return out;
}

// ---- data ----------------------------------------------------------------------------------------------------------

/** Rows of 512 values with what real weights have: varied scales, offsets, outliers, zeros, constant runs. */
function testMatrix(rows: number, seed: number): Float32Array {
  const random = seededNormal(seed);
  const x = new Float32Array(rows * 512);
  for (let i = 0; i < x.length; i++) {
    const row = Math.floor(i / 512);
    x[i] = random() * 0.02 * (1 + (row % 5)) + (row % 3 === 0 ? 0.01 : 0) + (i % 211 === 0 ? 0.3 * random() : 0);
  }
  x.fill(0, 512, 1024); // a zero row
  x.fill(0.25, 1024, 1088); // a constant run
  x.fill(-1e-7, 1088, 1120); // a tiny block
  return x;
}

const rms = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, v) => s + v * v, 0) / a.length);

/** Relative RMS error each type must stay under on the test matrix (a loose bound: 2^-bits scaled). */
const ERROR_BOUND: Record<GgmlTypeName, number> = {
  F32: 0, F16: 1e-3, BF16: 5e-3, Q8_0: 0.01, Q6_K: 0.03, Q5_1: 0.05, Q5_0: 0.06, Q5_K: 0.05, Q4_1: 0.1, Q4_0: 0.12, Q4_K: 0.1, Q3_K: 0.2, Q2_K: 0.4,
};

describe('ggml block codecs', () => {
  const rows = 24;
  const x = testMatrix(rows, 7);
  const shape = [rows, 512];

  it.each(GGML_CODEC_TYPES)('%s: the bytes have the exact size, decode as the float64 oracle reads them, and stay close to the input', (type) => {
    const bytes = encodeGgml(type, x, shape, { tensor: 'test' });
    expect(bytes.length).toBe(ggufTensorBytes(type, shape));
    expect(bytes.length).toBe((x.length * ggmlBitsPerWeight(type)) / 8);
    const ours = decodeGgml(type, bytes, shape);
    const oracle = oracleDecode(type, bytes, x.length);
    // Our decoder rounds the float64 value to float32 once. (One assertion over all values: one per value is slow.)
    const differing = [];
    for (let i = 0; i < x.length; i++) if (!(Math.abs(ours[i]! - oracle[i]!) <= Math.abs(oracle[i]!) * 2 ** -23)) differing.push(`value ${i}: ${ours[i]} vs ${oracle[i]}`);
    expect(differing.slice(0, 5), `${type}: ${differing.length} values decode otherwise than the oracle`).toEqual([]);
    const error = rms(Array.from(x, (v, i) => v - oracle[i]!)) / rms(x);
    expect(error).toBeLessThanOrEqual(ERROR_BOUND[type]);
    // Zero rows stay exactly zero.
    expect(Array.from(oracle.subarray(512, 1024)).filter((v) => v !== 0), `${type}: non-zero values in the zero row`).toEqual([]);
  });

  it.each(['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0'] as const)('%s: an importance vector lowers the importance-weighted error', (type) => {
    const random = seededNormal(11);
    // A few input channels with large activations, as real layers have.
    const importance = Float32Array.from({ length: 512 }, (_, c) => (c % 37 === 0 ? 100 : 0.1 + Math.abs(random())));
    const weightedError = (bytes: Uint8Array) => {
      const y = oracleDecode(type, bytes, x.length);
      let e = 0;
      for (let i = 0; i < x.length; i++) e += importance[i % 512]! * (x[i]! - y[i]!) ** 2;
      return e;
    };
    const plain = weightedError(encodeGgml(type, x, shape));
    const weighted = weightedError(encodeGgml(type, x, shape, { importance }));
    expect(weighted).toBeLessThan(plain * 0.97);
  });

  it('refuses rows that are not whole blocks, non-finite values and a wrong importance vector, naming the tensor', () => {
    expect(() => encodeGgml('Q4_K', new Float32Array(128), [1, 128], { tensor: 'blk.0.attn_q.weight' })).toThrow(/blk\.0\.attn_q\.weight.*256.*Q8_0/);
    expect(() => encodeGgml('Q4_0', Float32Array.of(...new Array(31).fill(0), NaN), [1, 32], { tensor: 'w' })).toThrow(/"w".*NaN/);
    expect(() => encodeGgml('Q4_K', new Float32Array(256), [1, 256], { importance: new Float32Array(255), tensor: 'w' })).toThrow(/255/);
    expect(() => encodeGgml('Q4_K', new Float32Array(256), [1, 256], { importance: new Float32Array(256).fill(-1), tensor: 'w' })).toThrow(/importance -1/);
    expect(() => decodeGgml('Q4_0', new Uint8Array(17), [1, 32], 'w')).toThrow(/18 bytes/);
  });
});
