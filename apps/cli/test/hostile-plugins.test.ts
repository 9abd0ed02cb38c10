import { shippedOraclesDir } from '@layerquant/fixtures';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { directorySnapshot } from '@layerquant/tensor-io/testing';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, cli, expectRefused } from './run-cli.js';

/**
 * Plug-ins that misbehave (issue 27), loaded with --plugin the way users load theirs: the host checks their output in
 * one place and names the plug-in in a typed error (exit 1, one line), whichever command runs them; a module whose
 * top-level await never settles is named too (not Node's silent exit 13). The package suites
 * (misbehavingAllocators, misbehavingQuantizers) cover every kind of misbehaviour; these run a few end to end.
 */

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-bad-plugins-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const model = join(scratch, 'model');
const previous = join(scratch, 'previous-out');

// Self-contained modules (no imports): each allocator starts from every matrix of fnorm.csv at b4g64, then breaks it.
const allocators = join(scratch, 'bad-allocators.mjs');
writeFileSync(
  allocators,
  `const base = (stats) => {
  const seen = new Map();
  for (const r of stats.fnorm.rows) seen.set(r.layer + '.' + r.module, { key: r.layer + '.' + r.module, layer: r.layer, module: r.module, params: r.params, config: { bits: 4, groupSize: 64, axis: 1, roundZero: false, symmetric: false } });
  return [...seen.values()];
};
const plugin = (id, budget, edit) => ({ id, description: id, budget, tablesNeeded: () => ['fnorm'], allocate: (stats, options, context) => edit({ method: id, options, budget: context.budget, matrices: base(stats), totals: { params: 1, bpp: 2.5, memoryMB: 0.001 } }) });
export default { allocators: [
  plugin('half', 'stop', (a) => ({ ...a, matrices: a.matrices.slice(0, a.matrices.length >> 1) })),
  plugin('nan-bits', 'stop', (a) => ({ ...a, matrices: a.matrices.map((m, i) => (i === 5 ? { ...m, config: { ...m.config, bits: NaN } } : m)) })),
  plugin('greedy', 'any', (a) => ({ ...a, matrices: a.matrices.map((m) => ({ ...m, config: { ...m.config, bits: 8, groupSize: 32 } })) })),
  plugin('lying-totals', 'stop', (a) => a),
  plugin('throws', 'stop', () => { throw new TypeError('boom in the plug-in'); }),
] };\n`,
);
const quantizers = join(scratch, 'bad-quantizers.mjs');
writeFileSync(
  quantizers,
  `const nanScale = { id: 'nan-scale', description: 'scales of NaN', options: [],
  quantize(weight, config) {
    const [rows, cols] = weight.shape;
    const groups = rows * cols / config.groupSize;
    const words = rows * Math.ceil(cols * config.bits / 32);
    return { name: weight.name, shape: [rows, cols], config, method: 'nan-scale', packed: new Uint32Array(words), packing: 'rows-u32-lsb', scale: new Float32Array(groups).fill(NaN), zero: new Float32Array(groups) };
  },
  dequantize: (q) => new Float32Array(q.shape[0] * q.shape[1]).fill(NaN) };
const throws = { id: 'throws-q', description: 'throws', options: [], quantize() { throw new RangeError('Invalid typed array length: -1'); }, dequantize() { return new Float32Array(0); } };
export default { quantizers: [nanScale, throws] };\n`,
);
const neverLoads = join(scratch, 'never-loads.mjs');
writeFileSync(neverLoads, `await new Promise(() => {});\nexport default { allocators: [] };\n`);

let before: Record<string, string>;
beforeAll(async () => {
  await writeModelDirectory(model, tinyConfig({ hiddenSize: 64, intermediateSize: 128, headDim: 16 }), { seed: 5 });
  expect((await cli('quantize', model, '--method', 'rtn', '--config', 'b4g64', '--out', previous)).code).toBe(0);
  before = directorySnapshot(previous);
});

describe('misbehaving plug-ins are named in a typed error, and nothing is written', () => {
  const allocate = (method: string, budget = '4.25') => ['allocate', '--stats', shippedOraclesDir, '--method', method, '--budget', budget, '--plugin', allocators];
  const cases: Array<[string, () => string[], RegExp]> = [
    ['an allocator that allocates half the matrices (allocate)', () => allocate('half'), /allocator "half" allocated 112 of the model's 224 matrices; missing 16\.self_attn\.q_proj/],
    ['an allocator that returns NaN bits (allocate)', () => allocate('nan-bits'), /allocator "nan-bits" gave matrix 0\.mlp\.up_proj the config \{"bits":"NaN"/],
    ['an allocator over its budget (allocate)', () => allocate('greedy', '3'), /allocator "greedy" allocated 8\.5078 bits per weight, over the budget of 3/],
    ['an allocator that throws (allocate)', () => allocate('throws'), /allocator "throws" failed in allocate\(\): TypeError: boom in the plug-in/],
    ['a quantizer whose scales are NaN (quantize)', () => ['quantize', model, '--quantizer', 'nan-scale', '--config', 'b4g64', '--out', previous, '--force', '--plugin', quantizers], /quantizer "nan-scale" quantize\(model\.layers\.0\.self_attn\.q_proj\.weight, b4g64\) returned scale NaN for group 0/],
    ['a quantizer that throws (quantize)', () => ['quantize', model, '--quantizer', 'throws-q', '--config', 'b4g64', '--out', previous, '--force', '--plugin', quantizers], /quantizer "throws-q" failed in quantize\(model\.layers\.0\.self_attn\.q_proj\.weight\): RangeError: Invalid typed array length/],
  ];
  for (const [label, argv, message] of cases) {
    it(label, async () => {
      expectRefused(await cli(...argv()), message);
      expect(directorySnapshot(previous)).toEqual(before);
    });
  }

  it('an allocator that lies about its totals: the host reports the totals of what it allocated (4.25 bits, not 2.5)', async () => {
    const { code, stdout } = await cli(...allocate('lying-totals'), '--json');
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as { sizes: { paperBitsPerWeight: number } };
    expect(result.sizes.paperBitsPerWeight).toBeCloseTo(4.25, 2);
  });

  it('a module whose top-level await never settles: exit 1 naming it, not exit 13 (the built command)', async () => {
    const { code, stderr } = await bin('inspect', model, '--plugin', neverLoads);
    expect(stderr).toMatch(/--plugin .*never-loads\.mjs: never finished loading: its top-level await never settles/);
    expect(code).toBe(1);
  });
});
