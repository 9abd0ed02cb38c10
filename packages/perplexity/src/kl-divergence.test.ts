import { loadDecoderModel, type DecoderModel } from '@layerquant/runtime';
import { randomDecoderSource, seededNormal, tinyConfig } from '@layerquant/runtime/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KldAccumulator, comparePosition, sortedQuantile, type KldStatistics } from './kl-divergence.js';
import { klDivergence, kldBaseInMemory } from './kld-evaluation.js';
import { perplexity } from './perplexity.js';

/**
 * Oracle: the statistics written out the plain way in float64 — both softmaxes as arrays of probabilities,
 * KLD = sum p_b log(p_b / p), two-pass means and standard errors, sorted values — from the same logits.
 */
function oracle(base: Float32Array, model: Float32Array, vocab: number, targets: readonly number[]) {
  const softmax = (logits: Float32Array, row: number) => {
    const values = Array.from(logits.subarray(row * vocab, (row + 1) * vocab), Number);
    const max = Math.max(...values);
    const exps = values.map((v) => Math.exp(v - max));
    const total = exps.reduce((a, b) => a + b, 0);
    return exps.map((e) => e / total);
  };
  const argmax = (values: number[]) => values.indexOf(Math.max(...values));
  const nll: number[] = [];
  const nllBase: number[] = [];
  const kld: number[] = [];
  const pDiff: number[] = [];
  let same = 0;
  targets.forEach((target, row) => {
    const p = softmax(model, row);
    const pb = softmax(base, row);
    nll.push(-Math.log(p[target]!));
    nllBase.push(-Math.log(pb[target]!));
    kld.push(pb.reduce((sum, q, i) => (q > 0 ? sum + q * Math.log(q / p[i]!) : sum), 0));
    pDiff.push(p[target]! - pb[target]!);
    if (argmax(p) === argmax(pb)) same++;
  });
  const n = targets.length;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / n;
  // Standard error of the mean with the population variance over n - 1 (llama.cpp's formula, written two-pass).
  const stderr = (xs: number[]) => Math.sqrt(xs.reduce((s, x) => s + (x - mean(xs)) ** 2, 0) / n / (n - 1));
  const cov = nll.reduce((s, x, i) => s + (x - mean(nll)) * (nllBase[i]! - mean(nllBase)), 0) / n / (n - 1);
  const quantile = (xs: number[], f: number) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const h = f * (n - 1);
    return sorted[Math.floor(h)]! + (h - Math.floor(h)) * (sorted[Math.min(Math.floor(h) + 1, n - 1)]! - sorted[Math.floor(h)]!);
  };
  const squares = pDiff.map((d) => d * d);
  const ppl = Math.exp(mean(nll));
  const pplBase = Math.exp(mean(nllBase));
  const lnRatioError = Math.sqrt(stderr(nll) ** 2 + stderr(nllBase) ** 2 - 2 * cov);
  return {
    ppl: [ppl, ppl * stderr(nll)],
    pplBase: [pplBase, pplBase * stderr(nllBase)],
    lnPplRatio: [mean(nll) - mean(nllBase), lnRatioError],
    pplRatio: [ppl / pplBase, (ppl / pplBase) * lnRatioError],
    pplDifference: [ppl - pplBase, Math.sqrt((ppl * stderr(nll)) ** 2 + (pplBase * stderr(nllBase)) ** 2 - 2 * ppl * pplBase * cov)],
    nllCorrelation: cov / (stderr(nll) * stderr(nllBase)),
    kld: { mean: mean(kld), error: stderr(kld), median: quantile(kld, 0.5), min: Math.min(...kld), max: Math.max(...kld), q: (f: number) => quantile(kld, f) },
    deltaP: { mean: mean(pDiff), error: stderr(pDiff), median: quantile(pDiff, 0.5), min: Math.min(...pDiff), max: Math.max(...pDiff), q: (f: number) => quantile(pDiff, f) },
    rms: [Math.sqrt(mean(squares)), (0.5 / Math.sqrt(mean(squares))) * stderr(squares)],
    sameTop: [same / n, Math.sqrt(((same / n) * (1 - same / n)) / (n - 1))],
  };
}

