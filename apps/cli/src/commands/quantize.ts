import { InvalidOptionError, LINEAR_MODULES, configName, matrixKey, modelMatrixParams, parseConfigList, parseConfigName, parseOptionValue, resolveOptions, type Allocation, type OptionValue, type QuantConfig, type Quantizer } from '@layerquant/core';
import { validateStats } from '@layerquant/allocators';
import { openModel, openOutputDirectory, type OpenedModel } from '@layerquant/tensor-io';
import { brownCalibPath } from '@layerquant/datasets';
import { rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { FORK_SOLVER_OPTIONS } from '@layerquant/quantizers';
import { defaultWorkerCount, quantizeModel } from '@layerquant/quantizers/node';
import { exportOnnx } from '@layerquant/export';
import { exportGguf } from '@layerquant/gguf/node';
import { temporaryPath } from '@layerquant/tensor-io';
import { parseCommandArgs, parseIntegerOption, parseNumberOption, requireString, stringOption, type ParsedArgs } from '../args.js';
import { parseMethodName } from '@layerquant/allocators';
import { builtinRegistries, type PluginRegistries } from '../plugins.js';
import { allocateMethod, allocatorFlags, allocatorHelp, checkBudget, extraMemoryPercent, methodFromFlags, uniformBaseline } from '../experiment/allocate-method.js';
import { tablesNeeded } from '../experiment/grid.js';
import { ensureStatistics } from '../experiment/statistics.js';
import type { Command } from '../command.js';
import { EXPORT_OPTION_HELP, EXPORT_OPTION_SPEC, checkpointScaleDtype, exportRows, exportSummary, ggufExportRows, ggufExportSummary, parseExportOptions } from './export.js';
import { createCostReporter, createProgress, createSpinner, formatSeconds } from '../progress.js';
import { resolveModelPath } from '../model-path.js';
import { absolutePath, formatRows, jsonLine, sizeRows, sizes, boostReport, boostLines } from '../output.js';
import { existsSync, readdirSync, statSync } from 'node:fs';
import type { QuantizeModelReport } from '@layerquant/quantizers/node';

// Matrices differ in size (q_proj vs gate_proj): the time estimate extrapolates from a whole layer's.
const LAYER_ESTIMATE = { estimateAfter: LINEAR_MODULES.length };

/** An existing, non-empty --out is replaced only with --force (a directory that is not there or empty is fine). */
function checkOverwrite(outDir: string, force: boolean): void {
  if (force || !existsSync(outDir) || !statSync(outDir).isDirectory()) return;
  const entries = readdirSync(outDir).filter((name) => !name.startsWith('.layerquant'));
  if (entries.length > 0) {
    throw new InvalidOptionError('--out', `${absolutePath(outDir)} exists and is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}); pass --force to replace the quantized model in it, or choose another --out`);
  }
}

/** Sizes, error and time of a quantize run: the JSON fields every quantize prints. */
function reportFields(report: QuantizeModelReport) {
  return {
    model: report.modelDir,
    out: report.outDir,
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

/**
 * The quantizer of `--quantizer <id>` (default hqq) with its options from flags (`--kappa` for hqq). A flag of
 * another quantizer is an error naming the quantizer that takes it; `--fork` sets hqq's kappa to the fork's 1.01.
 */
export function quantizerFromFlags(id: string, values: ParsedArgs['values'], plugins: PluginRegistries, fork = false): { quantizer: Quantizer; options: Record<string, OptionValue> } {
  const plugin = plugins.quantizers.get(id);
  const given: Record<string, OptionValue> = {};
  for (const other of plugins.quantizers.list()) {
    for (const d of other.options) {
      const text = values[d.flag];
      if (text === undefined) continue;
      if (!plugin.options.some((o) => o.flag === d.flag)) throw new InvalidOptionError(`--${d.flag}`, `applies to --quantizer ${other.id} only, not ${plugin.id}`);
      given[d.name] = typeof text === 'boolean' ? text : parseOptionValue(d, String(text));
    }
  }
  // The fork's solver setting, for any quantizer that takes a kappa (hqq's option).
  if (fork && plugin.options.some((d) => d.name === 'kappa') && given.kappa === undefined) given.kappa = FORK_SOLVER_OPTIONS.kappa!;
  const options = resolveOptions(plugin, given, '--quantizer');
  return { quantizer: plugin.configure(options), options: Object.fromEntries(Object.entries(given)) };
}

/** Every option flag of the quantizer plug-ins (`--kappa`), for parseCommandArgs. */
export function quantizerFlags(plugins: PluginRegistries): Record<string, { type: 'string' | 'boolean' }> {
  const flags: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const q of plugins.quantizers.list()) for (const d of q.options) flags[d.flag] = { type: d.type === 'boolean' ? 'boolean' : 'string' };
  return flags;
}

/** Help lines of the quantizer plug-ins and their option flags. */
export function quantizerHelp(plugins: PluginRegistries, indent = '  '): string {
  return plugins.quantizers
    .list()
    .map((q) => formatRows([[q.id, q.description]], { indent, keyWidth: 22 }) + formatRows(q.options.map((d) => [`  --${d.flag} <v>`, `${d.help} (default ${String(d.default)})`]), { indent, keyWidth: 26 }))
    .join('')
    .trimEnd();
}

export const quantizeCommand: Command = {
  name: 'quantize',
  summary: 'quantize every linear matrix of a model into a quantized checkpoint',
  usage: (plugins) => [
    `layerquant quantize <model-dir> [--quantizer ${plugins.quantizers.ids().join('|')}] --config b4g64 --out <dir> [--json]`,
    `layerquant quantize <model-dir> --method ${plugins.allocators.ids().join('|')}`,
    `                    --budget <bpp> [--quantizer ${plugins.quantizers.ids().join('|')}] --out <dir> [allocator options] [--configs <ladder>] [--stats <dir> | --calib <file>] [--json]`,
    '',
    'With --config every matrix gets one config. With --budget the method allocates a config per matrix from the',
    'statistics it needs (computed on the calibration text and cached in <dir>/stats, or read with --stats; uniform',
    'needs none, kurtboost only the weights\' kurtosis), then quantizes every matrix with --quantizer (default hqq);',
    'it prints bits per weight, MiB and the extra memory over uniform at the same budget.',
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
    '  --configs <list>     the config ladder the allocator chooses from (default: the paper\'s 12), e.g. b2g64,b3g64,b4g32',
    '',
    'Quantizers (--quantizer) and their options:',
    quantizerHelp(plugins, '  '),
    '',
    'Allocators (--method with --budget; a grid name such as sensiboost-2-1 also works):',
    allocatorHelp(plugins.allocators.list(), '  '),
    '',
    '  --stats <dir>        reuse statistics (`layerquant sensitivity` output or a paper-data directory)',
    '  --calib <file>       calibration text for activation sensitivity (default: built-in brown-calib)',
    '  --blocks <n>         calibration blocks of 512 tokens (default 128, fewer for short texts)',
    '  --force              replace the quantized model in an existing, non-empty --out (refused without it)',
    '  --json               one JSON object (docs/json-schema.md): sizes { paperMiB, diskMiB, ... }, sqErr, seconds, ...',
    '',
    'With --format gguf the quantized model is written as one .gguf file llama.cpp loads (--out <file.gguf>; see',
    '`layerquant export`). With --format onnx the quantized model is written as an ONNX directory transformers.js loads (see',
    '`layerquant export --help`) instead of a quantized checkpoint:',
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
      force: { type: 'boolean' },
      ...EXPORT_OPTION_SPEC,
    });
    const modelDir = resolveModelPath(requireString(positionals[0], 'model-dir', 'layerquant quantize <model-dir> --config b4g64 --out <dir>'));
    if (positionals.length > 1) throw new InvalidOptionError('model-dir', `one model directory expected, got ${positionals.length}`);
    const target = absolutePath(requireString(stringOption(values, 'out'), '--out', 'where to write the quantized model, e.g. --out ./model-b4g64'));
    checkOverwrite(target, values.force === true);
    const onnx = parseExportOptions(values, true);
    if (onnx.format === 'gguf') {
      // Quantize into a temporary checkpoint beside the .gguf file, export it, and print both reports as one.
      if (existsSync(target) && values.force !== true) throw new InvalidOptionError('--out', `${target} exists; pass --force to replace it, or choose another --out`);
      const checkpointDir = temporaryPath(target);
      let printed = '';
      try {
        await quantizeCommand.run({ argv: [...withoutExportOptions(argv, checkpointDir), '--force'], stdout: (text) => (printed += text), stderr: () => undefined, plugins });
        const report = await exportGguf({ modelDir: checkpointDir, outFile: target, quantizers: plugins.quantizers, ...onnx.gguf, name: basename(modelDir) });
        if (values.json) stdout(jsonLine('quantize', { ...(JSON.parse(printed) as Record<string, unknown>), command: 'quantize', out: report.outFile, export: ggufExportSummary(report) }));
        else stdout(`${printed.replace(checkpointDir, report.outFile)}${formatRows(ggufExportRows(report), { keyWidth: 12 })}`);
      } finally {
        await rm(checkpointDir, { recursive: true, force: true });
      }
      return;
    }
    if (onnx.format === 'onnx') {
      // Quantize into a temporary checkpoint beside --out, export it there, and print both reports as one.
      const checkpointDir = temporaryPath(target);
      let printed = '';
      try {
        await quantizeCommand.run({ argv: [...withoutExportOptions(argv, checkpointDir), '--force'], stdout: (text) => (printed += text), stderr: () => undefined, plugins });
        const report = await exportOnnx({ modelDir: checkpointDir, outDir: target, quantizers: plugins.quantizers, ...onnx.options });
        if (values.json) stdout(jsonLine('quantize', { ...(JSON.parse(printed) as Record<string, unknown>), command: 'quantize', out: report.outDir, export: exportSummary(report) }));
        else stdout(`${printed.replace(checkpointDir, report.outDir)}${formatRows(exportRows(report), { keyWidth: 12 })}`);
      } finally {
        await rm(checkpointDir, { recursive: true, force: true });
      }
      return;
    }
    const outDir = target;
    const quantizerId = stringOption(values, 'quantizer');
    const method = stringOption(values, 'method') ?? quantizerId ?? 'hqq';
    const budgetText = stringOption(values, 'budget');
    if (budgetText !== undefined || isAllocatorMethod(method, plugins)) {
      if (stringOption(values, 'config') !== undefined) throw new InvalidOptionError('--config', 'give either --config (one config for all) or --budget (an allocation), not both');
      await quantizeAllocated({ values, modelDir, outDir, method, quantizerId: quantizerId ?? 'hqq', stdout, stderr, plugins });
      return;
    }
    // --method rtn|hqq|<quantizer> --config: the method is the quantizer (the form before --quantizer existed).
    if (quantizerId !== undefined && stringOption(values, 'method') !== undefined && quantizerId !== method) {
      throw new InvalidOptionError('--quantizer', `"${quantizerId}" and --method ${method} disagree; with --config give one of them`);
    }
    if (!plugins.quantizers.has(method)) {
      throw new InvalidOptionError('--method', `"${method}" is neither a quantizer (${plugins.quantizers.ids().join(', ')}) nor an allocator (${plugins.allocators.ids().join(', ')})`);
    }
    await quantizeUniform({ values, modelDir, outDir, method, quantizerId: method, stdout, stderr, plugins });
  },
};

