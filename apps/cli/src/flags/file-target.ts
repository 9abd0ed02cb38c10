import { InvalidOptionError, parseConfigList, type QuantConfig, type Quantizer } from '@layerquant/core';
import { onnxCostModel, type OnnxFileOptions } from '@layerquant/export';
import { ggufCostModel } from '@layerquant/gguf/node';
import { formatPlan, type ExportRequest, type FileTarget, type FormatPlan } from '@layerquant/pipeline';
import { openModel } from '@layerquant/tensor-io';
import { basename } from 'node:path';
import { parseNumberOption, stringOption, type ParsedArgs } from '../args.js';

/** The flags of an allocation to a shipped file's size (quantize --format onnx, allocate --target-format onnx). */
export const FILE_TARGET_FLAGS = {
  'target-size': { type: 'string' },
  'target-bpw': { type: 'string' },
  'embedding-configs': { type: 'string' },
} as const;

/**
 * --target-format onnx|gguf: the format a statistics table, allocation or grid is for, or undefined; --tokenizer-pre
 * only with gguf. Errors name the flag.
 */
export function parseTargetFormat(values: ParsedArgs['values']): ExportRequest['format'] | undefined {
  const format = stringOption(values, 'target-format');
  if (format !== undefined && format !== 'onnx' && format !== 'gguf') throw new InvalidOptionError('--target-format', `"${format}" is not a format layerquant allocates for; use onnx or gguf`);
  if (stringOption(values, 'tokenizer-pre') !== undefined && format !== 'gguf') throw new InvalidOptionError('--tokenizer-pre', 'is a GGUF option: give --target-format gguf');
  return format;
}

/**
 * The export request of a --target-format's file as `quantize --format` writes it for `modelDir`: GGUF's name (the
 * model directory's) and --tokenizer-pre are part of its bytes; ONNX with its default options.
 */
export function targetFormatRequest(format: ExportRequest['format'], modelDir: string, values: ParsedArgs['values']): ExportRequest {
  const pre = stringOption(values, 'tokenizer-pre');
  return format === 'gguf' ? { format: 'gguf', options: { name: basename(modelDir), ...(pre ? { tokenizerPre: pre } : {}) } } : { format: 'onnx', options: {} };
}

/** --embedding-configs <list> | float: embed_tokens' and lm_head's ladder in a file-size allocation, or float. */
export function parseEmbeddingConfigs(values: ParsedArgs['values']): readonly QuantConfig[] | 'float' | undefined {
  const text = stringOption(values, 'embedding-configs');
  if (text === undefined) return undefined;
  return text.trim() === 'float' ? 'float' : parseConfigList(text, '--embedding-configs');
}

/** --target-size <MiB> or --target-bpw <bits per linear weight> (of the shipped file), or undefined. */
export function parseFileTarget(values: ParsedArgs['values']): FileTarget | undefined {
  const size = stringOption(values, 'target-size');
  const bpw = stringOption(values, 'target-bpw');
  if (size !== undefined && bpw !== undefined) throw new InvalidOptionError('--target-bpw', 'give either --target-size or --target-bpw, not both');
  if (size !== undefined) return { sizeMiB: parseNumberOption(size, '--target-size', Number.NaN, (n) => n > 0) };
  if (bpw !== undefined) return { bitsPerWeight: parseNumberOption(bpw, '--target-bpw', Number.NaN, (n) => n > 0) };
  return undefined;
}

/** The ONNX export's plan for a model and quantizer: its exact cost model and native ladders (a user's --configs checked). */
export async function onnxPlan(
  modelDir: string,
  options: OnnxFileOptions,
  quantizer: Pick<Quantizer, 'id' | 'zeroKinds' | 'calibration'>,
  ladder: readonly QuantConfig[] | undefined,
  embeddings?: readonly QuantConfig[] | 'float',
): Promise<FormatPlan> {
  const model = await openModel(modelDir);
  await model.checkpoint.close();
  return formatPlan(onnxCostModel(model.config, model.layout, options), quantizer, ladder, embeddings);
}

/**
 * The plan of an allocation for the file an export request writes: ONNX's cost model, or GGUF's for the quantizer
 * (the ggml quantizer's llama.cpp types, an affine quantizer's exact legacy blocks), with their native ladders.
 */
export async function shippedPlan(
  modelDir: string,
  request: ExportRequest,
  quantizer: Pick<Quantizer, 'id' | 'zeroKinds' | 'calibration' | 'packedLayout'>,
  ladder: readonly QuantConfig[] | undefined,
  embeddings?: readonly QuantConfig[] | 'float',
): Promise<FormatPlan> {
  if (request.format === 'onnx') return onnxPlan(modelDir, request.options, quantizer, ladder, embeddings);
  const cost = await ggufCostModel(modelDir, quantizer, { ...(request.options.name ? { name: request.options.name } : {}), ...(request.options.tokenizerPre ? { tokenizerPre: request.options.tokenizerPre } : {}) });
  return formatPlan(cost, quantizer, ladder, embeddings);
}
