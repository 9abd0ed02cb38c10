import { parseMethodName, type MethodSpec } from '@layerquant/allocators';
import { InvalidOptionError, LINEAR_MODULES, configName, matrixKey, parseConfigList, parseConfigName, type QuantConfig, type Quantizer } from '@layerquant/core';
import { brownCalibPath } from '@layerquant/datasets';
import { builtinRegistries, exportQuantized, exportedBytes, formatPlan, quantizeAllocated, type ExportRequest, quantizeUniform, resolveModelPath, shippedSize, targetBytes, type AllocatedQuantizeResult, type FileTarget, type FormatPlan, type PluginRegistries, type ShippedSize } from '@layerquant/pipeline';
import { FILE_TARGET_FLAGS, parseEmbeddingConfigs, parseFileTarget, shippedPlan } from '../flags/file-target.js';
import { openModel } from '@layerquant/tensor-io';
import { defaultWorkerCount, type QuantizeModelReport } from '@layerquant/quantizers/node';
import { basename, join } from 'node:path';
import { checkOverwrite, parseCommandArgs, parseIntegerOption, parseNumberOption, requireString, stringOption, type ParsedArgs } from '../args.js';
import type { Command } from '../command.js';
import { allocatorFlags, allocatorHelp, methodFromFlags } from '../flags/allocator-flags.js';
import { EXPORT_OPTION_HELP, EXPORT_OPTION_SPEC, checkpointScaleDtype, exportResultRows, exportResultSummary, ggufLinearMatrices, parseExportOptions } from '../flags/export-options.js';
import { quantizerFlags, quantizerFromFlags, quantizerHelp } from '../flags/quantizer-flags.js';
import { absolutePath, boostLines, boostReport, formatRows, jsonLine, sizeRows, sizes } from '../output.js';
import { createCostReporter, createProgress, createSpinner, fitStderr, formatSeconds } from '../progress.js';
import { refineDoneLine, refinePlanLine, refineRoundLine, refinementJson } from '../flags/refine-flags.js';

// Matrices differ in size (q_proj vs gate_proj): the time estimate extrapolates from a whole layer's.
const LAYER_ESTIMATE = { estimateAfter: LINEAR_MODULES.length };

/** Sizes, error and time of a quantize run: the JSON fields every quantize prints. */
function reportFields(report: QuantizeModelReport, out: string) {
  return {
    model: report.modelDir,
    out,
    matrices: report.matrices,
    quantizedMatrices: report.quantizedMatrices,
    sizes: sizes({ params: report.params, paperBitsPerWeight: report.bpp, diskBytes: report.bytes, fileBytes: report.fileBytes }),
    scaleDtype: ({ F32: 'float32', F16: 'float16', U8: 'uint8' } as const)[report.scaleDtype],
    sqErr: report.sqErr,
    seconds: report.seconds,
    workerSeconds: report.quantizeSeconds,
    workers: report.workers,
  };
}

/** How the checkpoint stores scales and zeros (--scale-dtype); with u8 the file is the paper's accounting. */
function storedRow(report: QuantizeModelReport): [string, string] {
  if (report.scaleDtype === 'U8') return ['stored', 'packed codes, 8-bit scale and zero per group, fp16 ranges per 128 groups (--scale-dtype u8, as the paper counts them)'];
  return ['stored', `packed codes, ${report.scaleDtype === 'F16' ? 'fp16' : 'fp32'} scale and zero per group (--scale-dtype)`];
}

/** "1.9s wall (2.6s quantizing, summed over 2 workers that overlap)": the two times are not the same clock. */
function timeText(report: QuantizeModelReport): string {
  return `${formatSeconds(report.seconds)} wall clock (${formatSeconds(report.quantizeSeconds)} quantizing, summed over ${report.workers} worker${report.workers === 1 ? '' : 's'} running in parallel)`;
}

/** Whether `--method` names an allocator plug-in (or one of its grid names) rather than a quantizer. */
function isAllocatorMethod(method: string, plugins: PluginRegistries): boolean {
  if (plugins.quantizers.has(method)) return false;
  try {
    parseMethodName(method, plugins.allocators.list(), '--method');
    return true;
  } catch {
    return false;
  }
}

