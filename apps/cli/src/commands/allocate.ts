import {
  ALLOCATORS,
  type AblationOptions,
  type BoostAllocation,
  type MxqAllocation,
  type SensiBoostOptions,
} from '@layerquant/allocators';
import { validateStats } from '@layerquant/allocators';
import { loadStatsDirectory, saveAllocationJson } from '@layerquant/allocators/node';
import { InvalidOptionError, LINEAR_MODULES, configName, createRegistry, modelMatrixParams, parseConfigName, type Allocation } from '@layerquant/core';
import { openModel } from '@layerquant/tensor-io';
import { parseCommandArgs, parseIntegerOption, parseNumberOption, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';

const METHODS = ['uniform', 'mxq', 'sensiboost', 'kurtboost', 'ablation'] as const;

const USAGE = `layerquant allocate --stats <dir> --method ${METHODS.join('|')} --budget <bpp> [options]

Chooses a quantization config for every linear matrix from statistics tables and prints the allocation.

  --stats <dir>            output directory of \`layerquant sensitivity\`, or a paper-data directory
                           (fnorm.csv, sensitivity.csv, optional kurtosis.csv)
  --model <dir>            the model the statistics are for: config.json is validated against its tensors and
                           the tables must cover every matrix, layer and config of it (without it, the tables
                           are only checked against each other)
  --method <id>            uniform | mxq | sensiboost | kurtboost | ablation
  --budget <bpp>           bits per weight: a budget stop (2.13 ... 8.51) for uniform and the boosts;
                           any value for mxq
  --boost-stop <n>         stops up the ladder for an outlier matrix (default 2)
  --top-m <n>              keep the n most extreme outlier layers per module, 0 = all (default 1)
  --seed <n>               seed of the ablation's random layers (default 42)
  --imitate <id>           the ablation draws as many layers as sensiboost (default) or kurtboost boosts
  --sensitivity-config <c> rows of sensitivity.csv SensiBoost reads (default b4g64)
  --dataset <name>         calibration dataset of sensitivity.csv when it holds several
  --gap <r>                MXQ: proven relative gap to stop at (default 1e-6)
  --verbose                one line per matrix instead of layer ranges
  --out <file>             also write the allocation JSON there (atomically)
  --json                   print the Allocation object as JSON`;

/** "0-30 b3g64, 31 b4g128": runs of consecutive layers with the same config. */
function layerRanges(allocation: Allocation, module: string): string {
  const rows = allocation.matrices.filter((m) => m.module === module).sort((a, b) => a.layer - b.layer);
  const parts: string[] = [];
  let start = 0;
  for (let i = 1; i <= rows.length; i++) {
    const name = (k: number): string => (rows[k]!.config ? configName(rows[k]!.config!) : 'float');
    if (i === rows.length || name(i) !== name(start)) {
      const first = rows[start]!.layer;
      const last = rows[i - 1]!.layer;
      parts.push(`${first === last ? first : `${first}-${last}`} ${name(start)}`);
      start = i;
    }
  }
  return parts.join(', ');
}

function humanReport(allocation: Allocation, verbose: boolean): string {
  const lines: string[] = [];
  const t = allocation.totals;
  lines.push(`method        ${allocation.method} ${JSON.stringify(allocation.options)}`);
  lines.push(`budget        ${allocation.budget} bits per weight`);
  lines.push(`allocation    ${t.bpp.toFixed(6)} bits per weight, ${t.memoryMB.toFixed(3)} MB for ${t.params.toLocaleString('en-US')} params in ${allocation.matrices.length} matrices`);
  const solver = (allocation as Partial<MxqAllocation>).solver;
  if (solver) {
    lines.push(`objective     ${solver.objective.toFixed(6)} (sum of fnorm), bound ${solver.bound.toFixed(6)}, gap ${solver.gap.toExponential(2)}`);
    lines.push(`solver        ${(solver.seconds * 1000).toFixed(1)} ms, ${solver.nodes} nodes, ${solver.freeMatrices} matrices free after reduced-cost fixing; memory ${solver.memoryMB.toFixed(3)} / ${solver.memoryLimitMB.toFixed(3)} MB`);
  }
  const boost = allocation as Partial<BoostAllocation>;
  if (boost.boosted) {
    lines.push(`configs       base ${boost.baseConfig}, boosted ${boost.boostConfig}`);
    const outliers = boost.outliers;
    const list = LINEAR_MODULES.map((m) => {
      const layers = boost.boosted![m];
      const z = outliers && allocation.method !== 'ablation' ? outliers[m].map((o) => `${o.layer} (z ${o.zScore.toFixed(1)})`) : layers.map(String);
      return `${m}: ${z.length ? z.join(', ') : '-'}`;
    });
    lines.push(`boosted       ${list.join('; ')}`);
  }
  lines.push('');
  if (verbose) {
    lines.push(`${'matrix'.padEnd(24)} ${'config'.padEnd(8)} ${'params'.padStart(12)}`);
    for (const m of allocation.matrices) {
      lines.push(`${m.key.padEnd(24)} ${(m.config ? configName(m.config) : 'float').padEnd(8)} ${String(m.params).padStart(12)}`);
    }
  } else {
    lines.push(`${'module'.padEnd(18)} configs by layer`);
    for (const module of LINEAR_MODULES) {
      if (allocation.matrices.some((m) => m.module === module)) lines.push(`${module.padEnd(18)} ${layerRanges(allocation, module)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export const allocateCommand: Command = {
  name: 'allocate',
  summary: 'choose a config per matrix (uniform, mxq, sensiboost, kurtboost, ablation)',
  usage: USAGE,
  async run({ argv, stdout }) {
    const { values } = parseCommandArgs(argv, {
      stats: { type: 'string' },
      method: { type: 'string' },
      budget: { type: 'string' },
      'boost-stop': { type: 'string' },
      'top-m': { type: 'string' },
      seed: { type: 'string' },
      imitate: { type: 'string' },
      'sensitivity-config': { type: 'string' },
      dataset: { type: 'string' },
      gap: { type: 'string' },
      verbose: { type: 'boolean' },
      out: { type: 'string' },
      model: { type: 'string' },
    });
    const statsDir = requireString(values.stats, '--stats', 'a directory with fnorm.csv / sensitivity.csv');
    const method = requireString(values.method, '--method', METHODS.join(' | '));
    const registry = createRegistry('allocator', ALLOCATORS);
    if (!registry.has(method)) throw new InvalidOptionError('--method', `"${method}" is not one of ${registry.ids().join(', ')}`);
    const budgetText = requireString(values.budget, '--budget', 'bits per weight, e.g. 3.25');
    const budget = parseNumberOption(budgetText, '--budget', Number.NaN, (n) => Number.isFinite(n) && n > 0);
    const imitate = stringOption(values, 'imitate') ?? 'sensiboost';
    if (imitate !== 'sensiboost' && imitate !== 'kurtboost') throw new InvalidOptionError('--imitate', `"${imitate}" must be sensiboost or kurtboost`);
    const sensitivityConfig = parseConfigName(stringOption(values, 'sensitivity-config') ?? 'b4g64');
    const dataset = stringOption(values, 'dataset');
    const options: AblationOptions & SensiBoostOptions & { relativeGap?: number } = {
      budget,
      boostStop: parseIntegerOption(stringOption(values, 'boost-stop'), '--boost-stop', 2, 1),
      topM: parseIntegerOption(stringOption(values, 'top-m'), '--top-m', 1, 0),
      seed: parseIntegerOption(stringOption(values, 'seed'), '--seed', 42, 0),
      imitate,
      sensitivity: { bits: sensitivityConfig.bits, groupSize: sensitivityConfig.groupSize, ...(dataset ? { dataset } : {}) },
      relativeGap: parseNumberOption(stringOption(values, 'gap'), '--gap', 1e-6, (n) => n >= 0 && n < 1),
    };
    const stats = await loadStatsDirectory(statsDir);
    const modelDir = stringOption(values, 'model');
    if (modelDir) {
      const { config, checkpoint } = await openModel(modelDir);
      await checkpoint.close();
      validateStats(stats, { matrices: modelMatrixParams(config), name: modelDir });
    }
    const allocation = registry.get(method).allocate(stats, options) as Allocation;
    const out = stringOption(values, 'out');
    if (out) await saveAllocationJson(out, allocation);
    stdout(values.json ? `${JSON.stringify(allocation)}\n` : humanReport(allocation, values.verbose === true));
  },
};
