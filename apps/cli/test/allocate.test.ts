import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { llama2PaperDir, llama405bPaperDir, shippedOraclesDir } from '@layerquant/fixtures';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './run-cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-allocate-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('layerquant allocate', () => {
  it('prints a SensiBoost allocation of Llama-2-7B as JSON, identical to the authors\' (paper-data directory)', async () => {
    const { code, stdout, stderr } = await cli('allocate', '--stats', llama2PaperDir, '--method', 'sensiboost', '--budget', '3.25', '--boost-stop', '2', '--top-m', '1', '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as { method: string; allocation: Record<string, string | null>; boosts: { layers: { layer: number; module: string }[] } };
    expect(result.method).toBe('sensiboost');
    expect(Object.keys(result.allocation)).toHaveLength(224);
    expect(result.boosts.layers.filter((l) => l.module === 'self_attn.q_proj').map((l) => l.layer)).toEqual([31]);
    const expected = readFileSync(`${llama2PaperDir}/expected-allocations/sensi-boost-2-1.csv`, 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => line.split(','))
      .filter((f) => f[5] === '3.25');
    for (const f of expected) {
      expect(result.allocation[`${f[2]}.${f[1]}`]).toBe(`b${f[6]}g${f[7]}`);
    }
  });
  it('prints MXQ with objective, bound and gap, and writes --out atomically', async () => {
    const out = join(scratch, 'mxq.json');
    const { code, stdout } = await cli('allocate', '--stats', shippedOraclesDir, '--method', 'mxq', '--budget', '3.13', '--out', out);
    expect(code).toBe(0);
    expect(stdout).toMatch(/objective\s+370\.8197\d* \(sum of fnorm\), bound 370\.8\d+, gap/);
    expect(stdout).toMatch(/self_attn\.q_proj\s+\d/);
    const saved = JSON.parse(readFileSync(out, 'utf8')) as { solver: { objective: number; gap: number } };
    expect(saved.solver.objective).toBeCloseTo(370.8197213709354, 6);
    expect(saved.solver.gap).toBeLessThanOrEqual(1e-6);
    expect(readdirSync(scratch).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
  it('runs MXQ on the 405B table and the other methods, per matrix with --verbose', async () => {
    const big = await cli('allocate', '--stats', llama405bPaperDir, '--method', 'mxq', '--budget', '4.25', '--json');
    expect(big.code).toBe(0);
    expect(Object.keys((JSON.parse(big.stdout) as { allocation: Record<string, string> }).allocation)).toHaveLength(882);
    for (const method of ['uniform', 'kurtboost', 'ablation']) {
      const { code, stdout } = await cli('allocate', '--stats', llama2PaperDir, '--method', method, '--budget', '4.13', '--top-m', '0', '--seed', '3', '--verbose');
      expect(code, method).toBe(0);
      expect(stdout.split('\n').filter((l) => /^\d+\.(self_attn|mlp)\./.test(l))).toHaveLength(224);
    }
  });
  it('runs the new plug-ins by name or by flags, at any budget and on a config ladder', async () => {
    const byFlags = await cli('allocate', '--stats', llama2PaperDir, '--method', 'sensi-milp', '--top-m', '2', '--budget', '3.07', '--json');
    expect(byFlags.code).toBe(0);
    const a = JSON.parse(byFlags.stdout) as { method: string; options: Record<string, unknown>; sizes: { paperBitsPerWeight: number }; solver: { gap: number } };
    expect(a).toMatchObject({ method: 'sensi-milp', options: { budget: 3.07, topM: 2, factor: 2, ablation: false } });
    expect(a.sizes.paperBitsPerWeight).toBeLessThanOrEqual(3.07);
    expect(a.solver.gap).toBeLessThanOrEqual(1e-6);
    const byName = JSON.parse((await cli('allocate', '--stats', llama2PaperDir, '--method', 'sensi-milp-2', '--budget', '3.07', '--json')).stdout) as typeof a;
    expect(byName.options).toEqual(a.options);
    const ladder = await cli('allocate', '--stats', llama2PaperDir, '--method', 'kurt-scaled', '--budget', '3.4', '--configs', 'b2g64,b3g64,b4g32', '--json');
    expect(ladder.code).toBe(0);
    const configs = new Set(Object.values((JSON.parse(ladder.stdout) as { allocation: Record<string, string> }).allocation));
    expect([...configs].every((c) => ['b2g64', 'b3g64', 'b4g32'].includes(c))).toBe(true);
    const missing = await cli('allocate', '--stats', llama2PaperDir, '--method', 'measured', '--budget', '3.25');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/measured needs measured\.csv.*--measured/);
    const help = await cli('allocate', '--help');
    for (const id of ['sensi-milp', 'kurt-milp', 'kurt-scaled', 'head-prioritized', 'tail-prioritized', 'measured', '--factor', '--ablation']) expect(help.stdout).toContain(id);
  });
  it('exits 1 with one line on bad input', async () => {
    const cases = [
      ['allocate', '--stats', llama2PaperDir, '--method', 'mxq', '--budget', '1.5'],
      ['allocate', '--stats', llama2PaperDir, '--method', 'greedy', '--budget', '3.25'],
      ['allocate', '--stats', llama2PaperDir, '--method', 'sensiboost', '--budget', '3.3'],
      ['allocate', '--stats', '/no/such/dir', '--method', 'uniform', '--budget', '3.25'],
      ['allocate', '--method', 'uniform', '--budget', '3.25'],
      ['allocate', '--stats', llama2PaperDir, '--method', 'kurtboost', '--budget', '3.25', '--top-m', '-1'],
    ];
    for (const argv of cases) {
      const { code, stderr, stdout } = await cli(...argv);
      expect(code, argv.join(' ')).toBe(1);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toHaveLength(1);
    }
    expect((await cli(...cases[0]!)).stderr).toMatch(/smallest feasible budget is 2\.127/);
  });
});
