import { InvalidOptionError } from '@layerquant/core';
import { builtinRegistries, exportModel, resolveModelPath } from '@layerquant/pipeline';
import { checkOverwrite, parseCommandArgs, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';
import { EXPORT_OPTION_HELP, EXPORT_OPTION_SPEC, exportResultRows, exportResultSummary, parseExportOptions } from '../flags/export-options.js';
import { formatRows, jsonLine } from '../output.js';

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
    '  --out <dir>             output directory (required); with --format gguf the .gguf file',
    ...EXPORT_OPTION_HELP,
    '  --json                  one JSON object: file, bytes, bits per weight, notes',
    '  --force                 replace the exported model in an existing, non-empty --out (refused without it)',
  ].join('\n'),
  async run({ argv, stdout, plugins = builtinRegistries() }) {
    const { values, positionals } = parseCommandArgs(argv, { out: { type: 'string' }, force: { type: 'boolean' }, ...EXPORT_OPTION_SPEC });
    checkOverwrite(stringOption(values, 'out'), values.force === true, { file: stringOption(values, 'format') === 'gguf' });
    const modelDir = resolveModelPath(requireString(positionals[0], 'quantized-dir', 'layerquant export <quantized-dir> --format onnx --out <dir>'));
    if (positionals.length > 1) throw new InvalidOptionError('quantized-dir', `one directory expected, got ${positionals.length}`);
    const out = requireString(stringOption(values, 'out'), '--out', 'where to write the ONNX directory or the .gguf file, e.g. --out ./model-onnx');
    const request = parseExportOptions(values);
    if (request === undefined) throw new InvalidOptionError('--format', 'give the format to write: --format onnx or --format gguf');
    const report = await exportModel(modelDir, out, request, plugins.quantizers);
    if (values.json) {
      stdout(jsonLine('export', exportResultSummary(report)));
      return;
    }
    stdout(formatRows([['model', report.modelDir], ...exportResultRows(report)]));
  },
};
