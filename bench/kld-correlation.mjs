// Which statistic predicts the loss: each metric's predicted cost of quantizing a unit against the ΔKLD measured on
// held-out text (brown-test), Spearman's rho per config and pooled; and for whole-model allocations (hqq, mxq,
// measured, kld at several budgets) the kld table's additive sum against the re-measured ΔKLD of the whole allocation.
// usage: pnpm build && nice node bench/kld-correlation.mjs [--model <dir>] [--blocks 8] [--eval-blocks 8]
//        [--configs b2g64,b3g64,b4g64] [--budgets 2.5,3,3.5,4] [--out <dir>]
// Statistics (fnorm, sensitivity, kurtosis, measured, kld) on brown-calib's first --blocks blocks of 512 tokens, cached
// in --out (default a temporary directory), with their measurement time and the process's peak memory after each.
// Truth: the end-to-end ΔKLD at the final logits on brown-test's first --eval-blocks blocks (other text than the
// statistics'), every linear matrix alone at every config, and every allocation as a whole.
import { allocateMethod, expandMethodList, sensitivityPartOf } from '@layerquant/allocators';
import { configName, modelMatrixParams, parseConfigList } from '@layerquant/core';
import { brownCalibPath, brownTestPath } from '@layerquant/datasets';
import { shippedModelDir } from '@layerquant/fixtures';
import { builtinRegistries, ensureStatistics } from '@layerquant/pipeline';
import { hqqQuantizer } from '@layerquant/quantizers';
import { loadDecoderBlocks } from '@layerquant/runtime';
import { calibrationBlocks, createKldMeasurer } from '@layerquant/sensitivity';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { spearman } from './lib/rank-correlation.mjs';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: shippedModelDir },
    blocks: { type: 'string', default: '8' },
    'eval-blocks': { type: 'string', default: '8' },
    configs: { type: 'string', default: 'b2g64,b3g64,b4g64' },
    budgets: { type: 'string', default: '2.5,3,3.5,4' },
    out: { type: 'string' },
  },
});
const modelDir = resolve(values.model);
const blocks = Number(values.blocks);
const evalBlocks = Number(values['eval-blocks']);
const configs = parseConfigList(values.configs, '--configs');
const budgets = values.budgets.split(',').map(Number);
const out = values.out ? resolve(values.out) : mkdtempSync(join(tmpdir(), 'layerquant-kld-correlation-'));
const peakMiB = () => {
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return hwm ? Number(hwm[1]) / 1024 : Number.NaN;
};
const started = performance.now();
console.error(`load average at start: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

const config = await loadDecoderConfig(modelDir);
const registries = builtinRegistries();
const tables = {};
const costs = [];
for (const table of ['fnorm', 'sensitivity', 'kurtosis', 'measured', 'kld']) {
  const t0 = performance.now();
  const resolved = await ensureStatistics({
    modelDir,
    cacheDir: join(out, 'stats'),
    needs: [table],
    metrics: registries.metrics.list(),
    matrices: modelMatrixParams(config),
    calibrationPath: brownCalibPath,
    calibrationName: 'brown-calib',
    blocks,
    seqlen: 512,
    configs,
    quantizer: { quantizer: hqqQuantizer, options: {} },
  });
  tables[table] = resolved.stats[table];
  costs.push({ table, seconds: (performance.now() - t0) / 1000, computed: resolved.computed, peakMiB: peakMiB() });
  console.error(`${table}: ${resolved.computed ? 'computed' : 'cached'} in ${costs.at(-1).seconds.toFixed(1)} s (peak ${costs.at(-1).peakMiB.toFixed(0)} MiB)`);
}

// Held-out truth: each linear matrix alone at each config, on brown-test.
const tokenizer = await loadTokenizer(modelDir);
const heldOut = calibrationBlocks(readFileSync(brownTestPath, 'utf8'), tokenizer, { blocks: evalBlocks, seqlen: 512 });
const checkpoint = await openCheckpoint(modelDir);
const model = await loadDecoderBlocks(checkpoint, config, { threads: 2 });
const measurer = await createKldMeasurer(model, heldOut, { quantizer: hqqQuantizer });
const linear = measurer.units.filter((u) => u.layer >= 0);
const t0 = performance.now();
const truth = await measurer.marginals(new Map(), (key) => (linear.some((u) => u.key === key) ? configs : []));
const truthSeconds = (performance.now() - t0) / 1000;
console.error(`held-out ΔKLD of ${linear.length} matrices x ${configs.length} configs: ${truthSeconds.toFixed(1)} s`);

const rowOf = (rows, unit, c) => rows.find((r) => r.layer === unit.layer && r.module === unit.module && (c === undefined || (r.bits === c.bits && r.groupSize === c.groupSize)));
const predictors = {
  fnorm: (u, c) => rowOf(tables.fnorm.rows, u, c)?.fnorm,
  sensitivity: (u) => tables.sensitivity.rows.find((r) => r.layer === u.layer && r.part === sensitivityPartOf(u.module))?.sensitivity,
  kurtosis: (u) => rowOf(tables.kurtosis.rows, u)?.kurtosis,
  measured: (u, c) => rowOf(tables.measured.rows, u, c)?.error,
  kld: (u, c) => rowOf(tables.kld.rows, u, c)?.deltaKld,
};
const lines = [];
lines.push(`# Which statistic predicts the loss (${modelDir.split('/').at(-1)}, statistics on brown-calib ${blocks} x 512, truth on brown-test ${evalBlocks} x 512)`, '');
lines.push(`| metric | ${configs.map((c) => `rho @ ${configName(c)}`).join(' | ')} | rho pooled | time (s) | peak (MiB) |`);
lines.push(`| --- | ${configs.map(() => '---:').join(' | ')} | ---: | ---: | ---: |`);
for (const [name, predict] of Object.entries(predictors)) {
  const per = configs.map((c, ci) => {
    const pairs = linear.map((u) => [predict(u, c), truth.deltas.get(u.key)[ci]]).filter(([p]) => p !== undefined);
    return spearman(pairs.map((p) => p[0]), pairs.map((p) => p[1]));
  });
  const pooled = configs.flatMap((c, ci) => linear.map((u) => [predict(u, c), truth.deltas.get(u.key)[ci]])).filter(([p]) => p !== undefined);
  const cost = costs.find((x) => x.table === name);
  lines.push(`| ${name} | ${per.map((r) => r.toFixed(3)).join(' | ')} | ${spearman(pooled.map((p) => p[0]), pooled.map((p) => p[1])).toFixed(3)} | ${cost.computed ? cost.seconds.toFixed(1) : 'cached'} | ${cost.peakMiB.toFixed(0)} |`);
}

// Whole-model allocations: additive kld sum (calibration) and held-out single-unit sum against the held-out ΔKLD.
const stats = { ...tables, source: join(out, "stats") };
const allocations = [];
for (const method of expandMethodList('hqq,mxq,measured,kld')) {
  for (const budget of budgets) {
    let allocation;
    try {
      allocation = allocateMethod(method, stats, { budget, seed: 42, floorToStop: true, configs });
    } catch (error) {
      console.error(`${method.id} @ ${budget}: ${error.message}`);
      continue;
    }
    const configsByKey = new Map(allocation.matrices.map((m) => [`${m.layer}.${m.module}`, m.config]));
    const additive = allocation.matrices.reduce((s, m) => s + (m.config ? (rowOf(tables.kld.rows, m, m.config)?.deltaKld ?? Number.NaN) : 0), 0);
    const heldOutSum = allocation.matrices.reduce((s, m) => {
      if (!m.config) return s;
      const ci = configs.findIndex((c) => c.bits === m.config.bits && c.groupSize === m.config.groupSize);
      return s + truth.deltas.get(`${m.layer}.${m.module}`)[ci];
    }, 0);
    const measured = await measurer.lossOf(configsByKey);
    allocations.push({ method: method.id, budget, bpp: allocation.totals.bpp, additive, heldOutSum, measured });
  }
}
await model.dispose();
await checkpoint.close();
lines.push('', '## Whole-model allocations: predicted (additive) vs re-measured ΔKLD on the held-out text', '');
lines.push('| method | budget | bits/w (paper) | kld table sum (calibration) | held-out single-unit sum | held-out whole model | whole / sum |');
lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const a of allocations) lines.push(`| ${a.method} | ${a.budget} | ${a.bpp.toFixed(4)} | ${a.additive.toFixed(5)} | ${a.heldOutSum.toFixed(5)} | ${a.measured.toFixed(5)} | ${(a.measured / a.heldOutSum).toFixed(3)} |`);
lines.push('', `rho(kld table sum, whole-model ΔKLD) over the ${allocations.length} allocations: ${spearman(allocations.map((a) => a.additive), allocations.map((a) => a.measured)).toFixed(3)}; rho(held-out single-unit sum, whole-model): ${spearman(allocations.map((a) => a.heldOutSum), allocations.map((a) => a.measured)).toFixed(3)}`);
lines.push(`held-out truth: ${truthSeconds.toFixed(1)} s; total ${((performance.now() - started) / 1000).toFixed(1)} s; load average at end ${loadavg().map((l) => l.toFixed(2)).join(' ')} (a shared machine: times are not performance figures)`);
console.log(lines.join('\n'));
if (!values.out) rmSync(out, { recursive: true, force: true });
