import { LINEAR_MODULES, matrixTensorName, parseConfigName, type QuantizeContext, type WeightTensor } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import { createGptqQuantizer } from './gptq.js';
import { createKernelPool } from './kernel-worker-pool.js';
import { layerOrder, planUnits, quantizeUnits, type FinishedUnit, type MatrixCalibration, type ModelMatrix } from './quantize-units.js';
import { createHqqQuantizer, squaredError } from './quantizers.js';
import { randomInputs, randomMatrix } from './testing/random-matrix.js';

// A two-layer model's matrices in memory, listed in a checkpoint's (alphabetical) order, not layer order.
const HIDDEN = 64;
const INTERMEDIATE = 128;
const shapeOf = (module: string): [number, number] =>
  module === 'mlp.down_proj' ? [HIDDEN, INTERMEDIATE] : module === 'mlp.gate_proj' || module === 'mlp.up_proj' ? [INTERMEDIATE, HIDDEN] : [HIDDEN, HIDDEN];
const weights = new Map<string, WeightTensor>();
for (let layer = 0; layer < 2; layer++) {
  for (const [i, module] of LINEAR_MODULES.entries()) {
    const name = matrixTensorName(layer, module);
    const [rows, columns] = shapeOf(module);
    weights.set(name, { ...randomMatrix(rows, columns, 100 * layer + i, 0.02, 3), name });
  }
}
const tensors = [
  { name: 'model.embed_tokens.weight', dtype: 'F32' as const, shape: [256, HIDDEN] },
  ...[...weights.values()].map((w) => ({ name: w.name, dtype: w.dtype, shape: w.shape })),
  { name: 'model.norm.weight', dtype: 'F32' as const, shape: [HIDDEN] },
].sort((a, b) => a.name.localeCompare(b.name));
const read = async (name: string) => weights.get(name)!;

async function collect(units: AsyncIterable<FinishedUnit>): Promise<FinishedUnit[]> {
  const out: FinishedUnit[] = [];
  for await (const unit of units) out.push(unit);
  return out;
}

describe('planUnits', () => {
  it('plans the linear matrices (and with embeddingUnits embed_tokens), checking each config against its shape', () => {
    const b4 = parseConfigName('b4g64');
    const plans = planUnits(tensors, (_key, m) => (m.module === 'mlp.down_proj' ? null : b4));
    expect([...plans.keys()]).toEqual(tensors.map((t) => t.name).filter((n) => weights.has(n)));
    expect([...plans.values()].filter((p) => p.config === null).map((p) => p.matrix.key)).toEqual(['0.mlp.down_proj', '1.mlp.down_proj']);
    expect(planUnits(tensors, () => b4, { embeddingUnits: true }).has('model.embed_tokens.weight')).toBe(true);
    // 48 columns: a group of 64 does not divide the row
    expect(() => planUnits([{ name: matrixTensorName(0, 'self_attn.q_proj'), dtype: 'F32', shape: [64, 48] }], () => b4)).toThrow(/48/);
    expect(() => planUnits([{ name: matrixTensorName(0, 'self_attn.q_proj'), dtype: 'F32', shape: [64, 4, 16] }], () => b4)).toThrow(/2-D/);
  });

  it('layerOrder puts layers in order and q, k, v, o, gate, up, down within one, other names first', () => {
    const ordered = layerOrder(tensors.map((t) => t.name), (n) => n);
    expect(ordered.slice(0, 2)).toEqual(['model.embed_tokens.weight', 'model.norm.weight']);
    expect(ordered.slice(2)).toEqual([0, 1].flatMap((layer) => LINEAR_MODULES.map((m) => matrixTensorName(layer, m))));
  });
});

