import { InvalidDataError, InvalidOptionError, MissingFileError, MissingTensorError, configName, matrixOfTensorName, unitOfTensorName, type DecoderConfig } from '@layerquant/core';
import { MODEL_LOADER_FILES, QUANTIZATION_REPORT_FILE, openModelWeights, type QuantizedCheckpoint, type QuantizerLookup } from '@layerquant/quantizers/node';
import {
  EMBED_TOKENS,
  LM_HEAD,
  buildDecoderGraph,
  checkSupportedConfig,
  decoderLayout,
  encodeModel,
  encodeModelWithExternalData,
  expectedShapes,
  type ActivationType,
  type DecoderLayout,
  type DecoderOperators,
  type GraphBuilder,
  type GraphWeight,
} from '@layerquant/runtime';
import { checkTokenizerFiles, copyFileAtomic, float32ToF16Bits, isModelFileSetEntry, loadValidatedConfig, openOutputDirectory, writeFileAtomic, writeFileSet, writeTextAtomic, type Checkpoint, type OutputDirectory } from '@layerquant/tensor-io';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { UnsupportedExportError, toMatMulNBits } from './matmul-nbits.js';
import { DEFAULT_EXPORT_SCALE_TYPE, DEFAULT_OPERATORS, EXTERNAL_DATA_THRESHOLD, type FloatType, type ScaleType } from './onnx-cost.js';
export { DEFAULT_OPERATORS, EXTERNAL_DATA_THRESHOLD, type FloatType } from './onnx-cost.js';


export interface OnnxExportOptions {
  /**
   * MatMulNBits scales: float16 (the export's default, DEFAULT_EXPORT_SCALE_TYPE: half the scale bytes) or float32;
   * buildModelGraph alone (packed-weight evaluation) defaults to the activation type.
   */
  readonly scaleType?: ScaleType;
  /** embed_tokens and lm_head storage (default: the activation type). */
  readonly embeddingType?: FloatType;
  /** MatMulNBits accuracy_level (default 4: int8 activations inside the kernel; 0: float activations, exact). */
  readonly accuracyLevel?: 0 | 4;
  /** Activations and KV cache: float32 (default, `model_q4.onnx`) or float16 (`model_q4f16.onnx`, for WebGPU). */
  readonly activations?: ActivationType;
  /**
   * Matrices of a quantizer whose packed layout is not the affine one MatMulNBits holds (`packedLayout` absent):
   * `'error'` (default, the export) refuses them with an UnsupportedExportError; `'float'` (generate) reads them
   * through the recorded quantizer's dequantize and keeps them as float Gemms.
   */
  readonly otherLayouts?: 'error' | 'float';
  /**
   * `fused` (the export's default): onnxruntime's contrib operators (GroupQueryAttention, SkipSimplifiedLayerNormalization,
   * one MatMulNBits for q/k/v and for gate/up); `standard`: opset-17 operators and MatMulNBits only, for runtimes
   * without those contrib operators (runtime README).
   */
  readonly operators?: DecoderOperators;
}

/** The accuracy level an export uses unless told otherwise; bench/README.md gives the speed and perplexity figures. */
export const DEFAULT_ACCURACY_LEVEL = 4;

/** A linear matrix or embedding unit (embed_tokens, lm_head) of an export: how the file stores it. */
export interface ExportedMatrix {
  readonly name: string;
  readonly shape: readonly [number, number];
  /** Config of the quantized checkpoint (`b3g64`), or null for a matrix kept in float. */
  readonly config: string | null;
  /** MatMulNBits bits (3-bit codes are stored as 4-bit ones). */
  readonly storedBits: number | null;
  readonly zeroCorrection: boolean;
  readonly bytes: number;
}

/** The graph of a model directory (quantized or float) as the export writes it, before serialization. */
export interface ExportGraph {
  readonly config: DecoderConfig;
  readonly layout: DecoderLayout;
  readonly graph: GraphBuilder;
  readonly matrices: readonly ExportedMatrix[];
  /** Whether any linear matrix is packed (names the file `model_q4*.onnx`; else `model*.onnx`). */
  readonly quantized: boolean;
}

