import {
  InvalidOptionError,
  MissingTensorError,
  SafetensorsFormatError,
  matrixOfTensorName,
  parseConfigName,
  quantConfig,
  type QuantConfig,
} from '@layerquant/core';
import { referenceHqqPath, shippedModelDir } from '@layerquant/fixtures';
import { openCheckpoint, readSafetensorsHeader, writeSafetensors } from '@layerquant/tensor-io';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { matrixMemory } from './memory-accounting.js';
import { QUANTIZED_FORMAT } from './checkpoint-format.js';
import { openModelWeights, openQuantizedCheckpoint } from './quantized-checkpoint.js';
import { quantizeModel, type QuantizeModelReport } from './quantize-model.js';
import { hqqQuantizer, rtnQuantizer, squaredError } from './quantizers.js';
import { randomMatrix } from './testing/random-matrix.js';

/** Bitwise equality of two float arrays (toEqual is slow on millions of values). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-quantizers-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const reference = JSON.parse(readFileSync(referenceHqqPath, 'utf8')) as Record<string, number>;

describe('quantizeModel on the shipped model (HQQ b4g64)', () => {
  const outDir = join(scratch, 'b4g64');
  let report: QuantizeModelReport;
  const progress: number[] = [];

  it('writes a self-contained quantized directory and reports bpp, bytes and sqErr', async () => {
    const config = parseConfigName('b4g64');
    report = await quantizeModel({
      modelDir: shippedModelDir,
      outDir,
      quantizer: hqqQuantizer,
      configFor: () => config,
      method: 'uniform',
      onProgress: (p) => progress.push(p.done),
    });
    expect(report.matrices).toBe(224);
    expect(report.quantizedMatrices).toBe(224);
    expect(progress).toEqual(Array.from({ length: 224 }, (_, i) => i + 1));
    expect(report.bpp.toFixed(4)).toBe('4.2539');
    const relative = Math.abs(report.sqErr - reference.hqq_b4g64_sq_err!) / reference.hqq_b4g64_sq_err!;
    expect(relative).toBeLessThan(1e-4);
    // 160 matrices [256, 256] ... every matrix counted by hand through matrixMemory
    expect(report.bytes).toBe(report.perMatrix.reduce((sum, m) => sum + matrixMemory(m.shape, config).packedBytes, 0));
    expect(report.bytes).toBe((22_020_096 / 8) * 4 + (22_020_096 / 64) * 8);
    for (const file of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'model.safetensors', 'quantization.json']) {
      expect(existsSync(join(outDir, file)), file).toBe(true);
    }
    expect(readdirSync(outDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // only files a loader reads: the shipped model's test references and oracles stay behind
    expect(readdirSync(outDir).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'quantization.json', 'tokenizer.json', 'tokenizer_config.json']);
    expect(existsSync(join(outDir, 'model.safetensors.index.json'))).toBe(false);
    const saved = JSON.parse(readFileSync(join(outDir, 'quantization.json'), 'utf8')) as { sqErr: number; allocation: { matrices: Record<string, string> } };
    expect(saved.sqErr).toBe(report.sqErr);
    expect(saved.allocation.matrices['31.mlp.down_proj']).toBe('b4g64');
  });

  it('reads back dequantized weights equal to the in-memory ones, float tensors byte-identical', async () => {
    const quantized = await openQuantizedCheckpoint(outDir);
    const original = await openCheckpoint(shippedModelDir);
    try {
      expect(quantized.metadata.method).toBe('uniform');
      expect(quantized.rawMetadata['layerquant.format']).toBe(QUANTIZED_FORMAT);
      expect(new Set(quantized.tensors.map((t) => t.name))).toEqual(new Set(original.tensors.map((t) => t.name)));
      let sqErr = 0;
      for (const info of original.tensors) {
        const weight = await original.read(info.name);
        const read = await quantized.read(info.name);
        expect(read.shape).toEqual(info.shape);
        if (matrixOfTensorName(info.name)) {
          expect(quantized.isQuantized(info.name)).toBe(true);
          sqErr += squaredError(read.data, weight.data);
        } else {
          expect(sameBits(read.data, weight.data), info.name).toBe(true);
          expect(read.dtype).toBe(info.dtype);
        }
      }
      expect(sqErr).toBe(report.sqErr);
      const q = await quantized.readQuantized('model.layers.0.self_attn.q_proj.weight');
      expect(q.config).toEqual(quantConfig(4, 64));
      expect(q.packed.length).toBe(256 * 32);
    } finally {
      await quantized.close();
      await original.close();
    }
    const either = await openModelWeights(outDir);
    expect('isQuantized' in either).toBe(true);
    await either.close();
    const plain = await openModelWeights(shippedModelDir);
    expect('isQuantized' in plain).toBe(false);
    await plain.close();
  });
});

describe('quantizeModel on worker threads', () => {
  it('writes the same bytes with 2 workers as in the calling thread', async () => {
    const config = parseConfigName('b3g64');
    const run = (workers: number) =>
      quantizeModel({ modelDir: shippedModelDir, outDir: join(scratch, `workers-${workers}`), quantizer: hqqQuantizer, configFor: () => config, workers });
    const [one, two] = [await run(1), await run(2)];
    expect(two.workers).toBe(2);
    expect(one.workers).toBe(1);
    expect(two.sqErr).toBe(one.sqErr);
    expect(readFileSync(join(scratch, 'workers-2', 'model.safetensors')).equals(readFileSync(join(scratch, 'workers-1', 'model.safetensors')))).toBe(true);
    await expect(quantizeModel({ modelDir: shippedModelDir, outDir: join(scratch, 'w0'), quantizer: hqqQuantizer, configFor: () => config, workers: 0 })).rejects.toThrow(/option "workers"/);
  });
});

describe('quantizeModel with a mixed allocation', () => {
  it('stores each matrix in its own config, keeps null matrices as stored, and round-trips them', async () => {
    const outDir = join(scratch, 'mixed');
    const configs: Record<string, QuantConfig | null> = {
      'self_attn.q_proj': quantConfig(2, 32),
      'self_attn.k_proj': quantConfig(3, 64),
      'self_attn.v_proj': quantConfig(8, 128),
      'self_attn.o_proj': null,
      'mlp.gate_proj': quantConfig(4, 128, { axis: 0 }),
      'mlp.up_proj': quantConfig(4, 64, { roundZero: true }),
      'mlp.down_proj': quantConfig(3, 32),
    };
    const report = await quantizeModel({
      modelDir: shippedModelDir,
      outDir,
      quantizer: rtnQuantizer,
      configFor: (key, matrix) => (matrix.layer < 2 ? configs[matrix.module]! : null),
    });
    expect(report.quantizedMatrices).toBe(12);
    expect(report.method).toBe('rtn');
    const header = await readSafetensorsHeader(join(outDir, 'model.safetensors'));
    const byName = new Map(header.tensors.map((t) => [t.name, t]));
    expect(byName.get('model.layers.0.self_attn.k_proj.weight.qweight')?.shape).toEqual([128, 26]);
    expect(byName.get('model.layers.0.self_attn.o_proj.weight')?.dtype).toBe('BF16');
    expect(byName.get('model.layers.5.mlp.up_proj.weight')?.dtype).toBe('BF16');
    const allocation = JSON.parse(header.metadata['layerquant.allocation']!) as Record<string, string | null>;
    expect(allocation['0.mlp.gate_proj']).toBe('b4g128');
    expect(allocation['0.self_attn.o_proj']).toBeNull();
    const quantized = await openQuantizedCheckpoint(outDir);
    const original = await openCheckpoint(shippedModelDir);
    try {
      for (const module of Object.keys(configs)) {
        const name = `model.layers.1.${module}.weight`;
        const weight = await original.read(name);
        const config = configs[module]!;
        const expected = config ? rtnQuantizer.dequantize(rtnQuantizer.quantize(weight, config)) : weight.data;
        expect(sameBits((await quantized.read(name)).data, expected), module).toBe(true);
        if (config) expect((await quantized.readQuantized(name)).config, module).toEqual(config);
      }
      await expect(quantized.readQuantized('model.layers.1.self_attn.o_proj.weight')).rejects.toThrow(MissingTensorError);
    } finally {
      await quantized.close();
      await original.close();
    }
  });
});

describe('bad input', () => {
  it('rejects a group size that does not divide a row before writing anything', async () => {
    const outDir = join(scratch, 'bad-group');
    await expect(
      quantizeModel({ modelDir: shippedModelDir, outDir, quantizer: rtnQuantizer, configFor: () => quantConfig(4, 96) }),
    ).rejects.toThrow(/option "groupSize": 96 does not divide the row length (256|640) of tensor "model\.layers\.\d+\./);
    expect(existsSync(outDir)).toBe(false);
  });

  it('refuses to write over the model directory', async () => {
    await expect(
      quantizeModel({ modelDir: shippedModelDir, outDir: shippedModelDir, quantizer: rtnQuantizer, configFor: () => null }),
    ).rejects.toThrow(InvalidOptionError);
  });

  it('names the file and tensor when the metadata or the stored tensors are wrong', async () => {
    const weight = randomMatrix(4, 64, 1);
    const q = rtnQuantizer.quantize({ ...weight, name: 'w' }, quantConfig(4, 64));
    const base = {
      format: 'pt',
      'layerquant.format': QUANTIZED_FORMAT,
      'layerquant.method': 'rtn',
      'layerquant.packing': 'rows-u32-lsb',
      'layerquant.allocation': '{}',
      'layerquant.tensors': JSON.stringify({ w: { shape: [4, 64], bits: 4, groupSize: 64, axis: 1, roundZero: false, dtype: 'F32' } }),
    };
    const tensors = [
      { name: 'w.qweight', dtype: 'I32' as const, shape: [4, 8], data: new Int32Array(q.packed.buffer) },
      { name: 'w.scale', dtype: 'F32' as const, shape: [4], data: q.scale },
      { name: 'w.zero', dtype: 'F32' as const, shape: [4], data: q.zero },
    ];
    const good = join(scratch, 'good.safetensors');
    await writeSafetensors(good, tensors, base);
    const ok = await openQuantizedCheckpoint(good);
    expect((await ok.read('w')).data).toEqual(rtnQuantizer.dequantize(q));
    await ok.close();

    const wrongShape = join(scratch, 'wrong-shape.safetensors');
    await writeSafetensors(wrongShape, [{ ...tensors[0]!, shape: [8, 4] }, tensors[1]!, tensors[2]!], base);
    await expect(openQuantizedCheckpoint(wrongShape)).rejects.toThrow(/wrong-shape\.safetensors \(tensor "w\.qweight"\): is I32 \[8, 4\]/);

    const missing = join(scratch, 'missing.safetensors');
    await writeSafetensors(missing, [tensors[0]!, tensors[1]!], base);
    await expect(openQuantizedCheckpoint(missing)).rejects.toThrow(/tensor "w\.zero" not found/);

    const corrupt = join(scratch, 'corrupt.safetensors');
    await writeSafetensors(corrupt, tensors, { ...base, 'layerquant.tensors': '{not json' });
    await expect(openQuantizedCheckpoint(corrupt)).rejects.toThrow(SafetensorsFormatError);

    const badBits = join(scratch, 'bad-bits.safetensors');
    await writeSafetensors(badBits, tensors, { ...base, 'layerquant.tensors': base['layerquant.tensors'].replace('"bits":4', '"bits":7') });
    await expect(openQuantizedCheckpoint(badBits)).rejects.toThrow(/bad-bits\.safetensors \(tensor "w"\).*option "bits"/);

    await expect(openQuantizedCheckpoint(shippedModelDir)).rejects.toThrow(/is not a layerquant quantized checkpoint/);
  });
});
