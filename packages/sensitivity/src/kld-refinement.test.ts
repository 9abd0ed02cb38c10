import { buildCostProblem, refineByMeasurement, solveCostProblem, type RefinementRound } from '@layerquant/allocators';
import { quantConfig } from '@layerquant/core';
import { createDecoderBlocks, loadDecoderWeights } from '@layerquant/runtime';
import { randomDecoderSource, tinyConfig } from '@layerquant/runtime/testing';
import { describe, expect, it } from 'vitest';
import { createKldMeasurer } from './end-to-end-kld.js';
import { freemem } from 'node:os';

describe('kld allocation: additive knapsack, then corrected for interactions by measurement (tiny random Llama)', () => {
  it('the corrected allocation is never worse than the additive one, measured; it fits the budget', async () => {
    const config = tinyConfig({ numLayers: 3, hiddenSize: 64, intermediateSize: 128, numHeads: 4, headDim: 16 });
    const weights = await loadDecoderWeights(randomDecoderSource(config, 5), config);
    const ids = Array.from({ length: 4 * 24 }, (_, i) => (i * 37 + 11) % config.vocabSize);
    const measurer = await createKldMeasurer(await createDecoderBlocks(weights), ids, { seqlen: 24, batchSize: 4, availableMemoryBytes: freemem() });
    const ladder = [quantConfig(2, 64), quantConfig(3, 64), quantConfig(4, 64), quantConfig(8, 64)];
    const table = await measurer.marginals(new Map(), () => ladder);
    const rows = measurer.units.flatMap((u) => ladder.map((c, i) => ({ layer: u.layer, module: u.module, bits: c.bits, groupSize: c.groupSize, params: u.params, cost: table.deltas.get(u.key)![i]! })));
    const problem = buildCostProblem(rows, (r) => r.cost, 'kld table');
    const gains: number[] = [];
    for (const [budget, radius, correction] of [[2.8, 1, 'both'], [3.3, 1, 'both'], [3.3, 0, 'marginal']] as const) {
      const additive = solveCostProblem(problem, 'kld', { budget });
      const rounds: RefinementRound[] = [];
      const refined = await refineByMeasurement(problem, additive, measurer, 'kld', { budget, radius, correction, rounds: 3, onRound: (r) => rounds.push(r) });
      const { refinement } = refined;
      expect(refinement.rounds).toEqual(rounds);
      // Round 0 is the additive solution, measured: its loss is the measured KLD of that allocation.
      expect(rounds[0]!.loss).toBe(await measurer.lossOf(new Map(additive.matrices.map((m) => [m.key, m.config]))));
      // The additive sum underestimates the loss of quantizing everything at once (errors compound).
      expect(rounds[0]!.predicted).toBeGreaterThan(0);
      // Never worse than the additive solution, and what it reports is what it returns.
      const chosen = rounds.find((r) => r.round === refinement.chosen)!;
      expect(chosen.loss).toBeLessThanOrEqual(rounds[0]!.loss);
      expect(await measurer.lossOf(new Map(refined.matrices.map((m) => [m.key, m.config])))).toBe(chosen.loss);
      expect(refined.totals.bpp).toBeLessThanOrEqual(budget + 1e-9);
      expect(['converged', 'worse', 'rounds']).toContain(refinement.stopped);
      gains.push(1 - chosen.loss / rounds[0]!.loss);
      console.log(`budget ${budget} radius ${radius} ${correction}: ${rounds.map((r) => `step ${r.round}${r.correction ? ` (${r.correction})` : ''}: KLD ${r.loss.toExponential(4)} (predicted ${r.predicted.toExponential(4)}, ${r.changed} changed${r.penalty ? `, penalty ${r.penalty.toExponential(2)}` : ''})`).join('; ')}; stopped ${refinement.stopped}, chose step ${refinement.chosen}`);
    }
    // The default (both cost models, radius 1) lowers the measured KLD of the additive solution at both budgets here.
    expect(gains[0]!).toBeGreaterThan(0);
    expect(gains[1]!).toBeGreaterThan(0);
  });
});