function toFloatWeight(data: Float32Array, type: FloatType): GraphWeight {
  return type === 'float16' ? { format: 'float16', data: float32ToF16Bits(data) } : data;
}

/**
 * What buildModelGraph reads: a checkpoint, a quantized checkpoint, or a source that quantizes on read (experiment
 * cells). A source with quantized matrices names their `quantizer` (its packedLayout decides whether the codes go into
 * MatMulNBits; one that names none is taken to hold affine codes); `read` of a quantized matrix gives the weights the
 * model holds (that quantizer's dequantize).
 */
export type ModelGraphSource = Pick<Checkpoint, 'has' | 'read' | 'dir'> & Partial<Pick<QuantizedCheckpoint, 'isQuantized' | 'readQuantized' | 'quantizer' | 'readScaleMultipliers'>>;

/**
 * Builds the KV-cache decoder graph of an opened model: quantized matrices become MatMulNBits weights, matrices kept
 * in float stay Gemms, everything else float. Used by the export and by `generate` (the same graph either way).
 */
export async function buildModelGraph(
  source: ModelGraphSource,
  config: DecoderConfig,
  options: OnnxExportOptions = {},
): Promise<ExportGraph> {
  checkSupportedConfig(config);
  const activations = options.activations ?? 'float32';
  const embeddingType = options.embeddingType ?? activations;
  const scaleType = options.scaleType ?? activations;
  const layout = decoderLayout(config, source);
  const weights = new Map<string, GraphWeight>();
  const matrices: ExportedMatrix[] = [];
  // The codes go into MatMulNBits as they are only where the quantizer that wrote them says they are affine (a
  // quantized checkpoint always names it; a source that names none packed affine codes itself, as the tests do).
  const quantizer = source.isQuantized ? source.quantizer?.() : undefined;
  const packedAffine = source.isQuantized !== undefined && (source.quantizer === undefined || quantizer?.packedLayout === 'affine');
  if (source.isQuantized && !packedAffine && (options.otherLayouts ?? 'error') === 'error') {
    throw new UnsupportedExportError(
      source.dir,
      `was quantized by "${quantizer?.id ?? 'an unnamed quantizer'}", whose stored codes are not the affine (code - zero) / scale layout ONNX MatMulNBits holds (the plug-in declares no packedLayout 'affine'${quantizer?.columnBits ? '; it gives the input columns of a matrix different code widths, and MatMulNBits holds one width per matrix' : ''}); evaluate it with \`layerquant eval\`, which reads it through that quantizer's dequantize, or quantize with rtn, hqq or gptq to export`,
    );
  }
  // Otherwise (otherLayouts 'float') such matrices are read through `read`: the quantizer's dequantized weights.
  const isQuantized = (name: string) => packedAffine && source.isQuantized?.(name) === true;
  for (const [name, shape] of expectedShapes(config, layout)) {
    if (!source.has(name)) throw new MissingTensorError(name, source.dir, 'the checkpoint does not match its config.json');
    const linear = unitOfTensorName(name) !== undefined;
    if (isQuantized(name)) {
      const q = await source.readQuantized!(name);
      if (name === EMBED_TOKENS && !q.config.roundZero && !q.config.symmetric) {
        throw new UnsupportedExportError(name, `is quantized with fractional zero points (${configName(q.config)}); the embedding lookup (GatherBlockQuantized) takes integer zero points only: quantize embed_tokens with an -int or -sym config`);
      }
      // 8-bit stored scales (u8): the exact multipliers the checkpoint decodes, not a re-derivation from 1/s.
      const multipliers = source.readScaleMultipliers ? await source.readScaleMultipliers(name) : undefined;
      const packed = toMatMulNBits(q, { scaleType, ...(multipliers ? { multipliers } : {}) });
      weights.set(name, packed.weight);
      matrices.push({ name, shape: q.shape, config: configName(q.config), storedBits: packed.storedBits, zeroCorrection: packed.zeroCorrection, bytes: packed.bytes });
      continue;
    }
    const tensor = await source.read(name);
    const type = name === EMBED_TOKENS || name === LM_HEAD ? embeddingType : 'float32';
    weights.set(name, toFloatWeight(tensor.data, type));
    if (linear) {
      matrices.push({ name, shape: [shape[0]!, shape[1]!], config: null, storedBits: null, zeroCorrection: false, bytes: tensor.data.byteLength });
    }
  }
  const graph = buildDecoderGraph(config, layout, {
    weights,
    kvCache: true,
    activations,
    accuracyLevel: options.accuracyLevel ?? DEFAULT_ACCURACY_LEVEL,
    operators: options.operators ?? DEFAULT_OPERATORS,
  });
  return { config, layout, graph, matrices, quantized: matrices.some((m) => m.config !== null) };
}

