import { shippedOraclesDir } from '@layerquant/fixtures';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { readSafetensorsHeader } from '@layerquant/tensor-io';
import { directorySnapshot } from '@layerquant/tensor-io/testing';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, expectRefused } from './run-cli.js';

/**
 * What careful users and hostile inputs hand the CLI (issue 27), on a tiny model of the held-out kind (one F16
 * file, tied embeddings, q/k/v biases): every case exits 1 with one error line naming the file, tensor, field or
 * option (never exit 0 with a number, never an internal error), and leaves an earlier result in --out as it was.
 */

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-hostile-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const config = tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', tieWordEmbeddings: true, attentionBias: true });
const model = join(scratch, 'model');
const text = join(scratch, 'text.txt');
const previous = join(scratch, 'previous-out');
const quantized = join(scratch, 'quantized');
const exported = join(scratch, 'exported');
const evalArgs = (dir: string, ...rest: string[]) => ['eval', dir, '--text', text, '--seqlen', '32', '--max-tokens', '128', ...rest];
let before: Record<string, string>;

/** A copy of the tiny model (or of `from`) with `edit` applied to it. */
function copy(name: string, edit: (dir: string) => void, from = model): string {
  const dir = join(scratch, name);
  cpSync(from, dir, { recursive: true });
  edit(dir);
  return dir;
}

const editConfig = (edit: (c: Record<string, unknown>) => void) => (dir: string) => {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  edit(c);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
};

/** Rewrites `tensor`'s dtype in the header of the model's single file (same width: the data section is untouched). */
const retype = (tensor: string, from: string, to: string) => (dir: string) => {
  const file = join(dir, 'model.safetensors');
  const bytes = readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = bytes.subarray(8, 8 + length).toString('utf8');
  const at = header.indexOf(`"${tensor}"`);
  const dtype = header.indexOf(`"dtype":"${from}"`, at);
  bytes.write(`"dtype":"${to}"`, 8 + dtype, 'utf8');
  writeFileSync(file, bytes);
};

beforeAll(async () => {
  await writeModelDirectory(model, config, { seed: 11, dtype: 'F16' });
  writeFileSync(text, 'The jury said it did find that many of the laws are outmoded. '.repeat(20));
  expect((await cli('quantize', model, '--method', 'rtn', '--config', 'b4g16', '--out', previous)).code).toBe(0);
  before = directorySnapshot(previous);
  expect((await cli('quantize', model, '--method', 'rtn', '--config', 'b4g16', '--out', quantized)).code).toBe(0);
  expect((await cli('export', quantized, '--format', 'onnx', '--out', exported, '--accuracy-level', '0')).code).toBe(0);
  // The sane model evaluates: the cases below differ from it by one lie each.
  expect((await cli(...evalArgs(model))).code).toBe(0);
});

