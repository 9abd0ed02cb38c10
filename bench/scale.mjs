// Peak resident memory and time of every `layerquant` step on synthetic checkpoints of real model shapes
// (bench/lib/synthetic-model.mjs: random BF16 weights, sharded, the shipped tokenizer), one fresh child process
// per step, its peak read as VmHWM (bench/lib/report-peak.mjs). A benchmark, not a test.
//
// Usage: pnpm build && node bench/scale.mjs --shape tinyllama|llama-3.2-3b|llama-2-7b [--steps inspect,quantize,...]
//        [--configs b4g64,...] [--time-limit <s>] [--results file.jsonl]
// Models are written to $LAYERQUANT_SCALE_DIR (default <tmpdir>/layerquant-scale), never into the repository.
// Steps: inspect, quantize (hqq b4g64), sensitivity (--blocks 1), eval-fp (one 512-token window, default memory
// budget), eval-fp-streamed (the same, forced layer by layer with --max-memory 0.25), eval-q (the b4g64 directory),
// generate (16 tokens from the b4g64 directory), rtn (RTN b4g64 of the first 4 layers' matrices vs PyTorch).
// A step is stopped when the machine's available memory falls below 3 GiB (it is shared); --require-available <GiB>
// makes each step wait for that much available memory first.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argument, checkArguments, shapeArgument, writeSyntheticCheckpoint } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['steps', 'results', 'configs', 'time-limit', 'require-available', 'shape'] });

const BIN = fileURLToPath(new URL('../apps/cli/dist/bin.js', import.meta.url));
const PEAK_HOOK = fileURLToPath(new URL('./lib/report-peak.mjs', import.meta.url));
const RTN_CHILD = fileURLToPath(new URL('./lib/rtn-layers.mjs', import.meta.url));
const RTN_ANCHOR = fileURLToPath(new URL('./rtn_anchor.py', import.meta.url));
const ALL_STEPS = ['inspect', 'quantize', 'quantize-rtn', 'sensitivity', 'eval-fp', 'eval-fp-streamed', 'eval-q', 'generate', 'rtn'];
const MIN_AVAILABLE = 3 * 2 ** 30;

const { shapeName, shape } = shapeArgument();
const steps = argument('steps', ALL_STEPS.join(',')).split(',');
const results = argument('results', undefined);
// sensitivity --configs: the fnorm table's config ladder (default the paper's 12).
const fnormConfigs = argument('configs', undefined);
// A step still running after this many seconds is stopped with SIGTERM (its peak so far is still read at exit).
const timeLimit = Number(argument('time-limit', 'Infinity'));
// A step starts only when this much memory is available (waits up to 5 minutes, then skips it): the machine is shared.
const requireAvailable = Number(argument('require-available', '0')) * 2 ** 30;
const root = process.env.LAYERQUANT_SCALE_DIR ?? join(tmpdir(), 'layerquant-scale');
const modelDir = join(root, shapeName);
const quantizedDir = `${modelDir}-b4g64`;

function availableBytes() {
  const match = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return match ? Number(match[1]) * 1024 : Infinity;
}

/** Runs one command in a fresh process; returns its time, peak resident memory and output. */
function measure(command, args) {
  const peakFile = join(tmpdir(), `layerquant-peak-${process.pid}-${Date.now()}`);
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(command, args, { env: { ...process.env, LAYERQUANT_PEAK_FILE: peakFile }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let stopped;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      process.stderr.write(d);
    });
    const guard = setInterval(() => {
      if (!stopped && (performance.now() - started) / 1000 > timeLimit) {
        stopped = `stopped: --time-limit ${timeLimit} s`;
        child.kill('SIGTERM');
      }
      if (!stopped && availableBytes() < MIN_AVAILABLE) {
        stopped = `stopped: available memory below ${MIN_AVAILABLE / 2 ** 30} GiB`;
        child.kill('SIGTERM');
      }
    }, 500);
    child.on('exit', (code, signal) => {
      clearInterval(guard);
      const seconds = (performance.now() - started) / 1000;
      const peak = existsSync(peakFile) ? Number(readFileSync(peakFile, 'utf8')) : undefined;
      rmSync(peakFile, { force: true });
      resolve({ code, signal, seconds, peakBytes: peak, stdout, stderr, stopped });
    });
  });
}

const cli = (...args) => measure(process.execPath, ['--import', PEAK_HOOK, BIN, ...args]);

