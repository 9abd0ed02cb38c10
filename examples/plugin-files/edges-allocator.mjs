// An allocator plug-in in one file (no package.json, no build): every matrix at the richest ladder config the budget
// allows, then the first and last layers one stop up while the budget holds (the layers llama.cpp's K-quant mixes
// favour). Load it with `--plugin ./edges-allocator.mjs`.
import { definePlugin, matricesOf } from '@layerquant/allocators';
import { InfeasibleBudgetError, PAPER_CONFIGS, allocationTotals, bitsPerWeight } from '@layerquant/core';

export const edgesAllocator = definePlugin({
  id: 'edges',
  label: 'Edges',
  description: 'uniform at the richest config within the budget, the first and last layers one stop up where it fits',
  budget: 'any',
  options: [{ name: 'layers', flag: 'edge-layers', type: 'integer', default: 1, min: 0, help: 'layers at each end given a stop more' }],
  nameOptions: ['layers'],
  // Reads no statistics table: the matrix list alone (matricesOf works on any table the statistics hold).
  tablesNeeded: () => [],
  allocate(stats, options, context) {
    const ladder = [...(context.configs ?? PAPER_CONFIGS)].sort((a, b) => bitsPerWeight(a) - bitsPerWeight(b));
    const matrices = matricesOf(stats);
    const fits = (list) => allocationTotals(list).bpp <= context.budget;
    const at = (stop) => matrices.map((m) => ({ ...m, config: ladder[stop] }));
    let stop = ladder.length - 1;
    while (stop >= 0 && !fits(at(stop))) stop--;
    if (stop < 0) throw new InfeasibleBudgetError(context.budget, Number(bitsPerWeight(ladder[0]).toFixed(4)));
    const layers = Math.max(...matrices.map((m) => m.layer)) + 1;
    const edge = (layer) => layer < options.layers || layer >= layers - options.layers;
    const boosted = matrices.map((m) => ({ ...m, config: ladder[edge(m.layer) && stop + 1 < ladder.length ? stop + 1 : stop] }));
    const chosen = fits(boosted) ? boosted : at(stop);
    return { method: 'edges', options, budget: context.budget, matrices: chosen, totals: allocationTotals(chosen) };
  },
});

export default { allocators: [edgesAllocator] };
