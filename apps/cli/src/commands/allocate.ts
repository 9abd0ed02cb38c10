import { allocateMethod, checkMethodBudget, matricesOf, validateStats, type AllocatorPlugin, type BoostAllocation, type KnapsackAllocation } from '@layerquant/allocators';
import { loadStatsDirectory } from '@layerquant/allocators/node';
import { writeTextAtomic } from '@layerquant/tensor-io';
import { LINEAR_MODULES, configName, matrixTensorName, modelMatrixParams, parseConfigList, type Allocation } from '@layerquant/core';
import { modelMemory } from '@layerquant/quantizers';
import { openModel } from '@layerquant/tensor-io';
import { resolve } from 'node:path';
import { boostLines, boostReport, formatRows, jsonLine, renderTable, sizeRows, sizes, type Sizes } from '../output.js';
import { parseCommandArgs, parseIntegerOption, parseNumberOption, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';
import { builtinRegistries, formatAllocationSettings, resolveModelPath, shippedBytes, shippedSize, shippedSizeBudget, statisticsForPlan, type FormatPlan, type PluginRegistries } from '@layerquant/pipeline';
import { FILE_TARGET_FLAGS, shippedPlan, parseEmbeddingConfigs, parseFileTarget, parseTargetFormat, targetFormatRequest } from '../flags/file-target.js';
import { InvalidOptionError } from '@layerquant/core';
import { allocatorFlags, allocatorHelp, methodFromFlags } from '../flags/allocator-flags.js';
import { refineDoneLine, refinePlanLine, refineRoundLine, refinementJson } from '../flags/refine-flags.js';
import { fitStderr } from '../progress.js';
import { brownCalibPath } from '@layerquant/datasets';
import { basename } from 'node:path';
import { methodRefines, openRefineSession, refineAllocation, type RefinementReport } from '@layerquant/pipeline';

const usage = (plugins: PluginRegistries): string => `layerquant allocate --stats <dir> --method <id> --budget <bpp> [options]

Chooses a quantization config for every linear matrix from statistics tables and prints the allocation.

  --stats <dir>            output directory of \`layerquant sensitivity\`, or a paper-data directory
                           (fnorm.csv, sensitivity.csv, optional kurtosis.csv, measured.csv)
  --model <dir>            the model the statistics are for: config.json is validated against its tensors and
                           the tables must cover every matrix, layer and config of it (without it, the tables
                           are only checked against each other)
  --method <id>            an allocator (below) or a grid name such as sensiboost-2-1, sensi-milp-2
  --budget <bpp>           bits per weight: a stop of the ladder (2.13 ... 8.51) for uniform and the boosts;
                           any value for the knapsack allocators
  --configs <list>         the config ladder (default: every config of the tables, the paper's 12), e.g.
                           b2g64,b3g64,b4g32
  --target-format onnx|gguf  allocate for the shipped ONNX or GGUF file (needs --model): the ladder is the format's
                           native configs (ONNX: 2/4/8 bits, integer or corrected zeros; GGUF: llama.cpp's types
                           for --quantizer ggml, exact legacy blocks for rtn/hqq/gptq), the knapsacks spend the
                           file's bytes, embed_tokens/lm_head are units where the tables have rows for them (the
                           tables quantize --format onnx caches in <out>/stats, or --stats-cache), and the shipped
                           size is reported
  --tokenizer-pre <name>   with --target-format gguf: llama.cpp's pre-tokenizer name, as quantize --format gguf takes it
  --target-size <MiB>      with --target-format and a knapsack allocator: the file's size instead of --budget
  --target-bpw <bits>      the same as bits per linear weight of the file
  --embedding-configs <list>|float  embed_tokens' and lm_head's ladder (default: the format's native configs
                           for them), or float to keep them float
  --quantizer <id>         the quantizer the statistics were measured with (its zero kinds pick the ladder; hqq)
  --calib <file>           with --model and an allocator that corrects its allocation by measurement (kld):
                           the calibration text it measures on, the one the statistics were measured on
                           (default brown-calib)
  --blocks <n>             its calibration blocks of 512 tokens, as the statistics' (default 128)
  --no-refine              keep such an allocator's additive solution (nothing measured)
  --verbose                one line per matrix instead of layer ranges
  --out <file>             also write the allocation JSON there (atomically)
  --json                   print the Allocation object as JSON
  --plugin <module>        load more allocators from a module (a path or package name; repeatable)

Allocators:
${allocatorHelp(plugins.allocators.list(), '  ')}

An allocator that corrects its allocation by measurement (kld) does so when --model is given (on --calib, --blocks):
its plan and cost first, then each measured allocation's KLD on stderr; the corrected allocation is printed only
when its measured KLD is not above the additive one's (--json: refinement). Without --model, or with --no-refine,
it prints its additive solution.`;

/** "0-30 b3g64, 31 b4g128": runs of consecutive layers with the same config. */
function layerRanges(allocation: Allocation, module: string): string {
  const rows = allocation.matrices.filter((m) => m.module === module).sort((a, b) => a.layer - b.layer);
  const parts: string[] = [];
  let start = 0;
  for (let i = 1; i <= rows.length; i++) {
    const name = (k: number): string => (rows[k]!.config ? configName(rows[k]!.config!) : 'float');
    if (i === rows.length || name(i) !== name(start)) {
      const first = rows[start]!.layer;
      const last = rows[i - 1]!.layer;
      parts.push(`${first === last ? first : `${first}-${last}`} ${name(start)}`);
      start = i;
    }
  }
  return parts.join(', ');
}

function humanReport(allocation: Allocation, size: Sizes, verbose: boolean, allocators: readonly AllocatorPlugin[]): string {
  const lines: string[] = [];
  const t = allocation.totals;
  lines.push(`method        ${allocation.method} ${JSON.stringify(allocation.options)}`);
  lines.push(`budget        ${allocation.budget} bits per weight`);
  lines.push(`allocation    ${t.params.toLocaleString('en-US')} params in ${allocation.matrices.length} matrices${size.diskMiB === null ? ' (size on disk: give --model)' : ''}`);
  lines.push(formatRows(sizeRows(size), { keyWidth: 13 }).trimEnd());
  const solver = (allocation as Partial<KnapsackAllocation>).solver;
  if (solver) {
    const what = allocators.find((p) => p.id === allocation.method)?.objective ?? `${allocation.method} cost`;
    lines.push(`objective     ${solver.objective.toPrecision(8)} (${what}), bound ${solver.bound.toPrecision(8)}, gap ${solver.gap.toExponential(2)} (${solver.status === 'optimal' ? 'proven optimal' : 'stopped at the gap asked for, not proven optimal'})`);
    lines.push(`solver        ${(solver.seconds * 1000).toFixed(1)} ms, ${solver.nodes} nodes, ${solver.freeMatrices} matrices free after reduced-cost fixing; ${solver.accounting === 'paper' ? 'paper memory' : `${solver.accounting} file`} ${solver.sizeMiB.toFixed(3)} / ${solver.limitMiB.toFixed(3)} MiB`);
  }
  const boosts = boostReport(allocation as Partial<BoostAllocation>);
  if (boosts) lines.push(...boostLines(boosts));
  lines.push('');
  if (verbose) {
    lines.push(renderTable([{ header: 'matrix' }, { header: 'config' }, { header: 'params', align: 'right' }], allocation.matrices.map((m) => [m.key, m.config ? configName(m.config) : 'float', String(m.params)])).trimEnd());
  } else {
    const modules = LINEAR_MODULES.filter((module) => allocation.matrices.some((m) => m.module === module));
    lines.push(renderTable([{ header: 'module' }, { header: 'configs by layer' }], modules.map((module) => [module, layerRanges(allocation, module)])).trimEnd());
  }
  return `${lines.join('\n')}\n`;
}

export const allocateCommand: Command = {
  name: 'allocate',
  summary: `choose a config per matrix (${builtinRegistries().allocators.ids().join(', ')}, or a --plugin's)`,
  usage,
  async run({ argv, stdout, stderr, plugins = builtinRegistries() }) {
    const allocators = plugins.allocators.list();
    const { values } = parseCommandArgs(argv, {
      stats: { type: 'string' },
      method: { type: 'string' },
      budget: { type: 'string' },
      configs: { type: 'string' },
      ...allocatorFlags(allocators),
      verbose: { type: 'boolean' },
      out: { type: 'string' },
      model: { type: 'string' },
      'target-format': { type: 'string' },
      'tokenizer-pre': { type: 'string' },
      quantizer: { type: 'string' },
      calib: { type: 'string' },
      blocks: { type: 'string' },
      'no-refine': { type: 'boolean' },
      ...FILE_TARGET_FLAGS,
    });
    const statsDir = requireString(values.stats, '--stats', 'a directory with fnorm.csv / sensitivity.csv');
    const method = methodFromFlags(requireString(values.method, '--method', plugins.allocators.ids().join(' | ')), values, allocators);
    const targetFormat = parseTargetFormat(values);
    const fileTarget = parseFileTarget(values);
    if (fileTarget && targetFormat === undefined) throw new InvalidOptionError('sizeMiB' in fileTarget ? '--target-size' : '--target-bpw', 'a target is the size of a shipped file: give its format, --target-format onnx or gguf');
    if (fileTarget && values.budget !== undefined) throw new InvalidOptionError('--budget', `give either --budget (bits per weight in the paper's accounting) or ${'sizeMiB' in fileTarget ? '--target-size' : '--target-bpw'} (the shipped file), not both`);
    const budgetGiven = fileTarget ? undefined : parseNumberOption(requireString(values.budget, '--budget', 'bits per weight, e.g. 3.25'), '--budget', Number.NaN, (n) => Number.isFinite(n) && n > 0);
    const configsText = stringOption(values, 'configs');
    const userConfigs = configsText === undefined ? undefined : parseConfigList(configsText, '--configs');
    const embeddingLadder = parseEmbeddingConfigs(values);
    if (embeddingLadder !== undefined && targetFormat === undefined) throw new InvalidOptionError('--embedding-configs', 'the embeddings are units of an allocation to a shipped file: give --target-format onnx or gguf (and --model)');
    if (targetFormat !== undefined && values.model === undefined) throw new InvalidOptionError('--model', '--target-format needs the model (its shapes and embeddings make the file): give --model <dir>');
    // A format's plan: its exact bytes and native ladder for the quantizer the statistics were measured with.
    let plan: FormatPlan | undefined;
    if (targetFormat !== undefined) {
      const quantizerId = stringOption(values, 'quantizer') ?? 'hqq';
      const quantizer = plugins.quantizers.get(quantizerId);
      const model = resolveModelPath(String(values.model));
      plan = await shippedPlan(model, targetFormatRequest(targetFormat, model, values), quantizer, userConfigs, embeddingLadder);
    }
    const format = plan ? formatAllocationSettings(method, plan, { ...(userConfigs ? { configs: userConfigs } : {}), ...(budgetGiven === undefined ? {} : { budget: budgetGiven }), ...(fileTarget ? { target: fileTarget } : {}) }, allocators) : undefined;
    const configs = format ? format.configs : userConfigs;
    const budget = format ? format.budget : budgetGiven!;
    if (!format) checkMethodBudget(method, budget, configs, allocators);
    const stats = await loadStatsDirectory(statsDir, plugins.metrics.list());
    const modelText = stringOption(values, 'model');
    const modelDir = modelText === undefined ? undefined : resolveModelPath(modelText);
    let shapes: Map<string, readonly number[]> | undefined;
    if (modelDir) {
      const { config, checkpoint } = await openModel(modelDir);
      shapes = new Map(checkpoint.tensors.map((t) => [t.name, t.shape]));
      await checkpoint.close();
      validateStats(stats, { matrices: modelMatrixParams(config), name: modelDir });
    }
    const seed = method.options.seed === undefined ? undefined : parseIntegerOption(String(method.options.seed), '--seed', 42, 0);
    const sizeBudget = plan && format?.knapsack ? shippedSizeBudget(plan, matricesOf(stats), fileTarget) : undefined;
    const context = { budget, ...(configs ? { configs } : {}), ...(seed === undefined ? {} : { seed }), ...(sizeBudget ? { size: sizeBudget } : {}) };
    // A size allocation offers the embedding units the plan's ladder only (not every config the tables hold).
    const planned = plan && format?.knapsack ? statisticsForPlan(stats, plan) : stats;
    let allocation = allocateMethod(method, planned, context, allocators);
    // With the model, an allocator that corrects by measurement (kld) does, on the statistics' calibration.
    let refinement: RefinementReport | null = null;
    if (modelDir && values['no-refine'] !== true && methodRefines(method, allocators)) {
      const calib = stringOption(values, 'calib');
      const session = await openRefineSession(modelDir, plugins.quantizers.get(stringOption(values, 'quantizer') ?? 'hqq'), {
        calibrationPath: calib ?? brownCalibPath,
        calibrationName: calib ? basename(calib) : 'brown-calib',
        blocks: parseIntegerOption(stringOption(values, 'blocks'), '--blocks', 128, 1),
        seqlen: 512,
      });
      try {
        const refined = await refineAllocation(method, allocation, planned, context, session, {
          allocators,
          onPlan: (plan) => stderr(`${fitStderr(`refine: ${refinePlanLine(plan)}`)}\n`),
          onRound: (round) => stderr(`${fitStderr(`refine: ${refineRoundLine(round)}`)}\n`),
        });
        allocation = refined.allocation;
        refinement = refined.refinement;
      } finally {
        await session.close();
      }
      if (refinement) stderr(`${fitStderr(`refine: ${refineDoneLine(refinement)}`)}\n`);
    }
    const out = stringOption(values, 'out');
    if (out) await writeTextAtomic(out, `${JSON.stringify(allocation, null, 2)}\n`);
    // On disk: the packed bytes of each matrix at its shape (known only with --model).
    const disk = shapes
      ? modelMemory(allocation.matrices.map((m) => ({ shape: shapes!.get(matrixTensorName(m.layer, m.module)) as unknown as [number, number], config: m.config }))).packedBytes
      : null;
    // The file the allocation makes in the target format, every byte (units it leaves out stay float).
    const shipped = plan ? shippedSize(plan.cost.format, shippedBytes(plan.cost, allocation.matrices), plan.linearParams, format?.target ? { targetBytes: format.target.bytes } : {}) : undefined;
    const size = sizes({ params: allocation.totals.params, paperBitsPerWeight: allocation.totals.bpp, diskBytes: disk, ...(shipped ? { shipped } : {}) });
    if (values.json) {
      const { matrices, totals: _totals, method: _method, budget: _budget, options: allocatorOptions, ...rest } = allocation as Allocation & Record<string, unknown>;
      delete (rest as Record<string, unknown>).boosted;
      delete (rest as Record<string, unknown>).outliers;
      const solver = (rest as { solver?: KnapsackAllocation['solver'] }).solver;
      if (solver) {
        const { sizeMiB, limitMiB, accounting: _accounting, ...solverRest } = solver;
        (rest as Record<string, unknown>).solver = solver.accounting === 'paper' ? { ...solverRest, paperMiB: sizeMiB, paperLimitMiB: limitMiB } : solver;
      }
      stdout(jsonLine('allocate', {
        method: allocation.method,
        budget: allocation.budget,
        options: allocatorOptions,
        stats: resolve(statsDir),
        model: modelDir ?? null,
        out: out ? resolve(out) : null,
        sizes: size,
        ...rest,
        boosts: boostReport(allocation as Partial<BoostAllocation>) ?? null,
        ...(refinement ? { refinement: refinementJson(refinement) } : {}),
        allocation: Object.fromEntries(matrices.map((m) => [m.key, m.config ? configName(m.config) : null])),
      }));
      return;
    }
    const refined = refinement ? `refinement    mean KLD on the calibration ${refinement.additiveKld.toPrecision(5)} additive, ${refinement.refinedKld.toPrecision(5)} corrected: the ${refinement.kept === 'refined' ? 'corrected' : 'additive'} allocation below\n` : '';
    stdout(`${refined}${humanReport(allocation, size, values.verbose === true, allocators)}`);
  },
};
