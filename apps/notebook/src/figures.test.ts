import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { llama2PaperDir } from '@layerquant/fixtures';
import { describe, expect, it } from 'vitest';
import { EDGE_TOLERANCE, MAX_INTERPOLATION_GAP, deltaAgainstUniform, uniformBaselineAt } from './figures.js';
import { PAGE_PARAMETER_LIMIT, memoryFit } from './live/memory-fit.js';
import { labelLanes } from './plots.js';
import { PUBLISHED_UNIFORM, parsePublishedResults, publishedFloat, publishedPoints, seriesOf } from './published.js';

const csvText = readFileSync(join(llama2PaperDir, 'published-results.csv'), 'utf8');

describe('the change against HQQ uniform (Figure 5 and the published cell)', () => {
  const uniform = [
    { bpp: 3.13, ppl: 6.2 },
    { bpp: 3.25, ppl: 5.8 },
    { bpp: 4.13, ppl: 5.3 },
    { bpp: 8.13, ppl: 5.2 },
  ];

  it('is exact at a uniform point and linear between two', () => {
    for (const u of uniform) expect(uniformBaselineAt(uniform, u.bpp)).toBe(u.ppl);
    // A linear perplexity curve is reproduced anywhere between its points.
    const line = (b: number) => 10 - 1.5 * b;
    const linear = [3, 3.5, 4.25].map((bpp) => ({ bpp, ppl: line(bpp) }));
    for (const bpp of [3.01, 3.2, 3.49, 3.7, 4.2]) expect(uniformBaselineAt(linear, bpp)).toBeCloseTo(line(bpp), 12);
  });

  it('is the nearest end point just outside the range, undefined further out and across a gap wider than the limit', () => {
    expect(uniformBaselineAt(uniform, 3.13 - EDGE_TOLERANCE / 2)).toBe(6.2);
    expect(uniformBaselineAt(uniform, 8.13 + EDGE_TOLERANCE / 2)).toBe(5.2);
    expect(uniformBaselineAt(uniform, 3.13 - 2 * EDGE_TOLERANCE)).toBeUndefined();
    expect(uniformBaselineAt(uniform, 9)).toBeUndefined();
    expect(8.13 - 4.13).toBeGreaterThan(MAX_INTERPOLATION_GAP);
    expect(uniformBaselineAt(uniform, 6)).toBeUndefined();
  });

  it('compares every published point that has a baseline, and nothing else', () => {
    const rows = parsePublishedResults(csvText, 'published-results.csv');
    const points = publishedPoints(rows, 'wikitext');
    const hqq = rows.filter((r) => r.algorithm === 'hqq');
    const deltas = deltaAgainstUniform(points, PUBLISHED_UNIFORM, 0);
    expect(deltas.every((d) => d.series !== PUBLISHED_UNIFORM)).toBe(true);
    for (const d of deltas) expect(d.delta).toBeCloseTo(d.ppl - d.baseline, 12);
    // At HQQ's own budget stops the baseline is HQQ's published figure, read straight from the CSV.
    for (const d of deltas.filter((p) => hqq.some((h) => h.bpp === p.bpp))) expect(d.baseline).toBe(hqq.find((h) => h.bpp === d.bpp)!.wikitext);
    // Without an edge tolerance, points below HQQ's lowest stop (3.13) have no baseline.
    expect(deltas.some((d) => d.bpp < Math.min(...hqq.map((h) => h.bpp)))).toBe(false);
  });
});

describe('published-results.csv', () => {
  it('reads every row, with the series the authors ran', () => {
    const rows = parsePublishedResults(csvText, 'published-results.csv');
    const lines = csvText.trim().split('\n').slice(1);
    expect(rows).toHaveLength(lines.length);
    const count = (series: string) => rows.filter((r) => seriesOf(r) === series).length;
    expect(count('MXQ')).toBe(lines.filter((l) => l.split(',')[4] === 'mxq2').length);
    expect(count('HQQ uniform')).toBe(lines.filter((l) => l.split(',')[1] === 'hqq').length);
    expect(publishedFloat(rows, 'wikitext')).toBe(Number(lines.find((l) => l.split(',')[1] === 'fp16')!.split(',')[5]));
    // Runs the authors left without a perplexity are not plotted.
    expect(publishedPoints(rows, 'wikitext').length).toBe(rows.filter((r) => r.algorithm !== 'fp16' && Number.isFinite(r.wikitext)).length);
  });

  it('names the file and the missing column on a wrong table', () => {
    expect(() => parsePublishedResults('model,algo\nx,hqq\n', 'bad.csv')).toThrow(/bad\.csv.*"config"/);
  });
});

describe('label lanes', () => {
  it('never puts two overlapping labels in one lane', () => {
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let trial = 0; trial < 50; trial++) {
      const labels = Array.from({ length: 12 }, () => ({ x: random() * 800, width: 20 + random() * 80 }));
      const lanes = labelLanes(labels);
      for (let i = 0; i < labels.length; i++) {
        for (let j = i + 1; j < labels.length; j++) {
          if (lanes[i] !== lanes[j]) continue;
          const [a, b] = [labels[i]!, labels[j]!];
          expect(a.x + a.width <= b.x || b.x + b.width <= a.x).toBe(true);
        }
      }
      // Labels far apart share the first lane.
      expect(labelLanes([{ x: 0, width: 10 }, { x: 100, width: 10 }])).toEqual([0, 0]);
    }
  });
});

describe('what fits in the page', () => {
  const summary = (params: number) => ({ dir: 'my-model', params }) as Parameters<typeof memoryFit>[1];
  const config = { numLayers: 30 } as Parameters<typeof memoryFit>[0];
  it('runs models up to the limit and says why not above it', () => {
    expect(memoryFit(config, summary(PAGE_PARAMETER_LIMIT)).ok).toBe(true);
    const tooLarge = memoryFit(config, summary(7e9));
    expect(tooLarge.ok).toBe(false);
    expect(tooLarge.message).toContain('my-model');
    expect(tooLarge.message).toContain('layerquant quantize');
    expect(tooLarge.message).toContain('26.08 GiB');
  });
});
