import { PAPER_CONFIGS, type EmbeddingUnit, type QuantConfig, type Quantizer, type SensitivityMetric, type ModuleLadders } from '@layerquant/core';
import {
  formatFnormCsv,
  formatKldCsv,
  formatKurtosisCsv,
  formatMeasuredCsv,
  formatSensitivityCsv,
  parseFnormCsv,
  parseKldCsv,
  parseKurtosisCsv,
  parseMeasuredCsv,
  parseSensitivityCsv,
  type FnormTable,
  type KldTable,
  type KurtosisTable,
  type MeasuredTable,
  type SensitivityRow,
  type SensitivityTable,
} from '@layerquant/stats';
import type { DecoderBlocks } from '@layerquant/runtime';
import type { KernelPool, MatrixCalibration } from '@layerquant/quantizers';
import { DEFAULT_SENSITIVITY_CONFIG, activationSensitivity, type ActivationSensitivityOptions } from './activation-sensitivity.js';
import type { CalibrationBlocks } from './calibration.js';
import { measuredErrors, type MeasuredErrorOptions } from './measured-error.js';
import { KLD_PROGRESS_UNIT, createKldMeasurer, endToEndKldTable, type KldMeasurerOptions } from './end-to-end-kld.js';
import type { QuantizationErrors } from './pooled-quantize.js';
import { frobeniusTable, kurtosisTable, kurtosisTableFromFnorm, sortKurtosisRows, type FrobeniusTableOptions, type MatrixSource } from './frobenius-table.js';

/**
 * A metric plug-in: a SensitivityMetric that says which statistics table it fills (the name allocators ask for in
 * `tablesNeeded`), whether it reads only the weights or runs the model on calibration text, and what it is.
 */
export interface MetricPlugin<Input = any, Output = any, Options = any> extends SensitivityMetric<Input, Output, Options> {
  readonly table: string;
  readonly input: 'weights' | 'activations';
  readonly description: string;
  /** Measured only when asked for by id (`sensitivity --metrics`, `--measured`): it costs more than the others. */
  readonly optIn?: boolean;
  /** The table as CSV text, and back: how `sensitivity` writes it (`<table>.csv`) and the conformance round trip. */
  readonly format?: (table: Output) => string;
  readonly parse?: (text: string, source?: string) => Output;
  /**
   * What `onProgress` counts, in words for cost reports (`layer runs`); default `matrices` for a weight metric,
   * `layers` for one that runs the model.
   */
  readonly progressUnit?: string;
  /**
   * The model's table from the tables of separate layers (a weight metric measured a layer per queue job), as one
   * measurement of the whole model gives it; default: their rows concatenated in layer order.
   */
  readonly join?: (parts: readonly Output[]) => Output;
}

/**
 * What `measureMetrics` passes every metric's `measure` besides its input: the settings of the run (a metric reads
 * those that apply to it), the tables measured before it in the same run, and progress.
 */
export interface MetricRunOptions {
  /** The config ladder of per-config tables (fnorm, measured); default the paper's 12. */
  readonly configs?: readonly QuantConfig[];
  /** Configs of per-block sensitivity measurements (default [b4g64]), rows of each in order. */
  readonly sensitivityConfigs?: readonly QuantConfig[];
  /**
   * The embedding units per-config tables (fnorm, measured) cover too, each at its own ladder (rows of layer -1):
   * what an allocation for a shipped format reads. Absent: the linear matrices only.
   */
  readonly embeddingConfigs?: Partial<Readonly<Record<EmbeddingUnit, readonly QuantConfig[]>>>;
  /** Linear modules whose matrices per-config tables measure at fewer configs than `configs` (a format's ladders). */
  readonly moduleConfigs?: ModuleLadders;
  readonly quantizer?: Quantizer;
  /** Names for tables that record them (sensitivity.csv's dataset and model columns). */
  readonly dataset?: string;
  readonly model?: string;
  /** Worker threads for the quantizations (each metric's matrices in parallel, bit-identical to the calling thread). */
  readonly pool?: KernelPool;
  /** The squared errors of the matrices quantized earlier in the same run (a metric that quantizes records them; fnorm reuses them). */
  readonly errors?: QuantizationErrors;
  /** Tables measured earlier in the same run, by table name (kurtosis is read off fnorm's column when it is there). */
  readonly tables?: Readonly<Record<string, unknown>>;
  /** Progress in the metric's own unit (layers, matrices). */
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * With a calibrated `quantizer` (GPTQ): a weight metric's per-matrix statistics, from a layer pass over the calibration
   * blocks with float inputs (the matrices must be asked for in layer order and reported back, as frobeniusTable does).
   * Activation metrics collect their own from the float inputs they run.
   */
  readonly calibration?: MatrixCalibration;
  /** The machine's free memory (Node: os.freemem()), for a metric that holds a model's weights (kld refuses above 80%). */
  readonly availableMemoryBytes?: number;
}

/** The measurements as plug-ins (`{ id, measure }`) for an app's registry; nothing registers on import. */
export const activationSensitivityMetric = Object.freeze<
  MetricPlugin<{ readonly model: DecoderBlocks; readonly calibration: CalibrationBlocks | ArrayLike<number> }, SensitivityTable, ActivationSensitivityOptions & MetricRunOptions>