export const quantizeCommand: Command = {
  name: 'quantize',
  summary: 'quantize every linear matrix of a model into a quantized checkpoint',
  usage: (plugins) => [
    `layerquant quantize <model-dir> [--quantizer ${plugins.quantizers.ids().join('|')}] --config b4g64 --out <dir> [--json]`,
    `layerquant quantize <model-dir> --method ${plugins.allocators.ids().join('|')}`,
    `                    --budget <bpp> [--quantizer ${plugins.quantizers.ids().join('|')}] --out <dir> [allocator options] [--configs <ladder>] [--stats <dir> | --calib <file>] [--json]`,
    `layerquant quantize <model-dir> --method <knapsack allocator> --format onnx --target-size <MiB> --out <dir>`,
    `layerquant quantize <model-dir> [--quantizer ggml] (--config b4g32 | --method <allocator> (--budget <bpp> | --target-size <MiB>)) --format gguf --out <file.gguf>`,
    '',
    'With --format onnx the allocation is made for the file it ships: the ladder holds the configs ONNX stores',
    'natively (2, 4 and 8 bits in blocks of 32, 64 and 128, integer or fractional zeros), the embeddings and lm_head',
    'become units of the allocation, and --target-size <MiB> (or --target-bpw <bits per linear weight of the file>)',
    'bounds every byte of onnx/model_q4.onnx: the file is at most that size, within 1% of it. --budget keeps meaning',
    'the paper\'s accounting (over the format\'s ladder). Uniform and the boosts take a native stop as their base.',
    '',
    'With --format gguf the same holds for the .gguf file: --quantizer ggml allocates llama.cpp\'s own types (b2g16 is',
    'Q2_K, b3g16-sym Q3_K, b4g32-sym Q4_0, b4g32 Q4_K, b5g32-sym Q5_0, b5g32 Q5_K, b6g16-sym Q6_K, b8g32-sym Q8_0;',
    'in rows that are not whole blocks of 256, b4g32 and b5g32 are Q4_1 and Q5_1), token_embd and output included,',
    'and --target-size bounds every byte of the file; rtn, hqq and gptq allocate the blocks that hold their codes as',
    'they are (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).',
    '',
    'A calibrated quantizer (gptq, baq) quantizes layer by layer: the calibration blocks (--calib, --blocks) run through',
    'the model with the matrices before already quantized, and each matrix is quantized with its inputs\' Hessian.',
    '',
    'With --config every matrix gets one config. With --budget the method allocates a config per matrix from the',
    'statistics it needs (computed on the calibration text with --quantizer and cached in <dir>/stats, or read with',
    '--stats; uniform needs none, kurtboost only the weights\' kurtosis), then quantizes every matrix with --quantizer',
    '(default hqq); it prints bits per weight, MiB and the extra memory over uniform at the same budget.',
    '',
    'Writes <dir>/model.safetensors (packed codes, scales, zeros per matrix; other tensors copied), config and',
    'tokenizer files, and quantization.json. Prints the size of the linear matrices in MiB and bits per weight, in',
    'the paper\'s accounting (8-bit scale and zero per group) and on disk (fp32 scales and zeros as stored), the',
    'summed squared dequantization error and the time (wall clock, and quantizing summed over the workers).',
    '',
    'Options:',
    '  --plugin <module>    load allocators/quantizers/metrics from a module (a path or package name; repeatable)',
    '  --quantizer <id>     the quantizer of every matrix (default hqq); --method rtn|hqq with --config also names it',
    '  --config b{b}g{g}    bits in 1,2,3,4,5,6,8 and a group size that divides the row length (default b4g64)',
    '  --out <dir>          output directory (required)',
    '  --axis 0|1           1: groups along the input dimension (default); 0: strided groups, as the authors\' fork',
    '  --round-zero         round the zero point (the fork does for 4-bit)',
    '  --fork               the authors\' fork defaults: --kappa 1.01 --axis 0, --round-zero for 4-bit',
    '  --budget <bpp>       allocate instead of --config: a stop of the ladder (2.13 ... 8.51) for uniform and the',
    '                       boosts, any value for the knapsack allocators (mxq, sensi-milp, ..., measured)',
    '  --configs <list>     the config ladder the allocator chooses from (default: the paper\'s 12; with --format onnx',
    '                       its native configs), e.g. b2g64,b3g64,b4g32; b4g64-int: integer zero, b4g32-sym: none',
    '  --target-size <MiB>  with --format onnx|gguf and a knapsack allocator: the shipped file\'s size (every byte)',
    '  --target-bpw <bits>  the same as bits per linear weight of the file (its bits / the linear matrices\' weights)',
    '  --embedding-configs <list>|float  with a target: embed_tokens\' and lm_head\'s ladder (default: the format\'s',
    '                       native configs for them), or float to keep them float (at --embedding-dtype)',
    '',
    'Quantizers (--quantizer) and their options:',
    quantizerHelp(plugins, '  '),
    '',
    'Allocators (--method with --budget; a grid name such as sensiboost-2-1 also works):',
    allocatorHelp(plugins.allocators.list(), '  '),
    '',
    '  --stats <dir>        reuse statistics (`layerquant sensitivity` output or a paper-data directory)',
    '  --stats-quantizer <id>  measure the statistics with this quantizer (default: --quantizer\'s; hqq gives the',
    '                       authors\' tables for any --quantizer)',
    '  --stats-cache <dir>  where computed statistics are kept, one directory per settings (default: <out>/stats; with',
    '                       --format gguf none: they go with the temporary checkpoint), reused by any later run',
    '  --calib <file>       calibration text of the statistics and of a calibrated quantizer\'s layer pass (gptq, baq)',
    '                       (statistics default to the built-in brown-calib; gptq and baq require --calib)',
    '  --blocks <n>         calibration blocks of 512 tokens (default 128, fewer for short texts)',
    '  --stats-blocks <n>   the statistics\' blocks (and the correction\'s), when they differ from the calibrated',
    '                       quantizer\'s --blocks: e.g. GPTQ on 16 blocks, the kld table on 1 (default --blocks)',
    '  --no-refine          an allocator that corrects its allocation by measurement (kld: --rounds, --radius,',
    '                       --correction) keeps its additive solution instead: nothing measured. By default the',
    '                       correction runs on the statistics\' calibration (--calib, --stats-blocks): its plan and cost are',
    '                       printed first, then each measured allocation\'s KLD; the corrected allocation is quantized',
    '                       only when its measured KLD is not above the additive one\'s (--json: refinement)',
    '  --force              replace the quantized model in an existing, non-empty --out (refused without it)',
    '  --json               one JSON object (docs/json-schema.md): sizes { paperMiB, diskMiB, ... }, sqErr, seconds, ...',
    '',
    'With --format onnx the quantized model is written as an ONNX directory transformers.js loads, with --format gguf',
    'as one .gguf file llama.cpp loads (--out <file.gguf>; see `layerquant export --help`) instead of a quantized',
    'checkpoint:',
    ...EXPORT_OPTION_HELP,
  ].join('\n'),
  async run({ argv, stdout, stderr, plugins = builtinRegistries() }) {
    const { values, positionals } = parseCommandArgs(argv, {
      method: { type: 'string' },
      quantizer: { type: 'string' },
      config: { type: 'string' },
      out: { type: 'string' },
      axis: { type: 'string' },
      'round-zero': { type: 'boolean' },
      ...quantizerFlags(plugins),
      fork: { type: 'boolean' },
      budget: { type: 'string' },
      configs: { type: 'string' },
      ...allocatorFlags(plugins.allocators.list()),
      stats: { type: 'string' },
      calib: { type: 'string' },
      blocks: { type: 'string' },
      'stats-blocks': { type: 'string' },
      'stats-quantizer': { type: 'string' },
      'stats-cache': { type: 'string' },
      'no-refine': { type: 'boolean' },
      force: { type: 'boolean' },
      ...FILE_TARGET_FLAGS,
      ...EXPORT_OPTION_SPEC,
    });
    const modelDir = resolveModelPath(requireString(positionals[0], 'model-dir', 'layerquant quantize <model-dir> --config b4g64 --out <dir>'));
    if (positionals.length > 1) throw new InvalidOptionError('model-dir', `one model directory expected, got ${positionals.length}`);
    const target = absolutePath(requireString(stringOption(values, 'out'), '--out', 'where to write the quantized model, e.g. --out ./model-b4g64'));
    const request = parseExportOptions(values, true);
    checkOverwrite(target, values.force === true, { file: request?.format === 'gguf' });
    // A .gguf file is one file: an existing one is replaced only with --force, as a quantized directory is.
    const fileTarget = parseFileTarget(values);
    if (fileTarget && request === undefined) {
      const flag = Object.keys(fileTarget)[0] === 'sizeMiB' ? '--target-size' : '--target-bpw';
      throw new InvalidOptionError(flag, 'a target is the size of a shipped file: give its format, --format onnx or --format gguf');
    }
    const quantizerId = stringOption(values, 'quantizer');
    const method = stringOption(values, 'method') ?? quantizerId ?? 'hqq';
    const allocated = stringOption(values, 'budget') !== undefined || fileTarget !== undefined || isAllocatorMethod(method, plugins);
    if (stringOption(values, 'embedding-configs') !== undefined && !(allocated && request !== undefined)) {
      throw new InvalidOptionError('--embedding-configs', 'the embeddings are units of an allocation to a shipped file: give --format onnx or gguf with an allocation (--method <allocator> --target-size <MiB>)');
    }
    if (allocated && request?.format === 'gguf' && request.options.types !== undefined) {
      throw new InvalidOptionError(stringOption(values, 'gguf-type') !== undefined ? '--gguf-type' : '--tensor-types', 'an allocation for a GGUF file chooses each matrix\'s type itself (its config\'s block); quantize with --config to give types, or export a checkpoint with `layerquant export --format gguf --tensor-types`');
    }
    let run: QuantizeRun;
    if (allocated) {
      if (stringOption(values, 'config') !== undefined) throw new InvalidOptionError('--config', 'give either --config (one config for all) or --budget (an allocation), not both');
      run = allocatedRun(values, modelDir, method, quantizerId ?? 'hqq', plugins, request ? { request: namedRequest(request, modelDir), ...(fileTarget ? { target: fileTarget } : {}), ...(request.format === 'onnx' ? { statsDir: join(target, 'stats') } : {}) } : undefined, stderr);
    } else {
      // --method rtn|hqq|<quantizer> --config: the method is the quantizer (the form before --quantizer existed).
      if (quantizerId !== undefined && stringOption(values, 'method') !== undefined && quantizerId !== method) {
        throw new InvalidOptionError('--quantizer', `"${quantizerId}" and --method ${method} disagree; with --config give one of them`);
      }
      if (!plugins.quantizers.has(method)) {
        throw new InvalidOptionError('--method', `"${method}" is neither a quantizer (${plugins.quantizers.ids().join(', ')}) nor an allocator (${plugins.allocators.ids().join(', ')})`);
      }
      run = uniformRun(values, modelDir, method, plugins);
    }
    if (request) {
      // Quantized into a temporary checkpoint beside --out (its cost lines not shown), exported there: one report.
      const { quantized, export: report } = await exportQuantized(target, namedRequest(request, modelDir), plugins.quantizers, (dir) => run(dir, () => undefined));
      const out = report.format === 'gguf' ? report.outFile : report.outDir;
      // What ships: every byte of the file, against the cost model's prediction and the target.
      const predicted = {
        ...(quantized.kind === 'allocated' && quantized.result.shippedBytes !== null ? { predictedBytes: quantized.result.shippedBytes } : {}),
        ...(quantized.kind === 'allocated' && quantized.target ? { targetBytes: quantized.target.bytes } : {}),
      };
      const shipped = shippedSize(report.format, exportedBytes(report), report.format === 'onnx' ? report.linearParams : ggufLinearMatrices(report).params, predicted);
      if (values.json) stdout(jsonLine('quantize', { ...quantizedJson(quantized, out, shipped), export: exportResultSummary(report) }));
      else stdout(`${quantizedText(quantized, out, shipped)}${formatRows(exportResultRows(report), { keyWidth: 12 })}`);
      return;
    }
    const quantized = await run(target, stderr);
    stdout(values.json ? jsonLine('quantize', quantizedJson(quantized, quantized.report.outDir)) : quantizedText(quantized, quantized.report.outDir));
  },
};

