import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidOptionError, matrixTensorName, quantConfig } from '@layerquant/core';
import { brownCalibPath, shippedModelDir } from '@layerquant/fixtures';
import { baqQuantizer, createRtnQuantizer, gptqQuantizer } from '@layerquant/quantizers';
import { openQuantizedCheckpoint, quantizeModel } from '@layerquant/quantizers/node';
import { hessianOfInputs } from '@layerquant/quantizers/testing';
import { loadDecoderBlocks } from '@layerquant/runtime';
import { tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { loadDecoderConfig, loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { calibrationBlocks } from './calibration.js';
import { rmsNormRows } from './hessians.js';
import { openSequentialCalibration } from './sequential-calibration.js';

const text = readFileSync(brownCalibPath, 'utf8');
const out = mkdtempSync(join(tmpdir(), 'layerquant-gptq-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('quantizeModel with a calibrated quantizer (gptq) on the shipped model', () => {
  it('refuses a calibrated quantizer without calibration', async () => {
    await expect(quantizeModel({ modelDir: shippedModelDir, outDir: join(out, 'none'), quantizer: gptqQuantizer, configFor: () => quantConfig(4, 64) })).rejects.toThrow(InvalidOptionError);
  });

  it('quantizes the first two layers on the sequential layer pass: lower Hessian-weighted error than RTN, reported, readable', async () => {
    const config = quantConfig(3, 64);
    const opened = await openSequentialCalibration(shippedModelDir, { text, name: 'brown-calib', blocks: 2, seqlen: 64 });
    let report;
    try {
      report = await quantizeModel({
        modelDir: shippedModelDir,
        outDir: join(out, 'gptq'),
        quantizer: gptqQuantizer,
        configFor: (_, matrix) => (matrix.layer < 2 ? config : null),
        calibration: opened.calibration,
        // GPTQ's column loops on worker threads, matrices started ahead while earlier ones finish
        workers: 2,
      });
    } finally {
      await opened.close();
    }
    expect(opened.blocks).toBe(2);
    expect(report.quantizedMatrices).toBe(14);
    for (const m of report.perMatrix.filter((m) => m.config !== null)) expect(m.report).toEqual({ deadColumns: 0, dampening: 0.01, dampeningRetries: 0 });
    const saved = JSON.parse(readFileSync(join(out, 'gptq', 'quantization.json'), 'utf8')) as { perMatrix: { report?: unknown }[] };
    expect(saved.perMatrix.filter((m) => m.report !== undefined)).toHaveLength(14);

    // Layer 0's q/k/v read the embeddings of the calibration tokens through input_layernorm: their Hessian, written out here.
    const checkpoint = await openCheckpoint(shippedModelDir);
    const model = await loadDecoderBlocks(checkpoint, await loadDecoderConfig(shippedModelDir));
    const quantized = await openQuantizedCheckpoint(join(out, 'gptq'));
    try {
      const blocks = calibrationBlocks(text, await loadTokenizer(shippedModelDir), { blocks: 2, seqlen: 64 });
      const embedded = model.embed({ ids: blocks.ids, batch: 2 });
      const normed = rmsNormRows(embedded.data, await model.tensor('model.layers.0.input_layernorm.weight'), model.config.rmsNormEps);
      const h = hessianOfInputs(normed, 128, 256);
      const rtn = createRtnQuantizer();
      for (const module of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] as const) {
        const name = matrixTensorName(0, module);
        const weight = await checkpoint.read(name);
        const error = (values: Float32Array) => {
          let total = 0;
          const rows = values.length / 256;
          for (let r = 0; r < rows; r++) {
            const d = Float64Array.from({ length: 256 }, (_, c) => weight.data[r * 256 + c]! - values[r * 256 + c]!);
            for (let i = 0; i < 256; i++) for (let j = 0; j < 256; j++) total += d[i]! * h.data[i * 256 + j]! * d[j]!;
          }
          return total;
        };
        const gptq = error((await quantized.read(name)).data);
        const rounded = error(rtn.dequantize(rtn.quantize(weight, config)));
        expect(gptq, module).toBeLessThan(0.8 * rounded);
      }
      expect(quantized.isQuantized(matrixTensorName(2, 'self_attn.q_proj'))).toBe(false);
    } finally {
      await quantized.close();
      await model.dispose();
      await checkpoint.close();
    }
  });

  describe('with reads that finish out of order', () => {
    // Every other file read is held back: a matrix started ahead is read before the one started before it, as
    // happens by chance under load (a run on a busy 2-core machine waited forever for this once).
    type Read = (...args: unknown[]) => Promise<unknown>;
    let restore: (() => void) | undefined;
    afterEach(() => restore?.());
    const holdBackReads = async () => {
      const handle = await open(brownCalibPath);
      const proto = Object.getPrototypeOf(handle) as { read: Read };
      await handle.close();
      const read = proto.read;
      let calls = 0;
      proto.read = async function (this: unknown, ...args: unknown[]) {
        if (calls++ % 2 === 0) await new Promise((r) => setTimeout(r, 15));
        return read.apply(this, args);
      };
      restore = () => {
        proto.read = read;
        restore = undefined;
      };
    };

    it('quantizeModel asks the layer pass for contexts in layer order: the same file as with reads in order', async () => {
      const model = join(out, 'tiny');
      await writeModelDirectory(model, tinyConfig({ numLayers: 3, intermediateSize: 64 }), 11);
      const ids = Array.from({ length: 2 * 16 }, (_, i) => (i * 7) % tinyConfig().vocabSize);
      const run = async (name: string) => {
        const opened = await openSequentialCalibration(model, { calibration: { ids: Int32Array.from(ids), blocks: 2, seqlen: 16 } });
        try {
          // 4 workers: 5 matrices started ahead, across layer boundaries
          await quantizeModel({ modelDir: model, outDir: join(out, name), quantizer: gptqQuantizer, configFor: () => quantConfig(4, 32), calibration: opened.calibration, workers: 4 });
        } finally {
          await opened.close();
        }
        return readFileSync(join(out, name, 'model.safetensors'));
      };
      const inOrder = await run('tiny-in-order');
      await holdBackReads();
      const shuffled = await run('tiny-shuffled');
      restore?.();
      expect(shuffled.equals(inOrder)).toBe(true);
    });

    it('a layer asked for after a later one is refused at once, naming the order, not waited for', async () => {
      const model = join(out, 'tiny');
      const checkpoint = await openCheckpoint(model);
      const blocks = await loadDecoderBlocks(checkpoint, await loadDecoderConfig(model));
      try {
        const { createSequentialCalibration } = await import('./hessians.js');
        const calibration = createSequentialCalibration(blocks, Array.from({ length: 16 }, (_, i) => i), { seqlen: 16 });
        const unit = (layer: number) => ({ key: `${layer}.self_attn.q_proj`, name: matrixTensorName(layer, 'self_attn.q_proj'), layer, module: 'self_attn.q_proj' as const, shape: [32, 32] as const });
        const later = calibration.context(unit(1));
        later.catch(() => undefined);
        await expect(calibration.context(unit(0))).rejects.toThrow(/layer 0 was asked for after layer 1: calibrated matrices must be quantized in layer order/);
      } finally {
        await blocks.dispose();
        await checkpoint.close();
      }
    });
  });

  it('writes and reads back a BAQ matrix: its column widths stored beside the codes, dequantized by the plug-in', async () => {
    const config = quantConfig(2, 64);
    const opened = await openSequentialCalibration(shippedModelDir, { text, blocks: 1, seqlen: 64 });
    try {
      const report = await quantizeModel({ modelDir: shippedModelDir, outDir: join(out, 'baq'), quantizer: baqQuantizer, configFor: (_, m) => (m.layer === 0 ? config : null), calibration: opened.calibration });
      const down = report.perMatrix.find((m) => m.key === '0.mlp.down_proj')!;
      // codes and ranges as a b2g64 matrix stores them, plus one byte per column
      expect(down.packedBytes).toBe(256 * (640 / 16) * 4 + 2 * 4 * (256 * 640) / 64 + 640);
    } finally {
      await opened.close();
    }
    const quantized = await openQuantizedCheckpoint(join(out, 'baq'));
    try {
      const name = matrixTensorName(0, 'mlp.down_proj');
      const stored = await quantized.readQuantized(name);
      expect(stored.columnBits!.length).toBe(640);
      expect(stored.columnBits!.reduce((a, b) => a + b, 0)).toBe(640 * 2);
      expect(quantized.metadata.tensors[name]!.columnBits).toBe(true);
      expect((await quantized.read(name)).data).toEqual(baqQuantizer.dequantize(stored));
    } finally {
      await quantized.close();
    }
  });
});
