import { brownTestPath, referenceTorchPath, shippedModelDir } from '@layerquant/fixtures';
import { loadDecoderModel, type DecoderModel } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { perplexity } from './perplexity.js';
import { readEvaluationText } from './text-file.js';

const reference = JSON.parse(readFileSync(referenceTorchPath, 'utf8')) as Record<string, unknown> & { token_counts: Record<string, number> };

describe('brown-test perplexity of the shipped model vs PyTorch fp32 (reference-torch.json)', () => {
  let model: DecoderModel;
  let ids: number[];
  beforeAll(async () => {
    const checkpoint = await openCheckpoint(shippedModelDir);
    model = await loadDecoderModel(checkpoint, await loadDecoderConfig(shippedModelDir), { threads: 2 });
    await checkpoint.close();
    ids = (await loadTokenizer(shippedModelDir)).encode(await readEvaluationText(brownTestPath));
  });
  afterAll(() => model.dispose());

  it('tokenizes brown-test to the reference token count (no BOS)', () => {
    expect(ids.length).toBe(reference.token_counts['brown-test']);
  });

  it('full text at seqlen 512: within 0.05% of 80.4017', async () => {
    const result = await perplexity(model, ids, { seqlen: 512 });
    const expected = reference['brown-test@512'] as number;
    console.log(`brown-test@512: ${result.ppl.toFixed(4)} (PyTorch ${expected.toFixed(4)}), ${(result.tokens / result.seconds).toFixed(0)} tokens/s`);
    expect(result.windows).toBe(310);
    expect(Math.abs(result.ppl - expected) / expected).toBeLessThan(5e-4);
  }, 600_000);

  // The full text at 128 runs in bench/perplexity.mjs; here a prefix against PyTorch, computed once with
  // `/usr/bin/python3 bench/perplexity_anchor.py <model> <brown-test ids.json> 128 2 16384`.
  it('first 16384 tokens at seqlen 128: within 0.05% of PyTorch fp32 (98.2284)', async () => {
    const result = await perplexity(model, ids, { seqlen: 128, maxTokens: 16384 });
    expect(result.windows).toBe(128);
    expect(Math.abs(result.ppl - 98.22843955244446) / 98.22843955244446).toBeLessThan(5e-4);
  });
});
