import { existsSync } from 'node:fs';
import { openOutputDirectory, readTextFile } from '@layerquant/tensor-io';
import { basename, extname, resolve } from 'node:path';
import { InvalidOptionError, MissingFileError, PAPER_CONFIGS, configName, parseConfigList, parseConfigName } from '@layerquant/core';
import { SENSITIVITY_PARTS, detectOutlierLayers } from '@layerquant/allocators';
import { formatRows, jsonLine, renderTable, terminalColumns, wrapAtSpaces } from '../output.js';
import { datasets } from '@layerquant/datasets';
import {
  CALIBRATION_ORDERS,
  DEFAULT_CALIBRATION_BLOCKS,
  DEFAULT_CALIBRATION_SEED,
  DEFAULT_SEQLEN,
  measureMetrics,
  metricFile,
  writeMetricTables,
  type CalibrationOrder,
  type MetricPlugin,
} from '@layerquant/sensitivity';
import type { SensitivityTable } from '@layerquant/allocators';
import { parseCommandArgs, parseIntegerOption, requireString, stringOption, type ParsedArgs } from '../args.js';
import type { Command } from '../command.js';
import { builtinRegistries, resolveModelPath, type PluginRegistries } from '@layerquant/pipeline';
import { parseEmbeddingConfigs, parseTargetFormat, shippedPlan, targetFormatRequest } from '../flags/file-target.js';
import { createCostReporter, createProgress, createSpinner, formatSeconds } from '../progress.js';
import { quantizerFlags, quantizerFromFlags, quantizerHelp } from '../flags/quantizer-flags.js';

const usage = (plugins: PluginRegistries): string => [
  'layerquant sensitivity <model-dir> [--calib <file> | --dataset brown-calib] [options] --out <dir> [--json]',
  '',
  'Measures what the allocators read and writes it in the authors\' CSV layouts (read back by',
  '`layerquant allocate --stats <dir>`):',
  '  sensitivity.csv  activation sensitivity per decoder layer: attn_in, attn_out, mlp_gate, mlp_down (MSE of a',
  '                   block output with those matrices quantized; float outputs of layer i-1 feed layer i)',
  '  fnorm.csv        HQQ (--quantizer) error ‖W - dequant‖_F of every matrix under the 12 paper configs, with memmb, params,',
  '                   kurtosis, sq_err',
  '  kurtosis.csv     Pearson kurtosis of every matrix',
  '  measured.csv     with --measured: MSE of each matrix\'s block output with that matrix alone quantized,',
  '                   divided by the mean square of the residual stream that output is added to, for',
  '                   every matrix and every config of --configs (what the `measured` allocator minimises)',
  '',
  'Options:',
  `  --dataset <name>     built-in calibration text: ${Object.keys(datasets).join(', ')} (default brown-calib)`,
  '  --calib <file>       a UTF-8 calibration text instead',
  `  --blocks <n>         calibration blocks (default ${DEFAULT_CALIBRATION_BLOCKS}; fewer when the text is short)`,
  `  --seqlen <n>         tokens per block (default ${DEFAULT_SEQLEN})`,
  '  --order in-order|shuffled',
  '                       in-order (default): the whole text tokenized once, the first blocks cut in order (as the',
  '                       shipped oracles); shuffled: lines shuffled with --seed, each tokenized alone, lines longer',
  '                       than a block skipped (the authors\' sampling; their numpy shuffle is not reproduced)',
  `  --seed <n>           seed of --order shuffled (default ${DEFAULT_CALIBRATION_SEED})`,
  '  --config <list>      quantization of the sensitivity measurement, comma-separated (default b4g64)',
  '  --quantizer <id>     the quantizer of every table that quantizes (fnorm, sensitivity, measured; default hqq, as',
  '                       the authors measure them); a calibrated one (gptq, baq) quantizes each matrix with the',
  '                       Hessian of its float inputs on the calibration blocks',
  '  --configs <list>     the config ladder of fnorm.csv and measured.csv (default: the paper\'s 12), e.g.',
  '                       b2g64,b3g64,b4g32; fewer configs make the fnorm table proportionally faster on large',
  '                       models (MXQ then chooses among those only)',
  '  --metrics <ids>      the metrics to measure, comma-separated ids of the registry below (default: every metric',
  '                       that is not opt-in, --plugin modules\' included)',
  '  --measured           also measure measured.csv (about 1.3 sensitivity passes per config; see the README)',
  '  --skip-fnorm         leave out fnorm.csv (kurtosis is then read from the weights on its own)',
  '  --threads <n>        onnxruntime intra-op threads (default: one per core)',
  '  --workers <n>        worker threads quantizing (sensitivity and the fnorm table; default: one per core)',
  '  --target-format onnx|gguf  measure fnorm.csv and measured.csv for the shipped file of that format: its native',
  '                       ladder for --quantizer (gguf with --quantizer ggml: llama.cpp\'s types), matrices whose rows',
  '                       a type cannot hold (k-quants need rows of whole 256-blocks) at their own ladders, and',
  '                       embed_tokens / lm_head as units; the directory then serves `quantize --format <f>',
  '                       --target-size --stats <dir>` and `allocate --target-format <f>`',
  '  --tokenizer-pre <name>  with --target-format gguf: llama.cpp\'s pre-tokenizer name (part of the file\'s bytes)',
  '  --embedding-configs <list>|float  with --target-format: embed_tokens\' and lm_head\'s ladder, or float',
  '  --allow-long-context run a --seqlen above the model\'s max_position_embeddings (refused otherwise)',
  '  --out <dir>          output directory (created, locked while written; files written atomically)',
  '  --json               one JSON object (docs/json-schema.md): files, calibration, seconds, sensitivity rows, outliers',
  '  --plugin <module>    load plug-ins from a module (a path or package name; repeatable)',
  '',
  'Quantizers (--quantizer) and their options:',
  quantizerHelp(plugins, '  '),
  '',
  'Metrics (the registry; each fills one table):',
  formatRows(plugins.metrics.list().map((m) => [m.id, `${metricFile(m).padEnd(16)} ${m.input === 'weights' ? 'weights only' : 'runs the model'}${m.optIn ? ', opt-in' : ''}: ${m.description}`]), { indent: '  ', keyWidth: 22 }).trimEnd(),
].join('\n');