/**
 * Validates the model (config.json against its tensors, so a wrong config fails before any long step), then holds
 * --out's lock for the whole run: a second layerquant writing the same directory stops with an error. quantizeModel
 * swaps the output files in as one set; a failed run leaves --out as it was (a directory it created is removed).
 */
async function withOutputDirectory<T>(modelDir: string, outDir: string, run: (model: OpenedModel) => Promise<T>): Promise<T> {
  const model = await openModel(modelDir);
  await model.checkpoint.close();
  const output = await openOutputDirectory(outDir, 'quantize');
  try {
    return await run(model);
  } catch (error) {
    output.abandon();
    throw error;
  } finally {
    output.release();
  }
}

/** `--method rtn|hqq --config b4g64`: one config for every matrix. */
async function quantizeUniform({ values, modelDir, outDir, method, stdout, stderr, plugins }: AllocatedRun): Promise<void> {
  const fork = values.fork === true;
  const bits = parseConfigName(stringOption(values, 'config') ?? 'b4g64').bits;
  const axisText = stringOption(values, 'axis');
  if (axisText !== undefined && axisText !== '0' && axisText !== '1') throw new InvalidOptionError('--axis', `"${axisText}" must be 0 or 1`);
  const axis = axisText === undefined ? (fork ? 0 : 1) : axisText === '0' ? 0 : 1;
  const roundZero = values['round-zero'] === true || (fork && bits === 4);
  const config = parseConfigName(stringOption(values, 'config') ?? 'b4g64', { axis, roundZero });
  const { quantizer, options: quantizerOptions } = quantizerFromFlags(method, values, plugins, fork);
  const kappa = quantizerOptions.kappa as number | undefined;

  const progress = createProgress('quantize', !values.json && Boolean(process.stderr.isTTY));
  const cost = createCostReporter('quantize', stderr, !values.json);
  const loading = createSpinner(`loading ${modelDir}`, !values.json && Boolean(process.stderr.isTTY));
  const report = await withOutputDirectory(modelDir, outDir, () =>
    quantizeModel({
      modelDir,
      outDir,
      quantizer,
      configFor: () => config,
      method,
      scaleDtype: checkpointScaleDtype(values),
      workers: defaultWorkerCount(),
      options: { config: `b${config.bits}g${config.groupSize}`, axis, roundZero, ...quantizerOptions },
      onPlan: (plan) => {
        loading.stop();
        cost.plan(`${method} b${config.bits}g${config.groupSize} on ${plan.quantizedMatrices} matrices (${plan.params.toLocaleString('en-US')} weights), one matrix at a time (read, quantize, write)`, LAYER_ESTIMATE);
      },
      onProgress: (p) => {
        loading.stop();
        cost.unit(p.done, p.total, 'matrices');
        progress.update(p.done, p.total, `matrices (${p.key})`);
      },
    }),
  ).finally(() => loading.stop());
  progress.done();
  if (values.json) {
    stdout(jsonLine('quantize', {
      method,
      quantizer: quantizer.id,
      config: `b${config.bits}g${config.groupSize}`,
      axis,
      roundZero,
      kappa: kappa ?? null,
      ...reportFields(report),
    }));
    return;
  }
  const rows: Array<[string, string]> = [
    ['model', report.modelDir],
    ['out', report.outDir],
    ['method', `${method} ${`b${config.bits}g${config.groupSize}`}${axis === 0 ? ' axis 0' : ''}${roundZero ? ' round-zero' : ''}${kappa === undefined ? '' : ` kappa ${kappa}`}`],
    ['matrices', `${report.quantizedMatrices} of ${report.matrices} (${report.params.toLocaleString('en-US')} weights)`],
    ...sizeRows(reportFields(report).sizes),
    storedRow(report),
    ['sq. error', report.sqErr.toPrecision(8)],
    ['time', timeText(report)],
  ];
  stdout(formatRows(rows));
}

