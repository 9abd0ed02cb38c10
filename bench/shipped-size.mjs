// Issue 29's measurement: perplexity against the size of the file a user ships (every byte under <dir>/onnx) for
// every uniform ONNX export (each config the format stores natively, integer and fractional zeros, f16 and f32
// scales), transformers.js' own recipes (q4: symmetric RTN, block 32, fp32 scales; q4f16) as the anchor, and the
// allocations (MXQ, SensiBoost, measured) made for that file, side by side on the same windows of one text. Every
// allocated export gets the paired bootstrap against the best uniform export of equal or larger size; the goal
// figures (at q4's size, at two thirds of it, at llama.cpp's Q4_K_M size on the shipped model) follow the table.
//
//   node bench/shipped-size.mjs [--model <dir>] [--dataset brown-test | --text <file>] [--windows N]
//        [--out bench/results/shipped-size] [--work /tmp/layerquant-shipped-size] [--methods mxq,sensiboost,measured]
//        [--blocks <calibration blocks>] [--fresh] [--only <export>,<export>...] [--target-sizes <MiB>,<MiB>...]
//        [--quantizer gptq --calib <file | dataset name> --calib-blocks N [--calibrated-methods mxq]]
//        [--stats-for <method>=<dir>,...] [--no-refine] [--kld] [--threads N]
//
// --stats-for gives a method's statistics explicitly (a `layerquant sensitivity` directory, e.g. a kld table measured
// on the format's ladder); otherwise a method reads the tables its first allocation under --work cached. --no-refine
// keeps the additive solution of an allocator that corrects itself by measurement (kld). --kld adds the KL divergence
// from the float model on the same windows (llama.cpp's statistics; the float base computed once and cached) to every
// evaluation: mean KLD, 99.9% KLD and same top p in the table, and a paired bootstrap of mean KLD beside perplexity's.
//
// With --quantizer (a calibrated one, GPTQ), the table also holds that quantizer's uniform export at each config of
// its ladder (integer zeros) and its allocations (--calibrated-methods) at every target: the allocation reads the
// HQQ allocations' statistics (--stats-quantizer hqq: the same tables, measured once), and the quantizer quantizes
// each matrix on --calib-blocks blocks of --calib. The goal checks then take every uniform export and every
// allocation of the run, whichever quantizer made them.
//
// Everything goes through the built CLI (apps/cli/dist/bin.js: `quantize --format onnx`, `export`), as a user runs
// it; each export is evaluated once, in this process, the way `eval` and `compare` do (pipeline's openForEvaluation,
// perplexity's pairedBootstrap), and its per-window losses are kept in --work so an interrupted run resumes where it
// stopped (--fresh starts over). Writes <out>.md (the table and the goal checks) and <out>.json (the rows).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ladderStops } from '@layerquant/allocators';
import { configName } from '@layerquant/core';
import { datasets } from '@layerquant/datasets';
import { onnxCostModel } from '@layerquant/export';
import { shippedModelDir } from '@layerquant/fixtures';
import { klDivergence, kldSummary, pairedBootstrap, pairedBootstrapKld, perplexity, resolveTextPath, verdict } from '@layerquant/perplexity';
import { builtinRegistries, directorySizes, floatKldBase, formatPlan, openForEvaluation } from '@layerquant/pipeline';
import { hqqQuantizer } from '@layerquant/quantizers';
import { openModel } from '@layerquant/tensor-io';
import { exportRecorded, exportedIn, onnxBytes, statsOf } from './lib/cli.mjs';
import { printUsage } from './lib/synthetic-model.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MIB = 2 ** 20;
const SEQLEN = 512;
/** llama.cpp's own Q4_K_M file of the shipped model (../shared/GGUF.md): 17.42 MB (10^6 bytes), 90.377 / float 89.970
 * on the first 32 windows of brown-test@512. */
const LLAMA_CPP_Q4_K_M = { bytes: 17.42e6, perplexity: 90.377, float: 89.97 };

