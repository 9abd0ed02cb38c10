// Decode and prefill speed and peak memory, side by side: `layerquant generate` (the fused graph, shared KV cache),
// transformers.js' generate() on the same export, and llama.cpp (node-llama-cpp 3.21.1) on GGUF files of the same
// weights, at each thread count. Every measurement runs in a fresh child; peak RSS is its VmHWM.
//
//   node bench/decode.mjs [--model <dir> | --shape tinyllama] [--threads 1,2] [--prompt-tokens 64] [--new-tokens 64]
//                         [--gguf-q4 <file>] [--gguf-f32 <file>] [--repeat 3] [--out out/bench-decode]
//                         [--weights hqq,q4_0,fp32] [--runners command,library,transformers,llama.cpp]
//
// Two q4 exports: HQQ b4g32 (fractional zeros through the per-group correction, float embeddings and lm_head: what
// `export` gives for an HQQ checkpoint), and `q4 as Q4_0`: round-to-nearest b4g32 with no zero point (MatMulNBits'
// zero 8), embed_tokens and lm_head included (`quantize --format onnx` with them as units), the same coverage and
// block format as llama.cpp's Q4_0 row. Both at accuracy level 4, the export's default. The float one is the fp32
// checkpoint. The GGUF files are @layerquant/gguf's exportGguf of the same float checkpoint at Q4_0 and F32 (every
// matrix; norms F32), unless given.
//
// Runners: `layerquant generate` (the command, one cold run as a user times it), layerquant's library loop
// (openKvDecoder + greedyDecode, warmed up once), transformers.js' generate() and llama.cpp (each warmed up once).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { exportGguf } from '@layerquant/gguf/node';
import { loadTokenizer } from '@layerquant/tensor-io';
import { argument, checkArguments, shapeArgument, writeSyntheticCheckpoint } from './lib/synthetic-model.mjs';

checkArguments(import.meta.url, { values: ['out', 'threads', 'prompt-tokens', 'new-tokens', 'repeat', 'gguf-q4', 'gguf-f32', 'weights', 'runners', 'model', 'shape'] });

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const cli = join(root, 'apps/cli/dist/bin.js');
const out = resolve(argument('out', join(root, 'out/bench-decode')));
const threadsList = argument('threads', '1,2').split(',').map(Number);
const promptTokens = Number(argument('prompt-tokens', '64'));
const newTokens = Number(argument('new-tokens', '64'));
const repeat = Number(argument('repeat', '3'));
const ggufs = { q4: argument('gguf-q4', undefined), f32: argument('gguf-f32', undefined) };
// Which exports and runners to measure (a TinyLlama-shape export takes minutes to make; each is made only if asked).
const listArgument = (name, all) => {
  const list = argument(name, all.join(',')).split(',');
  const unknown = list.filter((v) => !all.includes(v));
  if (unknown.length > 0) {
    console.error(`--${name}: ${unknown.join(', ')} unknown; choose from ${all.join(', ')}`);
    process.exit(2);
  }
  return new Set(list);
};
const weightKinds = listArgument('weights', ['hqq', 'q4_0', 'fp32']);
const runners = listArgument('runners', ['command', 'library', 'transformers', 'llama.cpp']);
mkdirSync(out, { recursive: true });

let modelDir = argument('model', undefined);
let label = 'given';
if (!modelDir && process.argv.includes('--shape')) {
  const { shapeName, shape } = shapeArgument();
  modelDir = join(out, `synthetic-${shapeName}`);
  if (!existsSync(join(modelDir, 'config.json'))) await writeSyntheticCheckpoint(modelDir, shape);
  label = shapeName;
} else if (!modelDir) {
  modelDir = shippedModelDir;
  label = 'llama-brown-26m';
}

const tokenizer = await loadTokenizer(modelDir);
const promptIds = tokenizer.encode(readFileSync(brownTestPath, 'utf8').slice(0, 20 * promptTokens)).slice(0, promptTokens);
const prompt = tokenizer.decode(promptIds);

const layerquant = (...args) => execFileSync(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
const q4Checkpoint = join(out, `${label}-b4g32`);
const q4Export = join(out, `${label}-b4g32-onnx`);
const fp32Export = join(out, `${label}-fp32-onnx`);
if (weightKinds.has('hqq') && !existsSync(q4Export)) {
  rmSync(q4Checkpoint, { recursive: true, force: true });
  layerquant('quantize', modelDir, '--method', 'hqq', '--config', 'b4g32', '--out', q4Checkpoint, '--json');
  layerquant('export', q4Checkpoint, '--format', 'onnx', '--out', q4Export, '--json');
}
if (weightKinds.has('fp32') && !existsSync(fp32Export)) layerquant('export', modelDir, '--format', 'onnx', '--out', fp32Export, '--json');
const q40Export = join(out, `${label}-q4_0-like-onnx`);
if (weightKinds.has('q4_0') && !existsSync(q40Export)) {
  // Every matrix and both embeddings at b4g32-sym fit a file of 4.5 bits per weight; a float lm_head would not.
  const { loadDecoderConfig } = await import('@layerquant/tensor-io');
  const c = await loadDecoderConfig(modelDir);
  const kvWidth = c.numKeyValueHeads * c.headDim;
  const linear = c.numLayers * c.hiddenSize * (2 * c.numHeads * c.headDim + 2 * kvWidth + 3 * c.intermediateSize);
  const embeddings = c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2);
  const targetMiB = (((linear + embeddings) * 4.5) / 8 / 2 ** 20) * 1.05 + 1;
  layerquant('quantize', modelDir, '--method', 'mxq', '--quantizer', 'rtn', '--configs', 'b4g32-sym', '--embedding-configs', 'b4g32-sym', '--format', 'onnx', '--target-size', targetMiB.toFixed(2), '--out', q40Export, '--json');
}
for (const [key, type] of [['q4', 'Q4_0'], ['f32', 'F32']]) {
  if (ggufs[key] || !runners.has('llama.cpp') || !weightKinds.has(key === 'q4' ? 'q4_0' : 'fp32')) continue;
  ggufs[key] = join(out, `${label}-${type}.gguf`);
  if (!existsSync(ggufs[key])) await exportGguf({ modelDir, outFile: ggufs[key], types: { '.*': type } });
}