/** The quantize report of the source, carried into the export's: a report that is not a JSON object is named, not copied. */
async function readSourceReport(path: string): Promise<Record<string, unknown>> {
  try {
    const json = JSON.parse(await readFile(path, 'utf8')) as unknown;
    if (typeof json === 'object' && json !== null && !Array.isArray(json)) return json as Record<string, unknown>;
  } catch {
    // named below
  }
  throw new InvalidDataError(path, 'is not a JSON object; the quantized directory\'s report is corrupt, quantize again');
}

/** transformers.js' file name for a dtype: `onnx/model_q4.onnx`, `model_q4f16.onnx`, `model.onnx`, `model_fp16.onnx`. */
export function onnxFileName(quantized: boolean, activations: ActivationType): { file: string; dtype: string } {
  if (quantized) return activations === 'float16' ? { file: 'model_q4f16.onnx', dtype: 'q4f16' } : { file: 'model_q4.onnx', dtype: 'q4' };
  return activations === 'float16' ? { file: 'model_fp16.onnx', dtype: 'fp16' } : { file: 'model.onnx', dtype: 'fp32' };
}


export interface ExportReport {
  readonly format: 'onnx';
  readonly modelDir: string;
  readonly outDir: string;
  /** Path of the ONNX file relative to outDir (`onnx/model_q4.onnx`) and transformers.js' dtype for it. */
  readonly file: string;
  readonly dtype: string;
  readonly fileBytes: number;
  /** Bytes of the external data file (0 when the weights are inside the ONNX file). */
  readonly externalDataBytes: number;
  readonly activations: ActivationType;
  readonly accuracyLevel: 0 | 4;
  /** The operator set of the graph (`fused`: onnxruntime's contrib operators; `standard`: opset-17 ones). */
  readonly operators: DecoderOperators;
  readonly scaleType: ScaleType;
  readonly embeddingType: FloatType;
  /** Linear weights: count, bytes in the file, bits per weight. */
  readonly linearParams: number;
  readonly linearBytes: number;
  readonly linearBitsPerWeight: number;
  /** Notes for readers of the report, e.g. that 3-bit codes are stored as 4-bit ones. */
  readonly notes: readonly string[];
  readonly matrices: readonly ExportedMatrix[];
  readonly seconds: number;
}

export interface ExportOnnxOptions extends OnnxExportOptions {
  /** A quantized directory (layerquant-quantized-v1) or a plain Hugging Face checkpoint (exported in float). */
  readonly modelDir: string;
  readonly outDir: string;
  /** Initializer bytes above which an external data file is written (default EXTERNAL_DATA_THRESHOLD). */
  readonly externalDataThreshold?: number;
  /** Where the quantizer a checkpoint records is found (the app's registry, --plugin's included; default the built-ins). */
  readonly quantizers?: QuantizerLookup['quantizers'];
}

