import { PluginError, quantConfig } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { QUANTIZER_PLUGINS, configureQuantizer, createQuantizerRegistry } from './registry.js';
import { misbehavingQuantizers } from './testing/misbehaving-quantizers.js';
import { randomInputs, randomMatrix } from './testing/random-matrix.js';

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
    // A calibrated quantizer (gptq) gets the input statistics it declares it needs.
    const context = { hessian: randomInputs(128, 256, 5).hessian };
    for (const plugin of QUANTIZER_PLUGINS) {
      const checked = registry.get(plugin.id).configure({});
      const own = plugin.configure({});
      const given = own.calibration ? context : undefined;
      // A quantizer whose zeros are integers only (gptq) is asked for the -int config.
      const asked = own.zeroKinds && !own.zeroKinds.includes('fractional') ? quantConfig(4, 64, { roundZero: true }) : config;
      const a = own.quantize(weight, asked, given);
      const b = checked.quantize(weight, asked, given);
      expect(Array.from(b.packed)).toEqual(Array.from(a.packed));
      expect(Array.from(b.scale)).toEqual(Array.from(a.scale));
      expect(Array.from(b.zero)).toEqual(Array.from(a.zero));
      expect(checked.packedLayout).toBe(plugin.packedLayout);
    }
  });
});
