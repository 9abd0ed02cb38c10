// GPTQ exports as plain MatMulNBits (integer zero points, no correction), and transformers.js generates from it what
// the dequantized weights generate; BAQ's per-column widths have no MatMulNBits form and the export says so.
import { LayerquantError, quantConfig } from '@layerquant/core';
import { baqQuantizer, gptqQuantizer, type MatrixCalibration } from '@layerquant/quantizers';
import { quantizeModel } from '@layerquant/quantizers/node';
import { randomInputs } from '@layerquant/quantizers/testing';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportOnnx } from './export-onnx.js';
import { referenceGreedy, transformersGenerate } from './__fixtures__/greedy-generation.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-gptq-export-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const config = tinyConfig({ numLayers: 3, vocabSize: 96, eosTokenId: 95, intermediateSize: 64 });
const modelDir = join(root, 'model');
const PROMPT = [5, 17, 42, 8];
const NEW_TOKENS = 12;

/** Hessians of correlated random inputs (the export does not care where they came from; the layer pass is tested in sensitivity). */
const calibration: MatrixCalibration = {
  context: async (matrix) => ({ hessian: randomInputs(matrix.shape[1], 4 * matrix.shape[1], matrix.layer * 7 + matrix.shape[0]).hessian }),
  done: () => undefined,
};

beforeAll(async () => {
  await writeModelDirectory(modelDir, config, 9);
});

describe('exporting a GPTQ checkpoint', () => {
  it('writes every matrix as MatMulNBits with integer zero points (no correction), and transformers.js generates the dequantized model\'s greedy continuation', async () => {
    const quantizedDir = join(root, 'gptq');
    // 2, 4 and 8 bits across the layers, one layer act-order-free and groups of 16 and 32
    const configs = [quantConfig(4, 16), quantConfig(2, 16), quantConfig(8, 32)];
    await quantizeModel({ modelDir, outDir: quantizedDir, quantizer: gptqQuantizer, configFor: (_, m) => configs[m.layer]!, calibration });
    const outDir = join(root, 'gptq-onnx');
    const report = await exportOnnx({ modelDir: quantizedDir, outDir, accuracyLevel: 0 });
    const quantized = report.matrices.filter((m) => m.config !== null);
    expect(quantized).toHaveLength(config.numLayers * 7);
    expect(quantized.filter((m) => m.zeroCorrection)).toEqual([]);

    // layerquant's decode of the dequantized weights: the float64 reference forward, greedy, no cache
    expect(await transformersGenerate(outDir, 'q4', PROMPT, NEW_TOKENS)).toEqual(await referenceGreedy(quantizedDir, PROMPT, NEW_TOKENS));
  });

  it('refuses a BAQ checkpoint with a typed error that says why (per-column widths have no MatMulNBits form)', async () => {
    const quantizedDir = join(root, 'baq');
    await quantizeModel({ modelDir, outDir: quantizedDir, quantizer: baqQuantizer, configFor: () => quantConfig(3, 16), calibration });
    const refused = exportOnnx({ modelDir: quantizedDir, outDir: join(root, 'baq-onnx') });
    await expect(refused).rejects.toThrow(LayerquantError);
    await expect(refused).rejects.toThrow(/"baq".*not the affine.*different code widths.*one width per matrix/);
  });
});