describe('hostile inputs exit 1 with one line naming the problem, and leave --out unchanged', () => {
  const fifo = () => {
    const path = join(scratch, 'fifo');
    if (!existsSync(path)) execFileSync('mkfifo', [path]);
    return path;
  };
  const bias = 'model.layers.1.self_attn.k_proj.bias';
  const cases: Array<[string, () => string[], RegExp]> = [
    ['an I16 bias (eval)', () => evalArgs(copy('i16', retype(bias, 'F16', 'I16'))), /model\.safetensors \(tensor "model\.layers\.1\.self_attn\.k_proj\.bias"\): dtype "I16" is not supported \(a weight is a float/],
    ['an I16 bias (quantize)', () => ['quantize', copy('i16-q', retype(bias, 'F16', 'I16')), '--method', 'rtn', '--config', 'b4g16', '--out', previous, '--force'], /dtype "I16" is not supported/],
    ['rms_norm_eps -1', () => evalArgs(copy('eps', editConfig((c) => (c.rms_norm_eps = -1)))), /config\.json: field "rms_norm_eps" is -1; it must be greater than 0/],
    ['rope_theta 0', () => evalArgs(copy('theta0', editConfig((c) => (c.rope_theta = 0)))), /field "rope_theta" is 0/],
    ['rope_theta "500000"', () => evalArgs(copy('theta-string', editConfig((c) => (c.rope_theta = '500000')))), /field "rope_theta" is "500000" \(a string\)/],
    ['a rope factor 0', () => evalArgs(copy('factor0', editConfig((c) => (c.rope_scaling = { rope_type: 'linear', factor: 0 })))), /field "rope_scaling\.factor" is 0/],
    ['hidden_act gelu (quantize)', () => ['quantize', copy('gelu', editConfig((c) => (c.hidden_act = 'gelu'))), '--method', 'rtn', '--config', 'b4g16', '--out', previous, '--force'], /field "hidden_act" is "gelu"/],
    ['a sliding window shorter than --seqlen', () => evalArgs(copy('sliding', editConfig((c) => ((c.use_sliding_window = true), (c.sliding_window = 16))))), /option "--seqlen": 32 tokens is more than the model's sliding_window 16/],
    ['layer_types with an attention kind layerquant does not run', () => evalArgs(copy('layer-types', editConfig((c) => (c.layer_types = ['full_attention', 'chunked_attention'])))), /field "layer_types" holds "chunked_attention"/],
    ['a binary --text', () => ['eval', model, '--text', join(model, 'model.safetensors'), '--seqlen', '32'], /model\.safetensors: holds a NUL byte at offset \d+: it is a binary file/],
    ['a FIFO as --text', () => ['eval', model, '--text', fifo(), '--seqlen', '32'], /fifo: is a FIFO \(named pipe\), not a regular file/],
    ['a directory as --text', () => ['eval', model, '--text', scratch, '--seqlen', '32'], /: is a directory, not a file; pass a UTF-8 text file/],
    ['/dev/null as the model', () => evalArgs('/dev/null'), /\/dev\/null: is a device, not a file or directory/],
    ['model.safetensors a directory', () => evalArgs(copy('weights-dir', (d) => (rmSync(join(d, 'model.safetensors')), mkdirSync(join(d, 'model.safetensors'))))), /weights-dir\/model\.safetensors: is a directory, not a file/],
    ['model.safetensors a dangling link', () => evalArgs(copy('weights-dangling', (d) => (rmSync(join(d, 'model.safetensors')), symlinkSync(join(d, 'gone'), join(d, 'model.safetensors'))))), /model\.safetensors: is a dangling symbolic link/],
    ['model.safetensors a link loop', () => evalArgs(copy('weights-loop', (d) => (rmSync(join(d, 'model.safetensors')), symlinkSync(join(d, 'model.safetensors'), join(d, 'model.safetensors'))))), /model\.safetensors: is a symbolic link loop/],
    ['tokenizer_config.json missing', () => evalArgs(copy('no-tokenizer-config', (d) => rmSync(join(d, 'tokenizer_config.json')))), /tokenizer_config\.json: not found/],
    ['tokenizer.json empty', () => evalArgs(copy('empty-tokenizer', (d) => writeFileSync(join(d, 'tokenizer.json'), ''))), /empty-tokenizer\/tokenizer\.json: is empty/],
    ['tokenizer.json truncated', () => evalArgs(copy('cut-tokenizer', (d) => writeFileSync(join(d, 'tokenizer.json'), readFileSync(join(d, 'tokenizer.json')).subarray(0, 200)))), /cut-tokenizer\/tokenizer\.json: is not valid JSON/],
    ['an added token beyond the embedding rows', () => evalArgs(copy('token-beyond', (d) => {
      const t = JSON.parse(readFileSync(join(d, 'tokenizer.json'), 'utf8')) as { added_tokens: unknown[] };
      t.added_tokens.push({ id: config.vocabSize, content: '<|extra|>', special: true });
      writeFileSync(join(d, 'tokenizer.json'), JSON.stringify(t));
    })), /tokenizer\.json: token "<\|extra\|>" has id 64, but the model has 64 embedding rows/],
    ['generate --max-new-tokens 1000000000', () => ['generate', model, '--prompt', 'The jury', '--max-new-tokens', '1000000000'], /option "--max-new-tokens": 1000000\d+ tokens is more than the model's max_position_embeddings 128/],
    ['export without tokenizer.json', () => ['export', copy('export-no-tokenizer', (d) => rmSync(join(d, 'tokenizer.json')), quantized), '--format', 'onnx', '--out', join(scratch, 'x-onnx')], /export-no-tokenizer\/tokenizer\.json: not found/],
    ['export --out an existing file', () => ['export', quantized, '--format', 'onnx', '--out', join(previous, 'config.json')], /--out is an existing file, not a directory/],
    ['allocate --out a directory', () => ['allocate', '--stats', shippedOraclesDir, '--method', 'mxq', '--budget', '3', '--out', scratch], /: is a directory; give the path of a file to write/],
    ['quantize --out under /proc', () => ['quantize', model, '--method', 'rtn', '--config', 'b4g16', '--out', '/proc/layerquant-x'], /\/proc\/layerquant-x: --out cannot be created/],
    ['quantize --out under /sys', () => ['quantize', model, '--method', 'rtn', '--config', 'b4g16', '--out', '/sys/layerquant-x/y'], /\/sys\/layerquant-x\/y: /],
    ['an export whose config.json says vocab 63 (eval)', () => evalArgs(copy('vocab-63', editConfig((c) => (c.vocab_size = 63)), exported)), /model_q4\.onnx: the graph's logits have 64 columns but vocab_size is 63/],
    ['an export whose config.json says vocab 63 (inspect)', () => ['inspect', copy('vocab-63-inspect', editConfig((c) => (c.vocab_size = 63)), exported)], /model_q4\.onnx: the graph's logits have 64 columns but vocab_size is 63/],
    ['an empty model_q4.onnx (inspect)', () => ['inspect', copy('empty-onnx', (d) => writeFileSync(join(d, 'onnx', 'model_q4.onnx'), ''), exported)], /model_q4\.onnx: is not a complete ONNX model \(it has no graph\)/],
    ['a truncated model_q4.onnx (compare)', () => ['compare', model, copy('cut-onnx', (d) => writeFileSync(join(d, 'onnx', 'model_q4.onnx'), readFileSync(join(d, 'onnx', 'model_q4.onnx')).subarray(0, 3000)), exported), '--text', text, '--seqlen', '32', '--max-tokens', '64'], /model_q4\.onnx: (onnxruntime cannot load this file|is not a complete ONNX model \(.* runs past the end)/],
  ];
  for (const [label, argv, message] of cases) {
    it(label, async () => {
      expectRefused(await cli(...argv()), message);
      expect(directorySnapshot(previous)).toEqual(before);
    });
  }
});

describe('a quantized checkpoint with a damaged scale is refused by every command that reads it', () => {
  it('a NaN scale: eval, generate, compare and export exit 1 naming the tensor; no --out is made', async () => {
    const dir = copy('nan-scale', () => undefined, quantized);
    const file = join(dir, 'model.safetensors');
    const info = (await readSafetensorsHeader(file)).tensors.find((t) => t.name === 'model.layers.0.mlp.up_proj.weight.scale')!;
    const bytes = readFileSync(file);
    bytes.writeFloatLE(Number.NaN, info.byteOffset + 4);
    writeFileSync(file, bytes);
    const message = /\(tensor "model\.layers\.0\.mlp\.up_proj\.weight\.scale"\): value NaN at flat index 1/;
    for (const argv of [
      evalArgs(dir),
      ['generate', dir, '--prompt', 'The jury', '--max-new-tokens', '2'],
      ['compare', model, dir, '--text', text, '--seqlen', '32', '--max-tokens', '64'],
      ['export', dir, '--format', 'onnx', '--out', join(scratch, 'nan-onnx')],
    ]) {
      const { code, stderr } = await cli(...argv);
      expect(stderr, argv[0]).toMatch(message);
      expect(code, argv[0]).toBe(1);
    }
    expect(existsSync(join(scratch, 'nan-onnx'))).toBe(false);
  });
});

describe('--force replaces the whole model file set, and only it', () => {
  it('stale shards and an index in --out go; the user\'s files, a cache and files quantization.json claims stay', async () => {
    const out = join(scratch, 'stale-shards');
    // A sharded float model copied into --out (another model's index and shards), the user's notes and a cache.
    cpSync(quantized, out, { recursive: true });
    rmSync(join(out, 'model.safetensors'));
    writeFileSync(join(out, 'model-00001-of-00002.safetensors'), readFileSync(join(model, 'model.safetensors')));
    writeFileSync(join(out, 'model-00002-of-00002.safetensors'), readFileSync(join(model, 'model.safetensors')));
    writeFileSync(join(out, 'model.safetensors.index.json'), JSON.stringify({ weight_map: {} }));
    writeFileSync(join(out, 'notes.txt'), 'mine');
    mkdirSync(join(out, 'stats'));
    writeFileSync(join(out, 'stats', 'fnorm.csv'), 'cached');
    // A report that claims the user's files: never a list of what to delete.
    const report = JSON.parse(readFileSync(join(out, 'quantization.json'), 'utf8')) as { files: string[] };
    report.files.push('notes.txt', 'stats', '../escape');
    writeFileSync(join(out, 'quantization.json'), JSON.stringify(report));
    const { code } = await cli('quantize', model, '--method', 'rtn', '--config', 'b8g16', '--out', out, '--force');
    expect(code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'notes.txt', 'quantization.json', 'stats', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('mine');
    expect(readFileSync(join(out, 'stats', 'fnorm.csv'), 'utf8')).toBe('cached');
    const inspect = await cli('inspect', out, '--json');
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toMatch(/b8g16/);
  });

  it('a reader refuses a directory holding two weight sets, naming it', async () => {
    const both = copy('two-sets', (d) => {
      writeFileSync(join(d, 'model-00001-of-00001.safetensors'), readFileSync(join(d, 'model.safetensors')));
      writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: {} }));
    });
    const { code, stderr } = await cli(...evalArgs(both));
    expect(stderr).toMatch(/two-sets\/model\.safetensors\.index\.json: (has no|does not name)/);
    expect(code).toBe(1);
  });
});
