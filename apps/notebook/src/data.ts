import { InvalidDataError } from '@layerquant/core';
import type { ModelSummary } from '@layerquant/tensor-io';

/** Where a part of the data came from: our CLI, or the PyTorch oracles shipped with the model. */
export type DataSource = 'layerquant' | 'oracles';

export interface SourceNote {
  readonly kind: DataSource;
  readonly detail: string;
}

export interface TensorEntry {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly bytes: number;
  readonly file: string;
}

/** One row of `layerquant experiment`'s results.json (or the oracle table in that shape). */
export interface ResultRow {
  readonly model: string;
  readonly method: string;
  readonly options: Readonly<Record<string, unknown>>;
  readonly budget: number;
  readonly bpp: number;
  readonly memoryMB: number;
  /** Real bytes of the packed matrices, when the experiment measured them. */
  readonly packedBytes?: number;
  readonly extraMemoryPercent: number | null;
  readonly ppl: number;
  readonly seconds: number | null;
}

/** What `layerquant inspect --json` says of the model (tensor-io's ModelSummary), with its name and path. */
export interface ModelFacts extends Omit<ModelSummary, 'dir' | 'dtypes'> {
  readonly name: string;
  /** The model directory, relative to the repository root. */
  readonly path: string;
  readonly dtypes: Readonly<Record<string, number>>;
}

/** public/data/notebook.json, written by scripts/precompute.mjs. */
export interface NotebookData {
  readonly format: 'layerquant-notebook';
  readonly version: 1;
  readonly generatedAt: string;
  readonly source: DataSource;
  readonly sources: { readonly model: SourceNote; readonly statistics: SourceNote; readonly results: SourceNote };
  readonly model: ModelFacts;
  readonly tensors: readonly TensorEntry[];
  /** measured.csv (layerquant's measured block-output error) when the statistics directory had one. */
  readonly statistics: { readonly fnormCsv: string; readonly sensitivityCsv: string; readonly measuredCsv?: string };
  readonly results: readonly ResultRow[];
  readonly reference: {
    readonly fp32Perplexity: number;
    readonly fp32Source: DataSource;
    readonly fp32Detail: string;
    readonly perplexityDataset: string;
    /** Outlier layers the authors' code finds, keyed by method then top_m ("1", "0" = all) then module. */
    readonly oracleOutliers: Readonly<Record<string, Readonly<Record<string, Readonly<Record<string, readonly number[]>>>>>>;
  };
  readonly budgets: readonly number[];
}

/** Checks the parts the page relies on, so a stale or hand-edited file fails with a message and not a blank cell. */
export function validateNotebookData(value: unknown, source: string): NotebookData {
  const data = value as Partial<NotebookData> | null;
  if (!data || typeof data !== 'object' || data.format !== 'layerquant-notebook') {
    throw new InvalidDataError(source, 'is not a layerquant notebook data file; run `pnpm --filter notebook precompute`');
  }
  if (data.version !== 1) throw new InvalidDataError(source, `has version ${String(data.version)}, this page reads version 1; run the precompute again`);
  if (!data.model || !Array.isArray(data.tensors) || data.tensors.length === 0) throw new InvalidDataError(source, 'has no model or tensor list');
  if (!data.statistics?.fnormCsv || !data.statistics.sensitivityCsv) throw new InvalidDataError(source, 'has no statistics tables');
  if (!Array.isArray(data.results) || data.results.length === 0) throw new InvalidDataError(source, 'has no perplexity results');
  if (!data.reference || !Number.isFinite(data.reference.fp32Perplexity)) throw new InvalidDataError(source, 'has no fp32 perplexity');
  return data as NotebookData;
}

export async function loadNotebookData(url: string): Promise<NotebookData> {
  const response = await fetch(url);
  if (!response.ok) throw new InvalidDataError(url, `could not be loaded (HTTP ${response.status}); run \`pnpm --filter notebook precompute\``);
  return validateNotebookData(await response.json(), url);
}
