// The GGUF export judged by llama.cpp itself (node-llama-cpp 3.21.1, CPU) and by an independent reader
// (@huggingface/gguf): on tiny random Llama, Qwen2 (tied embeddings, q/k/v biases) and Mistral (GQA 4:1) models,
// llama.cpp's per-token NLL from its own logits equals layerquant's evaluation of the same dequantized weights, for
// every type, and greedy generation matches token for token. Each model is exported twice, its matrices (embeddings
// and output included) taking the float types in turn, then the quantized ones in turn: every type is read by
// llama.cpp in two files per model, next to types of other block sizes.
import { seededRandom, type DecoderConfig } from '@layerquant/core';
import { perplexity } from '@layerquant/perplexity';
import { loadDecoderModel, loadDecoderWeights, referenceForward } from '@layerquant/runtime';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_CONFIGS, writeTinyModel } from './__fixtures__/tiny-models.js';
import { exportGguf, type ExportGgufReport } from './export-gguf.js';
import { GGML_CODEC_TYPES, type GgmlTypeName } from './ggml-types.js';
import { openGgufModel } from './gguf-model.js';
import { openLlamaCppModel } from './llama-cpp.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-gguf-llama-cpp-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const WINDOW = 64;
const WINDOWS = 4;
const FLOAT_TYPES: readonly GgmlTypeName[] = ['F32', 'F16', 'BF16'];
const QUANTIZED_TYPES = GGML_CODEC_TYPES.filter((t) => !FLOAT_TYPES.includes(t));

/**
 * llama.cpp multiplies quantized matrices by activations it has itself quantized to 8-bit blocks (Q8_0, Q8_1, Q8_K),
 * and F16 / BF16 ones by activations rounded to that type. Measured on these models (4 windows of 64): float files
 * move one token's NLL by at most 0.0011 to 0.0032 and perplexity by 2e-5 to 6e-5; quantized files 0.011 to 0.022
 * and 7e-5 to 3.7e-4. One matrix of 16 read wrongly (the two halves of every 32-block swapped, measured for v, q, up
 * and down in the Llama file) moves a token's NLL by 0.36 to 0.47 and perplexity by 2e-3 to 2e-2.
 */
const TOLERANCE = {
  float: { ppl: 2e-4, token: 0.02 },
  quantized: { ppl: 1e-3, token: 0.08 },
} as const;

function randomIds(count: number, vocab: number, seed: number): number[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => Math.floor(random() * vocab));
}

/** Per-token NLL of the same windows in llama.cpp (its logits) and in layerquant's runtime (the file's dequantized weights). */
async function bothNlls(file: string, ids: number[]): Promise<{ llamaCpp: Float32Array[]; layerquant: Float32Array[]; ppl: { llamaCpp: number; layerquant: number } }> {
  const windows = Array.from({ length: ids.length / WINDOW }, (_, w) => ids.slice(w * WINDOW, (w + 1) * WINDOW));
  // Position t predicts token t + 1; the last position of a window has no target (0, not compared).
  const targets = (w: number[]) => [...w.slice(1), 0];
  const llama = await openLlamaCppModel(file, { contextSize: WINDOW });
  const llamaCpp = [];
  for (const w of windows) llamaCpp.push((await llama.tokenNll({ ids: w }, targets(w))).subarray(0, WINDOW - 1));
  const theirs = await perplexity(llama, ids, { seqlen: WINDOW });
  await llama.dispose();
  const gguf = await openGgufModel(file);
  const model = await loadDecoderModel(gguf, gguf.config);
  const layerquant = [];
  for (const w of windows) layerquant.push((await model.tokenNll({ ids: w }, targets(w))).subarray(0, WINDOW - 1));
  const ours = await perplexity(model, ids, { seqlen: WINDOW });
  await model.dispose();
  await gguf.close();
  return { llamaCpp, layerquant, ppl: { llamaCpp: theirs.ppl, layerquant: ours.ppl } };
}