// ---- options ---------------------------------------------------------------------------------------------------
const VALUE_OPTIONS = ['model', 'dataset', 'text', 'windows', 'out', 'work', 'methods', 'blocks', 'only', 'target-sizes', 'quantizer', 'calib', 'calib-blocks', 'calibrated-methods', 'stats-for', 'threads'];
const FLAGS = ['fresh', 'kld', 'no-refine', 'help'];
// Strict: a misspelt or unknown option (`--help` included, before it existed) used to be ignored, and the run made
// every export of the default table under --work.
const { values: parsed } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  allowPositionals: false,
  options: Object.fromEntries([...VALUE_OPTIONS.map((name) => [name, { type: 'string' }]), ...FLAGS.map((name) => [name, { type: 'boolean' }])]),
});
if (parsed.help) printUsage(import.meta.url);
function option(name, fallback) {
  return parsed[name] ?? fallback;
}
const modelDir = resolve(option('model', shippedModelDir));
const isShippedModel = modelDir === resolve(shippedModelDir);
const textPath = resolveTextPath({ text: option('text', undefined), dataset: option('text', undefined) === undefined ? option('dataset', 'brown-test') : undefined }, datasets);
const windowsText = option('windows', undefined);
const windows = windowsText === undefined ? undefined : Number(windowsText);
if (windows !== undefined && !(Number.isInteger(windows) && windows > 0)) throw new Error(`--windows ${windowsText}: a positive integer`);
const outBase = resolve(option('out', join(ROOT, 'bench/results/shipped-size')));
const work = resolve(option('work', '/tmp/layerquant-shipped-size'));
const methods = option('methods', 'mxq,sensiboost,measured').split(',').filter(Boolean);
const blocks = option('blocks', undefined);
const calibratedId = option('quantizer', undefined);
const calibratedMethods = option('calibrated-methods', 'mxq').split(',').filter(Boolean);
const calibText = option('calib', undefined);
const calibBlocks = option('calib-blocks', '16');
const extraSizesText = option('target-sizes', undefined);
const extraSizes = extraSizesText === undefined ? [] : extraSizesText.split(',').filter(Boolean).map(Number);
if (extraSizes.some((x) => !(x > 0))) throw new Error(`--target-sizes ${extraSizesText}: positive MiB, comma-separated`);
const onlyText = option('only', undefined);
const only = onlyText === undefined ? undefined : new Set(onlyText.split(',').filter(Boolean));
if (calibratedId !== undefined && calibText === undefined) throw new Error(`--quantizer ${calibratedId} needs --calib (its calibration text)`);
const calibPath = calibText === undefined ? undefined : resolveTextPath(existsSync(calibText) ? { text: calibText } : { dataset: calibText }, datasets);
/** The quantizer a statistics directory names (a quantize cache's settings.json); undefined where it names none (`sensitivity --out` writes no settings). */
const statsQuantizerOf = (dir) => {
  const settings = join(dir, 'settings.json');
  return existsSync(settings) ? JSON.parse(readFileSync(settings, 'utf8')).quantizer?.id : undefined;
};
const statsByMethod = new Map((option('stats-for', '') || '').split(',').filter(Boolean).map((pair) => {
  const [method, dir] = pair.split('=');
  if (!method || !dir || !existsSync(dir)) throw new Error(`--stats-for ${pair}: <method>=<statistics directory>, and the directory must exist`);
  return [method, resolve(dir)];
}));
const noRefine = parsed['no-refine'] === true;
const withKld = parsed.kld === true;
const threadsText = option('threads', undefined);
const threads = threadsText === undefined ? undefined : Number(threadsText);
if (threads !== undefined && !(Number.isInteger(threads) && threads > 0)) throw new Error(`--threads ${threadsText}: a positive integer`);
if (parsed.fresh) rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

