import {
  EMBED_TOKENS,
  FINAL_NORM,
  GgufFormatError,
  LAYER_TENSORS,
  LM_HEAD,
  UnsupportedArchitectureError,
  matrixOfTensorName,
  type DecoderConfig,
} from '@layerquant/core';
import { gguf, type GgufHeader, type GgufMetadata, type GgufValue } from './gguf-format.js';
import type { GgmlTypeName } from './ggml-types.js';

// How llama.cpp names and lays out a Hugging Face Llama / Mistral / Qwen2 checkpoint (its convert_hf_to_gguf.py:
// LlamaModel for LlamaForCausalLM and MistralForCausalLM, Qwen2Model for Qwen2ForCausalLM), and the way back.

/** llama.cpp's architecture for each Hugging Face one layerquant runs, and whether q/k rows are permuted. */
export const GGUF_ARCHITECTURES: Readonly<Record<string, { readonly name: 'llama' | 'qwen2'; readonly permuteQK: boolean }>> = Object.freeze({
  LlamaForCausalLM: { name: 'llama', permuteQK: true },
  // llama.cpp converts Hugging Face Mistral checkpoints with its Llama class: same architecture, same permutation.
  MistralForCausalLM: { name: 'llama', permuteQK: true },
  Qwen2ForCausalLM: { name: 'qwen2', permuteQK: false },
});

export function ggufArchitecture(config: DecoderConfig, file = 'config.json'): { readonly name: 'llama' | 'qwen2'; readonly permuteQK: boolean } {
  const found = GGUF_ARCHITECTURES[config.architecture];
  if (!found) throw new UnsupportedArchitectureError(file, config.architecture, Object.keys(GGUF_ARCHITECTURES));
  return found;
}

const LAYER_NAMES: Readonly<Record<string, string>> = Object.freeze({
  [LAYER_TENSORS.inputNorm]: 'attn_norm.weight',
  [LAYER_TENSORS.q]: 'attn_q.weight',
  [LAYER_TENSORS.k]: 'attn_k.weight',
  [LAYER_TENSORS.v]: 'attn_v.weight',
  [LAYER_TENSORS.o]: 'attn_output.weight',
  [LAYER_TENSORS.qBias]: 'attn_q.bias',
  [LAYER_TENSORS.kBias]: 'attn_k.bias',
  [LAYER_TENSORS.vBias]: 'attn_v.bias',
  [LAYER_TENSORS.oBias]: 'attn_output.bias',
  [LAYER_TENSORS.postNorm]: 'ffn_norm.weight',
  [LAYER_TENSORS.gate]: 'ffn_gate.weight',
  [LAYER_TENSORS.up]: 'ffn_up.weight',
  [LAYER_TENSORS.down]: 'ffn_down.weight',
  [LAYER_TENSORS.gateBias]: 'ffn_gate.bias',
  [LAYER_TENSORS.upBias]: 'ffn_up.bias',
  [LAYER_TENSORS.downBias]: 'ffn_down.bias',
});
const HF_LAYER_NAMES = new Map(Object.entries(LAYER_NAMES).map(([hf, g]) => [g, hf]));
const GLOBAL_NAMES: Readonly<Record<string, string>> = Object.freeze({ [EMBED_TOKENS]: 'token_embd.weight', [FINAL_NORM]: 'output_norm.weight', [LM_HEAD]: 'output.weight' });
const HF_GLOBAL_NAMES = new Map(Object.entries(GLOBAL_NAMES).map(([hf, g]) => [g, hf]));

/** llama.cpp's name of a Hugging Face tensor (`model.layers.3.mlp.down_proj.weight` -> `blk.3.ffn_down.weight`), or undefined. */
export function ggufTensorName(hfName: string): string | undefined {
  if (GLOBAL_NAMES[hfName]) return GLOBAL_NAMES[hfName];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  const local = m ? LAYER_NAMES[m[2]!] : undefined;
  return local ? `blk.${m![1]}.${local}` : undefined;
}

/** The Hugging Face name of a llama.cpp tensor, or undefined. */
export function hfTensorName(ggufName: string): string | undefined {
  if (HF_GLOBAL_NAMES.has(ggufName)) return HF_GLOBAL_NAMES.get(ggufName);
  const m = /^blk\.(\d+)\.(.+)$/.exec(ggufName);
  const local = m ? HF_LAYER_NAMES.get(m[2]!) : undefined;
  return local ? `model.layers.${m![1]}.${local}` : undefined;
}

