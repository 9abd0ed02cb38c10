import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { directorySnapshot } from '@layerquant/tensor-io/testing';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, expectRefused } from './run-cli.js';

/**
 * Defects found using the CLI as its users would (issue 28), each on a tiny random model of the held-out kind (one
 * F16 file, tied embeddings, q/k/v biases, 128 positions, a character-level tokenizer: one token per character).
 */

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-user-defects-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const config = tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', tieWordEmbeddings: true, attentionBias: true, intermediateSize: 64 });
const model = join(scratch, 'model');
const quantized = join(scratch, 'quantized');
const exported = join(scratch, 'exported');

beforeAll(async () => {
  await writeModelDirectory(model, config, { seed: 28, dtype: 'F16' });
  expect((await cli('quantize', model, '--method', 'rtn', '--config', 'b4g16', '--out', quantized)).code).toBe(0);
  expect((await cli('export', quantized, '--format', 'onnx', '--out', exported, '--accuracy-level', '0')).code).toBe(0);
});

describe('generate refuses a context beyond max_position_embeddings as eval does', () => {
  const sentence = 'the jury said it did find that many of the laws are outmoded. ';
  const long = sentence.repeat(Math.ceil((config.maxPositionEmbeddings + 10) / sentence.length));
  for (const [kind, dir] of [['float', () => model], ['quantized', () => quantized], ['onnx', () => exported]] as const) {
    it(`a prompt longer than the model's positions (${kind}): exit 1 naming --prompt`, async () => {
      expectRefused(
        await cli('generate', dir(), '--prompt', long, '--max-new-tokens', '1'),
        new RegExp(`option "--prompt": ${long.length} tokens is more than the model's max_position_embeddings 128 \\(config\\.json\\); use at most 128, or pass --allow-long-context`),
      );
    });
  }

  it('a prompt that fits but not with the new tokens names --max-new-tokens; --allow-long-context runs it', async () => {
    const prompt = long.slice(0, 120);
    expectRefused(await cli('generate', exported, '--prompt', prompt, '--max-new-tokens', '9'), /option "--max-new-tokens": 129 tokens is more than the model's max_position_embeddings 128/);
    expect((await cli('generate', exported, '--prompt', prompt, '--max-new-tokens', '8', '--json')).code).toBe(0);
    const beyond = await cli('generate', model, '--prompt', long, '--max-new-tokens', '2', '--allow-long-context', '--json');
    expect(beyond.code).toBe(0);
    expect((JSON.parse(beyond.stdout) as { promptIds: number[] }).promptIds).toHaveLength(long.length);
  });
});

describe('help, typos and compare\'s footer', () => {
  it('`help quantize` prints quantize\'s usage (as `quantize --help`); `help` alone the general help', async () => {
    const topic = await cli('help', 'quantize');
    expect(topic.code).toBe(0);
    expect(topic.stdout).toBe((await cli('quantize', '--help')).stdout);
    expect(topic.stdout).toMatch(/^layerquant quantize <model-dir>/);
    const general = await cli('help');
    expect(general.code).toBe(0);
    expect(general.stdout).toMatch(/^layerquant: layer-sensitive[\s\S]*Commands:/);
    expectRefused(await cli('help', 'quantise'), /unknown command "quantise"; did you mean quantize\?/);
  });

  it('an unknown flag gets the command\'s closest flag as a suggestion, and none when nothing is close', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['quantize', model, '--confg', 'b4g16', '--out', join(scratch, 'typo')], /option "--confg": Unknown option '--confg'; did you mean --config\? Run with --help/],
      [['generate', model, '--propmt', 'x'], /option "--propmt": Unknown option '--propmt'; did you mean --prompt\?/],
      [['eval', model, '--max-token', '64'], /did you mean --max-tokens\?/],
      [['export', quantized, '--format', 'onnx', '--out', join(scratch, 'typo'), '--activation', 'f16'], /did you mean --activations\?/],
    ];
    for (const [argv, message] of cases) expectRefused(await cli(...argv), message);
    const far = await cli('eval', model, '--frobnicate');
    expectRefused(far, /option "--frobnicate": Unknown option '--frobnicate'; run with --help for the options/);
    expect(far.stderr).not.toMatch(/did you mean/);
  });

  it('compare\'s footer labels each evaluation time with its model number', async () => {
    const text = join(scratch, 'compare.txt');
    writeFileSync(text, 'The jury said it did find that many of the laws are outmoded. '.repeat(4));
    const { code, stdout, stderr } = await cli('compare', model, quantized, exported, '--text', text, '--seqlen', '32', '--max-tokens', '96');
    expect(code, stderr).toBe(0);
    expect(stdout.trim().split('\n').at(-1)).toMatch(/^evaluation time: model 1 [\d.]+s, model 2 [\d.]+s, model 3 [\d.]+s$/);
  });
});