const commands = {
  inspect: () => cli('inspect', modelDir),
  quantize: () => cli('quantize', modelDir, '--method', 'hqq', '--config', 'b4g64', '--out', quantizedDir, '--force', '--json'),
  // RTN writes the same packed layout (codes, scales, fractional zeros) in a fraction of HQQ's time: eval-q and
  // generate measure the same memory on it where HQQ at a large shape does not fit the time available
  'quantize-rtn': () => cli('quantize', modelDir, '--method', 'rtn', '--config', 'b4g64', '--out', quantizedDir, '--force', '--json'),
  // Without --json, so its plan and first-layer estimates reach stderr (kept in the row) even when it is stopped.
  sensitivity: () => cli('sensitivity', modelDir, '--blocks', '1', '--out', `${modelDir}-stats`, ...(fnormConfigs ? ['--configs', fnormConfigs] : [])),
  'eval-fp': () => cli('eval', modelDir, '--dataset', 'brown-test', '--max-tokens', '512', '--json'),
  'eval-fp-streamed': () => cli('eval', modelDir, '--dataset', 'brown-test', '--max-tokens', '512', '--max-memory', '0.25', '--json'),
  'eval-q': () => cli('eval', quantizedDir, '--dataset', 'brown-test', '--max-tokens', '512', '--json'),
  generate: () => cli('generate', quantizedDir, '--prompt', 'The jury said it did find that the', '--max-new-tokens', '16', '--json'),
  rtn: () => measure(process.execPath, ['--import', PEAK_HOOK, RTN_CHILD, modelDir, '4', RTN_ANCHOR]),
};

if (!existsSync(join(modelDir, 'config.json'))) {
  console.error(`writing the synthetic ${shapeName} checkpoint to ${modelDir} (streamed, one tensor at a time)`);
  const made = await writeSyntheticCheckpoint(modelDir, shape);
  console.error(`  ${made.params.toLocaleString('en-US')} params, ${(made.bytes / 1e9).toFixed(2)} GB BF16 in ${made.shards} shards`);
}

const rows = [];
for (const step of steps) {
  if (!commands[step]) throw new Error(`unknown step "${step}"; steps: ${ALL_STEPS.join(', ')}`);
  const waitUntil = Date.now() + 5 * 60_000;
  while (availableBytes() < requireAvailable && Date.now() < waitUntil) await new Promise((r) => setTimeout(r, 5000));
  console.error(`\n== ${shapeName} ${step} (available memory ${(availableBytes() / 2 ** 30).toFixed(1)} GiB)`);
  if (availableBytes() < requireAvailable) {
    const row = { shape: shapeName, step, ok: false, seconds: 0, stopped: `skipped: ${(availableBytes() / 2 ** 30).toFixed(1)} GiB available, ${requireAvailable / 2 ** 30} GiB required` };
    rows.push(row);
    console.error(JSON.stringify(row));
    if (results) appendFileSync(results, `${JSON.stringify(row)}\n`);
    continue;
  }
  const r = await commands[step]();
  const json = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  let detail = {};
  try {
    detail = json ? JSON.parse(json) : {};
  } catch {
    detail = {};
  }
  const row = {
    shape: shapeName, step, ok: r.code === 0, code: r.code, signal: r.signal, stopped: r.stopped, seconds: r.seconds,
    peakGiB: r.peakBytes === undefined ? undefined : r.peakBytes / 2 ** 30,
    evaluation: detail.evaluation, ppl: detail.perplexity,
    extra: step === 'rtn' ? detail : step === 'sensitivity' ? /^sensitivity [^\n]*s(, fnorm [^\n]*)?$/m.exec(r.stdout)?.[0] : undefined,
    plan: r.stderr.split('\n').filter((l) => /^(eval|quantize|sensitivity|fnorm|measured): /.test(l)),
    error: r.code === 0 ? undefined : r.stderr.trim().split('\n').pop(),
  };
  rows.push(row);
  console.error(JSON.stringify(row));
  if (results) appendFileSync(results, `${JSON.stringify(row)}\n`);
}

console.log(`\n| shape | step | time | peak resident | notes |\n| --- | --- | --- | --- | --- |`);
for (const r of rows) {
  const notes = [r.evaluation, r.ppl === undefined ? undefined : `ppl ${r.ppl.toFixed(2)}`, r.stopped, r.error, r.extra ? JSON.stringify(r.extra) : undefined].filter(Boolean).join('; ');
  console.log(`| ${r.shape} | ${r.step} | ${r.seconds.toFixed(1)} s | ${r.peakGiB === undefined ? '-' : `${r.peakGiB.toFixed(2)} GiB`} | ${r.ok ? '' : 'FAILED '}${notes} |`);
}
