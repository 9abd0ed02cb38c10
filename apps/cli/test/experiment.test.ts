import { shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseBudgets, parseMethods, tablesNeeded } from '../src/experiment/grid.js';
import { compareMethods, formatResultsCsv, headline, type ExperimentRow } from '../src/experiment/report.js';
import { bin, cli } from './run-cli.js';

interface OracleRow {
  method: string;
  budget: number;
  bpp: number;
  ppl: number;
}
const oracles = JSON.parse(readFileSync(join(shippedOraclesDir, 'oracles.json'), 'utf8')) as { table: OracleRow[] };

describe('experiment grid', () => {
  it('expands the paper grid: hqq, mxq, 4 variants of each boost, 8 ablations', () => {
    const ids = parseMethods('paper').map((m) => m.id);
    expect(ids).toHaveLength(18);
    expect(ids).toContain('sensiboost-3-0');
    expect(ids).toContain('ablation-kurtboost-2-1');
    expect(parseMethods('uniform,hqq,sensiboost-2-1').map((m) => m.id)).toEqual(['hqq', 'sensiboost-2-1']);
    expect(tablesNeeded(parseMethods('hqq,kurtboost-2-1'))).toEqual({ fnorm: false, sensitivity: false, kurtosis: true });
    expect(() => parseMethods('gptq')).toThrow(/option "--methods": "gptq" is not a method/);
    expect(() => parseBudgets('2.25,abc')).toThrow(/--budgets/);
  });
});

describe('experiment report', () => {
  const row = (method: string, budget: number, ppl: number, extra = 0): ExperimentRow => ({
    model: 'm', method, options: '', budget, bpp: budget, memoryMB: 1, packedBytes: 1, extraMemoryPercent: extra, ppl, seconds: 1,
  });
  const rows = [row('hqq', 2.25, 100), row('mxq', 2.25, 101), row('sensiboost-2-1', 2.25, 98, 1.2), row('sensiboost-3-0', 2.25, 97.9, 3), row('hqq', 3.25, 90), row('sensiboost-2-1', 3.25, 90.05, 1.1)];
  it('counts wins, ties (under 0.1%) and losses against each baseline', () => {
    expect(compareMethods(rows, 'sensiboost-2-1', 'hqq')).toMatchObject({ wins: 1, ties: 1, losses: 0 });
    expect(compareMethods(rows, 'sensiboost-2-1', 'mxq')).toMatchObject({ wins: 1, ties: 0, losses: 0 });
  });
  it('headlines the best gain, preferring less memory among gains within a tenth of the best', () => {
    expect(headline(rows)?.row.method).toBe('sensiboost-2-1');
    expect(headline(rows)?.gainPercent).toBeCloseTo(2, 10);
  });
  it('writes the CSV columns the issue asks for', () => {
    expect(formatResultsCsv(rows).split('\n')[0]).toBe('model,method,options,budget,bpp,MB,packed_bytes,extra_memory_percent,perplexity,seconds');
  });
});

describe('layerquant experiment', () => {
  it('matches the PyTorch oracle within 0.1% on the whole of brown-test (SensiBoost 2-1 at 2.25 bits)', async () => {
    const out = mkdtempSync(join(tmpdir(), 'experiment-'));
    const { code, stdout, stderr } = await bin('experiment', shippedModelDir, '--stats', shippedOraclesDir, '--methods', 'sensiboost-2-1', '--budgets', '2.25', '--no-fp', '--out', out, '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as { rows: ExperimentRow[] };
    const oracle = oracles.table.find((r) => r.method === 'sensiboost-2-1' && r.budget === 2.25)!;
    const [ours] = result.rows;
    expect(ours!.bpp).toBeCloseTo(oracle.bpp, 12);
    expect(Math.abs(ours!.ppl - oracle.ppl) / oracle.ppl).toBeLessThan(0.001);
    expect(readdirSync(out).sort()).toEqual(['results.csv', 'results.json', 'results.md']);
  }, 600_000);

  it('resumes: a second run with the same settings evaluates nothing again', async () => {
    const out = mkdtempSync(join(tmpdir(), 'experiment-resume-'));
    const args = ['experiment', shippedModelDir, '--stats', shippedOraclesDir, '--methods', 'hqq,kurtboost-2-1', '--budgets', '3.25', '--max-tokens', '1024', '--out', out, '--json'];
    const first = JSON.parse((await cli(...args)).stdout) as { rows: ExperimentRow[] };
    expect(first.rows.map((r) => r.method)).toEqual(['fp', 'hqq', 'kurtboost-2-1']);
    expect(first.rows[2]!.extraMemoryPercent).toBeGreaterThan(0);
    const started = performance.now();
    const second = JSON.parse((await cli(...args)).stdout) as { rows: ExperimentRow[] };
    expect(second.rows).toEqual(first.rows);
    expect(performance.now() - started).toBeLessThan(first.rows.reduce((s, r) => s + r.seconds, 0) * 1000);
    expect(readFileSync(join(out, 'results.md'), 'utf8')).toMatch(/\| 3\.25 \| kurtboost-2-1 \|/);
  });

  it('fails with one line on a bad option or an unsupported model', async () => {
    const bad = await cli('experiment', shippedModelDir, '--out', '/tmp/x', '--methods', 'gptq');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^layerquant: error: option "--methods"/);
    const noModel = await cli('experiment', '/no/model', '--out', '/tmp/x');
    expect(noModel.code).toBe(1);
    expect(noModel.stderr).toContain('/no/model/config.json');
  });
});
