import * as Plot from '@observablehq/plot';
import { LINEAR_MODULES } from '@layerquant/core';
import type { ModelAnalysis } from '../analysis.js';
import { element, type Cell } from '../notebook.js';
import { MODULE_ORDER, OUTLIER_COLOR, PLOT_WIDTH, labelLanes, labelWidth, layerTicks, shortModule } from '../plots.js';
import type { Knobs } from '../state.js';

export function renderKurtosisCell(cell: Cell, analysis: ModelAnalysis, knobs: Knobs): void {
  cell.setCode(
    `const kurtosis = kurtosisByModule(stats, ${analysis.numLayers});   // m4 / m2^2 of each matrix's weights (normal = 3)\n` +
      `detectModuleOutliers(kurtosis, { change: 'difference', topM: ${knobs.topM} })`,
  );
  const outliers = analysis.kurtosisOutliers(knobs.topM);
  const points = analysis.kurtosisPoints.map((p) => ({ ...p, module: shortModule(p.module) }));
  const marginLeft = 50;
  const marginRight = 60;
  const pxPerLayer = (PLOT_WIDTH - marginLeft - marginRight) / Math.max(1, analysis.numLayers - 1);
  // Within a module's row, labels of nearby outlier layers take separate lanes (one line lower each), never overlapping.
  const marked = LINEAR_MODULES.flatMap((module) => {
    const found = outliers[module].map((o) => ({
      module: shortModule(module),
      layer: o.layer,
      kurtosis: analysis.kurtosisByModule[module][o.layer]!,
      label: `L${o.layer} (z ${o.zScore.toFixed(1)})`,
    }));
    const lanes = labelLanes(found.map((m) => ({ x: marginLeft + m.layer * pxPerLayer + 10, width: labelWidth(m.label) })));
    return found.map((m, i) => ({ ...m, lane: lanes[i]! }));
  });
  // One row per module: seven lines in one frame hide each other's jumps.
  const chart = Plot.plot({
    width: PLOT_WIDTH,
    height: 7 * 78 + 50,
    marginLeft,
    marginRight,
    x: { label: 'layer (index, 0 = first decoder layer) →', domain: [0, analysis.numLayers - 1], ticks: layerTicks(analysis.numLayers), tickFormat: 'd' },
    y: { label: '↑ weight kurtosis (m4/m2², dimensionless; normal = 3)', ticks: 3, grid: true },
    fy: { label: null, domain: [...MODULE_ORDER] },
    color: { domain: [...MODULE_ORDER], scheme: 'tableau10' },
    marks: [
      Plot.frame({ stroke: '#e5e5e5' }),
      Plot.ruleY([3], { stroke: '#999', strokeDasharray: '4 3' }),
      Plot.line(points, { x: 'layer', y: 'kurtosis', fy: 'module', stroke: 'module', strokeWidth: 1.5 }),
      Plot.dot(points, {
        x: 'layer',
        y: 'kurtosis',
        fy: 'module',
        fill: 'module',
        r: 2,
        title: (d: (typeof points)[number]) => `${d.module}, layer ${d.layer}: kurtosis ${d.kurtosis.toFixed(4)}`,
      }),
      Plot.dot(marked, { x: 'layer', y: 'kurtosis', fy: 'module', r: 7, stroke: OUTLIER_COLOR, strokeWidth: 2, fill: 'none', className: 'outlier-mark' }),
      // dy is a constant per mark: one text mark per lane.
      ...[...new Set(marked.map((m) => m.lane))].map((lane) =>
      Plot.text(marked.filter((m) => m.lane === lane), {
        x: 'layer',
        y: 'kurtosis',
        fy: 'module',
        text: 'label',
        dx: 10,
        dy: 12 * lane,
        className: 'outlier-label',
        textAnchor: 'start',
        fill: OUTLIER_COLOR,
        stroke: 'white',
        strokeWidth: 3,
        paintOrder: 'stroke',
        fontWeight: 'bold',
        fontSize: 10,
      })),
    ],
  });
  const count = marked.length;
  cell.setOutput(
    element('figure', { 'data-plot': 'kurtosis' }, chart),
    element('p', { class: 'note' }, `Red rings: the ${count} KurtBoost outlier layer${count === 1 ? '' : 's'} at top_m = ${knobs.topM}${knobs.topM === 0 ? ' (all)' : ''}. The dashed line is a normal distribution's kurtosis, 3.`),
  );
}
