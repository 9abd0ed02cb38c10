import {
  DTYPE_BYTES,
  InvalidOptionError,
  configName,
  isEmbeddingUnit,
  isLinearModule,
  type Allocation,
  type MatrixKey,
  type QuantConfig,
  type Quantizer,
} from '@layerquant/core';
import { checkFinite, isModelFileSetEntry, loadValidatedConfig, openCheckpoint, writeFileSet, writeSafetensorsStreaming, writeTextAtomic, type TensorSpec } from '@layerquant/tensor-io';
import { copyFile, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MODEL_LOADER_FILES, QUANTIZATION_REPORT_FILE, QUANTIZED_WEIGHTS_FILE } from './file-names.js';
import { matrixMemory, modelMemory } from './memory-accounting.js';
import {
  COLUMN_BITS_SUFFIX,
  QWEIGHT_SUFFIX,
  encodeQuantizedMetadata,
  metadataOfQuantized,
  quantizedTensorSpecs,
  type QuantizedTensorMetadata,
  type ScaleDtype,
} from './checkpoint-format.js';
import { createKernelPool, type KernelPool } from './kernel-worker-pool.js';
import { isKernelQuantizer } from './quantizers.js';
import { isPooledQuantizer } from './gptq.js';
import { checkScaleDtype } from './scale-storage.js';

import { checkCalibration, layerOrder, planUnits, quantizeUnits, type MatrixCalibration, type ModelMatrix, type UnitPlan } from './quantize-units.js';

export type { MatrixCalibration, ModelMatrix } from './quantize-units.js';

export interface QuantizeProgress {
  /** Matrices finished so far (quantized or kept in float). */
  readonly done: number;
  readonly total: number;
  readonly key: MatrixKey;
  readonly config: string | null;
}

export interface QuantizeModelOptions {
  readonly modelDir: string;
  readonly outDir: string;
  readonly quantizer: Quantizer;
  /** The config of each linear matrix; `null` leaves it in float (copied as stored). */
  readonly configFor: (key: MatrixKey, matrix: ModelMatrix) => QuantConfig | null;
  /**
   * Ask configFor about the embedding units too (`embed_tokens`, and `lm_head` where it is not tied), so an allocation
   * for a shipped format can quantize them; default false: they are copied as stored.
   */
  readonly embeddingUnits?: boolean;
  /** Name recorded in the checkpoint and report (e.g. `uniform`, `sensiboost`); default the quantizer's id. */
  readonly method?: string;
  /** The allocation that produced configFor, saved in quantization.json. */
  readonly allocation?: Allocation;
  /**
   * Storage of scales and zeros: F32 (default), F16 (half the metadata bytes) or U8 (8-bit codes with fp16 ranges, the
   * paper's accounting; scale-storage.ts). Both are rounded to their stored form before the error is measured, so sqErr
   * includes what the storage adds.
   */
  readonly scaleDtype?: ScaleDtype;
  /**
   * Statistics for a calibrated quantizer (required when `quantizer.calibration` is set). The matrices are then
   * quantized, and written, in layer order (q, k, v, o, gate, up, down), one after another.
   */
  readonly calibration?: MatrixCalibration;
  /** Settings recorded in `__metadata__["layerquant.options"]`. */
  readonly options?: Readonly<Record<string, unknown>>;
  readonly onProgress?: (progress: QuantizeProgress) => void;
  /** Called once every tensor is planned and every config validated, before the first matrix is read. */
  readonly onPlan?: (plan: { readonly matrices: number; readonly quantizedMatrices: number; readonly params: number }) => void;
  /**
   * Worker threads for the built-in quantizers (rtn, hqq with the WebAssembly kernel; gptq and baq's column loops):
   * matrices are quantized ahead on a pool while earlier ones are written. Default 1 (in the calling thread); results
   * are bit-identical.
   */
  readonly workers?: number;
}

export interface MatrixReport {
  readonly key: MatrixKey;
  readonly name: string;
  readonly shape: readonly [number, number];
  readonly config: string | null;
  readonly params: number;
  /** sum (dequant(quant(W)) - W)^2; 0 for a matrix kept in float. */
  readonly sqErr: number;
  readonly paperBitsPerWeight: number;
  readonly packedBytes: number;
  readonly seconds: number;
  /** What the quantizer said about the matrix (e.g. GPTQ's dead columns and dampening). */
  readonly report?: Readonly<Record<string, number>>;
}

