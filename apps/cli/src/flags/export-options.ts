import { InvalidOptionError } from '@layerquant/core';
import { DEFAULT_ACCURACY_LEVEL, type ExportReport, type OnnxExportOptions } from '@layerquant/export';
import { ggmlType, isLinearGgufTensor, type GgmlTypeName } from '@layerquant/gguf';
import type { ExportGgufReport } from '@layerquant/gguf/node';
import type { ExportRequest, ExportResult, GgufExportOptions } from '@layerquant/pipeline';
import type { ScaleDtype } from '@layerquant/quantizers';
import { join } from 'node:path';
import { stringOption, type ParsedArgs } from '../args.js';
import { absolutePath, sizes } from '../output.js';
import { formatSeconds } from '../progress.js';

/** The options `export` and `quantize --format onnx|gguf` share. */
export const EXPORT_OPTION_SPEC = {
  format: { type: 'string' },
  'scale-dtype': { type: 'string' },
  'embedding-dtype': { type: 'string' },
  'accuracy-level': { type: 'string' },
  activations: { type: 'string' },
  operators: { type: 'string' },
  'gguf-type': { type: 'string' },
  'tensor-types': { type: 'string' },
  'tokenizer-pre': { type: 'string' },
} as const;

export const EXPORT_OPTION_HELP = [
  '  --format onnx           write an ONNX directory transformers.js and onnxruntime load (onnx/model_q4.onnx)',
  '  --accuracy-level 0|4    MatMulNBits: 4 quantizes activations to int8 inside the kernel (default, faster on CPU);',
  '                          0 keeps them in float (exact against the dequantized model)',
  '  --scale-dtype f32|f16|u8  MatMulNBits scales and zero corrections (default f16: half the bytes of f32 for an error',
  '                          far below the quantization\'s own); `quantize` stores the checkpoint\'s',
  '                          scales and zeros in this type too (f16: half the metadata bytes; u8: 8-bit as the paper',
  '                          counts them, fp16 ranges per 128 groups; the error either adds is in sqErr). An ONNX',
  '                          export of a u8 checkpoint expands its scales to float (MatMulNBits takes float scales)',
  '  --embedding-dtype f32|f16  embed_tokens and lm_head storage (default: the activation type)',
  '  --activations f32|f16   f16 writes onnx/model_q4f16.onnx (model_fp16.onnx for a plain checkpoint): fp16',
  '                          activations and KV cache, for WebGPU',
  '  --operators fused|standard  fused (default): onnxruntime\'s contrib operators (GroupQueryAttention with its',
  '                          shared KV buffer, SkipSimplifiedLayerNormalization, one MatMulNBits for q/k/v and',
  '                          one for gate/up), about 10 nodes a layer; standard: opset-17 operators and MatMulNBits',
  '                          only, for a runtime without those operators (packages/runtime/README.md)',
  '  --format gguf           write one .gguf file llama.cpp, node-llama-cpp, ollama and LM Studio load (--out <file.gguf>)',
  '  --gguf-type <type>      GGUF: the type of every matrix, embeddings and output included (F32 F16 BF16 Q8_0 Q4_0',
  '                          Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K); default: a quantized matrix keeps its codes',
  '                          exactly where GGUF can (<= 5 bits in groups of 32k: Q4_1 / Q5_1), else Q8_0; float ones F16',
  '  --tensor-types <list>   GGUF: per-tensor types, `pattern=TYPE,...`, each pattern a regular expression over the',
  '                          whole GGUF tensor name (blk\\.\\d+\\.attn_v\\.weight=Q6_K,output\\.weight=Q6_K); later entries win',
  '  --tokenizer-pre <name>  GGUF: llama.cpp\'s pre-tokenizer name where tokenizer.json\'s is not recognized',
];

/** The GGUF options of `export` / `quantize --format gguf`: --gguf-type, --tensor-types, --tokenizer-pre. */
function parseGgufOptions(values: Values): GgufExportOptions {
  const types: Record<string, GgmlTypeName> = {};
  const all = stringOption(values, 'gguf-type');
  if (all !== undefined) types['.*'] = ggmlType(all, '--gguf-type').name;
  for (const entry of (stringOption(values, 'tensor-types') ?? '').split(',').map((e) => e.trim()).filter(Boolean)) {
    const at = entry.lastIndexOf('=');
    if (at <= 0) throw new InvalidOptionError('--tensor-types', `"${entry}" is not pattern=TYPE (e.g. output\\.weight=Q6_K)`);
    types[entry.slice(0, at)] = ggmlType(entry.slice(at + 1), '--tensor-types').name;
  }
  const pre = stringOption(values, 'tokenizer-pre');
  return { ...(Object.keys(types).length ? { types } : {}), ...(pre ? { tokenizerPre: pre } : {}) };
}

