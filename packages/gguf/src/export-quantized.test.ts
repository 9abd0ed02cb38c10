// Quantized layerquant checkpoints exported to GGUF: affine codes kept exactly where the block form allows (HQQ /
// RTN at <= 5 bits in groups of 32k along the input dimension -> Q4_1 / Q5_1), re-encoded otherwise; checked on
// tiny random Llama and Qwen2 models with a mixed allocation through llama.cpp itself. The shipped model (trained,
// sharded) exported in float: llama.cpp's tokenization and perplexity of it.
import { quantConfig, type QuantConfig } from '@layerquant/core';
import { brownTestPath, shippedModelDir } from '@layerquant/fixtures';
import { perplexity } from '@layerquant/perplexity';
import { hqqQuantizer, rtnQuantizer } from '@layerquant/quantizers';
import { openModelWeights, openQuantizedCheckpoint, quantizeModel } from '@layerquant/quantizers/node';
import { loadDecoderModel } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer } from '@layerquant/tensor-io';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_CONFIGS, writeTinyModel } from './__fixtures__/tiny-models.js';
import { exportGguf, type ExportGgufReport } from './export-gguf.js';
import { openGgufModel } from './gguf-model.js';
import { openLlamaCppModel } from './llama-cpp.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-gguf-quantized-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** One config per matrix, cycling: every exact form and every re-encoded case in one checkpoint. */
const MIXED: readonly QuantConfig[] = [
  quantConfig(4, 32), quantConfig(4, 64), quantConfig(3, 32), quantConfig(5, 32), quantConfig(2, 128), quantConfig(8, 32), quantConfig(4, 16), quantConfig(4, 64, { roundZero: true }),
];
/** RTN also writes symmetric configs (onnxruntime's q4 rule): exact as Q4_0, Q5_0 and Q8_0. */
const SYMMETRIC: readonly QuantConfig[] = [quantConfig(4, 32, { symmetric: true }), quantConfig(3, 64, { symmetric: true }), quantConfig(5, 32, { symmetric: true }), quantConfig(8, 32, { symmetric: true })];

/** The type the export must choose for a quantized matrix's metadata. */
function expectedType(entry: { bits: number; groupSize: number; axis: number; symmetric?: boolean }): string {
  if (entry.axis !== 1 || entry.groupSize % 32 !== 0) return 'Q8_0';
  if (entry.symmetric) return entry.bits <= 4 ? 'Q4_0' : entry.bits === 5 ? 'Q5_0' : 'Q8_0';
  return entry.bits <= 4 ? 'Q4_1' : entry.bits === 5 ? 'Q5_1' : 'Q8_0';
}