export interface QuantizeModelReport {
  readonly method: string;
  readonly quantizer: string;
  readonly modelDir: string;
  readonly outDir: string;
  /** Linear matrices (quantized or kept in float). */
  readonly matrices: number;
  readonly quantizedMatrices: number;
  readonly params: number;
  /** Paper bits per weight over all linear matrices (float ones count 16). */
  readonly bpp: number;
  /** Paper memory of the linear matrices, MB (2^20 bytes). */
  readonly paperMB: number;
  /** Real bytes of the linear matrices as stored: packed codes + scales and zeros as scaleDtype stores them (+ float matrices as stored). */
  readonly bytes: number;
  /** Size of the written model.safetensors (everything, embeddings and norms included). */
  readonly fileBytes: number;
  /** Sum over all quantized matrices of the squared dequantization error. */
  readonly sqErr: number;
  /** Wall time of the whole run (read, quantize, write). */
  readonly seconds: number;
  /** Time in quantize() only (with workers: summed over matrices, which overlap). */
  readonly quantizeSeconds: number;
  /** Worker threads used (1 = the calling thread). */
  readonly workers: number;
  /** How scales and zeros are stored. */
  readonly scaleDtype: ScaleDtype;
  readonly perMatrix: readonly MatrixReport[];
}



/**
 * Quantizes every linear matrix of a Hugging Face checkpoint with its config and writes a self-contained quantized
 * directory: model.safetensors (packed codes, scales and zeros per matrix; other tensors copied), the files loaders
 * read (MODEL_LOADER_FILES: config.json, generation_config.json, tokenizer files) copied, quantization.json (report + allocation + the list of files written). Streams one matrix at
 * a time: peak memory is a few copies of the largest tensor, not of the model. config.json is validated against the
 * tensors first; a NaN or infinity in a weight stops the run with a NonFiniteWeightError. The set is written into a
 * staging directory and swapped in by renames (tensor-io's writeFileSet), replacing the whole model file set of
 * `outDir` (isModelFileSetEntry: every safetensors file and index, loader files, report, onnx folder), so it never holds
 * the weights of one run beside the report, config, tokenizer or stale shards of another; its other files (a statistics
 * cache, the user's notes) are kept.
 */
