import { EMBED_TOKENS, LM_HEAD, decoderLayout, isEmbeddingUnit, quantConfig, type DecoderConfig, type MatrixInfo, type QuantConfig } from '@layerquant/core';
import { rtnQuantizer } from '@layerquant/quantizers';
import { openModelWeights, quantizeModel } from '@layerquant/quantizers/node';
import { loadDecoderWeights, referenceForward } from '@layerquant/runtime';
import { relativeError, tinyConfig, writeModelDirectory } from '@layerquant/runtime/testing';
import { loadDecoderConfig } from '@layerquant/tensor-io';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { exportOnnx, type FloatType } from './export-onnx.js';
import { openOnnxExport } from './onnx-model-dir.js';
import { onnxCostModel, type OnnxFileOptions } from './onnx-cost.js';
import { readOnnxSummary } from './onnx-reader.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-onnx-cost-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Rows of 64 and 128: blocks of 32, 64 and 128 fit; the embeddings are a large share, as in small real models.
const shape = { hiddenSize: 64, intermediateSize: 128, numHeads: 4, numKeyValueHeads: 2, headDim: 16, vocabSize: 256 };
const MODELS: Record<string, DecoderConfig> = {
  llama: tinyConfig(shape),
  qwen2: tinyConfig({ ...shape, modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', numKeyValueHeads: 1, tieWordEmbeddings: true }),
  mistral: tinyConfig({ ...shape, modelType: 'mistral', architecture: 'MistralForCausalLM', numKeyValueHeads: 4, ropeTheta: 1e6, numLayers: 3 }),
};

/** A mixed allocation: linear matrices cycling over widths, block sizes and zero kinds; embeddings integer or symmetric. */
function mixedConfigs(seed: number): (unit: MatrixInfo) => QuantConfig | null {
  const linear = [
    quantConfig(2, 32), quantConfig(4, 64, { roundZero: true }), quantConfig(8, 64), quantConfig(3, 32),
    quantConfig(4, 32, { symmetric: true }), quantConfig(2, 64, { roundZero: true }), null,
  ];
  return (unit) => {
    if (unit.module === 'embed_tokens') return seed % 2 === 0 ? quantConfig(4, 32, { roundZero: true }) : quantConfig(8, 64, { symmetric: true });
    if (unit.module === 'lm_head') return seed % 3 === 0 ? null : quantConfig(4, 64);
    return linear[(unit.layer * 7 + seed + ['q', 'k', 'v', 'o', 'g', 'u', 'd'].indexOf(unit.module.split('.')[1]![0]!)) % linear.length]!;
  };
}

async function quantized(family: string, configOf: (unit: MatrixInfo) => QuantConfig | null, tag: string): Promise<string> {
  const modelDir = join(root, `${family}-model`);
  try {
    statSync(modelDir);
  } catch {
    await writeModelDirectory(modelDir, MODELS[family]!, 11);
  }
  const outDir = join(root, `${family}-${tag}`);
  await quantizeModel({ modelDir, outDir, quantizer: rtnQuantizer, embeddingUnits: true, configFor: (_key, m) => configOf({ ...m, params: m.shape[0] * m.shape[1] }) });
  return outDir;
}

const OPTIONS: readonly (OnnxFileOptions & { embeddingType?: FloatType })[] = [
  {},
  { scaleType: 'float16' },
  { scaleType: 'float16', embeddingType: 'float16' },
  { activations: 'float16' },
];

describe('the ONNX cost model predicts the bytes of the exported file', () => {
  for (const family of Object.keys(MODELS)) {
    it(`${family}: fileBytes equals the bytes on disk for every option and mixed allocations (embeddings quantized or float), and the sum of unit bytes is within 2%`, async () => {
      const config = MODELS[family]!;
      for (const [k, options] of OPTIONS.entries()) {
        const configOf = mixedConfigs(k);
        const dir = await quantized(family, configOf, `q${k}`);
        const outDir = join(root, `${family}-onnx-${k}`);
        const report = await exportOnnx({ modelDir: dir, outDir, ...options });
        const weights = await openModelWeights(dir);
        const layout = decoderLayout(config, weights);
        await weights.close();
        const cost = onnxCostModel(config, layout, options);
        const actual = statSync(join(outDir, report.file)).size;
        // Exact, unless an allocation's fractional zeros all happened to be integers (never with RTN's min/max zeros).
        expect(cost.fileBytes(configOf)).toBe(actual);
        expect(report.fileBytes).toBe(actual);
        const allFloat = cost.fileBytes(() => null);
        let additive = allFloat;
        for (const u of cost.units) additive += cost.unitBytes(u, configOf(u)) - cost.unitBytes(u, null);
        // A tiny model's nodes are a large share of its file: the knapsack's per-unit sizes (each matrix its own
        // MatMulNBits; the fused graph stacks q/k/v and gate/up of equal configs into one) are within 2% here (0.5% at
        // real sizes, below); the solver checks the exact size of the file it chose.
        expect(Math.abs(additive - actual) / actual).toBeLessThan(0.02);
        // The embedding units are units of the model: embed_tokens always, lm_head where it is not tied.
        expect(cost.units.filter((u) => isEmbeddingUnit(u.module)).map((u) => u.module)).toEqual(layout.tiedEmbeddings ? ['embed_tokens'] : ['embed_tokens', 'lm_head']);

        // The independent reader sees what the cost model counted: one lookup of the packed table, lm_head packed
        // where it has a config (a tied one reading embed_tokens' codes), no zero points for symmetric matrices.
        const summary = readOnnxSummary(readFileSync(join(outDir, report.file)));
        const embedConfig = configOf(cost.units.find((u) => u.module === 'embed_tokens')!)!;
        const gather = summary.nodes.filter((n) => n.opType === 'GatherBlockQuantized');
        expect(gather).toHaveLength(1);
        expect(summary.initializers.some((t) => t.name === `${EMBED_TOKENS}.zero_points`)).toBe(!embedConfig.symmetric);
        const head = summary.nodes.find((n) => n.name === LM_HEAD);
        if (layout.tiedEmbeddings) {
          expect(head?.opType).toBe('MatMulNBits');
          expect(head?.inputs[1]).toBe(`${EMBED_TOKENS}.qweight`);
          expect(summary.initializers.some((t) => t.name === LM_HEAD || t.name.startsWith(`${LM_HEAD}.`))).toBe(false);
        } else {
          const headConfig = configOf(cost.units.find((u) => u.module === 'lm_head')!);
          expect(head?.opType ?? 'Gemm').toBe(headConfig ? 'MatMulNBits' : 'Gemm');
        }
      }
    });
  }

  it('a quantized tied embedding table runs in onnxruntime as its dequantized float64 forward: lookup and output projection share the codes', async () => {
    const configOf = (unit: MatrixInfo) => (unit.module === 'embed_tokens' ? quantConfig(4, 32, { roundZero: true }) : quantConfig(4, 64, { roundZero: true }));
    const dir = await quantized('qwen2', configOf, 'forward');
    const outDir = join(root, 'qwen2-forward-onnx');
    await exportOnnx({ modelDir: dir, outDir, accuracyLevel: 0, scaleType: 'float32' });
    const config = await loadDecoderConfig(dir);
    const weights = await openModelWeights(dir);
    const dequantized = await loadDecoderWeights(weights, config);
    await weights.close();
    const ids = [3, 17, 42, 5, 200, 1, 11, 129];
    const model = await openOnnxExport(outDir, { threads: 1 });
    expect(relativeError(await model.logits({ ids }), referenceForward(dequantized, ids))).toBeLessThan(1e-5);
    await model.dispose();
  });

  it('at the shipped model\'s shape (32 layers, vocab 8192), the sum of unit bytes is within 0.5% of the exact file for every uniform config', () => {
    const config = tinyConfig({ hiddenSize: 256, intermediateSize: 640, numLayers: 32, numHeads: 4, numKeyValueHeads: 2, headDim: 64, vocabSize: 8192 });
    const cost = onnxCostModel(config, decoderLayout(config, { has: () => true }), { scaleType: 'float16' });
    const allFloat = cost.fileBytes(() => null);
    for (const c of [quantConfig(2, 64), quantConfig(4, 32, { roundZero: true }), quantConfig(8, 128, { symmetric: true }), quantConfig(4, 128)]) {
      const configOf = (u: MatrixInfo) => (u.module === 'embed_tokens' && !c.roundZero && !c.symmetric ? null : c);
      let additive = allFloat;
      for (const u of cost.units) additive += cost.unitBytes(u, configOf(u)) - cost.unitBytes(u, null);
      const exact = cost.fileBytes(configOf);
      expect(Math.abs(additive - exact) / exact).toBeLessThan(0.005);
    }
  });

  it('the native ladder holds only what the format stores: 2/4/8 bits, MatMulNBits blocks, integer or no zeros for the embedding lookup', () => {
    const config = MODELS.llama!;
    const cost = onnxCostModel(config, decoderLayout(config, { has: () => true }), { scaleType: 'float16' });
    for (const u of cost.units) {
      const ladder = cost.nativeLadder(u, ['fractional', 'integer', 'none']);
      expect(ladder.length).toBeGreaterThan(0);
      for (const c of ladder) {
        expect([2, 4, 8]).toContain(c.bits);
        expect(cost.unsupported(u, c)).toBeUndefined();
        if (u.module === 'embed_tokens') expect(c.roundZero || c.symmetric).toBe(true);
      }
      // sorted by the bytes they add
      for (let i = 1; i < ladder.length; i++) expect(cost.unitBytes(u, ladder[i]!)).toBeGreaterThanOrEqual(cost.unitBytes(u, ladder[i - 1]!));
    }
    const embed = cost.units.find((u) => u.module === 'embed_tokens')!;
    expect(cost.unsupported(embed, quantConfig(4, 32))).toMatch(/integer zero points only/);
    expect(cost.unsupported(cost.units[1]!, quantConfig(4, 48))).toMatch(/cannot be a MatMulNBits block/);
    expect(cost.unsupported(cost.units[1]!, quantConfig(4, 32, { axis: 0 }))).toMatch(/strided groups/);
  });
});
