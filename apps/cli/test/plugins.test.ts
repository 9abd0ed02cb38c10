import { llama2PaperDir, shippedModelDir } from '@layerquant/fixtures';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPlugins, splitPluginArgs } from '../src/plugins.js';
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
    const allocation = JSON.parse(result.stdout) as { matrices: { layer: number; config: { bits: number } | null }[] };
    expect(allocation.matrices.filter((m) => m.config === null)).toHaveLength(2 * 7);
    expect(new Set(allocation.matrices.filter((m) => m.config).map((m) => m.config!.bits))).toEqual(new Set([2]));
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
    const result = await cli('quantize', shippedModelDir, '--method', 'uniform', '--budget', '4.25', '--quantizer', 'gptq', '--out', join(dir, 'q'));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/unknown quantizer "gptq"; available: rtn, hqq/);
  });
});
