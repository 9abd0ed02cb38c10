import { InvalidDataError, InvalidOptionError, SafetensorsFormatError } from '@layerquant/core';
import { float32ToF16Bits } from '@layerquant/tensor-io';
import { describe, expect, it } from 'vitest';
import { SCALE_BLOCK_GROUPS, SCALE_META_SUFFIX, ZERO_META_SUFFIX, decodeScaleZero, encodeScaleZero, quantizeU8Blocks, scaleZeroBytes } from './scale-storage.js';
import { halfOracle } from './testing/half-oracle.js';

/** float64 reference of the 8-bit block quantization: per block fp16 (min, (max - min)/255), nearest code. */
function u8Oracle(values: readonly number[], block: number): { codes: number[]; decoded: number[] } {
  const codes: number[] = [];
  const decoded: number[] = [];
  for (let start = 0; start < values.length; start += block) {
    const part = values.slice(start, start + block);
    const m = halfOracle(Math.min(...part));
    const t = halfOracle((Math.max(...part) - m) / 255);
    for (const v of part) {
      const exact = t > 0 ? (v - m) / t : 0;
      const floor = Math.floor(exact);
      const nearest = exact - floor > 0.5 || (exact - floor === 0.5 && floor % 2 !== 0) ? floor + 1 : floor;
      const code = Math.min(255, Math.max(0, nearest));
      codes.push(code);
      decoded.push(Math.fround(m + code * t));
    }
  }
  return { codes, decoded };
}

/** A seeded generator (mulberry32), so the test data are the same on every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('8-bit scales and zeros (scaleDtype U8)', () => {
  it('quantizes blocks as a float64 reference does: fp16 minimum and step, nearest code, last block shorter', () => {
    const next = random(7);
    // multipliers 1/s of a 4-bit matrix: (max - min)/15 of groups of weights ~ N(0, 0.02)
    const values = Array.from({ length: 3 * SCALE_BLOCK_GROUPS + 37 }, () => (0.05 + 0.2 * next()) / 15);
    const { codes, meta } = quantizeU8Blocks(values, SCALE_BLOCK_GROUPS, 'test');
    const oracle = u8Oracle(values, SCALE_BLOCK_GROUPS);
    expect([...codes]).toEqual(oracle.codes);
    expect(meta.length).toBe(2 * 4);
    const decoded = Array.from(codes, (c, i) => Math.fround(meta[2 * Math.floor(i / SCALE_BLOCK_GROUPS)]! + c * meta[2 * Math.floor(i / SCALE_BLOCK_GROUPS) + 1]!));
    expect(decoded).toEqual(oracle.decoded);
    // the error is at most half a step (plus the step's fp16 rounding over 255 codes)
    for (let i = 0; i < values.length; i++) {
      const t = meta[2 * Math.floor(i / SCALE_BLOCK_GROUPS) + 1]!;
      expect(Math.abs(decoded[i]! - values[i]!)).toBeLessThanOrEqual(0.5 * t + 255 * t * 2 ** -11 + 1e-9);
    }
  });

  it('round-trips through the stored tensors: scale = 1/multiplier, zeros per matrix, bytes as the paper counts', () => {
    const next = random(11);
    const groups = 2 * SCALE_BLOCK_GROUPS;
    const scale = Float32Array.from({ length: groups }, () => 15 / (0.05 + 0.2 * next()));
    const zero = Float32Array.from({ length: groups }, () => 15 * next());
    const stored = encodeScaleZero('w', scale, zero, 'U8');
    expect([...stored.tensors.keys()]).toEqual(['.scale', SCALE_META_SUFFIX, '.zero', ZERO_META_SUFFIX]);
    const bytes = [...stored.tensors.values()].reduce((sum, t) => sum + t.byteLength, 0);
    expect(bytes).toBe(scaleZeroBytes(groups, 'U8'));
    // 8 bits each per group + 2 fp16 per 128 groups (the paper's 32/(g*128) bits) + one fp16 pair for the zeros
    expect(bytes).toBe(2 * groups + (groups / 128) * 4 + 4);
    const multiplier = u8Oracle(Array.from(scale, (s) => 1 / s), SCALE_BLOCK_GROUPS).decoded;
    const zeros = u8Oracle(Array.from(zero), groups).decoded;
    for (let i = 0; i < groups; i++) {
      expect(stored.scale[i]).toBe(Math.fround(1 / multiplier[i]!));
      // dequantization multiplies by fp32(1/s): the stored multiplier, or its float32 neighbour (one ulp, 2^-23 relative)
      expect(Math.abs(Math.fround(1 / stored.scale[i]!) / multiplier[i]! - 1)).toBeLessThanOrEqual(2 ** -23);
      expect(stored.zero[i]).toBe(zeros[i]);
    }
    const read = decodeScaleZero('f.safetensors', 'w', 'U8', (suffix) => stored.tensors.get(suffix)!);
    expect([...read.scale]).toEqual([...stored.scale]);
    expect([...read.zero]).toEqual([...stored.zero]);
    // relative error of the multiplier: well under 1% for a 5x spread within a block
    for (let i = 0; i < groups; i++) expect(Math.abs(multiplier[i]! * scale[i]! - 1)).toBeLessThan(0.01);
  });

  it('rejects values it cannot store and files whose ranges are corrupt, with typed errors', () => {
    expect(() => quantizeU8Blocks([1, Number.NaN], 128, 'the scales of w')).toThrow(InvalidDataError);
    expect(() => quantizeU8Blocks([1, 1e6], 128, 'the scales of w')).toThrow(InvalidOptionError);
    const stored = encodeScaleZero('w', Float32Array.of(10, 20), Float32Array.of(1, 2), 'U8');
    const corrupt = new Map(stored.tensors);
    corrupt.set(SCALE_META_SUFFIX, new Uint8Array(float32ToF16Bits(Float32Array.of(Number.NaN, 0.1)).buffer));
    expect(() => decodeScaleZero('f.safetensors', 'w', 'U8', (s) => corrupt.get(s)!)).toThrow(SafetensorsFormatError);
    expect(() => decodeScaleZero('f.safetensors', 'w', 'U8', (s) => corrupt.get(s)!)).toThrow(/w\.scale_meta/);
    // a negative multiplier (minimum below zero) would flip the weights' sign
    corrupt.set(SCALE_META_SUFFIX, new Uint8Array(float32ToF16Bits(Float32Array.of(-1, 0)).buffer));
    expect(() => decodeScaleZero('f.safetensors', 'w', 'U8', (s) => corrupt.get(s)!)).toThrow(/must be positive/);
  });
});