type Values = ParsedArgs['values'];

function floatType(values: Values, option: string): 'float32' | 'float16' | undefined {
  const text = stringOption(values, option);
  if (text === undefined) return undefined;
  if (text === 'f32' || text === 'fp32' || text === 'float32') return 'float32';
  if (text === 'f16' || text === 'fp16' || text === 'float16') return 'float16';
  throw new InvalidOptionError(`--${option}`, `"${text}" must be f32 or f16`);
}

const isU8 = (text: string | undefined) => text === 'u8' || text === 'uint8';

/** --scale-dtype as the quantized checkpoint stores it (F32 when absent): the same option as the export's, plus u8. */
export function checkpointScaleDtype(values: Values): ScaleDtype {
  const text = stringOption(values, 'scale-dtype');
  if (isU8(text)) return 'U8';
  if (text !== undefined && !['f32', 'fp32', 'float32', 'f16', 'fp16', 'float16'].includes(text)) throw new InvalidOptionError('--scale-dtype', `"${text}" must be f32, f16 or u8`);
  return floatType(values, 'scale-dtype') === 'float16' ? 'F16' : 'F32';
}

/**
 * Reads --format and its options as an export request (undefined without --format); errors name the flag: an ONNX
 * option with --format gguf, a GGUF option without it. `quantize` passes `checkpoint`: u8 is a checkpoint storage,
 * and --scale-dtype is the checkpoint's with any format.
 */
export function parseExportOptions(values: Values, checkpoint = false): ExportRequest | undefined {
  const ggufFlags = (['gguf-type', 'tensor-types', 'tokenizer-pre'] as const).filter((f) => stringOption(values, f) !== undefined);
  if (stringOption(values, 'format') === 'gguf') {
    const onnxOnly = (['accuracy-level', 'activations', 'embedding-dtype', 'operators', ...(checkpoint ? [] : ['scale-dtype'])] as const).find((f) => stringOption(values, f) !== undefined);
    if (onnxOnly) throw new InvalidOptionError(`--${onnxOnly}`, 'is an ONNX option; with --format gguf choose types with --gguf-type and --tensor-types');
    if (checkpoint) checkpointScaleDtype(values);
    return { format: 'gguf', options: parseGgufOptions(values) };
  }
  if (ggufFlags.length > 0) throw new InvalidOptionError(`--${ggufFlags[0]}`, 'is a GGUF option; add --format gguf');
  if (checkpoint) checkpointScaleDtype(values); // its error names the three storages
  if (isU8(stringOption(values, 'scale-dtype'))) {
    if (!checkpoint) throw new InvalidOptionError('--scale-dtype', 'u8 is how `quantize` stores a checkpoint\'s scales; MatMulNBits takes f32 or f16 scales (an 8-bit checkpoint is expanded to them)');
    // the checkpoint keeps 8-bit scales; the ONNX graph gets the default float scales
    return parseExportOptions({ ...values, 'scale-dtype': undefined }, checkpoint);
  }
  const format = stringOption(values, 'format');
  if (format !== undefined && format !== 'onnx') throw new InvalidOptionError('--format', `"${format}" is not a format; use onnx or gguf`);
  const levelText = stringOption(values, 'accuracy-level');
  if (levelText !== undefined && levelText !== '0' && levelText !== '4') throw new InvalidOptionError('--accuracy-level', `"${levelText}" must be 0 or 4`);
  const activations = floatType(values, 'activations');
  const scaleType = floatType(values, 'scale-dtype');
  const embeddingType = floatType(values, 'embedding-dtype');
  const operators = stringOption(values, 'operators');
  if (operators !== undefined && operators !== 'fused' && operators !== 'standard') throw new InvalidOptionError('--operators', `"${operators}" must be fused or standard`);
  const options: OnnxExportOptions = {
    ...(operators ? { operators } : {}),
    accuracyLevel: levelText === undefined ? DEFAULT_ACCURACY_LEVEL : levelText === '0' ? 0 : 4,
    ...(activations ? { activations } : {}),
    ...(scaleType ? { scaleType } : {}),
    ...(embeddingType ? { embeddingType } : {}),
  };
  if (format === undefined && (levelText ?? activations ?? embeddingType ?? operators) !== undefined) {
    throw new InvalidOptionError('--format', 'the ONNX options need --format onnx');
  }
  return format === undefined ? undefined : { format: 'onnx', options };
}

