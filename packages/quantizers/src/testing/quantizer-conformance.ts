import { PAPER_CONFIGS, configName, quantConfig, resolveOptions, type QuantConfig, type Quantizer, type WeightTensor } from '@layerquant/core';
import type { QuantizerPlugin } from '../registry.js';
import { describe, expect, it } from 'vitest';
import { squaredError, unpackQuantizedCodes } from '../quantizers.js';
import { hessianWeightedError, randomInputs, randomMatrix } from './random-matrix.js';

/** Properties every quantizer plug-in must have; each plug-in's test file calls this. */
export function runQuantizerConformance(quantizer: Quantizer): void {
  describe(`quantizer conformance: ${quantizer.id}`, () => {
    const weight = randomMatrix(24, 256, 7, 0.02, 6);
    // A calibrated quantizer gets the input Hessian of correlated inputs, as the layer pass would give it.
    const context = quantizer.calibration === 'hessian' ? { hessian: randomInputs(256, 600, 8).hessian } : undefined;
    const quantize = (q: Quantizer, w: WeightTensor, config: QuantConfig) => q.quantize(w, config, context);

    it('returns codes in [0, 2^b - 1], one scale and zero per group, the shape and config it was given', () => {
      for (const config of PAPER_CONFIGS) {
        const q = quantize(quantizer, weight, config);
        expect(q.shape).toEqual([24, 256]);
        expect(q.config).toBe(config);
        expect(q.scale.length).toBe((24 * 256) / config.groupSize);
        expect(q.zero.length).toBe(q.scale.length);
        const codes = unpackQuantizedCodes(q);
        let max = 0;
        for (const c of codes) max = Math.max(max, c);
        expect(max, configName(config)).toBeGreaterThan(0);
        if (!q.columnBits) {
          expect(max).toBeLessThanOrEqual(2 ** config.bits - 1);
          continue;
        }
        // a width per column: every code within its column's width, the widths averaging the config's bits
        expect(q.columnBits.length).toBe(256);
        expect(q.columnBits.reduce((a, b) => a + b, 0)).toBe(256 * config.bits);
        let outside = 0;
        for (let i = 0; i < codes.length; i++) if (codes[i]! >= 2 ** q.columnBits[i % 256]!) outside++;
        expect(outside, configName(config)).toBe(0);
      }
    });

    it('has a squared error that falls as bits rise (every group size) and as groups shrink', () => {
      for (const g of [32, 64, 128]) {
        const errors = [1, 2, 3, 4, 5, 6, 8].map((b) => squaredError(quantizer.dequantize(quantize(quantizer, weight, quantConfig(b, g))), weight.data));
        for (let i = 1; i < errors.length; i++) expect(errors[i]).toBeLessThan(errors[i - 1]!);
      }
      const byGroup = [128, 64, 32].map((g) => squaredError(quantizer.dequantize(quantize(quantizer, weight, quantConfig(3, g))), weight.data));
      expect(byGroup[1]).toBeLessThan(byGroup[0]!);
      expect(byGroup[2]).toBeLessThan(byGroup[1]!);
    });

    it('is deterministic and does not modify its input', () => {
      const copy = weight.data.slice();
      const a = quantize(quantizer, weight, quantConfig(4, 64));
      const b = quantize(quantizer, weight, quantConfig(4, 64));
      expect(weight.data).toEqual(copy);
      expect(a.packed).toEqual(b.packed);
      expect(a.zero).toEqual(b.zero);
    });

    it('keeps every 8-bit dequantized value within 1.5 quantization steps of the weight (calibrated: a tiny output error)', () => {
      const q = quantize(quantizer, weight, quantConfig(8, 64));
      const values = quantizer.dequantize(q);
      // A calibrated quantizer feeds each column's error into the later columns (GPTQ), which moves a weight several
      // steps off its own nearest grid point by design (on correlated inputs); what it keeps small is the output error.
      let worst = 0;
      for (let k = 0; k < q.scale.length; k++) {
        const step = 1 / q.scale[k]!;
        for (let j = 0; j < 64; j++) {
          const i = k * 64 + j;
          worst = Math.max(worst, Math.abs(values[i]! - weight.data[i]!) / step);
        }
      }
      if (!context) expect(worst).toBeLessThanOrEqual(1.5);
      if (context) {
        const h = context.hessian;
        // tr((W - Q) H (W - Q)^T) against tr(W H W^T): 8 bits keep the layer output within 1e-4 (relative, squared)
        expect(hessianWeightedError(weight.data, values, h)).toBeLessThan(1e-4 * hessianWeightedError(weight.data, new Float32Array(weight.data.length), h));
      }
    });

    it('round-trips through stored data alone: dequantize of a copy (as a checkpoint reads it back) is identical', () => {
      for (const config of [quantConfig(2, 32), quantConfig(4, 64), quantConfig(8, 128)]) {
        const q = quantize(quantizer, weight, config);
        // The checkpoint records the quantizer's id and dequantizes with the plug-in of that id.
        expect(q.method).toBe(quantizer.id);
        const stored = { ...q, packed: q.packed.slice(), scale: q.scale.slice(), zero: q.zero.slice(), config: { ...q.config }, ...(q.columnBits ? { columnBits: q.columnBits.slice() } : {}) };
        expect(quantizer.dequantize(stored)).toEqual(quantizer.dequantize(q));
      }
    });

    // Only what a quantizer declares is checked: a test that does not apply is skipped (and says so), never passed empty.
    it.runIf(quantizer.packedLayout === 'affine')("declares packedLayout 'affine' only when every stored group dequantizes as (code - zero) / scale (what the ONNX export holds)", () => {
      for (const config of [quantConfig(2, 32), quantConfig(3, 64), quantConfig(4, 128)]) {
        const q = quantize(quantizer, weight, config);
        const codes = unpackQuantizedCodes(q);
        const values = quantizer.dequantize(q);
        let worst = 0;
        let largest = 0;
        // Groups of axis 1 run along the input dimension: element i of the row-major matrix is in group i / groupSize.
        for (let i = 0; i < codes.length; i++) {
          const g = Math.floor(i / config.groupSize);
          const affine = (codes[i]! - q.zero[g]!) / q.scale[g]!;
          worst = Math.max(worst, Math.abs(values[i]! - affine));
          largest = Math.max(largest, Math.abs(affine));
        }
        expect(worst, configName(config)).toBeLessThanOrEqual(1e-6 * largest);
      }
    });

    it.runIf((quantizer as Partial<QuantizerPlugin>).options !== undefined)('describes its options (a plug-in) with help text and defaults that pass validation', () => {
      const plugin = quantizer as QuantizerPlugin;
      expect(plugin.description?.length ?? 0).toBeGreaterThan(0);
      for (const d of plugin.options) expect(d.help.length, d.name).toBeGreaterThan(0);
      const configured = plugin.configure(resolveOptions(plugin, {}));
      const config = quantConfig(3, 64);
      expect(configured.id).toBe(quantizer.id);
      expect(quantize(configured, weight, config).zero).toEqual(quantize(quantizer, weight, config).zero);
    });

    it('gives per-column widths exactly when it declares columnBits', () => {
      const q = quantize(quantizer, weight, quantConfig(3, 64));
      expect(q.columnBits !== undefined).toBe(quantizer.columnBits === true);
      // per-column widths have no affine (MatMulNBits) layout
      if (quantizer.columnBits) expect(quantizer.packedLayout).toBeUndefined();
    });

    it.runIf(quantizer.calibration !== undefined)('says whether it is calibrated, and refuses to quantize without the statistics it declares', () => {
      expect(quantizer.calibration).toBe('hessian');
      expect(() => quantizer.quantize(weight, quantConfig(4, 64))).toThrow(/random\.7\.weight/);
    });

    it('rejects a group size that does not divide the row length, naming the option and tensor', () => {
      expect(() => quantize(quantizer, weight, quantConfig(4, 48))).toThrow(/option "groupSize".*random\.7\.weight/);
      expect(() => quantize(quantizer, { ...weight, shape: [6144] }, quantConfig(4, 64))).toThrow(/only 2-D/);
    });
  });
}
