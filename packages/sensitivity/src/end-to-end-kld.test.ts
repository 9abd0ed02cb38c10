import { configName, matrixTensorName, parseMatrixKey, quantConfig, type DecoderConfig, type LinearModule, type QuantConfig, type WeightTensor } from '@layerquant/core';
import { KldAccumulator } from '@layerquant/perplexity';
import { gptqQuantizer, hqqQuantizer } from '@layerquant/quantizers';
import { createDecoderBlocks, createDecoderModel, loadDecoderWeights, referenceForward, withOverrides, type DecoderWeights, type HiddenStates } from '@layerquant/runtime';
import { randomDecoderSource, tinyConfig } from '@layerquant/runtime/testing';
import { describe, expect, it } from 'vitest';
import { createKldMeasurer, kldSumOfBatch, kldUnits, type KldMeasurer, type UnitConfigs } from './end-to-end-kld.js';
import { floatLayerHessians, type LayerHessians } from './hessians.js';
import { freemem } from 'node:os';

/**
 * Oracles of the end-to-end ΔKLD: brute force, the whole model run with the allocation's matrices replaced by their
 * dequantized HQQ weights, (a) by onnxruntime in one session (the runtime's DecoderModel) with the KLD statistics of
 * @layerquant/perplexity, and (b) by the runtime's float64 TypeScript reference forward with the KLD written out
 * in the test (softmax arrays, sum p_b log(p_b / p)).
 */

const B2G32 = quantConfig(2, 32);
const B3G64 = quantConfig(3, 64);
const B4G32 = quantConfig(4, 32);

/** How a test quantizes one unit: HQQ by default; the calibrated test passes GPTQ with its own Hessians. */
type Dequantize = (tensor: WeightTensor, config: QuantConfig, unit: { layer: number; module: string }) => Float32Array;
const hqqDequantize: Dequantize = (tensor, config) => hqqQuantizer.dequantize(hqqQuantizer.quantize(tensor, config));

function dequantizedOverrides(weights: DecoderWeights, allocation: UnitConfigs, dequantize = hqqDequantize): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [key, config] of allocation) {
    if (!config) continue;
    const unit = parseMatrixKey(key)!;
    const name = matrixTensorName(unit.layer, unit.module);
    const data = weights.tensors.get(name)!;
    out.set(name, dequantize({ name, dtype: 'F32', shape: [...weights.shapes.get(name)!], data }, config, unit));
  }
  return out;
}

/** (a) One onnxruntime session over the whole model, KLD statistics from @layerquant/perplexity. */
async function bruteForceOnnx(weights: DecoderWeights, blocks: number[][], allocation: UnitConfigs, dequantize = hqqDequantize): Promise<number> {
  // Weights fed as inputs: the quantized model swaps its matrices without a new session.
  const float = await createDecoderModel(weights, { weightMode: 'inputs' });
  const accumulator = new KldAccumulator();
  const vocab = weights.config.vocabSize;
  const floatLogits: Float32Array[] = [];
  for (const ids of blocks) floatLogits.push((await float.logits({ ids })).slice(0, (ids.length - 1) * vocab));
  await float.setWeights(dequantizedOverrides(weights, allocation, dequantize));
  for (const [b, ids] of blocks.entries()) {
    accumulator.addWindow(floatLogits[b]!, (await float.logits({ ids })).subarray(0, (ids.length - 1) * vocab), vocab, ids.slice(1));
  }
  await float.dispose();
  return accumulator.statistics().kld.mean;
}

/** (b) The float64 reference forward, KLD written out plainly. */
function bruteForceReference(weights: DecoderWeights, blocks: number[][], allocation: UnitConfigs): number {
  const quantized = withOverrides(weights, dequantizedOverrides(weights, allocation));
  const vocab = weights.config.vocabSize;
  let sum = 0;
  let count = 0;
  const softmax = (row: Float64Array) => {
    const max = Math.max(...row);
    const e = Array.from(row, (v) => Math.exp(v - max));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / total);
  };
  for (const ids of blocks) {
    const p = referenceForward(weights, ids);
    const q = referenceForward(quantized, ids);
    for (let t = 0; t + 1 < ids.length; t++) {
      const pb = softmax(p.subarray(t * vocab, (t + 1) * vocab));
      const pq = softmax(q.subarray(t * vocab, (t + 1) * vocab));
      sum += pb.reduce((s, x, i) => s + x * Math.log(x / pq[i]!), 0);
      count++;
    }
  }
  return sum / count;
}

