import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { openOutputDirectory } from '@layerquant/tensor-io';
import { basename, extname, resolve } from 'node:path';
import { InvalidOptionError, MissingFileError, PAPER_CONFIGS, configName, parseConfigList, parseConfigName } from '@layerquant/core';
import { SENSITIVITY_PARTS, detectOutlierLayers } from '@layerquant/allocators';
import { resolveModelPath } from '../model-path.js';
import { jsonLine, renderTable } from '../output.js';
import { datasets } from '@layerquant/fixtures';
import {
  CALIBRATION_ORDERS,
  DEFAULT_CALIBRATION_BLOCKS,
  DEFAULT_CALIBRATION_SEED,
  DEFAULT_SEQLEN,
  measureModelStatistics,
  writeSensitivityOutputs,
  type CalibrationOrder,
} from '@layerquant/sensitivity';
import { parseCommandArgs, parseIntegerOption, requireString, stringOption, type ParsedArgs } from '../args.js';
import type { Command } from '../command.js';
import { createCostReporter, createProgress, formatSeconds } from '../progress.js';

const USAGE = [
  'layerquant sensitivity <model-dir> [--calib <file> | --dataset brown-calib] [options] --out <dir> [--json]',
  '',
  'Measures what the allocators read and writes it in the authors\' CSV layouts (read back by',
  '`layerquant allocate --stats <dir>`):',
  '  sensitivity.csv  activation sensitivity per decoder layer: attn_in, attn_out, mlp_gate, mlp_down (MSE of a',
  '                   block output with those matrices quantized; float outputs of layer i-1 feed layer i)',
  '  fnorm.csv        HQQ error ‖W - dequant‖_F of every matrix under the 12 paper configs, with memmb, params,',
  '                   kurtosis, sq_err',
  '  kurtosis.csv     Pearson kurtosis of every matrix',
  '  measured.csv     with --measured: MSE of each matrix\'s block output with that matrix alone quantized, for',
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
  '  --configs <list>     the config ladder of fnorm.csv and measured.csv (default: the paper\'s 12), e.g.',
  '                       b2g64,b3g64,b4g32; fewer configs make the fnorm table proportionally faster on large',
  '                       models (MXQ then chooses among those only)',
  '  --measured           also measure measured.csv (about 1.3 sensitivity passes per config; see the README)',
  '  --skip-fnorm         write sensitivity.csv and kurtosis.csv only',
  '  --threads <n>        onnxruntime intra-op threads (default: one per core)',
  '  --workers <n>        worker threads quantizing (sensitivity and the fnorm table; default: one per core)',
  '  --allow-long-context run a --seqlen above the model\'s max_position_embeddings (refused otherwise)',
  '  --out <dir>          output directory (created, locked while written; files written atomically)',
  '  --json               one JSON object (docs/json-schema.md): files, calibration, seconds, sensitivity rows, outliers',
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
  usage: USAGE,
  async run({ argv, stdout, stderr }) {
    const { values, positionals } = parseCommandArgs(argv, {
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
    const calibration = calibrationSource(values);
    if (!existsSync(calibration.path)) throw new MissingFileError(calibration.path, 'does not exist; pass a UTF-8 text file with --calib or a built-in --dataset');

    const quiet = Boolean(values.json) || !process.stderr.isTTY;
    const cost = {
      sensitivity: createCostReporter('sensitivity', stderr, !values.json),
      fnorm: createCostReporter('fnorm', stderr, !values.json),
      measured: createCostReporter('measured', stderr, !values.json),
    };
    const bars = { sensitivity: createProgress('sensitivity', !quiet), fnorm: createProgress('fnorm', !quiet), measured: createProgress('measured', !quiet) };
    const output = await openOutputDirectory(out, 'sensitivity');
    let statistics: Awaited<ReturnType<typeof measureModelStatistics>>;
    let files: string[];
    try {
      statistics = await measureModelStatistics(modelDir, {
        calibrationText: await readFile(calibration.path, 'utf8'),
        calibrationName: calibration.name,
        blocks,
        seqlen,
        order,
        seed,
        sensitivityConfigs: configs,
        skipFnorm: Boolean(values['skip-fnorm']),
        ...(ladder ? { fnormConfigs: ladder } : {}),
        ...(values.measured ? { measuredConfigs: ladder ?? PAPER_CONFIGS } : {}),
        allowLongContext: values['allow-long-context'] === true,
        ...(threads === undefined ? {} : { threads }),
        ...(workers === undefined ? {} : { workers }),
        onPlan: (plan) =>
          plan.step === 'fnorm'
            ? cost.fnorm.plan(`${plan.matrices} matrices x ${plan.configs} HQQ configs, one matrix at a time`)
            : cost[plan.step].plan(`${plan.blocks} blocks of ${plan.seqlen} tokens through ${plan.layers} layers x ${plan.configs} config(s), one layer's weights at a time`),
        onStep: (step, done, total) => {
          cost[step].unit(done, total, step === 'fnorm' ? 'matrices' : 'layers');
          bars[step].update(done, total, step === 'fnorm' ? 'matrices' : 'layers');
          if (done === total) bars[step].done();
        },
      });
      files = await writeSensitivityOutputs(out, statistics);
    } catch (error) {
      output.abandon();
      throw error;
    } finally {
      output.release();
    }

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
        seconds: statistics.seconds,
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
    lines.push(
      `sensitivity ${formatSeconds(statistics.seconds.sensitivity)}${statistics.fnorm ? `, fnorm ${formatSeconds(statistics.seconds.fnorm)}` : ''}${statistics.measured ? `, measured ${formatSeconds(statistics.seconds.measured)}` : ''}`,
    );
    for (const file of files) lines.push(`wrote ${file}`);
    stdout(`${lines.join('\n')}\n`);
  },
};
