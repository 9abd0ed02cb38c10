import { matrixOfTensorName } from '@layerquant/core';
import { isLinearGgufTensor, readGgufHeader } from '@layerquant/gguf/node';
import { isOnnxExportDir, summarizeOnnxExport } from '@layerquant/export';
import { isQuantizedMetadata } from '@layerquant/quantizers';
import { openQuantizedCheckpoint, summarizeQuantizedCheckpoint } from '@layerquant/quantizers/node';
import { loadDecoderConfig, openCheckpoint } from '@layerquant/tensor-io';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isGgufFile } from './evaluation-model.js';

export type DirectoryLayout = 'checkpoint' | 'layerquant-quantized-v1' | 'onnx' | 'gguf';

/** What a model, quantized or ONNX directory, or a GGUF file, holds, as inspect and compare report it. */
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
    // What ships is the whole file (graph and external data: embeddings, norms and lm_head included).
    const shipped = shippedSize('onnx', o.fileBytes + o.externalDataBytes, o.linearParams);
    return { layout: 'onnx', linearMatrices: o.linearMatrices, params: o.linearParams, sizes: sizes({ params: o.linearParams, diskBytes: o.linearBytes, fileBytes: o.fileBytes + o.externalDataBytes, shipped }), configs: o.matMulNBits, ...extra };
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

/** A GGUF file's sizes: its header validated; linear matrices per GGUF type and as stored; the file. */
async function ggufSizes(file: string): Promise<DirectorySizes> {
  const header = await readGgufHeader(file);
  const linear = header.tensors.filter((t) => isLinearGgufTensor(t.name));
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

const MIB = 2 ** 20;

/**
 * The sizes of a set of linear matrices, both ways: `paper` is the paper's accounting (8-bit scale and zero per
 * group, fp16 meta per 128 groups; null for a model that is not quantized), `disk` the bytes as layerquant stores them
 * (packed codes, scales and zeros in their stored dtype; float matrices as stored).
 */
export interface Sizes {
  readonly params: number;
  readonly paperBitsPerWeight: number | null;
  readonly paperMiB: number | null;
  /** null where the shapes are not known (allocate without --model). */
  readonly diskBitsPerWeight: number | null;
  readonly diskMiB: number | null;
  /** The weight files (safetensors, or the ONNX file and its external data) with every tensor, when known. */
  readonly fileMiB?: number;
  /** The file a user ships in a format (every byte of it), where one is known or predicted. */
  readonly shipped?: ShippedSize;
}

/**
 * The size of the model file a user ships in a format (ONNX: onnx/model_q4.onnx and its external data; GGUF: the
 * .gguf), every byte of it: embeddings, norms and graph included. bitsPerWeight is the file's bits per linear weight.
 */
export interface ShippedSize {
  readonly format: string;
  readonly MiB: number;
  readonly bitsPerWeight: number;
  /** The format cost model's prediction before the file was written (equal to the bytes on disk). */
  readonly predictedMiB?: number;
  /** The target the allocation was made for (--target-size, or --target-bpw as MiB). */
  readonly targetMiB?: number;
}

/** A ShippedSize from bytes. */
export function shippedSize(format: string, bytes: number, linearParams: number, extra: { predictedBytes?: number; targetBytes?: number } = {}): ShippedSize {
  return {
    format,
    MiB: bytes / MIB,
    bitsPerWeight: linearParams > 0 ? (8 * bytes) / linearParams : 0,
    ...(extra.predictedBytes === undefined ? {} : { predictedMiB: extra.predictedBytes / MIB }),
    ...(extra.targetBytes === undefined ? {} : { targetMiB: extra.targetBytes / MIB }),
  };
}

export function sizes(input: { params: number; paperBitsPerWeight?: number | null; diskBytes?: number | null; fileBytes?: number; shipped?: ShippedSize }): Sizes {
  const paper = input.paperBitsPerWeight ?? null;
  return {
    params: input.params,
    paperBitsPerWeight: paper,
    paperMiB: paper === null ? null : (paper * input.params) / 8 / MIB,
    diskBitsPerWeight: input.diskBytes == null ? null : input.params > 0 ? (8 * input.diskBytes) / input.params : 0,
    diskMiB: input.diskBytes == null ? null : input.diskBytes / MIB,
    ...(input.fileBytes === undefined ? {} : { fileMiB: input.fileBytes / MIB }),
    ...(input.shipped ? { shipped: input.shipped } : {}),
  };
}

/** The per-layer boost report of a SensiBoost / KurtBoost / ablation allocation (undefined for other methods). */
export interface BoostReport {
  readonly baseConfig: string;
  readonly boostConfig: string;
  /** One entry per boosted (layer, module), layers ascending; zScore null for the ablation's random layers. */
  readonly layers: ReadonlyArray<{ readonly layer: number; readonly module: string; readonly config: string; readonly zScore: number | null }>;
}

interface BoostFields {
  readonly method?: string;
  readonly baseConfig?: unknown;
  readonly boostConfig?: unknown;
  readonly boosted?: Readonly<Record<string, readonly number[]>>;
  readonly outliers?: Readonly<Record<string, ReadonlyArray<{ readonly layer: number; readonly zScore: number }>>>;
}

export function boostReport(allocation: BoostFields): BoostReport | undefined {
  if (!allocation.boosted || typeof allocation.boostConfig !== 'string') return undefined;
  const layers: Array<BoostReport['layers'][number]> = [];
  for (const [module, list] of Object.entries(allocation.boosted)) {
    for (const layer of list) {
      const z = allocation.method === 'ablation' ? undefined : allocation.outliers?.[module]?.find((o) => o.layer === layer)?.zScore;
      layers.push({ layer, module, config: allocation.boostConfig, zScore: z ?? null });
    }
  }
  layers.sort((a, b) => a.layer - b.layer || a.module.localeCompare(b.module));
  return { baseConfig: String(allocation.baseConfig), boostConfig: allocation.boostConfig, layers };
}