describe('quantizeUnits', () => {
  const hqq = createHqqQuantizer({ kernel: 'typescript' });

  it("yields every unit in order: each quantized one equals the quantizer's own result, stored as the scale dtype stores it", async () => {
    const plans = planUnits(tensors, (_key, m) => (m.module === 'mlp.down_proj' ? null : parseConfigName(m.layer === 0 ? 'b4g64' : 'b2g32')));
    const units = await collect(quantizeUnits({ plans, read, quantizer: hqq, scaleDtype: 'F16' }));
    expect(units.map((u) => u.plan.matrix.name)).toEqual([...plans.keys()]);
    for (const unit of units) {
      if (!unit.quantized) {
        expect(unit.plan.matrix.module).toBe('mlp.down_proj');
        continue;
      }
      const weight = weights.get(unit.plan.matrix.name)!;
      const own = hqq.quantize(weight, unit.plan.config);
      expect(Buffer.from(unit.quantized.packed.buffer).equals(Buffer.from(own.packed.buffer))).toBe(true);
      // F16 storage: the fp16 value nearest each scale, and the error measured with it
      for (let g = 0; g < own.scale.length; g++) expect(Math.abs(unit.quantized.scale[g]! - own.scale[g]!)).toBeLessThanOrEqual(Math.abs(own.scale[g]!) * 2 ** -11);
      expect(unit.sqErr).toBe(squaredError(hqq.dequantize(unit.quantized), weight.data));
      expect(unit.sqErr).not.toBe(squaredError(hqq.dequantize(own), weight.data));
    }
  });

  it('a calibrated quantizer: contexts asked in layer order, every unit reported back in order, float ones as null', async () => {
    const gptq = createGptqQuantizer({ kernel: 'typescript' });
    const events: string[] = [];
    const hessians = new Map([HIDDEN, INTERMEDIATE].map((columns) => [columns, randomInputs(columns, 256, columns).hessian]));
    const calibration: MatrixCalibration = {
      async context(matrix: ModelMatrix): Promise<QuantizeContext> {
        events.push(`context ${matrix.key}`);
        return { hessian: hessians.get(matrix.shape[1])! };
      },
      done(matrix, dequantized) {
        events.push(`done ${matrix.key} ${dequantized ? 'quantized' : 'float'}`);
      },
    };
    const plans = planUnits(tensors, (_key, m) => (m.module === 'self_attn.o_proj' ? null : parseConfigName('b4g32')));
    const units = await collect(quantizeUnits({ plans, read, quantizer: gptq, calibration }));
    const inLayerOrder = [0, 1].flatMap((layer) => LINEAR_MODULES.map((m) => `${layer}.${m}`));
    expect(units.map((u) => u.plan.matrix.key)).toEqual(inLayerOrder);
    expect(events).toEqual(inLayerOrder.flatMap((key) => (key.endsWith('o_proj') ? [`done ${key} float`] : [`context ${key}`, `done ${key} quantized`])));
    // the solver got each matrix's Hessian: the result equals GPTQ on that Hessian
    const q = units.find((u) => u.plan.matrix.key === '1.mlp.up_proj')!;
    const own = gptq.quantize(weights.get(matrixTensorName(1, 'mlp.up_proj'))!, parseConfigName('b4g32'), { hessian: hessians.get(HIDDEN)! });
    expect(q.quantized && Buffer.from(q.quantized.packed.buffer).equals(Buffer.from(own.packed.buffer))).toBe(true);
    // without its statistics, a calibrated quantizer is refused before any read
    await expect(collect(quantizeUnits({ plans, read: () => Promise.reject(new Error('read')), quantizer: gptq }))).rejects.toThrow(/--calib/);
  });

  it('on a worker pool, units are quantized ahead and come out bit-identical, in order', async () => {
    const plans = planUnits(tensors, () => parseConfigName('b4g64'));
    const alone = await collect(quantizeUnits({ plans, read, quantizer: createHqqQuantizer({ kernel: 'wasm' }) }));
    const pool = createKernelPool(2)!;
    const reads: string[] = [];
    try {
      const pooled: FinishedUnit[] = [];
      for await (const unit of quantizeUnits({ plans, read: async (n) => (reads.push(n), read(n)), quantizer: createHqqQuantizer({ kernel: 'wasm' }), pool })) {
        // up to pool.size + 1 units are read before the first is handed out
        if (pooled.length === 0) expect(reads.length).toBe(3);
        pooled.push(unit);
      }
      expect(pooled.map((u) => u.plan.matrix.name)).toEqual(alone.map((u) => u.plan.matrix.name));
      for (const [i, unit] of pooled.entries()) {
        expect(Buffer.from(unit.quantized!.packed.buffer).equals(Buffer.from(alone[i]!.quantized!.packed.buffer))).toBe(true);
        const quantized = (u: FinishedUnit) => u as Extract<FinishedUnit, { readonly sqErr: number }>;
        expect(quantized(unit).sqErr).toBe(quantized(alone[i]!).sqErr);
      }
    } finally {
      await pool.close();
    }
  });
});
