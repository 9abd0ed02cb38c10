import * as Plot from '@observablehq/plot';
import type { Analysis } from '../analysis.js';
import type { ResultRow } from '../data.js';
import { methodFamily, methodLabel, methods } from '../methods.js';
import { element, formatBytes, formatFixed, table, type Cell } from '../notebook.js';
import { deltaFigure } from '../figures.js';
import { PLOT_WIDTH } from '../plots.js';
import type { Knobs } from '../state.js';

export interface LabelledRow extends ResultRow {
  readonly label: string;
  readonly family: string;
}

/** One hue per family, darker for the first variants: boosts and their ablations read as groups. */
const FAMILY_SHADES: Readonly<Record<string, readonly string[]>> = {
  uniform: ['#222222'],
  mxq: ['#8c564b'],
  sensiboost: ['#08519c', '#3182bd', '#6baed6', '#9ecae1'],
  kurtboost: ['#006d2c', '#31a354', '#74c476', '#a1d99b'],
  'ablation-sensiboost': ['#d94801', '#f16913', '#fd8d3c', '#fdae6b'],
  'ablation-kurtboost': ['#6a51a3', '#807dba', '#9e9ac8', '#bcbddc'],
};
const FAMILY_ORDER = Object.keys(FAMILY_SHADES);
/** The uniform rows' label: the zero line of the change figure. */
const UNIFORM_SERIES = 'HQQ uniform';
const OTHER_SHADES = ['#e7298a', '#17becf', '#bcbd22', '#7f7f7f', '#1b9e77'];

const FAMILY_NAMES: Readonly<Record<string, string>> = {
  uniform: 'HQQ uniform',
  mxq: 'MXQ',
  sensiboost: 'SensiBoost',
  kurtboost: 'KurtBoost',
  'ablation-sensiboost': 'ablation of SensiBoost',
  'ablation-kurtboost': 'ablation of KurtBoost',
};

export function labelled(rows: readonly ResultRow[]): LabelledRow[] {
  const familyRank = (family: string) => (FAMILY_ORDER.includes(family) ? FAMILY_ORDER.indexOf(family) : FAMILY_ORDER.length);
  return rows
    .map((r) => ({ ...r, label: methodLabel(r.method, r.options), family: methodFamily(r.method, r.options) }))
    .sort((a, b) => a.budget - b.budget || familyRank(a.family) - familyRank(b.family) || a.label.localeCompare(b.label));
}

/** Colour scale domain and range: each label gets its family's next shade. */
export function colors(rows: readonly LabelledRow[]): { domain: string[]; range: string[] } {
  const domain: string[] = [];
  const range: string[] = [];
  const used = new Map<string, number>();
  // Families without their own hues (the other plug-ins: sensi-milp, kurt-milp, measured, ...) get one colour each.
  const others = [...new Set(rows.map((r) => r.family).filter((f) => !FAMILY_SHADES[f]))];
  for (const r of rows) {
    if (domain.includes(r.label)) continue;
    const shades = FAMILY_SHADES[r.family] ?? [OTHER_SHADES[others.indexOf(r.family) % OTHER_SHADES.length]!];
    const index = used.get(r.family) ?? 0;
    used.set(r.family, index + 1);
    domain.push(r.label);
    range.push(shades[index % shades.length]!);
  }
  return { domain, range };
}

/** Does a results row correspond to what the knobs select (same method, budget and, for boosts, stop and top_m)? */
export function selectedBy(knobs: Knobs, row: ResultRow): boolean {
  if (row.method !== knobs.method || Math.abs(row.budget - knobs.budget) > 0.005) return false;
  const { boostStop, topM, imitate } = row.options as { boostStop?: number; topM?: number; imitate?: string };
  // The page's ablation imitates SensiBoost (the allocator's default).
  if (imitate !== undefined && imitate !== 'sensiboost') return false;
  return (boostStop === undefined || boostStop === knobs.boostStop) && (topM === undefined || topM === knobs.topM);
}

/** Families shown in Figure 5; the reader can hide some (18 lines of the full grid are a lot). */
const hiddenFamilies = new Set<string>();

