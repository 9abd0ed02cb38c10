import { quantConfig } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { matrixMemory, modelMemory } from './memory-accounting.js';

describe('memory accounting', () => {
  it('gives the paper bits per weight: b4g64 = 4.2539', () => {
    expect(matrixMemory([256, 640], quantConfig(4, 64)).paperBitsPerWeight.toFixed(4)).toBe('4.2539');
    expect(matrixMemory([256, 640], quantConfig(3, 128)).paperBitsPerWeight).toBe(3 + 16 / 128 + 32 / (128 * 128));
  });

  it('gives the real packed size, counted by hand', () => {
    // [640, 256] at b3g64: 256 codes per row -> ceil(256/10) = 26 words; 2560 groups x (4 + 4) bytes
    const m = matrixMemory([640, 256], quantConfig(3, 64));
    expect(m.codeBytes).toBe(640 * 26 * 4);
    expect(m.metaBytes).toBe(2560 * 8);
    expect(m.packedBytes).toBe(66560 + 20480);
    expect(m.packedBitsPerWeight).toBeCloseTo((8 * 87040) / 163840, 12);
    // 3-bit costs more than 3 bits per code: 32/10 for whole words
    expect(m.codeBytes * 8 / m.params).toBeGreaterThan(3.2 - 1e-12);
    // b4g64 [256, 256]: 32 words per row, 1024 groups
    expect(matrixMemory([256, 256], quantConfig(4, 64)).packedBytes).toBe(256 * 32 * 4 + 1024 * 8);
  });

  it('totals a mixed allocation, float matrices counted at 16 bits (paper) and their stored bytes (real)', () => {
    const total = modelMemory([
      { shape: [256, 256], config: quantConfig(4, 64) },
      { shape: [256, 256], config: quantConfig(2, 128) },
      { shape: [256, 512], config: null },
    ]);
    const bits = 65536 * (4 + 16 / 64 + 32 / 8192) + 65536 * (2 + 16 / 128 + 32 / 16384) + 131072 * 16;
    expect(total.params).toBe(262144);
    expect(total.paperBitsPerWeight).toBeCloseTo(bits / 262144, 12);
    expect(total.paperMB).toBeCloseTo(bits / 8 / 2 ** 20, 12);
    expect(total.packedBytes).toBe(256 * 32 * 4 + 1024 * 8 + 256 * 16 * 4 + 512 * 8 + 131072 * 2);
  });
});
