import { describe, expect, it } from 'vitest';
import { EMBED_TOKENS, InvalidOptionError, LINEAR_MODULES, LM_HEAD, bitsPerWeight, configName, matrixTensorName, memoryMB, quantConfig, type DecoderConfig, type LinearModule } from '@layerquant/core';
import { measuredAllocator, parseMeasuredCsv, formatMeasuredCsv, rowConfig } from '@layerquant/allocators';
import { hqqQuantizer, rtnQuantizer } from '@layerquant/quantizers';
import { createKernelPool } from '@layerquant/quantizers/node';
import { loadDecoderBlocks } from '@layerquant/runtime';
import { randomDecoderSource, tinyConfig } from '@layerquant/runtime/testing';
import { measuredErrors } from './measured-error.js';
import { frobeniusTable } from './frobenius-table.js';
import { QuantizationErrors } from './pooled-quantize.js';

/**
 * Brute force in float64, written here from the Llama block definition (not the runtime's graph): the float
 * hidden states layer by layer, and for every matrix and config the block output with that one matrix replaced
 * by its dequantized HQQ weights; the MSE against the float block output over all blocks, divided by the mean
 * square of the residual stream that output is added to.
 */
type Weights = ReadonlyMap<string, Float32Array>;

function linear(x: Float64Array, w: ArrayLike<number>, inF: number, outF: number): Float64Array {
  const T = x.length / inF;
  const out = new Float64Array(T * outF);
  for (let t = 0; t < T; t++) for (let o = 0; o < outF; o++) {
    let s = 0;
    for (let i = 0; i < inF; i++) s += x[t * inF + i]! * w[o * inF + i]!;
    out[t * outF + o] = s;
  }
  return out;
}

function rmsNorm(x: Float64Array, w: ArrayLike<number>, h: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let t = 0; t < x.length / h; t++) {
    let ms = 0;
    for (let j = 0; j < h; j++) ms += x[t * h + j]! ** 2;
    const r = 1 / Math.sqrt(ms / h + eps);
    for (let j = 0; j < h; j++) out[t * h + j] = x[t * h + j]! * r * w[j]!;
  }
  return out;
}

function rope(x: Float64Array, heads: number, d: number, theta: number): void {
  const T = x.length / (heads * d);
  for (let t = 0; t < T; t++) for (let hd = 0; hd < heads; hd++) for (let i = 0; i < d / 2; i++) {
    const angle = t / theta ** ((2 * i) / d);
    const base = t * heads * d + hd * d;
    const a = x[base + i]!;
    const b = x[base + i + d / 2]!;
    x[base + i] = a * Math.cos(angle) - b * Math.sin(angle);
    x[base + i + d / 2] = b * Math.cos(angle) + a * Math.sin(angle);
  }
}

function attentionBlock(c: DecoderConfig, w: Weights, layer: number, x: Float64Array): Float64Array {
  const { hiddenSize: h, numHeads: H, numKeyValueHeads: K, headDim: d } = c;
  const get = (m: string) => w.get(`model.layers.${layer}.${m}`)!;
  const n = rmsNorm(x, get('input_layernorm.weight'), h, c.rmsNormEps);
  const q = linear(n, get('self_attn.q_proj.weight'), h, H * d);
  const k = linear(n, get('self_attn.k_proj.weight'), h, K * d);
  const v = linear(n, get('self_attn.v_proj.weight'), h, K * d);
  rope(q, H, d, c.ropeTheta);
  rope(k, K, d, c.ropeTheta);
  const T = x.length / h;
  const ctx = new Float64Array(T * H * d);
  for (let hd = 0; hd < H; hd++) {
    const kv = Math.floor(hd / (H / K));
    for (let t = 0; t < T; t++) {
      const scores = new Float64Array(t + 1);
      let max = -Infinity;
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[t * H * d + hd * d + i]! * k[s * K * d + kv * d + i]!;
        scores[s] = dot / Math.sqrt(d);
        max = Math.max(max, scores[s]!);
      }
      let sum = 0;
      for (let s = 0; s <= t; s++) sum += (scores[s] = Math.exp(scores[s]! - max));
      for (let s = 0; s <= t; s++) for (let i = 0; i < d; i++) ctx[t * H * d + hd * d + i]! += (scores[s]! / sum) * v[s * K * d + kv * d + i]!;
    }
  }
  return linear(ctx, get('self_attn.o_proj.weight'), H * d, h);
}