>({
  id: 'activation-sensitivity',
  table: 'sensitivity',
  input: 'activations',
  description: "relative change of each block's output when one part of it is quantized (the authors' SensiBoost statistic)",
  // One pass per config of `sensitivityConfigs` (or the one `config`), rows of each in order.
  measure: async (input, options) => {
    const configs = options.sensitivityConfigs ?? [options.config ?? DEFAULT_SENSITIVITY_CONFIG];
    const rows: SensitivityRow[] = [];
    for (const [c, config] of configs.entries()) {
      const table = await activationSensitivity(input.model, input.calibration, {
        ...options,
        config,
        onLayer: (layer, layers) => {
          options.onLayer?.(layer, layers);
          options.onProgress?.(c * layers + layer + 1, configs.length * layers);
        },
      });
      rows.push(...table.rows);
    }
    return Object.freeze({ rows: Object.freeze(rows) });
  },
  format: formatSensitivityCsv,
  parse: parseSensitivityCsv,
});

export const kurtosisMetric = Object.freeze<MetricPlugin<MatrixSource, KurtosisTable, MetricRunOptions>>({
  id: 'kurtosis',
  table: 'kurtosis',
  input: 'weights',
  description: 'excess kurtosis of each weight matrix (KurtBoost; reads only the weights)',
  // Read off the fnorm table's kurtosis column when the same run measured it (the same numbers, no second pass).
  measure: (source, options = {}) => {
    const fnorm = options.tables?.fnorm as FnormTable | undefined;
    return fnorm && fnorm.rows.every((r) => r.kurtosis !== undefined) ? kurtosisTableFromFnorm(fnorm) : kurtosisTable(source);
  },
  format: formatKurtosisCsv,
  parse: parseKurtosisCsv,
  // The authors' row order is by module, then layer: the layers' rows sorted again.
  join: (parts) => Object.freeze({ rows: Object.freeze(sortKurtosisRows(parts.flatMap((p) => p.rows))) }),
});

export const frobeniusMetric = Object.freeze<MetricPlugin<MatrixSource, FnormTable, FrobeniusTableOptions & MetricRunOptions>>({
  id: 'fnorm',
  table: 'fnorm',
  input: 'weights',
  description: 'Frobenius norm of the dequantization error of each matrix at every config (MXQ)',
  measure: (source, options) =>
    frobeniusTable(source, options.configs ?? PAPER_CONFIGS, {
      ...options,
      onMatrix: (done, total, key) => {
        options.onMatrix?.(done, total, key);
        options.onProgress?.(done, total);
      },
    }),
  format: formatFnormCsv,
  parse: parseFnormCsv,
});

/** layerquant's measured block-output error of every matrix alone at every config (what `measured` minimises). */
export const measuredErrorMetric = Object.freeze<
  MetricPlugin<{ readonly model: DecoderBlocks; readonly calibration: CalibrationBlocks | ArrayLike<number> }, MeasuredTable, MeasuredErrorOptions & MetricRunOptions>
>({
  id: 'measured',
  table: 'measured',
  input: 'activations',
  description: "block-output error of every matrix alone at every config (layerquant's measured allocator)",
  optIn: true,
  measure: (input, options) =>
    measuredErrors(input.model, input.calibration, {
      ...options,
      onLayer: (layer, layers) => {
        options.onLayer?.(layer, layers);
        options.onProgress?.(layer + 1, layers);
      },
    }),
  format: formatMeasuredCsv,
  parse: parseMeasuredCsv,
});

/**
 * The end-to-end ΔKLD of every unit (linear matrices, embed_tokens, lm_head) alone at every config: the KL divergence
 * of the final logits from the float model's on the calibration (what the `kld` allocator minimises). Opt-in: it runs
 * the layers after each unit once per (unit, config).
 */
export const endToEndKldMetric = Object.freeze<
  MetricPlugin<{ readonly model: DecoderBlocks; readonly calibration: CalibrationBlocks | ArrayLike<number> }, KldTable, KldMeasurerOptions & MetricRunOptions>
>({
  id: 'kld',
  table: 'kld',
  input: 'activations',
  description: "end-to-end ΔKLD: the KL divergence of the final logits from the float model's with every unit alone at every config (the kld allocator's statistic)",
  optIn: true,
  progressUnit: KLD_PROGRESS_UNIT,
  measure: async (input, options) => {
    const measurer = await createKldMeasurer(input.model, input.calibration, options);
    return endToEndKldTable(measurer, options.configs ?? PAPER_CONFIGS, { ...(options.onProgress ? { onProgress: options.onProgress } : {}), ...(options.embeddingConfigs ? { embeddingConfigs: options.embeddingConfigs } : {}), ...(options.moduleConfigs ? { moduleConfigs: options.moduleConfigs } : {}) });
  },
  format: formatKldCsv,
  parse: parseKldCsv,
});

/** The built-in metrics; fnorm before kurtosis, so a run measuring both reads kurtosis off the fnorm table. */
export const SENSITIVITY_METRICS: readonly MetricPlugin[] = Object.freeze([activationSensitivityMetric, frobeniusMetric, kurtosisMetric, measuredErrorMetric, endToEndKldMetric]);

/** The metric of a registry (or list) that fills `table`; undefined when none does. */
export function metricForTable(metrics: readonly MetricPlugin[], table: string): MetricPlugin | undefined {
  return metrics.find((m) => m.table === table);
}
