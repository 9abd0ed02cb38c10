import { InvalidDataError, InvalidOptionError, MissingFileError, type DecoderConfig } from '@layerquant/core';
import { openModelWeights, type QuantizerLookup } from '@layerquant/quantizers/node';
import { checkDecoderGraph, createKvDecoder, type KvDecoder, type RuntimeOptions, type TokenBatch } from '@layerquant/runtime';
import { loadDecoderConfig, loadValidatedConfig } from '@layerquant/tensor-io';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DEFAULT_ACCURACY_LEVEL, type OnnxExportOptions } from './export-onnx.js';
import { readOnnxSummary, type OnnxFileSummary } from './onnx-reader.js';
import { nllFromLogits, openPackedModel } from './packed-model.js';

/** Whether a directory is an ONNX export (an `onnx/` folder with a model*.onnx file). */
export function isOnnxExportDir(dir: string): boolean {
  const folder = join(dir, 'onnx');
  return existsSync(folder) && readdirSync(folder).some((f) => /^model.*\.onnx$/.test(f));
}

/**
 * The ONNX file of an export directory: `file` if given, else the one config.json's `transformers.js_config.dtype`
 * names, else the only model*.onnx in `onnx/`.
 */
export async function findOnnxModel(dir: string, file?: string): Promise<string> {
  const folder = join(resolve(dir), 'onnx');
  if (!existsSync(folder)) throw new MissingFileError(folder, 'not found; export the model with `layerquant export <dir> --format onnx --out <dir>`');
  const files = readdirSync(folder).filter((f) => /^model.*\.onnx$/.test(f)).sort();
  if (file !== undefined) {
    if (!files.includes(file)) throw new MissingFileError(join(folder, file), `not found; the export holds ${files.join(', ') || 'no ONNX file'}`);
    return join(folder, file);
  }
  const configFile = join(resolve(dir), 'config.json');
  let config: { 'transformers.js_config'?: { dtype?: unknown } };
  try {
    config = JSON.parse(await readFile(configFile, 'utf8')) as typeof config;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingFileError(configFile, 'not found; an ONNX export needs the config.json `layerquant export` writes beside onnx/');
    throw new InvalidDataError(configFile, `is not valid JSON (${(error as Error).message}); restore the export's config.json`);
  }
  const dtype = config?.['transformers.js_config']?.dtype;
  if (dtype !== undefined && typeof dtype !== 'string') throw new InvalidDataError(configFile, 'field "transformers.js_config.dtype" is not a string');
  const suffix = dtype === undefined || dtype === 'fp32' ? '' : `_${dtype}`;
  const preferred = `model${suffix}.onnx`;
  if (files.includes(preferred)) return join(folder, preferred);
  if (files.length === 1) return join(folder, files[0]!);
  throw new InvalidOptionError('--file', `${folder} holds ${files.join(', ')}; pick one with --file`);
}

/** An exported ONNX file opened for evaluation: per-token NLL (perplexity's NllModel) and the KV decoder. */
export interface OnnxExportModel {
  readonly config: DecoderConfig;
  readonly file: string;
  readonly decoder: KvDecoder;
  /** Logits [T, vocab] of one sequence (empty cache, one pass). */
  logits(input: TokenBatch): Promise<Float32Array>;
  /** -log p(targets[t] | ids[0..t]) per position, from the file's logits, in float64 sums. */
  tokenNll(input: TokenBatch, targets: ArrayLike<number>): Promise<Float32Array>;
  /** Logits [T, vocab] and the NLL `tokenNll` gives, from one run. */
  logitsAndNll(input: TokenBatch, targets: ArrayLike<number>): Promise<{ logits: Float32Array; nll: Float32Array }>;
  dispose(): Promise<void>;
}

/** Opens the ONNX file of an export directory with onnxruntime-node (the packed weights stay packed). */
export async function openOnnxExport(dir: string, options: RuntimeOptions & { readonly file?: string } = {}): Promise<OnnxExportModel> {
  const config = await loadDecoderConfig(dir);
  const file = await findOnnxModel(dir, options.file);
  // The graph is checked against config.json on every open (layers, heads, vocabulary), as checkpoints are.
  const decoder = await createKvDecoder(file, config, { configFile: join(resolve(dir), 'config.json'), ...(options.threads ? { threads: options.threads } : {}) });
  const logits = async (input: TokenBatch) => {
    if ((input.batch ?? 1) !== 1) throw new InvalidOptionError('batch', 'the exported model is evaluated one sequence at a time');
    decoder.reset();
    const out = await decoder.forward(Array.from(input.ids));
    decoder.reset();
    return out;
  };
  const logitsAndNll = async (input: TokenBatch, targets: ArrayLike<number>) => {
    if (targets.length !== input.ids.length) throw new InvalidOptionError('targets', `${targets.length} targets for ${input.ids.length} token ids`);
    const out = await logits(input);
    return { logits: out, nll: nllFromLogits(out, config.vocabSize, targets) };
  };
  return {
    config,
    file,
    decoder,
    logits,
    async tokenNll(input, targets) {
      return (await logitsAndNll(input, targets)).nll;
    },
    logitsAndNll,
    dispose: () => decoder.dispose(),
  };
}