/** What a quantize run did, for its report: one config for every matrix, or an allocation. */
type Quantized =
  | { readonly kind: 'uniform'; readonly report: QuantizeModelReport; readonly method: string; readonly quantizer: Quantizer; readonly config: QuantConfig; readonly kappa: number | undefined }
  | {
      readonly kind: 'allocated';
      readonly report: QuantizeModelReport;
      readonly method: MethodSpec;
      readonly quantizer: Quantizer;
      readonly budget: number;
      readonly result: AllocatedQuantizeResult;
      /** With --target-size / --target-bpw: the bytes the file may take. */
      readonly target?: { readonly bytes: number; readonly given: FileTarget };
    };

/** A run with its flags read (errors in them thrown before anything is written): quantizes into `outDir`, cost lines to `log`. */
type QuantizeRun = (outDir: string, log: (text: string) => void) => Promise<Quantized>;

/**
 * A calibrated quantizer (GPTQ, BAQ) quantizes with the Hessians of the text it is given: the text is the user's
 * choice (no silent default), refused before anything is read.
 */
function requireCalibration(quantizer: Quantizer, calib: string | undefined): void {
  if (quantizer.calibration !== undefined && calib === undefined) {
    throw new InvalidOptionError('--calib', `quantizer "${quantizer.id}" is calibrated (each matrix is quantized with the Hessian of its inputs on a text): give that text with --calib <file>, e.g. a few thousand words like the model's use, and --blocks <n>`);
  }
}

