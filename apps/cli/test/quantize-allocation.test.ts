import { BUDGET_STOPS } from '@layerquant/core';
import { shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from './run-cli.js';

const oracles = JSON.parse(readFileSync(join(shippedOraclesDir, 'oracles.json'), 'utf8')) as {
  table: { method: string; budget: number; bpp: number }[];
  outliers: { sensiboost: Record<string, Record<string, number[]>> };
};

describe('layerquant quantize --budget (allocation-driven)', () => {
  it('SensiBoost at 3.25: boosts the oracle outlier layers, reports memory over uniform, writes a checkpoint eval reads', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'quantize-sb-')), 'model');
    const { code, stdout, stderr } = await cli('quantize', shippedModelDir, '--method', 'sensiboost', '--budget', '3.25', '--stats', shippedOraclesDir, '--out', out, '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as { sizes: { paperBitsPerWeight: number }; extraMemoryPercent: number; allocation: Record<string, string>; configs: Record<string, number> };
    const oracle = oracles.table.find((r) => r.method === 'sensiboost-2-1' && r.budget === 3.25)!;
    expect(report.sizes.paperBitsPerWeight).toBeCloseTo(oracle.bpp, 12);
    // Every boosted matrix is an oracle outlier (top_m = 1), two stops up the ladder: b3g64 -> b4g128.
    const boosted = Object.entries(report.allocation).filter(([, c]) => c === 'b4g128').map(([k]) => k).sort();
    const expected = Object.entries(oracles.outliers.sensiboost['1']!).flatMap(([module, layers]) => layers.map((l) => `${l}.${module}`)).sort();
    expect(boosted).toEqual(expected);
    expect(report.configs).toEqual({ b3g64: 224 - expected.length, b4g128: expected.length });
    const uniformBpp = BUDGET_STOPS.find((s) => s.budget === 3.25)!.bpp;
    expect(report.extraMemoryPercent).toBeCloseTo((100 * (report.sizes.paperBitsPerWeight - uniformBpp)) / uniformBpp, 9);
    const evaluated = await cli('eval', out, '--dataset', 'brown-test', '--max-tokens', '1024', '--json');
    expect(evaluated.code).toBe(0);
    const { perplexity: ppl } = JSON.parse(evaluated.stdout) as { perplexity: number };
    // PyTorch fp32 with every matrix replaced by upstream HQQ's dequantization at this allocation, computed once with
    // `/usr/bin/python3 bench/perplexity_anchor.py <model> <brown-test ids.json> 512 2 1024 --allocation <the
    // allocation of \`allocate --stats oracles --method sensiboost --budget 3.25 --json\`>` (window NLLs 2242.5605,
    // 2287.7327; fp32 sums in other orders agree to a few 1e-6 per window, see experiment.test.ts).
    expect(Math.abs(ppl - 84.16441640968887) / 84.16441640968887).toBeLessThan(2e-4);
  });

  it('rejects a budget below the cheapest config by naming the smallest feasible one, and writes nothing', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'quantize-bad-')), 'model');
    const { code, stderr } = await cli('quantize', shippedModelDir, '--method', 'mxq', '--budget', '1.5', '--stats', shippedOraclesDir, '--out', out);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^layerquant: error: budget 1\.5 .*smallest feasible budget is 2\.12/);
    expect(existsSync(out)).toBe(false);
    // Checked before the statistics are computed: nothing is written even without --stats.
    const early = await cli('quantize', shippedModelDir, '--method', 'mxq', '--budget', '1.5', '--out', out);
    expect(early.stderr).toMatch(/smallest feasible budget is 2\.127/);
    expect(existsSync(out)).toBe(false);
    const notAStop = await cli('quantize', shippedModelDir, '--method', 'sensiboost', '--budget', '3.3', '--out', out);
    expect(notAStop.stderr).toMatch(/option "budget": 3\.3 is not one of the paper's budget stops/);
    expect(existsSync(out)).toBe(false);
    const both = await cli('quantize', shippedModelDir, '--method', 'mxq', '--budget', '3', '--config', 'b4g64', '--out', out);
    expect(both.stderr).toMatch(/option "--config"/);
  });
});
