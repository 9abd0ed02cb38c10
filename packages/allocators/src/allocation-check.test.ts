import { PluginError, allocationTotals, quantConfig } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { checkAllocation } from './allocation-check.js';
import { ALLOCATOR_PLUGINS, allocateMethod, parseMethodName } from './registry.js';
import { matricesOf } from './stats.js';
import { hostTotals, misbehavingAllocators } from './testing/misbehaving-allocators.js';
import { syntheticStats } from './testing/synthetic-stats.js';

const stats = syntheticStats({ layers: 4 });

describe('allocateMethod checks every allocator plug-in\'s output (the misbehaving-plug-in suite)', () => {
  for (const { label, plugin, error } of misbehavingAllocators()) {
    it(error ? `refuses ${label}, naming the plug-in` : `recomputes ${label} itself`, () => {
      const run = () => allocateMethod(parseMethodName(plugin.id, [plugin]), stats, { budget: 4.25 }, [plugin]);
      if (error) {
        expect(run).toThrow(PluginError);
        expect(run).toThrow(error);
        return;
      }
      const allocation = run();
      // The host's totals, from the matrices and the model's sizes: never the plug-in's 2.5 bits or NaN.
      expect(allocation.totals).toEqual(hostTotals(stats, allocation));
      expect(allocation.totals.bpp).toBeCloseTo(4.25, 1);
    });
  }

  it('passes every built-in allocator at its budgets unchanged (same matrices, configs and totals)', () => {
    for (const plugin of ALLOCATOR_PLUGINS) {
      const budget = plugin.budget === 'stop' ? 3.25 : 3.1;
      const direct = plugin.allocate(stats, Object.fromEntries(plugin.options.map((d) => [d.name, d.default])), { budget, seed: 42 });
      const checked = allocateMethod(parseMethodName(plugin.id), stats, { budget, seed: 42 });
      expect(checked.matrices.map((m) => [m.key, m.config])).toEqual(direct.matrices.map((m) => [m.key, m.config]));
      expect(checked.totals.bpp).toBeCloseTo(direct.totals.bpp, 12);
    }
  });

  it('builds the allocation itself: the plan\'s order, the ladder\'s configs, an explicit null left in float at 16 bits', () => {
    const units = matricesOf(stats);
    const ladder = [quantConfig(2, 64), quantConfig(4, 64)];
    const shuffled = [...units].reverse().map((u, i) => ({ key: u.key, config: i === 0 ? null : { bits: 4, groupSize: 64 } }));
    const allocation = checkAllocation('plain', { method: 'plain', matrices: shuffled, totals: 'lies' }, { units, configs: ladder, budget: 8, budgetKind: 'stop' });
    expect(allocation.matrices.map((m) => m.key)).toEqual(units.map((u) => u.key));
    expect(allocation.matrices.at(-1)!.config).toBeNull();
    expect(allocation.matrices[0]!.config).toBe(ladder[1]);
    expect(allocation.totals).toEqual(allocationTotals(allocation.matrices));
  });
});
