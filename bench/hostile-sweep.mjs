// A sweep of what careful users and hostile inputs do (issue 27), run against the built CLI: mutated safetensors,
// lying config.json and tokenizer files, damaged quantized checkpoints and ONNX exports, lying statistics tables, bad
// options and paths, misbehaving plug-ins, interrupts in the final swap, and (with redis-server) tampered queue jobs.
// Every case is hostile by construction, so the right answer is exit 1 with one `layerquant: error:` line, an earlier
// result in --out left byte-identical, and, for interrupts, the earlier result whole. It counts:
//   silent     exit 0 (a number or a file from an input that should have been refused)
//   untyped    exit 2 (internal error), a crash, or an error that is not one line
//   hang       no exit within --timeout seconds (default 120)
//   lost       --out changed by a failed or interrupted run
//   steerable  a queue job that made a worker read outside its model, or a coordinator accept a result it did not plan
// Usage: pnpm build && node bench/hostile-sweep.mjs [--timeout 120] [--only config,paths] [--json out.json]
import { brownTestPath, shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { readSafetensorsHeader } from '@layerquant/tensor-io';
import { directorySnapshot, swapRenamesDone } from '@layerquant/tensor-io/testing';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argument, checkArguments } from './lib/synthetic-model.mjs';
import { queueCases } from './lib/hostile-queue.mjs';

checkArguments(import.meta.url, { values: ['timeout', 'only', 'json'] });

const bin = fileURLToPath(new URL('../apps/cli/dist/bin.js', import.meta.url));
const timeoutMs = Number(argument('timeout', '120')) * 1000;
const only = argument('only', '')?.split(',').filter(Boolean) ?? [];
const jsonOut = argument('json', undefined);
const work = mkdtempSync(join(tmpdir(), 'layerquant-sweep-'));
process.env.LAYERQUANT_CACHE_DIR = join(work, 'hash-cache');

/** Runs the CLI; `onSpawn` may signal the child. Resolves with its code, output and whether it hung. */
export function runCli(argv, { env = {}, onSpawn } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    onSpawn?.(child);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, hung });
    });
  });
}

/** The verdict on a run that must be refused: typed, silent, untyped or hang. */
export function verdict(result) {
  if (result.hung) return 'hang';
  if (result.code === 0) return 'silent';
  const lines = result.stderr.trim().split('\n').filter((l) => l.startsWith('layerquant: '));
  if (result.code === 1 && lines.length === 1 && lines[0].startsWith('layerquant: error: ')) return 'typed';
  return 'untyped';
}

// ---- the model and the results the cases start from ----------------------------------------------------------

const model = join(work, 'model');
const text = join(work, 'text.txt');
const previous = join(work, 'previous');
const quantized = join(work, 'quantized');
const exported = join(work, 'exported');
const config = tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', tieWordEmbeddings: true, attentionBias: true, hiddenSize: 64, intermediateSize: 128, headDim: 16, vocabSize: 8192, maxPositionEmbeddings: 1024 });
await writeModelDirectory(model, config, { seed: 27, dtype: 'F16', tokenizerFrom: shippedModelDir });
writeFileSync(text, readFileSync(brownTestPath, 'utf8').slice(0, 20_000));
for (const [argv, what] of [
  [['quantize', model, '--method', 'rtn', '--config', 'b4g64', '--out', previous], 'previous'],
  [['quantize', model, '--method', 'rtn', '--config', 'b4g64', '--out', quantized], 'quantized'],
  [['export', quantized, '--format', 'onnx', '--out', exported, '--accuracy-level', '0'], 'exported'],
]) {
  const r = await runCli(argv);
  if (r.code !== 0) throw new Error(`setup (${what}) failed: ${r.stderr}`);
}
const evalArgs = (dir, ...rest) => ['eval', dir, '--text', text, '--seqlen', '64', '--max-tokens', '256', ...rest];
let copies = 0;
/** A copy of `from` with `edit` applied. */
const copy = (edit, from = model) => {
  const dir = join(work, `case-${copies++}`);
  cpSync(from, dir, { recursive: true });
  edit(dir);
  return dir;
};
const editJson = (name, edit) => (dir) => {
  const json = JSON.parse(readFileSync(join(dir, name), 'utf8'));
  edit(json);
  writeFileSync(join(dir, name), JSON.stringify(json));
};
const fifo = join(work, 'fifo');
execFileSync('mkfifo', [fifo]);