/** Within `relative` of the expected value, or 1e-13 absolute (float64 rounding of sums of terms up to ~1). */
function expectClose(actual: number, expected: number, relative = 1e-9): void {
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(relative * Math.abs(expected) + 1e-13);
}

function expectMatchesOracle(s: KldStatistics, o: ReturnType<typeof oracle>): void {
  for (const key of ['ppl', 'pplBase', 'lnPplRatio', 'pplRatio', 'pplDifference', 'rms', 'sameTop'] as const) {
    const actual = key === 'rms' ? s.rmsDeltaP : s[key];
    expectClose(actual.value, o[key][0]!);
    expectClose(actual.error, o[key][1]!, 1e-7);
  }
  expectClose(s.nllCorrelation, o.nllCorrelation, 1e-7);
  for (const name of ['kld', 'deltaP'] as const) {
    const d = s[name];
    const e = o[name];
    expectClose(d.mean, e.mean, 1e-8);
    expectClose(d.error, e.error, 1e-7);
    for (const k of ['median', 'min', 'max'] as const) expectClose(d[k], e[k], 1e-8);
    expect(Object.keys(d.quantiles).length).toBeGreaterThanOrEqual(8);
    for (const [fraction, value] of Object.entries(d.quantiles)) expectClose(value, e.q(Number(fraction)), 1e-8);
  }
}

describe('KL-divergence statistics (llama.cpp definitions) vs a float64 oracle on a tiny model', () => {
  const config = tinyConfig({ numLayers: 2 });
  const windowLength = 48;
  const windows = 4;
  const ids = Array.from({ length: windowLength * windows + 5 }, (_, i) => (i * 29 + 11) % config.vocabSize);
  let base: DecoderModel;
  let model: DecoderModel;
  beforeAll(async () => {
    base = await loadDecoderModel(randomDecoderSource(config, 3), config);
    // The "quantized" model: the base with one matrix perturbed.
    const name = 'model.layers.1.mlp.down_proj.weight';
    const noise = seededNormal(9);
    const perturbed = Float32Array.from(base.weights.tensors.get(name)!, (w) => w + 0.05 * noise());
    model = await loadDecoderModel(randomDecoderSource(config, 3), config, { overrides: new Map([[name, perturbed]]) });
  });
  afterAll(async () => {
    await base.dispose();
    await model.dispose();
  });

  it('every statistic equals the oracle from the same logits', async () => {
    const accumulator = new KldAccumulator();
    const allBase: number[] = [];
    const allModel: number[] = [];
    const allTargets: number[] = [];
    for (let w = 0; w < windows; w++) {
      const window = ids.slice(w * windowLength, (w + 1) * windowLength);
      const targets = window.slice(1);
      const b = (await base.logits({ ids: window })).subarray(0, targets.length * config.vocabSize);
      const m = (await model.logits({ ids: window })).subarray(0, targets.length * config.vocabSize);
      accumulator.addWindow(b, m, config.vocabSize, targets);
      allBase.push(...b);
      allModel.push(...m);
      allTargets.push(...targets);
    }
    const statistics = accumulator.statistics();
    expect(statistics.tokens).toBe(windows * (windowLength - 1));
    const o = oracle(Float32Array.from(allBase), Float32Array.from(allModel), config.vocabSize, allTargets);
    expectMatchesOracle(statistics, o);
    // A perturbation that changes the model: every KLD positive, some top tokens differ, PPL moved.
    expect(statistics.kld.min).toBeGreaterThan(0);
    expect(statistics.kld.mean).toBeGreaterThan(1e-4);
    expect(statistics.sameTop.value).toBeLessThan(1);
    expect(statistics.sameTop.value).toBeGreaterThan(0.5);
    // Per-window sums add up to the mean.
    const perWindow = accumulator.windows();
    expect(perWindow.count).toEqual(new Array(windows).fill(windowLength - 1));
    expectClose(perWindow.kld.reduce((a, b) => a + b, 0) / statistics.tokens, statistics.kld.mean, 1e-12);
  });

  it('klDivergence over windows: the same statistics, and the perplexity that perplexity() gives, from one run', async () => {
    const options = { seqlen: windowLength };
    const memoryBase = await kldBaseInMemory(base, config.vocabSize, ids, options);
    expect(memoryBase.perplexity.ppl).toBe((await perplexity(base, ids, options)).ppl);
    const result = await klDivergence(model, memoryBase, ids, options);
    const plain = await perplexity(model, ids, options);
    expect(result.perplexity.ppl).toBe(plain.ppl);
    expect(result.perplexity.windowNll).toEqual(plain.windowNll);
    // PPL(Q) of the KLD statistics: the float64 log-softmax of the logits, within float32 rounding of the graph's NLL.
    expectClose(result.statistics.ppl.value, plain.ppl, 1e-5);
    expectClose(result.statistics.pplBase.value, memoryBase.perplexity.ppl, 1e-5);
    expect(result.windows.kld).toHaveLength(windows);
    // Against itself: zero divergence, the same top token everywhere, no Δp.
    const self = await klDivergence(base, memoryBase, ids, options);
    expect(self.statistics.kld.max).toBe(0);
    expect(self.statistics.sameTop.value).toBe(1);
    expect(self.statistics.rmsDeltaP.value).toBe(0);
    expect(self.statistics.lnPplRatio.value).toBe(0);
  });

  it('the sliding protocol scores each token once, with its own windows', async () => {
    const options = { protocol: 'sliding' as const, maxLength: 64, stride: 32 };
    const memoryBase = await kldBaseInMemory(base, config.vocabSize, ids, options);
    const result = await klDivergence(model, memoryBase, ids, options);
    expect(result.statistics.tokens).toBe(ids.length - 1);
    expect(result.perplexity.ppl).toBe((await perplexity(model, ids, options)).ppl);
    await expect(klDivergence(model, memoryBase, ids, { seqlen: 64 })).rejects.toThrow(/option "windows"/);
  });
});

