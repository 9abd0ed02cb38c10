import {
  InvalidDataError,
  InvalidOptionError,
  MissingFileError,
  UnsupportedArchitectureError,
  decoderLayout,
  expectedShapes,
  type DecoderConfig,
  type DecoderLayout,
  type QuantConfig,
} from '@layerquant/core';
import { QUANTIZER_PLUGINS, configOfMetadata } from '@layerquant/quantizers';
import { openModelWeights, type QuantizedCheckpoint, type QuantizerLookup } from '@layerquant/quantizers/node';
import { loadValidatedConfig, type Checkpoint } from '@layerquant/tensor-io';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { affineToGgml, exactAffineType, type ExactAffineType } from './affine-mapping.js';
import { encodeGgml } from './codecs.js';
import { ggmlBlocks, ggmlPlugin, ggmlTypeOfConfig } from './ggml-quantizer.js';
import { ggmlFallbackType, ggmlType, ggufTensorBytes, type GgmlTypeName } from './ggml-types.js';
import { writeGgufFile, type GgufTensorToWrite } from './gguf-file.js';
import type { GgufValue } from './gguf-format.js';
import { LLAMA_FILE_TYPES, decoderMetadata, ggufArchitecture, ggufTensorName, llama3RopeFactors, permuteRotaryRows, rotaryHeads, rotaryRowOrder } from './llama-names.js';
import { tokenizerMetadata } from './tokenizer-metadata.js';

export interface ExportGgufOptions {
  /** A quantized checkpoint (layerquant-quantized-v1) or a Hugging Face checkpoint (Llama, Mistral, Qwen2). */
  readonly modelDir: string;
  readonly outFile: string;
  /**
   * Types of matrices (2-D tensors) by GGUF tensor name: each key is a regular expression that must match the whole
   * name (`blk\.\d+\.ffn_down\.weight`, `token_embd\.weight`, `.*`); where several match, the last one wins (so
   * `{ '.*': 'Q4_K', 'output\\.weight': 'Q6_K' }` reads as a default and an exception). A k-quant asked for in rows
   * that are not whole blocks of 256 falls back as llama-quantize does (ggmlFallbackType; said in the notes). Unmatched
   * matrices keep their default: a quantized matrix its exact form (Q4_1 for <= 4-bit codes in groups of 32k, Q5_1
   * for 5-bit; symmetric configs Q4_0, Q5_0, Q8_0) or else Q8_0; a float matrix F32 if stored in F32, else F16. Norms and biases are F32.
   */
  readonly types?: Readonly<Record<string, GgmlTypeName>>;
  /**
   * Importance of each input channel per matrix (llama.cpp's imatrix: mean squared activation), keyed by GGUF or
   * Hugging Face tensor name: the k-quant and weighted legacy encoders minimize the error it weighs.
   */
  readonly importance?: Readonly<Record<string, Float32Array>>;
  /** llama.cpp's pre-tokenizer name, where tokenizer.json's is not one layerquant recognizes. */
  readonly tokenizerPre?: string;
  /** Where the quantizer a checkpoint records is found (default: the built-ins). */
  readonly quantizers?: QuantizerLookup['quantizers'];
  /** general.name (default: the model directory's name). */
  readonly name?: string;
  readonly onProgress?: (done: number, total: number, tensor: string) => void;
}

/** How a tensor came into the file. */
export type GgufTensorSource = 'float' | 'exact' | 'encoded';

export interface ExportedGgufTensor {
  readonly name: string;
  /** The checkpoint's tensor (absent for tensors the export derives, such as rope_freqs). */
  readonly hfName: string | undefined;
  readonly type: GgmlTypeName;
  readonly shape: readonly number[];
  readonly bytes: number;
  /** `exact`: an affine checkpoint's codes kept as they are; `encoded`: (dequantized) weights encoded as `type`; `float`: stored as a float type. */
  readonly source: GgufTensorSource;
}

export interface ExportGgufReport {
  readonly format: 'gguf';
  readonly modelDir: string;
  readonly outFile: string;
  /** llama.cpp's architecture name. */
  readonly architecture: string;
  /** The file on disk. */
  readonly fileBytes: number;
  /** Bytes of all tensors; fileBytes - tensorBytes is the header, metadata and alignment padding. */
  readonly tensorBytes: number;
  readonly overheadBytes: number;
  readonly tensors: readonly ExportedGgufTensor[];
  readonly notes: readonly string[];
  readonly seconds: number;
}