/** Whether a llama.cpp tensor is one of the decoder layers' linear matrices (q, k, v, o, gate, up, down weights). */
export function isLinearGgufTensor(ggufName: string): boolean {
  const hf = hfTensorName(ggufName);
  return hf !== undefined && matrixOfTensorName(hf) !== undefined;
}

/** The number of heads whose rows a q or k tensor (weight or bias) is permuted over, or 0 for any other tensor. */
export function rotaryHeads(hfName: string, config: DecoderConfig): number {
  if (hfName.endsWith(LAYER_TENSORS.q) || hfName.endsWith(LAYER_TENSORS.qBias)) return config.numHeads;
  if (hfName.endsWith(LAYER_TENSORS.k) || hfName.endsWith(LAYER_TENSORS.kBias)) return config.numKeyValueHeads;
  return 0;
}

/**
 * convert_hf_to_gguf.py's LlamaModel.permute on the rows of a [heads * headDim, columns] tensor: within each head,
 * the two rotary halves are interleaved (row j * headDim/2 + i moves to i * 2 + j), because llama.cpp's "normal"
 * rope rotates adjacent pairs where Hugging Face rotates halves. `inverse` undoes it.
 */
export function permuteRotaryRows(data: Float32Array, heads: number, columns: number, inverse = false): Float32Array {
  const rows = data.length / columns;
  const headDim = rows / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new RangeError(`${rows} rows do not split into ${heads} heads of an even dimension`);
  const half = headDim / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const hf = h * headDim + j * half + i;
        const gg = h * headDim + i * 2 + j;
        const [from, to] = inverse ? [gg, hf] : [hf, gg];
        out.set(data.subarray(from * columns, (from + 1) * columns), to * columns);
      }
    }
  }
  return out;
}

/** The row permutation itself: `rowOf[r]` is the Hugging Face row that lands at GGUF row r. */
export function rotaryRowOrder(rows: number, heads: number): Int32Array {
  const headDim = rows / heads;
  const half = headDim / 2;
  const order = new Int32Array(rows);
  for (let h = 0; h < heads; h++) for (let j = 0; j < 2; j++) for (let i = 0; i < half; i++) order[h * headDim + i * 2 + j] = h * headDim + j * half + i;
  return order;
}

/** llama.cpp's llama_ftype for a file whose matrices are mostly `type` (general.file_type; informational). */
export const LLAMA_FILE_TYPES: Readonly<Record<GgmlTypeName, number>> = Object.freeze({
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9, Q2_K: 10, Q3_K: 12, Q4_K: 15, Q5_K: 17, Q6_K: 18, BF16: 32,
});

/** The model hyperparameters as llama.cpp's converter writes them for the architecture. */
export function decoderMetadata(config: DecoderConfig, name: string, fileType: number): Map<string, GgufValue> {
  const arch = ggufArchitecture(config).name;
  const m = new Map<string, GgufValue>();
  m.set('general.architecture', gguf.string(arch));
  m.set('general.type', gguf.string('model'));
  m.set('general.name', gguf.string(name));
  m.set('general.file_type', gguf.u32(fileType));
  m.set('general.quantization_version', gguf.u32(2));
  m.set(`${arch}.block_count`, gguf.u32(config.numLayers));
  m.set(`${arch}.context_length`, gguf.u32(config.maxPositionEmbeddings));
  m.set(`${arch}.embedding_length`, gguf.u32(config.hiddenSize));
  m.set(`${arch}.feed_forward_length`, gguf.u32(config.intermediateSize));
  m.set(`${arch}.attention.head_count`, gguf.u32(config.numHeads));
  m.set(`${arch}.attention.head_count_kv`, gguf.u32(config.numKeyValueHeads));
  m.set(`${arch}.rope.freq_base`, gguf.f32(config.ropeTheta));
  m.set(`${arch}.attention.layer_norm_rms_epsilon`, gguf.f32(config.rmsNormEps));
  m.set(`${arch}.attention.key_length`, gguf.u32(config.headDim));
  m.set(`${arch}.attention.value_length`, gguf.u32(config.headDim));
  if (arch === 'llama') {
    m.set(`${arch}.vocab_size`, gguf.u32(config.vocabSize));
    m.set(`${arch}.rope.dimension_count`, gguf.u32(config.headDim));
  }
  const scaling = config.ropeScaling;
  if (scaling?.type === 'linear') {
    m.set(`${arch}.rope.scaling.type`, gguf.string('linear'));
    m.set(`${arch}.rope.scaling.factor`, gguf.f32(scaling.factor));
  }
  return m;
}

