// Issue 24's allocation measurement: the best allocator on GPTQ's own statistics against on HQQ's, at the shipped
// sizes of issue 29, each allocation quantized by GPTQ and written as the ONNX file a user ships, then measured on
// the whole text (perplexity and KL divergence from the float model, paired bootstrap over the windows).
//
//   node bench/gptq-statistics.mjs [--model <dir>] [--dataset brown-test | --text <file>] [--max-tokens N]
//        [--calib brown-calib] [--calib-blocks 16] [--method mxq]
//        [--targets bpw:3.9,bpw:4.5,mib:16.613,mib:19.7065,mib:29.5598]
//        [--embedding-configs b8g32-int,b8g64-int,b8g128-int] [--work /tmp/layerquant-gptq-statistics]
//        [--out bench/results/gptq-statistics]
//
// At each target (bits per linear weight of the file, or MiB of it) four exports, every one through the built CLI
// (`quantize --format onnx --target-bpw|--target-size`), as a user runs it:
//   - gptq-stats       GPTQ, allocated on statistics measured with GPTQ (`--quantizer gptq`, the default), on GPTQ's
//                      whole native ladder (integer zeros and symmetric);
//   - gptq-stats-int   the same statistics on the integer-zero ladder only (what HQQ's tables hold): the statistics
//                      compared alone, on one ladder;
//   - hqq-stats-int    GPTQ, allocated on HQQ's statistics (`--stats-quantizer hqq`) on that integer-zero ladder
//                      (bench/shipped-size.mjs's GPTQ rows);
//   - hqq              HQQ allocated on its own statistics and its whole ladder, fractional zeros included (the
//                      allocation before GPTQ).
// The embeddings' ladder is --embedding-configs for all four (issue 29: the weight-error tables price quantized
// embeddings too cheaply). Statistics are measured once per quantizer (the first allocation caches them in
// <dir>/stats) and read with --stats by the others. Each export is evaluated once on the same windows; its
// per-window losses and KLD sums are kept in --work, so an interrupted run resumes (delete --work to start over).
// Writes <out>.md (the table, the paired comparisons and the front at every target) and <out>.json.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { configName } from '@layerquant/core';
import { datasets } from '@layerquant/datasets';
import { onnxCostModel } from '@layerquant/export';
import { shippedModelDir } from '@layerquant/fixtures';
import { klDivergence, kldSummary, pairedBootstrap, pairedBootstrapKld, resolveTextPath, verdict } from '@layerquant/perplexity';
import { builtinRegistries, floatKldBase, formatPlan, openForEvaluation } from '@layerquant/pipeline';
import { openModel } from '@layerquant/tensor-io';
import { exportedIn, onnxBytes, statsOf } from './lib/cli.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MIB = 2 ** 20;
const SEQLEN = 512;
const THREADS = 2;

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: shippedModelDir },
    dataset: { type: 'string' },
    text: { type: 'string' },
    'max-tokens': { type: 'string' },
    calib: { type: 'string', default: 'brown-calib' },
    'calib-blocks': { type: 'string', default: '16' },
    method: { type: 'string', default: 'mxq' },
    targets: { type: 'string', default: 'bpw:3.9,bpw:4.5,mib:16.613,mib:19.7065,mib:29.5598' },
    'embedding-configs': { type: 'string', default: 'b8g32-int,b8g64-int,b8g128-int' },
    work: { type: 'string', default: '/tmp/layerquant-gptq-statistics' },
    out: { type: 'string', default: join(ROOT, 'bench/results/gptq-statistics') },
  },
});
const modelDir = resolve(values.model);
const textPath = resolveTextPath(values.text ? { text: values.text } : { dataset: values.dataset ?? 'brown-test' }, datasets);
const calibPath = resolveTextPath(existsSync(values.calib) ? { text: values.calib } : { dataset: values.calib }, datasets);
const maxTokens = values['max-tokens'] === undefined ? undefined : Number(values['max-tokens']);
const targets = values.targets.split(',').map((text) => {
  const [unit, value] = text.split(':');
  if (!['bpw', 'mib'].includes(unit) || !(Number(value) > 0)) throw new Error(`--targets ${text}: bpw:<bits per linear weight> or mib:<MiB>`);
  return { unit, value: Number(value), args: [unit === 'bpw' ? '--target-bpw' : '--target-size', value] };
});
const work = resolve(values.work);
mkdirSync(work, { recursive: true });
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const log = (text) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${text}   [load ${load()}]\n`);

/** An export made by `args` unless a finished one is in --work (lib/cli.mjs); a typed refusal stops the run. */
function exported(name, args) {
  const made = exportedIn(work, name, args, log);
  if (made.error) throw new Error(`${name}: ${made.error}`);
  return { ...made, shippedBytes: onnxBytes(made.dir) };
}

// ---- the plan: ladders and statistics -------------------------------------------------------------------------------
const startedAt = new Date();
const uptimeBefore = execFileSync('uptime', { encoding: 'utf8' }).trim();
const opened = await openModel(modelDir);
await opened.checkpoint.close();
const registries = builtinRegistries();
const gptqPlan = formatPlan(onnxCostModel(opened.config, opened.layout, {}), registries.quantizers.get('gptq'));
const integerLadder = gptqPlan.configs.filter((c) => !c.symmetric).map(configName).join(',');
const calibrated = ['--quantizer', 'gptq', '--calib', calibPath, '--blocks', values['calib-blocks']];
const embeddings = ['--embedding-configs', values['embedding-configs']];
const base = [modelDir, '--method', values.method];
const VARIANTS = [
  { id: 'gptq-stats', label: `GPTQ + ${values.method}, GPTQ statistics, GPTQ's ladder`, args: [...calibrated] },
  { id: 'gptq-stats-int', label: `GPTQ + ${values.method}, GPTQ statistics, integer-zero ladder`, args: [...calibrated, '--configs', integerLadder], statsFrom: 'gptq-stats' },
  { id: 'hqq-stats-int', label: `GPTQ + ${values.method}, HQQ statistics, integer-zero ladder`, args: [...calibrated, '--configs', integerLadder, '--stats-quantizer', 'hqq'] },
  { id: 'hqq', label: `HQQ + ${values.method}, HQQ statistics and ladder`, args: ['--quantizer', 'hqq'] },
];
const statistics = new Map(); // variant id -> stats dir
const statsSeconds = new Map();
const entries = [];
for (const target of targets) {
  for (const variant of VARIANTS) {
    const name = `${variant.id}-${target.unit}-${target.value}`;
    const stats = statistics.get(variant.statsFrom ?? variant.id);
    const made = exported(name, ['quantize', ...base, ...variant.args, ...target.args, ...embeddings, ...(stats ? ['--stats', stats] : []), '--format', 'onnx']);
    if (!statistics.has(variant.statsFrom ?? variant.id)) {
      const found = statsOf(made.dir);
      if (!found) throw new Error(`${name}: no statistics cached in ${made.dir}/stats`);
      statistics.set(variant.statsFrom ?? variant.id, found);
      statsSeconds.set(variant.statsFrom ?? variant.id, made.seconds);
    }
    entries.push({ name, variant, target, ...made });
  }
}
entries.push({ name: 'float', variant: { id: 'float', label: 'float (fp32 graph)' }, ...exported('float', ['export', modelDir, '--format', 'onnx']) });