describe('results.json says perplexity, as every JSON layerquant writes', () => {
  it('rows and cells carry `perplexity` (no `ppl`); a version-2 file with `ppl` is read, reused and rewritten', async () => {
    const text = join(scratch, 'experiment.txt');
    writeFileSync(text, 'The jury said it did find that many of the laws are outmoded. '.repeat(4));
    const out = join(scratch, 'experiment');
    const args = ['experiment', model, '--methods', 'hqq', '--budgets', '4.51', '--configs', 'b4g32,b8g32', '--text', text, '--seqlen', '32', '--max-tokens', '96', '--out', out, '--json'];
    const first = await cli(...args);
    expect(first.code, first.stderr).toBe(0);
    const perplexities = (JSON.parse(first.stdout) as { rows: Array<{ perplexity: number }> }).rows.map((r) => r.perplexity);
    expect(perplexities.length).toBeGreaterThan(0);
    const path = join(out, 'results.json');
    const saved = JSON.parse(readFileSync(path, 'utf8')) as { version: number; rows: Array<Record<string, unknown>>; cells: Record<string, { row: Record<string, unknown> }> };
    const fileRows = [...saved.rows, ...Object.values(saved.cells).map((c) => c.row)];
    expect(saved.version).toBe(3);
    expect(fileRows.map((r) => r.perplexity)).toEqual([...perplexities, ...perplexities]);
    for (const row of fileRows) expect(Object.keys(row)).not.toContain('ppl');

    // The same cells as an earlier layerquant wrote them: version 2, rows with `ppl`.
    const old = readFileSync(path, 'utf8').replaceAll('"perplexity":', '"ppl":').replace('"version": 3', '"version": 2');
    expect(old).not.toContain('"perplexity"');
    writeFileSync(path, old);
    const again = await cli(...args);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/reusing 2 of 2 cells/);
    expect((JSON.parse(again.stdout) as { rows: Array<{ perplexity: number }> }).rows.map((r) => r.perplexity)).toEqual(perplexities);
    const rewritten = readFileSync(path, 'utf8');
    expect(rewritten).toContain('"version": 3');
    expect(rewritten).not.toContain('"ppl"');
  });
});

