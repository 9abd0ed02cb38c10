import { PluginError, quantConfig } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { QUANTIZER_PLUGINS, configureQuantizer, createQuantizerRegistry } from './registry.js';
import { misbehavingQuantizers } from './testing/misbehaving-quantizers.js';
import { randomMatrix } from './testing/random-matrix.js';

const weight = randomMatrix(16, 128, 3);
const config = quantConfig(4, 64);

describe('a quantizer registry checks every result of every plug-in (the misbehaving-plug-in suite)', () => {
  for (const { label, plugin, error } of misbehavingQuantizers()) {
    it(`refuses ${label}, naming the plug-in, through the plug-in and through the quantizer it configures`, () => {
      const registry = createQuantizerRegistry([...QUANTIZER_PLUGINS, plugin]);
      const checked = registry.get(plugin.id);
      const run = (q: typeof checked | ReturnType<typeof checked.configure>) => q.dequantize(q.quantize(weight, config));
      expect(() => run(checked)).toThrow(PluginError);
      expect(() => run(checked)).toThrow(error);
      expect(() => run(checked.configure({}))).toThrow(error);
      expect(() => run(configureQuantizer(plugin))).toThrow(error);
    });
  }

  it('leaves the built-in quantizers\' results as they were (same codes, scales and zeros)', () => {
    const registry = createQuantizerRegistry();
    for (const plugin of QUANTIZER_PLUGINS) {
      const checked = registry.get(plugin.id).configure({});
      const a = plugin.configure({}).quantize(weight, config);
      const b = checked.quantize(weight, config);
      expect(Array.from(b.packed)).toEqual(Array.from(a.packed));
      expect(Array.from(b.scale)).toEqual(Array.from(a.scale));
      expect(Array.from(b.zero)).toEqual(Array.from(a.zero));
      expect(checked.packedLayout).toBe(plugin.packedLayout);
    }
  });
});
