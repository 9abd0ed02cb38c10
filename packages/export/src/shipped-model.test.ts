// The shipped model exported at b4g64, b2g64, b3g64 and a SensiBoost allocation at 3.25 bits, checked against
// independent oracles: transformers.js (the real package) loading the directory, the float64 reference forward, the
// float graph's perplexity on the dequantized weights, and the onnx-proto decoder.
import { sensiBoostAllocator } from '@layerquant/allocators';
import { loadStatsDirectory } from '@layerquant/allocators/node';
import { configName, matrixOfTensorName, quantConfig, type QuantConfig } from '@layerquant/core';
import { brownTestPath, shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { perplexity } from '@layerquant/perplexity';
import { hqqQuantizer } from '@layerquant/quantizers';
import { openModelWeights, quantizeModel } from '@layerquant/quantizers/node';
import { argmaxRow, loadDecoderModel, loadDecoderWeights, referenceForward } from '@layerquant/runtime';
import { relativeError } from '@layerquant/runtime/testing';
import { loadDecoderConfig, loadTokenizer } from '@layerquant/tensor-io';
import { onnx } from 'onnx-proto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportOnnx, type ExportReport } from './export-onnx.js';
import { openOnnxExport } from './onnx-model-dir.js';

const root = mkdtempSync(join(tmpdir(), 'layerquant-shipped-export-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const PROMPT = 'The jury said it did find that the';
const NEW_TOKENS = 32;

interface Exported {
  readonly quantizedDir: string;
  readonly outDir: string;
  readonly configs: ReadonlyMap<string, QuantConfig | null>;
  readonly report: ExportReport;
}
const exported = new Map<string, Exported>();

async function exportShipped(label: string, configFor: (key: string) => QuantConfig | null): Promise<Exported> {
  const quantizedDir = join(root, `${label}-quantized`);
  const outDir = join(root, `${label}-onnx`);
  const configs = new Map<string, QuantConfig | null>();
  await quantizeModel({
    modelDir: shippedModelDir,
    outDir: quantizedDir,
    quantizer: hqqQuantizer,
    workers: 2,
    configFor: (key, matrix) => {
      const config = configFor(key);
      configs.set(matrix.name, config);
      return config;
    },
  });
  // accuracy level 0: float activations inside MatMulNBits, the level the exactness bounds hold for
  const report = await exportOnnx({ modelDir: quantizedDir, outDir, accuracyLevel: 0, scaleType: 'float32' });
  return { quantizedDir, outDir, configs, report };
}

beforeAll(async () => {
  const stats = await loadStatsDirectory(shippedOraclesDir);
  const allocation = sensiBoostAllocator.allocate(stats, { budget: 3.25, boostStop: 2, topM: 1 });
  const mixed = new Map(allocation.matrices.map((m) => [m.key, m.config]));
  for (const bits of [4, 2, 3]) exported.set(`b${bits}g64`, await exportShipped(`b${bits}g64`, () => quantConfig(bits, 64)));
  exported.set('sensiboost-3.25', await exportShipped('sensiboost', (key) => mixed.get(key) ?? null));
}, 600_000);

/** Greedy decoding with layerquant's float graph (no cache: the whole sequence every step) on dequantized weights. */
async function greedyDequantized(quantizedDir: string, prompt: readonly number[], eos: number): Promise<number[]> {
  const config = await loadDecoderConfig(quantizedDir);
  const weights = await openModelWeights(quantizedDir);
  const model = await loadDecoderModel(weights, config);
  await weights.close();
  const sequence = [...prompt];
  const generated: number[] = [];
  while (generated.length < NEW_TOKENS) {
    const logits = await model.logits({ ids: sequence });
    const next = argmaxRow(logits, config.vocabSize, sequence.length - 1);
    generated.push(next);
    sequence.push(next);
    if (next === eos) break;
  }
  await model.dispose();
  return generated;
}

describe('export of the shipped model', () => {
  it('the directory holds what a loader reads and nothing else', () => {
    const outDir = exported.get('b4g64')!.outDir;
    expect(readdirSync(outDir).sort()).toEqual(['config.json', 'generation_config.json', 'onnx', 'quantization.json', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readdirSync(join(outDir, 'onnx'))).toEqual(['model_q4.onnx']);
  });

  it('onnx-proto decodes the fused graph: per layer one GroupQueryAttention, a MatMulNBits per matrix or stacked q/k/v and gate/up, fused norms', () => {
    for (const [label, { outDir, configs }] of exported) {
      const model = onnx.ModelProto.decode(readFileSync(join(outDir, 'onnx', 'model_q4.onnx')));
      expect(model.opsetImport.map((o) => o.domain ?? '')).toContain('com.microsoft');
      const graphNodes = model.graph!.node!;
      // A stacked node is named after its matrices (`q+k+v`): each matrix is in exactly one MatMulNBits.
      const nodes = new Map(graphNodes.filter((n) => n.opType === 'MatMulNBits').flatMap((n) => n.name!.split('+').map((name) => [name, n] as const)));
      expect(nodes.size, label).toBe(224);
      for (const [name, config] of configs) {
        const node = nodes.get(name);
        expect(node, `${label} ${name}`).toBeDefined();
        const attribute = (key: string) => Number(node!.attribute!.find((a) => a.name === key)!.i);
        // 3-bit codes are stored as 4-bit ones: MatMulNBits has no 3-bit kernel
        expect(attribute('bits'), `${label} ${name}`).toBe(config!.bits === 3 ? 4 : config!.bits);
        expect(attribute('block_size')).toBe(config!.groupSize);
        expect(node!.domain).toBe('com.microsoft');
      }
      const count = (op: string) => graphNodes.filter((n) => n.opType === op).length;
      expect(count('GroupQueryAttention'), label).toBe(32);
      expect(count('SkipSimplifiedLayerNormalization'), label).toBe(64);
      expect(count('SimplifiedLayerNormalization'), label).toBe(1);
      for (const op of ['Softmax', 'Transpose', 'Trilu', 'Pow', 'ReduceMean']) expect(count(op), `${label} ${op}`).toBe(0);
      // Uniform configs stack q/k/v and gate/up: 4 MatMulNBits a layer; HQQ's fractional zeros add 3 nodes per MatMulNBits.
      if (label === 'b4g64') {
        expect(count('MatMulNBits')).toBe(4 * 32);
        expect(graphNodes.length).toBeLessThan(26 * 32 + 40);
      }
      expect(model.graph!.input!.map((i) => i.name).slice(0, 2)).toEqual(['input_ids', 'attention_mask']);
      expect(model.graph!.input!.map((i) => i.name)).toContain('num_logits_to_keep');
      const batch = model.graph!.input!.find((i) => i.name === 'past_key_values.0.key')!.type!.tensorType!.shape!.dim![0]!;
      expect(batch.dimParam).toBe('batch_size');
    }
  });

  it('transformers.js loads each export and its greedy generate() equals layerquant\'s greedy decode of the dequantized weights', async () => {
    const { AutoModelForCausalLM, Tensor, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    const tokenizer = await loadTokenizer(shippedModelDir);
    const prompt = tokenizer.encode(PROMPT);
    const config = await loadDecoderConfig(shippedModelDir);
    for (const [label, { outDir, quantizedDir }] of exported) {
      const model = await AutoModelForCausalLM.from_pretrained(outDir, { dtype: 'q4', local_files_only: true });
      const inputIds = new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
      const attentionMask = new Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]);
      const output = (await model.generate({ input_ids: inputIds, attention_mask: attentionMask, max_new_tokens: NEW_TOKENS, do_sample: false })) as InstanceType<typeof Tensor>;
      const generated = Array.from(output.data as BigInt64Array, Number).slice(prompt.length);
      const expected = await greedyDequantized(quantizedDir, prompt, config.eosTokenId as number);
      expect(generated, label).toEqual(expected);
      expect(generated.length, label).toBeGreaterThan(4);
      await model.dispose();
    }
  }, 300_000);

  it('last-position logits are within 1e-3 (relative, max) of the float64 reference forward on the dequantized weights', async () => {
    const tokenizer = await loadTokenizer(shippedModelDir);
    const ids = tokenizer.encode(PROMPT).slice(0, 5); // the float64 forward is slow: a few tokens
    for (const [label, { outDir, quantizedDir }] of exported) {
      const config = await loadDecoderConfig(quantizedDir);
      const weights = await openModelWeights(quantizedDir);
      const dequantized = await loadDecoderWeights(weights, config);
      await weights.close();
      const expected = referenceForward(dequantized, ids).slice(-config.vocabSize);
      const model = await openOnnxExport(outDir);
      const logits = (await model.logits({ ids })).slice(-config.vocabSize);
      await model.dispose();
      expect(relativeError(logits, expected), label).toBeLessThan(1e-3);
    }
  }, 300_000);

  it('perplexity of the exported file on brown-test@512 (first 4 windows) is within 0.01% of the dequantized evaluation', async () => {
    // The whole text (311 windows) is in bench/export.mjs; 4 windows of a prefix keep the suite fast.
    const tokenizer = await loadTokenizer(shippedModelDir);
    const ids = tokenizer.encode(readFileSync(brownTestPath, 'utf8').slice(0, 12_000)).slice(0, 4 * 512);
    expect(ids.length).toBe(4 * 512);
    for (const label of ['b4g64', 'sensiboost-3.25']) {
      const { outDir, quantizedDir } = exported.get(label)!;
      const config = await loadDecoderConfig(quantizedDir);
      const weights = await openModelWeights(quantizedDir);
      const dequantized = await loadDecoderModel(weights, config);
      await weights.close();
      const options = { seqlen: 512 };
      const expected = await perplexity(dequantized, ids, options);
      await dequantized.dispose();
      const model = await openOnnxExport(outDir);
      const actual = await perplexity(model, ids, options);
      await model.dispose();
      expect(Math.abs(actual.ppl - expected.ppl) / expected.ppl, `${label}: ${actual.ppl} vs ${expected.ppl}`).toBeLessThan(1e-4);
    }
  }, 300_000);

  it('the report counts the real bytes: 3-bit matrices at 4 bits per code', () => {
    const b3 = exported.get('b3g64')!.report;
    const b4 = exported.get('b4g64')!.report;
    // the linear matrices (embed_tokens and lm_head are listed too, in float)
    const linear = (r: ExportReport) => r.matrices.filter((m) => matrixOfTensorName(m.name) !== undefined);
    expect(linear(b3).every((m) => m.storedBits === 4)).toBe(true);
    expect(b3.notes[0]).toMatch(/^b3g64 codes are stored as 4-bit/);
    // same codes, scales and zero points as b4g64; the fractional zeros of each add one float per group
    const codesAndMeta = (r: ExportReport) => r.linearParams / 2 + (r.linearParams / 64) * 4 + (r.linearParams / 64) / 2;
    expect(b4.linearBytes).toBe(codesAndMeta(b4) + (linear(b4).filter((m) => m.zeroCorrection).length ? (b4.linearParams / 64) * 4 : 0));
    expect(b3.linearBytes).toBe(b4.linearBytes);
    const mixed = exported.get('sensiboost-3.25')!;
    expect(new Set(linear(mixed.report).map((m) => m.config)).size).toBeGreaterThan(1);
    const allocated = Object.fromEntries([...mixed.configs].map(([name, c]) => [name, c ? configName(c) : null]));
    expect(Object.fromEntries(linear(mixed.report).map((m) => [m.name, m.config]))).toEqual(allocated);
  });
});
