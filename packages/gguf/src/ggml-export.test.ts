// The ggml quantizer's checkpoints exported to GGUF, and the GGUF cost model: on tiny random Llama (q/k permuted) and
// Qwen2 (tied embeddings, biases) models with every llama.cpp type the quantizer makes (embeddings and output too),
// the file holds the checkpoint's weights bit for bit, llama.cpp's perplexity of it equals layerquant's of the
// checkpoint, and the cost model's bytes are the file's, for the ggml quantizer and for HQQ's exact legacy blocks.
import { configName, isEmbeddingUnit, matrixKey, unitOfTensorName, type DecoderConfig, type MatrixInfo, type QuantConfig } from '@layerquant/core';
import { perplexity } from '@layerquant/perplexity';
import { hqqPlugin } from '@layerquant/quantizers';
import { openModelWeights, openQuantizedCheckpoint, quantizeModel } from '@layerquant/quantizers/node';
import { loadDecoderModel } from '@layerquant/runtime';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_CONFIGS, writeTinyModel } from './__fixtures__/tiny-models.js';
import { exportGguf, type ExportGgufReport } from './export-gguf.js';
import { GGML_QUANTIZER_TYPES, ggmlPlugin, ggmlTypeOfConfig } from './ggml-quantizer.js';
import { ggufCostModel } from './gguf-cost.js';
import { openGgufModel } from './gguf-model.js';
import { openLlamaCppModel } from './llama-cpp.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-gguf-ggml-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const LADDER: readonly QuantConfig[] = GGML_QUANTIZER_TYPES.map((e) => e.config);

/** llama.cpp's perplexity of a .gguf file and layerquant's of the ggml checkpoint it was exported from, on `windows` windows of 64. */
async function bothPerplexities(file: string, quantizedDir: string, config: DecoderConfig, windows: number): Promise<{ theirs: number; ours: number }> {
  const ids = Array.from({ length: windows * 64 }, (_, i) => (i * 7919 + 13) % config.vocabSize);
  const llama = await openLlamaCppModel(file, { contextSize: 64 });
  const theirs = await perplexity(llama, ids, { seqlen: 64 });
  await llama.dispose();
  const weights = await openModelWeights(quantizedDir, { quantizers: [ggmlPlugin] });
  const model = await loadDecoderModel(weights, config);
  const ours = await perplexity(model, ids, { seqlen: 64 });
  await model.dispose();
  await weights.close();
  return { theirs: theirs.ppl, ours: ours.ppl };
}

/** Checkpoint tensor name -> allocation key (embed_tokens, lm_head, layer matrices). */
function keyOf(name: string): string {
  const unit = unitOfTensorName(name)!;
  return matrixKey(unit.layer, unit.module);
}

