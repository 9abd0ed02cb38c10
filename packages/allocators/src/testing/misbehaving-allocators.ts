import { allocationTotals, quantConfig, type Allocation, type MatrixAllocation } from '@layerquant/core';
import { uniformAllocator } from '../boost.js';
import { definePlugin, type AllocatorPlugin } from '../registry.js';
import { matricesOf, type ModelStats } from '../stats.js';

/** A plug-in that misbehaves one way, and what the host must answer (a PluginError matching `error`), or `accepted` with the host's own totals. */
export interface MisbehavingAllocator {
  readonly label: string;
  readonly plugin: AllocatorPlugin;
  /** The error the host must throw, naming the plug-in; undefined: the host accepts it with totals it computed. */
  readonly error?: RegExp;
}

/**
 * Allocator plug-ins that return what a careless or hostile plug-in returns (issue 27): configs off the ladder, 7-bit or
 * negative groups, NaN bits, half the matrices, duplicate or unknown matrices, wrong parameter counts, made-up or NaN
 * totals, an allocation over the budget, an exception, a Promise. Each starts from uniform's correct allocation at the
 * budget's stop and breaks it. For hosts' tests: every one must be refused with a PluginError naming it (or, for
 * lying totals, accepted with the host's totals).
 */
export function misbehavingAllocators(): MisbehavingAllocator[] {
  const make = (id: string, budget: 'stop' | 'any', edit: (correct: Allocation, stats: ModelStats) => unknown): AllocatorPlugin =>
    definePlugin({
      id,
      label: id,
      description: `misbehaving allocator: ${id}`,
      budget,
      options: [],
      nameOptions: [],
      tablesNeeded: () => ['fnorm'],
      allocate: (stats, _options, context) => edit(uniformAllocator.allocate(stats, { budget: 4.25, ...(context.configs ? { configs: context.configs } : {}) }), stats) as Allocation,
    });
  const withMatrices = (a: Allocation, matrices: unknown[]) => ({ ...a, matrices });
  const setConfig = (config: unknown) => (a: Allocation) => withMatrices(a, a.matrices.map((m, i) => (i === 3 ? { ...m, config } : m)));
  return [
    { label: 'a config off the ladder (b5g64)', plugin: make('off-ladder', 'stop', setConfig(quantConfig(5, 64))), error: /allocator "off-ladder" gave matrix 0\.self_attn\.o_proj b5g64, which is not on the ladder/ },
    { label: '7-bit codes', plugin: make('seven-bits', 'stop', setConfig({ bits: 7, groupSize: 64, axis: 1, roundZero: false })), error: /allocator "seven-bits" gave matrix 0\.self_attn\.o_proj b7g64, which is not on the ladder/ },
    { label: 'a negative group size', plugin: make('negative-group', 'stop', setConfig({ bits: 4, groupSize: -64, axis: 1, roundZero: false })), error: /allocator "negative-group" gave matrix 0\.self_attn\.o_proj b4g-64, which is not on the ladder/ },
    { label: 'NaN bits', plugin: make('nan-bits', 'stop', setConfig({ bits: Number.NaN, groupSize: 64, axis: 1, roundZero: false })), error: /allocator "nan-bits" gave matrix 0\.self_attn\.o_proj the config \{"bits":"NaN"/ },
    { label: 'no config at all', plugin: make('no-config', 'stop', setConfig(undefined)), error: /allocator "no-config" gave matrix 0\.self_attn\.o_proj no config/ },
    { label: 'half the matrices', plugin: make('half', 'stop', (a) => withMatrices(a, a.matrices.slice(0, a.matrices.length >> 1))), error: /allocator "half" allocated \d+ of the model's \d+ matrices; missing / },
    { label: 'a matrix twice', plugin: make('twice', 'stop', (a) => withMatrices(a, [...a.matrices, a.matrices[0]])), error: /allocator "twice" allocated matrix 0\.self_attn\.q_proj twice/ },
    { label: 'a matrix the model does not have', plugin: make('unknown', 'stop', (a) => withMatrices(a, [...a.matrices, { ...a.matrices[0]!, key: '99.self_attn.q_proj', layer: 99 }])), error: /allocator "unknown" allocated "99\.self_attn\.q_proj", which is not a matrix of the model/ },
    { label: 'a wrong parameter count', plugin: make('params', 'stop', (a) => withMatrices(a, a.matrices.map((m, i) => (i === 2 ? { ...m, params: m.params * 2 } : m)))), error: /allocator "params" gave matrix 0\.self_attn\.v_proj \d+ parameters; it has \d+/ },
    { label: 'an entry that is not an object', plugin: make('not-object', 'stop', (a) => withMatrices(a, [...a.matrices.slice(1), 'q_proj'])), error: /allocator "not-object" returned a matrix entry "q_proj", not an object/ },
    { label: 'made-up totals (2.5 bits, 0.001 MiB for 8.5 bits)', plugin: make('lying-totals', 'stop', (a) => ({ ...a, totals: { params: 1, bpp: 2.5, memoryMB: 0.001 } })) },
    { label: 'NaN totals', plugin: make('nan-totals', 'stop', (a) => ({ ...a, totals: { params: Number.NaN, bpp: Number.NaN, memoryMB: Number.NaN } })) },
    {
      label: 'an allocation over the budget',
      plugin: make('over-budget', 'any', (a) => withMatrices(a, a.matrices.map((m): MatrixAllocation => ({ ...m, config: quantConfig(8, 32) })))),
      error: /allocator "over-budget" allocated 8\.5078 bits per weight, over the budget of/,
    },
    { label: 'an exception', plugin: make('throws', 'stop', () => { throw new TypeError("Cannot read properties of undefined (reading 'rows')"); }), error: /allocator "throws" failed in allocate\(\): TypeError: Cannot read properties of undefined/ },
    { label: 'a Promise', plugin: make('async', 'stop', async (a) => a), error: /allocator "async" returned a Promise/ },
    { label: 'nothing', plugin: make('nothing', 'stop', () => null), error: /allocator "nothing" returned null, not an allocation/ },
  ];
}

/** What a host must report for an accepted plug-in: the totals of the matrices, computed by the host. */
export function hostTotals(stats: ModelStats, allocation: Allocation): ReturnType<typeof allocationTotals> {
  const params = new Map(matricesOf(stats).map((m) => [m.key, m.params]));
  return allocationTotals(allocation.matrices.map((m) => ({ ...m, params: params.get(m.key)! })));
}
