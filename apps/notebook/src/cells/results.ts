import * as Plot from '@observablehq/plot';
import type { Analysis } from '../analysis.js';
import type { ResultRow } from '../data.js';
import { methodFamily, methodLabel, methods } from '../methods.js';
import { element, formatBytes, formatFixed, table, type Cell } from '../notebook.js';
import { deltaFigure } from '../figures.js';
import { PLOT_WIDTH, labelLanes, labelWidth } from '../plots.js';
import { MIB, type ShippedSizes } from '../shipped.js';
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

/** The x axis of Figure 5: the shipped file's MiB (default: what a user ships) or the paper's accounting. */
export type ParetoAxis = 'shipped' | 'paper';
let paretoAxis: ParetoAxis = 'shipped';

const PARETO_MARGIN = { left: 50, right: 20 } as const;
/** One line of budget labels above the frame per lane. */
const LANE_HEIGHT = 13;

/**
 * Budget labels above the frame, in lanes: a label goes to the first lane where it clears the previous label by
 * its estimated width at the figure's scale, so two budgets with nearly equal sizes never print over each other.
 */
export function budgetLabels(points: readonly { x: number; budget: number }[], domain: readonly [number, number], width = PLOT_WIDTH): { x: number; budget: number; text: string; lane: number }[] {
  const span = domain[1] - domain[0] || 1;
  const pixel = (x: number) => PARETO_MARGIN.left + ((x - domain[0]) / span) * (width - PARETO_MARGIN.left - PARETO_MARGIN.right);
  const labels = points.map((p) => ({ ...p, text: formatFixed(p.budget, 2) }));
  // Centred text: its box starts half a width left of the point.
  const lanes = labelLanes(labels.map((l) => ({ x: pixel(l.x) - labelWidth(l.text) / 2, width: labelWidth(l.text) + 2 })));
  return labels.map((l, i) => ({ ...l, lane: lanes[i]! }));
}

