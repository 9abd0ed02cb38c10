// Issue 23's measurement: the end-to-end `kld` allocator against `measured`, HQQ uniform, MXQ and SensiBoost at the
// paper's budgets (2.25 to 4.25 bits per weight, the paper's accounting), every cell evaluated on the whole text with
// its KL divergence from the float model (llama.cpp's statistics) and its perplexity, paired bootstrap over the
// windows. Everything goes through the built CLI, as a user runs it:
//   1. `sensitivity --blocks <stats-blocks> --measured`: fnorm (MXQ), activation sensitivity (SensiBoost), kurtosis
//      and measured, on the paper's 12 configs;
//   2. `sensitivity --metrics kld --blocks <kld-blocks>`: the end-to-end ΔKLD of every unit at every config (each
//      unit alone quantized, the rest float, at the final logits). It costs one partial forward pass per unit,
//      config and block, so it gets fewer blocks than the block-level tables; its kld.csv joins step 1's directory;
//   3. `experiment --stats <that directory> --methods ... --kld --metric kld --refine --blocks <kld-blocks>`: every
//      cell allocates, quantizes (HQQ) and measures; the kld cells run the allocator's correction for interactions
//      on the kld table's calibration and keep it only where its measured KLD is not above the additive one's.
// Each statistics step's wall time and peak memory (VmHWM of its process) are reported beside the table.
//
//   node bench/kld-allocators.mjs [--model <dir>] [--budgets 2.25,2.51,3.13,3.25,3.51,4.13,4.25]
//        [--methods hqq,mxq,sensiboost-2-1,measured,kld] [--stats-blocks 16] [--kld-blocks 1] [--max-tokens N]
//        [--work /tmp/layerquant-kld-allocators] [--out bench/results/kld-allocators]
// Writes <out>.md (experiment's results.md read by KLD, with the statistics' costs) and <out>.json (its rows).
// An interrupted run resumes: finished statistics are kept in --work, and experiment keeps its finished cells.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { shippedModelDir } from '@layerquant/fixtures';
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
const grid = measuredRun('experiment', [
  'experiment', modelDir, '--out', join(work, 'experiment'), '--stats', statsDir, '--methods', values.methods, '--budgets', values.budgets,
  '--kld', '--metric', 'kld', '--refine', '--blocks', values['kld-blocks'], ...(values['max-tokens'] ? ['--max-tokens', values['max-tokens']] : []), '--yes',
]);

const gib = (bytes) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
const lines = [
  `Model ${modelDir === resolve(shippedModelDir) ? 'packages/fixtures/models/llama-brown-26m (the shipped model)' : modelDir}; ${cpus().length} cores.`,
  `Statistics: fnorm, activation sensitivity, kurtosis and measured on ${values['stats-blocks']} blocks of brown-calib; the end-to-end ΔKLD table (kld) on ${values['kld-blocks']}; the kld cells' correction for interactions on the kld table's blocks.`,
  '',
  '| statistics step | wall | peak memory | load before / after |',
  '| --- | ---: | ---: | --- |',
  ...[
    ['fnorm, sensitivity, kurtosis, measured', blockTables],
    ['kld (end-to-end ΔKLD)', kldTable],
    ['the grid (every cell: allocation, quantization, evaluation)', grid],
  ].map(([what, run]) => `| ${what} | ${run.wallSeconds.toFixed(0)} s | ${gib(run.peakBytes)} | ${run.load.before} / ${run.load.after} |`),
  '',
  readFileSync(join(work, 'experiment', 'results.md'), 'utf8').trim(),
  '',
  `Run ${startedAt.toISOString()} - ${new Date().toISOString()}; load before: ${uptimeBefore}; after: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}.`,
];
writeFileSync(`${values.out}.md`, `${lines.join('\n')}\n`);
writeFileSync(`${values.out}.json`, `${JSON.stringify({ started: startedAt.toISOString(), settings: values, statistics: { blockTables: { ...blockTables, json: undefined }, kldTable: { ...kldTable, json: undefined } }, experiment: grid.json }, null, 1)}\n`);
console.log(lines.join('\n'));
