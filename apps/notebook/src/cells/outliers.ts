import { LINEAR_MODULES, type LinearModule } from '@layerquant/core';
import type { ModuleOutliers } from '@layerquant/allocators';
import type { Analysis } from '../analysis.js';
import { element, table, type Cell } from '../notebook.js';
import { shortModule } from '../plots.js';
import type { Knobs } from '../state.js';

/**
 * The authors' outlier layers for a top_m: their table keeps "1" and "0" (all, sorted by z); top_m > 0 keeps the
 * first top_m of "all", so every top_m can be checked.
 */
function oracleLayers(analysis: Analysis, method: 'sensiboost' | 'kurtboost', module: LinearModule, topM: number): readonly number[] | undefined {
  const byTopM = analysis.data.reference.oracleOutliers[method];
  const all = byTopM?.['0']?.[module];
  if (!all) return undefined;
  return topM === 0 ? all : all.slice(0, topM);
}

function layersCell(outliers: ModuleOutliers, module: LinearModule): HTMLElement {
  const list = outliers[module];
  if (list.length === 0) return element('span', { class: 'muted' }, 'none');
  return element('span', {}, ...list.flatMap((o, i) => [i > 0 ? ', ' : '', element('strong', {}, String(o.layer)), element('span', { class: 'muted' }, ` (z ${o.zScore.toFixed(2)})`)]));
}

function agreement(ours: ModuleOutliers, analysis: Analysis, method: 'sensiboost' | 'kurtboost', module: LinearModule, topM: number): HTMLElement {
  const theirs = oracleLayers(analysis, method, module, topM);
  if (!theirs) return element('span', { class: 'muted' }, 'n/a');
  const same = theirs.length === ours[module].length && theirs.every((layer, i) => ours[module][i]!.layer === layer);
  return element('span', { class: same ? 'match' : 'mismatch', title: `authors' code: [${theirs.join(', ')}]` }, same ? `✓ [${theirs.join(', ')}]` : `✗ theirs [${theirs.join(', ')}]`);
}

export function renderOutliersCell(cell: Cell, analysis: Analysis, knobs: Knobs): void {
  cell.setCode(
    `// D_i = S[i+1] / S[i] (ratio) or S[i+1] - S[i] (difference); mu, sigma: trimmed 5% each side\n` +
      `// z_i = |D_i - mu| / sigma; outliers z_i > 3, most extreme first; layer i + 1\n` +
      `detectModuleOutliers(sensitivity, { change: 'ratio', topM: ${knobs.topM} })\n` +
      `detectModuleOutliers(kurtosis, { change: 'difference', topM: ${knobs.topM} })`,
  );
  const { sensitivity, kurtosis } = analysis.outliers(knobs.topM);
  const rows = LINEAR_MODULES.map((module) => [
    element('code', {}, module),
    layersCell(sensitivity, module),
    agreement(sensitivity, analysis, 'sensiboost', module, knobs.topM),
    layersCell(kurtosis, module),
    agreement(kurtosis, analysis, 'kurtboost', module, knobs.topM),
  ]);
  const statsKind = analysis.data.sources.statistics.kind;
  const caption =
    statsKind === 'oracles'
      ? "The check columns compare with the outlier layers the authors' Python code finds on the same tables (oracles.json)."
      : "The check columns compare with the outlier layers the authors' Python code found on PyTorch's measurements (oracles.json); these tables are layerquant's own, so a difference means the measurements differ, not the detection.";
  const total = (o: ModuleOutliers) => LINEAR_MODULES.reduce((n, m) => n + o[m].length, 0);
  cell.setOutput(
    table(
      ['module', 'SensiBoost outlier layers', "authors' code", 'KurtBoost outlier layers', "authors' code"],
      rows,
      { 'data-table': 'outliers', class: 'outliers' },
    ),
    element(
      'p',
      { class: 'note' },
      `${total(sensitivity)} sensitivity and ${total(kurtosis)} kurtosis outlier matrices at top_m = ${knobs.topM}. ${caption} ` +
        `Modules: ${LINEAR_MODULES.map(shortModule).join(', ')}.`,
    ),
  );
}
