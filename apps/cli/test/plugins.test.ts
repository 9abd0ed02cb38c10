import { llama2PaperDir, shippedModelDir } from '@layerquant/fixtures';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { matrixTensorName } from '@layerquant/core';
import { openCheckpoint } from '@layerquant/tensor-io';
import { loadPlugins } from '@layerquant/pipeline';
import { splitPluginArgs } from '../src/args.js';
import { cli } from './run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'layerquant-plugins-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A self-contained allocator module (no imports): every matrix at the ladder's first config.
const allocatorModule = join(dir, 'first-config.mjs');
writeFileSync(
  allocatorModule,
  `export default { allocators: [{
  id: 'first-config', description: 'every matrix at the first config of the ladder', budget: 'any',
  options: [{ name: 'skip', flag: 'skip-layers', type: 'integer', default: 0, min: 0, help: 'layers kept in float' }],
  tablesNeeded: () => ['fnorm'],
  allocate(stats, options, context) {
    const config = (context.configs ?? [{ bits: 2, groupSize: 128, axis: 1, roundZero: false }])[0];
    const seen = new Map();
    for (const r of stats.fnorm.rows) seen.set(r.layer + '.' + r.module, { key: r.layer + '.' + r.module, layer: r.layer, module: r.module, params: r.params });
    const matrices = [...seen.values()].map((m) => ({ ...m, config: m.layer < options.skip ? null : config }));
    const params = matrices.reduce((s, m) => s + m.params, 0);
    const bits = matrices.reduce((s, m) => s + m.params * (m.config ? m.config.bits + 16 / m.config.groupSize + 32 / (m.config.groupSize * 128) : 16), 0);
    return { method: 'first-config', options, budget: context.budget, matrices, totals: { params, bpp: bits / params, memoryMB: bits / 8 / 2 ** 20 } };
  },
}] };\n`,
);
const duplicateModule = join(dir, 'duplicate.mjs');
writeFileSync(duplicateModule, `export default { allocators: [{ id: 'mxq', description: 'x', allocate() {} }] };\n`);
// A metric plug-in (no imports): the largest |w| of every matrix, a table of its own with its CSV form.
const metricModule = join(dir, 'max-abs.mjs');
writeFileSync(
  metricModule,
  `const MODULES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
export default { metrics: [{
  id: 'max-abs', table: 'max-abs', input: 'weights', description: 'largest absolute weight of every matrix',
  async measure(source, options) {
    const rows = [];
    const names = source.tensors.map((t) => t.name).filter((n) => /^model\\.layers\\.\\d+\\./.test(n) && MODULES.some((m) => n.endsWith(m + '.weight')));
    for (const [i, name] of names.entries()) {
      const w = await source.read(name);
      let max = 0;
      for (const v of w.data) max = Math.max(max, Math.abs(v));
      rows.push({ layer: Number(name.split('.')[2]), module: MODULES.find((m) => name.endsWith(m + '.weight')), maxAbs: max });
      options.onProgress?.(i + 1, names.length);
    }
    return { rows };
  },
  format: (t) => 'layer,module,max_abs\\n' + t.rows.map((r) => r.layer + ',' + r.module + ',' + r.maxAbs).join('\\n') + '\\n',
  parse: (text) => ({ rows: text.trim().split('\\n').slice(1).map((l) => { const [layer, module, v] = l.split(','); return { layer: Number(layer), module, maxAbs: Number(v) }; }) }),
}] };\n`,
);
const emptyModule = join(dir, 'empty.mjs');
writeFileSync(emptyModule, 'export const nothing = 1;\n');