// ---- the cases: [category, label, () => argv] (each must be refused) ---------------------------------------

const cases = [];
const add = (category, label, argv) => cases.push({ category, label, argv });

// safetensors: the header and data section of the single file, edited
const headerOf = (dir) => {
  const bytes = readFileSync(join(dir, 'model.safetensors'));
  const length = Number(bytes.readBigUInt64LE(0));
  return { bytes, length, header: JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) };
};
const rewrite = (edit) => (dir) => {
  const { bytes, length, header } = headerOf(dir);
  edit(header);
  const json = Buffer.from(JSON.stringify(header));
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([size, json, bytes.subarray(8 + length)]));
};
const tensorNames = Object.keys(headerOf(model).header).filter((k) => k !== '__metadata__');
for (const [i, name] of tensorNames.slice(0, 8).entries()) {
  add('safetensors', `${name}: dtype BF16 -> I16`, () => evalArgs(copy(rewrite((h) => (h[name].dtype = 'I16')))));
  add('safetensors', `${name}: offsets shifted`, () => evalArgs(copy(rewrite((h) => (h[name].data_offsets = h[name].data_offsets.map((o) => o + 2))))));
  add('safetensors', `${name}: shape lies`, () => evalArgs(copy(rewrite((h) => (h[name].shape = [...h[name].shape.slice(0, -1), h[name].shape.at(-1) + 1])))));
  if (i < 4) add('safetensors', `${name}: NaN in the data`, () => evalArgs(copy((dir) => {
    const { bytes, length, header } = headerOf(dir);
    bytes.writeUInt16LE(0x7e00, 8 + length + header[name].data_offsets[0]);
    writeFileSync(join(dir, 'model.safetensors'), bytes);
  })));
}
add('safetensors', 'file truncated', () => evalArgs(copy((dir) => writeFileSync(join(dir, 'model.safetensors'), readFileSync(join(dir, 'model.safetensors')).subarray(0, 5000)))));

// config.json: one field lies
const configLies = [
  ['rms_norm_eps', -1], ['rms_norm_eps', 0], ['rope_theta', 0], ['rope_theta', -10000], ['rope_theta', '500000'],
  ['rope_scaling', { rope_type: 'linear', factor: 0 }], ['rope_scaling', { rope_type: 'yarn', factor: 4 }], ['hidden_act', 'gelu'],
  ['layer_types', ['full_attention', 'chunked_attention']], ['quantization_config', { quant_method: 'gptq' }], ['hidden_size', '64'],
  ['num_hidden_layers', 0], ['num_attention_heads', 3], ['vocab_size', -5], ['tie_word_embeddings', 'yes'], ['eos_token_id', -1],
  ['final_logit_softcapping', 30], ['partial_rotary_factor', 0.5], ['head_dim', 15], ['max_position_embeddings', 0],
];
for (const [field, value] of configLies) {
  add('config', `${field} = ${JSON.stringify(value)} (eval)`, () => evalArgs(copy(editJson('config.json', (c) => (c[field] = value)))));
  add('config', `${field} = ${JSON.stringify(value)} (quantize)`, () => ['quantize', copy(editJson('config.json', (c) => (c[field] = value))), '--method', 'rtn', '--config', 'b4g64', '--out', previous, '--force']);
}
add('config', 'sliding window shorter than --seqlen', () => evalArgs(copy(editJson('config.json', (c) => ((c.use_sliding_window = true), (c.sliding_window = 16))))));