const log = (text) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${text}\n`);
const MiB = (bytes) => bytes / MIB;

// ---- exports through the CLI -----------------------------------------------------------------------------------
/** Every export name the run asked for (an allocation refused below its smallest size is retried under another). */
const asked = new Set();
/**
 * The directory an export lives in (lib/cli.mjs's exportedIn, under --work). With --only, an export outside the list
 * is not made (one made earlier is still read); float and q4 are always made (q4's file sets the goal sizes).
 */
const exported = (name, args) => {
  asked.add(name);
  if (only && !only.has(name) && !exportRecorded(work, name) && name !== 'float' && name !== 'q4') return { dir: join(work, name), skipped: true };
  return exportedIn(work, name, args, log);
};
/** An allocation --only lists, refused below its smallest size: its retry there is made and evaluated in its place. */
const keepRetry = (name, retryName) => {
  if (only?.has(name)) only.add(retryName);
};
/** The statistics cached by the first export under --work whose name starts with `prefix` (an allocation of a method). */
const tablesIn = (prefix) => readdirSync(work).filter((d) => d.startsWith(prefix)).map((d) => statsOf(join(work, d))).find(Boolean);

// ---- evaluation (once per export, on the same windows) ----------------------------------------------------------
const windowKey = `${basename(textPath)}@${SEQLEN}:${windows ?? 'all'}`;
/** The float model's logits on the evaluation windows (--kld): computed once (or read from the cache) and shared. */
let kldBase;

async function evaluate(dir) {
  const record = join(dir, 'bench-eval.json');
  // What inspect/compare report of the directory is read again on every run (cheap), never from the cache: a resumed
  // run made with an older build must not carry that build's counts (its linear-weight basis) into the table.
  const reported = async () => {
    const sizes = await directorySizes(dir);
    return { reportedParams: sizes.params, reportedShippedMiB: sizes.sizes.shipped?.MiB ?? null, reportedBitsPerWeight: sizes.sizes.shipped?.bitsPerWeight ?? null };
  };
  if (existsSync(record)) {
    const saved = JSON.parse(readFileSync(record, 'utf8'));
    // A record without KLD serves a run without --kld; with --kld it is evaluated again (the same perplexity, plus KLD).
    if (saved.key === windowKey && (!withKld || saved.kld)) return { ...saved, ...(await reported()) };
  }
  const started = performance.now();
  const { text, tokenizer, opened } = await openForEvaluation(dir, textPath, { seqlen: SEQLEN, allowLongContext: false, quantizers: builtinRegistries().quantizers, ...(threads ? { threads } : {}) });
  try {
    const ids = tokenizer.encode(text);
    const settings = { seqlen: SEQLEN, ...(windows === undefined ? {} : { maxTokens: windows * SEQLEN }) };
    let result;
    let kld = null;
    if (withKld) {
      kldBase ??= (await floatKldBase(modelDir, ids, settings, { evaluation: threads ? { threads } : {}, onCompute: (file, bytes) => log(`computing the float KLD base ${file} (${(bytes / 2 ** 30).toFixed(2)} GiB)`) })).base;
      const measured = await klDivergence(opened.model, kldBase, ids, settings);
      result = measured.perplexity;
      kld = { summary: kldSummary(measured.statistics), windows: measured.windows };
    } else {
      result = await perplexity(opened.model, ids, settings);
    }
    const saved = {
      key: windowKey,
      perplexity: result.ppl,
      windows: result.windows,
      tokens: result.tokens,
      windowNll: result.windowNll,
      windowWeights: result.windowWeights,
      ...(kld ? { kld: kld.summary, windowKld: kld.windows } : {}),
      seconds: (performance.now() - started) / 1000,
    };
    writeFileSync(`${record}.tmp`, JSON.stringify(saved));
    renameSync(`${record}.tmp`, record);
    return { ...saved, ...(await reported()) };
  } finally {
    await opened.dispose();
  }
}

// ---- the plan ----------------------------------------------------------------------------------------------------
const uptimeBefore = execFileSync('uptime', { encoding: 'utf8' }).trim();
const startedAt = new Date();
log(`model ${modelDir}, text ${textPath}, ${windows ?? 'all'} windows of ${SEQLEN}; work ${work}; ${uptimeBefore}`);

// The format's native ladder for HQQ (the same plan `quantize --format onnx` makes): the uniform configs and the stops.
const opened = await openModel(modelDir);
await opened.checkpoint.close();
const plan = formatPlan(onnxCostModel(opened.config, opened.layout, {}), hqqQuantizer);
const stops = ladderStops(plan.stops);

/** Every export of the run: { name, kind, label, dir, quantize | error, target? }. */
const entries = [];
const model = [modelDir];

entries.push({ name: 'float', kind: 'float', label: 'float (fp32 graph)', ...exported('float', ['export', ...model, '--format', 'onnx']) });
for (const config of plan.configs) {
  const name = configName(config);
  entries.push({ name: `hqq-${name}`, kind: 'uniform', label: `HQQ ${name}`, ...exported(`hqq-${name}`, ['quantize', ...model, '--method', 'hqq', '--config', name, '--format', 'onnx']) });
}
entries.push({ name: 'hqq-b4g64-int-f32', kind: 'uniform', label: 'HQQ b4g64-int, f32 scales', ...exported('hqq-b4g64-int-f32', ['quantize', ...model, '--method', 'hqq', '--config', 'b4g64-int', '--scale-dtype', 'f32', '--format', 'onnx']) });
// transformers.js' scripts/quantize.py recipes: q4 = symmetric RTN block 32, fp32 scales; q4f16 the same in an fp16
// graph (fp16 activations, embeddings and scales: MatMulNBits takes scales of the activation type).
entries.push({ name: 'q4', kind: 'uniform', label: 'transformers.js q4 (RTN b4g32-sym, f32 scales)', ...exported('q4', ['quantize', ...model, '--method', 'rtn', '--config', 'b4g32-sym', '--scale-dtype', 'f32', '--format', 'onnx']) });
entries.push({ name: 'q4f16', kind: 'uniform', label: 'transformers.js q4f16 (RTN b4g32-sym, f16 graph)', ...exported('q4f16', ['quantize', ...model, '--method', 'rtn', '--config', 'b4g32-sym', '--activations', 'f16', '--format', 'onnx']) });

const q4 = entries.find((e) => e.name === 'q4');
if (q4.error) throw new Error(`the q4 anchor failed: ${q4.error}`);
const q4Bytes = onnxBytes(q4.dir);

// Knapsack targets: 6 sizes from 2.5 to 8.5 bits per linear weight of the file, then the goal sizes (q4's file, two
// thirds of it, and llama.cpp's Q4_K_M file on the shipped model) in MiB.
const bpwTargets = Array.from({ length: 6 }, (_, i) => Number((2.5 + (i * 6) / 5).toFixed(4)));
// (rounded down, so that a file at most the target is at most that size)
const floor4 = (x) => Math.floor(x * 1e4) / 1e4;
const sizeTargets = [
  { mib: floor4(MiB(q4Bytes)), why: 'q4' },
  { mib: floor4((2 / 3) * MiB(q4Bytes)), why: '2/3 q4' },
  ...(isShippedModel ? [{ mib: floor4(MiB(LLAMA_CPP_Q4_K_M.bytes)), why: 'llama.cpp Q4_K_M' }] : []),
  ...extraSizes.map((mib) => ({ mib, why: 'asked' })),
];
const statsArgs = (stats) => [...(stats ? ['--stats', stats] : []), ...(blocks && !stats ? ['--blocks', blocks] : [])];
/** --no-refine for the allocators that correct their allocation by measurement (a plug-in with `refine`). */
const refineArgs = (method) => (noRefine && builtinRegistries().allocators.get(method)?.refine !== undefined ? ['--no-refine'] : []);
const notes = [];

for (const method of methods) {
  // The statistics the method's first allocation cached (kept on a resumed run), reused by the others.
  let stats = statsByMethod.get(method) ?? tablesIn(`${method}-`);
  const allocate = (name, label, targetArgs, target) => {
    let made = exported(name, ['quantize', ...model, '--method', method, ...targetArgs, ...statsArgs(stats), ...refineArgs(method), '--format', 'onnx']);
    stats ??= statsOf(made.dir);
    // Below the smallest file the ladder can make: the typed error names that size; measure there instead.
    const smallest = made.error && /smallest feasible budget is ([\d.]+)/.exec(made.error);
    if (smallest) {
      notes.push(`${method} at ${targetArgs.join(' ')}: "${made.error}" Measured at ${smallest[1]} instead.`);
      const value = smallest[1];
      const retryArgs = [targetArgs[0], value];
      const retryName = `${method}-${targetArgs[0] === '--target-bpw' ? 'bpw' : 'mib'}-${value}`;
      keepRetry(name, retryName);
      made = exported(retryName, ['quantize', ...model, '--method', method, ...retryArgs, ...statsArgs(stats), ...refineArgs(method), '--format', 'onnx']);
      stats ??= statsOf(made.dir);
      return { name: retryName, kind: 'allocated', method, label: `${label} (smallest: ${value})`, target: { ...target, value: Number(value) }, ...made };
    }
    return { name, kind: 'allocated', method, label, target, ...made };
  };
  if (builtinRegistries().allocators.get(method).budget === 'any') {
    for (const bpw of bpwTargets) entries.push(allocate(`${method}-bpw-${bpw}`, `${method} --target-bpw ${bpw}`, ['--target-bpw', String(bpw)], { unit: 'bpw', value: bpw }));
    for (const { mib, why } of sizeTargets) entries.push(allocate(`${method}-mib-${mib}`, `${method} --target-size ${mib} (${why})`, ['--target-size', String(mib)], { unit: 'MiB', value: mib, why }));
  } else {
    // A stop allocator (SensiBoost): its base is a native stop of the format, the boost the next ones; --budget names
    // the stop in the paper's accounting and the file is what it is.
    for (const stop of stops) entries.push(allocate(`${method}-budget-${stop.budget}`, `${method} --budget ${stop.budget} (${configName(stop.config)})`, ['--budget', String(stop.budget)], { unit: 'stop', value: stop.budget }));
  }
}

if (calibratedId !== undefined) {
  const quantizer = builtinRegistries().quantizers.get(calibratedId);
  if (!quantizer) throw new Error(`--quantizer ${calibratedId}: not a registered quantizer`);
  const calibArgs = ['--quantizer', calibratedId, '--calib', calibPath, '--blocks', calibBlocks];
  // Its own ladder: the configs the format stores natively that it can make (integer zeros for GPTQ).
  const own = formatPlan(onnxCostModel(opened.config, opened.layout, {}), quantizer);
  for (const config of own.configs) {
    const name = `${calibratedId}-${configName(config)}`;
    entries.push({ name, kind: 'uniform', label: `${calibratedId.toUpperCase()} ${configName(config)}`, ...exported(name, ['quantize', ...model, ...calibArgs, '--config', configName(config), '--format', 'onnx']) });
  }
  // HQQ's tables hold the configs with a zero point (integer and fractional), not the symmetric ones: the
  // allocations choose among the integer-zero configs of the quantizer's ladder.
  const ladder = ['--configs', own.configs.filter((c) => !c.symmetric).map(configName).join(',')];
  for (const method of calibratedMethods) {
    // HQQ's tables for the method: an HQQ allocation's of this run, else the first calibrated allocation's (measured
    // once with --stats-quantizer hqq, then read by every other target).
    let hqqStats = statsByMethod.get(method) ?? tablesIn(`${method}-`) ?? tablesIn(`${calibratedId}-${method}-`);
    const statsFor = () => [...ladder, ...(hqqStats ? ['--stats', hqqStats] : ['--stats-quantizer', 'hqq'])];
    const targets = [
      ...bpwTargets.map((bpw) => ({ args: ['--target-bpw', String(bpw)], key: `bpw-${bpw}`, target: { unit: 'bpw', value: bpw } })),
      ...sizeTargets.map(({ mib, why }) => ({ args: ['--target-size', String(mib)], key: `mib-${mib}`, target: { unit: 'MiB', value: mib, why } })),
    ];
    // One allocation: below the smallest file its ladder can make, the typed error names that size; measured there.
    const allocateCalibrated = (keyOf, label, extra, args, target) => {
      const nameOf = (value) => `${calibratedId}-${method}-${keyOf(value)}`;
      const run = (targetArgs) => exported(nameOf(targetArgs[1]), ['quantize', ...model, ...calibArgs, '--method', method, ...targetArgs, ...extra, ...statsFor(), ...refineArgs(method), '--format', 'onnx']);
      let made = run(args);
      hqqStats ??= made.skipped ? undefined : statsOf(made.dir);
      const smallest = made.error && /smallest feasible budget is ([\d.]+)/.exec(made.error);
      if (smallest) {
        notes.push(`${calibratedId}+${method} at ${[...args, ...extra].join(' ')}: "${made.error}" Measured at ${smallest[1]} instead.`);
        keepRetry(nameOf(args[1]), nameOf(smallest[1]));
        made = run([args[0], smallest[1]]);
        return { name: nameOf(smallest[1]), kind: 'allocated', method: `${calibratedId}+${method}`, label: `${label} (smallest: ${smallest[1]})`, target: { ...target, value: Number(smallest[1]) }, ...made };
      }
      return { name: nameOf(args[1]), kind: 'allocated', method: `${calibratedId}+${method}`, label, target, ...made };
    };
    for (const { args, target } of targets) {
      const unit = args[0] === '--target-bpw' ? 'bpw' : 'mib';
      entries.push(allocateCalibrated((v) => `${unit}-${v}`, `${calibratedId.toUpperCase()} + ${method} ${args.join(' ')}${target.why ? ` (${target.why})` : ''}`, [], args, target));
    }
    // Also with the embeddings' ladder narrowed (the weight-error tables price quantized embeddings too cheaply):
    // kept float in fp16, outside the allocation, at the goal sizes; 8-bit only, at every target.
    const embeddingVariants = [
      { key: 'float-emb', args: ['--embedding-configs', 'float', '--embedding-dtype', 'f16'], targets: targets.filter((t) => t.args[0] === '--target-size') },
      { key: 'b8-emb', args: ['--embedding-configs', 'b8g32-int,b8g64-int,b8g128-int'], targets },
    ];
    for (const variant of embeddingVariants) {
      for (const { args, target } of variant.targets) {
        const unit = args[0] === '--target-bpw' ? 'bpw' : 'mib';
        entries.push(allocateCalibrated((v) => `${variant.key}-${unit}-${v}`, `${calibratedId.toUpperCase()} + ${method} ${args.join(' ')} ${variant.args.join(' ')}${target.why ? ` (${target.why})` : ''}`, variant.args, args, target));
      }
    }
  }
}

// Two targets below the smallest feasible size are both measured there: one row.
for (let i = entries.length - 1; i >= 0; i--) if (entries.findIndex((e) => e.name === entries[i].name) < i) entries.splice(i, 1);
// --only: evaluate these exports alone (e.g. the close calls of a 32-window run, on the whole text); the goal checks
// then see only them.
if (only) {
  for (const name of only) if (!asked.has(name)) throw new Error(`--only: no export named ${name} (names: ${entries.map((e) => e.name).join(', ')})`);
  for (let i = entries.length - 1; i >= 0; i--) if (!only.has(entries[i].name)) entries.splice(i, 1);
}
const failed = entries.filter((e) => e.error);
for (const e of failed) notes.push(`${e.name}: not made: ${e.error}`);

// ---- evaluate every export ------------------------------------------------------------------------------------
const rows = [];
for (const [i, e] of entries.filter((x) => !x.error).entries()) {
  log(`eval ${i + 1}/${entries.length - failed.length}: ${e.name}`);
  const ev = await evaluate(e.dir);
  const bytes = onnxBytes(e.dir);
  const shipped = e.quantize?.sizes?.shipped;
  const allocation = e.quantize?.allocation ?? {};
  rows.push({
    name: e.name,
    kind: e.kind,
    method: e.method ?? null,
    label: e.label,
    target: e.target ?? null,
    dir: e.dir,
    shippedBytes: bytes,
    shippedMiB: MiB(bytes),
    // Against the decoder's linear matrices (the format plan's count, what --target-bpw divides by), for every row.
    bitsPerLinearWeight: (8 * bytes) / plan.linearParams,
    predictedMiB: shipped?.predictedMiB ?? null,
    targetMiB: shipped?.targetMiB ?? null,
    reportedShippedMiB: ev.reportedShippedMiB,
    reportedParams: ev.reportedParams,
    reportedBitsPerWeight: ev.reportedBitsPerWeight,
    configs: e.quantize?.configs ?? (e.quantize?.config ? { [e.quantize.config]: e.quantize.quantizedMatrices } : null),
    embedTokens: 'embed_tokens' in allocation ? allocation.embed_tokens : null,
    lmHead: 'lm_head' in allocation ? allocation.lm_head : null,
    perplexity: ev.perplexity,
    windows: ev.windows,
    tokens: ev.tokens,
    evalSeconds: ev.seconds,
    kld: ev.kld ?? null,
    _nll: { nll: ev.windowNll, weights: ev.windowWeights },
    _kld: ev.windowKld ?? null,
  });
}
await kldBase?.close();
rows.sort((a, b) => a.shippedBytes - b.shippedBytes);

const float = rows.find((r) => r.kind === 'float');
const uniforms = rows.filter((r) => r.kind === 'uniform');
const allocated = rows.filter((r) => r.kind === 'allocated');
const summary = (p) => ({ difference: p.difference, low: p.low, high: p.high, verdict: verdict(p) });
const interval = (a, b) => summary(pairedBootstrap(a._nll, b._nll));
/** The paired bootstrap of mean KLD (--kld), null without it. */
const kldInterval = (a, b) => (a._kld && b._kld ? summary(pairedBootstrapKld(a._kld, b._kld)) : null);
/** The uniform export with the lowest perplexity among those of at least `bytes`. */
const bestUniformAtLeast = (bytes) => uniforms.filter((u) => u.shippedBytes >= bytes).sort((a, b) => a.perplexity - b.perplexity)[0];
/** The allocation with the lowest perplexity among those of at most `bytes`. */
const bestAllocationAtMost = (bytes) => allocated.filter((a) => a.shippedBytes <= bytes).sort((a, b) => a.perplexity - b.perplexity)[0];

for (const r of rows) {
  // (float is absent when --only leaves it out: no Δ vs float then)
  r.versusFloat = !float || r === float ? null : interval(r, float);
  if (r.kind !== 'allocated') continue;
  const ref = bestUniformAtLeast(r.shippedBytes);
  r.reference = ref ? ref.name : null;
  r.versusReference = ref ? interval(r, ref) : null;
  r.kldVersusReference = ref ? kldInterval(r, ref) : null;
}

// Checks of the file against the cost model (issue 29: prediction within 0.5%, at most the target, within 1% of it).
for (const r of allocated) {
  if (r.predictedMiB !== null && Math.abs(r.predictedMiB - r.shippedMiB) > 0.005 * r.shippedMiB) notes.push(`${r.name}: predicted ${r.predictedMiB.toFixed(4)} MiB, on disk ${r.shippedMiB.toFixed(4)} MiB (more than 0.5% apart)`);
  if (r.targetMiB !== null && (r.shippedMiB > r.targetMiB + 1e-9 || r.shippedMiB < 0.99 * r.targetMiB)) notes.push(`${r.name}: ${r.shippedMiB.toFixed(4)} MiB on disk for a target of ${r.targetMiB.toFixed(4)} MiB (outside [99%, 100%])`);
}
for (const r of rows) {
  if (r.reportedShippedMiB !== null && Math.abs(r.reportedShippedMiB - r.shippedMiB) > 1e-9) notes.push(`${r.name}: inspect/compare (directorySizes) report ${r.reportedShippedMiB} MiB, the files under onnx/ hold ${r.shippedMiB} MiB`);
  if (r.kind !== 'float' && r.reportedParams !== plan.linearParams) notes.push(`${r.name}: inspect/compare (directorySizes) count ${r.reportedParams.toLocaleString('en-US')} linear weights (${r.reportedBitsPerWeight?.toFixed(3)} bits per linear weight), the format plan and --target-bpw ${plan.linearParams.toLocaleString('en-US')} (${r.bitsPerLinearWeight.toFixed(3)})`);
}

// ---- goal figures ----------------------------------------------------------------------------------------------
const q4Row = rows.find((r) => r.name === 'q4');
const goals = [];
const fmtInterval = (v) => (v ? `${v.difference >= 0 ? '+' : ''}${v.difference.toFixed(3)} [${v.low.toFixed(3)}, ${v.high.toFixed(3)}]${v.verdict === 'tie' ? '' : ` ${v.verdict}`}` : '-');
{
  // 1. The best allocation below every uniform export: for each uniform export, the best allocation of at most its size.
  const dominated = uniforms.map((u) => {
    const a = bestAllocationAtMost(u.shippedBytes);
    return { uniform: u.name, uniformMiB: u.shippedMiB, allocation: a?.name ?? null, allocationMiB: a?.shippedMiB ?? null, versus: a ? interval(a, u) : null, kldVersus: a ? kldInterval(a, u) : null };
  });
  const wins = dominated.filter((d) => d.versus?.verdict === 'better').length;
  const ties = dominated.filter((d) => d.versus?.verdict === 'tie').length;
  const losses = dominated.filter((d) => d.versus?.verdict === 'worse').length;
  const perSize = allocated.map((a) => a.versusReference?.verdict ?? 'no uniform as large');
  goals.push({
    goal: 'best allocation below every uniform export (each uniform export against the best allocation of at most its size)',
    met: wins === uniforms.length,
    text: `${wins} of ${uniforms.length} uniform exports beaten with the interval excluding 0, ${ties} ties, ${losses} losses; allocated exports against the best uniform export of equal or larger size: ${perSize.filter((v) => v === 'better').length} better, ${perSize.filter((v) => v === 'tie').length} ties, ${perSize.filter((v) => v === 'worse').length} worse, ${perSize.filter((v) => v === 'no uniform as large').length} larger than every uniform export`,
    rows: dominated,
  });
  // 2. At q4's file size: the best allocation's increase over float at most half of q4's.
  // (q4's goals need q4 among the evaluated rows: absent when --only leaves it out)
  const atQ4 = q4Row && bestAllocationAtMost(q4Row.shippedBytes);
  if (atQ4 && float) {
    const mine = atQ4.versusFloat;
    const theirs = q4Row.versusFloat;
    goals.push({
      goal: "at the file size of transformers.js' q4: the best allocation's perplexity increase over float at most half of q4's",
      met: mine.difference <= theirs.difference / 2,
      text: `q4 ${q4Row.shippedMiB.toFixed(2)} MiB: +${theirs.difference.toFixed(3)} over float; best allocation of at most that size, ${atQ4.name} (${atQ4.shippedMiB.toFixed(2)} MiB): ${fmtInterval(mine)} over float, ${(mine.difference / theirs.difference).toFixed(3)} of q4's (goal <= 0.5); against q4 ${fmtInterval(interval(atQ4, q4Row))}`,
      allocation: atQ4.name,
      ratio: mine.difference / theirs.difference,
    });
  }
  // 3. At two thirds of q4's size: no worse than q4.
  const atTwoThirds = q4Row && bestAllocationAtMost((2 / 3) * q4Row.shippedBytes);
  if (atTwoThirds) {
    const v = interval(atTwoThirds, q4Row);
    goals.push({
      goal: 'at two thirds of q4\'s file size: no worse than q4',
      met: v.difference <= 0,
      text: `best allocation of at most ${((2 / 3) * q4Row.shippedMiB).toFixed(2)} MiB, ${atTwoThirds.name} (${atTwoThirds.shippedMiB.toFixed(2)} MiB, ${atTwoThirds.perplexity.toFixed(3)}) against q4 (${q4Row.perplexity.toFixed(3)}): ${fmtInterval(v)}`,
      allocation: atTwoThirds.name,
      versus: v,
    });
  }
  // 4. On the shipped model with the llama.cpp protocol (first 32 windows): at Q4_K_M's size, no worse than its perplexity.
  if (isShippedModel && windows === 32 && basename(textPath) === 'brown-test.txt') {
    const atGguf = bestAllocationAtMost(LLAMA_CPP_Q4_K_M.bytes);
    if (atGguf && float) {
      goals.push({
        goal: "on the shipped model at the size of llama.cpp's Q4_K_M file (17.42 MB): perplexity no worse than that file's in llama.cpp (90.377; float 89.970)",
        met: atGguf.perplexity <= LLAMA_CPP_Q4_K_M.perplexity,
        text: `${atGguf.name} (${atGguf.shippedMiB.toFixed(2)} MiB = ${(atGguf.shippedBytes / 1e6).toFixed(2)} MB): ${atGguf.perplexity.toFixed(3)} (float here ${float.perplexity.toFixed(3)}, +${atGguf.versusFloat.difference.toFixed(3)}) against Q4_K_M 17.42 MB: ${LLAMA_CPP_Q4_K_M.perplexity} (+${(LLAMA_CPP_Q4_K_M.perplexity - LLAMA_CPP_Q4_K_M.float).toFixed(3)})`,
        allocation: atGguf.name,
      });
    }
  }
}

