import { brownTestPath, referenceTorchPath, shippedModelDir } from '@layerquant/fixtures';
import { loadDecoderModel, type DecoderModel } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { perplexity } from './perplexity.js';
import { readEvaluationText } from './text-file.js';

const reference = JSON.parse(readFileSync(referenceTorchPath, 'utf8')) as Record<string, unknown> & { token_counts: Record<string, number> };

/** Summed NLL of each window of 512 (511 predicted tokens) of brown-test's first 16384 tokens, PyTorch fp32. */
const TORCH_WINDOW_NLL_512 = [2231.78857421875, 2271.09375, 2232.115966796875, 2324.44775390625, 2227.632568359375, 2220.339599609375, 2078.421630859375, 2268.220947265625, 2412.232177734375, 2493.46728515625, 2463.288818359375, 2605.045654296875, 2511.927001953125, 2335.869873046875, 2297.514404296875, 2446.4365234375, 2190.794921875, 2438.150146484375, 2245.769287109375, 2214.73291015625, 2257.12841796875, 2114.3154296875, 2222.461181640625, 2101.74853515625, 2083.934814453125, 2295.350341796875, 2292.56884765625, 2357.88037109375, 2409.59912109375, 2266.929931640625, 2303.831787109375, 2360.46533203125];

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

  // The whole text at 512 (310 windows, 80.4017) runs in bench/perplexity.mjs; here its first 32 windows against
  // PyTorch fp32 per window, computed once with
  // `/usr/bin/python3 bench/perplexity_anchor.py <model> <brown-test ids.json> 512 2 16384` (ppl 89.9704).
  it('first 16384 tokens at seqlen 512: within 0.05% of PyTorch fp32, every window\'s NLL within 1e-4', async () => {
    const result = await perplexity(model, ids, { seqlen: 512, maxTokens: 16384 });
    expect(result.windows).toBe(TORCH_WINDOW_NLL_512.length);
    expect(Math.abs(result.ppl - 89.97037277942069) / 89.97037277942069).toBeLessThan(5e-4);
    for (const [i, nll] of TORCH_WINDOW_NLL_512.entries()) expect(Math.abs(result.windowNll[i]! - nll) / nll, `window ${i}`).toBeLessThan(1e-4);
  });

  // The full text at 128 runs in bench/perplexity.mjs; here a prefix against PyTorch, computed once with
  // `/usr/bin/python3 bench/perplexity_anchor.py <model> <brown-test ids.json> 128 2 16384`.
  it('first 16384 tokens at seqlen 128: within 0.05% of PyTorch fp32 (98.2284)', async () => {
    const result = await perplexity(model, ids, { seqlen: 128, maxTokens: 16384 });
    expect(result.windows).toBe(128);
    expect(Math.abs(result.ppl - 98.22843955244446) / 98.22843955244446).toBeLessThan(5e-4);
  });
});