/** `--method rtn|hqq --config b4g64`: one config for every matrix. */
function uniformRun(values: ParsedArgs['values'], modelDir: string, method: string, plugins: PluginRegistries): QuantizeRun {
  const fork = values.fork === true;
  const bits = parseConfigName(stringOption(values, 'config') ?? 'b4g64').bits;
  const axisText = stringOption(values, 'axis');
  if (axisText !== undefined && axisText !== '0' && axisText !== '1') throw new InvalidOptionError('--axis', `"${axisText}" must be 0 or 1`);
  const axis = axisText === undefined ? (fork ? 0 : 1) : axisText === '0' ? 0 : 1;
  const roundZero = values['round-zero'] === true || (fork && bits === 4);
  const config = parseConfigName(stringOption(values, 'config') ?? 'b4g64', { axis, roundZero });
  const { quantizer, options: quantizerOptions } = quantizerFromFlags(method, values, plugins, fork);
  const kappa = quantizerOptions.kappa as number | undefined;
  const scaleDtype = checkpointScaleDtype(values);
  const calib = stringOption(values, 'calib');
  requireCalibration(quantizer, calib);
  const blocks = parseIntegerOption(stringOption(values, 'blocks'), '--blocks', 128, 1);
  if (stringOption(values, 'stats-blocks') !== undefined) throw new InvalidOptionError('--stats-blocks', `sets the blocks of an allocation's statistics, and --config allocates nothing; the calibrated quantizer's layer pass takes --blocks`);
  return async (outDir, log) => {
    const interactive = !values.json && Boolean(process.stderr.isTTY);
    const progress = createProgress('quantize', interactive);
    const cost = createCostReporter('quantize', log, !values.json);
    const loading = createSpinner(`loading ${modelDir}`, interactive);
    const report = await quantizeUniform({
      modelDir,
      outDir,
      quantizer,
      config,
      method,
      scaleDtype,
      workers: defaultWorkerCount(),
      record: { config: configName(config), axis, roundZero, ...quantizerOptions, ...(quantizer.calibration && calib ? { calibration: basename(calib), blocks } : {}) },
      // a calibrated quantizer's layer pass (GPTQ, BAQ) reads the calibration text
      ...(calib ? { calibration: { calibrationPath: calib, calibrationName: basename(calib), blocks } } : {}),
      onPlan: (plan) => {
        loading.stop();
        cost.plan(`${method} ${configName(config)} on ${plan.quantizedMatrices} matrices (${plan.params.toLocaleString('en-US')} weights), ${quantizer.calibration ? `layer by layer on ${blocks} calibration blocks (collect the inputs' Hessians, quantize, write)` : 'one matrix at a time (read, quantize, write)'}`, LAYER_ESTIMATE);
      },
      onProgress: (p) => {
        loading.stop();
        cost.unit(p.done, p.total, 'matrices');
        progress.update(p.done, p.total, `matrices (${p.key})`);
      },
    }).finally(() => loading.stop());
    progress.done();
    return { kind: 'uniform', report, method, quantizer, config, kappa };
  };
}

/** An allocation for a shipped file: the export's format and options, the target, and where the statistics are cached (beside it). */
interface ShippedRun {
  readonly request: ExportRequest;
  readonly target?: FileTarget;
  /** Where the statistics are cached: in the ONNX directory; for a .gguf file, absent (the temporary checkpoint's, removed with it). */
  readonly statsDir?: string;
}

/** A GGUF file is named after the model quantized (general.name), not the temporary checkpoint it is exported from. */
function namedRequest(request: ExportRequest, modelDir: string): ExportRequest {
  return request.format === 'gguf' ? { ...request, options: { name: basename(modelDir), ...request.options } } : request;
}

/**
 * `--method <allocator> --budget <bpp>` (or, with --format onnx, `--target-size <MiB>`): the statistics it needs,
 * allocation, --quantizer per the allocation, one checkpoint. With a format the allocation uses its native ladders and
 * a knapsack spends the file's bytes, embeddings and lm_head included.
 */
function allocatedRun(values: ParsedArgs['values'], modelDir: string, methodText: string, quantizerId: string, plugins: PluginRegistries, shipped: ShippedRun | undefined, stderr: (text: string) => void): QuantizeRun {
  if (shipped?.target && values.budget !== undefined) throw new InvalidOptionError('--budget', `give either --budget (bits per weight in the paper's accounting) or ${'sizeMiB' in shipped.target ? '--target-size' : '--target-bpw'} (the shipped file), not both`);
  const budget = shipped?.target ? Number.NaN : parseNumberOption(requireString(values.budget, '--budget', 'bits per weight, e.g. 3.25 (or, with --format onnx, --target-size <MiB>)'), '--budget', Number.NaN, (n) => n > 0);
  const allocators = plugins.allocators.list();
  const method = methodFromFlags(methodText, values, allocators);
  const { quantizer, options: quantizerOptions } = quantizerFromFlags(quantizerId, values, plugins, values.fork === true);
  const seed = parseIntegerOption(stringOption(values, 'seed'), '--seed', 42, 0);
  const configsText = stringOption(values, 'configs');
  const ladder = configsText === undefined ? undefined : parseConfigList(configsText, '--configs');
  const embeddingLadder = parseEmbeddingConfigs(values);
  const calib = stringOption(values, 'calib');
  requireCalibration(quantizer, calib);
  const statsDir = stringOption(values, 'stats');
  const statsCache = stringOption(values, 'stats-cache');
  const blocks = parseIntegerOption(stringOption(values, 'blocks'), '--blocks', 128, 1);
  // The statistics (and the correction by measurement) on their own number of blocks; the calibrated quantizer's
  // layer pass keeps --blocks.
  const statsBlocks = parseIntegerOption(stringOption(values, 'stats-blocks'), '--stats-blocks', blocks, 1);
  const scaleDtype = checkpointScaleDtype(values);
  const statsQuantizerId = stringOption(values, 'stats-quantizer');
  // the run's quantizer keeps its flags' options; another is used with its defaults
  const statisticsQuantizer = statsQuantizerId === undefined || statsQuantizerId === quantizer.id ? undefined : quantizerFromFlags(statsQuantizerId, {}, plugins);
  return async (outDir, log) => {
    const interactive = !values.json && Boolean(process.stderr.isTTY);
    const loading = createSpinner(`loading ${modelDir}`, interactive);
    // The format's cost model and native ladders, from the model's config and layout (the ladder is refused here,
    // before any long step, when the format cannot store it).
    const plan = shipped ? await shippedPlan(modelDir, shipped.request, quantizer, ladder, embeddingLadder) : undefined;
    const target = plan && shipped?.target ? { bytes: targetBytes(shipped.target, plan).bytes, given: shipped.target } : undefined;
    const statsProgress = createProgress('statistics', interactive);
    const progress = createProgress('quantize', interactive);
    const cost = createCostReporter('quantize', log, !values.json);
    const result = await quantizeAllocated({
      modelDir,
      outDir,
      quantizer,
      method,
      budget,
      seed,
      ...(ladder ? { configs: ladder } : {}),
      allocators,
      statistics: { ...(statsDir ? { statsDir } : {}), metrics: plugins.metrics.list(), cacheDir: statsCache ? absolutePath(statsCache) : shipped?.statsDir ?? join(outDir, 'stats'), calibrationPath: calib ?? brownCalibPath, calibrationName: calib ? basename(calib) : 'brown-calib', blocks: statsBlocks },
      ...(statsBlocks === blocks ? {} : { calibration: { blocks } }),
      ...(plan ? { shipped: { plan, ...(shipped?.target ? { target: shipped.target } : {}) } } : {}),
      scaleDtype,
      workers: defaultWorkerCount(),
      record: { ...quantizerOptions, ...(statisticsQuantizer ? { statisticsQuantizer: statisticsQuantizer.quantizer.id } : {}) },
      quantizerOptions,
      ...(statisticsQuantizer ? { statisticsQuantizer } : {}),
      // The correction by measurement of an allocator that has one (kld), unless --no-refine; told on stderr even
      // under --format (whose checkpoint's cost lines are not shown).
      ...(values['no-refine'] === true
        ? {}
        : {
            refine: {
              onPlan: (p) => stderr(`${fitStderr(`refine: ${refinePlanLine(p)}`)}\n`),
              onRound: (r) => stderr(`${fitStderr(`refine: ${refineRoundLine(r)}`)}\n`),
            },
          }),
      onOpened: () => loading.stop(),
      onStatistics: (step, done, total) => statsProgress.update(done, total, step),
      onStatisticsReady: (source) => statsProgress.done(`from ${source}`),
      onPlan: (p) => cost.plan(`${method.id} at ${target ? `${(target.bytes / 2 ** 20).toFixed(2)} MiB of ${plan!.cost.label}` : `${budget} bits`}: ${quantizer.id} on ${p.quantizedMatrices} of ${p.matrices} matrices (${p.params.toLocaleString('en-US')} weights), one matrix at a time (read, quantize, write)`, LAYER_ESTIMATE),
      onProgress: (p) => {
        cost.unit(p.done, p.total, 'matrices');
        progress.update(p.done, p.total, `matrices (${p.key})`);
      },
    }).finally(() => loading.stop());
    progress.done();
    if (result.refinement) stderr(`${fitStderr(`refine: ${refineDoneLine(result.refinement)}`)}\n`);
    return { kind: 'allocated', report: result.report, method, quantizer, budget: result.allocation.budget, result, ...(target ? { target } : {}) };
  };
}

/** The ONNX cost model of a model directory under the export's options, and its ladders for the quantizer. */
/** Matrices per config (`float` for those kept in float). */
function configCounts(allocation: AllocatedQuantizeResult['allocation']): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of allocation.matrices) {
    const name = m.config ? configName(m.config) : 'float';
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return counts;
}

/**
 * What the quantizer reported about the matrices (GPTQ: dead input columns, Hessians that needed more dampening),
 * summed; null when it reported nothing.
 */
function quantizerNotes(report: QuantizeModelReport): { deadColumns: number; matricesWithDeadColumns: number; dampened: number; largestDampening: number } | null {
  const reported = report.perMatrix.filter((m) => m.report);
  if (reported.length === 0) return null;
  const dead = reported.filter((m) => (m.report!.deadColumns ?? 0) > 0);
  const dampened = reported.filter((m) => (m.report!.dampeningRetries ?? 0) > 0);
  return {
    deadColumns: dead.reduce((sum, m) => sum + m.report!.deadColumns!, 0),
    matricesWithDeadColumns: dead.length,
    dampened: dampened.length,
    largestDampening: Math.max(0, ...reported.map((m) => m.report!.dampening ?? 0)),
  };
}

function quantizerNoteRows(report: QuantizeModelReport): Array<[string, string]> {
  const notes = quantizerNotes(report);
  if (!notes) return [];
  return [[
    'hessians',
    `${notes.matricesWithDeadColumns} matrices had dead input columns (${notes.deadColumns} columns zero on every calibration token: weights zeroed); ${notes.dampened} needed more dampening than asked (largest ${notes.largestDampening} of the mean diagonal)`,
  ]];
}

/** The --json fields of a quantize run; `out` is where the model now is (the export's directory with --format onnx). */
function quantizedJson(q: Quantized, out: string, shipped?: ShippedSize): Record<string, unknown> {
  const fields = reportFields(q.report, out);
  const withShipped = shipped ? { ...fields, sizes: { ...fields.sizes, shipped } } : fields;
  if (q.kind === 'uniform') {
    return { method: q.method, quantizer: q.quantizer.id, config: configName(q.config), axis: q.config.axis, roundZero: q.config.roundZero, kappa: q.kappa ?? null, ...withShipped, quantizerNotes: quantizerNotes(q.report) };
  }
  const { allocation, uniform } = q.result;
  return {
    method: q.method.id,
    quantizer: q.quantizer.id,
    budget: q.budget,
    statistics: q.result.statistics,
    ...withShipped,
    quantizerNotes: quantizerNotes(q.report),
    uniformPaperMiB: uniform?.totals.memoryMB ?? null,
    extraMemoryPercent: q.result.extraMemoryPercent,
    configs: Object.fromEntries(configCounts(allocation)),
    boosts: boostReport(allocation as Parameters<typeof boostReport>[0]) ?? null,
    ...(q.result.refinement ? { refinement: refinementJson(q.result.refinement) } : {}),
    allocation: Object.fromEntries(allocation.matrices.map((m) => [matrixKey(m.layer, m.module), m.config ? configName(m.config) : null])),
  };
}

/** The terminal report of a quantize run. */
function quantizedText(q: Quantized, out: string, shipped?: ShippedSize): string {
  const { report } = q;
  const sizeLines = sizeRows({ ...reportFields(report, out).sizes, ...(shipped ? { shipped } : {}) });
  const tail: Array<[string, string]> = [...quantizerNoteRows(report), ['sq. error', report.sqErr.toPrecision(8)], ['time', timeText(report)]];
  if (q.kind === 'uniform') {
    const { config, kappa } = q;
    return formatRows([
      ['model', report.modelDir],
      ['out', out],
      ['method', `${q.method} ${`b${config.bits}g${config.groupSize}`}${config.axis === 0 ? ' axis 0' : ''}${config.roundZero ? ' round-zero' : ''}${kappa === undefined ? '' : ` kappa ${kappa}`}`],
      ['matrices', `${report.quantizedMatrices} of ${report.matrices} (${report.params.toLocaleString('en-US')} weights)`],
      ...sizeLines,
      storedRow(report),
      ...tail,
    ]);
  }
  const { allocation, uniform, extraMemoryPercent: extra } = q.result;
  const boosts = boostReport(allocation as Parameters<typeof boostReport>[0]);
  const rows: Array<[string, string]> = [
    ['model', report.modelDir],
    ['out', out],
    ['method', `${q.method.id} at ${q.target ? `${'sizeMiB' in q.target.given ? `${q.target.given.sizeMiB} MiB` : `${q.target.given.bitsPerWeight} bits per linear weight`} of the shipped file` : `${q.budget} bits`}, ${q.quantizer.id} (statistics: ${q.result.statistics})`],
    ['configs', [...configCounts(allocation)].map(([c, n]) => `${c} x${n}`).join(', ')],
    ...(q.result.refinement
      ? [['refinement', `mean KLD on the calibration ${q.result.refinement.additiveKld.toPrecision(5)} additive, ${q.result.refinement.refinedKld.toPrecision(5)} corrected: the ${q.result.refinement.kept === 'refined' ? 'corrected' : 'additive'} allocation quantized`] as [string, string]]
      : []),
    ...sizeLines,
    storedRow(report),
    ...(uniform ? [['vs uniform', `${extra! >= 0 ? '+' : ''}${extra!.toFixed(2)}% paper memory over uniform (${uniform.totals.memoryMB.toFixed(2)} MiB)`] as [string, string]] : []),
    ...(uniform && q.result.shippedBytes !== null && q.result.uniformShippedBytes !== null
      ? [['boost cost', `${((q.result.shippedBytes - q.result.uniformShippedBytes) / 2 ** 20).toFixed(3)} MiB more in the shipped file than uniform ${configName(uniform.matrices[0]!.config!)} (${(q.result.uniformShippedBytes / 2 ** 20).toFixed(2)} MiB)`] as [string, string]]
      : []),
    ...tail,
  ];
  return `${formatRows(rows)}${boosts ? `${boostLines(boosts).join('\n')}\n` : ''}`;
}
