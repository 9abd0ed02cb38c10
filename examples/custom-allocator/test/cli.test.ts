import { llama2PaperDir, shippedModelDir } from '@layerquant/fixtures';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// The built CLI, run as a user runs it, with this package's built plug-in: no app knows about q4-k-m.
const packageDir = fileURLToPath(new URL('..', import.meta.url));
const pluginPath = join(packageDir, 'dist/index.js');
// The workspace's layerquant package (a devDependency), as installed beside this one.
const binPath = join(packageDir, 'node_modules/layerquant/dist/bin.js');

function layerquant(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [binPath, ...argv], { cwd: packageDir, maxBuffer: 64 * 2 ** 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

// 32 layers: v_proj and down_proj of 16 layers (0-3, 6, 9, ..., 27, 28-31) at b8g128, the other 192 matrices b4g32.
const BOOSTED = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];

describe('the built CLI with --plugin', () => {
  it('has the built plug-in and CLI (run `pnpm build` first)', () => {
    expect(existsSync(pluginPath), pluginPath).toBe(true);
    expect(existsSync(binPath), binPath).toBe(true);
  });

  it('allocate lists it in --help and allocates the authors\' Llama-2-7B tables with it', async () => {
    const help = await layerquant('allocate', '--help', '--plugin', './dist/index.js');
    expect(help.stdout).toMatch(/q4-k-m\s+llama\.cpp's Q4_K_M/);
    const result = await layerquant('allocate', '--stats', llama2PaperDir, '--method', 'q4-k-m', '--budget', '5.1', '--json', '--plugin', './dist/index.js');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    // The --json schema's allocation: config name per matrix key (`0.self_attn.q_proj`).
    const allocation = JSON.parse(result.stdout) as { method: string; allocation: Record<string, string> };
    expect(allocation.method).toBe('q4-k-m');
    expect(Object.keys(allocation.allocation)).toHaveLength(32 * 7);
    for (const [key, config] of Object.entries(allocation.allocation)) {
      const [layer, ...rest] = key.split('.');
      const module = rest.join('.');
      const boosted = BOOSTED.includes(Number(layer)) && (module === 'self_attn.v_proj' || module === 'mlp.down_proj');
      expect(config, key).toBe(boosted ? 'b8g128' : 'b4g32');
    }
  });

  it('quantize --method q4-k-m computes no statistics and writes the allocation', async () => {
    const out = await mkdtemp(join(tmpdir(), 'layerquant-q4km-'));
    dirs.push(out);
    const result = await layerquant('quantize', shippedModelDir, '--method', 'q4-k-m', '--budget', '5.1', '--quantizer', 'rtn', '--out', join(out, 'q'), '--json', '--plugin', pluginPath);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { method: string; quantizer: string; statistics: string; configs: Record<string, number> };
    expect(report).toMatchObject({ method: 'q4-k-m', quantizer: 'rtn', statistics: 'none needed' });
    expect(report.configs).toEqual({ b4g32: 224 - 2 * BOOSTED.length, b8g128: 2 * BOOSTED.length });
    expect(existsSync(join(out, 'q', 'stats'))).toBe(false);
  });

  it('experiment runs it as a grid cell, with the perplexity of quantize --method q4-k-m evaluated apart', async () => {
    const out = await mkdtemp(join(tmpdir(), 'layerquant-q4km-grid-'));
    dirs.push(out);
    const grid = await layerquant('experiment', shippedModelDir, '--methods', 'q4-k-m', '--budgets', '5.1', '--no-fp', '--max-tokens', '1024', '--out', join(out, 'grid'), '--json', '--plugin', pluginPath);
    expect(grid.code, grid.stderr).toBe(0);
    const rows = (JSON.parse(grid.stdout) as { rows: { method: string; quantizer: string; budget: number; perplexity: number; sizes: { paperBitsPerWeight: number } }[] }).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ method: 'q4-k-m', quantizer: 'hqq', budget: 5.1 });
    // The same allocation quantized to a checkpoint (HQQ) and evaluated by eval on the same tokens.
    const quantized = await layerquant('quantize', shippedModelDir, '--method', 'q4-k-m', '--budget', '5.1', '--out', join(out, 'q'), '--json', '--plugin', pluginPath);
    expect(quantized.code, quantized.stderr).toBe(0);
    expect((JSON.parse(quantized.stdout) as { sizes: { paperBitsPerWeight: number } }).sizes.paperBitsPerWeight).toBeCloseTo(rows[0]!.sizes.paperBitsPerWeight, 12);
    const evaluated = await layerquant('eval', join(out, 'q'), '--dataset', 'brown-test', '--max-tokens', '1024', '--json');
    expect(evaluated.code, evaluated.stderr).toBe(0);
    expect((JSON.parse(evaluated.stdout) as { perplexity: number }).perplexity).toBeCloseTo(rows[0]!.perplexity, 6);
  }, 180_000);

  it('refuses a module that is not a plug-in, naming it', async () => {
    const result = await layerquant('allocate', '--help', '--plugin', './no-such-plugin.js');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/--plugin \.\/no-such-plugin\.js: no file/);
  });
});