type Source = Checkpoint | QuantizedCheckpoint;

function compileTypes(types: Readonly<Record<string, GgmlTypeName>> | undefined): Array<{ key: string; pattern: RegExp; type: GgmlTypeName }> {
  return Object.entries(types ?? {}).map(([key, type]) => {
    let pattern: RegExp;
    try {
      pattern = new RegExp(`^(?:${key})$`);
    } catch (error) {
      throw new InvalidOptionError('types', `"${key}" is not a regular expression (${(error as Error).message})`);
    }
    return { key, pattern, type: ggmlType(type, `types["${key}"]`).name };
  });
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new InvalidDataError(path, `is not valid JSON (${(error as Error).message})`);
  }
}

/** tokenizer.json, tokenizer_config.json and chat_template.jinja of a model directory (or of the directory it was quantized from). */
async function tokenizerFiles(modelDir: string) {
  const file = join(modelDir, 'tokenizer.json');
  if (!existsSync(file)) {
    const sentencePiece = existsSync(join(modelDir, 'tokenizer.model'));
    throw new MissingFileError(file, sentencePiece
      ? 'not found, only a SentencePiece tokenizer.model: the GGUF export writes byte-level BPE tokenizers from tokenizer.json; convert this model with llama.cpp\'s convert_hf_to_gguf.py'
      : 'not found; the GGUF file carries the tokenizer, so the model directory needs the tokenizer.json of its Hugging Face checkpoint');
  }
  const configFile = join(modelDir, 'tokenizer_config.json');
  const templateFile = join(modelDir, 'chat_template.jinja');
  return {
    file,
    tokenizer: await readJson(file),
    tokenizerConfig: existsSync(configFile) ? await readJson(configFile) : undefined,
    ...(existsSync(templateFile) ? { chatTemplate: await readFile(templateFile, 'utf8') } : {}),
  };
}

function checkExportable(config: DecoderConfig, configFile: string): void {
  ggufArchitecture(config, configFile);
  const scaling = config.ropeScaling;
  if (scaling && scaling.type !== 'linear' && scaling.type !== 'llama3') {
    throw new UnsupportedArchitectureError(configFile, `rope scaling "${scaling.type}"`, ['no rope scaling', 'linear', 'llama3']);
  }
}

/**
 * The default GGUF type of a float matrix: F32 stays F32; F16 and BF16 become F16, which holds every BF16 value of
 * magnitude 2^-14 to 65504 exactly and which llama.cpp multiplies with fp16 activations (BF16 matrices get bf16
 * activations, 8 times coarser: +3.5e-4 relative perplexity on the shipped model's output matrix alone).
 */
export function floatType(dtype: string): GgmlTypeName {
  return dtype === 'F32' || dtype === 'F64' ? 'F32' : 'F16';
}

/**
 * The file's tensors in the order the export writes them: the checkpoint's under llama.cpp's names, and after the
 * first, for Llama 3's rope scaling, rope_freqs (which llama.cpp reads and the export derives from the config; no
 * `hfName`). The cost model lays out the same list.
 */
export function ggufTensorList(config: DecoderConfig, layout: DecoderLayout): Array<{ readonly name: string; readonly hfName: string | undefined; readonly shape: readonly number[] }> {
  const list: Array<{ readonly name: string; readonly hfName: string | undefined; readonly shape: readonly number[] }> = [...expectedShapes(config, layout)].map(([hfName, shape]) => ({ name: ggufTensorName(hfName)!, hfName, shape }));
  if (config.ropeScaling?.type === 'llama3') list.splice(1, 0, { name: 'rope_freqs.weight', hfName: undefined, shape: [config.headDim / 2] });
  return list;
}

/**
 * The type that holds a quantized matrix's blocks as they are, by its quantizer's packed layout: an affine config's
 * exact legacy block (exactAffineType), a ggml-quantized config's own type; undefined: re-encoded.
 */
function exactGgufType(layout: 'affine' | 'ggml' | undefined, config: QuantConfig, columns: number): GgmlTypeName | undefined {
  if (layout === 'affine') return exactAffineType(config);
  if (layout === 'ggml') return ggmlTypeOfConfig(config, columns);
  return undefined;
}