export function renderParetoCell(cell: Cell, analysis: Analysis, knobs: Knobs, shipped?: ShippedSizes): void {
  const { results, reference, sources } = analysis.data;
  // The shipped axis needs the sizes (a worker computes them after the page is up) and at least one row with one.
  const axis: ParetoAxis = shipped && paretoAxis === 'shipped' && results.some((r) => shipped.bytesOf(r) !== undefined) ? 'shipped' : 'paper';
  const xOf = (r: ResultRow): number | undefined => (axis === 'shipped' ? (shipped!.bytesOf(r) ?? NaN) / MIB : r.memoryMB);
  cell.setCode(
    `// precomputed: ${sources.results.detail}\n` +
      (axis === 'shipped'
        ? `// x: the ONNX file of each row's allocation, exact: onnxCostModel(config, layout).fileBytes(unit => allocation config)   // @layerquant/export\n`
        : '') +
      `Plot.plot({ marks: [Plot.line(results, { x: ${axis === 'shipped' ? "'shippedMiB'" : "'memoryMB'"}, y: 'ppl', stroke: 'method' }), Plot.ruleY([${formatFixed(reference.fp32Perplexity, 3)}])] })`,
  );
  const all = labelled(results);
  const color = colors(all);
  const families = [...new Set(all.map((r) => r.family))];
  const shown = all.filter((r) => !hiddenFamilies.has(r.family));
  const placed = shown.map((r) => ({ ...r, x: xOf(r) }));
  const rows = placed.filter((r): r is typeof r & { x: number } => r.x !== undefined && Number.isFinite(r.x));
  const unplaced = placed.length - rows.length;
  const selected = rows.filter((r) => selectedBy(knobs, r));
  const fp = reference.fp32Perplexity;
  const dashed = (r: LabelledRow) => r.family.startsWith('ablation');
  const xs = rows.map((r) => r.x);
  const pad = 0.03 * (Math.max(...xs) - Math.min(...xs) || 1);
  const domain: [number, number] = [Math.min(...xs) - pad, Math.max(...xs) + pad];
  const labels = budgetLabels(
    [...new Set(rows.map((r) => r.budget))].map((budget) => rows.find((r) => r.budget === budget && r.method === 'uniform') ?? rows.find((r) => r.budget === budget)!),
    domain,
  );
  const lanes = Math.max(0, ...labels.map((l) => l.lane)) + 1;
  const xLabel =
    axis === 'shipped'
      ? `size of the shipped ONNX file (MiB, every byte under onnx/ of \`layerquant export --format onnx\`; float32 embeddings, float16 scales) →`
      : 'memory of the quantized matrices (MiB, the paper\'s accounting: codes plus an 8-bit scale and zero per group) →';
  const overview = Plot.plot({
    width: PLOT_WIDTH,
    height: 420 + lanes * LANE_HEIGHT,
    marginLeft: PARETO_MARGIN.left,
    marginRight: PARETO_MARGIN.right,
    // The y axis label on the top line, the budget lanes below it.
    marginTop: 26 + lanes * LANE_HEIGHT,
    x: { label: xLabel, grid: true, domain, labelAnchor: 'left' },
    y: { label: `↓ perplexity on ${reference.perplexityDataset} (ppl, exp of the mean NLL in nats)`, grid: true, domain: [Math.min(fp, ...all.map((r) => r.ppl)) - 1, Math.max(...all.map((r) => r.ppl)) + 1] },
    color: { ...color, legend: true },
    marks: [
      Plot.ruleY([fp], { stroke: '#333', strokeDasharray: '6 4' }),
      Plot.text([fp], { y: (d: number) => d, frameAnchor: 'left', textAnchor: 'start', text: () => `fp32 ${formatFixed(fp, 2)}`, dx: 6, dy: -8, fill: '#333' }),
      Plot.line(rows.filter((r) => !dashed(r)), { x: 'x', y: 'ppl', stroke: 'label', strokeWidth: 1.5, z: 'label' }),
      Plot.line(rows.filter(dashed), { x: 'x', y: 'ppl', stroke: 'label', strokeWidth: 1.5, z: 'label', strokeDasharray: '4 3' }),
      Plot.dot(rows, {
        x: 'x',
        y: 'ppl',
        stroke: 'label',
        fill: 'white',
        r: 3.5,
        className: 'result-point',
        title: (d: LabelledRow & { x: number }) =>
          `${d.label} @ ${d.budget}: ${shipped?.bytesOf(d) === undefined ? '' : `shipped file ${formatFixed(shipped.bytesOf(d)! / MIB, 3)} MiB, `}paper accounting ${formatFixed(d.memoryMB, 3)} MiB, ppl ${formatFixed(d.ppl, 3)}`,
      }),
      // The budget of each column of points, above the frame with a faint rule down to its points; one text mark per lane.
      Plot.ruleX(labels, { x: 'x', stroke: '#ccc', strokeDasharray: '2 3', className: 'budget-rule' }),
      ...[...new Set(labels.map((l) => l.lane))].map((lane) =>
        Plot.text(labels.filter((l) => l.lane === lane), { x: 'x', frameAnchor: 'top', text: 'text', dy: -6 - (lanes - 1 - lane) * LANE_HEIGHT, lineAnchor: 'bottom', fill: '#555', fontSize: 10, className: 'budget-label' }),
      ),
      Plot.dot(selected, { x: 'x', y: 'ppl', r: 9, stroke: '#d62728', strokeWidth: 2.5, fill: 'none', className: 'selected-result' }),
    ],
  });
  const axisSelect = element('select', { 'data-pareto-axis': '' });
  axisSelect.append(
    element('option', { value: 'shipped' }, 'the shipped ONNX file (MiB)'),
    element('option', { value: 'paper' }, "the paper's accounting (MiB of the quantized matrices)"),
  );
  axisSelect.value = axis;
  if (!shipped) axisSelect.disabled = true;
  axisSelect.addEventListener('change', () => {
    paretoAxis = axisSelect.value as ParetoAxis;
    renderParetoCell(cell, analysis, knobs, shipped);
  });
  // The methods differ by less than a perplexity point at one budget: the change against uniform HQQ at the
  // same bits per weight separates the lines the overview stacks.
  const zoom = deltaFigure(
    [...all.filter((r) => r.method === 'uniform'), ...rows.filter((r) => r.method !== 'uniform')].map((r) => ({ series: r.method === 'uniform' ? UNIFORM_SERIES : r.label, bpp: r.bpp, ppl: r.ppl, note: `budget ${formatFixed(r.budget, 2)}, ${formatFixed(r.memoryMB, 3)} MiB (paper accounting)` })),
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
    element('label', {}, 'x axis: ', axisSelect),
    ' Show: ',
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
  const sizeNote =
    axis === 'shipped'
      ? ` x: the bytes of ${shipped!.label} each allocation exports to, computed exactly here by the export's cost model: what a user ships. The paper's accounting counts only the quantized matrices.${unplaced > 0 ? ` ${unplaced} row${unplaced === 1 ? '' : 's'} without a shipped size (an allocation the page cannot re-make) are left out.` : ''}`
      : shipped
        ? ' x: the paper\'s accounting of the quantized matrices, not the file a user ships (choose the shipped file above).'
        : ' x: the paper\'s accounting of the quantized matrices, for now: the size of the shipped file of each allocation is being computed.';
  cell.setOutput(
    toggles,
    element('figure', { 'data-plot': 'pareto', 'data-axis': axis }, overview),
    element('p', { class: 'note' }, note, sizeNote, families.some((f) => f.startsWith('ablation')) ? ' Ablations are dashed.' : '', ` Below: each method's change against uniform HQQ at the same bits per weight (interpolated between uniform's budget stops, the nearest stop just outside them; below zero is better), at all ${new Set(all.map((r) => r.budget)).size} budgets the experiment measured.`),
    element('figure', { 'data-plot': 'pareto-zoom' }, zoom),
  );
}

export function renderTableCell(cell: Cell, analysis: Analysis, knobs: Knobs, shipped?: ShippedSizes): void {
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
      ...(shipped ? [shipped.bytesOf(r) === undefined ? '' : formatFixed(shipped.bytesOf(r)! / MIB, 3)] : []),
      formatFixed(r.memoryMB, 3),
      ...(withPacked ? [r.packedBytes === undefined ? '' : formatBytes(r.packedBytes)] : []),
      r.extraMemoryPercent === null ? '' : `${r.extraMemoryPercent >= 0 ? '+' : ''}${formatFixed(r.extraMemoryPercent, 2)}%`,
      r.ppl === best.get(r.budget) ? element('strong', {}, ppl) : ppl,
      delta,
      r.seconds === null ? '' : formatFixed(r.seconds, 1),
    ];
  });
  const headers = ['budget', 'method', 'bits/weight', ...(shipped ? ['shipped ONNX file MiB'] : []), 'paper MiB', ...(withPacked ? ['packed matrices'] : []), 'extra memory', 'perplexity', 'vs uniform', 'seconds'];
  const resultsTable = table(headers, body, { 'data-table': 'results', class: 'results' });
  const selectedIndex = rows.findIndex((r) => selectedBy(knobs, r));
  if (selectedIndex >= 0) resultsTable.tBodies[0]!.rows[selectedIndex]!.classList.add('selected');
  cell.setOutput(
    element('div', { class: 'scroll tall' }, resultsTable),
    element('p', { class: 'note' }, `Bold: the best perplexity of each budget. fp32 reference: ${formatFixed(reference.fp32Perplexity, 3)} (${reference.fp32Detail}). The highlighted row is the knobs' choice. ${shipped ? 'Shipped ONNX file: every byte of the export of the allocation (exact, the export\'s cost model); ' : ''}paper MiB: the quantized matrices in the paper's accounting (codes plus an 8-bit scale and zero per group)${withPacked ? '; packed matrices: codes, scales and zeros as the quantized checkpoint stores them' : ''}.`),
  );
}