// tokenizer files
add('tokenizer', 'tokenizer_config.json missing', () => evalArgs(copy((d) => rmSync(join(d, 'tokenizer_config.json')))));
add('tokenizer', 'tokenizer.json empty', () => evalArgs(copy((d) => writeFileSync(join(d, 'tokenizer.json'), ''))));
add('tokenizer', 'tokenizer.json truncated', () => evalArgs(copy((d) => writeFileSync(join(d, 'tokenizer.json'), readFileSync(join(d, 'tokenizer.json')).subarray(0, 1000)))));
add('tokenizer', 'tokenizer.json corrupt bytes', () => evalArgs(copy((d) => {
  const b = readFileSync(join(d, 'tokenizer.json'));
  b[10] = 0x7b;
  b[11] = 0x00;
  writeFileSync(join(d, 'tokenizer.json'), b);
})));
add('tokenizer', 'tokenizer.json a FIFO', () => evalArgs(copy((d) => (rmSync(join(d, 'tokenizer.json')), execFileSync('mkfifo', [join(d, 'tokenizer.json')])))));
add('tokenizer', 'added token beyond the embedding', () => evalArgs(copy(editJson('tokenizer.json', (t) => t.added_tokens.push({ id: 8192, content: '<x>', special: true })))));
add('tokenizer', 'export without tokenizer.json', () => ['export', copy((d) => rmSync(join(d, 'tokenizer.json')), quantized), '--format', 'onnx', '--out', join(work, 'no-tok-onnx')]);

// quantized checkpoints: a scale or zero damaged, read by every command
const scaleCopy = async (tensor, value) => {
  const dir = copy(() => undefined, quantized);
  const file = join(dir, 'model.safetensors');
  const info = (await readSafetensorsHeader(file)).tensors.find((t) => t.name === tensor);
  const bytes = readFileSync(file);
  bytes.writeFloatLE(value, info.byteOffset + 4);
  writeFileSync(file, bytes);
  return dir;
};
for (const [label, tensor, value] of [['NaN scale', 'model.layers.0.mlp.up_proj.weight.scale', NaN], ['Inf scale', 'model.layers.1.self_attn.q_proj.weight.scale', Infinity], ['zero scale', 'model.layers.0.mlp.down_proj.weight.scale', 0], ['NaN zero', 'model.layers.1.mlp.gate_proj.weight.zero', NaN]]) {
  add('checkpoint', `${label} (eval)`, async () => evalArgs(await scaleCopy(tensor, value)));
  add('checkpoint', `${label} (generate)`, async () => ['generate', await scaleCopy(tensor, value), '--prompt', 'The jury', '--max-new-tokens', '2']);
  add('checkpoint', `${label} (compare)`, async () => ['compare', model, await scaleCopy(tensor, value), '--text', text, '--seqlen', '64', '--max-tokens', '128']);
  add('checkpoint', `${label} (export)`, async () => ['export', await scaleCopy(tensor, value), '--format', 'onnx', '--out', join(work, `export-${copies}`)]);
}

// ONNX exports
const onnx = (d) => join(d, 'onnx', 'model_q4.onnx');
for (const [label, edit] of [
  ['config vocab 8191', editJson('config.json', (c) => (c.vocab_size = 8191))],
  ['config layers 3', editJson('config.json', (c) => (c.num_hidden_layers = 3))],
  ['empty model_q4.onnx', (d) => writeFileSync(onnx(d), '')],
  ['model_q4.onnx cut at 1 KiB', (d) => writeFileSync(onnx(d), readFileSync(onnx(d)).subarray(0, 1024))],
  ['model_q4.onnx cut in half', (d) => writeFileSync(onnx(d), readFileSync(onnx(d)).subarray(0, readFileSync(onnx(d)).length >> 1))],
  ['model_q4.onnx random bytes', (d) => writeFileSync(onnx(d), Buffer.from(Array.from({ length: 8192 }, (_, i) => (i * 2654435761) >>> 24)))],
]) {
  add('onnx', `${label} (inspect)`, () => ['inspect', copy(edit, exported)]);
  add('onnx', `${label} (eval)`, () => evalArgs(copy(edit, exported)));
}

