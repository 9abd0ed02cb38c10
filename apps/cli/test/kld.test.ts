import { quantConfig } from '@layerquant/core';
import { rtnQuantizer } from '@layerquant/quantizers';
import { openModelWeights, quantizeModel } from '@layerquant/quantizers/node';
import { loadDecoderModel } from '@layerquant/runtime';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { loadDecoderConfig, loadTokenizer } from '@layerquant/tensor-io';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, expectRefused } from './run-cli.js';

/**
 * KL divergence against the float model in the commands. The oracle is computed here in float64 from the logits of
 * the float and the dequantized model run independently (runtime's one-session float graph), window by window, with
 * the definitions written out: KLD = sum p_base (log p_base - log p), the same top token, p(target) - p_base(target).
 */
const scratch = mkdtempSync(join(tmpdir(), 'lq-kld-'));
const model = join(scratch, 'model');
const quantized = join(scratch, 'rtn-b3g32');
const cache = join(scratch, 'kld-cache');
const text = join(scratch, 'text.txt');
const seqlen = 48;

beforeAll(async () => {
  await writeModelDirectory(model, tinyConfig({ hiddenSize: 64, intermediateSize: 128, headDim: 16, numLayers: 2, tieWordEmbeddings: false }), { seed: 3 });
  writeFileSync(text, 'the quick brown fox jumps over the lazy dog. A stitch in time saves nine, and all that glitters is not gold. '.repeat(3));
  await quantizeModel({ modelDir: model, outDir: quantized, quantizer: rtnQuantizer, configFor: () => quantConfig(3, 32), method: 'rtn' });
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - lse);
}

/** Per scored token: KLD, same top, Δp; full non-overlapping windows of `seqlen`, every position but the last scored. */
async function oracle(): Promise<{ kld: number[]; sameTop: number[]; deltaP: number[]; nll: number[]; nllBase: number[] }> {
  const config = await loadDecoderConfig(model);
  const ids = (await loadTokenizer(model)).encode((await import('node:fs')).readFileSync(text, 'utf8'));
  const floatWeights = await openModelWeights(model);
  const float = await loadDecoderModel(floatWeights, config);
  await floatWeights.close();
  const qWeights = await openModelWeights(quantized);
  const dequantized = await loadDecoderModel(qWeights, config);
  await qWeights.close();
  const out = { kld: [] as number[], sameTop: [] as number[], deltaP: [] as number[], nll: [] as number[], nllBase: [] as number[] };
  const V = config.vocabSize;
  // The tail that does not fill a window is dropped.
  for (let begin = 0; begin + seqlen <= ids.length; begin += seqlen) {
    const window = ids.slice(begin, begin + seqlen);
    const targets = [...window.slice(1), 0];
    const a = await float.logitsAndNll({ ids: window }, targets);
    const b = await dequantized.logitsAndNll({ ids: window }, targets);
    for (let t = 0; t + 1 < window.length; t++) {
      const lb = logSoftmax(a.logits.subarray(t * V, (t + 1) * V));
      const lq = logSoftmax(b.logits.subarray(t * V, (t + 1) * V));
      let kld = 0;
      let topB = 0;
      let topQ = 0;
      for (let i = 0; i < V; i++) {
        kld += Math.exp(lb[i]!) * (lb[i]! - lq[i]!);
        if (lb[i]! > lb[topB]!) topB = i;
        if (lq[i]! > lq[topQ]!) topQ = i;
      }
      out.kld.push(kld);
      out.sameTop.push(topB === topQ ? 1 : 0);
      out.deltaP.push(Math.exp(lq[targets[t]!]!) - Math.exp(lb[targets[t]!]!));
      out.nll.push(-lq[targets[t]!]!);
      out.nllBase.push(-lb[targets[t]!]!);
    }
  }
  await float.dispose();
  await dequantized.dispose();
  return out;
}

const mean = (x: number[]) => x.reduce((s, v) => s + v, 0) / x.length;
const median = (x: number[]) => {
  const s = [...x].sort((p, q) => p - q);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const close = (actual: number, expected: number, rel = 1e-5) => expect(Math.abs(actual - expected)).toBeLessThanOrEqual(rel * Math.abs(expected) + 1e-9);

interface KldJson {
  tokens: number;
  ppl: { value: number };
  pplBase: { value: number };
  kld: { mean: number; median: number; max: number; min: number };
  sameTop: { value: number };
  rmsDeltaP: { value: number };
  base: { file: string; computed: boolean; bytes: number };
}

describe('eval --kld-base', () => {
  it('reports the KL divergence from the float model on the same tokens, equal to a float64 computation from independently computed logits; the base is cached and reused', async () => {
    const first = await cli('eval', quantized, '--text', text, '--seqlen', String(seqlen), '--kld-base', model, '--kld-cache', cache, '--json');
    expect(first.code, first.stderr).toBe(0);
    const a = JSON.parse(first.stdout) as { perplexity: number; kld: KldJson };
    const o = await oracle();
    expect(a.kld.tokens).toBe(o.kld.length);
    close(a.kld.kld.mean, mean(o.kld));
    close(a.kld.kld.median, median(o.kld));
    close(a.kld.kld.max, Math.max(...o.kld));
    expect(a.kld.sameTop.value).toBeCloseTo(mean(o.sameTop), 12);
    close(a.kld.rmsDeltaP.value, Math.sqrt(mean(o.deltaP.map((d) => d * d))));
    close(a.kld.ppl.value, Math.exp(mean(o.nll)));
    close(a.kld.pplBase.value, Math.exp(mean(o.nllBase)));
    // The perplexity eval prints is the quantized model's own from the same run (its float32 NLL; KLD's is float64 from the logits).
    close(a.perplexity, a.kld.ppl.value, 1e-7);
    expect(a.kld.kld.mean).toBeGreaterThan(0);
    expect(a.kld.base.computed).toBe(true);
    // Scored tokens x vocab float32 logits, plus its header.
    expect(a.kld.base.bytes).toBeGreaterThan(o.kld.length * 64 * 4);
    expect(readdirSync(cache)).toHaveLength(1);

    const second = await cli('eval', quantized, '--text', text, '--seqlen', String(seqlen), '--kld-base', model, '--kld-cache', cache, '--json');
    const b = JSON.parse(second.stdout) as { kld: KldJson };
    expect(b.kld.base.computed).toBe(false);
    expect(b.kld.kld).toEqual(a.kld.kld);

    // The human table prints llama.cpp's lines, and says what the base cost.
    const human = await cli('eval', quantized, '--text', text, '--seqlen', String(seqlen), '--kld-base', model, '--kld-cache', join(scratch, 'other-cache'));
    expect(human.code, human.stderr).toBe(0);
    expect(human.stderr).toMatch(/KLD base: computing the logits of .* \(one float pass\) into .*kld-base-[0-9a-f]{16}\.bin, /);
    expect(human.stdout).toMatch(/mean KLD\s+\d+\.\d{6} ± \d+\.\d{6}/);
    expect(human.stdout).toMatch(/99\.9% KLD/);
    expect(human.stdout).toMatch(/same top p\s+\d+\.\d{3}% ± /);
  });

  it('refuses a quantized base, and --kld-cache without --kld-base', async () => {
    expectRefused(await cli('eval', model, '--text', text, '--seqlen', String(seqlen), '--kld-base', quantized, '--kld-cache', cache), /--kld-base.*quantized checkpoint.*float model/);
    expectRefused(await cli('eval', model, '--text', text, '--kld-cache', cache), /--kld-cache.*--kld-base/);
  });
});
