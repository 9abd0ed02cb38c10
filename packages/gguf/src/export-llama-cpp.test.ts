// The GGUF export judged by llama.cpp itself (node-llama-cpp 3.21.1, CPU) and by an independent reader
// (@huggingface/gguf): on tiny random Llama, Qwen2 (tied embeddings, q/k/v biases) and Mistral (GQA 4:1) models,
// llama.cpp's perplexity from its own logits equals layerquant's evaluation of the same dequantized weights, for
// every type, and greedy generation matches token for token.
import { seededRandom, type DecoderConfig } from '@layerquant/core';
import { perplexity } from '@layerquant/perplexity';
import { loadDecoderModel, loadDecoderWeights, referenceForward } from '@layerquant/runtime';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_CONFIGS, writeTinyModel } from './__fixtures__/tiny-models.js';
import { exportGguf } from './export-gguf.js';
import { GGML_CODEC_TYPES, type GgmlTypeName } from './ggml-types.js';
import { openGgufModel } from './gguf-model.js';
import { openLlamaCppModel } from './llama-cpp.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-gguf-llama-cpp-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const WINDOW = 64;
const WINDOWS = 8;
/**
 * llama.cpp multiplies quantized matrices by activations it has itself quantized to 8-bit blocks (Q8_0, Q8_1, Q8_K):
 * on these random models that alone moves perplexity by 1e-4 to 4e-4 (measured: Q8_0 token embeddings, which it
 * dequantizes without touching activations, 3e-6 like F32; Q8_0 in one matrix class of every layer, 2e-5 to 5e-5
 * each). F32, F16 and BF16 matrices stay within 1e-5. A wrong layout, scale or permutation moves it by percents.
 */
const TOLERANCE: Partial<Record<GgmlTypeName, number>> = { F32: 1e-4, F16: 1e-4, BF16: 1e-4 };
const ACTIVATION_ROUNDING_TOLERANCE = 1e-3;

function randomIds(count: number, vocab: number, seed: number): number[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => Math.floor(random() * vocab));
}

/** Perplexity of the same windows in llama.cpp (its logits) and in layerquant's runtime (the file's dequantized weights). */
async function bothPerplexities(file: string, ids: number[]): Promise<{ llamaCpp: number; layerquant: number }> {
  const llama = await openLlamaCppModel(file, { contextSize: WINDOW });
  const theirs = await perplexity(llama, ids, { seqlen: WINDOW });
  await llama.dispose();
  const gguf = await openGgufModel(file);
  const model = await loadDecoderModel(gguf, gguf.config);
  const ours = await perplexity(model, ids, { seqlen: WINDOW });
  await model.dispose();
  await gguf.close();
  return { llamaCpp: theirs.ppl, layerquant: ours.ppl };
}

/** Greedy continuation from the float64 reference forward of the file's dequantized weights. */
async function referenceGreedy(file: string, prompt: number[], count: number): Promise<number[]> {
  const gguf = await openGgufModel(file);
  const weights = await loadDecoderWeights(gguf, gguf.config);
  await gguf.close();
  const sequence = [...prompt];
  for (let i = 0; i < count; i++) {
    const last = Array.from(referenceForward(weights, sequence).slice(-gguf.config.vocabSize));
    sequence.push(last.indexOf(Math.max(...last)));
  }
  return sequence.slice(prompt.length);
}

/** The file's metadata and tensor table as @huggingface/gguf reads them. */
async function independentRead(file: string) {
  const { gguf } = await import('@huggingface/gguf');
  return gguf(file, { allowLocalFile: true });
}

describe.each(Object.entries(TINY_CONFIGS))('%s: tiny random model exported to GGUF', (architecture, config: DecoderConfig) => {
  const modelDir = join(root, architecture);
  const ids = randomIds(WINDOW * WINDOWS, config.vocabSize, 17);
  beforeAll(() => writeTinyModel(modelDir, config, 3));

  // Every type on Llama; a float, a legacy and two k-quant types on the others.
  const types: readonly GgmlTypeName[] = architecture === 'llama' ? GGML_CODEC_TYPES : ['F16', 'Q8_0', 'Q4_K', 'Q6_K'];
  it.each(types)('%s everywhere: llama.cpp loads it and its perplexity equals layerquant\'s of the dequantized weights (1e-4 for float types, 1e-3 where llama.cpp quantizes activations)', async (type) => {
    const outFile = join(root, `${architecture}-${type}.gguf`);
    const report = await exportGguf({ modelDir, outFile, types: { '.*': type } });
    expect(report.tensors.filter((t) => t.shape.length === 2).every((t) => t.type === type)).toBe(true);
    expect(report.tensors.filter((t) => t.shape.length === 1).every((t) => t.type === 'F32')).toBe(true);
    expect(report.tensors.some((t) => t.name === 'output.weight')).toBe(!config.tieWordEmbeddings);
    const { llamaCpp, layerquant } = await bothPerplexities(outFile, ids);
    expect(Math.abs(llamaCpp - layerquant) / layerquant, `llama.cpp ${llamaCpp} vs layerquant ${layerquant}`).toBeLessThan(TOLERANCE[type] ?? ACTIVATION_ROUNDING_TOLERANCE);
  });

  it('an independent reader (@huggingface/gguf) reads the metadata and tensor table the export wrote', async () => {
    const outFile = join(root, `${architecture}-Q4_K.gguf`);
    const read = await independentRead(outFile);
    const metadata = read.metadata as unknown as Record<string, unknown>;
    const tensorInfos = read.tensorInfos;
    const arch = config.modelType === 'qwen2' ? 'qwen2' : 'llama';
    expect(metadata['general.architecture']).toBe(arch);
    expect(metadata[`${arch}.block_count`]).toBe(config.numLayers);
    expect(metadata[`${arch}.attention.head_count_kv`]).toBe(config.numKeyValueHeads);
    expect((metadata['tokenizer.ggml.tokens'] as unknown as string[]).length).toBe(config.vocabSize);
    const gguf = await openGgufModel(outFile);
    expect(tensorInfos.map((t) => t.name)).toEqual(gguf.file.header.tensors.map((t) => t.name));
    for (const [i, t] of tensorInfos.entries()) {
      const ours = gguf.file.header.tensors[i]!;
      expect(t.shape.map(Number)).toEqual([...ours.dims]);
      expect(t.dtype).toBe(ours.type.id);
      expect(Number(t.offset)).toBe(ours.offset);
    }
    await gguf.close();
  });

  it('greedy generation in llama.cpp matches layerquant\'s reference forward of the same weights token for token', async () => {
    const outFile = join(root, `${architecture}-F32.gguf`);
    await exportGguf({ modelDir, outFile, types: { '.*': 'F32' } });
    const prompt = randomIds(8, config.vocabSize, 5);
    const llama = await openLlamaCppModel(outFile, { contextSize: 64 });
    const generated = await llama.greedy(prompt, 16);
    await llama.dispose();
    expect(generated).toEqual(await referenceGreedy(outFile, prompt, 16));
  });
});