// statistics tables
const statsCopy = (edit) => {
  const dir = join(work, `stats-${copies++}`);
  mkdirSync(dir);
  for (const f of ['fnorm.csv', 'sensitivity.csv']) writeFileSync(join(dir, f), readFileSync(join(shippedOraclesDir, f)));
  edit(dir);
  return dir;
};
const csvEdit = (name, edit) => (dir) => writeFileSync(join(dir, name), edit(readFileSync(join(dir, name), 'utf8').trimEnd().split('\n')).join('\n') + '\n');
for (const [label, edit, method] of [
  ['memmb a third of the truth', csvEdit('fnorm.csv', ([h, ...rows]) => [h, ...rows.map((r) => { const f = r.split(','); f[7] = String(Number(f[7]) / 3); return f.join(','); })]), 'mxq'],
  ['a duplicated kurtosis row', (d) => writeFileSync(join(d, 'kurtosis.csv'), 'module,layer,param_count,kurtosis\n' + Array.from({ length: 32 }, (_, l) => ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'].map((m) => `${m},${l},1,3.1`).join('\n')).join('\n') + '\nself_attn.q_proj,0,1,99\n'), 'kurtboost'],
  ['a NaN kurtosis column', csvEdit('fnorm.csv', ([h, ...rows]) => [h, ...rows.map((r) => { const f = r.split(','); f[h.split(',').indexOf('kurtosis')] = 'nan'; return f.join(','); })]), 'kurtboost'],
  ['a kurtosis column named twice', csvEdit('fnorm.csv', ([h, ...rows]) => [`${h},kurtosis`, ...rows.map((r) => `${r},99`)]), 'kurtboost'],
  ['a table cut at layer 19', csvEdit('fnorm.csv', ([h, ...rows]) => [h, ...rows.filter((r) => Number(r.split(',')[0]) < 19)]), 'mxq'],
  ['sizes of another model', csvEdit('fnorm.csv', ([h, ...rows]) => [h, ...rows.map((r) => { const f = r.split(','); const i = h.split(',').indexOf('params'); f[i] = String(Number(f[i]) * 2); return f.join(','); })]), 'mxq'],
]) add('stats', label, () => ['allocate', '--stats', statsCopy(edit), '--method', method, '--budget', '3.25', '--model', shippedModelDir]);

// options and paths
add('paths', 'binary --text', () => ['eval', model, '--text', join(model, 'model.safetensors'), '--seqlen', '64']);
add('paths', 'FIFO --text', () => ['eval', model, '--text', fifo, '--seqlen', '64']);
add('paths', 'directory --text', () => ['eval', model, '--text', work, '--seqlen', '64']);
add('paths', 'eval /dev/null', () => evalArgs('/dev/null'));
add('paths', 'model.safetensors a directory', () => evalArgs(copy((d) => (rmSync(join(d, 'model.safetensors')), mkdirSync(join(d, 'model.safetensors'))))));
add('paths', 'model.safetensors dangling', () => evalArgs(copy((d) => (rmSync(join(d, 'model.safetensors')), symlinkSync(join(d, 'nowhere'), join(d, 'model.safetensors'))))));
add('paths', 'model.safetensors a link loop', () => evalArgs(copy((d) => (rmSync(join(d, 'model.safetensors')), symlinkSync(join(d, 'model.safetensors'), join(d, 'model.safetensors'))))));
add('paths', 'two weight sets in one directory', () => evalArgs(copy((d) => writeFileSync(join(d, 'model-00001-of-00002.safetensors'), readFileSync(join(d, 'model.safetensors'))))));
add('paths', 'quantize --out /proc/x', () => ['quantize', model, '--method', 'rtn', '--config', 'b4g64', '--out', '/proc/layerquant-x']);
add('paths', 'quantize --out under /sys', () => ['quantize', model, '--method', 'rtn', '--config', 'b4g64', '--out', '/sys/layerquant-x/y']);
add('paths', 'export --out a file', () => ['export', quantized, '--format', 'onnx', '--out', join(previous, 'config.json')]);
add('paths', 'allocate --out a directory', () => ['allocate', '--stats', shippedOraclesDir, '--method', 'mxq', '--budget', '3', '--out', work]);
add('paths', 'generate --max-new-tokens 1000000000', () => ['generate', model, '--prompt', 'The jury', '--max-new-tokens', '1000000000']);
add('paths', 'quantize --out the model itself', () => ['quantize', model, '--method', 'rtn', '--config', 'b4g64', '--out', model, '--force']);

// plug-ins (self-contained modules)
const allocatorModule = join(work, 'bad-allocators.mjs');
writeFileSync(allocatorModule, `const base = (stats) => { const seen = new Map(); for (const r of stats.fnorm.rows) seen.set(r.layer + '.' + r.module, { key: r.layer + '.' + r.module, layer: r.layer, module: r.module, params: r.params, config: { bits: 4, groupSize: 64, axis: 1, roundZero: false, symmetric: false } }); return [...seen.values()]; };
const plugin = (id, budget, edit) => ({ id, description: id, budget, tablesNeeded: () => ['fnorm'], allocate: (stats, options, context) => edit({ method: id, options, budget: context.budget, matrices: base(stats), totals: { params: 1, bpp: 2.5, memoryMB: 0.001 } }) });
export default { allocators: [
  plugin('off-ladder', 'stop', (a) => ({ ...a, matrices: a.matrices.map((m, i) => (i === 3 ? { ...m, config: { ...m.config, bits: 5 } } : m)) })),
  plugin('seven-bits', 'stop', (a) => ({ ...a, matrices: a.matrices.map((m, i) => (i === 3 ? { ...m, config: { ...m.config, bits: 7 } } : m)) })),
  plugin('negative-group', 'stop', (a) => ({ ...a, matrices: a.matrices.map((m, i) => (i === 3 ? { ...m, config: { ...m.config, groupSize: -64 } } : m)) })),
  plugin('nan-bits', 'stop', (a) => ({ ...a, matrices: a.matrices.map((m, i) => (i === 3 ? { ...m, config: { ...m.config, bits: NaN } } : m)) })),
  plugin('half', 'stop', (a) => ({ ...a, matrices: a.matrices.slice(0, a.matrices.length >> 1) })),
  plugin('twice', 'stop', (a) => ({ ...a, matrices: [...a.matrices, a.matrices[0]] })),
  plugin('unknown', 'stop', (a) => ({ ...a, matrices: [...a.matrices, { ...a.matrices[0], key: '99.mlp.up_proj', layer: 99 }] })),
  plugin('params', 'stop', (a) => ({ ...a, matrices: a.matrices.map((m, i) => (i === 2 ? { ...m, params: 1 } : m)) })),
  plugin('greedy', 'any', (a) => ({ ...a, matrices: a.matrices.map((m) => ({ ...m, config: { ...m.config, bits: 8, groupSize: 32 } })) })),
  plugin('throws', 'stop', () => { throw new TypeError('boom'); }),
] };\n`);
const quantizerModule = join(work, 'bad-quantizers.mjs');
writeFileSync(quantizerModule, `const q = (id, edit) => ({ id, description: id, options: [], quantize(w, c) { const [r, k] = w.shape; const g = r * k / c.groupSize; return edit({ name: w.name, shape: [r, k], config: c, method: id, packed: new Uint32Array(r * Math.ceil(k * c.bits / 32)), packing: 'rows-u32-lsb', scale: new Float32Array(g).fill(1), zero: new Float32Array(g) }); }, dequantize: (t) => new Float32Array(t.shape[0] * t.shape[1]) });
export default { quantizers: [
  q('nan-scale', (t) => ({ ...t, scale: t.scale.fill(NaN) })),
  q('wrong-shape', (t) => ({ ...t, shape: [t.shape[1], t.shape[0]] })),
  { ...q('nan-out', (t) => t), dequantize: (t) => new Float32Array(t.shape[0] * t.shape[1]).fill(NaN) },
  q('throws-q', () => { throw new RangeError('bad length'); }),
] };\n`);
const neverLoads = join(work, 'never-loads.mjs');
writeFileSync(neverLoads, 'await new Promise(() => {});\nexport default {};\n');
for (const id of ['off-ladder', 'seven-bits', 'negative-group', 'nan-bits', 'half', 'twice', 'unknown', 'params', 'throws']) {
  add('plugins', `allocator ${id} (allocate)`, () => ['allocate', '--stats', shippedOraclesDir, '--method', id, '--budget', '4.25', '--plugin', allocatorModule]);
}
add('plugins', 'allocator greedy over budget (allocate)', () => ['allocate', '--stats', shippedOraclesDir, '--method', 'greedy', '--budget', '3', '--plugin', allocatorModule]);
for (const id of ['nan-scale', 'wrong-shape', 'nan-out', 'throws-q']) {
  add('plugins', `quantizer ${id} (quantize)`, () => ['quantize', model, '--quantizer', id, '--config', 'b4g64', '--out', previous, '--force', '--plugin', quantizerModule]);
}
add('plugins', 'a module whose top-level await never settles', () => ['inspect', model, '--plugin', neverLoads]);

// ---- running --------------------------------------------------------------------------------------------------

const counts = {};
const findings = [];
const tally = (category, kind, label, detail = '') => {
  counts[category] ??= { runs: 0, typed: 0, silent: 0, untyped: 0, hang: 0, lost: 0, steerable: 0, kept: 0 };
  counts[category][kind]++;
  if (!['typed', 'kept'].includes(kind)) findings.push({ category, kind, label, detail: detail.trim().split('\n').slice(-2).join(' | ').slice(0, 300) });
};
const selected = (category) => only.length === 0 || only.includes(category);
const before = directorySnapshot(previous);

for (const c of cases) {
  if (!selected(c.category)) continue;
  const result = await runCli(await c.argv());
  const kind = verdict(result);
  counts[c.category] ??= { runs: 0, typed: 0, silent: 0, untyped: 0, hang: 0, lost: 0, steerable: 0, kept: 0 };
  counts[c.category].runs++;
  tally(c.category, kind, c.label, kind === 'silent' ? result.stdout : result.stderr);
  if (JSON.stringify(directorySnapshot(previous)) !== JSON.stringify(before)) {
    tally(c.category, 'lost', c.label, '--out changed by a failed run');
    rmSync(previous, { recursive: true, force: true });
    await runCli(['quantize', model, '--method', 'rtn', '--config', 'b4g64', '--out', previous]);
  }
}

// interrupts: SIGINT after k renames of the final swap (renames slowed by the test hook), --out must be whole
if (selected('interrupts')) {
  for (const [what, argvOf, setup] of [
    ['quantize', (out) => ['quantize', model, '--method', 'rtn', '--config', 'b8g32', '--out', out, '--force'], (out) => runCli(['quantize', model, '--method', 'rtn', '--config', 'b4g64', '--out', out])],
    ['export', (out) => ['export', quantized, '--format', 'onnx', '--out', out, '--force'], (out) => runCli(['export', quantized, '--format', 'onnx', '--out', out, '--accuracy-level', '0'])],
  ]) {
    for (const renames of [1, 2, 3, 5]) {
      const out = join(work, `interrupt-${what}-${renames}`);
      await setup(out);
      const snapshot = directorySnapshot(out);
      const result = await runCli(argvOf(out), {
        env: { LAYERQUANT_TEST_SWAP_DELAY_MS: '250' },
        onSpawn: (child) => {
          const poll = setInterval(() => {
            if (swapRenamesDone(out, 6) >= renames) {
              clearInterval(poll);
              child.kill('SIGINT');
            }
          }, 5);
          child.on('exit', () => clearInterval(poll));
        },
      });
      counts.interrupts ??= { runs: 0, typed: 0, silent: 0, untyped: 0, hang: 0, lost: 0, steerable: 0, kept: 0 };
      counts.interrupts.runs++;
      const whole = JSON.stringify(directorySnapshot(out)) === JSON.stringify(snapshot);
      if (result.hung) tally('interrupts', 'hang', `${what} SIGINT after ${renames} renames`);
      else tally('interrupts', whole ? 'kept' : 'lost', `${what} SIGINT after ${renames} renames`, `exit ${result.code}`);
    }
  }
}

if (selected('queue')) await queueCases({ work, model, text, runCli, verdict, tally, counts });

// ---- report -----------------------------------------------------------------------------------------------------

const columns = ['runs', 'typed', 'kept', 'silent', 'untyped', 'hang', 'lost', 'steerable'];
const total = Object.fromEntries(columns.map((k) => [k, Object.values(counts).reduce((s, c) => s + c[k], 0)]));
console.log(`| category | ${columns.join(' | ')} |`);
console.log(`| --- | ${columns.map(() => '---:').join(' | ')} |`);
for (const [category, c] of Object.entries(counts)) console.log(`| ${category} | ${columns.map((k) => c[k]).join(' | ')} |`);
console.log(`| **total** | ${columns.map((k) => `**${total[k]}**`).join(' | ')} |`);
if (findings.length > 0) {
  console.log('\nfindings:');
  for (const f of findings) console.log(`- [${f.category}] ${f.kind}: ${f.label}${f.detail ? ` -- ${f.detail}` : ''}`);
}
if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify({ counts, total, findings }, null, 1)}\n`);
rmSync(work, { recursive: true, force: true });