interface AllocatedRun {
  readonly values: ReturnType<typeof parseCommandArgs>['values'];
  readonly modelDir: string;
  readonly outDir: string;
  readonly method: string;
  readonly quantizerId: string;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly plugins: PluginRegistries;
}

/** `--method <allocator> --budget <bpp>`: the statistics it needs, allocation, --quantizer per the allocation, one checkpoint. */
async function quantizeAllocated({ values, modelDir, outDir, method, quantizerId, stdout, stderr, plugins }: AllocatedRun): Promise<void> {
  const budget = parseNumberOption(requireString(values.budget, '--budget', 'bits per weight, e.g. 3.25'), '--budget', Number.NaN, (n) => n > 0);
  const allocators = plugins.allocators.list();
  const spec = methodFromFlags(method, values, allocators);
  const { quantizer, options: quantizerOptions } = quantizerFromFlags(quantizerId, values, plugins, values.fork === true);
  const seed = parseIntegerOption(stringOption(values, 'seed'), '--seed', 42, 0);
  const configsText = stringOption(values, 'configs');
  const ladder = configsText === undefined ? undefined : parseConfigList(configsText, '--configs');
  checkBudget(spec, budget, ladder, allocators);
  const interactive = !values.json && Boolean(process.stderr.isTTY);
  const calib = stringOption(values, 'calib');
  const statsDir = stringOption(values, 'stats');
  const loading = createSpinner(`loading ${modelDir}`, interactive);
  const { source, allocation, uniform, extra, report } = await withOutputDirectory(modelDir, outDir, async (model) => {
    loading.stop();
    const statsProgress = createProgress('statistics', interactive);
    const { stats, source } = await ensureStatistics({
      modelDir,
      ...(statsDir ? { statsDir } : {}),
      cacheDir: join(outDir, 'stats'),
      needs: tablesNeeded([spec], allocators),
      matrices: modelMatrixParams(model.config),
      calibrationPath: calib ?? brownCalibPath,
      calibrationName: calib ? basename(calib) : 'brown-calib',
      blocks: parseIntegerOption(stringOption(values, 'blocks'), '--blocks', 128, 1),
      seqlen: 512,
      ...(ladder ? { configs: ladder } : {}),
      onStep: (step, done, total) => statsProgress.update(done, total, step),
    });
    statsProgress.done(`from ${source}`);
    // The tables must cover this model whole (a table cut at a layer boundary would allocate only part of it).
    validateStats(stats, { matrices: modelMatrixParams(model.config), name: modelDir });
    const allocation: Allocation = allocateMethod(spec, stats, budget, seed, ladder, allocators);
    const uniform = uniformBaseline(stats, budget, ladder);
    const extra = uniform ? extraMemoryPercent(allocation, uniform) : null;
    const configs = new Map<string, QuantConfig | null>(allocation.matrices.map((m) => [m.key, m.config]));
    const progress = createProgress('quantize', interactive);
    const cost = createCostReporter('quantize', stderr, !values.json);
    const report = await quantizeModel({
      modelDir,
      outDir,
      quantizer,
      configFor: (key) => {
        const config = configs.get(key);
        if (config === undefined) throw new InvalidOptionError('--stats', `the statistics have no row for matrix ${key}; they were made for another model`);
        return config;
      },
      method: spec.id,
      allocation,
      scaleDtype: checkpointScaleDtype(values),
      workers: defaultWorkerCount(),
      onPlan: (plan) => cost.plan(`${spec.id} at ${budget} bits: ${quantizer.id} on ${plan.quantizedMatrices} of ${plan.matrices} matrices (${plan.params.toLocaleString('en-US')} weights), one matrix at a time (read, quantize, write)`, LAYER_ESTIMATE),
      options: { method: spec.id, budget, statistics: source, ...quantizerOptions, ...(spec.options.seed !== undefined ? { seed: allocation.options.seed ?? seed } : {}), ...(ladder ? { configs: ladder.map(configName) } : {}) },
      onProgress: (p) => {
        cost.unit(p.done, p.total, 'matrices');
        progress.update(p.done, p.total, `matrices (${p.key})`);
      },
    });
    progress.done();
    return { source, allocation, uniform, extra, report };
  }).finally(() => loading.stop());
  const counts = new Map<string, number>();
  for (const m of allocation.matrices) {
    const name = m.config ? configName(m.config) : 'float';
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  const boosts = boostReport(allocation as Parameters<typeof boostReport>[0]);
  if (values.json) {
    stdout(jsonLine('quantize', {
      method: spec.id,
      quantizer: quantizer.id,
      budget,
      statistics: source,
      ...reportFields(report),
      uniformPaperMiB: uniform?.totals.memoryMB ?? null,
      extraMemoryPercent: extra,
      configs: Object.fromEntries(counts),
      boosts: boosts ?? null,
      allocation: Object.fromEntries(allocation.matrices.map((m) => [matrixKey(m.layer, m.module), m.config ? configName(m.config) : null])),
    }));
    return;
  }
  const rows: Array<[string, string]> = [
    ['model', report.modelDir],
    ['out', report.outDir],
    ['method', `${spec.id} at ${budget} bits, ${quantizer.id} (statistics: ${source})`],
    ['configs', [...counts].map(([c, n]) => `${c} x${n}`).join(', ')],
    ...sizeRows(reportFields(report).sizes),
    storedRow(report),
    ...(uniform ? [['vs uniform', `${extra! >= 0 ? '+' : ''}${extra!.toFixed(2)}% paper memory over uniform (${uniform.totals.memoryMB.toFixed(2)} MiB)`] as [string, string]] : []),
    ['sq. error', report.sqErr.toPrecision(8)],
    ['time', timeText(report)],
  ];
  stdout(formatRows(rows));
  if (boosts) stdout(`${boostLines(boosts).join('\n')}\n`);
}

/** The argv of the checkpoint step of `quantize --format onnx`: the ONNX options dropped, --out replaced. */
function withoutExportOptions(argv: readonly string[], checkpointDir: string): string[] {
  const result: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = arg.startsWith('--') ? arg.slice(2).split('=')[0]! : '';
    if ((name in EXPORT_OPTION_SPEC && name !== 'scale-dtype') || name === 'out') {
      if (!arg.includes('=')) i++;
      continue;
    }
    result.push(arg);
  }
  return [...result, '--out', checkpointDir];
}
