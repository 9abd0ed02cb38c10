import { readGgufHeader } from '@layerquant/gguf/node';
import { isGgufFile } from './evaluation-model.js';
import { matrixOfTensorName } from '@layerquant/core';
import { isOnnxExportDir, summarizeOnnxExport } from '@layerquant/export';
import { isQuantizedMetadata } from '@layerquant/quantizers';
import { openQuantizedCheckpoint, summarizeQuantizedCheckpoint } from '@layerquant/quantizers/node';
import { loadDecoderConfig, openCheckpoint } from '@layerquant/tensor-io';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { boostReport, sizes, type BoostReport, type Sizes } from './output.js';

export type DirectoryLayout = 'checkpoint' | 'layerquant-quantized-v1' | 'onnx' | 'gguf';

/** What a model, quantized or ONNX directory holds, as inspect and compare report it. */
export interface DirectorySizes {
  readonly layout: DirectoryLayout;
  readonly linearMatrices: number;
  /** Every parameter of the model (quantized matrices at their original shapes). */
  readonly params: number;
  /** The linear matrices: paper accounting (null for a float checkpoint) and on disk. */
  readonly sizes: Sizes;
  /** Matrices per config (`float` for those kept in float); empty for a float checkpoint. */
  readonly configs: Readonly<Record<string, number>>;
  /** The boost report of quantization.json, when the directory was quantized by a boost. */
  readonly boosts?: BoostReport;
}

/** The boost report saved in <dir>/quantization.json by `layerquant quantize --method sensiboost|kurtboost|ablation`. */
export async function savedBoostReport(dir: string): Promise<BoostReport | undefined> {
  const file = join(dir, 'quantization.json');
  if (!existsSync(file)) return undefined;
  try {
    const saved = JSON.parse(await readFile(file, 'utf8')) as { allocation?: Parameters<typeof boostReport>[0] };
    return saved.allocation ? boostReport(saved.allocation) : undefined;
  } catch {
    return undefined; // a damaged report only loses the boost lines; the weights are read from the checkpoint
  }
}

export async function directorySizes(dir: string): Promise<DirectorySizes> {
  if (isGgufFile(dir)) return ggufSizes(dir);
  // config.json first, as every command reads a model: a directory that is not one fails naming that file.
  await loadDecoderConfig(dir);
  const boosts = await savedBoostReport(dir);
  const extra = boosts ? { boosts } : {};
  if (isOnnxExportDir(dir)) {
    const o = await summarizeOnnxExport(dir);
    return { layout: 'onnx', linearMatrices: o.linearMatrices, params: o.linearParams, sizes: sizes({ params: o.linearParams, diskBytes: o.linearBytes, fileBytes: o.fileBytes + o.externalDataBytes }), configs: o.matMulNBits, ...extra };
  }
  const checkpoint = await openCheckpoint(dir);
  const quantized = isQuantizedMetadata(checkpoint.metadata);
  // The weight files as they lie on disk (headers included), as quantize reports the file it wrote.
  const fileBytes = checkpoint.files.reduce((s, f) => s + statSync(f).size, 0);
  if (!quantized) {
    const linear = checkpoint.tensors.filter((t) => matrixOfTensorName(t.name) !== undefined);
    await checkpoint.close();
    const params = linear.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    return { layout: 'checkpoint', linearMatrices: linear.length, params: checkpoint.tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0), sizes: sizes({ params, diskBytes: linear.reduce((s, t) => s + t.byteLength, 0), fileBytes }), configs: {}, ...extra };
  }
  await checkpoint.close();
  const q = await openQuantizedCheckpoint(dir);
  try {
    const s = summarizeQuantizedCheckpoint(q);
    return {
      layout: 'layerquant-quantized-v1',
      linearMatrices: s.linearMatrices,
      params: s.params,
      sizes: sizes({ params: s.linearParams, paperBitsPerWeight: s.paperBitsPerWeight, diskBytes: s.linearBytes, fileBytes }),
      configs: s.configs,
      ...extra,
    };
  } finally {
    await q.close();
  }
}

/** The decoder layers' linear matrices of a GGUF file, by llama.cpp's names. */
export const LINEAR_GGUF_TENSOR = /^blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$/;

/** A GGUF file's sizes: its header validated; linear matrices per GGUF type and as stored; the file. */
async function ggufSizes(file: string): Promise<DirectorySizes> {
  const header = await readGgufHeader(file);
  const linear = header.tensors.filter((t) => LINEAR_GGUF_TENSOR.test(t.name));
  const configs: Record<string, number> = {};
  for (const t of linear) configs[t.type.name] = (configs[t.type.name] ?? 0) + 1;
  const params = linear.reduce((sum, t) => sum + t.elements, 0);
  return {
    layout: 'gguf',
    linearMatrices: linear.length,
    params: header.tensors.reduce((sum, t) => sum + t.elements, 0),
    sizes: sizes({ params, diskBytes: linear.reduce((sum, t) => sum + t.byteLength, 0), fileBytes: header.fileSize }),
    configs,
  };
}