function largestDifference(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let worst = 0;
  for (const [w, row] of a.entries()) for (const [t, v] of row.entries()) worst = Math.max(worst, Math.abs(v - b[w]![t]!));
  return worst;
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

/** The matrices (2-D tensors) of an export, taking `types` in turn: `{ 'blk\\.0\\.attn_q\\.weight': 'Q4_0', ... }`. */
function typesInTurn(report: ExportGgufReport, types: readonly GgmlTypeName[]): Record<string, GgmlTypeName> {
  const matrices = report.tensors.filter((t) => t.shape.length === 2).map((t) => t.name);
  return Object.fromEntries(matrices.map((name, i) => [name.replaceAll('.', '\\.'), types[i % types.length]!]));
}

describe.each(Object.entries(TINY_CONFIGS))('%s: tiny random model exported to GGUF', (architecture, config: DecoderConfig) => {
  const modelDir = join(root, architecture);
  const ids = randomIds(WINDOW * WINDOWS, config.vocabSize, 17);
  const files = { float: join(root, `${architecture}-float.gguf`), quantized: join(root, `${architecture}-quantized.gguf`) };
  const reports: Partial<Record<keyof typeof files, ExportGgufReport>> = {};
  beforeAll(async () => {
    await writeTinyModel(modelDir, config, 3);
    // The tensor table of a plain export names the matrices; both files assign their types over it.
    const plain = await exportGguf({ modelDir, outFile: files.float, types: { '.*': 'F32' } });
    reports.float = await exportGguf({ modelDir, outFile: files.float, types: typesInTurn(plain, FLOAT_TYPES) });
    reports.quantized = await exportGguf({ modelDir, outFile: files.quantized, types: typesInTurn(plain, QUANTIZED_TYPES) });
  });

  it.each(['float', 'quantized'] as const)('%s types in turn over the matrices: llama.cpp loads the file and its per-token NLL equals layerquant\'s of the dequantized weights', async (kind) => {
    const report = reports[kind]!;
    const types = kind === 'float' ? FLOAT_TYPES : QUANTIZED_TYPES;
    expect(new Set(report.tensors.filter((t) => t.shape.length === 2).map((t) => t.type))).toEqual(new Set(types));
    expect(report.tensors.filter((t) => t.shape.length === 1).every((t) => t.type === 'F32')).toBe(true);
    expect(report.tensors.some((t) => t.name === 'output.weight')).toBe(!config.tieWordEmbeddings);
    const { llamaCpp, layerquant, ppl } = await bothNlls(files[kind], ids);
    expect(largestDifference(llamaCpp, layerquant), 'largest per-token NLL difference').toBeLessThan(TOLERANCE[kind].token);
    expect(Math.abs(ppl.llamaCpp - ppl.layerquant) / ppl.layerquant, `llama.cpp ${ppl.llamaCpp} vs layerquant ${ppl.layerquant}`).toBeLessThan(TOLERANCE[kind].ppl);
  });

  it('llama.cpp gives its logits for a KL divergence: on the float file, its distribution is layerquant\'s (KL per token, float64 here)', async () => {
    const window = ids.slice(0, WINDOW);
    const targets = [...window.slice(1), 0];
    const llama = await openLlamaCppModel(files.float, { contextSize: WINDOW });
    const theirs = await llama.logitsAndNll({ ids: window }, targets);
    const nll = await llama.tokenNll({ ids: window }, targets);
    await llama.dispose();
    const gguf = await openGgufModel(files.float);
    const model = await loadDecoderModel(gguf, gguf.config);
    const ours = await model.logitsAndNll({ ids: window }, targets);
    await model.dispose();
    await gguf.close();
    expect(Array.from(theirs.nll)).toEqual(Array.from(nll));
    const vocab = config.vocabSize;
    expect(theirs.logits.length).toBe(WINDOW * vocab);
    // KL(ours || theirs) per position from each side's log-softmax, in float64
    const logSoftmax = (row: Float32Array) => {
      const max = Math.max(...row);
      const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
      return Array.from(row, (v) => v - max - Math.log(sum));
    };
    let worst = 0;
    for (let t = 0; t < WINDOW - 1; t++) {
      const p = logSoftmax(ours.logits.subarray(t * vocab, (t + 1) * vocab));
      const q = logSoftmax(theirs.logits.subarray(t * vocab, (t + 1) * vocab));
      worst = Math.max(worst, p.reduce((s, lp, i) => s + Math.exp(lp) * (lp - q[i]!), 0));
    }
    // F32/F16/BF16 matrices: llama.cpp rounds activations to F16/BF16 for those, measured up to ~1e-3 in one token's NLL
    expect(worst, 'largest per-token KL divergence').toBeLessThan(1e-3);
  });

  it('an independent reader (@huggingface/gguf) reads the metadata and tensor table the export wrote', async () => {
    const read = await independentRead(files.quantized);
    const metadata = read.metadata as unknown as Record<string, unknown>;
    const tensorInfos = read.tensorInfos;
    const arch = config.modelType === 'qwen2' ? 'qwen2' : 'llama';
    expect(metadata['general.architecture']).toBe(arch);
    expect(metadata[`${arch}.block_count`]).toBe(config.numLayers);
    expect(metadata[`${arch}.attention.head_count_kv`]).toBe(config.numKeyValueHeads);
    expect((metadata['tokenizer.ggml.tokens'] as unknown as string[]).length).toBe(config.vocabSize);
    const gguf = await openGgufModel(files.quantized);
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
    const prompt = randomIds(8, config.vocabSize, 5);
    const llama = await openLlamaCppModel(files.float, { contextSize: 64 });
    const generated = await llama.greedy(prompt, 16);
    await llama.dispose();
    expect(generated).toEqual(await referenceGreedy(files.float, prompt, 16));
  });
});
