import { basename, resolve } from 'node:path';
import { InvalidOptionError, PAPER_CONFIGS, checkContextLength, type QuantConfig, type Quantizer } from '@layerquant/core';
import type { FnormTable, KurtosisTable, MeasuredTable, SensitivityRow, SensitivityTable } from '@layerquant/stats';
import { createKernelPool, defaultWorkerCount } from '@layerquant/quantizers/node';
import { loadDecoderBlocks } from '@layerquant/runtime';
import { loadTokenizer, openModel, type OpenedModel } from '@layerquant/tensor-io';
import { DEFAULT_SENSITIVITY_CONFIG, activationSensitivity } from './activation-sensitivity.js';
import { DEFAULT_SEQLEN, calibrationBlocks, type CalibrationOrder } from './calibration.js';
import { measuredErrors } from './measured-error.js';
import { QuantizationErrors } from './pooled-quantize.js';
import { frobeniusTable, kurtosisTable, kurtosisTableFromFnorm, listMatrices } from './frobenius-table.js';

export interface ModelStatisticsOptions {
  /** Calibration text and the name written in sensitivity.csv's `dataset` column. */
  readonly calibrationText: string;
  readonly calibrationName: string;
  readonly blocks?: number;
  readonly seqlen?: number;
  readonly order?: CalibrationOrder;
  readonly seed?: number;
  /** Configs of the sensitivity measurement (default [b4g64]); rows of each, in this order. */
  readonly sensitivityConfigs?: readonly QuantConfig[];
  /** Configs of the fnorm table (default: the paper's 12). */
  readonly fnormConfigs?: readonly QuantConfig[];
  /**
   * Also measure layerquant's `measured` statistic (block-output error of every matrix alone at every config)
   * for these configs; none by default (it costs about 1.3 sensitivity passes per config).
   */
  readonly measuredConfigs?: readonly QuantConfig[];
  /** Skip the sensitivity table (only fnorm / kurtosis / measured). */
  readonly skipSensitivity?: boolean;
  /** Skip the fnorm table (kurtosis is then read on its own). */
  readonly skipFnorm?: boolean;
  readonly quantizer?: Quantizer;
  /** onnxruntime intra-op threads. */
  readonly threads?: number;
  /** Worker threads for the quantizations, sensitivity's and the fnorm table's (default: one per core; 1 = the calling thread). */
  readonly workers?: number;
  /** Name in sensitivity.csv's `model` column (default: the directory name). */
  readonly modelName?: string;
  readonly onStep?: (step: 'sensitivity' | 'fnorm' | 'measured', done: number, total: number) => void;
  /** Called before each step starts, with what it will do (to say the cost up front). */
  readonly onPlan?: (plan: StatisticsPlan) => void;
  /** Allow a seqlen above the model's max_position_embeddings (refused by default). */
  readonly allowLongContext?: boolean;
}

/** What a step of measureModelStatistics is about to do. */
export type StatisticsPlan =
  | { readonly step: 'sensitivity' | 'measured'; readonly blocks: number; readonly seqlen: number; readonly layers: number; readonly configs: number }
  | { readonly step: 'fnorm'; readonly matrices: number; readonly configs: number };

export interface ModelStatistics {
  readonly sensitivity: SensitivityTable;
  readonly fnorm?: FnormTable;
  readonly kurtosis: KurtosisTable;
  readonly measured?: MeasuredTable;
  /** Calibration actually used (fewer blocks than asked when the text is short). */
  readonly blocks: number;
  readonly seqlen: number;
  readonly seconds: { readonly sensitivity: number; readonly fnorm: number; readonly measured: number };
}

/**
 * Every table `layerquant allocate` reads, measured on a model directory: activation sensitivity on the
 * calibration text (one pass per config), then the fnorm table (streamed matrix by matrix, with kurtosis).
 */
export async function measureModelStatistics(modelDir: string, options: ModelStatisticsOptions): Promise<ModelStatistics> {
  // config.json checked against the tensors (the one validation every command runs) before any long step.
  const { config, checkpoint } = await openModel(modelDir);
  try {
    checkContextLength(options.seqlen ?? DEFAULT_SEQLEN, config, '--seqlen', options.allowLongContext === true);
    return await measureOpenModel(modelDir, options, config, checkpoint);
  } finally {
    await checkpoint.close();
  }
}

