import {
  formatFnormCsv,
  formatKurtosisCsv,
  formatMeasuredCsv,
  formatSensitivityCsv,
  parseFnormCsv,
  parseKurtosisCsv,
  parseMeasuredCsv,
  parseSensitivityCsv,
  type FnormRow,
  type ModelStats,
} from '@layerquant/allocators';
import { LayerquantError, type QuantConfig } from '@layerquant/core';
import { hqqQuantizer } from '@layerquant/quantizers';
import { frobeniusRows, listMatrices, measureModelStatistics } from '@layerquant/sensitivity';
import { loadTokenizer, openCheckpoint } from '@layerquant/tensor-io';
import { createHash } from 'node:crypto';
import type { CellResult, CellSpec } from '@layerquant/experiment';
import type { QuantizerChoice } from '@layerquant/pipeline';

/**
 * The jobs of the experiment queue. Every job carries the content hash of the model it was planned on (a worker
 * with another model refuses it) and refers to texts and statistics by the sha256 of their bytes, stored once in
 * Redis as blobs: a worker needs read access to the model and to Redis, nothing else.
 */

export const QUEUE_NAME = 'layerquant-experiment';

/** Environment variables the worker's main thread sets for its processor threads (processor.ts). */
export const PROCESSOR_ENV = Object.freeze({ url: 'LAYERQUANT_QUEUE_URL', model: 'LAYERQUANT_WORKER_MODEL', threads: 'LAYERQUANT_WORKER_THREADS', plugins: 'LAYERQUANT_WORKER_PLUGINS' } as const);

interface ModelRef {
  /** The model directory as the coordinator sees it (a worker may be given its own copy with --model). */
  readonly modelDir: string;
  readonly modelHash: string;
}

export interface CellJobData extends ModelRef {
  readonly cell: CellSpec;
  readonly modelName: string;
  readonly textBlob: string;
  readonly seqlen: number;
  readonly maxTokens: number | null;
  readonly seed: number;
  /** Blob of the statistics tables (JSON of CSV texts); null for the fp cell. */
  readonly statsBlob: string | null;
  /** The config ladder the allocators choose from; null: the paper's 12. */
  readonly configs: readonly QuantConfig[] | null;
  /** The quantizer of every matrix (a built-in or a `--plugin` module's, which the worker must load too). */
  readonly quantizer: QuantizerChoice;
}

/** fnorm rows of one layer's matrices under the configs of the ladder. */
export interface FnormJobData extends ModelRef {
  readonly layer: number;
  readonly configs: readonly QuantConfig[];
}

/**
 * Activation sensitivity of every layer, in one job: layer i is measured on the float outputs of layer i - 1, so
 * the layers are a chain; splitting it into jobs would ship every calibration block's hidden states (blocks x 512
 * x hidden floats per layer) through Redis. One job streams the layers, holding one layer's activations at a time.
 */
export interface SensitivityJobData extends ModelRef {
  readonly calibrationBlob: string;
  readonly calibrationName: string;
  readonly blocks: number;
  readonly seqlen: number;
  readonly order: string;
  /** The measured block-error table is a layer chain too: measured in the same job where a method needs it. */
  readonly measuredConfigs: readonly QuantConfig[] | null;
}

/** What a sensitivity job returns: the tables in the authors' CSV layouts. */
export interface SensitivityJobResult {
  readonly sensitivity: string;
  readonly measured: string | null;
}

export type JobData = { readonly cell: CellJobData; readonly fnorm: FnormJobData; readonly sensitivity: SensitivityJobData };
export type JobName = keyof JobData;

/** Job ids (BullMQ deduplicates by them: a job added twice exists once). */
export const jobIds = {
  cell: (key: string) => `cell-${key}`,
  fnorm: (statsKey: string, layer: number) => `fnorm-${statsKey}-${layer}`,
  sensitivity: (statsKey: string) => `sensitivity-${statsKey}`,
};

export function sha256Hex(content: string): string {
  return createHash('sha256').update(content).digest('hex');
}

/** The Redis key of a blob. */
export function blobKey(hash: string): string {
  return `layerquant:blob:${hash}`;
}

/** Statistics as one blob: the tables in the authors' CSV layouts (the numbers round-trip exactly). */
export function statsToBlob(stats: ModelStats): string {
  return JSON.stringify({
    ...(stats.fnorm ? { fnorm: formatFnormCsv(stats.fnorm) } : {}),
    ...(stats.sensitivity ? { sensitivity: formatSensitivityCsv(stats.sensitivity) } : {}),
    ...(stats.kurtosis ? { kurtosis: formatKurtosisCsv(stats.kurtosis) } : {}),
    ...(stats.measured ? { measured: formatMeasuredCsv(stats.measured) } : {}),
  });
}