/** The export as one JSON-safe object (no per-matrix list; paths absolute; sizes in the shared form). */
export function exportSummary(report: ExportReport): Record<string, unknown> {
  return {
    format: report.format,
    model: absolutePath(report.modelDir),
    out: absolutePath(report.outDir),
    file: join(absolutePath(report.outDir), report.file),
    dtype: report.dtype,
    activations: report.activations,
    accuracyLevel: report.accuracyLevel,
    operators: report.operators,
    scaleDtype: report.scaleType,
    embeddingDtype: report.embeddingType,
    matrices: report.matrices.length,
    sizes: sizes({ params: report.linearParams, diskBytes: report.linearBytes, fileBytes: report.fileBytes + report.externalDataBytes }),
    notes: report.notes,
    seconds: report.seconds,
  };
}

export function exportRows(report: ExportReport): Array<[string, string]> {
  return [
    ['onnx', `${report.outDir}/${report.file} (dtype ${report.dtype}; ${(report.fileBytes / 2 ** 20).toFixed(2)} MiB${report.externalDataBytes ? ` + ${(report.externalDataBytes / 2 ** 20).toFixed(2)} MiB external data` : ''})`],
    ['on disk', `${(report.linearBytes / 2 ** 20).toFixed(2)} MiB, ${report.linearBitsPerWeight.toFixed(4)} bits/weight, linear matrices as stored (${report.matrices.some((m) => m.config !== null) ? `MatMulNBits, accuracy level ${report.accuracyLevel}, ${report.activations} activations, ${report.scaleType} scales` : `float MatMul, ${report.activations} activations`})`],
    ...report.notes.map((note): [string, string] => ['note', note]),
    ['export time', formatSeconds(report.seconds)],
  ];
}

/** Matrices per GGUF type, e.g. { Q4_1: 224, F16: 2 }. */
function ggufTypeCounts(report: ExportGgufReport): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const t of report.tensors) if (t.shape.length === 2) counts[t.type] = (counts[t.type] ?? 0) + 1;
  return counts;
}

/** The decoder layers' linear matrices of a GGUF export: their weights and their bytes in the file. */
export function ggufLinearMatrices(report: ExportGgufReport): { readonly count: number; readonly params: number; readonly bytes: number } {
  const linear = report.tensors.filter((t) => isLinearGgufTensor(t.name));
  return { count: linear.length, params: linear.reduce((s, t) => s + t.shape[0]! * t.shape[1]!, 0), bytes: linear.reduce((s, t) => s + t.bytes, 0) };
}

/** A GGUF export as one JSON-safe object: the file, its bytes (tensors and overhead) and the linear matrices' share. */
export function ggufExportSummary(report: ExportGgufReport): Record<string, unknown> {
  const linear = ggufLinearMatrices(report);
  return {
    format: report.format,
    model: absolutePath(report.modelDir),
    out: absolutePath(report.outFile),
    file: absolutePath(report.outFile),
    architecture: report.architecture,
    fileBytes: report.fileBytes,
    overheadBytes: report.overheadBytes,
    types: ggufTypeCounts(report),
    matrices: linear.count,
    sizes: sizes({ params: linear.params, diskBytes: linear.bytes, fileBytes: report.fileBytes }),
    notes: report.notes,
    seconds: report.seconds,
  };
}

export function ggufExportRows(report: ExportGgufReport): Array<[string, string]> {
  const summary = ggufExportSummary(report) as { sizes: { diskMiB: number; diskBitsPerWeight: number } };
  return [
    ['gguf', `${report.outFile} (llama.cpp architecture ${report.architecture}; ${(report.fileBytes / 2 ** 20).toFixed(2)} MiB, of which ${(report.overheadBytes / 2 ** 10).toFixed(1)} KiB header, metadata and padding)`],
    ['matrices', Object.entries(ggufTypeCounts(report)).map(([type, n]) => `${n} ${type}`).join(', ')],
    ['on disk', `${summary.sizes.diskMiB.toFixed(2)} MiB, ${summary.sizes.diskBitsPerWeight.toFixed(4)} bits/weight, linear matrices of the decoder layers as stored in the file`],
    ...report.notes.map((note): [string, string] => ['note', note]),
    ['export time', formatSeconds(report.seconds)],
  ];
}

/** Either format's export as one JSON-safe object. */
export function exportResultSummary(report: ExportResult): Record<string, unknown> {
  return report.format === 'gguf' ? ggufExportSummary(report) : exportSummary(report);
}

/** Either format's export as report rows. */
export function exportResultRows(report: ExportResult): Array<[string, string]> {
  return report.format === 'gguf' ? ggufExportRows(report) : exportRows(report);
}
