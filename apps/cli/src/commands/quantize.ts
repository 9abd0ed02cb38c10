import { InvalidOptionError, configName, matrixKey, parseConfigName, type Allocation, type QuantConfig, type Quantizer } from '@layerquant/core';
import { brownCalibPath } from '@layerquant/fixtures';
import { rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createHqqQuantizer, FORK_SOLVER_OPTIONS, rtnQuantizer } from '@layerquant/quantizers';
import { defaultWorkerCount, quantizeModel } from '@layerquant/quantizers/node';
import { exportOnnx } from '@layerquant/export';
import { temporaryPath } from '@layerquant/tensor-io';
import { parseCommandArgs, parseIntegerOption, parseNumberOption, requireString, stringOption } from '../args.js';
import { allocateMethod, checkBudget, extraMemoryPercent, uniformBaseline } from '../experiment/allocate-method.js';
import { parseMethods, tablesNeeded, type MethodSpec } from '../experiment/grid.js';
import { ensureStatistics } from '../experiment/statistics.js';
import type { Command } from '../command.js';
import { EXPORT_OPTION_HELP, EXPORT_OPTION_SPEC, exportRows, exportSummary, parseExportOptions } from './export.js';
import { createProgress, formatSeconds } from '../progress.js';

const METHODS = ['rtn', 'hqq'] as const;
const ALLOCATION_METHODS = ['uniform', 'mxq', 'sensiboost', 'kurtboost', 'ablation'] as const;

/** The method an allocation-driven quantize runs (`--method sensiboost --boost-stop 3 --top-m 0`). */
function allocationMethod(method: string, boostStop: number, topM: number, imitate: string): MethodSpec {
  if (method === 'uniform' || method === 'hqq') return parseMethods('hqq')[0]!;
  if (method === 'mxq') return parseMethods('mxq')[0]!;
  if (method === 'sensiboost' || method === 'kurtboost') return parseMethods(`${method}-${boostStop}-${topM}`)[0]!;
  if (method === 'ablation') {
    if (imitate !== 'sensiboost' && imitate !== 'kurtboost') throw new InvalidOptionError('--imitate', `"${imitate}" must be sensiboost or kurtboost`);
    return parseMethods(`ablation-${imitate}-${boostStop}-${topM}`)[0]!;
  }
  throw new InvalidOptionError('--method', `"${method}" is not a method; with --budget use one of ${ALLOCATION_METHODS.join(', ')}`);
}

function quantizerFor(method: string, kappa: number | undefined): Quantizer {
  if (method === 'rtn') {
    if (kappa !== undefined) throw new InvalidOptionError('--kappa', 'applies to --method hqq only');
    return rtnQuantizer;
  }
  if (method === 'hqq') return createHqqQuantizer({ solver: kappa === undefined ? {} : { kappa } });
  throw new InvalidOptionError('--method', `"${method}" is not a method; use one of ${METHODS.join(', ')}`);
}

