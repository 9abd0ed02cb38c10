import { referenceTorchPath, shippedModelDir } from '@layerquant/fixtures';
import { loadDecoderConfig, openCheckpoint } from '@layerquant/tensor-io';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadDecoderModel } from './decoder-model.js';

interface ReferenceTorch {
  probe_ids: number[];
  probe_logits_last_first16: number[];
  probe_argmax: number[];
  probe_logsumexp: number[];
}

describe('shipped model (llama-brown-26m, BF16 weights in fp32) vs PyTorch fp32', () => {
  it('probe sentence: last-position logits, argmax ids and logsumexp within 1e-3 relative', async () => {
    const reference = JSON.parse(readFileSync(referenceTorchPath, 'utf8')) as ReferenceTorch;
    const checkpoint = await openCheckpoint(shippedModelDir);
    const model = await loadDecoderModel(checkpoint, await loadDecoderConfig(shippedModelDir), { threads: 2 });
    await checkpoint.close();
    const V = model.config.vocabSize;
    const T = reference.probe_ids.length;
    const logits = await model.logits({ ids: reference.probe_ids });
    const last = logits.subarray((T - 1) * V, (T - 1) * V + 16);
    const scale = Math.max(...reference.probe_logits_last_first16.map(Math.abs));
    reference.probe_logits_last_first16.forEach((expected, i) => {
      expect(Math.abs(last[i]! - expected) / scale).toBeLessThan(1e-3);
    });
    for (let t = 0; t < T; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      let argmax = 0;
      for (let j = 1; j < V; j++) if (row[j]! > row[argmax]!) argmax = j;
      expect(argmax).toBe(reference.probe_argmax[t]);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      const logSumExp = max + Math.log(sum);
      expect(Math.abs(logSumExp - reference.probe_logsumexp[t]!) / Math.abs(reference.probe_logsumexp[t]!)).toBeLessThan(1e-3);
    }
    await model.dispose();
  });
});
