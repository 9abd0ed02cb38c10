import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { mkdtempSync, rmSync } from 'node:fs';
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
const config = tinyConfig({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', tieWordEmbeddings: true, attentionBias: true });
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