/**
 * Writes a directory that transformers.js' `AutoModelForCausalLM.from_pretrained(dir, { dtype: 'q4' })` loads:
 * `onnx/model_q4.onnx` (+ `model_q4.onnx_data` above 2 GiB), config.json with `transformers.js_config`, the
 * loader files of the source, and quantization.json (the source's report plus an `export` section).
 */
export async function exportOnnx(options: ExportOnnxOptions): Promise<ExportReport> {
  const start = performance.now();
  const modelDir = resolve(options.modelDir);
  const outDir = resolve(options.outDir);
  if (modelDir === outDir) throw new InvalidOptionError('--out', `${outDir} is the model directory itself; export to another directory`);
  const activations = options.activations ?? 'float32';
  const accuracyLevel = options.accuracyLevel ?? DEFAULT_ACCURACY_LEVEL;
  const operators = options.operators ?? DEFAULT_OPERATORS;
  const scaleType = options.scaleType ?? DEFAULT_EXPORT_SCALE_TYPE;
  const embeddingType = options.embeddingType ?? activations;
  if (activations === 'float16' && scaleType === 'float32') {
    throw new InvalidOptionError('--scale-dtype', 'float16 activations need float16 scales (MatMulNBits takes scales of the activation type)');
  }
  const source = await openModelWeights(modelDir, options.quantizers ? { quantizers: options.quantizers } : {});
  // openModelWeights names a missing directory; config.json is read raw to be copied with transformers.js' settings.
  let rawConfig: Record<string, unknown>;
  try {
    rawConfig = JSON.parse(await readFile(join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  } catch (error) {
    await source.close();
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingFileError(join(modelDir, 'config.json'), 'not found; a model directory needs the config.json of its Hugging Face checkpoint');
    throw new InvalidDataError(join(modelDir, 'config.json'), `is not valid JSON (${(error as Error).message}); fix or replace the file`);
  }
  let built: ExportGraph;
  // Matrices whose checkpoint keeps 8-bit scales and zeros (quantize --scale-dtype u8): expanded to float scales below.
  const u8Matrices = 'readQuantized' in source ? Object.values(source.metadata.tensors).filter((entry) => entry.scaleDtype === 'U8').length : 0;
  let config: Awaited<ReturnType<typeof loadValidatedConfig>>['config'];
  let output: OutputDirectory | undefined;
  try {
    // The one config-vs-tensors check every command makes: a wrong num_hidden_layers must not ship a truncated model.
    config = (await loadValidatedConfig(source.dir, source)).config;
    // transformers.js loads the tokenizer with the model: an export without one (or with another model's) is unusable.
    await checkTokenizerFiles(modelDir, { vocabSize: config.vocabSize });
    // One writer per --out (a second export to it is refused while this one runs); checked before the long build.
    output = await openOutputDirectory(outDir, 'export');
    built = await buildModelGraph(source, config, { activations, accuracyLevel, scaleType, embeddingType, operators });
  } catch (error) {
    output?.abandon();
    throw error;
  } finally {
    await source.close();
  }
  const held = output!;
  try {
    // The whole set (graph, config, tokenizer, report) is written into a staging directory and swapped in, replacing
    // --out's previous model file set: an interrupted export leaves --out as it was, never a new graph beside an old config.
    const { result } = await writeFileSet(outDir, (staging) => writeExport(staging), { replace: isModelFileSetEntry, last: QUANTIZATION_REPORT_FILE });
    return result;
  } catch (error) {
    held.abandon();
    throw error;
  } finally {
    held.release();
  }

  async function writeExport(staging: string): Promise<ExportReport> {
    const { file, dtype } = onnxFileName(built.quantized, activations);
    const model = built.graph.toModel();
    const initializerBytes = model.graph.initializers.reduce((sum, t) => sum + t.data.byteLength, 0);
    const external = initializerBytes > (options.externalDataThreshold ?? EXTERNAL_DATA_THRESHOLD);

    await mkdir(join(staging, 'onnx'));
    const onnxPath = join(staging, 'onnx', file);
    const dataFile = `${file}_data`;
    const dataPath = join(staging, 'onnx', dataFile);
    let externalDataBytes = 0;
    if (external) {
      const encoded = encodeModelWithExternalData(model, dataFile);
      await writeFileAtomic(dataPath, async (handle) => {
        for (const chunk of encoded.data) await handle.write(chunk);
      });
      externalDataBytes = encoded.dataBytes;
      await writeTextAtomic(onnxPath, encoded.model);
    } else {
      await writeTextAtomic(onnxPath, encodeModel(model));
    }

    const jsConfig: Record<string, unknown> = { dtype };
    if (external) jsConfig.use_external_data_format = { [file]: 1 };
    if (activations === 'float16') jsConfig.kv_cache_dtype = { [dtype]: 'float16' };
    await writeTextAtomic(join(staging, 'config.json'), `${JSON.stringify({ ...rawConfig, 'transformers.js_config': jsConfig }, null, 2)}\n`);
    for (const name of MODEL_LOADER_FILES) {
      if (name === 'config.json' || !existsSync(join(modelDir, name))) continue;
      await copyFileAtomic(join(modelDir, name), join(staging, name));
    }
    const linear = built.matrices.filter((m) => matrixOfTensorName(m.name) !== undefined);
    const linearParams = linear.reduce((sum, m) => sum + m.shape[0] * m.shape[1], 0);
    const linearBytes = linear.reduce((sum, m) => sum + m.bytes, 0);
    const notes: string[] = [];
    const widened = new Map<string, number>();
    for (const m of built.matrices) if (m.config && m.storedBits !== null && Number(m.config.slice(1, m.config.indexOf('g'))) !== m.storedBits) widened.set(m.config, m.storedBits);
    for (const [c, bits] of widened) notes.push(`${c} codes are stored as ${bits}-bit MatMulNBits codes (same values; onnxruntime has no kernel for their width), and linearBytes counts those real bytes`);
    const corrected = built.matrices.filter((m) => m.zeroCorrection).length;
    if (u8Matrices) {
      notes.push(
        `${u8Matrices} matrices store 8-bit scales and zeros (scale-dtype U8); MatMulNBits takes float scales, so each is expanded to ${scaleType} ` +
          `${scaleType === 'float32' ? 'exactly (the stored multipliers; the checkpoint\'s own dequantization agrees to one float32 ulp)' : '(the expanded float32 value rounded to half)'} and the zeros to uint8 zero points (+ correction); the size on disk counts these expanded bytes, more than the checkpoint's`,
      );
    }
    if (corrected) notes.push(`${corrected} matrices have fractional HQQ zeros: integer zero points plus a per-group correction (one float per group)`);
    if (!built.quantized) notes.push(`a float export (no matrix is quantized): every linear matrix is a ${activations} MatMul, so the accuracy level and the scale type do not apply; transformers.js loads it with dtype '${dtype}'`);
    const report: ExportReport = Object.freeze({
      format: 'onnx',
      modelDir,
      outDir,
      file: `onnx/${file}`,
      dtype,
      fileBytes: (await stat(onnxPath)).size,
      externalDataBytes,
      activations,
      accuracyLevel,
      operators,
      scaleType,
      embeddingType,
      linearParams,
      linearBytes,
      linearBitsPerWeight: (8 * linearBytes) / linearParams,
      notes: Object.freeze(notes),
      matrices: Object.freeze(built.matrices),
      seconds: (performance.now() - start) / 1000,
    });
    const sourceReportPath = join(modelDir, QUANTIZATION_REPORT_FILE);
    const sourceReport = existsSync(sourceReportPath) ? await readSourceReport(sourceReportPath) : {};
    await writeTextAtomic(join(staging, QUANTIZATION_REPORT_FILE), `${JSON.stringify({ ...sourceReport, export: report }, null, 1)}\n`);
    return report;
  }
}