export const quantizeCommand: Command = {
  name: 'quantize',
  summary: 'quantize every linear matrix of a model into a quantized checkpoint',
  usage: [
    'layerquant quantize <model-dir> --method rtn|hqq --config b4g64 --out <dir> [--json]',
    'layerquant quantize <model-dir> --method uniform|mxq|sensiboost|kurtboost|ablation --budget <bpp> --out <dir>',
    '                    [--boost-stop 2] [--top-m 1] [--stats <dir> | --calib <file>] [--json]',
    '',
    'With --config every matrix gets one config. With --budget the method allocates a config per matrix from the',
    'model\'s statistics (computed on the calibration text and cached in <dir>/stats, or read with --stats), then',
    'quantizes with HQQ; it prints bits per weight, MB and the extra memory over HQQ uniform at the same budget.',
    '',
    'Writes <dir>/model.safetensors (packed codes, scales, zeros per matrix; other tensors copied), config and',
    'tokenizer files, and quantization.json. Prints bits per weight (paper accounting), packed bytes, the summed',
    'squared dequantization error and the time.',
    '',
    'Options:',
    '  --method rtn|hqq     quantizer (default hqq: upstream HQQ, p=0.7, beta=10, 20 iterations, early stop)',
    '  --config b{b}g{g}    bits in 1,2,3,4,5,6,8 and a group size that divides the row length (default b4g64)',
    '  --out <dir>          output directory (required)',
    '  --axis 0|1           1: groups along the input dimension (default); 0: strided groups, as the authors\' fork',
    '  --round-zero         round the zero point (the fork does for 4-bit)',
    '  --kappa <k>          multiply HQQ\'s beta by k after each step (the fork: 1.01; default off)',
    '  --fork               the authors\' fork defaults: --kappa 1.01 --axis 0, --round-zero for 4-bit',
    '  --budget <bpp>       allocate instead of --config: a budget stop (2.13 ... 8.51) or any value for mxq',
    '  --boost-stop <n>     SensiBoost/KurtBoost/ablation: stops up the ladder for an outlier (default 2)',
    '  --top-m <n>          keep the n most extreme outlier layers per module, 0 = all (default 1)',
    '  --imitate <id>       ablation: draw as many random layers as sensiboost (default) or kurtboost boosts',
    '  --seed <n>           ablation seed (default 42)',
    '  --stats <dir>        reuse statistics (`layerquant sensitivity` output or a paper-data directory)',
    '  --calib <file>       calibration text for activation sensitivity (default: built-in brown-calib)',
    '  --blocks <n>         calibration blocks of 512 tokens (default 128, fewer for short texts)',
    '  --json               one JSON object: bpp, bytes, sqErr, seconds, ...',
    '',
    'With --format onnx the quantized model is written as an ONNX directory transformers.js loads (see',
    '`layerquant export --help`) instead of a quantized checkpoint:',
    ...EXPORT_OPTION_HELP,
  ].join('\n'),
  async run({ argv, stdout }) {
    const { values, positionals } = parseCommandArgs(argv, {
      method: { type: 'string' },
      config: { type: 'string' },
      out: { type: 'string' },
      axis: { type: 'string' },
      'round-zero': { type: 'boolean' },
      kappa: { type: 'string' },
      fork: { type: 'boolean' },
      budget: { type: 'string' },
      'boost-stop': { type: 'string' },
      'top-m': { type: 'string' },
      imitate: { type: 'string' },
      seed: { type: 'string' },
      stats: { type: 'string' },
      calib: { type: 'string' },
      blocks: { type: 'string' },
      ...EXPORT_OPTION_SPEC,
    });
    const modelDir = requireString(positionals[0], 'model-dir', 'layerquant quantize <model-dir> --config b4g64 --out <dir>');
    if (positionals.length > 1) throw new InvalidOptionError('model-dir', `one model directory expected, got ${positionals.length}`);
    const target = requireString(stringOption(values, 'out'), '--out', 'where to write the quantized model, e.g. --out ./model-b4g64');
    const onnx = parseExportOptions(values);
    if (onnx.format === 'onnx') {
      // Quantize into a temporary checkpoint beside --out, export it there, and print both reports as one.
      const checkpointDir = temporaryPath(target);
      let printed = '';
      try {
        await quantizeCommand.run({ argv: withoutExportOptions(argv, checkpointDir), stdout: (text) => (printed += text), stderr: () => undefined });
        const report = await exportOnnx({ modelDir: checkpointDir, outDir: target, ...onnx.options });
        if (values.json) stdout(`${JSON.stringify({ ...(JSON.parse(printed) as Record<string, unknown>), out: report.outDir, export: exportSummary(report) })}\n`);
        else stdout(`${printed.replace(checkpointDir, report.outDir)}${exportRows(report).map(([k, v]) => `${k.padEnd(12)} ${v}`).join('\n')}\n`);
      } finally {
        await rm(checkpointDir, { recursive: true, force: true });
      }
      return;
    }
    const outDir = target;
    const method = stringOption(values, 'method') ?? 'hqq';
    const budgetText = stringOption(values, 'budget');
    if (budgetText !== undefined || (ALLOCATION_METHODS as readonly string[]).includes(method)) {
      if (stringOption(values, 'config') !== undefined) throw new InvalidOptionError('--config', 'give either --config (one config for all) or --budget (an allocation), not both');
      await quantizeAllocated({ values, modelDir, outDir, method, stdout });
      return;
    }
    const fork = values.fork === true;
    const bits = parseConfigName(stringOption(values, 'config') ?? 'b4g64').bits;
    const axisText = stringOption(values, 'axis');
    if (axisText !== undefined && axisText !== '0' && axisText !== '1') throw new InvalidOptionError('--axis', `"${axisText}" must be 0 or 1`);
    const axis = axisText === undefined ? (fork ? 0 : 1) : axisText === '0' ? 0 : 1;
    const roundZero = values['round-zero'] === true || (fork && bits === 4);
    const config = parseConfigName(stringOption(values, 'config') ?? 'b4g64', { axis, roundZero });
    const kappaText = stringOption(values, 'kappa');
    const kappa = kappaText === undefined ? (fork && method === 'hqq' ? FORK_SOLVER_OPTIONS.kappa : undefined) : parseNumberOption(kappaText, '--kappa', 1, (k) => k >= 1);
    const quantizer = quantizerFor(method, kappa);

    const progress = createProgress('quantize', !values.json && Boolean(process.stderr.isTTY));
    const report = await quantizeModel({
      modelDir,
      outDir,
      quantizer,
      configFor: () => config,
      method,
      workers: defaultWorkerCount(),
      options: { config: `b${config.bits}g${config.groupSize}`, axis, roundZero, ...(kappa === undefined ? {} : { kappa }) },
      onProgress: (p) => progress.update(p.done, p.total, p.key),
    });
    progress.done();
    if (values.json) {
      stdout(`${JSON.stringify({
        method,
        config: `b${config.bits}g${config.groupSize}`,
        axis,
        roundZero,
        ...(kappa === undefined ? {} : { kappa }),
        out: report.outDir,
        matrices: report.matrices,
        params: report.params,
        bpp: report.bpp,
        paperMB: report.paperMB,
        bytes: report.bytes,
        fileBytes: report.fileBytes,
        sqErr: report.sqErr,
        seconds: report.seconds,
        quantizeSeconds: report.quantizeSeconds,
      })}\n`);
      return;
    }
    const rows: Array<[string, string]> = [
      ['model', report.modelDir],
      ['out', report.outDir],
      ['method', `${method} ${`b${config.bits}g${config.groupSize}`}${axis === 0 ? ' axis 0' : ''}${roundZero ? ' round-zero' : ''}${kappa === undefined ? '' : ` kappa ${kappa}`}`],
      ['matrices', `${report.quantizedMatrices} of ${report.matrices} (${report.params.toLocaleString('en-US')} weights)`],
      ['bits/weight', `${report.bpp.toFixed(4)} (paper), ${((8 * report.bytes) / report.params).toFixed(4)} (packed)`],
      ['size', `${(report.bytes / 2 ** 20).toFixed(2)} MiB packed linear weights, ${(report.fileBytes / 2 ** 20).toFixed(2)} MiB file`],
      ['sq. error', report.sqErr.toPrecision(8)],
      ['time', `${formatSeconds(report.seconds)} (${formatSeconds(report.quantizeSeconds)} quantizing)`],
    ];
    stdout(`${rows.map(([k, v]) => `${k.padEnd(12)} ${v}`).join('\n')}\n`);
  },
};