export function renderParetoCell(cell: Cell, analysis: Analysis, knobs: Knobs): void {
  const { results, reference, sources } = analysis.data;
  cell.setCode(
    `// precomputed: ${sources.results.detail}\n` +
      `Plot.plot({ marks: [Plot.line(results, { x: 'memoryMB', y: 'ppl', stroke: 'method' }), Plot.ruleY([${formatFixed(reference.fp32Perplexity, 3)}])] })`,
  );
  const all = labelled(results);
  const color = colors(all);
  const families = [...new Set(all.map((r) => r.family))];
  const rows = all.filter((r) => !hiddenFamilies.has(r.family));
  const selected = rows.filter((r) => selectedBy(knobs, r));
  const fp = reference.fp32Perplexity;
  const dashed = (r: LabelledRow) => r.family.startsWith('ablation');
  const overview = Plot.plot({
    width: PLOT_WIDTH,
    height: 420,
    x: { label: 'memory of the quantized matrices (MB) →', grid: true },
    y: { label: `↓ perplexity on ${reference.perplexityDataset} (ppl, exp of the mean NLL in nats)`, grid: true, domain: [Math.min(fp, ...all.map((r) => r.ppl)) - 1, Math.max(...all.map((r) => r.ppl)) + 1] },
    color: { ...color, legend: true },
    marks: [
      Plot.ruleY([fp], { stroke: '#333', strokeDasharray: '6 4' }),
      Plot.text([fp], { y: (d: number) => d, frameAnchor: 'left', textAnchor: 'start', text: () => `fp32 ${formatFixed(fp, 2)}`, dx: 6, dy: -8, fill: '#333' }),
      Plot.line(rows.filter((r) => !dashed(r)), { x: 'memoryMB', y: 'ppl', stroke: 'label', strokeWidth: 1.5, z: 'label' }),
      Plot.line(rows.filter(dashed), { x: 'memoryMB', y: 'ppl', stroke: 'label', strokeWidth: 1.5, z: 'label', strokeDasharray: '4 3' }),
      Plot.dot(rows, {
        x: 'memoryMB',
        y: 'ppl',
        stroke: 'label',
        fill: 'white',
        r: 3.5,
        title: (d: LabelledRow) => `${d.label} @ ${d.budget}: ${formatFixed(d.memoryMB, 3)} MB, ppl ${formatFixed(d.ppl, 3)}`,
      }),
      Plot.text(
        [...new Set(rows.map((r) => r.budget))].map((budget) => rows.find((r) => r.budget === budget && r.method === 'uniform') ?? rows.find((r) => r.budget === budget)!),
        { x: 'memoryMB', y: 'ppl', text: (d: LabelledRow) => formatFixed(d.budget, 2), dy: -12, fill: '#555', fontSize: 10 },
      ),
      Plot.dot(selected, { x: 'memoryMB', y: 'ppl', r: 9, stroke: '#d62728', strokeWidth: 2.5, fill: 'none', className: 'selected-result' }),
    ],
  });
  // The methods differ by less than a perplexity point at one budget: the change against uniform HQQ at the
  // same bits per weight separates the lines the overview stacks.
  const zoom = deltaFigure(
    [...all.filter((r) => r.method === 'uniform'), ...rows.filter((r) => r.method !== 'uniform')].map((r) => ({ series: r.method === 'uniform' ? UNIFORM_SERIES : r.label, bpp: r.bpp, ppl: r.ppl, note: `budget ${formatFixed(r.budget, 2)}, ${formatFixed(r.memoryMB, 3)} MB` })),
    {
      uniformSeries: UNIFORM_SERIES,
      color: { domain: color.domain.filter((d) => d !== UNIFORM_SERIES), range: color.range.filter((_, i) => color.domain[i] !== UNIFORM_SERIES) },
      dashed: (series) => series.startsWith('Ablation'),
      pplLabel: reference.perplexityDataset,
      selected: (d) => { const row = rows.find((r) => r.label === d.series && Math.abs(r.bpp - d.bpp) < 1e-9); return row !== undefined && selectedBy(knobs, row); },
    },
  );
  const toggles = element(
    'div',
    { class: 'toggles' },
    'Show: ',
    ...families.map((family) => {
      const input = element('input', { type: 'checkbox', 'data-family': family });
      input.checked = !hiddenFamilies.has(family);
      input.addEventListener('change', () => {
        if (input.checked) hiddenFamilies.delete(family);
        else hiddenFamilies.add(family);
        renderParetoCell(cell, analysis, knobs);
      });
      return element('label', {}, input, ` ${FAMILY_NAMES[family] ?? (methods.has(family) ? methods.get(family).label : family)}`);
    }),
  );
  const note =
    selected.length > 0
      ? `The red ring is the knobs' choice (${selected[0]!.label} at ${knobs.budget}): ppl ${formatFixed(selected[0]!.ppl, 3)}.`
      : `The knobs' choice (${knobs.method} at ${knobs.budget}) has no precomputed perplexity shown; the grid covers the rows of the table below.`;
  cell.setOutput(
    toggles,
    element('figure', { 'data-plot': 'pareto' }, overview),
    element('p', { class: 'note' }, note, families.some((f) => f.startsWith('ablation')) ? ' Ablations are dashed.' : '', ` Below: each method's change against uniform HQQ at the same bits per weight (interpolated between uniform's budget stops, the nearest stop just outside them; below zero is better), at all ${new Set(all.map((r) => r.budget)).size} budgets the experiment measured.`),
    element('figure', { 'data-plot': 'pareto-zoom' }, zoom),
  );
}

