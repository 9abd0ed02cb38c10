import { NonFiniteResultError } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { perplexity } from './perplexity.js';

/** A model whose per-token loss is log(vocab) (a uniform guess) except NaN at one position of one window. */
function model(vocab: number, nanAt?: { window: number; position: number }) {
  let window = 0;
  return {
    async tokenNll(input: { ids: ArrayLike<number> }) {
      const nll = new Float32Array(input.ids.length).fill(Math.log(vocab));
      if (nanAt && window === nanAt.window) nll[nanAt.position] = Number.NaN;
      window++;
      return nll;
    },
  };
}

describe('perplexity of a model that gives no number', () => {
  it('is the uniform guess\'s vocabulary size for a uniform model (the oracle), and a typed error naming the window for a NaN loss', async () => {
    const ids = Array.from({ length: 64 }, (_, i) => i % 7);
    expect((await perplexity(model(50), ids, { seqlen: 16 })).ppl).toBeCloseTo(50, 4);
    const error = await perplexity(model(50, { window: 2, position: 3 }), ids, { seqlen: 16 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NonFiniteResultError);
    expect((error as Error).message).toMatch(/^the loss of window 3 \(tokens 32-48\) is NaN, not a number; the model produced non-finite logits/);
  });
});