export function statsFromBlob(blob: string, source: string): ModelStats {
  const tables = JSON.parse(blob) as { fnorm?: string; sensitivity?: string; kurtosis?: string; measured?: string };
  return {
    source,
    ...(tables.fnorm ? { fnorm: parseFnormCsv(tables.fnorm, `${source} fnorm`) } : {}),
    ...(tables.sensitivity ? { sensitivity: parseSensitivityCsv(tables.sensitivity, `${source} sensitivity`) } : {}),
    ...(tables.kurtosis ? { kurtosis: parseKurtosisCsv(tables.kurtosis, `${source} kurtosis`) } : {}),
    ...(tables.measured ? { measured: parseMeasuredCsv(tables.measured, `${source} measured`) } : {}),
  };
}

/** A job planned on another model than the worker can read. */
export class ModelMismatchError extends LayerquantError {
  constructor(modelDir: string, expected: string, actual: string) {
    super(
      'MODEL_MISMATCH',
      `${modelDir}: this worker's model has content hash ${actual.slice(0, 16)}, the job was planned on ${expected.slice(0, 16)}; point the worker at a copy of the coordinator's model with --model <dir>`,
    );
  }
}

/** A blob the coordinator publishes is missing (Redis was restarted without persistence): retried once it is back. */
export class MissingBlobError extends LayerquantError {
  constructor(hash: string) {
    super('QUEUE_BLOB_MISSING', `blob ${hash.slice(0, 16)} is not in Redis (was Redis restarted?); the coordinator publishes it again and the job is retried`);
  }
}

/** What a job processor gets from the worker. */
export interface JobEnvironment {
  /** The model directory to read (checked against the job's hash). */
  modelDir(job: ModelRef): Promise<string>;
  blob(hash: string): Promise<string>;
  computeCell(data: CellJobData, modelDir: string): Promise<CellResult>;
  log(line: string): void;
}

export interface JobProcessor<N extends JobName> {
  readonly name: N;
  process(data: JobData[N], env: JobEnvironment): Promise<unknown>;
}

const cellProcessor: JobProcessor<'cell'> = {
  name: 'cell',
  async process(data, env) {
    return env.computeCell(data, await env.modelDir(data));
  },
};

const fnormProcessor: JobProcessor<'fnorm'> = {
  name: 'fnorm',
  async process(data, env): Promise<FnormRow[]> {
    const checkpoint = await openCheckpoint(await env.modelDir(data));
    try {
      const rows: FnormRow[] = [];
      for (const matrix of listMatrices(checkpoint).filter((m) => m.layer === data.layer)) {
        rows.push(...(await frobeniusRows(matrix, await checkpoint.read(matrix.name), data.configs, hqqQuantizer)));
      }
      return rows;
    } finally {
      await checkpoint.close();
    }
  },
};

const sensitivityProcessor: JobProcessor<'sensitivity'> = {
  name: 'sensitivity',
  async process(data, env): Promise<SensitivityJobResult> {
    const dir = await env.modelDir(data);
    const measured = await measureModelStatistics(dir, {
      calibrationText: await env.blob(data.calibrationBlob),
      calibrationName: data.calibrationName,
      blocks: data.blocks,
      seqlen: data.seqlen,
      ...(data.order === 'default' ? {} : { order: data.order as 'in-order' | 'shuffled' }),
      skipFnorm: true,
      ...(data.measuredConfigs ? { measuredConfigs: data.measuredConfigs } : {}),
    });
    return { sensitivity: formatSensitivityCsv(measured.sensitivity), measured: measured.measured ? formatMeasuredCsv(measured.measured) : null };
  },
};

/** The processors a worker runs, by job name. */
export const JOB_PROCESSORS: { readonly [N in JobName]: JobProcessor<N> } = Object.freeze({
  cell: cellProcessor,
  fnorm: fnormProcessor,
  sensitivity: sensitivityProcessor,
});

/** Token ids of a text under a model's tokenizer, cached per (model dir, text hash). */
const idsCache = new Map<string, number[]>();
export async function tokenIds(modelDir: string, textHash: string, text: string): Promise<number[]> {
  const key = `${modelDir}\0${textHash}`;
  let ids = idsCache.get(key);
  if (!ids) {
    ids = (await loadTokenizer(modelDir)).encode(text);
    idsCache.set(key, ids);
  }
  return ids;
}