export async function quantizeModel(options: QuantizeModelOptions): Promise<QuantizeModelReport> {
  const start = performance.now();
  const modelDir = resolve(options.modelDir);
  const outDir = resolve(options.outDir);
  const method = options.method ?? options.quantizer.id;
  const workers = options.workers ?? 1;
  const scaleDtype = checkScaleDtype(options.scaleDtype ?? 'F32');
  if (options.quantizer.packedLayout === 'ggml' && scaleDtype !== 'F32') {
    // its scales and zeros are llama.cpp's exact block multipliers, which the GGUF export factors back into blocks
    throw new InvalidOptionError('--scale-dtype', `${scaleDtype.toLowerCase()} would round the exact block multipliers quantizer "${options.quantizer.id}" stores (llama.cpp's blocks are rebuilt from them); use f32`);
  }
  if (!Number.isInteger(workers) || workers < 1) throw new InvalidOptionError('workers', `${workers} must be a positive integer`);
  const calibration = options.calibration;
  checkCalibration(options.quantizer, calibration);
  const checkpoint = await openCheckpoint(modelDir);
  let pool: KernelPool | undefined;
  try {
    if (resolve(checkpoint.dir) === outDir) {
      throw new InvalidOptionError('--out', `${outDir} is the model directory itself; write the quantized model to another directory`);
    }
    // config.json must describe these weights (architecture, layers, shapes) before anything is planned.
    await loadValidatedConfig(checkpoint.dir, checkpoint);
    // Plan every tensor and validate every config before anything is written.
    const plans: ReadonlyMap<string, UnitPlan> = planUnits(checkpoint.tensors, options.configFor, { embeddingUnits: options.embeddingUnits === true });
    let specs: TensorSpec[] = [];
    for (const info of checkpoint.tensors) {
      const config = plans.get(info.name)?.config;
      if (config) specs.push(...quantizedTensorSpecs(info.name, [info.shape[0]!, info.shape[1]!], config, scaleDtype, options.quantizer.columnBits === true));
      else specs.push({ name: info.name, dtype: info.dtype, shape: info.shape });
    }
    if (plans.size === 0) {
      throw new InvalidOptionError('model-dir', `${modelDir} has no linear weights named model.layers.<i>.<module>.weight; is it a Llama-family checkpoint?`);
    }
    // Safetensors readers find tensors by name, so the file order is free: a calibrated quantizer's units are written in
    // the order they must be quantized.
    if (calibration) specs = layerOrder(specs, (spec) => spec.name);

    const quantizedPlans = [...plans.values()].filter((p) => p.config !== null);
    options.onPlan?.({
      matrices: plans.size,
      quantizedMatrices: quantizedPlans.length,
      params: quantizedPlans.reduce((sum, p) => sum + p.matrix.shape[0] * p.matrix.shape[1], 0),
    });

    const allocation: Record<MatrixKey, string | null> = {};
    const tensorsMetadata: Record<string, QuantizedTensorMetadata> = {};
    for (const { matrix, config, dtype } of plans.values()) {
      allocation[matrix.key] = config ? configName(config) : null;
      if (config) {
        const { bits, groupSize, axis, roundZero, symmetric } = config;
        tensorsMetadata[matrix.name] = Object.freeze({
          shape: matrix.shape, bits, groupSize, axis, roundZero, ...(symmetric ? { symmetric } : {}), dtype,
          ...(scaleDtype !== 'F32' ? { scaleDtype } : {}),
          ...(options.quantizer.columnBits ? { columnBits: true as const } : {}),
        });
      }
    }

    // The whole model file set of --out goes (stale shards, an index, an ONNX folder of an earlier model included), and
    // nothing else (a statistics cache, the user's files): a name list from the previous report is never trusted.
    const { result: report } = await writeFileSet(outDir, (staging) => writeOutput(staging), { replace: isModelFileSetEntry, last: QUANTIZATION_REPORT_FILE });
    return report;

    async function writeOutput(staging: string): Promise<QuantizeModelReport> {
      const perMatrix: MatrixReport[] = [];
      let quantizeSeconds = 0;
      let pending: { name: string; tensors: ReadonlyMap<string, Uint8Array> } | undefined;
      const total = plans.size;
      const finish = (report: MatrixReport) => {
        perMatrix.push(report);
        options.onProgress?.({ done: perMatrix.length, total, key: report.key, config: report.config });
      };
      const bytesOf = (array: Float32Array | Uint32Array | Uint16Array) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength);

      // The units come in the order the writer asks for them (the checkpoint's, in layer order when calibrated, as the
      // specs are); with a pool, up to `workers + 1` of them are quantized ahead.
      const quantizer = options.quantizer;
      if (workers > 1 && (isKernelQuantizer(quantizer) || isPooledQuantizer(quantizer))) pool = createKernelPool(workers);
      /** The unit a spec carries: a quantized unit's codes, or a float unit's tensor. */
      const unitName = (spec: TensorSpec): string | undefined => {
        const codesOf = spec.name.endsWith(QWEIGHT_SUFFIX) ? spec.name.slice(0, -QWEIGHT_SUFFIX.length) : undefined;
        if (codesOf !== undefined && plans.get(codesOf)?.config) return codesOf;
        return plans.get(spec.name)?.config === null ? spec.name : undefined;
      };
      const units = quantizeUnits({ plans, read: (name) => checkpoint.read(name), quantizer, ...(calibration ? { calibration } : {}), scaleDtype, ...(pool ? { pool } : {}) });
      const nextUnit = async (name: string) => {
        const step = await units.next();
        if (step.done || step.value.plan.matrix.name !== name) throw new Error(`internal: the writer asked for ${name}, the units came as ${step.done ? 'done' : step.value.plan.matrix.name}`);
        return step.value;
      };

      await writeSafetensorsStreaming(
        join(staging, QUANTIZED_WEIGHTS_FILE),
        specs,
        async (spec) => {
          const name = unitName(spec);
          const unit = name === undefined ? undefined : await nextUnit(name);
          if (unit?.quantized) {
            const { matrix, config, dtype } = unit.plan;
            const { quantized, stored: storedValues, sqErr, seconds } = unit;
            quantizeSeconds += seconds;
            const entry = metadataOfQuantized(quantized, dtype);
            if (entry.bits !== config.bits || entry.groupSize !== config.groupSize) {
              throw new InvalidOptionError('quantizer', `"${quantizer.id}" returned ${configName(quantized.config)} for ${name}, asked for ${configName(config)}`);
            }
            const memory = matrixMemory(matrix.shape, config, 2, scaleDtype);
            const tensors = new Map(storedValues.tensors);
            if (quantizer.columnBits) {
              if (quantized.columnBits?.length !== matrix.shape[1]) {
                throw new InvalidOptionError('quantizer', `"${quantizer.id}" declares a code width per column but gave ${quantized.columnBits?.length ?? 'none'} for the ${matrix.shape[1]} columns of ${name}`);
              }
              tensors.set(COLUMN_BITS_SUFFIX, quantized.columnBits);
            }
            finish({
              key: matrix.key, name: matrix.name, shape: matrix.shape, config: configName(config), params: memory.params,
              sqErr,
              paperBitsPerWeight: memory.paperBitsPerWeight, packedBytes: memory.packedBytes + (quantizer.columnBits ? matrix.shape[1] : 0), seconds,
              ...(quantized.report ? { report: quantized.report } : {}),
            });
            pending = { name: matrix.name, tensors };
            return bytesOf(quantized.packed);
          }
          const storedPart = pending && spec.name.startsWith(pending.name) ? pending.tensors.get(spec.name.slice(pending.name.length)) : undefined;
          if (storedPart) return storedPart;
          const raw = await checkpoint.readRaw(spec.name);
          checkFinite(spec.name, checkpoint.info(spec.name).file, spec.dtype, spec.shape, raw);
          if (unit) {
            const plan = unit.plan;
            const memory = matrixMemory(plan.matrix.shape, null, DTYPE_BYTES[plan.dtype]);
            finish({
              key: plan.matrix.key, name: spec.name, shape: plan.matrix.shape, config: null, params: memory.params, sqErr: 0,
              paperBitsPerWeight: memory.paperBitsPerWeight, packedBytes: memory.packedBytes, seconds: 0,
            });
          }
          return raw;
        },
        encodeQuantizedMetadata({ method, quantizer: options.quantizer.id, allocation, tensors: tensorsMetadata, options: { quantizer: options.quantizer.id, ...options.options } }),
      );

      for (const entry of await readdir(checkpoint.dir, { withFileTypes: true })) {
        if (entry.isFile() && MODEL_LOADER_FILES.includes(entry.name)) await copyFile(join(checkpoint.dir, entry.name), join(staging, entry.name));
      }

      // The paper's accounting covers the linear matrices; quantized embedding units are reported per matrix.
      const totals = modelMemory([...plans.values()].filter(({ matrix }) => isLinearModule(matrix.module)).map(({ matrix, config }) => ({ shape: matrix.shape, config })));
      const report: QuantizeModelReport = Object.freeze({
        method,
        quantizer: quantizer.id,
        modelDir,
        outDir,
        matrices: perMatrix.length,
        quantizedMatrices: perMatrix.filter((m) => m.config !== null).length,
        params: totals.params,
        bpp: totals.paperBitsPerWeight,
        paperMB: totals.paperMB,
        bytes: perMatrix.filter((m) => !isEmbeddingUnit(m.key)).reduce((sum, m) => sum + m.packedBytes, 0),
        fileBytes: (await stat(join(staging, QUANTIZED_WEIGHTS_FILE))).size,
        sqErr: perMatrix.reduce((sum, m) => sum + m.sqErr, 0),
        seconds: (performance.now() - start) / 1000,
        quantizeSeconds,
        workers: pool ? pool.size : 1,
        scaleDtype,
        perMatrix: Object.freeze(perMatrix),
      });
      const files = [...(await readdir(staging)), QUANTIZATION_REPORT_FILE].sort();
      await writeTextAtomic(
        join(staging, QUANTIZATION_REPORT_FILE),
        `${JSON.stringify({ ...report, files, allocation: options.allocation ?? { method, matrices: allocation } }, null, 1)}\n`,
      );
      return report;
    }
  } finally {
    await pool?.close();
    await checkpoint.close();
  }
}
