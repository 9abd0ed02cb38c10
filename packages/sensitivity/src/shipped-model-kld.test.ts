import { matrixTensorName, parseMatrixKey, quantConfig } from '@layerquant/core';
import { brownCalibPath, shippedModelDir } from '@layerquant/fixtures';
import { KldAccumulator } from '@layerquant/perplexity';
import { hqqQuantizer } from '@layerquant/quantizers';
import { createDecoderBlocks, createDecoderModel, loadDecoderWeights, type DecoderWeights } from '@layerquant/runtime';
import { loadTokenizer, openModel } from '@layerquant/tensor-io';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { calibrationBlocks } from './calibration.js';
import { createKldMeasurer } from './end-to-end-kld.js';
import { freemem } from 'node:os';

/**
 * The shipped model (32 layers, untied lm_head): the measurer's ΔKLD of a few units alone equals the brute force,
 * the whole model run in one onnxruntime session with that unit replaced by its dequantized HQQ weights and the KL
 * divergence of @layerquant/perplexity against the float model's logits, on 2 blocks of 64 tokens of brown-calib.
 */
describe('end-to-end ΔKLD on the shipped model vs brute force', () => {
  it('layer 0 down_proj, layer 15 q_proj, layer 31 up_proj and lm_head at b3g64 and b2g128', async () => {
    const { config, checkpoint } = await openModel(shippedModelDir);
    const weights: DecoderWeights = await loadDecoderWeights(checkpoint, config);
    await checkpoint.close();
    const calibration = calibrationBlocks(readFileSync(brownCalibPath, 'utf8'), await loadTokenizer(shippedModelDir), { blocks: 2, seqlen: 64 });
    const measurer = await createKldMeasurer(await createDecoderBlocks(weights, { threads: 2 }), calibration, { availableMemoryBytes: freemem() });
    const picked = ['0.mlp.down_proj', '15.self_attn.q_proj', '31.mlp.up_proj', 'lm_head'];
    const configs = [quantConfig(3, 64), quantConfig(2, 128)];
    const measured = await measurer.marginals(new Map(), (key) => (picked.includes(key) ? configs : []));

    const model = await createDecoderModel(weights, { weightMode: 'inputs', threads: 2 });
    const blocks = [0, 1].map((b) => Array.from(calibration.ids.subarray(b * 64, (b + 1) * 64)));
    const vocab = config.vocabSize;
    const floatLogits: Float32Array[] = [];
    for (const ids of blocks) floatLogits.push((await model.logits({ ids })).slice(0, 63 * vocab));
    for (const key of picked) {
      const unit = parseMatrixKey(key)!;
      const name = matrixTensorName(unit.layer, unit.module);
      for (const [c, config] of configs.entries()) {
        const weight = { name, dtype: 'F32' as const, shape: [...weights.shapes.get(name)!], data: weights.tensors.get(name)! };
        await model.setWeights(new Map([[name, hqqQuantizer.dequantize(hqqQuantizer.quantize(weight, config))]]));
        const accumulator = new KldAccumulator();
        for (const [b, ids] of blocks.entries()) accumulator.addWindow(floatLogits[b]!, (await model.logits({ ids })).subarray(0, 63 * vocab), vocab, ids.slice(1));
        const brute = accumulator.statistics().kld.mean;
        const ours = measured.deltas.get(key)![c]!;
        expect(brute).toBeGreaterThan(0);
        expect(Math.abs(ours - brute) / brute, `${key} b${config.bits}g${config.groupSize}: ${ours} vs ${brute}`).toBeLessThan(1e-6);
      }
      await model.setWeights(new Map([[name, weights.tensors.get(name)!]]));
    }
    await model.dispose();
  });
});
