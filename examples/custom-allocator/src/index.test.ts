import { LINEAR_MODULES, configName, quantConfig } from '@layerquant/core';
import { syntheticStats, runAllocatorConformance } from '@layerquant/allocators/testing';
import { describe, expect, it } from 'vitest';
import plugins, { q4kmPlugin, usesMoreBits } from './index.js';

// The suite every allocator plug-in passes, on the default ladder and on one with a 6-bit config.
runAllocatorConformance(q4kmPlugin);
runAllocatorConformance(q4kmPlugin, { configs: [quantConfig(4, 32), quantConfig(4, 64), quantConfig(6, 32), quantConfig(8, 128)] });

describe("llama.cpp's Q4_K_M rule", () => {
  it('picks the layers llama.cpp gives more bits (32 and 8 layers, written out by hand from the formula)', () => {
    // n = 32: n/8 = 4; first eighth 0-3, last eighth 28-31, and (i - 4) % 3 == 2 for i = 6, 9, ..., 27.
    const expected32 = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
    expect(Array.from({ length: 32 }, (_, i) => i).filter((i) => usesMoreBits(i, 32))).toEqual(expected32);
    // n = 8: n/8 = 1; layer 0, layer 7, and (i - 1) % 3 == 2 for i = 3, 6.
    expect(Array.from({ length: 8 }, (_, i) => i).filter((i) => usesMoreBits(i, 8))).toEqual([0, 3, 6, 7]);
  });

  it('gives v_proj and down_proj of those layers the boost config and everything else the base', () => {
    const stats = syntheticStats({ layers: 8 });
    const allocation = q4kmPlugin.allocate(stats, { base: '', boost: '' }, { budget: 9 });
    expect(allocation.options).toEqual({ base: 'b4g32', boost: 'b8g128' });
    for (const m of allocation.matrices) {
      const boosted = [0, 3, 6, 7].includes(m.layer) && (m.module === 'self_attn.v_proj' || m.module === 'mlp.down_proj');
      expect(configName(m.config!), m.key).toBe(boosted ? 'b8g128' : 'b4g32');
    }
    expect(allocation.matrices).toHaveLength(8 * LINEAR_MODULES.length);
    const sixBit = q4kmPlugin.allocate(stats, { base: '', boost: '' }, { budget: 9, configs: [quantConfig(4, 32), quantConfig(6, 32), quantConfig(8, 128)] });
    expect(sixBit.options).toEqual({ base: 'b4g32', boost: 'b6g32' });
  });

  it('is what the module exports for --plugin', () => {
    expect(plugins.allocators).toEqual([q4kmPlugin]);
  });
});