/**
 * A KV decoder for any model directory: an ONNX export runs its file; a quantized checkpoint runs the graph the
 * export would write (MatMulNBits, packed weights); a plain checkpoint runs the float graph.
 */
export async function openKvDecoder(dir: string, options: RuntimeOptions & OnnxExportOptions & { readonly quantizers?: QuantizerLookup['quantizers'] } = {}): Promise<{ decoder: KvDecoder; source: 'onnx' | 'quantized' | 'float'; file?: string }> {
  if (isOnnxExportDir(dir)) {
    const model = await openOnnxExport(dir, options);
    return { decoder: model.decoder, source: 'onnx', file: model.file };
  }
  const weights = await openModelWeights(dir, options.quantizers ? { quantizers: options.quantizers } : {});
  try {
    // The one config-vs-tensors check every command makes (a config with fewer layers would decode a truncated model).
    const { config } = await loadValidatedConfig(weights.dir, weights);
    // The packed-weight model's loader: graphs above 1 GiB go to onnxruntime as a temporary file with external data.
    // A quantizer whose codes MatMulNBits cannot hold runs in float, through its own dequantize (openPackedModel).
    const { quantizers: _quantizers, ...graphOptions } = options;
    const model = await openPackedModel(weights, config, { accuracyLevel: DEFAULT_ACCURACY_LEVEL, ...graphOptions });
    return { decoder: model.decoder, source: model.quantized ? 'quantized' : 'float' };
  } finally {
    await weights.close();
  }
}

/** What `layerquant inspect` reports about an ONNX export. */
export interface OnnxExportSummary {
  readonly file: string;
  readonly fileBytes: number;
  readonly externalDataBytes: number;
  readonly summary: OnnxFileSummary;
  /** Matrices in MatMulNBits nodes by `b{bits}g{block}` (stored widths; a stacked q/k/v node counts 3). */
  readonly matMulNBits: Readonly<Record<string, number>>;
  /** Linear weights (MatMulNBits K*N plus float linear matrices). */
  readonly linearParams: number;
  readonly linearMatrices: number;
  /** Bytes of the linear weights' initializers (codes, scales, zero points, corrections; float matrices). */
  readonly linearBytes: number;
}

const LINEAR_NAME = /^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight/;

/** Reads an export's ONNX file and checks its graph against the export's config.json (the check every open makes). */
export async function summarizeOnnxExport(dir: string, file?: string): Promise<OnnxExportSummary> {
  const config = await loadDecoderConfig(dir);
  const path = await findOnnxModel(dir, file);
  const bytes = new Uint8Array(await readFile(path));
  const summary = readOnnxSummary(bytes, path);
  checkDecoderGraph(summary.inputValues, summary.outputValues, config, { file: path, configFile: join(resolve(dir), 'config.json') });
  const dataPath = `${path}_data`;
  const matMulNBits: Record<string, number> = {};
  let linearParams = 0;
  let linearMatrices = 0;
  // The fused graph stacks q/k/v and gate/up into one node (or one float initializer) named `a+b+c`: count matrices.
  // A node of no linear matrix (a quantized lm_head, a MatMulNBits output projection) is not counted with them.
  const matricesIn = (name: string) => name.split('+').filter((part) => LINEAR_NAME.test(part)).length;
  for (const node of summary.nodes) {
    if (node.opType !== 'MatMulNBits') continue;
    if (![node.ints.K, node.ints.N, node.ints.bits, node.ints.block_size].every((v) => Number.isInteger(v) && v! > 0)) {
      throw new InvalidDataError(path, `MatMulNBits node "${node.name}" lacks its K, N, bits or block_size attribute; the file is corrupt, export the model again`);
    }
    const key = `b${node.ints.bits}g${node.ints.block_size}`;
    const count = matricesIn(node.name);
    if (count === 0) continue;
    matMulNBits[key] = (matMulNBits[key] ?? 0) + count;
    linearParams += node.ints.K! * node.ints.N!;
    linearMatrices += count;
  }
  let linearBytes = 0;
  for (const init of summary.initializers) {
    if (!LINEAR_NAME.test(init.name)) continue;
    linearBytes += init.bytes;
    if (/\.weight$/.test(init.name) && init.dims.length === 2) {
      linearParams += init.dims[0]! * init.dims[1]!;
      linearMatrices += matricesIn(init.name);
    }
  }
  return {
    file: path,
    fileBytes: bytes.byteLength,
    externalDataBytes: existsSync(dataPath) ? (await stat(dataPath)).size : 0,
    summary,
    matMulNBits,
    linearParams,
    linearMatrices,
    linearBytes,
  };
}