export function renderTableCell(cell: Cell, analysis: Analysis, knobs: Knobs): void {
  const { results, reference } = analysis.data;
  cell.setCode(`results   // ${results.length} rows: { model, method, options, budget, bpp, memoryMB, extraMemoryPercent, ppl, seconds }`);
  const rows = labelled(results);
  const withPacked = rows.some((r) => r.packedBytes !== undefined);
  const best = new Map<number, number>();
  for (const r of rows) best.set(r.budget, Math.min(best.get(r.budget) ?? Infinity, r.ppl));
  const uniformPpl = new Map(rows.filter((r) => r.method === 'uniform').map((r) => [r.budget, r.ppl]));
  const body = rows.map((r) => {
    const base = uniformPpl.get(r.budget);
    const delta = base === undefined ? '' : `${r.ppl - base >= 0 ? '+' : ''}${formatFixed(r.ppl - base, 3)}`;
    const ppl = formatFixed(r.ppl, 3);
    return [
      formatFixed(r.budget, 2),
      r.label,
      formatFixed(r.bpp, 4),
      formatFixed(r.memoryMB, 3),
      ...(withPacked ? [r.packedBytes === undefined ? '' : formatBytes(r.packedBytes)] : []),
      r.extraMemoryPercent === null ? '' : `${r.extraMemoryPercent >= 0 ? '+' : ''}${formatFixed(r.extraMemoryPercent, 2)}%`,
      r.ppl === best.get(r.budget) ? element('strong', {}, ppl) : ppl,
      delta,
      r.seconds === null ? '' : formatFixed(r.seconds, 1),
    ];
  });
  const headers = ['budget', 'method', 'bits/weight', 'memory MB', ...(withPacked ? ['packed'] : []), 'extra memory', 'perplexity', 'vs uniform', 'seconds'];
  const resultsTable = table(headers, body, { 'data-table': 'results', class: 'results' });
  const selectedIndex = rows.findIndex((r) => selectedBy(knobs, r));
  if (selectedIndex >= 0) resultsTable.tBodies[0]!.rows[selectedIndex]!.classList.add('selected');
  cell.setOutput(
    element('div', { class: 'scroll tall' }, resultsTable),
    element('p', { class: 'note' }, `Bold: the best perplexity of each budget. fp32 reference: ${formatFixed(reference.fp32Perplexity, 3)} (${reference.fp32Detail}). The highlighted row is the knobs' choice.`),
  );
}
