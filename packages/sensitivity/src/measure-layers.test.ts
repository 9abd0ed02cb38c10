import { quantConfig } from '@layerquant/core';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { measureMetrics } from './measure-metrics.js';
import { activationSensitivityMetric, frobeniusMetric, kurtosisMetric, type MetricPlugin } from './metrics.js';

const dir = mkdtempSync(join(tmpdir(), 'measure-layers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const config = tinyConfig({ numLayers: 3 });
const configs = [quantConfig(2, 16), quantConfig(4, 16)];

describe('weight metrics measured a layer at a time (a queue job each)', () => {
  it('join into the table one measurement of the whole model gives, byte for byte in its CSV', async () => {
    await writeModelDirectory(dir, config, 4);
    const metrics = [frobeniusMetric, kurtosisMetric];
    const options = { calibrationName: 'none', configs, workers: 1 };
    const whole = await measureMetrics(dir, metrics, options);
    const parts = [];
    for (let layer = 0; layer < config.numLayers; layer++) parts.push(await measureMetrics(dir, metrics, { ...options, layers: [layer] }));
    for (const metric of metrics as MetricPlugin[]) {
      const tables = parts.map((p) => p.tables[metric.table]);
      for (const [layer, table] of tables.entries()) expect(new Set((table as { rows: { layer: number }[] }).rows.map((r) => r.layer))).toEqual(new Set([layer]));
      const joined = metric.join ? metric.join(tables) : { rows: tables.flatMap((t) => (t as { rows: unknown[] }).rows) };
      expect(metric.format!(joined), metric.id).toBe(metric.format!(whole.tables[metric.table]));
    }
  });

  it('refuses a layer subset for activation metrics, which run the layers as a chain', async () => {
    await expect(measureMetrics(dir, [activationSensitivityMetric], { calibrationName: 'none', calibrationText: 'text', layers: [0] })).rejects.toThrow(/measured whole/);
  });
});
