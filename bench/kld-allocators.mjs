// Issue 23's measurement: the end-to-end `kld` allocator against `measured`, HQQ uniform, MXQ and SensiBoost at the
// paper's budgets (2.25 to 4.25 bits per weight, the paper's accounting), every cell evaluated on the whole text with
// its KL divergence from the float model (llama.cpp's statistics) and its perplexity, paired bootstrap over the
// windows. Everything goes through the built CLI, as a user runs it:
//   1. `sensitivity --blocks <stats-blocks> --measured`: fnorm (MXQ), activation sensitivity (SensiBoost), kurtosis
//      and measured, on the paper's 12 configs;
//   2. `sensitivity --metrics kld --blocks <kld-blocks>`: the end-to-end ΔKLD of every unit at every config (each
//      unit alone quantized, the rest float, at the final logits). It costs one partial forward pass per unit,
//      config and block, so it gets fewer blocks than the block-level tables; its kld.csv joins step 1's directory;
//   3. `experiment --stats <that directory> --methods ... --kld --metric kld --blocks <kld-blocks>`: every cell
//      allocates, quantizes (HQQ) and measures; the kld cells take the additive solution of the knapsack;
//   4. `experiment --methods kld:rounds=<rounds> --budgets <refine-budgets> --refine` in the same --out (the float
//      base and the fp cell reused): the kld allocator's correction for interactions, run on the kld table's
//      calibration, kept only where its measured KLD is not above the additive one's there and on the held-out
//      blocks after them. Corrected cells an earlier build made under another rule (calibration only: a row whose
//      `refinement` has no `heldOut`; another number of held-out blocks) stay in the out dir and are reported beside.
// The report: each statistics step's wall time and peak memory (VmHWM of its process); the grid's results.md (read
// by KLD); kld against measured at every budget (perplexity and mean KLD, paired bootstrap over the windows); the
// corrected kld cells against the additive ones on the evaluation text, with what the correction measured.
//
//   node bench/kld-allocators.mjs [--model <dir>] [--budgets 2.25,2.51,3.13,3.25,3.51,4.13,4.25]
//        [--methods hqq,mxq,sensiboost-2-1,measured,kld] [--stats-blocks 16] [--kld-blocks 1] [--max-tokens N]
//        [--refine-budgets 2.25,3.25,4.25] [--rounds 1] [--work /tmp/layerquant-kld-allocators]
//        [--out bench/results/kld-allocators]
// Writes <out>.md and <out>.json. An interrupted run resumes: each finished step is recorded in --work, and
// experiment keeps its finished cells.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { shippedModelDir } from '@layerquant/fixtures';
import { pairedBootstrap, pairedBootstrapKld, verdict } from '@layerquant/perplexity';
import { CLI } from './lib/cli.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PEAK_HOOK = fileURLToPath(new URL('./lib/report-peak.mjs', import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: shippedModelDir },
    budgets: { type: 'string', default: '2.25,2.51,3.13,3.25,3.51,4.13,4.25' },
    methods: { type: 'string', default: 'hqq,mxq,sensiboost-2-1,measured,kld' },
    'stats-blocks': { type: 'string', default: '16' },
    'kld-blocks': { type: 'string', default: '1' },
    'max-tokens': { type: 'string' },
    'refine-budgets': { type: 'string', default: '2.25,3.25,4.25' },
    rounds: { type: 'string', default: '1' },
    work: { type: 'string', default: '/tmp/layerquant-kld-allocators' },
    out: { type: 'string', default: join(ROOT, 'bench/results/kld-allocators') },
  },
});
const modelDir = resolve(values.model);
const work = resolve(values.work);
mkdirSync(work, { recursive: true });
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const log = (text) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${text}   [load ${load()}]\n`);

/** One CLI command in a child preloaded with report-peak.mjs: its JSON, wall seconds and peak bytes. */
function measuredRun(name, args) {
  const record = join(work, `${name}.run.json`);
  if (existsSync(record)) return JSON.parse(readFileSync(record, 'utf8'));
  log(`${name}: layerquant ${args.join(' ')}`);
  const peakFile = join(work, `${name}.peak`);
  const started = performance.now();
  const loadBefore = load();
  const stdout = execFileSync(process.execPath, ['--import', PEAK_HOOK, CLI, ...args, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, LAYERQUANT_PEAK_FILE: peakFile },
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 256 * 2 ** 20,
  });
  const result = {
    json: JSON.parse(stdout.trim().split('\n').pop()),
    wallSeconds: (performance.now() - started) / 1000,
    peakBytes: Number(readFileSync(peakFile, 'utf8')),
    load: { before: loadBefore, after: load() },
  };
  writeFileSync(record, JSON.stringify(result));
  return result;
}

const startedAt = new Date();
const uptimeBefore = execFileSync('uptime', { encoding: 'utf8' }).trim();
const statsDir = join(work, 'stats');
const kldDir = join(work, 'stats-kld');
const blockTables = measuredRun('statistics', ['sensitivity', modelDir, '--blocks', values['stats-blocks'], '--measured', '--out', statsDir]);
const kldTable = measuredRun('kld-table', ['sensitivity', modelDir, '--metrics', 'kld', '--blocks', values['kld-blocks'], '--out', kldDir]);
copyFileSync(join(kldDir, 'kld.csv'), join(statsDir, 'kld.csv'));
const experimentDir = join(work, 'experiment');
const common = ['--out', experimentDir, '--stats', statsDir, '--kld', '--metric', 'kld', '--blocks', values['kld-blocks'], ...(values['max-tokens'] ? ['--max-tokens', values['max-tokens']] : []), '--yes'];
const grid = measuredRun('experiment', ['experiment', modelDir, ...common, '--methods', values.methods, '--budgets', values.budgets]);
// results.md shows the current settings' cells only: keep the grid's before the correction's run rewrites it
const gridReport = join(work, 'results-grid.md');
if (!existsSync(gridReport)) copyFileSync(join(experimentDir, 'results.md'), gridReport);
const refineMethod = `kld:rounds=${values.rounds}`;
const refine = measuredRun('refine', ['experiment', modelDir, ...common, '--methods', refineMethod, '--budgets', values['refine-budgets'], '--refine']);

// ---- paired comparisons from the cells' per-window losses and KLD sums ------------------------------------------------
// every cell of the out dir (the grid's and the correction's; `rows` holds only the last run's settings)
const rows = Object.values(JSON.parse(readFileSync(join(experimentDir, 'results.json'), 'utf8')).cells).map((c) => c.row);
const cell = (method, budget, refined) => rows.find((r) => r.method === method && r.budget === budget && Boolean(r.refinement) === refined);
const paired = (a, b) => {
  const ppl = pairedBootstrap({ nll: a.windowNll, weights: a.windowWeights }, { nll: b.windowNll, weights: b.windowWeights });
  const kld = pairedBootstrapKld({ kld: a.windowKld, count: a.windowKldCount }, { kld: b.windowKld, count: b.windowKldCount });
  return { ppl: { ...ppl, verdict: verdict(ppl) }, kld: { ...kld, verdict: verdict(kld) } };
};
const fmt = (v, digits) => `${v.difference >= 0 ? '+' : ''}${v.difference.toFixed(digits)} [${v.low.toFixed(digits)}, ${v.high.toFixed(digits)}]${v.verdict === 'tie' ? '' : ` **${v.verdict}**`}`;
const budgets = values.budgets.split(',').map(Number);
const versusMeasured = budgets.map((budget) => {
  const kld = cell('kld', budget, false);
  const measured = cell('measured', budget, false);
  return kld && measured ? { budget, kld: { perplexity: kld.perplexity, meanKld: kld.kld.mean }, measured: { perplexity: measured.perplexity, meanKld: measured.kld.mean }, intervals: paired(kld, measured) } : undefined;
}).filter(Boolean);
// The corrected cells at each budget, one per rule that decided what they kept: this run's (not worse on the calibration
// nor on its held-out blocks), and any an earlier build left in the out dir (calibration only: no `heldOut`; or
// another number of held-out blocks).
const ruleOf = (refinement) => (!('heldOut' in refinement) ? 'calibration only (earlier build)' : refinement.heldOut === null ? 'calibration and held-out blocks (none measured: none held out, or nothing changed)' : `calibration and ${refinement.heldOut.blocks} held-out block${refinement.heldOut.blocks === 1 ? '' : 's'}`);
const corrections = values['refine-budgets'].split(',').map(Number).flatMap((budget) => {
  const additive = cell('kld', budget, false);
  const refinedRows = rows.filter((r) => r.method === refineMethod && r.budget === budget && r.refinement);
  const rules = [...new Set(refinedRows.map((r) => ruleOf(r.refinement)))];
  return rules.map((rule) => {
    const refined = refinedRows.find((r) => ruleOf(r.refinement) === rule);
    return additive ? { budget, rule, refinement: refined.refinement, refined: { perplexity: refined.perplexity, meanKld: refined.kld.mean }, additive: { perplexity: additive.perplexity, meanKld: additive.kld.mean }, intervals: paired(refined, additive) } : undefined;
  });
}).filter(Boolean);

const gib = (bytes) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
const lines = [
  `Model ${modelDir === resolve(shippedModelDir) ? 'packages/fixtures/models/llama-brown-26m (the shipped model)' : modelDir}; ${cpus().length} cores.`,
  `Statistics: fnorm, activation sensitivity, kurtosis and measured on ${values['stats-blocks']} blocks of brown-calib; the end-to-end ΔKLD table (kld) on ${values['kld-blocks']}; the kld cells' correction for interactions on the kld table's blocks.`,
  '',
  '| step | wall | peak memory | load before / after |',
  '| --- | ---: | ---: | --- |',
  ...[
    ['fnorm, sensitivity, kurtosis, measured', blockTables],
    ['kld (end-to-end ΔKLD)', kldTable],
    ['the grid (every cell: allocation, quantization, evaluation)', grid],
    [`the correction for interactions (${refineMethod} --refine)`, refine],
  ].map(([what, run]) => `| ${what} | ${run.wallSeconds.toFixed(0)} s | ${gib(run.peakBytes)} | ${run.load.before} / ${run.load.after} |`),
  '',
  readFileSync(gridReport, 'utf8').trim(),
  '',
  '## kld against measured (paired bootstrap over the same windows)',
  '',
  '| budget | kld ppl | measured ppl | Δ ppl [95% CI] | kld mean KLD | measured mean KLD | Δ mean KLD [95% CI] |',
  '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...versusMeasured.map((v) => `| ${v.budget} | ${v.kld.perplexity.toFixed(4)} | ${v.measured.perplexity.toFixed(4)} | ${fmt(v.intervals.ppl, 3)} | ${v.kld.meanKld.toFixed(5)} | ${v.measured.meanKld.toFixed(5)} | ${fmt(v.intervals.kld, 5)} |`),
  '',
  `## The correction for interactions (${refineMethod}) against the additive solution`,
  '',
  'Measured on the calibration (what the correction is fitted on), on the held-out calibration blocks that decide whether it is kept (current rule), and on the evaluation windows. "kept" is what the cell quantized; "additive" makes it the additive solution itself.',
  '',
  '| budget | kept by | calibration KLD additive / corrected | held-out blocks KLD additive / corrected | kept | units changed | evaluation ppl cell / additive | Δ ppl [95% CI] | evaluation mean KLD cell / additive | Δ mean KLD [95% CI] |',
  '| ---: | --- | --- | --- | --- | ---: | --- | ---: | --- | ---: |',
  ...corrections.map((c) => `| ${c.budget} | ${c.rule} | ${c.refinement.additiveKld.toFixed(6)} / ${c.refinement.refinedKld.toFixed(6)} | ${c.refinement.heldOut ? `${c.refinement.heldOut.additiveKld.toFixed(6)} / ${c.refinement.heldOut.refinedKld.toFixed(6)} (${c.refinement.heldOut.blocks} block${c.refinement.heldOut.blocks === 1 ? '' : 's'})` : '-'} | ${c.refinement.kept} | ${c.refinement.kept === 'refined' ? c.refinement.changed : 0} | ${c.refined.perplexity.toFixed(4)} / ${c.additive.perplexity.toFixed(4)} | ${fmt(c.intervals.ppl, 3)} | ${c.refined.meanKld.toFixed(5)} / ${c.additive.meanKld.toFixed(5)} | ${fmt(c.intervals.kld, 5)} |`),
  '',
  `Run ${startedAt.toISOString()} - ${new Date().toISOString()}; load before: ${uptimeBefore}; after: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}.`,
];
writeFileSync(`${values.out}.md`, `${lines.join('\n')}\n`);
writeFileSync(`${values.out}.json`, `${JSON.stringify({ started: startedAt.toISOString(), settings: values, statistics: { blockTables: { ...blockTables, json: undefined }, kldTable: { ...kldTable, json: undefined } }, versusMeasured, corrections, rows: rows.map(({ windowNll, windowWeights, windowKld, windowKldCount, ...rest }) => rest) }, null, 1)}\n`);
console.log(lines.join('\n'));
