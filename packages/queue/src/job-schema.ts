import { EMBEDDING_UNITS, LINEAR_MODULES, LayerquantError, SUPPORTED_BITS, type QuantConfig } from '@layerquant/core';
import type { CellCalibration, CellJobData, CellRefine, JobName, StatisticsJobData } from './jobs.js';

/**
 * The schema of every job's data, checked by the worker before it touches anything: whoever can write to Redis can
 * add or edit jobs, so a job is input like any file. The job's name must be a known kind, every field typed and
 * bounded, unknown fields refused. A job that fails here fails for good (BullMQ's UnrecoverableError): no retry,
 * and never taken again as stalled.
 */

/** Job data larger than this (bytes of its JSON) is refused unread: real jobs are a few KiB. */
export const MAX_JOB_DATA_BYTES = 1 << 20;

/** A job whose name, data or fields do not match the schema. */
export class InvalidJobError extends LayerquantError {
  constructor(
    readonly jobId: string,
    readonly field: string,
    problem: string,
  ) {
    super('QUEUE_JOB_INVALID', `job ${printable(jobId)}: ${field} ${problem}; the job is refused, not retried (was the queue written to by something other than layerquant experiment --queue?)`);
  }
}

/** Text from Redis as messages show it: bounded, control characters escaped. */
export function printable(text: string, max = 120): string {
  const shown = JSON.stringify(text.length > max ? `${text.slice(0, max)}...` : text);
  return shown.slice(1, -1);
}

type Check<T> = (value: unknown, field: string) => T;

class Refused extends Error {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${field} ${problem}`);
  }
}

const describe = (value: unknown): string => (value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'string' ? `the string "${printable(value, 40)}"` : typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`);

const string =
  (max: number, pattern?: RegExp, what = 'text', min = 1): Check<string> =>
  (value, field) => {
    if (typeof value !== 'string') throw new Refused(field, `must be ${what}, not ${describe(value)}`);
    if (value.length < min || value.length > max) throw new Refused(field, `must be ${min} to ${max} characters long`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(value)) throw new Refused(field, 'holds control characters');
    if (pattern && !pattern.test(value)) throw new Refused(field, `"${printable(value, 40)}" is not ${what}`);
    return value;
  };

const integer =
  (min: number, max: number): Check<number> =>
  (value, field) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new Refused(field, `must be an integer from ${min} to ${max}, not ${describe(value)}`);
    return value;
  };

const finite =
  (min: number, max: number): Check<number> =>
  (value, field) => {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) throw new Refused(field, `must be a number from ${min} to ${max}, not ${describe(value)}`);
    return value;
  };

const boolean: Check<boolean> = (value, field) => {
  if (typeof value !== 'boolean') throw new Refused(field, `must be true or false, not ${describe(value)}`);
  return value;
};

const oneOf =
  <T>(values: readonly T[]): Check<T> =>
  (value, field) => {
    if (!values.includes(value as T)) throw new Refused(field, `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}, not ${describe(value)}`);
    return value as T;
  };

const nullable =
  <T>(check: Check<T>): Check<T | null> =>
  (value, field) =>
    value === null ? null : check(value, field);

const array =
  <T>(check: Check<T>, min: number, max: number, unique = false): Check<T[]> =>
  (value, field) => {
    if (!Array.isArray(value)) throw new Refused(field, `must be an array, not ${describe(value)}`);
    if (value.length < min || value.length > max) throw new Refused(field, `must hold ${min} to ${max} entries, not ${value.length}`);
    const out = value.map((v, i) => check(v, `${field}[${i}]`));
    if (unique && new Set(out.map((v) => JSON.stringify(v))).size !== out.length) throw new Refused(field, 'holds an entry twice');
    return out;
  };

function plainObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Refused(field, `must be an object, not ${describe(value)}`);
  return value as Record<string, unknown>;
}

/** An object with exactly these fields (those marked optional may be absent); any other field is refused. */
function object<T>(fields: { readonly [K in keyof T]-?: Check<T[K]> }, optional: readonly (keyof T)[] = []): Check<T> {
  return (value, field) => {
    const record = plainObject(value, field);
    for (const key of Object.keys(record)) if (!(key in fields)) throw new Refused(`${field}.${printable(key, 40)}`, 'is not a field of this job (unknown fields are refused)');
    const out: Record<string, unknown> = {};
    for (const [key, check] of Object.entries(fields) as [string, Check<unknown>][]) {
      if (!(key in record)) {
        if (optional.includes(key as keyof T)) continue;
        throw new Refused(`${field}.${key}`, 'is missing');
      }
      out[key] = check(record[key], `${field}.${key}`);
    }
    return out as T;
  };
}

/** A record of plug-in option values (number, boolean or string), as MethodSpec and QuantizerChoice carry them. */
const optionValues: Check<Record<string, number | boolean | string>> = (value, field) => {
  const record = plainObject(value, field);
  const keys = Object.keys(record);
  if (keys.length > 64) throw new Refused(field, `holds ${keys.length} options, more than 64`);
  const out: Record<string, number | boolean | string> = {};
  for (const key of keys) {
    const name = string(100, /^[A-Za-z_][A-Za-z0-9_.-]*$/, 'an option name')(key, `${field} key`);
    const v = record[key];
    // String options may be empty (sensiboost's `dataset`).
    out[name] = typeof v === 'boolean' ? v : typeof v === 'number' ? finite(-1e15, 1e15)(v, `${field}.${name}`) : string(1000, undefined, 'text', 0)(v, `${field}.${name}`);
  }
  return out;
};

