import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseKurtosisCsv, parseSensitivityCsv } from '@layerquant/allocators';
import { brownCalibPath, shippedModelDir } from '@layerquant/fixtures';
import { afterAll, describe, expect, it } from 'vitest';
import { bin, cli } from './run-cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-sensitivity-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('layerquant sensitivity', () => {
  it('writes sensitivity.csv and kurtosis.csv that `allocate --stats` reads (small calibration, --json)', async () => {
    const out = join(scratch, 'stats');
    const { code, stdout, stderr } = await cli('sensitivity', shippedModelDir, '--dataset', 'brown-calib', '--blocks', '1', '--seqlen', '128', '--config', 'b4g64,b3g64', '--skip-fnorm', '--out', out, '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const json = JSON.parse(stdout) as { blocks: number; seqlen: number; configs: string[]; files: string[]; sensitivity: { config: string; part: string; layer: number; sensitivity: number }[] };
    expect(json).toMatchObject({ blocks: 1, seqlen: 128, configs: ['b4g64', 'b3g64'] });
    expect(readdirSync(out).sort()).toEqual(['kurtosis.csv', 'sensitivity.csv']);
    const table = parseSensitivityCsv(readFileSync(join(out, 'sensitivity.csv'), 'utf8'));
    expect(table.rows).toHaveLength(2 * 32 * 4);
    expect(table.rows[0]).toMatchObject({ dataset: 'brown-calib', part: 'attn_in', model: 'llama-brown-26m', bits: 4, groupSize: 64, layer: 0 });
    expect(json.sensitivity.map((r) => r.sensitivity)).toEqual(table.rows.map((r) => r.sensitivity));
    expect(parseKurtosisCsv(readFileSync(join(out, 'kurtosis.csv'), 'utf8')).rows).toHaveLength(224);

    const allocation = await cli('allocate', '--stats', out, '--method', 'sensiboost', '--budget', '3.25', '--json');
    expect(allocation.code).toBe(0);
    expect((JSON.parse(allocation.stdout) as { boosts: { layers: { layer: number; module: string }[] } }).boosts.layers.filter((l) => l.module === 'self_attn.q_proj').map((l) => l.layer)).toEqual([1]);
  });

  it('prints a per-layer table by default, and reads a --calib file', async () => {
    const calib = join(scratch, 'calib.txt');
    writeFileSync(calib, readFileSync(brownCalibPath, 'utf8').slice(0, 20_000));
    const out = join(scratch, 'table');
    const { code, stdout } = await cli('sensitivity', shippedModelDir, '--calib', calib, '--blocks', '2', '--seqlen', '64', '--skip-fnorm', '--out', out);
    expect(code).toBe(0);
    expect(stdout).toMatch(/activation sensitivity: MSE of the block output with the part quantized to b4g64 \(squared activation units; calib, 2 blocks of 64 tokens, in-order\)/);
    const rows = stdout.split('\n').filter((l) => /^\s+\d+\s+\d\.\d{4}e[-+]\d+/.test(l));
    expect(rows).toHaveLength(32);
    // Outlier marks: the layers marked * in each column are the outliers of the same run's JSON (top_m 0, z > 3).
    const json = JSON.parse((await cli('sensitivity', shippedModelDir, '--calib', calib, '--blocks', '2', '--seqlen', '64', '--skip-fnorm', '--out', join(scratch, 'table-json'), '--json')).stdout) as { outliers: { parts: Record<string, { layer: number }[]> }[] };
    const parts = ['attn_in', 'attn_out', 'mlp_gate', 'mlp_down'];
    for (const [column, part] of parts.entries()) {
      const marked = rows.filter((r) => r.trim().split(/\s+(?=\d\.|-)/)[column + 1]?.endsWith('*')).map((r) => Number(r.trim().split(/\s+/)[0]));
      expect(marked, part).toEqual(json.outliers[0]!.parts[part]!.map((o) => o.layer).sort((a, b) => a - b));
    }
    expect(stdout).toContain(`wrote ${join(out, 'sensitivity.csv')}`);
  });

  it('exits 1 with one line naming the problem on bad input (built binary)', async () => {
    const empty = join(scratch, 'empty.txt');
    writeFileSync(empty, '  \n');
    const out = join(scratch, 'bad');
    const cases: [string[], RegExp][] = [
      [['sensitivity', shippedModelDir], /--out/],
      [['sensitivity', shippedModelDir, '--out', out, '--order', 'random'], /--order/],
      [['sensitivity', shippedModelDir, '--out', out, '--calib', empty, '--dataset', 'brown-calib'], /either --calib or --dataset/],
      [['sensitivity', shippedModelDir, '--out', out, '--calib', join(scratch, 'missing.txt')], /missing\.txt/],
      [['sensitivity', shippedModelDir, '--out', out, '--calib', empty, '--skip-fnorm'], /empty/],
      [['sensitivity', shippedModelDir, '--out', out, '--config', 'b4'], /option "config"/],
      [['sensitivity', shippedModelDir, '--out', out, '--seed', '3'], /--seed/],
      [['sensitivity', '/no/such/model', '--out', out], /\/no\/such\/model/],
    ];
    for (const [argv, message] of cases) {
      const { code, stdout, stderr } = await bin(...argv);
      expect(code, argv.join(' ')).toBe(1);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toMatch(message);
    }
    expect(existsSync(out)).toBe(false);
  });
});
