import * as Plot from '@observablehq/plot';
import { SENSITIVITY_PARTS, sensitivityPartOf } from '@layerquant/allocators';
import { LINEAR_MODULES } from '@layerquant/core';
import { SENSITIVITY_BITS, SENSITIVITY_GROUP_SIZE, type Analysis } from '../analysis.js';
import { element, type Cell } from '../notebook.js';
import { OUTLIER_COLOR, PLOT_WIDTH, labelLanes, labelWidth, layerTicks, shortModule } from '../plots.js';
import type { Knobs } from '../state.js';

export function renderSensitivityCell(cell: Cell, analysis: Analysis, knobs: Knobs): void {
  cell.setCode(
    `const sensitivity = sensitivityByModule(stats.sensitivity, ${analysis.numLayers}, { bits: ${SENSITIVITY_BITS}, groupSize: ${SENSITIVITY_GROUP_SIZE} });\n` +
      `detectModuleOutliers(sensitivity, { change: 'ratio', topM: ${knobs.topM} })`,
  );
  const outliers = analysis.outliers(knobs.topM).sensitivity;
  // q, k and v share attn_in (and gate, up share mlp_gate): mark each measurement's outliers once, naming its modules.
  const marks = new Map<string, { part: string; layer: number; sensitivity: number; modules: string[]; z: number }>();
  for (const module of LINEAR_MODULES) {
    const part = sensitivityPartOf(module);
    for (const o of outliers[module]) {
      const key = `${part}:${o.layer}`;
      const point = analysis.sensitivityPoints.find((p) => p.part === part && p.layer === o.layer);
      if (!point) continue;
      const known = marks.get(key);
      if (known) known.modules.push(shortModule(module));
      else marks.set(key, { part, layer: o.layer, sensitivity: point.sensitivity, modules: [shortModule(module)], z: o.zScore });
    }
  }
  const marked = [...marks.values()];
  // One short label per outlier layer ("L1"), in lanes so that neighbouring layers' labels never overlap; the
  // measurements and z-scores are listed under the plot.
  const layers = [...new Set(marked.map((m) => m.layer))].sort((a, b) => a - b);
  const marginLeft = 60;
  const pxPerLayer = (PLOT_WIDTH - marginLeft - 20) / Math.max(1, analysis.numLayers - 1);
  const lanes = labelLanes(layers.map((layer) => ({ x: marginLeft + layer * pxPerLayer - 4, width: labelWidth(`L${layer}`) })));
  const laneCount = Math.max(1, ...lanes.map((l) => l + 1));
  const labels = layers.map((layer, i) => ({ layer, text: `L${layer}`, lane: lanes[i]! }));
  const top = Math.max(...analysis.sensitivityPoints.map((p) => p.sensitivity));
  const chart = Plot.plot({
    width: PLOT_WIDTH,
    height: 380 + 14 * laneCount,
    marginLeft,
    marginTop: 16 + 14 * laneCount,
    x: { label: 'layer (index, 0 = first decoder layer) →', domain: [0, analysis.numLayers - 1], ticks: layerTicks(analysis.numLayers), tickFormat: 'd' },
    y: { label: `↑ activation sensitivity: MSE of the block output (squared activation units, log scale; HQQ b${SENSITIVITY_BITS}g${SENSITIVITY_GROUP_SIZE})`, type: 'log', grid: true },
    color: { domain: [...SENSITIVITY_PARTS], range: ['#4e79a7', '#f28e2b', '#59a14f', '#e15759'], legend: true },
    marks: [
      Plot.line(analysis.sensitivityPoints, { x: 'layer', y: 'sensitivity', stroke: 'part', strokeWidth: 1.8, tip: true }),
      Plot.dot(analysis.sensitivityPoints, { x: 'layer', y: 'sensitivity', fill: 'part', r: 2 }),
      Plot.dot(marked, { x: 'layer', y: 'sensitivity', r: 7, stroke: OUTLIER_COLOR, strokeWidth: 2, fill: 'none', className: 'outlier-mark' }),
      Plot.ruleX(labels, { x: 'layer', y1: (d: (typeof labels)[number]) => Math.min(...marked.filter((m) => m.layer === d.layer).map((m) => m.sensitivity)), y2: top, stroke: OUTLIER_COLOR, strokeOpacity: 0.35, strokeDasharray: '2 2' }),
      ...[...new Set(labels.map((l) => l.lane))].map((lane) =>
      Plot.text(labels.filter((l) => l.lane === lane), {
        x: 'layer',
        frameAnchor: 'top',
        text: 'text',
        dy: -6 - 14 * lane,
        textAnchor: 'middle',
        lineAnchor: 'bottom',
        fill: OUTLIER_COLOR,
        fontWeight: 'bold',
        fontSize: 10,
        className: 'outlier-label',
      }),
      ),
    ],
  });
  const details = element(
    'ul',
    { class: 'outlier-list', 'data-list': 'sensitivity-outliers' },
    ...layers.map((layer) =>
      element(
        'li',
        {},
        element('strong', {}, `L${layer}`),
        ` ${marked.filter((m) => m.layer === layer).map((m) => `${m.part} (${m.modules.join(', ')}) z ${m.z.toFixed(1)}`).join('; ')}`,
      ),
    ),
  );
  cell.setOutput(
    element('figure', { 'data-plot': 'sensitivity' }, chart),
    details,
    element('p', { class: 'note' }, `Red rings: SensiBoost outlier layers at top_m = ${knobs.topM}${knobs.topM === 0 ? ' (all)' : ''}, labelled with the modules that take that measurement.`),
  );
}