async function measureOpenModel(
  modelDir: string,
  options: ModelStatisticsOptions,
  config: OpenedModel['config'],
  checkpoint: OpenedModel['checkpoint'],
): Promise<ModelStatistics> {
  const tokenizer = await loadTokenizer(modelDir);
  const calibration = calibrationBlocks(options.calibrationText, tokenizer, {
    source: options.calibrationName,
    ...(options.blocks === undefined ? {} : { blocks: options.blocks }),
    ...(options.seqlen === undefined ? {} : { seqlen: options.seqlen }),
    ...(options.order === undefined ? {} : { order: options.order }),
    ...(options.seed === undefined ? {} : { seed: options.seed }),
  });
  const workers = options.workers ?? defaultWorkerCount();
  if (!Number.isInteger(workers) || workers < 1) throw new InvalidOptionError('workers', `${workers} must be a positive integer`);
  // One pool of kernel workers for every quantization: the sensitivity passes' and the fnorm table's.
  const pool = workers > 1 ? createKernelPool(workers) : undefined;
  // The errors of the matrices the sensitivity passes quantize, which the fnorm table then need not quantize again.
  const errors = new QuantizationErrors();
  try {
    let start = performance.now();
    const configs = options.skipSensitivity ? [] : (options.sensitivityConfigs ?? [DEFAULT_SENSITIVITY_CONFIG]);
    if (configs.length > 0) {
      options.onPlan?.({ step: 'sensitivity', blocks: calibration.blocks, seqlen: calibration.seqlen, layers: config.numLayers, configs: configs.length });
    }
    const rows: SensitivityRow[] = [];
    let measured: MeasuredTable | undefined;
    let measuredSeconds = 0;
    // Weight statistics alone (fnorm, kurtosis) never build the ONNX model.
    const needsActivations = configs.length > 0 || (options.measuredConfigs?.length ?? 0) > 0;
    const model = needsActivations ? await loadDecoderBlocks(checkpoint, config, options.threads ? { threads: options.threads } : {}) : undefined;
    if (model) try {
      for (const [c, sensitivityConfig] of configs.entries()) {
        const table = await activationSensitivity(model, calibration, {
          config: sensitivityConfig,
          dataset: options.calibrationName,
          model: options.modelName ?? basename(resolve(modelDir)),
          ...(options.quantizer ? { quantizer: options.quantizer } : {}),
          ...(pool ? { pool } : {}),
          errors,
          onLayer: (layer, layers) => options.onStep?.('sensitivity', c * layers + layer + 1, configs.length * layers),
        });
        rows.push(...table.rows);
      }
      if (options.measuredConfigs && options.measuredConfigs.length > 0) {
        options.onPlan?.({ step: 'measured', blocks: calibration.blocks, seqlen: calibration.seqlen, layers: config.numLayers, configs: options.measuredConfigs.length });
        const began = performance.now();
        measured = await measuredErrors(model, calibration, {
          configs: options.measuredConfigs,
          ...(options.quantizer ? { quantizer: options.quantizer } : {}),
          ...(pool ? { pool } : {}),
          errors,
          onLayer: (layer, layers) => options.onStep?.('measured', layer + 1, layers),
        });
        measuredSeconds = (performance.now() - began) / 1000;
      }
    } finally {
      await model.dispose();
    }
    const sensitivitySeconds = (performance.now() - start) / 1000 - measuredSeconds;
    start = performance.now();
    let fnorm: FnormTable | undefined;
    if (!options.skipFnorm) {
      const fnormConfigs = options.fnormConfigs ?? PAPER_CONFIGS;
      options.onPlan?.({ step: 'fnorm', matrices: listMatrices(checkpoint).length, configs: fnormConfigs.length });
      fnorm = await frobeniusTable(checkpoint, fnormConfigs, {
        ...(options.quantizer ? { quantizer: options.quantizer } : {}),
        ...(pool ? { pool } : {}),
        errors,
        onMatrix: (done, total) => options.onStep?.('fnorm', done, total),
      });
    }
    const kurtosis = fnorm ? kurtosisTableFromFnorm(fnorm) : await kurtosisTable(checkpoint);
    return Object.freeze({
      sensitivity: Object.freeze({ rows: Object.freeze(rows) }),
      ...(fnorm ? { fnorm } : {}),
      kurtosis,
      ...(measured ? { measured } : {}),
      blocks: calibration.blocks,
      seqlen: calibration.seqlen,
      seconds: Object.freeze({ sensitivity: sensitivitySeconds, fnorm: (performance.now() - start) / 1000, measured: measuredSeconds }),
    });
  } finally {
    await pool?.close();
  }
}
