// A metric plug-in in one file (no package.json, no build): the largest |w| of every linear matrix, a statistics
// table of its own (max-abs.csv). Load it with `--plugin ./max-abs-metric.mjs`; an allocator plug-in that names
// 'max-abs' in tablesNeeded receives it as stats['max-abs'].
import { LINEAR_MODULES, matrixTensorName } from '@layerquant/core';

/** @type {import('@layerquant/pipeline/plugin-spec').MetricPlugin} */
export const maxAbsMetric = {
  id: 'max-abs',
  table: 'max-abs',
  input: 'weights',
  description: 'largest absolute weight of every matrix',
  async measure(source, options) {
    const rows = [];
    const layers = [];
    for (let layer = 0; source.has(matrixTensorName(layer, LINEAR_MODULES[0])); layer++) layers.push(layer);
    for (const layer of layers) {
      for (const module of LINEAR_MODULES) {
        const weight = await source.read(matrixTensorName(layer, module));
        let maxAbs = 0;
        for (const v of weight.data) maxAbs = Math.max(maxAbs, Math.abs(v));
        rows.push({ layer, module, maxAbs });
      }
      options.onProgress?.(layer + 1, layers.length);
    }
    return { rows };
  },
  format: (table) => `layer,module,max_abs\n${table.rows.map((r) => `${r.layer},${r.module},${r.maxAbs}`).join('\n')}\n`,
  parse: (text) => ({
    rows: text.trim().split('\n').slice(1).map((line) => {
      const [layer, module, maxAbs] = line.split(',');
      return { layer: Number(layer), module, maxAbs: Number(maxAbs) };
    }),
  }),
};

export default { metrics: [maxAbsMetric] };