describe('a quantized checkpoint with a mixed allocation (tiny random Llama and Qwen2)', () => {
  for (const architecture of ['llama', 'qwen2'] as const) {
    const config = TINY_CONFIGS[architecture]!;
    const quantizedDir = join(root, `${architecture}-quantized`);
    const outFile = join(root, `${architecture}.gguf`);
    let report: ExportGgufReport;
    beforeAll(async () => {
      await writeTinyModel(join(root, architecture), config, 4);
      let i = 0;
      const configs = architecture === 'llama' ? MIXED : [...MIXED, ...SYMMETRIC];
      await quantizeModel({ modelDir: join(root, architecture), outDir: quantizedDir, quantizer: architecture === 'llama' ? hqqQuantizer : rtnQuantizer, configFor: () => configs[i++ % configs.length]! });
      report = await exportGguf({ modelDir: quantizedDir, outFile });
    });

    it(`${architecture}: <= 5-bit codes in groups of 32k keep their codes (Q4_1 / Q5_1; symmetric Q4_0 / Q5_0 / Q8_0); the rest is re-encoded as Q8_0 and said so`, async () => {
      const checkpoint = await openQuantizedCheckpoint(quantizedDir);
      const gguf = await openGgufModel(outFile);
      let exact = 0;
      for (const t of report.tensors.filter((t) => t.shape.length === 2)) {
        const entry = checkpoint.metadata.tensors[t.hfName!];
        if (!entry) {
          expect(t.source, t.name).toBe('float'); // embeddings and lm_head stay in the checkpoint's float type
          continue;
        }
        const expected = expectedType(entry);
        expect(t.type, t.name).toBe(expected);
        const exactForm = entry.axis === 1 && entry.groupSize % 32 === 0 && (entry.bits <= 5 || entry.symmetric === true);
        expect(t.source, t.name).toBe(exactForm ? 'exact' : 'encoded');
        if (t.source !== 'exact') continue;
        exact++;
        // The file's weights (q/k permutation undone) are the checkpoint's, up to the fp16 rounding of d = 1/s and
        // m = -z/s: |error| <= q |d - fp16(d)| + |m - fp16(m)| <= 2^-11 (q |d| + |m|) per value.
        const q = await checkpoint.readQuantized(t.hfName!);
        const ours = (await gguf.read(t.hfName!)).data;
        const theirs = (await checkpoint.read(t.hfName!)).data;
        const top = 2 ** q.config.bits - 1;
        let worst = 0;
        for (let v = 0; v < ours.length; v++) {
          const g = Math.floor(v / q.config.groupSize);
          const d = 1 / q.scale[g]!;
          const bound = 2 ** -11 * (top * Math.abs(d) + Math.abs(q.zero[g]! * d)) + 2 ** -24 * Math.abs(theirs[v]!);
          worst = Math.max(worst, Math.abs(ours[v]! - theirs[v]!) / bound);
        }
        expect(worst, t.name).toBeLessThanOrEqual(1);
      }
      expect(exact).toBeGreaterThan(0);
      if (architecture === 'qwen2') expect(new Set(report.tensors.filter((t) => t.source === 'exact').map((t) => t.type))).toEqual(new Set(['Q4_1', 'Q5_1', 'Q4_0', 'Q5_0', 'Q8_0']));
      expect(report.notes.join(' ')).toMatch(/re-encoded/);
      await gguf.close();
      await checkpoint.close();
    });

    it(`${architecture}: llama.cpp's perplexity of the file equals layerquant's of the quantized checkpoint`, async () => {
      const ids = Array.from({ length: 8 * 64 }, (_, i) => (i * 7919 + 13) % config.vocabSize);
      const llama = await openLlamaCppModel(outFile, { contextSize: 64 });
      const theirs = await perplexity(llama, ids, { seqlen: 64 });
      await llama.dispose();
      const weights = await openModelWeights(quantizedDir);
      const model = await loadDecoderModel(weights, config);
      const ours = await perplexity(model, ids, { seqlen: 64 });
      await model.dispose();
      await weights.close();
      // Q8_0 re-encoding of the 8-bit and g16 matrices and llama.cpp's 8-bit activations: see export-llama-cpp.test.ts.
      expect(Math.abs(theirs.ppl - ours.ppl) / ours.ppl).toBeLessThan(2e-3);
    });
  }
});

describe('the shipped model (trained, 32 layers, four shards) exported to GGUF in float', () => {
  // A trained model and its tokenizer in llama.cpp. apps/cli's gguf.test.ts quantizes it (HQQ b4g32), exports it and
  // compares eval of the file with eval of the checkpoint on two windows of 512; bench/gguf.mjs every type on 32.
  const outFile = join(root, 'shipped.gguf');
  let report: ExportGgufReport;
  beforeAll(async () => {
    report = await exportGguf({ modelDir: shippedModelDir, outFile });
  });

  it('llama.cpp tokenizes text as the checkpoint\'s tokenizer does (byte-level BPE, gpt-2 pre-tokenizer, no BOS)', async () => {
    const text = readFileSync(brownTestPath, 'utf8').slice(0, 20_000);
    const llama = await openLlamaCppModel(outFile, { contextSize: 64 });
    const theirs = llama.tokenize(text);
    await llama.dispose();
    expect(theirs).toEqual((await loadTokenizer(shippedModelDir)).encode(text));
  });

  it('llama.cpp\'s perplexity of the file equals layerquant\'s of its dequantized weights (one window of 64 of brown-test)', async () => {
    expect(new Set(report.tensors.filter((t) => t.shape.length === 2).map((t) => t.type))).toEqual(new Set(['F16']));
    const ids = (await loadTokenizer(shippedModelDir)).encode(readFileSync(brownTestPath, 'utf8').slice(0, 2_000)).slice(0, 64);
    const llama = await openLlamaCppModel(outFile, { contextSize: 64 });
    const theirs = await perplexity(llama, ids, { seqlen: 64 });
    await llama.dispose();
    const gguf = await openGgufModel(outFile);
    const model = await loadDecoderModel(gguf, gguf.config);
    const ours = await perplexity(model, ids, { seqlen: 64 });
    await model.dispose();
    await gguf.close();
    // F16 matrices: llama.cpp rounds their activations to F16 (2.3e-5 measured on these 64 tokens, 6.3e-5 on 128; F32 7.4e-6, ../shared/GGUF.md).
    expect(Math.abs(theirs.ppl - ours.ppl) / ours.ppl, `llama.cpp ${theirs.ppl} vs layerquant ${ours.ppl}`).toBeLessThan(2e-4);
  });
});
