import { PAPER_CONFIGS, type QuantConfig, type Quantizer } from '@layerquant/core';
import type { FnormTable, KurtosisTable, MeasuredTable, SensitivityTable } from '@layerquant/stats';
import { DEFAULT_SENSITIVITY_CONFIG } from './activation-sensitivity.js';
import type { CalibrationSettings } from './metric-run.js';
import { measureMetrics } from './measure-metrics.js';
import { activationSensitivityMetric, frobeniusMetric, kurtosisMetric, measuredErrorMetric, type MetricPlugin, type MetricRunOptions } from './metrics.js';

export interface ModelStatisticsOptions extends CalibrationSettings {
  /** Calibration text (required here: sensitivity runs the model) and the name written in sensitivity.csv's `dataset` column. */
  readonly calibrationText: string;
  /** Configs of the sensitivity measurement (default [b4g64]); rows of each, in this order. */
  readonly sensitivityConfigs?: readonly QuantConfig[];
  /** Configs of the fnorm table (default: the paper's 12). */
  readonly fnormConfigs?: readonly QuantConfig[];
  /**
   * Also measure layerquant's `measured` statistic (block-output error of every matrix alone at every config)
   * for these configs; none by default (it costs about 1.3 sensitivity passes per config).
   */
  readonly measuredConfigs?: readonly QuantConfig[];
  /** The embedding units the fnorm and measured tables cover too, each at its own ladder (a shipped format's). */
  readonly embeddingConfigs?: MetricRunOptions['embeddingConfigs'];
  readonly moduleConfigs?: MetricRunOptions['moduleConfigs'];
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
  /** Calibration actually used (fewer blocks than asked when the text is short); null when no table ran the model. */
  readonly blocks: number | null;
  readonly seqlen: number | null;
  readonly seconds: { readonly sensitivity: number; readonly fnorm: number; readonly measured: number };
}

/** The metric with its config ladder fixed (fnorm and measured may each have their own). */
function withConfigs<M extends MetricPlugin>(metric: M, configs: readonly QuantConfig[]): M {
  return Object.freeze({ ...metric, measure: (input: unknown, options: Record<string, unknown>) => metric.measure(input, { ...options, configs }) });
}

/**
 * Every table `layerquant allocate` reads, measured on a model directory: activation sensitivity on the
 * calibration text (one pass per config), then `measured` when asked for, then the fnorm table (streamed matrix by
 * matrix, with kurtosis). The built-in metrics through `measureMetrics`, the one path `layerquant sensitivity`
 * takes too: one decoder load, one kernel pool and one record of quantization errors for the run.
 */
export async function measureModelStatistics(modelDir: string, options: ModelStatisticsOptions): Promise<ModelStatistics> {
  const sensitivityConfigs = options.skipSensitivity ? [] : (options.sensitivityConfigs ?? [DEFAULT_SENSITIVITY_CONFIG]);
  const measuredConfigs = options.measuredConfigs ?? [];
  const fnormConfigs = options.skipFnorm ? [] : (options.fnormConfigs ?? PAPER_CONFIGS);
  const metrics: MetricPlugin[] = [
    ...(sensitivityConfigs.length > 0 ? [activationSensitivityMetric] : []),
    ...(measuredConfigs.length > 0 ? [withConfigs(measuredErrorMetric, measuredConfigs)] : []),
    ...(fnormConfigs.length > 0 ? [withConfigs(frobeniusMetric, fnormConfigs)] : []),
    kurtosisMetric,
  ];
  const configsOf: Record<string, number> = { sensitivity: sensitivityConfigs.length, measured: measuredConfigs.length, fnorm: fnormConfigs.length };
  const results = await measureMetrics(modelDir, metrics, {
    calibrationText: options.calibrationText,
    calibrationName: options.calibrationName,
    ...(options.blocks === undefined ? {} : { blocks: options.blocks }),
    ...(options.seqlen === undefined ? {} : { seqlen: options.seqlen }),
    ...(options.order === undefined ? {} : { order: options.order }),
    ...(options.seed === undefined ? {} : { seed: options.seed }),
    sensitivityConfigs,
    ...(options.embeddingConfigs ? { embeddingConfigs: options.embeddingConfigs } : {}),
    ...(options.moduleConfigs ? { moduleConfigs: options.moduleConfigs } : {}),
    ...(options.quantizer ? { quantizer: options.quantizer } : {}),
    ...(options.threads ? { threads: options.threads } : {}),
    ...(options.workers === undefined ? {} : { workers: options.workers }),
    ...(options.modelName ? { modelName: options.modelName } : {}),
    allowLongContext: options.allowLongContext === true,
    onPlan: (plan) => {
      const step = plan.metric.table;
      if (step === 'fnorm') options.onPlan?.({ step, matrices: plan.matrices, configs: configsOf.fnorm! });
      else if ((step === 'sensitivity' || step === 'measured') && plan.blocks !== undefined && plan.seqlen !== undefined) {
        options.onPlan?.({ step, blocks: plan.blocks, seqlen: plan.seqlen, layers: plan.layers, configs: configsOf[step]! });
      }
    },
    onProgress: (metric, done, total) => {
      const step = metric.table;
      if (step === 'sensitivity' || step === 'measured' || step === 'fnorm') options.onStep?.(step, done, total);
    },
  });
  const { tables, seconds } = results;
  return Object.freeze({
    sensitivity: (tables.sensitivity as SensitivityTable | undefined) ?? Object.freeze({ rows: Object.freeze([]) }),
    ...(tables.fnorm ? { fnorm: tables.fnorm as FnormTable } : {}),
    kurtosis: tables.kurtosis as KurtosisTable,
    ...(tables.measured ? { measured: tables.measured as MeasuredTable } : {}),
    blocks: results.blocks,
    seqlen: results.seqlen,
    seconds: Object.freeze({
      sensitivity: seconds[activationSensitivityMetric.id] ?? 0,
      fnorm: (seconds[frobeniusMetric.id] ?? 0) + (seconds[kurtosisMetric.id] ?? 0),
      measured: seconds[measuredErrorMetric.id] ?? 0,
    }),
  });
}
