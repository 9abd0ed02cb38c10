import * as Plot from '@observablehq/plot';
import { SENSITIVITY_PARTS, sensitivityPartOf } from '@layerquant/allocators';
import { LINEAR_MODULES } from '@layerquant/core';
import { SENSITIVITY_BITS, SENSITIVITY_GROUP_SIZE, type Analysis } from '../analysis.js';
import { element, type Cell } from '../notebook.js';
import { OUTLIER_COLOR, PLOT_WIDTH, shortModule } from '../plots.js';
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
  // Several measurements often jump at the same layer: one stacked label per layer.
  const labels = [...new Set(marked.map((m) => m.layer))].map((layer) => {
    const here = marked.filter((m) => m.layer === layer).sort((a, b) => b.sensitivity - a.sensitivity);
    return {
      layer,
      sensitivity: here[0]!.sensitivity,
      text: here.map((m) => `L${layer} ${m.part} (${m.modules.join(', ')}) z ${m.z.toFixed(1)}`).join('\n'),
    };
  });
  const chart = Plot.plot({
    width: PLOT_WIDTH,
    height: 380,
    x: { label: 'layer', domain: [0, analysis.numLayers - 1], ticks: 16 },
    y: { label: `activation sensitivity: MSE of the block output (HQQ b${SENSITIVITY_BITS}g${SENSITIVITY_GROUP_SIZE})`, type: 'log', grid: true },
    color: { domain: [...SENSITIVITY_PARTS], range: ['#4e79a7', '#f28e2b', '#59a14f', '#e15759'], legend: true },
    marks: [
      Plot.line(analysis.sensitivityPoints, { x: 'layer', y: 'sensitivity', stroke: 'part', strokeWidth: 1.8, tip: true }),
      Plot.dot(analysis.sensitivityPoints, { x: 'layer', y: 'sensitivity', fill: 'part', r: 2 }),
      Plot.dot(marked, { x: 'layer', y: 'sensitivity', r: 7, stroke: OUTLIER_COLOR, strokeWidth: 2, fill: 'none', className: 'outlier-mark' }),
      // Labels sit at the top of the frame beside their layer, clear of the lines (the first layers are crowded).
      Plot.ruleX(labels, { x: 'layer', y1: 'sensitivity', y2: labels.length ? Math.max(...analysis.sensitivityPoints.map((p) => p.sensitivity)) : 1, stroke: OUTLIER_COLOR, strokeOpacity: 0.35, strokeDasharray: '2 2' }),
      Plot.text(labels, { x: 'layer', frameAnchor: 'top', text: 'text', dx: 8, dy: 4, textAnchor: 'start', lineAnchor: 'top', fill: OUTLIER_COLOR, stroke: 'white', strokeWidth: 4, paintOrder: 'stroke', fontWeight: 'bold', fontSize: 10 }),
    ],
  });
  cell.setOutput(
    element('figure', { 'data-plot': 'sensitivity' }, chart),
    element('p', { class: 'note' }, `Red rings: SensiBoost outlier layers at top_m = ${knobs.topM}${knobs.topM === 0 ? ' (all)' : ''}, labelled with the modules that take that measurement.`),
  );
}