// ---- report ------------------------------------------------------------------------------------------------------
const uptimeAfter = execFileSync('uptime', { encoding: 'utf8' }).trim();
const cell = (n, d) => (n === null || n === undefined ? '-' : n.toFixed(d));
const mix = (r) => {
  if (!r.configs) return '-';
  const byBits = {};
  for (const [c, n] of Object.entries(r.configs)) {
    const bits = /^b(\d+)/.exec(c)?.[1] ?? c;
    byBits[bits] = (byBits[bits] ?? 0) + n;
  }
  const linear = Object.entries(byBits).map(([b, n]) => `${b}b:${n}`).join(' ');
  // A tied lm_head is the embedding table itself (the file stores it once, with embed_tokens' codes).
  const emb = r.embedTokens !== null || r.lmHead !== null ? `; embed ${r.embedTokens ?? 'float'}, lm_head ${opened.layout.tiedEmbeddings ? 'tied' : (r.lmHead ?? 'float')}` : '';
  return `${linear}${emb}`;
};
const lines = [];
lines.push(`Perplexity on ${basename(textPath)}@${SEQLEN}, ${rows[0]?.windows} windows (${rows[0]?.tokens} tokens), the same for every export; model ${isShippedModel ? 'packages/fixtures/models/llama-brown-26m' : modelDir}.`);
lines.push('Shipped MiB = every byte under <dir>/onnx (MiB = 2^20 bytes); bits/w = those bits over the linear matrices\' weights. Δ: 95% paired bootstrap over the windows (2000 resamples, seed 42); "better"/"worse" only where the interval excludes 0. Reference: the uniform export with the lowest perplexity among those of equal or larger file. Mix: matrices per bit width (embeddings and lm_head count as matrices where quantized).');
if (calibratedId !== undefined) lines.push(`${calibratedId.toUpperCase()} rows: the matrices quantized by ${calibratedId} on ${calibBlocks} blocks of ${basename(calibPath)}; its allocations spend the HQQ allocations' statistics (the same tables) on the integer-zero configs of ${calibratedId}'s ladder (HQQ's tables hold no symmetric config)${statsByMethod.size > 0 ? `, except the tables --stats-for gives: ${[...statsByMethod].map(([method, dir]) => {
  const quantizer = statsQuantizerOf(dir);
  return `${method} from ${dir}${quantizer ? ` (measured with ${quantizer})` : ''}`;
}).join(', ')}` : ''}.`);
lines.push('');
// (differences of mean KLD between 8-bit files are about 1e-6: shown in exponent form below 1e-4)
const kldNumber = (x) => (x === 0 || Math.abs(x) >= 1e-4 ? x.toFixed(5) : x.toExponential(1));
const fmtKld = (v) => (v ? `${v.difference >= 0 ? '+' : ''}${kldNumber(v.difference)} [${kldNumber(v.low)}, ${kldNumber(v.high)}]${v.verdict === 'tie' ? '' : ` ${v.verdict}`}` : '-');
if (withKld) lines.push('KLD: the KL divergence of each export\'s next-token distribution from the float checkpoint\'s on the same tokens (llama.cpp\'s definitions): mean ± its error, the 99.9% percentile, and how often both put the same token on top. Δ KLD: the paired bootstrap of mean KLD over the windows.');
lines.push('');
lines.push(`| export | kind | shipped MiB | bits/w file | perplexity | Δ vs float [95% CI] |${withKld ? ' mean KLD | KLD 99.9% | same top |' : ''} reference uniform | Δ vs reference [95% CI] |${withKld ? ' Δ KLD vs reference [95% CI] |' : ''} mix |`);
lines.push(`| --- | --- | ---: | ---: | ---: | ---: |${withKld ? ' ---: | ---: | ---: |' : ''} --- | ---: |${withKld ? ' ---: |' : ''} --- |`);
for (const r of rows) {
  const kldCells = withKld ? ` ${r.kld ? `${r.kld.mean.toFixed(5)} ± ${r.kld.error.toFixed(5)}` : '-'} | ${r.kld ? r.kld.p999.toFixed(4) : '-'} | ${r.kld ? `${(100 * r.kld.sameTop).toFixed(2)}%` : '-'} |` : '';
  const kldVs = withKld ? ` ${r.kind === 'allocated' ? fmtKld(r.kldVersusReference) : ''} |` : '';
  lines.push(`| ${r.label} | ${r.kind} | ${cell(r.shippedMiB, 2)} | ${cell(r.bitsPerLinearWeight, 3)} | ${cell(r.perplexity, 3)} | ${r.versusFloat ? fmtInterval(r.versusFloat) : 'baseline'} |${kldCells} ${r.kind === 'allocated' ? (r.reference ?? 'none as large') : ''} | ${r.kind === 'allocated' ? fmtInterval(r.versusReference) : ''} |${kldVs} ${r.kind === 'float' ? '' : mix(r)} |`);
}
lines.push('');
lines.push('Goals (issue 29):');
lines.push('');
for (const g of goals) lines.push(`- ${g.met ? 'MET' : 'NOT MET'}: ${g.goal}. ${g.text}`);
const domination = goals[0]?.rows ?? [];
if (domination.length) {
  lines.push('');
  lines.push('Each uniform export against the best allocation of at most its size:');
  lines.push('');
  lines.push(`| uniform export | MiB | best allocation of at most that size | MiB | Δ allocation - uniform [95% CI] |${withKld ? ' Δ mean KLD [95% CI] |' : ''}`);
  lines.push(`| --- | ---: | --- | ---: | ---: |${withKld ? ' ---: |' : ''}`);
  for (const d of domination) lines.push(`| ${d.uniform} | ${d.uniformMiB.toFixed(2)} | ${d.allocation ?? 'none'} | ${cell(d.allocationMiB, 2)} | ${fmtInterval(d.versus)} |${withKld ? ` ${fmtKld(d.kldVersus)} |` : ''}`);
}
// The allocations made for the same target, against each other (the allocator is the difference).
const sameTarget = [];
{
  const groups = new Map();
  for (const r of allocated) {
    if (!r.target) continue;
    const key = `${r.target.unit} ${r.target.value}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  for (const [target, group] of groups) {
    for (let i = 0; i < group.length; i++) {
      for (let j = i + 1; j < group.length; j++) {
        const [a, b] = [group[i], group[j]];
        sameTarget.push({ target, a: a.name, b: b.name, aMiB: a.shippedMiB, bMiB: b.shippedMiB, perplexity: interval(a, b), kld: kldInterval(a, b) });
      }
    }
  }
}
if (sameTarget.length) {
  lines.push('');
  lines.push('Allocations made for the same target, paired (Δ = first - second; negative: the first is better):');
  lines.push('');
  lines.push(`| target | first | MiB | second | MiB | Δ perplexity [95% CI] |${withKld ? ' Δ mean KLD [95% CI] |' : ''}`);
  lines.push(`| --- | --- | ---: | --- | ---: | ---: |${withKld ? ' ---: |' : ''}`);
  for (const d of sameTarget) lines.push(`| ${d.target} | ${d.a} | ${d.aMiB.toFixed(2)} | ${d.b} | ${d.bMiB.toFixed(2)} | ${fmtInterval(d.perplexity)} |${withKld ? ` ${fmtKld(d.kld)} |` : ''}`);
}
if (notes.length) {
  lines.push('');
  lines.push('Notes:');
  lines.push('');
  for (const n of notes) lines.push(`- ${n}`);
}
lines.push('');
lines.push(`Run ${startedAt.toISOString()} - ${new Date().toISOString()}; load before: ${uptimeBefore}; after: ${uptimeAfter}.`);
const markdown = `${lines.join('\n')}\n`;
console.log(markdown);

mkdirSync(dirname(outBase), { recursive: true });
const json = {
  model: isShippedModel ? 'packages/fixtures/models/llama-brown-26m' : modelDir,
  text: basename(textPath),
  seqlen: SEQLEN,
  windows: rows[0]?.windows,
  tokens: rows[0]?.tokens,
  started: startedAt.toISOString(),
  finished: new Date().toISOString(),
  uptimeBefore,
  uptimeAfter,
  loadavgAfter: loadavg(),
  rows: rows.map(({ _nll, _kld, dir, ...r }) => ({ ...r, dir: basename(dir) })),
  goals,
  sameTarget,
  notes,
};
for (const [file, text] of [[`${outBase}.md`, markdown], [`${outBase}.json`, `${JSON.stringify(json, null, 2)}\n`]]) {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}
log(`wrote ${outBase}.md and ${outBase}.json`);