function mlpBlock(c: DecoderConfig, w: Weights, layer: number, x: Float64Array): Float64Array {
  const { hiddenSize: h, intermediateSize: m } = c;
  const get = (name: string) => w.get(`model.layers.${layer}.${name}`)!;
  const n = rmsNorm(x, get('post_attention_layernorm.weight'), h, c.rmsNormEps);
  const gate = linear(n, get('mlp.gate_proj.weight'), h, m);
  const up = linear(n, get('mlp.up_proj.weight'), h, m);
  for (let i = 0; i < gate.length; i++) gate[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
  return linear(gate, get('mlp.down_proj.weight'), m, h);
}

function meanSquaredDifference(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return s;
}

describe('measured block-output error (every matrix alone at every config)', () => {
  it('matches a float64 brute force on a tiny random GQA Llama, every matrix and config, and feeds the measured allocator', async () => {
    const config = tinyConfig({ numLayers: 2 });
    const source = randomDecoderSource(config, 7);
    const model = await loadDecoderBlocks(source, config, { threads: 1 });
    const configs = [quantConfig(2, 16), quantConfig(3, 8), quantConfig(4, 16), quantConfig(8, 16)];
    const blocks = 2;
    const seqlen = 12;
    const ids = Int32Array.from({ length: blocks * seqlen }, (_, i) => (i * 37 + 11) % config.vocabSize);
    try {
      const table = await measuredErrors(model, ids, { configs, seqlen, batchSize: 1 });
      expect(table.rows).toHaveLength(config.numLayers * 7 * configs.length);

      // The oracle reads the source's tensors itself (not through the streamed blocks).
      const weights = new Map<string, Float32Array>();
      for (const name of model.shapes.keys()) weights.set(name, (await source.read(name)).data);
      const dequantized = (name: string, c: (typeof configs)[number]) => {
        const shape = model.shapes.get(name)!;
        return hqqQuantizer.dequantize(hqqQuantizer.quantize({ name, dtype: 'F32', shape: [...shape], data: weights.get(name)! }, c));
      };
      const embed = weights.get('model.embed_tokens.weight')!;
      const h = config.hiddenSize;
      const inputs = Array.from({ length: blocks }, (_, b) => {
        const x = new Float64Array(seqlen * h);
        for (let t = 0; t < seqlen; t++) for (let j = 0; j < h; j++) x[t * h + j] = embed[ids[b * seqlen + t]! * h + j]!;
        return x;
      });
      let worst = 0;
      let checked = 0;
      for (let layer = 0; layer < config.numLayers; layer++) {
        const floatAttention = inputs.map((x) => attentionBlock(config, weights, layer, x));
        const residuals = inputs.map((x, b) => x.map((v, i) => v + floatAttention[b]![i]!));
        const floatMlp = residuals.map((r) => mlpBlock(config, weights, layer, r));
        for (const module of LINEAR_MODULES) {
          const name = matrixTensorName(layer, module);
          const attention = module.startsWith('self_attn');
          for (const c of configs) {
            const swapped = new Map(weights).set(name, dequantized(name, c));
            let sum = 0;
            for (let b = 0; b < blocks; b++) {
              sum += attention
                ? meanSquaredDifference(attentionBlock(config, swapped, layer, inputs[b]!), floatAttention[b]!)
                : meanSquaredDifference(mlpBlock(config, swapped, layer, residuals[b]!), floatMlp[b]!);
            }
            // Relative to the mean square of the residual stream the block output is added to.
            const stream = (attention ? inputs : residuals).reduce((acc, x) => acc + x.reduce((a, v) => a + v * v, 0), 0) / (blocks * seqlen * h);
            const expected = sum / (blocks * seqlen * h) / stream;
            const row = table.rows.find((r) => r.layer === layer && r.module === module && r.bits === c.bits && r.groupSize === c.groupSize)!;
            expect(row, `${name} ${configName(c)}`).toBeDefined();
            expect(expected).toBeGreaterThan(0);
            worst = Math.max(worst, Math.abs(row.error - expected) / expected);
            const params = model.shapes.get(name)!.reduce((a, n) => a * n, 1);
            expect(row.memoryMB).toBe(memoryMB(bitsPerWeight(c), params));
            expect(row.blocks).toBe(blocks);
            checked++;
          }
        }
        // The next layer's float inputs.
        inputs.forEach((_, b) => (inputs[b] = residuals[b]!.map((v, i) => v + floatMlp[b]![i]!)));
      }
      expect(checked).toBe(config.numLayers * 7 * configs.length);
      expect(worst).toBeLessThan(2e-3); // fp32 runtime against float64
      // More bits never measure worse here (b8 is far below b2 for every matrix).
      for (const module of LINEAR_MODULES as readonly LinearModule[]) {
        const rows = table.rows.filter((r) => r.module === module && r.layer === 0);
        expect(rows.find((r) => r.bits === 8)!.error).toBeLessThan(rows.find((r) => r.bits === 2)!.error);
      }
      // CSV round trip, and the allocator minimises the summed error: a budget above b8g16 (9.016 bits) takes b8 everywhere.
      const parsed = parseMeasuredCsv(formatMeasuredCsv(table));
      expect(parsed.rows).toEqual(table.rows);
      const rich = measuredAllocator.allocate({ measured: parsed }, { budget: 10 });
      expect(rich.solver.objective).toBeCloseTo(table.rows.filter((r) => r.bits === 8).reduce((s, r) => s + r.error, 0), 12);
    } finally {
      await model.dispose();
    }
  }, 120_000);

  it('gives the same rows with the matrices quantized on a kernel pool, and leaves the fnorm table nothing to quantize', async () => {
    const config = tinyConfig({ numLayers: 2 });
    const source = randomDecoderSource(config, 11);
    const model = await loadDecoderBlocks(source, config, { threads: 1 });
    const configs = [quantConfig(2, 16), quantConfig(4, 16)];
    const ids = Int32Array.from({ length: 2 * 12 }, (_, i) => (i * 29 + 5) % config.vocabSize);
    const pool = createKernelPool(2)!;
    try {
      const errors = new QuantizationErrors();
      const pooled = await measuredErrors(model, ids, { configs, seqlen: 12, pool, errors });
      expect(pooled.rows).toEqual((await measuredErrors(model, ids, { configs, seqlen: 12 })).rows);
      // Every matrix x config recorded, each equal (bit for bit) to the fnorm table's own quantization.
      const fresh = await frobeniusTable(source, configs);
      expect(fresh.rows).toHaveLength(2 * 7 * configs.length);
      for (const r of fresh.rows) expect(errors.get(hqqQuantizer, matrixTensorName(r.layer, r.module), quantConfig(r.bits, r.groupSize))).toBe(r.squaredError);
      expect((await frobeniusTable(source, configs, { errors })).rows).toEqual(fresh.rows);
      // Another quantizer's errors are not taken for HQQ's.
      expect(errors.get({ ...hqqQuantizer }, matrixTensorName(0, 'mlp.up_proj'), configs[0]!)).toBeUndefined();
    } finally {
      await pool.close();
      await model.dispose();
    }
  });

  for (const tied of [true, false]) {
    it(`embedding units (${tied ? 'tied: one unit, lookup and output projection' : 'untied: embed_tokens and lm_head'}) match a float64 brute force`, async () => {
      const config = tinyConfig({ numLayers: 2, tieWordEmbeddings: tied });
      const base = randomDecoderSource(config, 3);
      const head = Float32Array.from({ length: config.vocabSize * config.hiddenSize }, (_, i) => Math.sin(i * 0.37) * 0.2);
      // randomDecoderSource ties; the untied model gets its own lm_head.
      const source = tied ? base : { ...base, has: (name: string) => name === LM_HEAD || base.has(name), read: async (name: string) => (name === LM_HEAD ? { name, dtype: 'F32' as const, shape: [config.vocabSize, config.hiddenSize], data: head } : base.read(name)) };
      const model = await loadDecoderBlocks(source, config, { threads: 1 });
      const blocks = 2;
      const seqlen = 10;
      const ids = Int32Array.from({ length: blocks * seqlen }, (_, i) => (i * 13 + 7) % config.vocabSize);
      const embedConfigs = [quantConfig(2, 16, { roundZero: true }), quantConfig(4, 16, { symmetric: true })];
      const headConfigs = [quantConfig(2, 16), quantConfig(8, 16)];
      try {
        const table = await measuredErrors(model, ids, {
          configs: [quantConfig(4, 16)], seqlen, quantizer: rtnQuantizer,
          embeddingConfigs: tied ? { embed_tokens: embedConfigs } : { embed_tokens: embedConfigs, lm_head: headConfigs },
        });
        const weights = new Map<string, Float32Array>();
        for (const name of model.shapes.keys()) weights.set(name, (await source.read(name)).data);
        const h = config.hiddenSize;
        const embed = weights.get(EMBED_TOKENS)!;
        const headWeight = tied ? embed : head;
        const dq = (name: string, c: ReturnType<typeof quantConfig>) => rtnQuantizer.dequantize(rtnQuantizer.quantize({ name, dtype: 'F32', shape: [config.vocabSize, h], data: weights.get(name) ?? head }, c));
        // Final stream in float64, then the final norm.
        const finals = Array.from({ length: blocks }, (_, b) => {
          let x = new Float64Array(seqlen * h);
          for (let t = 0; t < seqlen; t++) for (let j = 0; j < h; j++) x[t * h + j] = embed[ids[b * seqlen + t]! * h + j]!;
          for (let layer = 0; layer < config.numLayers; layer++) {
            const a = attentionBlock(config, weights, layer, x);
            const r = x.map((v, i) => v + a[i]!);
            const m = mlpBlock(config, weights, layer, r);
            x = r.map((v, i) => v + m[i]!);
          }
          return rmsNorm(x, weights.get('model.norm.weight')!, h, config.rmsNormEps);
        });
        const logitsSquares = (w: ArrayLike<number>) => finals.reduce((acc, n) => acc + linear(n, w, h, config.vocabSize).reduce((a, v) => a + v * v, 0), 0);
        const headError = (w: Float32Array) => logitsSquares(headWeight.map((v, i) => v - w[i]!)) / logitsSquares(headWeight);
        const embedError = (w: Float32Array) => {
          let num = 0;
          let den = 0;
          for (const id of ids) for (let j = 0; j < h; j++) {
            num += (embed[id * h + j]! - w[id * h + j]!) ** 2;
            den += embed[id * h + j]! ** 2;
          }
          return num / den;
        };
        for (const c of embedConfigs) {
          const w = dq(EMBED_TOKENS, c);
          const expected = embedError(w) + (tied ? headError(w) : 0);
          const row = table.rows.find((r) => r.module === 'embed_tokens' && configName(rowConfig(r)) === configName(c))!;
          expect(row.layer).toBe(-1);
          expect(Math.abs(row.error - expected) / expected).toBeLessThan(2e-3);
        }
        for (const c of tied ? [] : headConfigs) {
          const expected = headError(dq(LM_HEAD, c));
          const row = table.rows.find((r) => r.module === 'lm_head' && configName(rowConfig(r)) === configName(c))!;
          expect(Math.abs(row.error - expected) / expected).toBeLessThan(2e-3);
        }
        expect(table.rows.filter((r) => r.layer === -1)).toHaveLength(tied ? 2 : 4);
        expect(parseMeasuredCsv(formatMeasuredCsv(table)).rows).toEqual(table.rows);
      } finally {
        await model.dispose();
      }
    });
  }

  it('rejects an empty or repeated ladder', async () => {
    const config = tinyConfig({ numLayers: 1 });
    const model = await loadDecoderBlocks(randomDecoderSource(config, 1), config, { threads: 1 });
    try {
      await expect(measuredErrors(model, new Int32Array(8), { configs: [], seqlen: 8 })).rejects.toThrow(InvalidOptionError);
      await expect(measuredErrors(model, new Int32Array(8), { configs: [quantConfig(4, 16), quantConfig(4, 16)], seqlen: 8 })).rejects.toThrow(/b4g16 twice/);
    } finally {
      await model.dispose();
    }
  });
});
