import * as Plot from '@observablehq/plot';
import type { Analysis } from '../analysis.js';
import { deltaAgainstUniform, deltaFigure, type MethodPoint } from '../figures.js';
import { element, formatFixed, type Cell } from '../notebook.js';
import { PLOT_WIDTH } from '../plots.js';
import { colors, labelled } from './results.js';
import { PUBLISHED_UNIFORM, publishedFloat, publishedPoints, type PublishedDataset, type PublishedRow } from '../published.js';

const PUBLISHED_COLORS: Readonly<Record<string, string>> = {
  MXQ: '#8c564b',
  'SensiMILP (top 1)': '#08519c',
  'SensiMILP (top 2)': '#3182bd',
  'SensiMILP (top 3)': '#9ecae1',
  'KurtMILP (top 1)': '#006d2c',
  'KurtMILP (top 2)': '#31a354',
  'KurtMILP (top 3)': '#a1d99b',
  'Ablation of SensiMILP': '#f16913',
  'Ablation of KurtMILP': '#807dba',
  GPTQ: '#e377c2',
  AWQ: '#17becf',
  bitsandbytes: '#bcbd22',
};
/** Where the paper's Figure 5 lives: 3 to 4.6 bits (HQQ's budget stops b3g128 ... b4g32). */
const X_DOMAIN: readonly [number, number] = [3.0, 4.6];

let dataset: PublishedDataset = 'wikitext';

/** The authors' published Llama-2-7B results, plotted as our Figure 5 is, and ours beside them. */
export function renderPublishedCell(cell: Cell, analysis: Analysis, rows: readonly PublishedRow[]): void {
  cell.setCode(
    `parsePublishedResults(await (await fetch('paper-data/llama-2-7b/published-results.csv')).text())   // ${rows.length} rows\n` +
      `deltaAgainstUniform(points, 'HQQ uniform')   // the same function as Figure 5: ppl - HQQ uniform at the same bits`,
  );
  const points = publishedPoints(rows, dataset);
  const series = [...new Set(points.map((p) => p.series))].filter((s) => s !== PUBLISHED_UNIFORM);
  const color = { domain: series, range: series.map((s) => PUBLISHED_COLORS[s] ?? '#7f7f7f') };
  const fp16 = publishedFloat(rows, dataset);
  const inRange = points.filter((p) => p.bpp >= X_DOMAIN[0] && p.bpp <= X_DOMAIN[1]);
  const uniformInRange = inRange.filter((p) => p.series === PUBLISHED_UNIFORM).map((p) => p.ppl);
  const low = Math.min(fp16 ?? Infinity, ...inRange.map((p) => p.ppl));
  const yDomain = [low - 0.05 * (Math.max(...uniformInRange) - low), Math.max(...uniformInRange) + 0.15 * (Math.max(...uniformInRange) - low)];
  const overview = Plot.plot({
    width: PLOT_WIDTH,
    height: 360,
    x: { label: 'bits per weight (bits) →', domain: [...X_DOMAIN], grid: true },
    // Clipped at HQQ's worst point in the range: a few 3.07-bit runs reach 14 and would flatten everything else.
    y: { label: `↓ perplexity on ${dataset} (ppl), Llama-2-7B`, grid: true, domain: yDomain },
    clip: true,
    color: { domain: [PUBLISHED_UNIFORM, ...series], range: ['#222222', ...color.range], legend: true },
    marks: [
      ...(fp16 === undefined ? [] : [Plot.ruleY([fp16], { stroke: '#333', strokeDasharray: '6 4' }), Plot.text([fp16], { y: (d: number) => d, frameAnchor: 'right', textAnchor: 'end', dy: -8, text: () => `fp16 ${formatFixed(fp16, 4)}`, fill: '#333' })]),
      Plot.line(inRange.sort((a, b) => a.bpp - b.bpp), { x: 'bpp', y: 'ppl', stroke: 'series', z: 'series', strokeWidth: 1.3 }),
      Plot.dot(inRange, { x: 'bpp', y: 'ppl', fill: 'series', r: 2.5, title: (d: MethodPoint) => `${d.series} at ${d.bpp} bits: ppl ${d.ppl}; ${d.note ?? ''}` }),
    ],
  });
  const theirs = deltaFigure(points, { uniformSeries: PUBLISHED_UNIFORM, color, dashed: (s) => s.startsWith('Ablation'), pplLabel: `${dataset}, Llama-2-7B`, xDomain: X_DOMAIN, className: 'published-delta', edgeTolerance: 0 });
  // Ours with Figure 5's colours (uniform's label there is the same "HQQ uniform").
  const ourRows = labelled(analysis.data.results);
  const ourColors = colors(ourRows);
  const ourPoints = ourRows.map((r) => ({ series: r.label, bpp: r.bpp, ppl: r.ppl }));
  const ours = deltaFigure(ourPoints, {
    uniformSeries: PUBLISHED_UNIFORM,
    color: { domain: ourColors.domain.filter((d) => d !== PUBLISHED_UNIFORM), range: ourColors.range.filter((_, i) => ourColors.domain[i] !== PUBLISHED_UNIFORM) },
    dashed: (s) => s.startsWith('Ablation'),
    pplLabel: `${analysis.data.reference.perplexityDataset}, ${analysis.data.model.name}`,
    className: 'our-delta',
  });
  // Their runs sit at any bits, so only between HQQ's stops (no nearest-stop comparison outside them).
  const theirDeltas = deltaAgainstUniform(points, PUBLISHED_UNIFORM, 0).filter((d) => d.bpp >= X_DOMAIN[0] && d.bpp <= X_DOMAIN[1]);
  const better = theirDeltas.filter((d) => d.delta < 0).length;
  const select = element('select', { 'data-live-input': 'published-dataset' });
  for (const d of ['wikitext', 'c4'] as const) select.append(element('option', { value: d }, d));
  select.value = dataset;
  select.addEventListener('change', () => {
    dataset = select.value as PublishedDataset;
    renderPublishedCell(cell, analysis, rows);
  });
  cell.setOutput(
    element('label', { class: 'toggles' }, 'dataset: ', select),
    element('figure', { 'data-plot': 'published' }, overview),
    element('p', { class: 'note' }, `Llama-2-7B, the authors' own runs (${points.length} quantized results with a perplexity on ${dataset}; fp16 dashed; the axis stops a little above HQQ's 3.13-bit point, so a few 3.07-bit runs are cut off). Below: each against HQQ uniform at the same bits, as in Figure 5; ${better} of ${theirDeltas.length} points between 3 and 4.6 bits are below zero.`),
    element('figure', { 'data-plot': 'published-delta' }, theirs),
    element('p', { class: 'note' }, `Ours, the same way: ${analysis.data.model.name} on ${analysis.data.reference.perplexityDataset} (the change is in that model's perplexity points, so compare the sign and the shape, not the size).`),
    element('figure', { 'data-plot': 'our-delta' }, ours),
  );
}