/** A child's stdout JSON (last line) and its peak RSS in MiB. */
function measured(args, env = {}) {
  const peakFile = join(out, `peak-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const child = spawnSync(process.execPath, ['--import', join(root, 'bench/lib/report-peak.mjs'), ...args], {
    cwd: join(root, 'bench'),
    env: { ...process.env, ...env, LAYERQUANT_PEAK_FILE: peakFile, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' },
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  if (child.status !== 0) throw new Error(`${args.join(' ')} failed (${child.status}): ${child.stderr.slice(-2000)}`);
  const peakRssMiB = existsSync(peakFile) ? Number(readFileSync(peakFile, 'utf8')) / 2 ** 20 : null;
  rmSync(peakFile, { force: true });
  const json = JSON.parse(child.stdout.trim().split('\n').at(-1));
  return { ...json, peakRssMiB };
}

/** The run with the most decode tokens/s of `repeat` fresh children (this machine's timings swing 1.5x run to run), and their median. */
function best(args, env = {}) {
  const runs = Array.from({ length: repeat }, () => measured(args, env));
  const rates = runs.map((r) => r.decodeTokensPerSecond ?? 0).sort((a, b) => a - b);
  const top = runs.reduce((a, b) => ((b.decodeTokensPerSecond ?? 0) > (a.decodeTokensPerSecond ?? 0) ? b : a));
  return { ...top, decodeMedian: rates[Math.floor(rates.length / 2)] };
}

const rows = [];
for (const threads of threadsList) {
  const add = (runner, weights, result) => {
    rows.push({ model: label, threads, runner, weights, prefillTokensPerSecond: result.prefillTokensPerSecond, decodeTokensPerSecond: result.decodeTokensPerSecond, decodeMedian: result.decodeMedian, peakRssMiB: result.peakRssMiB, ids: result.ids });
    console.error(`${label} threads ${threads} ${runner} ${weights}: prefill ${result.prefillTokensPerSecond.toFixed(1)} tok/s, decode ${result.decodeTokensPerSecond?.toFixed(1)} tok/s, peak ${result.peakRssMiB?.toFixed(0)} MiB`);
  };
  const exports = [
    ['hqq', 'q4 (HQQ b4g32, zero correction, float embeddings)', q4Export],
    ['q4_0', 'q4 as Q4_0 (b4g32-sym, embeddings and lm_head too)', q40Export],
    ['fp32', 'fp32', fp32Export],
  ].filter(([kind]) => weightKinds.has(kind));
  for (const [, weights, dir] of exports) {
    if (runners.has('command')) add('layerquant generate (command, cold)', weights, best([cli, 'generate', dir, '--prompt', prompt, '--max-new-tokens', String(newTokens), '--threads', String(threads), '--json']));
    if (runners.has('library')) add('layerquant greedyDecode (library)', weights, best([join(root, 'bench/lib/layerquant-generate.mjs'), dir, String(threads), promptIds.join(','), String(newTokens)]));
    const dtype = dir === fp32Export ? 'fp32' : 'q4';
    if (runners.has('transformers')) add('transformers.js generate()', weights, best([join(root, 'bench/lib/transformers-generate.mjs'), dir, dtype, String(threads), promptIds.join(','), String(newTokens)]));
  }
  for (const [weights, file] of [['Q4_0 GGUF', ggufs.q4], ['F32 GGUF', ggufs.f32]]) {
    if (file && runners.has('llama.cpp')) add('llama.cpp (node-llama-cpp 3.21.1)', weights, best([join(root, 'bench/lib/llama-cpp-generate.mjs'), resolve(file), String(threads), promptIds.join(','), String(newTokens)]));
  }
}
const report = { model: label, promptTokens: promptIds.length, newTokens, rows: rows.map(({ ids, ...row }) => row), machine: { cpus: (await import('node:os')).cpus().length, load: (await import('node:os')).loadavg() } };
writeFileSync(join(out, `decode-${label}.json`), `${JSON.stringify(report, null, 1)}\n`);
console.log(`best of ${repeat} fresh runs each (median in brackets); load average ${report.machine.load.map((v) => v.toFixed(2)).join(' ')}`);
console.log('| threads | runner | weights | prefill tok/s | decode tok/s | peak RSS MiB |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const r of rows) console.log(`| ${r.threads} | ${r.runner} | ${r.weights} | ${r.prefillTokensPerSecond.toFixed(1)} | ${r.decodeTokensPerSecond?.toFixed(1) ?? '-'} (${r.decodeMedian?.toFixed(1) ?? '-'}) | ${r.peakRssMiB?.toFixed(0) ?? '-'} |`);
