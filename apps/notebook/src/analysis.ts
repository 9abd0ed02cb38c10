import {
  SENSITIVITY_PARTS,
  detectModuleOutliers,
  kurtosisByModule,
  matricesOf,
  parseFnormCsv,
  parseMeasuredCsv,
  parseSensitivityCsv,
  sensitivityByModule,
  type ModelStats,
  type ModuleOutliers,
  type SensitivityPart,
} from '@layerquant/allocators';
import { InvalidDataError, matrixOfTensorName, type LinearModule, type MatrixInfo } from '@layerquant/core';
import type { NotebookData } from './data.js';

/** The measurement configuration the authors' SensiBoost reads (HQQ b4g64). */
export const SENSITIVITY_BITS = 4;
export const SENSITIVITY_GROUP_SIZE = 64;

export interface SensitivityPoint {
  readonly part: SensitivityPart;
  readonly layer: number;
  readonly sensitivity: number;
}

export interface KurtosisPoint {
  readonly module: LinearModule;
  readonly layer: number;
  readonly kurtosis: number;
}

export interface Outliers {
  readonly sensitivity: ModuleOutliers;
  readonly kurtosis: ModuleOutliers;
}

/** What the page derives from a model's statistics tables and tensor list (the shipped model's or a reader's own). */
export interface ModelAnalysis {
  readonly stats: ModelStats;
  readonly numLayers: number;
  readonly matrices: readonly MatrixInfo[];
  /** [rows, columns] of each linear matrix, from the checkpoint's tensor list. */
  readonly shapes: ReadonlyMap<string, readonly [number, number]>;
  readonly kurtosisPoints: readonly KurtosisPoint[];
  readonly kurtosisByModule: Record<LinearModule, Float64Array>;
  /** KurtBoost's outlier layers for a top_m (memoized). */
  kurtosisOutliers(topM: number): ModuleOutliers;
}

/** Everything the page derives once from notebook.json, with the allocators package's own parsers. */
export interface Analysis extends ModelAnalysis {
  readonly data: NotebookData;
  readonly sensitivityPoints: readonly SensitivityPoint[];
  readonly sensitivityByModule: Record<LinearModule, Float64Array>;
  /** Outlier layers for a top_m (memoized: the knobs ask for the same few again and again). */
  outliers(topM: number): Outliers;
}

/** Kurtosis series, outliers and matrix shapes of any model: statistics tables plus its tensor list. */
export function analyseModel(stats: ModelStats, tensors: readonly { readonly name: string; readonly shape: readonly number[] }[], numLayers: number, source: string): ModelAnalysis {
  const matrices = matricesOf(stats);
  const shapes = new Map<string, readonly [number, number]>();
  for (const tensor of tensors) {
    const matrix = matrixOfTensorName(tensor.name);
    if (matrix && tensor.shape.length === 2) shapes.set(`${matrix.layer}.${matrix.module}`, [tensor.shape[0]!, tensor.shape[1]!]);
  }
  for (const m of matrices) {
    if (!shapes.has(m.key)) throw new InvalidDataError(source, `no tensor for matrix ${m.key} of the statistics table`);
  }
  const byKurtosis = kurtosisByModule(stats, numLayers);
  const kurtosisPoints = Object.entries(byKurtosis).flatMap(([module, series]) =>
    Array.from(series, (kurtosis, layer) => ({ module: module as LinearModule, layer, kurtosis })),
  );
  const memo = new Map<number, ModuleOutliers>();
  return {
    stats,
    numLayers,
    matrices,
    shapes,
    kurtosisPoints,
    kurtosisByModule: byKurtosis,
    kurtosisOutliers(topM) {
      let found = memo.get(topM);
      if (!found) {
        found = detectModuleOutliers(byKurtosis, { change: 'difference', topM });
        memo.set(topM, found);
      }
      return found;
    },
  };
}

export function analyse(data: NotebookData): Analysis {
  const stats: ModelStats = {
    fnorm: parseFnormCsv(data.statistics.fnormCsv, 'notebook.json statistics.fnormCsv'),
    sensitivity: parseSensitivityCsv(data.statistics.sensitivityCsv, 'notebook.json statistics.sensitivityCsv'),
    ...(data.statistics.measuredCsv ? { measured: parseMeasuredCsv(data.statistics.measuredCsv, 'notebook.json statistics.measuredCsv') } : {}),
    source: 'notebook.json',
  };
  const numLayers = data.model.numLayers;
  const model = analyseModel(stats, data.tensors, numLayers, 'notebook.json tensors');
  const sensitivityPoints = stats
    .sensitivity!.rows.filter((r) => r.bits === SENSITIVITY_BITS && r.groupSize === SENSITIVITY_GROUP_SIZE)
    .map((r) => ({ part: r.part, layer: r.layer, sensitivity: r.sensitivity }))
    .sort((a, b) => SENSITIVITY_PARTS.indexOf(a.part) - SENSITIVITY_PARTS.indexOf(b.part) || a.layer - b.layer);
  const bySensitivity = sensitivityByModule(stats.sensitivity!, numLayers, { bits: SENSITIVITY_BITS, groupSize: SENSITIVITY_GROUP_SIZE });
  const memo = new Map<number, Outliers>();
  return {
    ...model,
    data,
    sensitivityPoints,
    sensitivityByModule: bySensitivity,
    outliers(topM) {
      let found = memo.get(topM);
      if (!found) {
        found = { sensitivity: detectModuleOutliers(bySensitivity, { change: 'ratio', topM }), kurtosis: model.kurtosisOutliers(topM) };
        memo.set(topM, found);
      }
      return found;
    },
  };
}
