import { shippedModelDir } from '@layerquant/fixtures';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { crestMetric } from '../src/index.js';

// The built CLI with this package's built plug-ins: no app, and no package of the pipeline, knows the crest table.
const packageDir = fileURLToPath(new URL('..', import.meta.url));
const pluginPath = join(packageDir, 'dist/index.js');
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

describe('a metric plug-in whose table feeds an allocator plug-in, through the built CLI', () => {
  it('has the built plug-ins and CLI (run `pnpm build` first)', () => {
    expect(existsSync(pluginPath), pluginPath).toBe(true);
    expect(existsSync(binPath), binPath).toBe(true);
  });

  it('quantize computes the crest table (cached as crest.csv) and allocates from it; sensitivity writes the same table, allocate reads it', async () => {
    const out = await mkdtemp(join(tmpdir(), 'layerquant-crest-'));
    dirs.push(out);
    const quantized = await layerquant('quantize', shippedModelDir, '--method', 'crest-boost-2', '--budget', '3.25', '--quantizer', 'rtn', '--out', join(out, 'q'), '--json', '--plugin', pluginPath);
    expect(quantized.stderr).toBe('');
    expect(quantized.code).toBe(0);
    const report = JSON.parse(quantized.stdout) as { method: string; statistics: string; configs: Record<string, number>; allocation: Record<string, string> };
    expect(report.method).toBe('crest-boost-2');
    expect(report.configs).toEqual({ b3g64: 222, b3g32: 2 });
    // The cache holds the table the metric measured, in its own CSV; nothing else was measured.
    const cache = join(out, 'q', 'stats');
    const [key] = readdirSync(cache).filter((name) => !name.startsWith('.'));
    expect(readdirSync(join(cache, key!)).sort()).toEqual(['crest.csv', 'settings.json']);
    const table = crestMetric.parse!(readFileSync(join(cache, key!, 'crest.csv'), 'utf8'));
    const top = [...table.rows].sort((a, b) => b.crest - a.crest).slice(0, 2).map((r) => `${r.layer}.${r.module}`).sort();
    expect(Object.entries(report.allocation).filter(([, c]) => c === 'b3g32').map(([k]) => k).sort()).toEqual(top);

    // `sensitivity --metrics crest` measures the same table; `allocate --stats` reads it back through the plug-in's parse.
    const measured = await layerquant('sensitivity', shippedModelDir, '--metrics', 'crest', '--out', join(out, 'stats'), '--plugin', pluginPath);
    expect(measured.code, measured.stderr).toBe(0);
    expect(readFileSync(join(out, 'stats', 'crest.csv'), 'utf8')).toBe(readFileSync(join(cache, key!, 'crest.csv'), 'utf8'));
    const allocated = await layerquant('allocate', '--stats', join(out, 'stats'), '--method', 'crest-boost-2', '--budget', '3.25', '--json', '--plugin', pluginPath);
    expect(allocated.code, allocated.stderr).toBe(0);
    expect((JSON.parse(allocated.stdout) as { allocation: Record<string, string> }).allocation).toEqual(report.allocation);
  }, 180_000);

  it('experiment runs it as a grid cell without --stats', async () => {
    const out = await mkdtemp(join(tmpdir(), 'layerquant-crest-grid-'));
    dirs.push(out);
    const grid = await layerquant('experiment', shippedModelDir, '--methods', 'crest-boost-2', '--budgets', '3.25', '--no-fp', '--max-tokens', '1024', '--out', out, '--json', '--plugin', pluginPath);
    expect(grid.code, grid.stderr).toBe(0);
    const rows = (JSON.parse(grid.stdout) as { rows: { method: string; perplexity: number; extraMemoryPercent: number }[] }).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0]!.method).toBe('crest-boost-2');
    expect(Number.isFinite(rows[0]!.perplexity)).toBe(true);
    // Two matrices one stop up: more memory than HQQ uniform at 3.25.
    expect(rows[0]!.extraMemoryPercent).toBeGreaterThan(0);
  }, 180_000);
});