interface AllocatedRun {
  readonly values: ReturnType<typeof parseCommandArgs>['values'];
  readonly modelDir: string;
  readonly outDir: string;
  readonly method: string;
  readonly stdout: (text: string) => void;
}

/** `--method <allocator> --budget <bpp>`: statistics, allocation, HQQ per the allocation, one checkpoint. */
async function quantizeAllocated({ values, modelDir, outDir, method, stdout }: AllocatedRun): Promise<void> {
  const budget = parseNumberOption(requireString(values.budget, '--budget', 'bits per weight, e.g. 3.25'), '--budget', Number.NaN, (n) => n > 0);
  const spec = allocationMethod(
    method,
    parseIntegerOption(stringOption(values, 'boost-stop'), '--boost-stop', 2, 1),
    parseIntegerOption(stringOption(values, 'top-m'), '--top-m', 1, 0),
    stringOption(values, 'imitate') ?? 'sensiboost',
  );
  const seed = parseIntegerOption(stringOption(values, 'seed'), '--seed', 42, 0);
  checkBudget(spec, budget);
  const interactive = !values.json && Boolean(process.stderr.isTTY);
  const calib = stringOption(values, 'calib');
  const statsDir = stringOption(values, 'stats');
  const statsProgress = createProgress('statistics', interactive);
  const { stats, source } = await ensureStatistics({
    modelDir,
    ...(statsDir ? { statsDir } : {}),
    cacheDir: join(outDir, 'stats'),
    needs: tablesNeeded([spec]),
    calibrationPath: calib ?? brownCalibPath,
    calibrationName: calib ? basename(calib) : 'brown-calib',
    blocks: parseIntegerOption(stringOption(values, 'blocks'), '--blocks', 128, 1),
    seqlen: 512,
    onStep: (step, done, total) => statsProgress.update(done, total, step),
  });
  statsProgress.done(`from ${source}`);
  const allocation: Allocation = allocateMethod(spec, stats, budget, seed);
  const uniform = uniformBaseline(stats, budget);
  const extra = uniform ? extraMemoryPercent(allocation, uniform) : null;
  const configs = new Map<string, QuantConfig | null>(allocation.matrices.map((m) => [m.key, m.config]));
  const progress = createProgress('quantize', interactive);
  const report = await quantizeModel({
    modelDir,
    outDir,
    quantizer: createHqqQuantizer(),
    configFor: (key) => {
      const config = configs.get(key);
      if (config === undefined) throw new InvalidOptionError('--stats', `the statistics have no row for matrix ${key}; they were made for another model`);
      return config;
    },
    method: spec.id,
    allocation,
    workers: defaultWorkerCount(),
    options: { method: spec.id, budget, statistics: source, ...(spec.allocator === 'ablation' ? { seed } : {}) },
    onProgress: (p) => progress.update(p.done, p.total, p.key),
  });
  progress.done();
  const counts = new Map<string, number>();
  for (const m of allocation.matrices) {
    const name = m.config ? configName(m.config) : 'float';
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  if (values.json) {
    stdout(`${JSON.stringify({
      method: spec.id,
      budget,
      out: report.outDir,
      statistics: source,
      matrices: report.matrices,
      params: report.params,
      bpp: report.bpp,
      paperMB: report.paperMB,
      uniformMB: uniform?.totals.memoryMB ?? null,
      extraMemoryPercent: extra,
      bytes: report.bytes,
      fileBytes: report.fileBytes,
      sqErr: report.sqErr,
      seconds: report.seconds,
      configs: Object.fromEntries(counts),
      allocation: Object.fromEntries(allocation.matrices.map((m) => [matrixKey(m.layer, m.module), m.config ? configName(m.config) : null])),
    })}\n`);
    return;
  }
  const rows: Array<[string, string]> = [
    ['model', report.modelDir],
    ['out', report.outDir],
    ['method', `${spec.id} at ${budget} bits (statistics: ${source})`],
    ['configs', [...counts].map(([c, n]) => `${c} x${n}`).join(', ')],
    ['bits/weight', `${report.bpp.toFixed(4)} (paper), ${((8 * report.bytes) / report.params).toFixed(4)} (packed)`],
    ['memory', `${report.paperMB.toFixed(3)} MB${uniform ? `, ${extra! >= 0 ? '+' : ''}${extra!.toFixed(2)}% over HQQ uniform (${uniform.totals.memoryMB.toFixed(3)} MB)` : ''}`],
    ['size', `${(report.bytes / 2 ** 20).toFixed(2)} MiB packed linear weights, ${(report.fileBytes / 2 ** 20).toFixed(2)} MiB file`],
    ['sq. error', report.sqErr.toPrecision(8)],
    ['time', `${formatSeconds(report.seconds)} (${formatSeconds(report.quantizeSeconds)} quantizing)`],
  ];
  stdout(`${rows.map(([k, v]) => `${k.padEnd(12)} ${v}`).join('\n')}\n`);
}

/** The argv of the checkpoint step of `quantize --format onnx`: the ONNX options dropped, --out replaced. */
function withoutExportOptions(argv: readonly string[], checkpointDir: string): string[] {
  const result: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = arg.startsWith('--') ? arg.slice(2).split('=')[0]! : '';
    if (name in EXPORT_OPTION_SPEC || name === 'out') {
      if (!arg.includes('=')) i++;
      continue;
    }
    result.push(arg);
  }
  return [...result, '--out', checkpointDir];
}
