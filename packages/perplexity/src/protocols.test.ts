import { describe, expect, it } from 'vitest';
import { perplexity, type NllModel } from './perplexity.js';
import { nonOverlappingWindows, slidingWindows } from './protocols.js';

/** A fake model whose NLL of target y after token x at window position t is a known function. */
const fakeModel: NllModel = {
  async tokenNll(input, targets) {
    const out = new Float32Array(input.ids.length);
    for (let t = 0; t < out.length; t++) out[t] = 0.5 + ((input.ids[t]! * 7 + targets[t]! * 3 + t) % 11) / 4;
    return out;
  },
};
const nllOf = (x: number, y: number, t: number) => Math.fround(0.5 + ((x * 7 + y * 3 + t) % 11) / 4);

/**
 * The authors' eval_ppl (lm-quant-toolkit, from the HF v4.2.2 guide) transcribed literally: labels masked
 * with -100, HF's internal shift, loss = mean over valid labels, times trg_len, summed, / end_loc.
 */
function authorsSlidingPpl(ids: number[], maxLength: number, stride: number): number {
  const lls: number[] = [];
  let endLoc = 0;
  for (let i = 0; i < ids.length; i += stride) {
    const beginLoc = Math.max(i + stride - maxLength, 0);
    endLoc = Math.min(i + stride, ids.length);
    const trgLen = endLoc - i;
    const input = ids.slice(beginLoc, endLoc);
    const labels = input.map((id, j) => (j < input.length - trgLen ? -100 : id));
    let sum = 0;
    let count = 0;
    for (let j = 1; j < input.length; j++) {
      if (labels[j] === -100) continue;
      sum += nllOf(input[j - 1]!, labels[j]!, j - 1);
      count++;
    }
    lls.push((sum / count) * trgLen);
  }
  return Math.exp(lls.reduce((a, b) => a + b, 0) / endLoc);
}

const ids = Array.from({ length: 1000 }, (_, i) => (i * 31 + 7) % 97);

describe('windows protocol', () => {
  it('non-overlapping windows drop the tail and score seqlen - 1 tokens each', () => {
    const plan = nonOverlappingWindows(1000, 128);
    expect(plan.windows).toHaveLength(7);
    expect(plan.windows[6]).toEqual({ begin: 768, end: 896, scoreFrom: 769, weight: 127 });
    expect(plan.divisor).toBe(7 * 127);
    expect(() => nonOverlappingWindows(100, 128)).toThrow(/fewer than one window of seqlen 128/);
  });

  it('perplexity = exp(mean NLL over all predicted tokens of the windows)', async () => {
    const result = await perplexity(fakeModel, ids, { seqlen: 100, maxTokens: 950 });
    let sum = 0;
    for (let w = 0; w < 9; w++) for (let t = 0; t < 99; t++) sum += nllOf(ids[w * 100 + t]!, ids[w * 100 + t + 1]!, t);
    expect(result.ppl).toBeCloseTo(Math.exp(sum / (9 * 99)), 12);
    expect(result).toMatchObject({ tokens: 900, scoredTokens: 891, windows: 9, protocol: 'windows', seqlen: 100 });
    // Per-window NLL sums (for paired statistics): window w's own sum, weight = its scored count.
    expect(result.windowNll).toHaveLength(9);
    expect(result.windowWeights).toEqual(new Array(9).fill(99));
    for (let w = 0; w < 9; w++) {
      let own = 0;
      for (let t = 0; t < 99; t++) own += nllOf(ids[w * 100 + t]!, ids[w * 100 + t + 1]!, t);
      expect(result.windowNll[w]).toBeCloseTo(own, 9);
    }
    expect(Math.exp(result.windowNll.reduce((a, b) => a + b, 0) / (9 * 99))).toBeCloseTo(result.ppl, 12);
  });
});

describe('sliding window protocol (HF, as the authors run it)', () => {
  for (const [maxLength, stride] of [[256, 128], [200, 200], [300, 64], [1024, 512]] as const) {
    it(`matches a literal transcription of eval_ppl at max_length ${maxLength}, stride ${stride}`, async () => {
      const result = await perplexity(fakeModel, ids, { protocol: 'sliding', maxLength, stride });
      expect(result.ppl).toBeCloseTo(authorsSlidingPpl(ids, maxLength, stride), 10);
      expect(result.windows).toBe(Math.ceil(ids.length / stride));
    });
  }
  it('rejects a stride longer than the window', () => {
    expect(() => slidingWindows(100, 64, 65)).toThrow(/option "stride"/);
  });
});

describe('progress', () => {
  it('reports every window', async () => {
    const seen: string[] = [];
    await perplexity(fakeModel, ids, { seqlen: 250, onProgress: (done, total) => seen.push(`${done}/${total}`) });
    expect(seen).toEqual(['1/4', '2/4', '3/4', '4/4']);
  });
});
