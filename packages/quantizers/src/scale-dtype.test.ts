import { matrixOfTensorName, quantConfig } from '@layerquant/core';
import { shippedModelDir } from '@layerquant/fixtures';
import { openCheckpoint, readSafetensorsHeader } from '@layerquant/tensor-io';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openQuantizedCheckpoint } from './quantized-checkpoint.js';
import { quantizeModel } from './quantize-model.js';
import { modelMemory } from './memory-accounting.js';
import { rtnQuantizer, unpackQuantizedCodes } from './quantizers.js';
import { halfOracle } from './testing/half-oracle.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-scale-dtype-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('quantizeModel with scaleDtype F16 (RTN b4g64 on the shipped model)', () => {
  it('stores scales and zeros as F16, rounded to half precision; the error it adds is in sqErr', async () => {
    const config = quantConfig(4, 64);
    const f32 = await quantizeModel({ modelDir: shippedModelDir, outDir: join(scratch, 'f32'), quantizer: rtnQuantizer, configFor: () => config });
    const f16 = await quantizeModel({ modelDir: shippedModelDir, outDir: join(scratch, 'f16'), quantizer: rtnQuantizer, configFor: () => config, scaleDtype: 'F16' });
    // Metadata bytes halve: codes 4 bits + 2 x 16 bits per group of 64 = 4.5 bits per weight on disk (5.0 with fp32).
    expect((8 * f32.bytes) / f32.params).toBe(5);
    expect((8 * f16.bytes) / f16.params).toBe(4.5);
    expect(f16.scaleDtype).toBe('F16');
    const header = await readSafetensorsHeader(join(scratch, 'f16', 'model.safetensors'));
    const scaleEntry = header.tensors.find((t) => t.name === 'model.layers.0.mlp.down_proj.weight.scale')!;
    expect(scaleEntry.dtype).toBe('F16');

    const original = await openCheckpoint(shippedModelDir);
    const half = await openQuantizedCheckpoint(join(scratch, 'f16'));
    const full = await openQuantizedCheckpoint(join(scratch, 'f32'));
    try {
      let sqErr = 0;
      for (const info of original.tensors) {
        if (!matrixOfTensorName(info.name)) continue;
        const [h, f] = [await half.readQuantized(info.name), await full.readQuantized(info.name)];
        // The stored values are the float32 ones rounded to the nearest half; the codes are the same.
        for (let k = 0; k < f.scale.length; k += 97) {
          expect(h.scale[k]).toBe(halfOracle(f.scale[k]!));
          expect(h.zero[k]).toBe(halfOracle(f.zero[k]!));
        }
        expect(Buffer.from(h.packed.buffer, h.packed.byteOffset, h.packed.byteLength).equals(Buffer.from(f.packed.buffer, f.packed.byteOffset, f.packed.byteLength))).toBe(true);
        // float64 dequantization from the stored codes, scales and zeros
        const codes = unpackQuantizedCodes(h);
        const weight = (await original.read(info.name)).data;
        for (let i = 0; i < weight.length; i++) {
          const g = Math.floor(i / 64);
          const d = (codes[i]! - h.zero[g]!) / h.scale[g]! - weight[i]!;
          sqErr += d * d;
        }
      }
      expect(Math.abs(f16.sqErr - sqErr) / sqErr).toBeLessThan(1e-5);
      // Half precision adds error, but little: the zero's rounding (|z| up to 15, ulp 2^-7) dominates.
      expect(f16.sqErr).toBeGreaterThan(f32.sqErr);
      expect(f16.sqErr / f32.sqErr).toBeLessThan(1.05);
    } finally {
      await Promise.all([original.close(), half.close(), full.close()]);
    }
  }, 120_000);

  it('stores scales and zeros as 8 bits (U8): on disk the paper accounting, read back as a float64 reference expands them', async () => {
    const config = quantConfig(4, 64);
    const f32 = await quantizeModel({ modelDir: shippedModelDir, outDir: join(scratch, 'f32-ref'), quantizer: rtnQuantizer, configFor: () => config });
    const u8 = await quantizeModel({ modelDir: shippedModelDir, outDir: join(scratch, 'u8'), quantizer: rtnQuantizer, configFor: () => config, scaleDtype: 'U8' });
    expect(u8.scaleDtype).toBe('U8');
    // paper: b + 2*8/g + 32/(128 g) bits per weight; on disk the same plus one fp16 pair (4 bytes) per matrix for the zeros
    const paperBytes = (modelMemory(u8.perMatrix.map((m) => ({ shape: m.shape, config }))).paperBitsPerWeight * u8.params) / 8;
    expect(u8.bytes).toBe(paperBytes + 4 * u8.quantizedMatrices);
    const header = await readSafetensorsHeader(join(scratch, 'u8', 'model.safetensors'));
    const dtypes = Object.fromEntries(header.tensors.filter((t) => t.name.startsWith('model.layers.0.mlp.down_proj.')).map((t) => [t.name.slice('model.layers.0.mlp.down_proj.weight'.length), `${t.dtype}[${t.shape.join(',')}]`]));
    expect(dtypes).toEqual({ '.qweight': 'I32[256,80]', '.scale': 'U8[2560]', '.scale_meta': 'F16[20,2]', '.zero': 'U8[2560]', '.zero_meta': 'F16[1,2]' });

    const original = await openCheckpoint(shippedModelDir);
    const bytes = await openQuantizedCheckpoint(join(scratch, 'u8'));
    const full = await openQuantizedCheckpoint(join(scratch, 'f32-ref'));
    try {
      let sqErr = 0;
      let checked = 0;
      for (const info of original.tensors) {
        if (!matrixOfTensorName(info.name)) continue;
        const [q, f] = [await bytes.readQuantized(info.name), await full.readQuantized(info.name)];
        // float64 reference of the multipliers 1/s: per block of 128 groups an fp16 minimum and step, nearest 8-bit code
        for (let start = 0; start < f.scale.length; start += 128 * 7) {
          const block = Array.from(f.scale.subarray(start, start + 128), (s) => 1 / s);
          const m = halfOracle(Math.min(...block));
          const t = halfOracle((Math.max(...block) - m) / 255);
          for (let k = 0; k < block.length; k++) {
            // nearest code, ties to even (exact ties happen: the multipliers and fp16 ranges are short binary fractions)
            const x = (block[k]! - m) / t;
            const nearest = x - Math.floor(x) === 0.5 ? Math.floor(x) + (Math.floor(x) % 2) : Math.round(x);
            const code = Math.min(255, Math.max(0, nearest));
            expect(q.scale[start + k]).toBe(Math.fround(1 / Math.fround(m + code * t)));
            checked++;
          }
        }
        expect(Buffer.from(q.packed.buffer, q.packed.byteOffset, q.packed.byteLength).equals(Buffer.from(f.packed.buffer, f.packed.byteOffset, f.packed.byteLength))).toBe(true);
        const codes = unpackQuantizedCodes(q);
        const weight = (await original.read(info.name)).data;
        for (let i = 0; i < weight.length; i++) {
          const g = Math.floor(i / 64);
          const d = (codes[i]! - q.zero[g]!) / q.scale[g]! - weight[i]!;
          sqErr += d * d;
        }
      }
      expect(checked).toBeGreaterThan(1000);
      expect(Math.abs(u8.sqErr - sqErr) / sqErr).toBeLessThan(1e-5);
      expect(u8.sqErr).toBeGreaterThan(f32.sqErr);
      // dequantization through the reader equals the stored form (what eval and export read)
      const w = await bytes.read('model.layers.3.self_attn.q_proj.weight');
      const q = await bytes.readQuantized('model.layers.3.self_attn.q_proj.weight');
      const codes = unpackQuantizedCodes(q);
      for (let i = 0; i < w.data.length; i += 101) expect(w.data[i]).toBeCloseTo((codes[i]! - q.zero[Math.floor(i / 64)]!) / q.scale[Math.floor(i / 64)]!, 6);
    } finally {
      await Promise.all([original.close(), bytes.close(), full.close()]);
    }
  }, 120_000);
});