// ---- evaluation: every export on the same windows, perplexity and KLD from the float model -----------------------------
let kld;
const rows = [];
try {
  for (const [i, e] of entries.entries()) {
    const record = join(e.dir, 'bench-eval.json');
    const key = `${basename(textPath)}@${SEQLEN}:${maxTokens ?? 'all'}`;
    let saved = existsSync(record) ? JSON.parse(readFileSync(record, 'utf8')) : undefined;
    if (saved?.key !== key) {
      log(`eval ${i + 1}/${entries.length}: ${e.name}`);
      const started = performance.now();
      const { text, tokenizer, opened: model } = await openForEvaluation(e.dir, textPath, { seqlen: SEQLEN, allowLongContext: false, threads: THREADS, quantizers: registries.quantizers });
      try {
        let ids = tokenizer.encode(text);
        if (maxTokens !== undefined) ids = ids.slice(0, maxTokens);
        kld ??= (await floatKldBase(modelDir, ids, { seqlen: SEQLEN }, { evaluation: { threads: THREADS }, onCompute: (file, bytes) => log(`computing the float KLD base ${file} (${(bytes / 2 ** 30).toFixed(2)} GiB)`) })).base;
        const result = await klDivergence(model.model, kld, ids, { seqlen: SEQLEN });
        saved = {
          key,
          perplexity: result.perplexity.ppl,
          nll: { nll: result.perplexity.windowNll, weights: result.perplexity.windowWeights },
          kld: kldSummary(result.statistics),
          windowKld: result.windows,
          seconds: (performance.now() - started) / 1000,
        };
      } finally {
        await model.dispose();
      }
      writeFileSync(`${record}.tmp`, JSON.stringify(saved));
      renameSync(`${record}.tmp`, record);
      log(`  ${e.name}: ${(e.shippedBytes / MIB).toFixed(2)} MiB, ppl ${saved.perplexity.toFixed(3)}, mean KLD ${saved.kld.mean.toFixed(5)}`);
    }
    rows.push({ ...e, ...saved });
  }
} finally {
  await kld?.close();
}