describe('export of a plain checkpoint: the float ONNX export its --help promises', () => {
  const llama = join(scratch, 'llama');
  beforeAll(() => writeModelDirectory(llama, tinyConfig({ intermediateSize: 64 }), { seed: 29 }));

  for (const [family, dir] of [['llama (untied, F32)', () => llama], ['qwen2 (biases, tied, F16)', () => model]] as const) {
    it(`${family}: onnx/model.onnx (fp32) and onnx/model_fp16.onnx (--activations f16); generate from it equals the checkpoint's`, async () => {
      const fp32 = join(scratch, `float-${family.split(' ')[0]}`);
      const result = await cli('export', dir(), '--format', 'onnx', '--out', fp32, '--json');
      expect(result.code, result.stderr).toBe(0);
      const json = JSON.parse(result.stdout) as { file: string; dtype: string; notes: string[]; sizes: { diskBitsPerWeight: number } };
      expect(json).toMatchObject({ file: join(fp32, 'onnx', 'model.onnx'), dtype: 'fp32', sizes: { diskBitsPerWeight: 32 } });
      expect(json.notes).toContainEqual(expect.stringMatching(/^a float export \(no matrix is quantized\).*dtype 'fp32'$/));
      expect(readdirSync(join(fp32, 'onnx'))).toEqual(['model.onnx']);
      const prompt = ['generate', '--prompt', 'the jury', '--max-new-tokens', '6', '--json'] as const;
      const fromExport = JSON.parse((await cli(prompt[0], fp32, ...prompt.slice(1))).stdout) as { ids: number[]; source: string };
      const fromCheckpoint = JSON.parse((await cli(prompt[0], dir(), ...prompt.slice(1))).stdout) as { ids: number[]; source: string };
      expect([fromExport.source, fromCheckpoint.source]).toEqual(['onnx', 'float']);
      expect(fromExport.ids).toEqual(fromCheckpoint.ids);

      const fp16 = join(scratch, `float16-${family.split(' ')[0]}`);
      const human = await cli('export', dir(), '--format', 'onnx', '--out', fp16, '--activations', 'f16');
      expect(human.code, human.stderr).toBe(0);
      expect(human.stdout).toMatch(/onnx\/model_fp16\.onnx \(dtype fp16;/);
      expect(human.stdout).toMatch(/bits\/weight, linear matrices as stored \(float MatMul, float16 activations\)/);
      expect(human.stdout).not.toMatch(/MatMulNBits/);
      const jsConfig = (JSON.parse(readFileSync(join(fp16, 'config.json'), 'utf8')) as { 'transformers.js_config': unknown })['transformers.js_config'];
      expect(jsConfig).toEqual({ dtype: 'fp16', kv_cache_dtype: { fp16: 'float16' } });
    });
  }
});

describe('a second export into a non-empty directory', () => {
  it('is refused without --force (exit 1, one line, the directory as it was); --force replaces the export and keeps other files', async () => {
    const out = join(scratch, 'export-twice');
    expect((await cli('export', quantized, '--format', 'onnx', '--out', out)).code).toBe(0);
    writeFileSync(join(out, 'NOTES.md'), 'my notes\n');
    const before = directorySnapshot(out);
    for (const activations of ['f16', 'f32']) {
      expectRefused(
        await cli('export', quantized, '--format', 'onnx', '--out', out, '--activations', activations),
        /option "--out": .*export-twice exists and is not empty \(.*\); pass --force to replace the model in it \(other files stay\), or choose another --out/,
      );
      expect(directorySnapshot(out)).toEqual(before);
    }
    const json = await cli('export', model, '--format', 'onnx', '--out', out, '--json');
    expect(json.code).toBe(1);
    expect((JSON.parse(json.stdout) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'INVALID_OPTION', message: expect.stringMatching(/exists and is not empty/) });
    expect(directorySnapshot(out)).toEqual(before);

    const forced = await cli('export', quantized, '--format', 'onnx', '--out', out, '--activations', 'f16', '--force');
    expect(forced.code, forced.stderr).toBe(0);
    expect(readdirSync(join(out, 'onnx'))).toEqual(['model_q4f16.onnx']);
    expect(readFileSync(join(out, 'NOTES.md'), 'utf8')).toBe('my notes\n');
    const jsConfig = (JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { 'transformers.js_config': unknown })['transformers.js_config'];
    expect(jsConfig).toEqual({ dtype: 'q4f16', kv_cache_dtype: { q4f16: 'float16' } });
    expect((await cli('export', '--help')).stdout).toMatch(/--force +replace the exported model in an existing, non-empty --out/);
  });
});
