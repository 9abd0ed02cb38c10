import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUDGET_STOPS, LINEAR_MODULES } from '@layerquant/core';
import { shippedOraclesDir } from '@layerquant/fixtures';
import { describe, expect, it } from 'vitest';
import { analyse } from './analysis.js';
import { validateNotebookData, type NotebookData } from './data.js';
import { allocate, methodLabel, methods } from './methods.js';

// What the page computes, run in Node against the PyTorch oracles of the shipped model: the statistics come
// from the oracle CSVs (not from notebook.json, which the lead may regenerate from our own measurements).

const committed = validateNotebookData(JSON.parse(readFileSync(new URL('../public/data/notebook.json', import.meta.url), 'utf8')), 'notebook.json');
const oracles = JSON.parse(readFileSync(join(shippedOraclesDir, 'oracles.json'), 'utf8')) as {
  table: { method: string; budget: number; bpp: number }[];
  outliers: Record<'sensiboost' | 'kurtboost', Record<'0' | '1', Record<string, number[]>>>;
};
const data: NotebookData = {
  ...committed,
  statistics: {
    fnormCsv: readFileSync(join(shippedOraclesDir, 'fnorm.csv'), 'utf8'),
    sensitivityCsv: readFileSync(join(shippedOraclesDir, 'sensitivity.csv'), 'utf8'),
  },
};
const analysis = analyse(data);

function knobsOf(method: string, budget: number) {
  const boost = /^(sensiboost|kurtboost)-(\d)-(\d)$/.exec(method);
  if (boost) return { method: boost[1]!, budget, boostStop: Number(boost[2]), topM: Number(boost[3]) };
  return { method: method === 'hqq' ? 'uniform' : method, budget, boostStop: 2, topM: 1 };
}

describe('the page\'s analysis on the oracle tables', () => {
  it('reads 224 matrices with their checkpoint shapes', () => {
    expect(analysis.matrices).toHaveLength(224);
    expect(analysis.shapes.get('0.self_attn.k_proj')).toEqual([128, 256]);
    expect(analysis.shapes.get('5.mlp.down_proj')).toEqual([256, 640]);
    expect(analysis.sensitivityPoints).toHaveLength(4 * 32);
    expect(analysis.kurtosisPoints).toHaveLength(224);
  });

  it('finds the outlier layers of the authors\' code for top_m 1 and all', () => {
    for (const topM of [0, 1] as const) {
      const found = analysis.outliers(topM);
      for (const module of LINEAR_MODULES) {
        expect(found.sensitivity[module].map((o) => o.layer), `sensitivity ${module} top_m ${topM}`).toEqual(oracles.outliers.sensiboost[`${topM}`][module]);
        expect(found.kurtosis[module].map((o) => o.layer), `kurtosis ${module} top_m ${topM}`).toEqual(oracles.outliers.kurtboost[`${topM}`][module]);
      }
    }
  });

  it('allocates every method and budget of the oracle table at its bits per weight', () => {
    expect(oracles.table).toHaveLength(48);
    for (const row of oracles.table) {
      const { allocation, memory } = allocate(analysis, knobsOf(row.method, row.budget));
      // Paper accounting is exact arithmetic on dyadic fractions: equal to the last bits.
      expect(memory.paperBitsPerWeight, `${row.method} @ ${row.budget}`).toBeCloseTo(row.bpp, 12);
      expect(allocation.totals.bpp, `${row.method} @ ${row.budget}`).toBeCloseTo(row.bpp, 12);
    }
  });

  it('reports extra memory over uniform and a real packed size above the paper\'s for 3-bit codes', () => {
    const { memory, uniformMemory } = allocate(analysis, knobsOf('sensiboost-2-1', 2.25));
    // Extra memory is the bpp ratio: the paper's MB is bpp * params / 8 / 2^20 for the same params.
    expect(100 * (memory.paperMB / uniformMemory.paperMB - 1)).toBeCloseTo(100 * (2.28118896484375 / 2.25390625 - 1), 10);
    const threeBit = allocate(analysis, { method: 'uniform', budget: 3.25, boostStop: 2, topM: 1 }).memory;
    // 3-bit codes pack 10 per 32-bit word (3.2 bits each), so the real size exceeds the paper's 3 + meta.
    expect(threeBit.packedBitsPerWeight).toBeGreaterThan(3.2);
  });

  it('labels result rows by method and options', () => {
    expect(methodLabel('sensiboost', { boostStop: 3, topM: 0, sensitivityBits: 4 })).toBe('SensiBoost (stop 3, all outliers)');
    expect(methodLabel('uniform', {})).toBe('HQQ uniform');
  });
});

describe('the committed notebook.json', () => {
  it('is small, labelled with its source, with results at budget stops or, between stops, within the budget', () => {
    const size = readFileSync(new URL('../public/data/notebook.json', import.meta.url)).length;
    expect(size).toBeLessThan(2 * 2 ** 20);
    expect(['oracles', 'layerquant']).toContain(committed.source);
    expect(committed.tensors).toHaveLength(committed.model.tensors);
    const stops = BUDGET_STOPS.map((s) => s.budget);
    for (const row of committed.results) {
      if (stops.includes(row.budget)) continue;
      // Between stops: a plug-in of the registry, within the budget (knapsacks at it, uniform and boosts at the stop below).
      expect(methods.has(row.method), row.method).toBe(true);
      expect(row.bpp, `${row.method} @ ${row.budget}`).toBeLessThanOrEqual(row.budget);
    }
    for (const row of committed.results) {
      expect(row.memoryMB).toBeCloseTo((row.bpp * committed.model.linearParams) / 8 / 2 ** 20, 6);
    }
  });
});