function calibration(config: DecoderConfig, blocks: number, seqlen: number): number[][] {
  return Array.from({ length: blocks }, (_, b) => Array.from({ length: seqlen }, (_, t) => (b * 131 + t * 17 + 3) % config.vocabSize));
}

describe('end-to-end ΔKLD of one matrix vs brute force (tiny random Llama)', () => {
  const config = tinyConfig({ numLayers: 3, hiddenSize: 64, intermediateSize: 128, numHeads: 4, headDim: 16 });
  const blocks = calibration(config, 3, 20);
  let weights: DecoderWeights;
  let measurer: KldMeasurer;
  const setup = async () => {
    weights ??= await loadDecoderWeights(randomDecoderSource(config, 11), config);
    measurer ??= await createKldMeasurer(await createDecoderBlocks(weights), blocks.flat(), { seqlen: 20, batchSize: 2, availableMemoryBytes: freemem() });
  };

  it('each matrix alone (the rest float): the measured ΔKLD is the whole model\'s KLD, by onnxruntime and by float64', async () => {
    await setup();
    expect(measurer.units).toHaveLength(22); // 21 matrices and the (tied) embedding table
    expect(measurer.tokens).toBe(3 * 19);
    const picked = ['0.self_attn.q_proj', '1.self_attn.o_proj', '1.mlp.gate_proj', '2.mlp.down_proj', '0.self_attn.v_proj', 'embed_tokens'];
    const configs: QuantConfig[] = [B2G32, B4G32];
    const measured = await measurer.marginals(new Map(), (key) => (picked.includes(key) ? configs : []));
    expect(Math.abs(measured.referenceLoss)).toBeLessThan(1e-12); // the float model against itself: the same logits
    for (const key of picked) {
      const row = measured.deltas.get(key)!;
      for (const [c, config] of configs.entries()) {
        const allocation = new Map([[key, config]]);
        const onnx = await bruteForceOnnx(weights, blocks, allocation);
        expect(row[c]!, `${key} ${configName(config)}`).toBeGreaterThan(0);
        // The block graphs and the one-session graph do the same float32 arithmetic (measured: within 1e-12).
        expect(Math.abs(row[c]! - onnx) / onnx, `${key} ${configName(config)} vs one session`).toBeLessThan(1e-9);
        if (c === 0) {
          // float32 onnxruntime against float64 (measured: within 2e-5), on the 2-bit config (the float64 forward is slow).
          const reference = bruteForceReference(weights, blocks, allocation);
          expect(Math.abs(row[c]! - reference) / reference, `${key} ${configName(config)} vs float64`).toBeLessThan(1e-4);
        }
      }
      // Fewer bits, more divergence (on this model, for these configs).
      expect(row[0]!).toBeGreaterThan(row[1]!);
    }
  });

  it('progress counts the layers each measurement runs: the first one (embed_tokens, every layer) does not set the estimate', async () => {
    await setup();
    // The model's own calls, counted: whole layers and heads run for each measurement, per batch of blocks.
    const calls = { layer: 0, head: 0 };
    const blocksModel = await createDecoderBlocks(weights);
    const counted = new Proxy(blocksModel, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if ((key === 'layer' || key === 'head') && typeof value === 'function') {
          return (...args: unknown[]) => {
            calls[key]++;
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return value;
      },
    });
    const m = await createKldMeasurer(counted, blocks.flat(), { seqlen: 20, batchSize: 2, availableMemoryBytes: freemem() });
    const batches = 2; // 3 blocks in batches of 2
    const picked = ['embed_tokens', '0.self_attn.q_proj', '0.mlp.down_proj', '2.mlp.up_proj'];
    const steps: { key: string; done: number; total: number; layers: number; heads: number }[] = [];
    let order = 0;
    const keys = ['embed_tokens', '0.self_attn.q_proj', '0.self_attn.q_proj', '0.mlp.down_proj', '0.mlp.down_proj', '2.mlp.up_proj', '2.mlp.up_proj'];
    calls.layer = 0;
    calls.head = 0;
    const starts: number[] = [];
    await m.marginals(new Map(), (key) => (key === 'embed_tokens' ? [B2G32] : picked.includes(key) ? [B2G32, B4G32] : []), (done, total) => {
      // (0, total) once, before any measurement runs: what a cost report times from.
      if (done === 0) starts.push(total, calls.layer + calls.head);
      else steps.push({ key: keys[order++]!, done, total, layers: calls.layer, heads: calls.head });
    });
    expect(starts).toEqual([steps[0]!.total, 0]);
    const L = config.numLayers;
    expect(steps.map((s) => s.key)).toEqual(keys);
    // embed_tokens: every layer and the head (L + 1); a matrix of layer l: the rest of its layer, the layers after and
    // the head (L - l + 1).
    const runsOf = (key: string) => (key === 'embed_tokens' ? L + 1 : L - Number(key.split('.')[0]) + 1);
    expect(steps.at(-1)!.done).toBe(steps.at(-1)!.total);
    expect(steps[0]!.total).toBe(keys.reduce((sum, key) => sum + runsOf(key), 0));
    let previous = { done: 0, layers: 0, heads: 0 };
    for (const step of steps) {
      expect(step.done - previous.done, step.key).toBe(runsOf(step.key));
      // What the model ran for it: whole layers after the unit's own and the head, per batch (a matrix's own layer runs
      // from the matrix on, through the block graphs, and counts as one more).
      const ran = (step.layers - previous.layers + step.heads - previous.heads) / batches;
      expect(ran + (step.key === 'embed_tokens' ? 0 : 1), step.key).toBe(runsOf(step.key));
      previous = step;
    }
  });

  it('around an allocation: the marginal of a matrix is the whole model\'s KLD with it moved, less the allocation\'s', async () => {
    await setup();
    const allocation = new Map<string, QuantConfig | null>(kldUnits({ config, shapes: weights.shapes, layout: weights.layout }).map((u) => [u.key, u.layer === 1 ? B3G64 : B4G32]));
    const loss = await measurer.lossOf(allocation);
    const onnxLoss = await bruteForceOnnx(weights, blocks, allocation);
    expect(Math.abs(loss - onnxLoss) / onnxLoss).toBeLessThan(1e-9);
    const moved = [
      ['0.mlp.up_proj', B2G32],
      ['1.self_attn.k_proj', B4G32],
      ['2.self_attn.q_proj', B2G32],
    ] as const;
    const measured = await measurer.marginals(allocation, (key) => (key === moved[0][0] || key === moved[1][0] || key === moved[2][0] ? [allocation.get(key)!, ...moved.filter((m) => m[0] === key).map((m) => m[1])] : []));
    expect(Math.abs(measured.referenceLoss - loss) / loss).toBeLessThan(1e-9);
    for (const [key, config] of moved) {
      const row = measured.deltas.get(key)!;
      expect(row[0]).toBe(0); // the matrix at its own config: no change, no run
      const brute = (await bruteForceOnnx(weights, blocks, new Map(allocation).set(key, config))) - onnxLoss;
      expect(Math.abs(row[1]! - brute), `${key} -> ${configName(config)}: ${row[1]} vs ${brute}`).toBeLessThan(1e-9 * Math.abs(brute) + 1e-12);
    }
  });

  it('held-out blocks: heldOutLossOf is the whole model\'s KLD on them alone (by onnxruntime), not the calibration\'s', async () => {
    await setup();
    const heldOut = calibration(config, 5, 20).slice(3); // two other blocks of the same length
    const both = await createKldMeasurer(await createDecoderBlocks(weights), blocks.flat(), {
      seqlen: 20,
      batchSize: 2,
      availableMemoryBytes: freemem(),
      heldOut: { ids: Int32Array.from(heldOut.flat()), blocks: 2, seqlen: 20 },
    });
    expect(both.heldOut).toEqual({ blocks: 2, tokens: 2 * 19 });
    expect(measurer.heldOut).toBeNull();
    expect(measurer.heldOutLossOf).toBeUndefined();
    const allocation = new Map<string, QuantConfig | null>(kldUnits({ config, shapes: weights.shapes, layout: weights.layout }).map((u) => [u.key, u.layer === 2 ? B2G32 : B4G32]));
    const held = await both.heldOutLossOf!(allocation);
    const onHeldOut = await bruteForceOnnx(weights, heldOut, allocation);
    expect(Math.abs(held - onHeldOut) / onHeldOut).toBeLessThan(1e-9);
    // The calibration's loss is unchanged by holding blocks out, and differs from the held-out one.
    expect(await both.lossOf(allocation)).toBe(await measurer.lossOf(allocation));
    expect(Math.abs(held - (await both.lossOf(allocation)))).toBeGreaterThan(1e-6);
    await expect(createKldMeasurer(await createDecoderBlocks(weights), blocks.flat(), { seqlen: 20, availableMemoryBytes: freemem(), heldOut: { ids: new Int32Array(19), blocks: 1, seqlen: 19 } })).rejects.toThrow(/heldOut.*whole blocks of the calibration's length \(20 tokens\)/);
  });

  it('an untied model: embed_tokens and lm_head alone and around an allocation, as the whole model measures them', async () => {
    const untied = await loadDecoderWeights(randomDecoderSource(config, 12, { lmHead: true }), config);
    expect(untied.layout.tiedEmbeddings).toBe(false);
    const m = await createKldMeasurer(await createDecoderBlocks(untied), blocks.flat(), { seqlen: 20, batchSize: 2, availableMemoryBytes: freemem() });
    expect(m.units.map((u) => u.key).slice(-2)).toEqual(['embed_tokens', 'lm_head']);
    const alone = await m.marginals(new Map(), (key) => (key === 'embed_tokens' || key === 'lm_head' ? [B2G32, B4G32] : []));
    for (const key of ['embed_tokens', 'lm_head']) {
      for (const [c, config] of [B2G32, B4G32].entries()) {
        const brute = await bruteForceOnnx(untied, blocks, new Map([[key, config]]));
        expect(Math.abs(alone.deltas.get(key)![c]! - brute) / brute, `${key} ${configName(config)}`).toBeLessThan(1e-9);
      }
    }
    const allocation = new Map<string, QuantConfig | null>(m.units.map((u) => [u.key, u.module === 'lm_head' ? B4G32 : B3G64]));
    const loss = await m.lossOf(allocation);
    expect(Math.abs(loss - (await bruteForceOnnx(untied, blocks, allocation))) / loss).toBeLessThan(1e-9);
    const around = await m.marginals(allocation, (key) => (key === 'embed_tokens' || key === 'lm_head' || key === '1.mlp.up_proj' ? [B2G32, null] : []));
    for (const key of ['embed_tokens', 'lm_head', '1.mlp.up_proj']) {
      for (const [c, config] of [B2G32, null].entries()) {
        const moved = new Map(allocation).set(key, config);
        const brute = (await bruteForceOnnx(untied, blocks, moved)) - loss;
        expect(Math.abs(around.deltas.get(key)![c]! - brute), `${key} -> ${config ? configName(config) : 'float'}`).toBeLessThan(1e-9 * Math.abs(brute) + 1e-12);
      }
    }
  });

  it('a calibrated quantizer (gptq): each matrix quantized with the Hessian of its float inputs on the calibration, as the whole model measures it', async () => {
    weights ??= await loadDecoderWeights(randomDecoderSource(config, 11), config);
    const model = await createDecoderBlocks(weights);
    const gptq = await createKldMeasurer(model, blocks.flat(), { seqlen: 20, batchSize: 2, quantizer: gptqQuantizer, availableMemoryBytes: freemem() });
    // The Hessians of a separate float pass (floatLayerHessians, layer by layer, chained through model.layer), in the
    // measurer's batches: blocks 0-1, then 2. The per-batch sums are hessians.ts's, as the measurer's; their values are
    // checked against the float64 reference forward in hessians.test.ts.
    const hessians: LayerHessians[] = [];
    let hidden: HiddenStates[] = [model.embed({ ids: Int32Array.from(blocks.slice(0, 2).flat()), batch: 2 }), model.embed({ ids: Int32Array.from(blocks[2]!), batch: 1 })];
    for (let layer = 0; layer < config.numLayers; layer++) {
      hessians.push(await floatLayerHessians(model, layer, hidden));
      const next: HiddenStates[] = [];
      for (const states of hidden) next.push({ ...states, data: (await model.layer(layer, states)).output });
      hidden = next;
    }
    const gptqDequantize: Dequantize = (tensor, c, unit) =>
      // The embedding table has no layer input: GPTQ takes the identity there (no context given).
      gptqQuantizer.dequantize(gptqQuantizer.quantize(tensor, c, unit.layer < 0 ? undefined : hessians[unit.layer]!.contextFor(unit.module as LinearModule)));
    const picked = ['0.self_attn.k_proj', '1.self_attn.o_proj', '1.mlp.up_proj', '2.mlp.down_proj', 'embed_tokens'];
    const measured = await gptq.marginals(new Map(), (key) => (picked.includes(key) ? [B2G32] : []));
    await setup();
    const byHqq = await measurer.marginals(new Map(), (key) => (picked.includes(key) ? [B2G32] : []));
    for (const key of picked) {
      const brute = await bruteForceOnnx(weights, blocks, new Map([[key, B2G32]]), gptqDequantize);
      const ours = measured.deltas.get(key)![0]!;
      expect(Math.abs(ours - brute) / brute, `${key}: ${ours} vs ${brute}`).toBeLessThan(1e-9);
      // Another quantizer, another divergence: the table is GPTQ's, not HQQ's.
      expect(Math.abs(ours - byHqq.deltas.get(key)![0]!) / brute, key).toBeGreaterThan(1e-3);
    }
    // The Hessians are held with the weights: a budget for the float32 weights alone is refused, naming them.
    let layerBytes = 0;
    for (const [name, shape] of weights.shapes) if (/^model\.layers\./.test(name)) layerBytes += 4 * shape.reduce((a, b) => a * b, 1);
    await expect(createKldMeasurer(model, blocks.flat(), { seqlen: 20, quantizer: gptqQuantizer, maxWeightBytes: layerBytes + 1 })).rejects.toThrow(/calibrated quantizer "gptq", their inputs' float64 Hessians/);
    await expect(createKldMeasurer(model, blocks.flat(), { seqlen: 20, maxWeightBytes: layerBytes + 1 })).resolves.toBeDefined();
  });

  it('kldSumOfBatch is the KL divergence of @layerquant/perplexity, position by position', () => {
    const vocab = 5;
    const seqlen = 4;
    const logits = Float32Array.from({ length: 2 * seqlen * vocab }, (_, i) => Math.sin(i * 1.3) * 2);
    const base = Float32Array.from({ length: 2 * (seqlen - 1) * vocab }, (_, i) => Math.cos(i * 0.7) * 2);
    const probabilities = new Float64Array(base.length);
    const negativeEntropy = Float64Array.from({ length: 2 * (seqlen - 1) }, (_, r) => {
      const row = Array.from(base.subarray(r * vocab, (r + 1) * vocab), Number);
      const total = row.reduce((s, v) => s + Math.exp(v), 0);
      row.forEach((v, j) => (probabilities[r * vocab + j] = Math.exp(v) / total));
      return row.reduce((s, v) => s + (Math.exp(v) / total) * (v - Math.log(total)), 0);
    });
    const accumulator = new KldAccumulator();
    for (let b = 0; b < 2; b++) {
      accumulator.addWindow(base.subarray(b * (seqlen - 1) * vocab, (b + 1) * (seqlen - 1) * vocab), logits.subarray(b * seqlen * vocab, (b * seqlen + seqlen - 1) * vocab), vocab, [0, 1, 2]);
    }
    const total = accumulator.windows().kld.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(0.1);
    expect(Math.abs(kldSumOfBatch(logits, probabilities, negativeEntropy, 2, seqlen, vocab) - total)).toBeLessThan(1e-12);
  });
});