/**
 * llama3 rope scaling as llama.cpp stores it: one factor per rotary frequency in the tensor `rope_freqs.weight`
 * (convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors), computed in float32 as the converter does.
 */
export function llama3RopeFactors(config: DecoderConfig): Float32Array {
  const s = config.ropeScaling!;
  const dim = config.headDim;
  const factor = s.factor ?? 8;
  const low = s.lowFreqFactor ?? 1;
  const high = s.highFreqFactor ?? 4;
  const original = s.originalMaxPositionEmbeddings ?? 8192;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const freq = Math.fround(1 / Math.fround(config.ropeTheta ** Math.fround((2 * i) / dim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < original / high) out[i] = 1;
    else if (wavelen > original / low) out[i] = factor;
    else {
      const smooth = (original / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

function value(metadata: GgufMetadata, key: string, file: string): GgufValue {
  const v = metadata.get(key);
  if (!v) throw new GgufFormatError(file, `has no metadata "${key}"; it is not a complete llama.cpp model file`);
  return v;
}

function number(metadata: GgufMetadata, key: string, file: string): number {
  const v = value(metadata, key, file);
  if (v.type === 'ARRAY' || v.type === 'STRING' || v.type === 'BOOL') throw new GgufFormatError(file, `metadata "${key}" is ${v.type}, not a number`);
  return Number(v.value);
}

function optionalNumber(metadata: GgufMetadata, key: string, file: string): number | undefined {
  return metadata.has(key) ? number(metadata, key, file) : undefined;
}

/**
 * The DecoderConfig of a GGUF file of architecture llama or qwen2 (its hyperparameters, and the tensors for tied
 * embeddings and biases), so layerquant's runtime can evaluate the file's dequantized weights.
 */
export function decoderConfigOfGguf(header: GgufHeader): DecoderConfig {
  const { metadata, file } = header;
  const archValue = value(metadata, 'general.architecture', file);
  const arch = archValue.type === 'STRING' ? archValue.value : '';
  const hfArchitecture = arch === 'llama' ? 'LlamaForCausalLM' : arch === 'qwen2' ? 'Qwen2ForCausalLM' : undefined;
  if (!hfArchitecture) throw new UnsupportedArchitectureError(file, `GGUF architecture "${arch}"`, ['llama', 'qwen2']);
  const names = new Set(header.tensors.map((t) => t.name));
  const embedding = header.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embedding) throw new GgufFormatError(file, 'has no tensor "token_embd.weight"; it is not a complete llama.cpp model file');
  const numHeads = number(metadata, `${arch}.attention.head_count`, file);
  const hiddenSize = number(metadata, `${arch}.embedding_length`, file);
  if (names.has('rope_freqs.weight')) {
    throw new UnsupportedArchitectureError(file, 'GGUF with rope_freqs (llama3 rope scaling)', ['llama and qwen2 files without rope_freqs']);
  }
  const scalingType = metadata.get(`${arch}.rope.scaling.type`);
  const scaling = scalingType?.type === 'STRING' && scalingType.value === 'linear' ? { type: 'linear', factor: number(metadata, `${arch}.rope.scaling.factor`, file) } : undefined;
  return Object.freeze({
    architecture: hfArchitecture,
    modelType: arch,
    hiddenSize,
    intermediateSize: number(metadata, `${arch}.feed_forward_length`, file),
    numLayers: number(metadata, `${arch}.block_count`, file),
    numHeads,
    numKeyValueHeads: optionalNumber(metadata, `${arch}.attention.head_count_kv`, file) ?? numHeads,
    headDim: optionalNumber(metadata, `${arch}.attention.key_length`, file) ?? hiddenSize / numHeads,
    vocabSize: embedding.shape[0]!,
    rmsNormEps: number(metadata, `${arch}.attention.layer_norm_rms_epsilon`, file),
    ropeTheta: optionalNumber(metadata, `${arch}.rope.freq_base`, file) ?? 10000,
    ropeScaling: scaling,
    maxPositionEmbeddings: number(metadata, `${arch}.context_length`, file),
    tieWordEmbeddings: !names.has('output.weight'),
    attentionBias: names.has('blk.0.attn_q.bias'),
    mlpBias: names.has('blk.0.ffn_gate.bias'),
    bosTokenId: optionalNumber(metadata, 'tokenizer.ggml.bos_token_id', file),
    eosTokenId: optionalNumber(metadata, 'tokenizer.ggml.eos_token_id', file),
  });
}