/** Outlier layers of each sensitivity part (all of them, z > 3), as SensiBoost detects them; parts with too few layers have none. */
function outlierParts(rows: ReadonlyArray<{ readonly part: string; readonly layer: number; readonly sensitivity: number }>): Record<string, Array<{ layer: number; zScore: number }>> {
  const result: Record<string, Array<{ layer: number; zScore: number }>> = {};
  for (const part of SENSITIVITY_PARTS) {
    const series = rows.filter((r) => r.part === part).sort((a, b) => a.layer - b.layer);
    result[part] = series.length >= 4 && series.every((r, i) => r.layer === i && Number.isFinite(r.sensitivity) && r.sensitivity > 0)
      ? detectOutlierLayers(series.map((r) => r.sensitivity), { change: 'ratio', topM: 0 }).map((o) => ({ layer: o.layer, zScore: o.zScore }))
      : [];
  }
  return result;
}

/**
 * The metrics of the registry this run measures: `--metrics <ids>`, else every metric that is not opt-in;
 * `--skip-fnorm` leaves out the fnorm table's metric, `--measured` adds the measured table's.
 */
function selectMetrics(plugins: PluginRegistries, values: ParsedArgs['values']): MetricPlugin[] {
  const listed = stringOption(values, 'metrics');
  let chosen = listed === undefined
    ? plugins.metrics.list().filter((m) => !m.optIn)
    : listed.split(',').map((id) => id.trim()).filter(Boolean).map((id) => {
        if (!plugins.metrics.has(id)) throw new InvalidOptionError('--metrics', `"${id}" is not a metric; the registry has ${plugins.metrics.ids().join(', ')}`);
        return plugins.metrics.get(id);
      });
  if (values['skip-fnorm']) chosen = chosen.filter((m) => m.table !== 'fnorm');
  if (values.measured) for (const m of plugins.metrics.list()) if (m.table === 'measured' && !chosen.includes(m)) chosen.push(m);
  if (chosen.length === 0) throw new InvalidOptionError('--metrics', 'no metric left to measure');
  // In registry order (fnorm before kurtosis: kurtosis is read off the fnorm table's column then).
  const order = plugins.metrics.list();
  return [...new Set(chosen)].sort((a, b) => order.indexOf(a) - order.indexOf(b));
}

function calibrationSource(values: ParsedArgs['values']): { path: string; name: string } {
  const file = stringOption(values, 'calib');
  const dataset = stringOption(values, 'dataset');
  if (file && dataset) throw new InvalidOptionError('--calib', 'give either --calib or --dataset, not both');
  if (file) return { path: resolve(file), name: basename(file, extname(file)) };
  const name = dataset ?? 'brown-calib';
  const path = datasets[name];
  if (!path) throw new InvalidOptionError('--dataset', `"${name}" is not a built-in dataset; available: ${Object.keys(datasets).join(', ')}`);
  return { path, name };
}