const HASH = /^[0-9a-f]{64}$/;
const KEY = /^[0-9a-f]{16}$/;
/** Plug-in and method ids: letters, digits and a few separators (built-ins: `hqq`, `sensiboost-2-1`, `sensi-milp-1`). */
const ID = /^[A-Za-z0-9][A-Za-z0-9_.:@/+-]*$/;

const hash = string(64, HASH, 'a sha256 (64 lowercase hex digits)');
const id = string(200, ID, 'a plug-in id');
const modelDir = string(4096, /^\//, 'an absolute path');

const quantConfig = object<QuantConfig>(
  {
    bits: oneOf(SUPPORTED_BITS as readonly number[]),
    groupSize: integer(1, 1 << 20),
    axis: oneOf([0, 1] as const),
    roundZero: boolean,
    symmetric: boolean,
  },
  ['symmetric'],
);
const configLadder = array(quantConfig, 1, 256);
const quantizerChoice = object<CellJobData['quantizer']>({ id, options: optionValues });

const cellSpec: Check<CellJobData['cell']> = (value, field) => {
  const kind = oneOf(['fp', 'method'] as const)(plainObject(value, field).kind, `${field}.kind`);
  if (kind === 'fp') return object<{ key: string; kind: 'fp' }>({ key: string(16, KEY, 'a settings key (16 hex digits)'), kind: oneOf(['fp'] as const) })(value, field);
  return object<{ key: string; kind: 'method'; method: Extract<CellJobData['cell'], { kind: 'method' }>['method']; budget: number }>({
    key: string(16, KEY, 'a settings key (16 hex digits)'),
    kind: oneOf(['method'] as const),
    method: object({ id, allocator: id, options: optionValues, explicit: array(string(100), 0, 64, true) }),
    budget: finite(0.01, 64),
  })(value, field);
};

const cellCalibration = object<CellCalibration>({ blob: hash, name: string(1000), blocks: integer(1, 1_000_000), seqlen: integer(2, 1 << 20) });

const cellData = object<CellJobData>({
  modelDir,
  modelHash: hash,
  cell: cellSpec,
  modelName: string(1000),
  textBlob: hash,
  seqlen: integer(2, 1 << 20),
  maxTokens: nullable(integer(2, 2 ** 31)),
  seed: integer(-(2 ** 53 - 1), 2 ** 53 - 1),
  statsBlob: nullable(hash),
  configs: nullable(configLadder),
  quantizer: quantizerChoice,
  kld: boolean,
  calibration: cellCalibration,
  refine: object<CellRefine>({ calibration: cellCalibration, quantizer: quantizerChoice }),
}, ['kld', 'calibration', 'refine']);

type Measure = StatisticsJobData['measure'];
const statisticsData = object<StatisticsJobData>({
  modelDir,
  modelHash: hash,
  metrics: array(id, 1, 64, true),
  layers: nullable(array(integer(0, 1_000_000), 1, 100_000, true)),
  calibrationBlob: nullable(hash),
  measure: object<Measure>(
    {
      calibrationName: string(1000),
      blocks: integer(1, 1_000_000),
      seqlen: integer(2, 1 << 20),
      order: oneOf(['in-order', 'shuffled'] as const),
      configs: configLadder,
      sensitivityConfigs: configLadder,
      embeddingConfigs: object<NonNullable<Measure['embeddingConfigs']>>(Object.fromEntries(EMBEDDING_UNITS.map((unit) => [unit, configLadder])) as never, [...EMBEDDING_UNITS]),
      moduleConfigs: object<NonNullable<Measure['moduleConfigs']>>(Object.fromEntries(LINEAR_MODULES.map((module) => [module, configLadder])) as never, [...LINEAR_MODULES]),
      quantizer: quantizerChoice,
    },
    ['order', 'embeddingConfigs', 'moduleConfigs', 'quantizer'],
  ),
});

const SCHEMAS: { readonly [N in JobName]: Check<unknown> } = { cell: cellData, statistics: statisticsData };

/** The job kinds a worker runs. */
export const JOB_NAMES = Object.freeze(Object.keys(SCHEMAS) as JobName[]);

/** Job ids as the coordinator makes them (jobs.ts' jobIds): a cell's id names its key. */
const CELL_ID = /^cell-([0-9a-f]{16})$/;

/**
 * A job's name and data checked against the schema of its kind; the typed data, or an InvalidJobError naming the
 * job and the first field that is wrong.
 */
export function validateJob(jobId: string, name: string, data: unknown): { [N in JobName]: { name: N; data: import('./jobs.js').JobData[N] } }[JobName] {
  if (!(JOB_NAMES as readonly string[]).includes(name)) throw new InvalidJobError(jobId, 'its name', `"${printable(name, 40)}" is not a job kind of this worker (${JOB_NAMES.join(', ')})`);
  try {
    const checked = SCHEMAS[name as JobName](data, 'data');
    if (name === 'cell') {
      const key = (checked as CellJobData).cell.key;
      if (CELL_ID.exec(jobId)?.[1] !== key) throw new Refused('data.cell.key', `${key} is not the key in the job id (cell-<key>)`);
    }
    return { name, data: checked } as never;
  } catch (error) {
    if (error instanceof Refused) throw new InvalidJobError(jobId, error.field, error.problem);
    throw error;
  }
}
