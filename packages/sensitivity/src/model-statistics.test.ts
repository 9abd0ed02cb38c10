import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { quantConfig } from '@layerquant/core';
import { brownCalibPath, shippedModelDir } from '@layerquant/fixtures';
import { createKernelPool } from '@layerquant/quantizers/node';
import { loadDecoderBlocks } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { activationSensitivity } from './activation-sensitivity.js';
import { calibrationBlocks } from './calibration.js';
import { frobeniusTable, kurtosisTable } from './frobenius-table.js';
import { measuredErrors } from './measured-error.js';
import { measureModelStatistics } from './model-statistics.js';

const text = readFileSync(brownCalibPath, 'utf8');
const b4g64 = quantConfig(4, 64);
const b2g64 = quantConfig(2, 64);

describe('measureModelStatistics on the shipped model', () => {
  it('gives the tables of the standalone measurements, each with its own config ladder', async () => {
    const steps = new Set<string>();
    const stats = await measureModelStatistics(shippedModelDir, {
      calibrationText: text,
      calibrationName: 'brown-calib',
      blocks: 1,
      seqlen: 64,
      fnormConfigs: [b4g64],
      measuredConfigs: [b2g64],
      modelName: 'shipped',
      onStep: (step) => steps.add(step),
    });
    expect([...steps].sort()).toEqual(['fnorm', 'measured', 'sensitivity']);
    expect(stats.blocks).toBe(1);
    expect(stats.seqlen).toBe(64);

    const checkpoint = await openCheckpoint(shippedModelDir);
    const model = await loadDecoderBlocks(checkpoint, await loadDecoderConfig(shippedModelDir));
    const pool = createKernelPool(2)!;
    try {
      const blocks = calibrationBlocks(text, await loadTokenizer(shippedModelDir), { blocks: 1, seqlen: 64 });
      expect(stats.sensitivity.rows).toEqual((await activationSensitivity(model, blocks, { dataset: 'brown-calib', model: 'shipped' })).rows);
      expect(stats.measured!.rows).toEqual((await measuredErrors(model, blocks, { configs: [b2g64] })).rows);
      expect(stats.fnorm!.rows).toEqual((await frobeniusTable(checkpoint, [b4g64], { pool })).rows);
      expect(stats.kurtosis.rows).toEqual((await kurtosisTable(checkpoint)).rows);
    } finally {
      await pool.close();
      await model.dispose();
      await checkpoint.close();
    }
  }, 120_000);

  it('without sensitivity and fnorm: the kurtosis table alone, and no calibration used', async () => {
    const stats = await measureModelStatistics(shippedModelDir, { calibrationText: text, calibrationName: 'brown-calib', skipSensitivity: true, skipFnorm: true });
    expect(stats.sensitivity.rows).toEqual([]);
    expect(stats.fnorm).toBeUndefined();
    expect(stats.measured).toBeUndefined();
    expect(stats.kurtosis.rows).toHaveLength(224);
    expect(stats.blocks).toBeNull();
  });
});
