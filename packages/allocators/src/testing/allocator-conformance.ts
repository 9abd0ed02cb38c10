import { LayerquantError, PAPER_CONFIGS, allocationTotals, bitsPerWeight, configName, resolveOptions, type Allocation, type QuantConfig } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { ladderStops } from '../boost.js';
import type { AllocatorPlugin, ResolvedOptions } from '../registry.js';
import { hasTable, matricesOf, type ModelStats } from '../stats.js';
import { syntheticStats } from './synthetic-stats.js';

export interface AllocatorConformanceOptions {
  /**
   * Statistics to allocate from (default: syntheticStats(), 8 layers, every built-in table, the paper's 12 configs);
   * a plug-in that reads a plug-in metric's table passes them with that table added.
   */
  readonly stats?: ModelStats;
  /** The config ladder (default: the paper's 12). */
  readonly configs?: readonly QuantConfig[];
  /** Options of the plug-in (default: its defaults). */
  readonly options?: Readonly<Record<string, unknown>>;
  /** Budgets to try (default: every stop of the ladder for `budget: 'stop'`, else 8 values across the ladder). */
  readonly budgets?: readonly number[];
}

function budgetsFor(plugin: AllocatorPlugin, configs: readonly QuantConfig[]): number[] {
  const stops = ladderStops(configs);
  if (plugin.budget === 'stop') return stops.map((s) => s.budget);
  const low = stops[0]!.bpp;
  const high = stops[stops.length - 1]!.bpp;
  return Array.from({ length: 8 }, (_, i) => low + ((high - low) * (i + 0.5)) / 8);
}

/** Only the tables a plug-in says it needs, plus the model's matrix list (what an app gives it). */
function onlyNeeded(stats: ModelStats, tables: readonly string[]): ModelStats {
  const kept: Record<string, unknown> = { matrices: matricesOf(stats), source: stats.source };
  for (const t of tables) kept[t] = stats[t];
  return kept as ModelStats;
}

/**
 * What every allocator plug-in must satisfy; each plug-in's test file calls this (vitest). Checks: a description,
 * option descriptors whose defaults pass their own validation, tablesNeeded naming tables the statistics hold and
 * enough for it (the allocation runs with only those tables and the matrix list), every matrix allocated exactly once with a
 * config of the ladder or null, totals that add up, the budget respected (`budget: 'any'`; a plug-in that may not
 * fit a budget throws a LayerquantError instead) or, for `budget: 'stop'`, never below the stop, determinism, and
 * an input left unmodified.
 */
export function runAllocatorConformance(plugin: AllocatorPlugin, conformance: AllocatorConformanceOptions = {}): void {
  describe(`allocator conformance: ${plugin.id}`, () => {
    const stats = conformance.stats ?? syntheticStats();
    const configs = conformance.configs ?? PAPER_CONFIGS;
    const ladder = new Set(configs.map(configName));
    const budgets = conformance.budgets ?? budgetsFor(plugin, configs);
    const options: ResolvedOptions = resolveOptions(plugin, conformance.options ?? {});
    const context = (budget: number) => ({ budget, configs, seed: 7 });
    const matrices = matricesOf(stats);

    const attempt = (budget: number, input: ModelStats = stats): Allocation | LayerquantError => {
      try {
        return plugin.allocate(input, options, context(budget));
      } catch (error) {
        if (error instanceof LayerquantError) return error;
        throw error;
      }
    };

    it('describes itself: id, one-line description, options with flags, help and valid defaults, tables the statistics hold', () => {
      expect(plugin.id).toMatch(/^[a-z0-9][a-z0-9-]*$/);
      expect(plugin.description.length).toBeGreaterThan(0);
      expect(plugin.description).not.toContain('\n');
      for (const d of plugin.options) {
        expect(d.flag).toMatch(/^[a-z][a-z0-9-]*$/);
        expect(d.help.length, d.name).toBeGreaterThan(0);
      }
      expect(() => resolveOptions(plugin, {})).not.toThrow();
      for (const t of plugin.tablesNeeded(options)) expect(hasTable(stats, t), `table ${t}: give the statistics with it (options.stats)`).toBe(true);
    });

    it('allocates every matrix exactly once, from the ladder, with totals that add up', () => {
      let allocated = 0;
      for (const budget of budgets) {
        const result = attempt(budget);
        if (result instanceof LayerquantError) continue;
        allocated++;
        expect(result.matrices.map((m) => m.key).sort()).toEqual(matrices.map((m) => m.key).sort());
        for (const m of result.matrices) {
          const known = matrices.find((x) => x.key === m.key)!;
          expect(m.params, m.key).toBe(known.params);
          if (m.config) expect(ladder.has(configName(m.config)), `${m.key} ${configName(m.config)}`).toBe(true);
        }
        const totals = allocationTotals(result.matrices);
        expect(result.totals.params).toBe(totals.params);
        expect(result.totals.bpp).toBeCloseTo(totals.bpp, 9);
        expect(result.totals.memoryMB).toBeCloseTo(totals.memoryMB, 9);
        expect(result.budget).toBe(budget);
      }
      expect(allocated, 'no budget of the ladder could be allocated').toBeGreaterThan(0);
    });

    it(plugin.budget === 'any' ? 'stays within every budget it accepts' : 'never spends less than the stop it was given', () => {
      for (const budget of budgets) {
        const result = attempt(budget);
        if (result instanceof LayerquantError) continue;
        if (plugin.budget === 'any') expect(result.totals.bpp, `budget ${budget}`).toBeLessThanOrEqual(budget + 1e-9);
        else {
          const stop = ladderStops(configs).find((s) => s.budget === budget)!;
          expect(result.totals.bpp, `stop ${budget}`).toBeGreaterThanOrEqual(bitsPerWeight(stop.config) - 1e-9);
        }
      }
    });

    it('refuses a budget below the cheapest config with a LayerquantError', () => {
      const cheapest = ladderStops(configs)[0]!.bpp;
      expect(() => plugin.allocate(stats, options, context(cheapest / 2))).toThrow(LayerquantError);
    });

    it('needs no table it does not name (runs on those tables and the matrix list alone)', () => {
      const tables = plugin.tablesNeeded(options);
      const reduced = onlyNeeded(stats, tables);
      for (const budget of budgets) {
        const full = attempt(budget);
        if (full instanceof LayerquantError) continue;
        const alone = plugin.allocate(reduced, options, context(budget));
        expect(alone.matrices.map((m) => (m.config ? configName(m.config) : null))).toEqual(full.matrices.map((m) => (m.config ? configName(m.config) : null)));
      }
    });

    it('is deterministic and leaves its input unmodified', () => {
      const before = JSON.stringify(stats);
      for (const budget of budgets.slice(0, 3)) {
        const a = attempt(budget);
        const b = attempt(budget);
        if (a instanceof LayerquantError) {
          expect(b).toBeInstanceOf(LayerquantError);
          continue;
        }
        expect((b as Allocation).matrices.map((m) => m.config && configName(m.config))).toEqual(a.matrices.map((m) => m.config && configName(m.config)));
      }
      expect(JSON.stringify(stats)).toBe(before);
    });
  });
}