describe('KL-divergence building blocks', () => {
  it('comparePosition: hand-computed two-token case', () => {
    // base logits [0, ln 3] -> p_b = [1/4, 3/4]; model [0, 0] -> p = [1/2, 1/2].
    const c = comparePosition(Float32Array.of(0, Math.log(3)), 0, Float32Array.of(0, 0), 0, 2, 1);
    expectClose(c.kld, 0.25 * Math.log(0.25 / 0.5) + 0.75 * Math.log(0.75 / 0.5), 1e-7);
    expectClose(c.nll, Math.log(2), 1e-12);
    expectClose(c.nllBase, -Math.log(0.75), 1e-7);
    expectClose(c.pDiff, 0.5 - 0.75, 1e-7);
    expect(c.sameTop).toBe(false); // base argmax 1, model's first maximum 0
  });

  it('quantiles interpolate linearly between order statistics; errors are 0 with 10 values or fewer (llama.cpp)', () => {
    expect(sortedQuantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(sortedQuantile([1, 2, 3, 4], 0.999)).toBeCloseTo(3.997, 12);
    expect(sortedQuantile([5], 0.3)).toBe(5);
    const a = new KldAccumulator();
    for (let i = 0; i < 10; i++) a.add({ nll: i, nllBase: 1, kld: i / 10, pDiff: 0, sameTop: true });
    const s = a.statistics();
    expect(s.kld.error).toBe(0);
    expect(s.ppl.error).toBe(0);
    expect(s.kld.median).toBeCloseTo(0.45, 12);
    expect(() => new KldAccumulator().statistics()).toThrow(/no position was scored/);
  });

  it('rejects mismatched shapes, targets outside the vocabulary and non-finite logits', () => {
    const a = new KldAccumulator();
    expect(() => a.addWindow(new Float32Array(6), new Float32Array(4), 2, [0, 1, 0])).toThrow(/option "logits"/);
    expect(() => comparePosition(new Float32Array(2), 0, new Float32Array(2), 0, 2, 2)).toThrow(/token id 2 is outside/);
    expect(() => comparePosition(Float32Array.of(0, Number.NaN), 0, new Float32Array(2), 0, 2, 0)).toThrow(/base logits.*not a finite/);
  });
});