// ---- report -----------------------------------------------------------------------------------------------------------
const float = rows.find((r) => r.name === 'float');
const versus = (a, b) => {
  const ppl = pairedBootstrap(a.nll, b.nll);
  const kl = pairedBootstrapKld(a.windowKld, b.windowKld);
  return { ppl: { ...ppl, verdict: verdict(ppl) }, kld: { ...kl, verdict: verdict(kl) } };
};
const signed = (v, digits) => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;
const fmt = (v, digits) => `${signed(v.difference, digits)} [${v.low.toFixed(digits)}, ${v.high.toFixed(digits)}]${v.verdict === 'tie' ? '' : ` ${v.verdict}`}`;
const MiB = (r) => (r.shippedBytes / MIB).toFixed(2);
const bpw = (r) => r.quantize?.sizes?.shipped?.bitsPerWeight;
/** Matrices per config (embed_tokens and lm_head included where quantized). */
const mixOf = (r) => (r.quantize?.configs ? Object.entries(r.quantize.configs).map(([c, n]) => `${c}:${n}`).join(' ') : '-');

const lines = [];
lines.push(`Model ${modelDir === resolve(shippedModelDir) ? 'packages/fixtures/models/llama-brown-26m (the shipped model)' : modelDir}; ${basename(textPath)}@${SEQLEN}, ${maxTokens ?? 'all'} tokens, ${float.nll.nll.length} windows, the same for every export; KLD from the float model on those windows (llama.cpp's statistics). Allocator: ${values.method}; GPTQ on ${values['calib-blocks']} blocks of ${basename(calibPath)}; embeddings' ladder ${values['embedding-configs']}. Shipped MiB: every byte under <dir>/onnx; bits/w: those bits over the linear matrices' weights. Δ: 95% paired bootstrap over the windows (2000 resamples, seed 42); better/worse only where the interval excludes 0.`);
lines.push('');
lines.push('| target | export | shipped MiB | bits/w file | perplexity | Δ ppl vs float | mean KLD ± error | KLD 99.9% | same top | quantize time | mix |');
lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
for (const r of rows) {
  const vs = r === float ? null : versus(r, float);
  lines.push(`| ${r.target ? `${r.target.unit} ${r.target.value}` : '-'} | ${r.variant.label} | ${MiB(r)} | ${bpw(r)?.toFixed(3) ?? '-'} | ${r.perplexity.toFixed(3)} | ${vs ? fmt(vs.ppl, 3) : 'baseline'} | ${r.kld.mean.toFixed(5)} ± ${r.kld.error.toFixed(5)} | ${r.kld.p999.toFixed(4)} | ${(100 * r.kld.sameTop).toFixed(2)}% | ${r.seconds.toFixed(0)} s | ${mixOf(r)} |`);
}
lines.push('');
lines.push("Paired differences at each target: GPTQ's statistics minus HQQ's (both GPTQ-quantized, both on the integer-zero ladder: the statistics compared alone); GPTQ's whole ladder minus its integer-zero ladder (both on GPTQ's statistics); and the GPTQ allocation of lowest perplexity at that target (picked on these same windows, so the pick favours it a little) minus HQQ allocated on its own statistics and ladder.");
lines.push('');
lines.push('| target | GPTQ stats − HQQ stats: Δ ppl | Δ mean KLD | GPTQ ladder − integer ladder (GPTQ stats): Δ ppl | Δ mean KLD | lowest-perplexity GPTQ allocation − HQQ allocation: Δ ppl | Δ mean KLD |');
lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
const comparisons = [];
for (const target of targets) {
  const at = (id) => rows.find((r) => r.variant.id === id && r.target === target);
  const stats = versus(at('gptq-stats-int'), at('hqq-stats-int'));
  const ladder = versus(at('gptq-stats'), at('gptq-stats-int'));
  const gptqRows = ['gptq-stats', 'gptq-stats-int', 'hqq-stats-int'].map(at);
  const bestGptq = gptqRows.reduce((a, b) => (b.perplexity < a.perplexity ? b : a));
  const overHqq = versus(bestGptq, at('hqq'));
  comparisons.push({ target, statistics: stats, ladder, bestGptq: bestGptq.name, overHqq });
  lines.push(`| ${target.unit} ${target.value} | ${fmt(stats.ppl, 3)} | ${fmt(stats.kld, 5)} | ${fmt(ladder.ppl, 3)} | ${fmt(ladder.kld, 5)} | ${fmt(overHqq.ppl, 3)} (${bestGptq.variant.id}) | ${fmt(overHqq.kld, 5)} |`);
}
lines.push('');
// The front: at each export's size, the best export of at most that size (lowest perplexity), and whether GPTQ made it.
lines.push('The front (every export of this run, by size): at each size, the export of at most that size with the lowest perplexity, and with the lowest mean KLD.');
lines.push('');
lines.push('| at most MiB | bits/w file | lowest perplexity | lowest mean KLD |');
lines.push('| ---: | ---: | --- | --- |');
const front = [];
for (const r of [...rows].filter((x) => x !== float).sort((a, b) => a.shippedBytes - b.shippedBytes)) {
  const within = rows.filter((x) => x !== float && x.shippedBytes <= r.shippedBytes);
  const byPpl = within.reduce((a, b) => (b.perplexity < a.perplexity ? b : a));
  const byKld = within.reduce((a, b) => (b.kld.mean < a.kld.mean ? b : a));
  front.push({ MiB: r.shippedBytes / MIB, bitsPerWeight: bpw(r), byPerplexity: byPpl.name, byKld: byKld.name, gptq: byPpl.variant.id !== 'hqq' && byKld.variant.id !== 'hqq' });
  lines.push(`| ${MiB(r)} | ${bpw(r)?.toFixed(3) ?? '-'} | ${byPpl.name} (${byPpl.perplexity.toFixed(3)}) | ${byKld.name} (${byKld.kld.mean.toFixed(5)}) |`);
}
lines.push('');
lines.push(`Statistics (each the wall clock of the first allocation that measured and cached them, its quantization included): GPTQ's ${statsSeconds.get('gptq-stats')?.toFixed(0)} s, HQQ's on the integer ladder ${statsSeconds.get('hqq-stats-int')?.toFixed(0)} s, HQQ's on its whole ladder ${statsSeconds.get('hqq')?.toFixed(0)} s.`);
lines.push(`Run ${startedAt.toISOString()} - ${new Date().toISOString()}; load before: ${uptimeBefore}; after: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}.`);
writeFileSync(`${values.out}.md`, `${lines.join('\n')}\n`);
const strip = ({ nll, windowKld, variant, dir, quantize, ...rest }) => ({ ...rest, variant: variant.id, dir: basename(dir), quantize: quantize ? { configs: quantize.configs, sizes: quantize.sizes } : null });
writeFileSync(`${values.out}.json`, `${JSON.stringify({ started: startedAt.toISOString(), model: modelDir, text: textPath, maxTokens: maxTokens ?? null, method: values.method, calibBlocks: Number(values['calib-blocks']), embeddingConfigs: values['embedding-configs'], rows: rows.map(strip), comparisons, front }, null, 1)}\n`);
console.log(lines.join('\n'));