/** The file's metadata: the architecture's hyperparameters, then the tokenizer (the cost model computes the same). */
export async function fileMetadata(modelDir: string, config: DecoderConfig, name: string, fileType: number, tokenizerPre: string | undefined): Promise<Map<string, GgufValue>> {
  const metadata = new Map<string, GgufValue>(decoderMetadata(config, name, fileType));
  const tokenizer = await tokenizerFiles(modelDir);
  for (const [key, value] of tokenizerMetadata(tokenizer, { vocabSize: config.vocabSize, bosTokenId: config.bosTokenId, eosTokenId: config.eosTokenId, ...(tokenizerPre ? { pre: tokenizerPre } : {}) })) {
    metadata.set(key, value);
  }
  return metadata;
}

/**
 * Writes a GGUF file that llama.cpp (and node-llama-cpp, ollama, LM Studio) loads: the architecture's
 * hyperparameters, the byte-level BPE tokenizer and chat template, and every tensor under llama.cpp's name in the
 * type asked for (`types`), q and k rows permuted for the llama architecture as llama.cpp's converter does. Tensors
 * are read, converted and written one at a time (never two copies of the model); the file appears only when
 * complete.
 */
export async function exportGguf(options: ExportGgufOptions): Promise<ExportGgufReport> {
  const started = performance.now();
  const modelDir = resolve(options.modelDir);
  const outFile = resolve(options.outFile);
  if (!outFile.endsWith('.gguf')) throw new InvalidOptionError('--out', `${outFile} should end in .gguf (llama.cpp tools and node-llama-cpp look for that extension)`);
  if (!existsSync(dirname(outFile))) throw new MissingFileError(dirname(outFile), 'does not exist; create the output directory first');
  const rules = compileTypes(options.types);
  // The ggml quantizer's checkpoints are this package's own: found without a registry that names it.
  const source: Source = await openModelWeights(modelDir, { quantizers: options.quantizers ?? [...QUANTIZER_PLUGINS, ggmlPlugin] });
  try {
    const { config, configFile } = await loadValidatedConfig(modelDir, source);
    checkExportable(config, configFile);
    const architecture = ggufArchitecture(config, configFile);
    const quantized = 'isQuantized' in source ? source : undefined;
    const quantizer = quantized?.quantizer();
    const layout = decoderLayout(config, source);
    const notes: string[] = [];
    const plan: Array<{ name: string; hfName: string | undefined; type: GgmlTypeName; shape: readonly number[]; source: GgufTensorSource }> = [];
    const used = new Set<string>();
    const fallbacks: string[] = [];
    for (const { name, hfName, shape } of ggufTensorList(config, layout)) {
      if (shape.length === 1 || !hfName) {
        plan.push({ name, hfName, type: 'F32', shape, source: 'float' });
        continue;
      }
      const matching = rules.filter((r) => r.pattern.test(name));
      for (const r of matching) used.add(r.key);
      const rule = matching[matching.length - 1];
      const isQuantized = quantized?.isQuantized(hfName) === true;
      const entry = isQuantized ? quantized!.metadata.tensors[hfName] : undefined;
      const exact = entry ? exactGgufType(quantizer?.packedLayout, configOfMetadata(entry), shape[1]!) : undefined;
      let type: GgmlTypeName;
      let how: GgufTensorSource;
      if (rule) {
        // As llama-quantize does: a k-quant in rows that are not whole super-blocks becomes its legacy stand-in.
        type = ggmlFallbackType(rule.type, shape[shape.length - 1]!);
        if (type !== rule.type) fallbacks.push(`${name} ${rule.type} -> ${type}`);
        how = exact === type ? 'exact' : type === 'F32' || type === 'F16' || type === 'BF16' ? 'float' : 'encoded';
      } else if (exact) {
        type = exact;
        how = 'exact';
      } else if (isQuantized) {
        type = 'Q8_0';
        how = 'encoded';
      } else {
        type = floatType(source.info(hfName).dtype);
        how = 'float';
      }
      ggufTensorBytes(type, shape, name);
      plan.push({ name, hfName, type, shape, source: how });
    }
    const unused = rules.filter((r) => !used.has(r.key));
    if (unused.length > 0) {
      throw new InvalidOptionError('types', `${unused.map((r) => `"${r.key}"`).join(', ')} match no matrix of the model; GGUF matrix names look like token_embd.weight, blk.0.attn_q.weight, blk.0.ffn_down.weight, output.weight`);
    }
    if (fallbacks.length > 0) notes.push(`${fallbacks.length} matrices have rows that are not whole blocks of the type asked for and fell back as llama.cpp's llama-quantize does: ${fallbacks.slice(0, 4).join(', ')}${fallbacks.length > 4 ? ', ...' : ''}.`);
    const reencoded = plan.filter((t) => t.source === 'encoded' && t.hfName && quantized?.isQuantized(t.hfName));
    const exactCount = plan.filter((t) => t.source === 'exact').length;
    if (exactCount > 0) {
      notes.push(quantizer?.packedLayout === 'ggml'
        ? `${exactCount} quantized matrices are the ${quantizer.id} quantizer's llama.cpp blocks, written as it encoded them.`
        : `${exactCount} quantized matrices keep their codes exactly (d = fp16(1/s), m = fp16(-z/s)).`);
    }
    if (reencoded.length > 0) notes.push(`${reencoded.length} quantized matrices have no exact GGUF form for their config and were re-encoded from their dequantized weights: ${reencoded.slice(0, 4).map((t) => `${t.name} as ${t.type}`).join(', ')}${reencoded.length > 4 ? ', ...' : ''}.`);

    // Metadata: hyperparameters, then the tokenizer.
    const matrixParams = new Map<GgmlTypeName, number>();
    for (const t of plan) if (t.shape.length === 2) matrixParams.set(t.type, (matrixParams.get(t.type) ?? 0) + t.shape[0]! * t.shape[1]!);
    const mainType = [...matrixParams.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32';
    const metadata = await fileMetadata(modelDir, config, options.name ?? basename(modelDir), LLAMA_FILE_TYPES[mainType], options.tokenizerPre);

    const importanceOf = (t: { name: string; hfName: string | undefined }) => options.importance?.[t.name] ?? (t.hfName ? options.importance?.[t.hfName] : undefined);
    let done = 0;
    const tensors: GgufTensorToWrite[] = plan.map((t) => ({
      name: t.name,
      type: t.type,
      shape: t.shape,
      encode: async () => {
        const bytes = await encodeTensor(t);
        options.onProgress?.(++done, plan.length, t.name);
        return bytes;
      },
    }));
    const encodeTensor = async (t: (typeof plan)[number]): Promise<Uint8Array> => {
      if (!t.hfName) return encodeGgml('F32', llama3RopeFactors(config), t.shape, { tensor: t.name });
      const heads = architecture.permuteQK ? rotaryHeads(t.hfName, config) : 0;
      const columns = t.shape.length === 2 ? t.shape[1]! : 1;
      if (t.source === 'exact') {
        const q = await quantized!.readQuantized(t.hfName);
        const rowOrder = heads ? rotaryRowOrder(q.shape[0], heads) : undefined;
        if (quantizer?.packedLayout === 'ggml') return ggmlBlocks(q, rowOrder).bytes;
        const multipliers = await quantized!.readScaleMultipliers(t.hfName);
        return affineToGgml(q, t.type as ExactAffineType, rowOrder, multipliers);
      }
      const weight = await source.read(t.hfName);
      const data = heads ? permuteRotaryRows(weight.data, heads, columns) : weight.data;
      const importance = importanceOf(t);
      return encodeGgml(t.type, data, t.shape, { tensor: t.name, ...(importance ? { importance } : {}) });
    };
    const written = await writeGgufFile(outFile, metadata, tensors);
    const exported = plan.map((t, i) => Object.freeze({ ...t, bytes: written.tensors[i]!.byteLength }));
    const { size } = await stat(outFile);
    return Object.freeze({
      format: 'gguf' as const,
      modelDir,
      outFile,
      architecture: architecture.name,
      fileBytes: size,
      tensorBytes: written.tensorBytes,
      overheadBytes: size - written.tensorBytes,
      tensors: Object.freeze(exported),
      notes: Object.freeze(notes),
      seconds: (performance.now() - started) / 1000,
    });
  } finally {
    await source.close();
  }
}
