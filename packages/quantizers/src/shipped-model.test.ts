import { PAPER_CONFIGS, configName, matrixOfTensorName, type WeightTensor } from '@layerquant/core';
import { referenceHqqPath, shippedModelDir } from '@layerquant/fixtures';
import { openCheckpoint } from '@layerquant/tensor-io';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { hqqQuantizer, rtnQuantizer, squaredError } from './quantizers.js';

const reference = JSON.parse(readFileSync(referenceHqqPath, 'utf8')) as Record<string, number>;

describe('shipped model (224 linear matrices) against upstream HQQ in PyTorch', () => {
  const matrices: WeightTensor[] = [];
  beforeAll(async () => {
    const checkpoint = await openCheckpoint(shippedModelDir);
    for (const info of checkpoint.tensors) if (matrixOfTensorName(info.name)) matrices.push(await checkpoint.read(info.name));
    await checkpoint.close();
  });

  it('has the 224 matrices of 22.0M weights', () => {
    expect(matrices).toHaveLength(224);
    expect(matrices.reduce((sum, m) => sum + m.data.length, 0)).toBe(22_020_096);
  });

  // reference-hqq.json holds all 12 paper configs; the bar is 0.5%, we hold 1e-4
  it.each(PAPER_CONFIGS.map((config) => [configName(config), config] as const))('%s: HQQ sqErr within 1e-4 of PyTorch, RTN above it', (name, config) => {
    let hqq = 0;
    let rtn = 0;
    for (const weight of matrices) {
      hqq += squaredError(hqqQuantizer.dequantize(hqqQuantizer.quantize(weight, config)), weight.data);
      rtn += squaredError(rtnQuantizer.dequantize(rtnQuantizer.quantize(weight, config)), weight.data);
    }
    const expected = reference[`hqq_${name}_sq_err`]!;
    expect(expected).toBeGreaterThan(0);
    const relative = Math.abs(hqq - expected) / expected;
    console.log(`${name}: hqq sqErr ${hqq.toFixed(6)} vs PyTorch ${expected.toFixed(6)} (relative ${relative.toExponential(2)}); rtn ${rtn.toFixed(6)}`);
    expect(relative).toBeLessThan(0.005);
    expect(relative).toBeLessThan(1e-4);
    expect(rtn).toBeGreaterThan(hqq);
  });
});
