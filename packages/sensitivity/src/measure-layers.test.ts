import { quantConfig } from '@layerquant/core';
import { decoderLayout, expectedShapes, loadDecoderBlocks } from '@layerquant/runtime';
import { randomDecoderSource, tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { loadTokenizer } from '@layerquant/tensor-io';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { measureMetrics } from './measure-metrics.js';
import { measureMetricsOn } from './metric-run.js';
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

describe('measureMetricsOn (the measurement without files, as a page runs it)', () => {
  it("gives measureMetrics' tables, byte for byte, on the same weights held in memory", async () => {
    const modelDir = join(dir, 'in-memory');
    await writeModelDirectory(modelDir, config, 4);
    const metrics = [activationSensitivityMetric, frobeniusMetric, kurtosisMetric];
    const text = 'the quick brown fox jumps over the lazy dog. '.repeat(40);
    const options = { calibrationName: 'fox', calibrationText: text, blocks: 3, seqlen: 16, configs, sensitivityConfigs: [quantConfig(4, 16)] };
    const fromDirectory = await measureMetrics(modelDir, metrics, { ...options, workers: 1 });
    // The same weights from randomDecoderSource, never written: a source with a tensor list, the tokenizer, blocks.
    const weights = randomDecoderSource(config, 4);
    const names = [...expectedShapes(config, decoderLayout(config, { has: () => false })).entries()].map(([name, shape]) => ({ name, shape }));
    const source = { has: (name: string) => weights.has(name), read: (name: string) => weights.read(name), tensors: names };
    const tokenizer = await loadTokenizer(modelDir);
    const inMemory = await measureMetricsOn({ name: 'in-memory', config, checkpoint: source, tokenizer: async () => tokenizer, loadBlocks: () => loadDecoderBlocks(source, config) }, metrics, options);
    expect(Object.keys(inMemory.tables)).toEqual(['sensitivity', 'fnorm', 'kurtosis']);
    for (const metric of metrics as MetricPlugin[]) expect(metric.format!(inMemory.tables[metric.table]), metric.id).toBe(metric.format!(fromDirectory.tables[metric.table]));
    expect([inMemory.blocks, inMemory.seqlen]).toEqual([3, 16]);
  });
});