describe('ggml-quantized checkpoints in GGUF (tiny random Llama and Qwen2)', () => {
  for (const architecture of ['llama', 'qwen2'] as const) {
    const config = TINY_CONFIGS[architecture]!;
    const modelDir = join(root, architecture);
    const quantizedDir = join(root, `${architecture}-ggml`);
    const outFile = join(root, `${architecture}-ggml.gguf`);
    const chosen = new Map<string, QuantConfig | null>();
    let report: ExportGgufReport;
    beforeAll(async () => {
      await writeTinyModel(modelDir, config, 7);
      let i = 0;
      await quantizeModel({
        modelDir,
        outDir: quantizedDir,
        quantizer: ggmlPlugin,
        embeddingUnits: true,
        configFor: (key, unit) => {
          // every type in turn; lm_head (where untied) stays float, so float and quantized units meet in one file
          const c = unit.module === 'lm_head' ? null : LADDER[i++ % LADDER.length]!;
          chosen.set(key, c);
          return c;
        },
      });
      report = await exportGguf({ modelDir: quantizedDir, outFile });
    });

    it(`${architecture}: every quantized matrix is its config's llama.cpp type, and the file holds the checkpoint's weights bit for bit`, async () => {
      const checkpoint = await openQuantizedCheckpoint(quantizedDir, { quantizers: [ggmlPlugin] });
      const gguf = await openGgufModel(outFile);
      const types = new Set<string>();
      for (const t of report.tensors.filter((t) => t.shape.length === 2)) {
        const c = chosen.get(keyOf(t.hfName!));
        if (!c) {
          expect(t.source, t.name).toBe('float');
          continue;
        }
        expect(t.source, t.name).toBe('exact');
        expect(t.type, `${t.name} at ${configName(c)}`).toBe(ggmlTypeOfConfig(c, t.shape[1]!));
        types.add(t.type);
        const ours = (await gguf.read(t.hfName!)).data;
        const theirs = (await checkpoint.read(t.hfName!)).data;
        let differ = 0;
        for (let v = 0; v < ours.length; v++) if (ours[v] !== theirs[v]) differ++;
        expect(differ, t.name).toBe(0);
      }
      expect(types).toEqual(new Set(GGML_QUANTIZER_TYPES.map((e) => e.type)));
      expect(report.notes.join(' ')).toMatch(/ggml quantizer's llama\.cpp blocks/);
      await gguf.close();
      await checkpoint.close();
    });

    it(`${architecture}: llama.cpp's perplexity of the file equals layerquant's of the checkpoint`, async () => {
      const { theirs, ours } = await bothPerplexities(outFile, quantizedDir, config, 8);
      // the same weights; what is left is llama.cpp's 8-bit activations in quantized dot products (export-llama-cpp.test.ts)
      expect(Math.abs(theirs - ours) / ours, `llama.cpp ${theirs} vs layerquant ${ours}`).toBeLessThan(1e-3);
    });

    it(`${architecture}: the cost model's file bytes and each unit's are the file's`, async () => {
      // the cost model reads the float model, the file is named after the checkpoint it was exported from
      const cost = await ggufCostModel(modelDir, ggmlPlugin, { name: basename(quantizedDir) });
      expect(cost.format).toBe('gguf');
      const configOf = (unit: MatrixInfo) => chosen.get(unit.key) ?? null;
      expect(cost.fileBytes(configOf)).toBe(statSync(outFile).size);
      expect(cost.fileBytes(configOf)).toBe(report.fileBytes);
      for (const unit of cost.units) {
        const tensor = report.tensors.find((t) => t.hfName === unit.name)!;
        expect(cost.unitBytes(unit, configOf(unit)), unit.name).toBe(tensor.bytes);
        expect(cost.typeOf(unit, configOf(unit))).toBe(tensor.type);
      }
      // units: every linear matrix, embed_tokens, and lm_head only where it is not tied
      expect(cost.units.filter((u) => isEmbeddingUnit(u.module)).map((u) => u.module)).toEqual(config.tieWordEmbeddings ? ['embed_tokens'] : ['embed_tokens', 'lm_head']);
      expect(cost.nativeLadder(cost.units[0]!).map(configName)).toEqual(LADDER.map(configName));
      expect(cost.nativeLadder(cost.units[0]!, ['none']).map((c) => ggmlTypeOfConfig(c, 256))).toEqual(['Q3_K', 'Q4_0', 'Q5_0', 'Q6_K', 'Q8_0']);
    });
  }

  it('HQQ: the ladder is its exact legacy blocks, and the cost model predicts the exported file', async () => {
    const modelDir = join(root, 'llama');
    const cost = await ggufCostModel(modelDir, hqqPlugin, { name: 'hqq-mixed' });
    const unit = cost.units[0]!;
    // 2- and 3-bit codes would be stored in 4-bit blocks, symmetric configs are RTN's: HQQ's zero kinds are offered
    expect(cost.nativeLadder(unit, ['fractional', 'integer']).map(configName)).toEqual(['b4g32', 'b4g32-int', 'b5g32', 'b5g32-int']);
    expect(cost.unsupported(unit, LADDER[0]!)).toMatch(/hqq at b2g16 has no GGUF type.*b4g32 as Q4_1/);
    const ladder = cost.nativeLadder(unit, ['fractional', 'integer']);
    const quantizedDir = join(root, 'hqq-mixed');
    const chosen = new Map<string, QuantConfig>();
    let i = 0;
    await quantizeModel({ modelDir, outDir: quantizedDir, quantizer: hqqPlugin, configFor: (key) => {
      const c = ladder[i++ % ladder.length]!;
      chosen.set(key, c);
      return c;
    } });
    const outFile = join(root, 'hqq-mixed.gguf');
    const report = await exportGguf({ modelDir: quantizedDir, outFile });
    expect(new Set(report.tensors.filter((t) => t.shape.length === 2 && t.source !== 'float').map((t) => t.source))).toEqual(new Set(['exact']));
    expect(cost.fileBytes((u) => chosen.get(u.key) ?? null)).toBe(statSync(outFile).size);
  });

  it("Llama 3's rope scaling: the derived rope_freqs tensor is second in the file and in the cost model's layout", async () => {
    const config = { ...TINY_CONFIGS.llama!, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } };
    const modelDir = join(root, 'llama3');
    await writeTinyModel(modelDir, config, 9);
    const quantizedDir = join(root, 'llama3-ggml');
    await quantizeModel({ modelDir, outDir: quantizedDir, quantizer: ggmlPlugin, configFor: () => LADDER[3]! });
    const outFile = join(root, 'llama3-ggml.gguf');
    const report = await exportGguf({ modelDir: quantizedDir, outFile });
    expect(report.tensors[1]!.name).toBe('rope_freqs.weight');
    const cost = await ggufCostModel(modelDir, ggmlPlugin, { name: basename(quantizedDir) });
    expect(cost.fileBytes((u) => (isEmbeddingUnit(u.module) ? null : LADDER[3]!))).toBe(statSync(outFile).size);
    // and llama.cpp reads it: its perplexity is layerquant's of the checkpoint
    const { theirs, ours } = await bothPerplexities(outFile, quantizedDir, config, 4);
    expect(Math.abs(theirs - ours) / ours, `llama.cpp ${theirs} vs layerquant ${ours}`).toBeLessThan(1e-3);
  });

  it('refuses a quantizer whose codes no GGUF block holds, naming the ones that work', async () => {
    await expect(ggufCostModel(join(root, 'llama'), { id: 'baq' })).rejects.toThrow(/"baq" stores codes no GGUF block holds.*--quantizer ggml/);
  });
});
