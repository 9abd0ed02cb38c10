import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LINEAR_MODULES, PAPER_CONFIGS, quantConfig, type LinearModule } from '@layerquant/core';
import {
  formatFnormCsv,
  kurtosisOutliers,
  matricesOf,
  outlierLayerNumbers,
  parseFnormCsv,
  parseKurtosisCsv,
  type FnormTable,
} from '@layerquant/allocators';
import { shippedModelDir, shippedOraclesDir, referenceHqqPath } from '@layerquant/fixtures';
import { hqqQuantizer, rtnQuantizer } from '@layerquant/quantizers';
import { createKernelPool } from '@layerquant/quantizers/node';
import { openCheckpoint, type Checkpoint } from '@layerquant/tensor-io';
import { randomDecoderSource, tinyConfig } from '@layerquant/runtime/testing';
import { frobeniusRows, frobeniusTable, kurtosisTable, kurtosisTableFromFnorm, listMatrices } from './frobenius-table.js';
import { QuantizationErrors } from './pooled-quantize.js';
import { writeSensitivityOutputs } from './stats-directory.js';

const oracle = parseFnormCsv(readFileSync(`${shippedOraclesDir}/fnorm.csv`, 'utf8'));
const oracles = JSON.parse(readFileSync(`${shippedOraclesDir}/oracles.json`, 'utf8')) as {
  outliers: Record<string, Record<string, Record<LinearModule, number[]>>>;
};
const key = (r: { layer: number; module: string; bits: number; groupSize: number }) => `${r.layer}.${r.module}.b${r.bits}g${r.groupSize}`;

let checkpoint: Checkpoint;
let table: FnormTable;
const pool = createKernelPool(2)!;
beforeAll(async () => {
  checkpoint = await openCheckpoint(shippedModelDir);
  table = await frobeniusTable(checkpoint, PAPER_CONFIGS, { pool });
}, 120_000);
afterAll(async () => {
  await pool.close();
  await checkpoint.close();
});

describe('frobeniusTable on the shipped model (oracle: the authors\' method in PyTorch with upstream HQQ)', () => {
  it('has every matrix x 12 configs in the oracle\'s order, fnorm within 0.5%, memmb and params exact', () => {
    expect(table.rows).toHaveLength(224 * 12);
    expect(table.rows.map(key)).toEqual(oracle.rows.map(key));
    let worst = 0;
    for (const [i, row] of table.rows.entries()) {
      const expected = oracle.rows[i]!;
      worst = Math.max(worst, Math.abs(row.fnorm / expected.fnorm - 1));
      expect(row.memoryMB).toBe(expected.memoryMB);
      expect(row.params).toBe(expected.params);
      expect([row.metaBits, row.metaGroupSize]).toEqual([8, 128]);
      expect(row.squaredError).toBeCloseTo(row.fnorm ** 2, 9);
      expect(Math.abs(row.kurtosis! / expected.kurtosis! - 1)).toBeLessThan(1e-9);
    }
    expect(worst).toBeLessThan(0.005);
  });

  it('sums to the reference squared errors of upstream HQQ per config (reference-hqq.json) within 0.1%', () => {
    const reference = JSON.parse(readFileSync(referenceHqqPath, 'utf8')) as Record<string, number>;
    for (const config of PAPER_CONFIGS) {
      const name = `b${config.bits}g${config.groupSize}`;
      const sum = table.rows.filter((r) => r.bits === config.bits && r.groupSize === config.groupSize).reduce((s, r) => s + r.squaredError!, 0);
      expect(Math.abs(sum / reference[`hqq_${name}_sq_err`]! - 1)).toBeLessThan(1e-3);
    }
  });

  it('finds the KurtBoost outlier layers of oracles.json (top_m 1 and all)', () => {
    for (const topM of [1, 0]) {
      const ours = outlierLayerNumbers(kurtosisOutliers({ fnorm: table }, 32, { topM }));
      expect(ours).toEqual(oracles.outliers.kurtboost![String(topM)]);
    }
  });

  it('saves in the authors\' layout and loads back equal; the kurtosis table matches a direct read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'layerquant-fnorm-'));
    try {
      const kurtosis = kurtosisTableFromFnorm(table);
      expect(kurtosis).toEqual(await kurtosisTable(checkpoint));
      await writeSensitivityOutputs(dir, { fnorm: table, kurtosis });
      expect((await readdir(dir)).sort()).toEqual(['fnorm.csv', 'kurtosis.csv']);
      const text = await readFile(join(dir, 'fnorm.csv'), 'utf8');
      expect(text.split('\n')[0]).toBe('layer,module,nbit1,gsize1,nbit2,gsize2,fnorm,memmb,params,kurtosis,sq_err');
      expect(parseFnormCsv(text)).toEqual({ rows: table.rows });
      expect(formatFnormCsv(parseFnormCsv(text))).toBe(text);
      const kurtosisText = await readFile(join(dir, 'kurtosis.csv'), 'utf8');
      expect(kurtosisText.split('\n')[0]).toBe('module,layer,param_count,kurtosis');
      expect(parseKurtosisCsv(kurtosisText)).toEqual({ rows: kurtosis.rows });
      expect(kurtosis.rows.slice(0, 32).every((r) => r.module === LINEAR_MODULES[0])).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes any quantizer and config list, and lists matrices without a tensor list by probing names', async () => {
    const source = { has: (n: string) => checkpoint.has(n), read: (n: string) => checkpoint.read(n) };
    expect(listMatrices(source).map((m) => m.name)).toEqual(listMatrices(checkpoint).map((m) => m.name));
    const one = { has: (n: string) => n.startsWith('model.layers.0.') && checkpoint.has(n), read: (n: string) => checkpoint.read(n) };
    // Worker threads or the calling thread: the same numbers, bit for bit.
    expect(await frobeniusTable(one, PAPER_CONFIGS, { quantizer: hqqQuantizer })).toEqual({ rows: table.rows.slice(0, 7 * 12) });
    const rtn = await frobeniusTable(one, [quantConfig(4, 64)], { quantizer: rtnQuantizer });
    expect(rtn.rows).toHaveLength(7);
    for (const row of rtn.rows) {
      const hqq = table.rows.find((r) => key(r) === key(row))!;
      expect(row.fnorm).toBeGreaterThan(hqq.fnorm); // HQQ's solver lowers the error of its RTN init
    }
    await expect(frobeniusTable({ has: () => false, read: () => Promise.reject(new Error('unused')), dir: 'empty-model' })).rejects.toThrow(/empty-model: has no linear matrices/);
  });

  it('takes an error recorded earlier in the run for the same quantizer and config, and quantizes the rest', async () => {
    const [matrix] = listMatrices(checkpoint);
    const weight = await checkpoint.read(matrix!.name);
    const b4g64 = quantConfig(4, 64);
    const errors = new QuantizationErrors();
    errors.record(hqqQuantizer, matrix!.name, b4g64, 42);
    errors.record(rtnQuantizer, matrix!.name, quantConfig(3, 64), 7);
    errors.record(hqqQuantizer, matrix!.name, quantConfig(4, 64, { roundZero: true }), 9);
    const rows = await frobeniusRows(matrix!, weight, [b4g64, quantConfig(3, 64)], hqqQuantizer, undefined, errors);
    expect(rows[0]!.squaredError).toBe(42);
    expect(rows[0]!.fnorm).toBe(Math.sqrt(42));
    // b3g64 was recorded for RTN only, and the rounded-zero variant is another config: both quantized with HQQ here.
    expect(rows[1]!.squaredError).toBe(table.rows.find((r) => key(r) === key(rows[1]!))!.squaredError);
  });
});