describe('--plugin', () => {
  it('is taken out of any command line, repeated or with =', () => {
    expect(splitPluginArgs(['allocate', '--plugin', 'a.js', '--method', 'x', '--plugin=b'])).toEqual({ plugins: ['a.js', 'b'], argv: ['allocate', '--method', 'x'] });
    expect(() => splitPluginArgs(['allocate', '--plugin'])).toThrow(/needs a module/);
  });

  it('adds a module\'s allocator to the registry, with its option as a flag, usable by allocate', async () => {
    const registries = await loadPlugins([allocatorModule]);
    expect(registries.allocators.ids()).toContain('first-config');
    expect(registries.allocators.get('first-config').label).toBe('first-config');
    const help = await cli('allocate', '--help', '--plugin', allocatorModule);
    expect(help.stdout).toMatch(/first-config\s+every matrix at the first config/);
    expect(help.stdout).toMatch(/--skip-layers <v>\s+layers kept in float \(default 0\) \[first-config\]/);
    const result = await cli('allocate', '--stats', llama2PaperDir, '--method', 'first-config', '--skip-layers', '2', '--budget', '8', '--json', '--plugin', allocatorModule);
    expect(result.stderr).toBe('');
    // The --json schema's allocation: config name (or null for float) per matrix key.
    const allocation = Object.entries((JSON.parse(result.stdout) as { allocation: Record<string, string | null> }).allocation);
    expect(allocation.filter(([, config]) => config === null).map(([key]) => Number(key.split('.')[0]))).toEqual(Array.from({ length: 14 }, (_, i) => Math.floor(i / 7)));
    expect(new Set(allocation.filter(([, config]) => config !== null).map(([, config]) => config))).toEqual(new Set(['b2g128']));
  });

  it('refuses a missing file, a module without plug-ins and a duplicate id, naming the module', async () => {
    const missing = await cli('allocate', '--help', '--plugin', join(dir, 'nope.js'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/--plugin .*nope\.js: no file/);
    const empty = await cli('inspect', '--plugin', emptyModule);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/empty\.mjs: exports no plug-ins; its default export must be \{ allocators\?, quantizers\?, metrics\? \}/);
    const duplicate = await cli('allocate', '--help', '--plugin', duplicateModule);
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toMatch(/allocator "mxq" is already registered/);
    const notAPackage = await cli('allocate', '--help', '--plugin', 'layerquant-no-such-plugin-package');
    expect(notAPackage.stderr).toMatch(/package not found/);
  });

  it('--quantizer chooses the quantizer; one that is not registered is an error listing those that are', async () => {
    const result = await cli('quantize', shippedModelDir, '--method', 'uniform', '--budget', '4.25', '--quantizer', 'awq', '--out', join(dir, 'q'));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/unknown quantizer "awq"; available: rtn, hqq, gptq/);
  });

  it('sensitivity measures the registry\'s metrics: a --plugin metric writes its own table beside the built-ins\'', async () => {
    const out = join(dir, 'sens');
    const help = await cli('sensitivity', '--help', '--plugin', metricModule);
    expect(help.stdout).toMatch(/max-abs\s+max-abs\.csv\s+weights only: largest absolute weight/);
    const result = await cli('sensitivity', shippedModelDir, '--metrics', 'max-abs,kurtosis', '--out', out, '--json', '--plugin', metricModule);
    expect(result.stderr).toBe('');
    const json = JSON.parse(result.stdout) as { metrics: string[]; files: string[]; seconds: Record<string, number> };
    expect(json.metrics).toEqual(['kurtosis', 'max-abs']);
    expect(json.files).toEqual([join(out, 'kurtosis.csv'), join(out, 'max-abs.csv')]);
    expect(existsSync(join(out, 'sensitivity.csv'))).toBe(false);
    // The table as the plug-in wrote it, against the weights read here.
    const lines = readFileSync(join(out, 'max-abs.csv'), 'utf8').trim().split('\n');
    expect(lines[0]).toBe('layer,module,max_abs');
    expect(lines).toHaveLength(1 + 32 * 7);
    const checkpoint = await openCheckpoint(shippedModelDir);
    const [, module, value] = lines.find((l) => l.startsWith('3,mlp.down_proj,'))!.split(',');
    const weight = await checkpoint.read(matrixTensorName(3, module as 'mlp.down_proj'));
    await checkpoint.close();
    expect(Number(value)).toBe(weight.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
    const unknown = await cli('sensitivity', shippedModelDir, '--metrics', 'max-abs', '--out', join(dir, 'sens2'));
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/--metrics.*"max-abs" is not a metric; the registry has activation-sensitivity, fnorm, kurtosis, measured/);
  });

  it('experiment --quantizer: the quantizer is part of every cell\'s key and row; RTN cells match quantize --method rtn, then eval', async () => {
    const out = join(dir, 'exp');
    const args = ['experiment', shippedModelDir, '--methods', 'hqq', '--budgets', '4.25', '--max-tokens', '1024', '--no-fp', '--out', out, '--json'];
    const rtn = await cli(...args, '--quantizer', 'rtn');
    expect(rtn.code).toBe(0);
    const hqq = await cli(...args);
    expect(hqq.code).toBe(0);
    const rowOf = (stdout: string) => (JSON.parse(stdout) as { rows: { quantizer: string; perplexity: number }[] }).rows[0]!;
    expect(rowOf(rtn.stdout).quantizer).toBe('rtn');
    expect(rowOf(hqq.stdout).quantizer).toBe('hqq');
    expect(rowOf(rtn.stdout).perplexity).not.toBe(rowOf(hqq.stdout).perplexity);
    // Both cells stay in results.json under different keys, each with its quantizer in the settings.
    const cells = Object.values((JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { cells: Record<string, { settings: { quantizer: { id: string } } }> }).cells);
    expect(cells.map((c) => c.settings.quantizer.id).sort()).toEqual(['hqq', 'rtn']);
    // Uniform at 4.25 is b4g64 everywhere: the same model as quantize --method rtn --config b4g64, evaluated apart.
    const model = join(dir, 'rtn-b4g64');
    expect((await cli('quantize', shippedModelDir, '--method', 'rtn', '--config', 'b4g64', '--out', model)).code).toBe(0);
    const evaluated = await cli('eval', model, '--dataset', 'brown-test', '--max-tokens', '1024', '--json');
    expect((JSON.parse(evaluated.stdout) as { perplexity: number }).perplexity).toBeCloseTo(rowOf(rtn.stdout).perplexity, 9);
    const flag = await cli(...args, '--quantizer', 'rtn', '--kappa', '1.01');
    expect(flag.code).toBe(1);
    expect(flag.stderr).toMatch(/--kappa.*applies to --quantizer hqq only, not rtn/);
  }, 120_000);
});
