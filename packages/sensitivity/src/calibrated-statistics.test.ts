import { LINEAR_MODULES, matrixKey, matrixTensorName, quantConfig, seededRandom } from '@layerquant/core';
import { createRtnQuantizer, gptqQuantizer, squaredError } from '@layerquant/quantizers';
import { hessianWeightedError } from '@layerquant/quantizers/testing';
import { loadDecoderBlocks, type DecoderBlocks, type HiddenStates } from '@layerquant/runtime';
import { randomDecoderSource, tinyConfig } from '@layerquant/runtime/testing';
import { describe, expect, it } from 'vitest';
import { activationSensitivity } from './activation-sensitivity.js';
import { frobeniusTable } from './frobenius-table.js';
import { createSequentialCalibration, floatLayerHessians, type LayerHessians } from './hessians.js';
import { measuredErrors } from './measured-error.js';

// Statistics measured with a calibrated quantizer (GPTQ): every matrix quantized with the Hessian of its float inputs.
const config = tinyConfig({ numLayers: 2, hiddenSize: 32, intermediateSize: 64 });
const blocks = 4;
const seqlen = 8;
const random = seededRandom(17);
const ids = Int32Array.from({ length: blocks * seqlen }, () => Math.floor(random() * config.vocabSize));
const calibration = { ids, blocks, seqlen };
const b3g16 = quantConfig(3, 16);

/** Every layer's Hessians from float inputs, and the float inputs (batches of 2 blocks, as the passes cut them). */
async function floatHessians(model: DecoderBlocks): Promise<LayerHessians[]> {
  const all: LayerHessians[] = [];
  let hidden: HiddenStates[] = [0, 1].map((b) => model.embed({ ids: ids.subarray(b * 2 * seqlen, (b + 1) * 2 * seqlen), batch: 2 }));
  for (let layer = 0; layer < config.numLayers; layer++) {
    all.push(await floatLayerHessians(model, layer, hidden));
    const next: HiddenStates[] = [];
    for (const states of hidden) next.push({ data: (await model.layer(layer, states)).output, batch: states.batch, length: states.length });
    hidden = next;
  }
  return all;
}

describe('statistics with a calibrated quantizer (gptq)', () => {
  it('fnorm: each matrix GPTQ-quantized with its float-input Hessian, served by the layer pass (same Hessians as floatLayerHessians)', async () => {
    const source = randomDecoderSource(config, 3);
    const model = await loadDecoderBlocks(source, config);
    const hessians = await floatHessians(model);
    await expect(frobeniusTable(source, [b3g16], { quantizer: gptqQuantizer })).rejects.toThrow(/calibrated/);
    const table = await frobeniusTable(source, [b3g16], { quantizer: gptqQuantizer, calibration: createSequentialCalibration(model, calibration, { batchSize: 2 }) });
    expect(table.rows).toHaveLength(config.numLayers * 7);
    for (const row of table.rows) {
      const name = matrixTensorName(row.layer, row.module as (typeof LINEAR_MODULES)[number]);
      const weight = await source.read(name);
      const q = gptqQuantizer.quantize(weight, b3g16, hessians[row.layer]!.contextFor(row.module as (typeof LINEAR_MODULES)[number]));
      expect(row.squaredError, matrixKey(row.layer, row.module as (typeof LINEAR_MODULES)[number])).toBe(squaredError(gptqQuantizer.dequantize(q), weight.data));
    }
    await model.dispose();
  });

  it("measured and activation sensitivity: o_proj and down_proj (linear in their weights) lose less than RTN's, by N/2 tr((W - Q) H (W - Q)^T)", async () => {
    const source = randomDecoderSource(config, 4);
    const model = await loadDecoderBlocks(source, config);
    const hessians = await floatHessians(model);
    const rtn = createRtnQuantizer();
    const gptq = await measuredErrors(model, calibration, { quantizer: gptqQuantizer, configs: [b3g16], batchSize: 2 });
    const rounded = await measuredErrors(model, calibration, { quantizer: rtn, configs: [b3g16], batchSize: 2 });
    for (const row of gptq.rows) {
      const other = rounded.rows.find((r) => r.layer === row.layer && r.module === row.module)!;
      if (row.module !== 'self_attn.o_proj' && row.module !== 'mlp.down_proj') continue;
      expect(row.error, `${row.layer}.${row.module}`).toBeLessThan(other.error);
      // the same quantity up to the normalization: error x stream x elements = sum over tokens of |x (W - Q)^T|^2 = N/2 tr(D H D^T)
      const name = matrixTensorName(row.layer, row.module);
      const weight = await source.read(name);
      const h = hessians[row.layer]!.contextFor(row.module).hessian!;
      const q = gptqQuantizer.dequantize(gptqQuantizer.quantize(weight, b3g16, { hessian: h }));
      const ratio = row.error / other.error;
      const expected = hessianWeightedError(weight.data, q, h) / hessianWeightedError(weight.data, rtn.dequantize(rtn.quantize(weight, b3g16)), h);
      expect(ratio).toBeCloseTo(expected, 4);
    }
    const sensitivity = await activationSensitivity(model, calibration, { quantizer: gptqQuantizer, config: b3g16, batchSize: 2 });
    const roundedSensitivity = await activationSensitivity(model, calibration, { quantizer: rtn, config: b3g16, batchSize: 2 });
    for (const row of sensitivity.rows) {
      expect(Number.isFinite(row.sensitivity)).toBe(true);
      if (row.part === 'attn_out' || row.part === 'mlp_down') {
        expect(row.sensitivity).toBeLessThan(roundedSensitivity.rows.find((r) => r.layer === row.layer && r.part === row.part)!.sensitivity);
      }
    }
    await model.dispose();
  });
});