export const sensitivityCommand: Command = {
  name: 'sensitivity',
  summary: 'activation sensitivity, kurtosis and fnorm tables of a model (CSV, the authors\' layout)',
  usage,
  async run({ argv, stdout, stderr, plugins = builtinRegistries() }) {
    const { values, positionals } = parseCommandArgs(argv, {
      metrics: { type: 'string' },
      calib: { type: 'string' },
      dataset: { type: 'string' },
      blocks: { type: 'string' },
      seqlen: { type: 'string' },
      order: { type: 'string' },
      seed: { type: 'string' },
      config: { type: 'string' },
      'skip-fnorm': { type: 'boolean' },
      configs: { type: 'string' },
      measured: { type: 'boolean' },
      threads: { type: 'string' },
      workers: { type: 'string' },
      out: { type: 'string' },
      'allow-long-context': { type: 'boolean' },
      quantizer: { type: 'string' },
      'target-format': { type: 'string' },
      'tokenizer-pre': { type: 'string' },
      'embedding-configs': { type: 'string' },
      ...quantizerFlags(plugins),
    });
    const modelDir = resolveModelPath(requireString(positionals[0], 'model-dir', 'layerquant sensitivity <model-dir> --out <dir>'));
    if (positionals.length > 1) throw new InvalidOptionError('model-dir', `one model directory expected, got ${positionals.length}`);
    const out = requireString(values.out, '--out', 'the directory to write sensitivity.csv, fnorm.csv and kurtosis.csv to');
    const blocks = parseIntegerOption(stringOption(values, 'blocks'), '--blocks', DEFAULT_CALIBRATION_BLOCKS, 1);
    const seqlen = parseIntegerOption(stringOption(values, 'seqlen'), '--seqlen', DEFAULT_SEQLEN, 2);
    const order = (stringOption(values, 'order') ?? 'in-order') as CalibrationOrder;
    if (!CALIBRATION_ORDERS.includes(order)) throw new InvalidOptionError('--order', `"${order}" is not an order; use ${CALIBRATION_ORDERS.join(' or ')}`);
    const seedText = stringOption(values, 'seed');
    if (seedText !== undefined && order !== 'shuffled') throw new InvalidOptionError('--seed', 'applies to --order shuffled only');
    const seed = parseIntegerOption(seedText, '--seed', DEFAULT_CALIBRATION_SEED, 0);
    const configs = (stringOption(values, 'config') ?? 'b4g64').split(',').map((name) => parseConfigName(name));
    const ladderText = stringOption(values, 'configs');
    const ladder = ladderText === undefined ? undefined : parseConfigList(ladderText, '--configs');
    const threadsText = stringOption(values, 'threads');
    const threads = threadsText === undefined ? undefined : parseIntegerOption(threadsText, '--threads', 0, 1);
    const workersText = stringOption(values, 'workers');
    const workers = workersText === undefined ? undefined : parseIntegerOption(workersText, '--workers', 0, 1);
    const metrics = selectMetrics(plugins, values);
    const quantizerId = stringOption(values, 'quantizer');
    const quantizer = quantizerId === undefined ? undefined : quantizerFromFlags(quantizerId, values, plugins).quantizer;
    // Tables for a shipped format: its native ladder for the quantizer, modules it stores at fewer configs (GGUF's
    // k-quants need rows of whole super-blocks) at their own ladders, and the embedding units measured too, as
    // `quantize --format ... --target-size` measures them (so `--stats` of this directory serves it).
    const targetFormat = parseTargetFormat(values);
    const embeddingLadder = parseEmbeddingConfigs(values);
    if (embeddingLadder !== undefined && targetFormat === undefined) throw new InvalidOptionError('--embedding-configs', 'the embeddings are measured for a shipped format: give --target-format onnx or gguf');
    const plan = targetFormat === undefined ? undefined : await shippedPlan(modelDir, targetFormatRequest(targetFormat, modelDir, values), quantizer ?? plugins.quantizers.get('hqq'), ladder, embeddingLadder);
    const calibration = calibrationSource(values);
    if (!existsSync(calibration.path)) throw new MissingFileError(calibration.path, 'does not exist; pass a UTF-8 text file with --calib or a built-in --dataset');

    const quiet = Boolean(values.json) || !process.stderr.isTTY;
    // A cost line (the plan, then an estimate from the first unit) and a progress bar per metric, named by its table.
    const cost = new Map(metrics.map((m) => [m.id, createCostReporter(m.table, stderr, !values.json)]));
    const bars = new Map(metrics.map((m) => [m.id, createProgress(m.table, !quiet)]));
    const output = await openOutputDirectory(out, 'sensitivity');
    let results: Awaited<ReturnType<typeof measureMetrics>>;
    let files: string[];
    // Loading the model and tokenizing the calibration text take seconds before the first bar moves.
    const loading = createSpinner(`loading ${modelDir}`, !quiet);
    try {
      results = await measureMetrics(modelDir, metrics, {
        calibrationText: await readTextFile(calibration.path, 'a UTF-8 calibration text with --calib'),
        calibrationName: calibration.name,
        blocks,
        seqlen,
        order,
        seed,
        sensitivityConfigs: configs,
        ...(plan
          ? { configs: plan.configs, embeddingConfigs: plan.embeddingConfigs, ...(Object.keys(plan.moduleConfigs).length > 0 ? { moduleConfigs: plan.moduleConfigs } : {}) }
          : ladder
            ? { configs: ladder }
            : {}),
        ...(quantizer ? { quantizer } : {}),
        allowLongContext: values['allow-long-context'] === true,
        ...(threads === undefined ? {} : { threads }),
        ...(workers === undefined ? {} : { workers }),
        onPlan: (plan) => {
          loading.stop();
          cost.get(plan.metric.id)!.plan(
            plan.metric.input === 'weights'
              ? `${plan.matrices} matrices, one matrix at a time (${plan.metric.id})`
              : `${plan.blocks} blocks of ${plan.seqlen} tokens through ${plan.layers} layers, one layer's weights at a time (${plan.metric.id})`,
            // Matrices differ in size (q_proj vs gate_proj): a weight metric is timed over a whole layer's first.
            plan.metric.input === 'weights' ? { estimateAfter: Math.round(plan.matrices / plan.layers) } : {},
          );
        },
        onProgress: (metric, done, total) => {
          loading.stop();
          const unit = metric.progressUnit ?? (metric.input === 'weights' ? 'matrices' : 'layers');
          cost.get(metric.id)!.unit(done, total, unit);
          bars.get(metric.id)!.update(done, total, unit);
          if (done === total) bars.get(metric.id)!.done();
        },
      });
      files = await writeMetricTables(out, metrics, results.tables);
    } catch (error) {
      loading.stop();
      output.abandon();
      throw error;
    } finally {
      output.release();
    }
    const sensitivity = (results.tables.sensitivity as SensitivityTable | undefined) ?? { rows: [] };
    const seconds = Object.fromEntries(metrics.map((m) => [m.table, results.seconds[m.id] ?? 0]));
    const statistics = { sensitivity, blocks: results.blocks ?? 0, seqlen: results.seqlen ?? seqlen };

    if (values.json) {
      stdout(jsonLine('sensitivity', {
        model: resolve(modelDir),
        dataset: calibration.name,
        order,
        seed: order === 'shuffled' ? seed : null,
        blocks: statistics.blocks,
        seqlen: statistics.seqlen,
        configs: configs.map(configName),
        files: files.map((f) => resolve(f)),
        metrics: metrics.map((m) => m.id),
        seconds,
        sensitivity: statistics.sensitivity.rows.map((r) => ({ config: configName(r), part: r.part, layer: r.layer, sensitivity: r.sensitivity })),
        outliers: configs.map((config) => ({ config: configName(config), parts: outlierParts(statistics.sensitivity.rows.filter((r) => r.bits === config.bits && r.groupSize === config.groupSize)) })),
      }));
      return;
    }
    const lines: string[] = [];
    for (const config of configs) {
      const rows = statistics.sensitivity.rows.filter((r) => r.bits === config.bits && r.groupSize === config.groupSize);
      const outliers = outlierParts(rows);
      lines.push(`activation sensitivity: MSE of the block output with the part quantized to ${configName(config)} (squared activation units; ${calibration.name}, ${statistics.blocks} blocks of ${statistics.seqlen} tokens, ${order})`);
      lines.push(`* outlier layer: the change from the layer before has a trimmed z-score above 3 (what SensiBoost boosts)`);
      const layers = [...new Set(rows.map((r) => r.layer))];
      const table = layers.map((layer) => [
        String(layer),
        ...SENSITIVITY_PARTS.map((part) => {
          const value = rows.find((r) => r.layer === layer && r.part === part)?.sensitivity;
          const z = outliers[part]?.find((o) => o.layer === layer)?.zScore;
          return `${value === undefined ? '-' : value.toExponential(4)}${z === undefined ? '  ' : ' *'}`;
        }),
      ]);
      lines.push(renderTable([{ header: 'layer', align: 'right' }, ...SENSITIVITY_PARTS.map((p) => ({ header: `${p} MSE`, align: 'right' as const }))], table).trimEnd());
      lines.push('');
    }
    lines.push(metrics.map((m) => `${m.table} ${formatSeconds(results.seconds[m.id] ?? 0)}`).join(', '));
    for (const file of files) lines.push(`wrote ${file}`);
    // Prose broken at spaces to the terminal's width (never inside a number); the tables keep their cells whole.
    stdout(`${lines.join('\n').split('\n').map((line) => wrapAtSpaces(line, terminalColumns(), 2)).join('\n')}\n`);
  },
};
