import { InvalidOptionError } from '@layerquant/core';
import type { ScaleDtype } from '@layerquant/quantizers';
import { DEFAULT_ACCURACY_LEVEL, exportOnnx, type ExportReport, type OnnxExportOptions } from '@layerquant/export';
import { ggmlType, type GgmlTypeName } from '@layerquant/gguf';
import { exportGguf, type ExportGgufOptions, type ExportGgufReport } from '@layerquant/gguf/node';
import { parseCommandArgs, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';
import { formatSeconds } from '../progress.js';
import { join } from 'node:path';
import { resolveModelPath } from '../model-path.js';
import { LINEAR_GGUF_TENSOR } from '../model-sizes.js';
import { absolutePath, formatRows, jsonLine, sizes } from '../output.js';
import { builtinRegistries } from '../plugins.js';

/** The options `export` and `quantize --format onnx` share. */
export const EXPORT_OPTION_SPEC = {
  format: { type: 'string' },
  'scale-dtype': { type: 'string' },
  'embedding-dtype': { type: 'string' },
  'accuracy-level': { type: 'string' },
  activations: { type: 'string' },
  'gguf-type': { type: 'string' },
  'tensor-types': { type: 'string' },
  'tokenizer-pre': { type: 'string' },
} as const;

export const EXPORT_OPTION_HELP = [
  '  --format onnx           write an ONNX directory transformers.js and onnxruntime load (onnx/model_q4.onnx)',
  '  --accuracy-level 0|4    MatMulNBits: 4 quantizes activations to int8 inside the kernel (default, faster on CPU);',
  '                          0 keeps them in float (exact against the dequantized model)',
  '  --scale-dtype f32|f16|u8  MatMulNBits scales (default: the activation type); `quantize` stores the checkpoint\'s',
  '                          scales and zeros in this type too (f16: half the metadata bytes; u8: 8-bit as the paper',
  '                          counts them, fp16 ranges per 128 groups; the error either adds is in sqErr). An ONNX',
  '                          export of a u8 checkpoint expands its scales to float (MatMulNBits takes float scales)',
  '  --embedding-dtype f32|f16  embed_tokens and lm_head storage (default: the activation type)',
  '  --activations f32|f16   f16 writes onnx/model_q4f16.onnx: fp16 activations and KV cache, for WebGPU',
  '  --format gguf           write one .gguf file llama.cpp, node-llama-cpp, ollama and LM Studio load (--out <file.gguf>)',
  '  --gguf-type <type>      GGUF: the type of every matrix, embeddings and output included (F32 F16 BF16 Q8_0 Q4_0',
  '                          Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K); default: a quantized matrix keeps its codes',
  '                          exactly where GGUF can (<= 5 bits in groups of 32k: Q4_1 / Q5_1), else Q8_0; float ones F16',
  '  --tensor-types <list>   GGUF: per-tensor types, `pattern=TYPE,...`, each pattern a regular expression over the',
  '                          whole GGUF tensor name (blk\\.\\d+\\.attn_v\\.weight=Q6_K,output\\.weight=Q6_K); later entries win',
  '  --tokenizer-pre <name>  GGUF: llama.cpp\'s pre-tokenizer name where tokenizer.json\'s is not recognized',
];

/** The GGUF options of `export` / `quantize --format gguf`. */
export type GgufCliOptions = Pick<ExportGgufOptions, 'types' | 'tokenizerPre'>;

function parseGgufOptions(values: Values): GgufCliOptions {
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

type Values = ReturnType<typeof parseCommandArgs>['values'];

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

/** Reads --format (undefined when absent) and the ONNX / GGUF options; errors name the flag. `quantize` passes `checkpoint`: u8 is a checkpoint storage. */
export function parseExportOptions(values: Values, checkpoint = false): { format: 'onnx' | 'gguf' | undefined; options: OnnxExportOptions; gguf: GgufCliOptions } {
  const ggufFlags = (['gguf-type', 'tensor-types', 'tokenizer-pre'] as const).filter((f) => stringOption(values, f) !== undefined);
  if (stringOption(values, 'format') === 'gguf') {
    const onnxOnly = (['accuracy-level', 'activations', 'embedding-dtype', ...(checkpoint ? [] : ['scale-dtype'])] as const).find((f) => stringOption(values, f) !== undefined);
    if (onnxOnly) throw new InvalidOptionError(`--${onnxOnly}`, 'is an ONNX option; with --format gguf choose types with --gguf-type and --tensor-types');
    if (checkpoint) checkpointScaleDtype(values);
    return { format: 'gguf', options: {}, gguf: parseGgufOptions(values) };
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
  const options: OnnxExportOptions = {
    accuracyLevel: levelText === undefined ? DEFAULT_ACCURACY_LEVEL : levelText === '0' ? 0 : 4,
    ...(activations ? { activations } : {}),
    ...(scaleType ? { scaleType } : {}),
    ...(embeddingType ? { embeddingType } : {}),
  };
  if (format === undefined && (levelText ?? activations ?? embeddingType) !== undefined) {
    throw new InvalidOptionError('--format', 'the ONNX options need --format onnx');
  }
  return { format: format as 'onnx' | undefined, options, gguf: {} };
}

/** Matrices per GGUF type, e.g. { Q4_1: 224, F16: 2 }. */
function ggufTypeCounts(report: ExportGgufReport): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const t of report.tensors) if (t.shape.length === 2) counts[t.type] = (counts[t.type] ?? 0) + 1;
  return counts;
}

/** A GGUF export as one JSON-safe object: the file, its bytes (tensors and overhead) and the linear matrices' share. */
export function ggufExportSummary(report: ExportGgufReport): Record<string, unknown> {
  const linear = report.tensors.filter((t) => LINEAR_GGUF_TENSOR.test(t.name));
  return {
    format: report.format,
    model: absolutePath(report.modelDir),
    out: absolutePath(report.outFile),
    file: absolutePath(report.outFile),
    architecture: report.architecture,
    fileBytes: report.fileBytes,
    overheadBytes: report.overheadBytes,
    types: ggufTypeCounts(report),
    matrices: linear.length,
    sizes: sizes({ params: linear.reduce((s, t) => s + t.shape[0]! * t.shape[1]!, 0), diskBytes: linear.reduce((s, t) => s + t.bytes, 0), fileBytes: report.fileBytes }),
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
    ['on disk', `${(report.linearBytes / 2 ** 20).toFixed(2)} MiB, ${report.linearBitsPerWeight.toFixed(4)} bits/weight, linear matrices as stored (MatMulNBits, accuracy level ${report.accuracyLevel}, ${report.activations} activations, ${report.scaleType} scales)`],
    ...report.notes.map((note): [string, string] => ['note', note]),
    ['export time', formatSeconds(report.seconds)],
  ];
}

export const exportCommand: Command = {
  name: 'export',
  summary: 'write a quantized model as files transformers.js / onnxruntime (ONNX) or llama.cpp (GGUF) load',
  usage: [
    'layerquant export <quantized-dir> --format onnx --out <dir> [options] [--json]',
    'layerquant export <quantized-or-model-dir> --format gguf --out <file.gguf> [--gguf-type T] [--tensor-types ...] [--json]',
    '',
    'Writes <dir>/onnx/model_q4.onnx (a decoder with a KV cache; every quantized matrix one com.microsoft',
    'MatMulNBits node, block = group; 3-bit codes stored as 4-bit; HQQ\'s fractional zero exact through a per-group',
    'correction), config.json with transformers.js_config, generation_config.json, tokenizer files and',
    'quantization.json. `AutoModelForCausalLM.from_pretrained(dir, { dtype: \'q4\' })` loads it. A plain checkpoint',
    'is exported in float (onnx/model.onnx). Strided groups (--axis 0) cannot be exported.',
    '',
    'With --format gguf: one .gguf file (Llama and Mistral as llama.cpp\'s llama, q/k rows permuted; Qwen2 as qwen2)',
    'with the byte-level BPE tokenizer and chat template, every tensor under llama.cpp\'s name in the type chosen.',
    '`layerquant eval <file.gguf>` evaluates it in llama.cpp itself (node-llama-cpp).',
    '',
    'Options:',
    '  --out <dir>             output directory (required)',
    ...EXPORT_OPTION_HELP,
    '  --json                  one JSON object: file, bytes, bits per weight, notes',
  ].join('\n'),
  async run({ argv, stdout, plugins = builtinRegistries() }) {
    const { values, positionals } = parseCommandArgs(argv, { out: { type: 'string' }, ...EXPORT_OPTION_SPEC });
    const modelDir = resolveModelPath(requireString(positionals[0], 'quantized-dir', 'layerquant export <quantized-dir> --format onnx --out <dir>'));
    if (positionals.length > 1) throw new InvalidOptionError('quantized-dir', `one directory expected, got ${positionals.length}`);
    const outDir = requireString(stringOption(values, 'out'), '--out', 'where to write the ONNX directory or the .gguf file, e.g. --out ./model-onnx');
    const { format, options, gguf } = parseExportOptions(values);
    if (format === undefined) throw new InvalidOptionError('--format', 'give the format to write: --format onnx or --format gguf');
    if (format === 'gguf') {
      const report = await exportGguf({ modelDir, outFile: outDir, quantizers: plugins.quantizers, ...gguf });
      if (values.json) stdout(jsonLine('export', ggufExportSummary(report)));
      else stdout(formatRows([['model', report.modelDir], ...ggufExportRows(report)]));
      return;
    }
    const report = await exportOnnx({ modelDir, outDir, quantizers: plugins.quantizers, ...options });
    if (values.json) {
      stdout(jsonLine('export', exportSummary(report)));
      return;
    }
    const rows: Array<[string, string]> = [['model', report.modelDir], ...exportRows(report)];
    stdout(formatRows(rows));
  },
};