describe('frobeniusTable with the embedding units (a format ladder)', () => {
  it('tabulates embed_tokens and lm_head at their own ladders, rows of layer -1 that sort first and last; a tied lm_head is refused', async () => {
    const config = tinyConfig({ numLayers: 1 });
    const base = randomDecoderSource(config, 4);
    const head = Float32Array.from({ length: config.vocabSize * config.hiddenSize }, (_, i) => Math.cos(i * 0.11));
    const source = { has: (n: string) => n === 'lm_head.weight' || base.has(n), read: async (n: string) => (n === 'lm_head.weight' ? { name: n, dtype: 'F32' as const, shape: [config.vocabSize, config.hiddenSize], data: head } : base.read(n)) };
    const linear = [quantConfig(4, 16)];
    const embed = [quantConfig(4, 16, { roundZero: true }), quantConfig(8, 16, { symmetric: true })];
    const table = await frobeniusTable(source, linear, { quantizer: rtnQuantizer, embeddingConfigs: { embed_tokens: embed, lm_head: [quantConfig(2, 32)] } });
    const units = table.rows.filter((r) => r.layer === -1);
    expect(units.map((r) => `${r.module} b${r.bits}g${r.groupSize} ${r.zero}`)).toEqual(['embed_tokens b4g16 integer', 'embed_tokens b8g16 none', 'lm_head b2g32 fractional']);
    // fnorm = |W - dequant(quant(W))|_F, computed here in float64
    const weight = (await base.read('model.embed_tokens.weight')).data;
    const dq = rtnQuantizer.dequantize(rtnQuantizer.quantize({ name: 'e', dtype: 'F32', shape: [config.vocabSize, config.hiddenSize], data: weight }, embed[0]!));
    let sum = 0;
    for (let i = 0; i < weight.length; i++) sum += (weight[i]! - dq[i]!) ** 2;
    expect(units[0]!.fnorm).toBeCloseTo(Math.sqrt(sum), 10);
    const parsed = parseFnormCsv(formatFnormCsv(table));
    expect(parsed.rows).toEqual(table.rows);
    expect(matricesOf({ fnorm: parsed }).map((m) => m.key)).toEqual(['embed_tokens', ...LINEAR_MODULES.map((m) => `0.${m}`), 'lm_head']);
    await expect(frobeniusTable(base, linear, { embeddingConfigs: { lm_head: [quantConfig(4, 16)] } })).rejects.toThrow(/tied to embed_tokens/);
  });
});
