import { runAllocatorConformance, syntheticStats } from '@layerquant/allocators/testing';
import { matricesOf, ladderStops } from '@layerquant/allocators';
import { configName, matrixTensorName, type LinearModule } from '@layerquant/core';
import { randomDecoderSource, tinyConfig } from '@layerquant/runtime/testing';
import { runMetricConformance } from '@layerquant/sensitivity/testing';
import { describe, expect, it } from 'vitest';
import plugins, { crestBoostPlugin, crestFactor, crestMetric, type CrestTable } from './index.js';

const config = tinyConfig({ numLayers: 2 });
runMetricConformance(crestMetric, { input: () => randomDecoderSource(config, 3), layers: config.numLayers });

// The allocator's suite on statistics that hold its table (the synthetic model's matrices, crest made up per matrix).
const synthetic = syntheticStats({ layers: 8 });
const crest: CrestTable = { rows: matricesOf(synthetic).map((m, i) => ({ layer: m.layer, module: m.module as LinearModule, params: m.params, crest: 3 + ((i * 7919) % 101) / 10 })) };
runAllocatorConformance(crestBoostPlugin, { stats: { ...synthetic, crest } });

describe('the crest metric and the allocator of its table', () => {
  it('measures max |w| / rms of every matrix (float64 in the test)', async () => {
    const source = randomDecoderSource(config, 5);
    const table = await crestMetric.measure(source, {});
    expect(table.rows).toHaveLength(2 * 7);
    for (const row of table.rows) {
      const { data } = await source.read(matrixTensorName(row.layer, row.module));
      const values = Array.from(data, Number);
      const rms = Math.sqrt(values.reduce((s, w) => s + w * w, 0) / values.length);
      expect(row.crest).toBeCloseTo(Math.max(...values.map(Math.abs)) / rms, 12);
      expect(row.params).toBe(values.length);
    }
    expect(crestFactor(new Float32Array([1, -1, 1, -1]))).toBe(1);
  });

  it('moves the matrices of highest crest one stop up, the rest at the stop', () => {
    const allocation = crestBoostPlugin.allocate({ crest }, { top: 3 }, { budget: 3.25 });
    const stops = ladderStops();
    const at = stops.findIndex((s) => s.budget === 3.25);
    const top3 = [...crest.rows].sort((a, b) => b.crest - a.crest).slice(0, 3).map((r) => `${r.layer}.${r.module}`);
    for (const m of allocation.matrices) expect(configName(m.config!), m.key).toBe(configName(stops[top3.includes(m.key) ? at + 1 : at]!.config));
  });

  it('is what the module exports for --plugin: the metric and the allocator of its table', () => {
    expect(plugins).toEqual({ metrics: [crestMetric], allocators: [crestBoostPlugin] });
    expect(crestBoostPlugin.tablesNeeded({ top: 1 })).toEqual([crestMetric.table]);
  });
});
