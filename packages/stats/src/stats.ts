import {
  InvalidDataError,
  InvalidOptionError,
  configName,
  LINEAR_MODULES,
  isEmbeddingUnit,
  isLinearModule,
  isUnitModule,
  NO_LAYER,
  quantConfig,
  matrixKey,
  type LinearModule,
  type QuantConfig,
  type UnitModule,
  type ZeroKind,
  type MatrixInfo,
} from '@layerquant/core';
import { columnIndex, field, formatCsv, integerField, numberField, readCsv, type CsvDocument, type CsvRecord } from './csv.js';

/**
 * The statistics tables allocators read, as plain data. Each has a CSV form in the column layout of the
 * authors' files (lm-quant-toolkit), so our own measurements and their published tables are interchangeable.
 */

/** One (matrix, config) row of the Frobenius-error table: `layer,module,nbit1,gsize1,nbit2,gsize2,fnorm,memmb,params[,kurtosis][,sq_err]`. */
export interface FnormRow {
  /** Decoder layer; NO_LAYER (-1) for the embedding units `embed_tokens` and `lm_head`. */
  readonly layer: number;
  readonly module: UnitModule;
  /** `nbit1`: bits of the weights. */
  readonly bits: number;
  /** `gsize1`: group size of the weights. */
  readonly groupSize: number;
  /** `zero` (optional column, layerquant's): fractional (default, the authors' tables), integer or none (symmetric). */
  readonly zero: ZeroKind;
  /** `nbit2`: bits of the quantized scale and zero (8 in the paper). */
  readonly metaBits: number;
  /** `gsize2`: group size of the meta-data quantization (128 in the paper). */
  readonly metaGroupSize: number;
  /** ‖W - dequant(quant(W))‖_F. */
  readonly fnorm: number;
  /** `memmb`: memory of the quantized matrix in MB (2^20 bytes), paper accounting. */
  readonly memoryMB: number;
  readonly params: number;
  /** Pearson kurtosis of the matrix's weights (same on every config row of a matrix). */
  readonly kurtosis?: number;
  /** `sq_err`: squared Frobenius error (our tables write it; the authors' 7B table has none). */
  readonly squaredError?: number;
}

export interface FnormTable {
  readonly rows: readonly FnormRow[];
}

/** The four block measurements of activation sensitivity. */
export const SENSITIVITY_PARTS = Object.freeze(['attn_in', 'attn_out', 'mlp_gate', 'mlp_down'] as const);
export type SensitivityPart = (typeof SENSITIVITY_PARTS)[number];

export function isSensitivityPart(value: string): value is SensitivityPart {
  return (SENSITIVITY_PARTS as readonly string[]).includes(value);
}

/** Which measurement a matrix takes: q,k,v `attn_in`; o `attn_out`; gate,up `mlp_gate`; down `mlp_down`. */
export function sensitivityPartOf(module: LinearModule): SensitivityPart {
  switch (module) {
    case 'self_attn.q_proj':
    case 'self_attn.k_proj':
    case 'self_attn.v_proj':
      return 'attn_in';
    case 'self_attn.o_proj':
      return 'attn_out';
    case 'mlp.gate_proj':
    case 'mlp.up_proj':
      return 'mlp_gate';
    case 'mlp.down_proj':
      return 'mlp_down';
  }
}

/** One row of `sensitivity.csv`: `dataset,part,model,nbits,group_size,layer,sensitivity`. */
export interface SensitivityRow {
  readonly dataset: string;
  readonly part: SensitivityPart;
  readonly model: string;
  readonly bits: number;
  readonly groupSize: number;
  readonly layer: number;
  /** MSE between the float and the partly quantized block output. */
  readonly sensitivity: number;
}

export interface SensitivityTable {
  readonly rows: readonly SensitivityRow[];
}

/** One row of the authors' `kurtosis-<model>.csv`: `module,layer,param_count,kurtosis`. */
export interface KurtosisRow {
  readonly module: UnitModule;
  readonly layer: number;
  readonly params: number;
  /** Pearson (not excess) kurtosis, biased: normal = 3. */
  readonly kurtosis: number;
}

export interface KurtosisTable {
  readonly rows: readonly KurtosisRow[];
}

/**
 * Everything an allocator may read, keyed by table name. Each allocator says which tables it needs; each metric
 * plug-in fills one table (its `table`), so a plug-in metric's table reaches a plug-in allocator as
 * `stats[table]` (plain JSON-safe data, `{ rows }` by convention). The built-in tables are typed here.
 */
export interface ModelStats {
  readonly [table: string]: unknown;
  readonly fnorm?: FnormTable;
  readonly sensitivity?: SensitivityTable;
  readonly kurtosis?: KurtosisTable;
  /** Measured block-output error of every matrix and config (`measured.csv`). */
  readonly measured?: MeasuredTable;
  /** End-to-end ΔKLD of every unit alone at every config (`kld.csv`). */
  readonly kld?: KldTable;
  /**
   * The model's matrices and sizes, for allocators that read no table (uniform, layer-position rules): with it an
   * app computes no statistics for them. The tables' own list wins where both are present.
   */
  readonly matrices?: readonly MatrixInfo[];
  /** Where the tables came from (a directory), for messages. */
  readonly source?: string;
}

/** The built-in tables (their layouts are this package's); any other name is a metric plug-in's. */
export const BUILTIN_TABLES = Object.freeze(['fnorm', 'sensitivity', 'kurtosis', 'measured'] as const);
export type BuiltinTableName = (typeof BUILTIN_TABLES)[number];

/** The files of the built-in tables in a statistics directory (`layerquant sensitivity` writes them, `--stats` reads them). */
export const STATS_FILES = Object.freeze({ fnorm: 'fnorm.csv', sensitivity: 'sensitivity.csv', kurtosis: 'kurtosis.csv', measured: 'measured.csv' });

/** The file of a table in a statistics directory: the authors' name for the built-ins, else `<table>.csv`. */
export function tableFile(table: string): string {
  return (STATS_FILES as Readonly<Record<string, string>>)[table] ?? `${table}.csv`;
}

/** Names a table may not have: the other fields of ModelStats. */
export const RESERVED_TABLE_NAMES: readonly string[] = Object.freeze(['matrices', 'source']);

/**
 * Whether `stats` holds the table `name`. Kurtosis is also a column of the authors' fnorm table: a fnorm table with
 * it holds the kurtosis table too (kurtosisByModule reads either).
 */
export function hasTable(stats: ModelStats, name: string): boolean {
  if (name === 'kurtosis' && stats.fnorm?.rows.length && stats.fnorm.rows.every((r) => r.kurtosis !== undefined)) return true;
  return stats[name] !== undefined;
}

export const FNORM_COLUMNS = Object.freeze(['layer', 'module', 'nbit1', 'gsize1', 'nbit2', 'gsize2', 'fnorm', 'memmb', 'params'] as const);
export const SENSITIVITY_COLUMNS = Object.freeze(['dataset', 'part', 'model', 'nbits', 'group_size', 'layer', 'sensitivity'] as const);
export const KURTOSIS_COLUMNS = Object.freeze(['module', 'layer', 'param_count', 'kurtosis'] as const);

/** The optional `zero` column of per-config tables: how the config stores its zero point. */
export const ZERO_KINDS: readonly ZeroKind[] = Object.freeze(['fractional', 'integer', 'none']);

/** The QuantConfig of a per-config row (fnorm.csv, measured.csv): bits, group size and zero kind. */
export function rowConfig(row: { readonly bits: number; readonly groupSize: number; readonly zero: ZeroKind }): QuantConfig {
  return quantConfig(row.bits, row.groupSize, { roundZero: row.zero === 'integer', symmetric: row.zero === 'none' });
}

function moduleField(source: string, line: number, text: string, layer: number): UnitModule {
  if (!isUnitModule(text)) {
    throw new InvalidDataError(`${source}:${line}`, `module "${text}" is not one of ${LINEAR_MODULES.join(', ')}, embed_tokens, lm_head`);
  }
  if (isEmbeddingUnit(text) !== (layer === NO_LAYER)) {
    throw new InvalidDataError(`${source}:${line}`, `module "${text}" has layer ${layer}; embed_tokens and lm_head take layer ${NO_LAYER}, the linear modules a layer from 0`);
  }
  return text;
}

/** An optional column: an empty field is absent; anything else must be a finite number (a NaN is refused, never used or skipped). */
function finiteOrUndefined(text: string | undefined, source: string, line: number, name: string): number | undefined {
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new InvalidDataError(`${source}:${line}`, `column "${name}" has "${text}", expected a finite number (leave the field empty where there is none)`);
  return value;
}


/**
 * The matrix (layer, module) and config (nbit1, gsize1) columns of a per-matrix-and-config row (fnorm.csv,
 * measured.csv); a second row for the same matrix and config is an error.
 */
function matrixConfigFields(
  doc: CsvDocument,
  record: CsvRecord,
  index: Record<string, number>,
  source: string,
  seen: Set<string>,
): { layer: number; module: UnitModule; bits: number; groupSize: number; zero: ZeroKind } {
  const layer = integerField(doc, record, index, 'layer', NO_LAYER);
  const module = moduleField(source, record.line, field(doc, record, index, 'module'), layer);
  const bits = integerField(doc, record, index, 'nbit1', 1);
  const groupSize = integerField(doc, record, index, 'gsize1', 1);
  const zeroText = index.zero === undefined ? '' : (record.fields[index.zero] ?? '').trim();
  if (zeroText !== '' && !(ZERO_KINDS as readonly string[]).includes(zeroText)) {
    throw new InvalidDataError(`${source}:${record.line}`, `column "zero" has "${zeroText}"; expected one of ${ZERO_KINDS.join(', ')}`);
  }
  const zero = (zeroText || 'fractional') as ZeroKind;
  const name = configName({ bits, groupSize, roundZero: zero === 'integer', symmetric: zero === 'none' });
  const key = `${matrixKey(layer, module)}.${name}`;
  if (seen.has(key)) throw new InvalidDataError(`${source}:${record.line}`, `duplicate row for matrix ${matrixKey(layer, module)} config ${name}`);
  seen.add(key);
  return { layer, module, bits, groupSize, zero };
}

/** Whether every row stores a fractional zero (the authors' tables): then the optional `zero` column is left out. */
function allFractional(rows: readonly { readonly zero: ZeroKind }[]): boolean {
  return rows.every((r) => r.zero === 'fractional');
}

/** Parses an fnorm table (the authors' layout; extra columns such as `kurtosis_scaled` are ignored). */
export function parseFnormCsv(text: string, source = 'fnorm.csv'): FnormTable {
  const doc = readCsv(text, source);
  const index = columnIndex(doc, FNORM_COLUMNS, ['kurtosis', 'sq_err', 'zero']);
  const rows: FnormRow[] = [];
  const seen = new Set<string>();
  for (const record of doc.records) {
    const { layer, module, bits, groupSize, zero } = matrixConfigFields(doc, record, index, source, seen);
    const fnorm = numberField(doc, record, index, 'fnorm');
    const memoryMB = numberField(doc, record, index, 'memmb');
    const params = integerField(doc, record, index, 'params', 1);
    if (fnorm < 0) throw new InvalidDataError(`${source}:${record.line}`, `fnorm ${fnorm} is negative`);
    if (memoryMB <= 0) throw new InvalidDataError(`${source}:${record.line}`, `memmb ${memoryMB} must be positive`);
    const kurtosis = finiteOrUndefined(index.kurtosis === undefined ? undefined : record.fields[index.kurtosis], source, record.line, 'kurtosis');
    const squaredError = finiteOrUndefined(index.sq_err === undefined ? undefined : record.fields[index.sq_err], source, record.line, 'sq_err');
    const row = {
      layer,
      module,
      bits,
      groupSize,
      zero,
      metaBits: integerField(doc, record, index, 'nbit2', 1),
      metaGroupSize: integerField(doc, record, index, 'gsize2', 1),
      fnorm,
      memoryMB,
      params,
      ...(kurtosis === undefined ? {} : { kurtosis }),
      ...(squaredError === undefined ? {} : { squaredError }),
    };
    rows.push(row);
  }
  if (rows.length === 0) throw new InvalidDataError(source, 'has a header but no rows');
  return { rows };
}

/** Writes an fnorm table; `kurtosis`, `sq_err` and `zero` columns appear when every row has them / any row needs it. */
export function formatFnormCsv(table: FnormTable): string {
  const withKurtosis = table.rows.length > 0 && table.rows.every((r) => r.kurtosis !== undefined);
  const withSquaredError = table.rows.length > 0 && table.rows.every((r) => r.squaredError !== undefined);
  const withZero = !allFractional(table.rows);
  const header: string[] = [...FNORM_COLUMNS];
  if (withKurtosis) header.push('kurtosis');
  if (withSquaredError) header.push('sq_err');
  if (withZero) header.push('zero');
  return formatCsv(
    header,
    table.rows.map((r) => {
      const row: (string | number)[] = [r.layer, r.module, r.bits, r.groupSize, r.metaBits, r.metaGroupSize, r.fnorm, r.memoryMB, r.params];
      if (withKurtosis) row.push(r.kurtosis!);
      if (withSquaredError) row.push(r.squaredError!);
      if (withZero) row.push(r.zero);
      return row;
    }),
  );
}

export function parseSensitivityCsv(text: string, source = 'sensitivity.csv'): SensitivityTable {
  const doc = readCsv(text, source);
  const index = columnIndex(doc, SENSITIVITY_COLUMNS);
  const rows: SensitivityRow[] = [];
  for (const record of doc.records) {
    const part = field(doc, record, index, 'part');
    if (!isSensitivityPart(part)) {
      throw new InvalidDataError(`${source}:${record.line}`, `part "${part}" is not one of ${SENSITIVITY_PARTS.join(', ')}`);
    }
    const sensitivity = numberField(doc, record, index, 'sensitivity');
    if (sensitivity < 0) throw new InvalidDataError(`${source}:${record.line}`, `sensitivity ${sensitivity} is negative (it is a mean squared error)`);
    rows.push({
      dataset: field(doc, record, index, 'dataset'),
      part,
      model: field(doc, record, index, 'model'),
      bits: integerField(doc, record, index, 'nbits', 1),
      groupSize: integerField(doc, record, index, 'group_size', 1),
      layer: integerField(doc, record, index, 'layer'),
      sensitivity,
    });
  }
  if (rows.length === 0) throw new InvalidDataError(source, 'has a header but no rows');
  return { rows };
}

export function formatSensitivityCsv(table: SensitivityTable): string {
  return formatCsv(
    SENSITIVITY_COLUMNS,
    table.rows.map((r) => [r.dataset, r.part, r.model, r.bits, r.groupSize, r.layer, r.sensitivity]),
  );
}

export function parseKurtosisCsv(text: string, source = 'kurtosis.csv'): KurtosisTable {
  const doc = readCsv(text, source);
  const index = columnIndex(doc, KURTOSIS_COLUMNS);
  const rows: KurtosisRow[] = [];
  const seen = new Map<string, number>();
  for (const record of doc.records) {
    const layer = integerField(doc, record, index, 'layer', NO_LAYER);
    const row = {
      module: moduleField(source, record.line, field(doc, record, index, 'module'), layer),
      layer,
      params: integerField(doc, record, index, 'param_count', 1),
      kurtosis: numberField(doc, record, index, 'kurtosis'),
    };
    // A second row for a matrix would silently win over the first (and change which layer is boosted).
    const key = matrixKey(row.layer, row.module);
    if (seen.has(key)) throw new InvalidDataError(`${source}:${record.line}`, `duplicate row for matrix ${key} (first at line ${seen.get(key)})`);
    seen.set(key, record.line);
    rows.push(row);
  }
  if (rows.length === 0) throw new InvalidDataError(source, 'has a header but no rows');
  return { rows };
}

export function formatKurtosisCsv(table: KurtosisTable): string {
  return formatCsv(KURTOSIS_COLUMNS, table.rows.map((r) => [r.module, r.layer, r.params, r.kurtosis]));
}

/** Sort rank of a unit: embed_tokens first, then the layers in module order, lm_head last. */
function unitRank(m: { readonly layer: number; readonly module: UnitModule }): number {
  if (m.module === 'embed_tokens') return -1;
  if (m.module === 'lm_head') return Number.MAX_SAFE_INTEGER;
  return m.layer * LINEAR_MODULES.length + LINEAR_MODULES.indexOf(m.module);
}

/** Units in model order: embed_tokens, layer 0's q, k, v, o, gate, up, down, ..., lm_head. */
export function sortUnits<T extends { readonly layer: number; readonly module: UnitModule }>(list: T[]): T[] {
  return list.sort((a, b) => unitRank(a) - unitRank(b));
}

/**
 * The rows of the first metric plug-in table (in name order) whose rows name units with their sizes (`layer`,
 * `module`, `params`): a plug-in's per-matrix table identifies the matrices as a built-in one does.
 */
function pluginUnitRows(stats: ModelStats): readonly { layer: number; module: UnitModule; params: number }[] | undefined {
  for (const name of Object.keys(stats).sort()) {
    if ((BUILTIN_TABLES as readonly string[]).includes(name) || RESERVED_TABLE_NAMES.includes(name)) continue;
    const rows = (stats[name] as { rows?: unknown } | undefined)?.rows;
    if (!Array.isArray(rows) || rows.length === 0) continue;
    const unitRows = rows.every((r) => r !== null && typeof r === 'object' && Number.isInteger((r as { layer?: unknown }).layer) && isUnitModule(String((r as { module?: unknown }).module)) && Number.isInteger((r as { params?: unknown }).params));
    if (unitRows) return rows as { layer: number; module: UnitModule; params: number }[];
  }
  return undefined;
}

/**
 * The units of the model in model order (sortUnits), from the fnorm table or else the measured, kld or kurtosis table
 * or the matrix list. Every linear module must cover the same layers 0..L-1; the embedding units are there when the
 * table measured them.
 */
export function matricesOf(stats: ModelStats): MatrixInfo[] {
  const source = stats.source ?? 'statistics';
  const byKey = new Map<string, MatrixInfo>();
  const rows: readonly { layer: number; module: UnitModule; params: number }[] | undefined =
    stats.fnorm?.rows ?? stats.measured?.rows ?? stats.kld?.rows ?? stats.kurtosis?.rows ?? stats.matrices ?? pluginUnitRows(stats);
  if (!rows) throw new InvalidDataError(source, 'no fnorm or kurtosis table: allocators need the list of matrices and their sizes (fnorm.csv)');
  for (const r of rows) {
    const key = matrixKey(r.layer, r.module);
    const known = byKey.get(key);
    if (known && known.params !== r.params) {
      throw new InvalidDataError(source, `matrix ${key} has params ${known.params} and ${r.params} in different rows`);
    }
    if (!known) byKey.set(key, Object.freeze({ key, layer: r.layer, module: r.module, params: r.params }));
  }
  const list = sortUnits([...byKey.values()]);
  const layers = new Set(list.filter((m) => isLinearModule(m.module)).map((m) => m.layer));
  const numLayers = Math.max(...layers) + 1;
  for (const module of new Set(list.map((m) => m.module).filter(isLinearModule))) {
    for (let layer = 0; layer < numLayers; layer++) {
      if (!byKey.has(matrixKey(layer, module))) {
        throw new InvalidDataError(source, `matrix ${matrixKey(layer, module)} is missing: every module needs layers 0..${numLayers - 1}`);
      }
    }
  }
  return list;
}

export interface SensitivitySelection {
  /** Quantization config of the measurement; the authors' SensiBoost uses nbits=4, group_size=64. */
  readonly bits?: number;
  readonly groupSize?: number;
  /** Calibration dataset, needed only when the table holds several. */
  readonly dataset?: string;
  /** Model name, needed only when the table holds several. */
  readonly model?: string;
}

function onlyValue(values: Set<string>, option: string, chosen: string | undefined, source: string): string | undefined {
  if (chosen !== undefined) {
    if (!values.has(chosen)) throw new InvalidOptionError(option, `"${chosen}" is not in ${source} (it has ${[...values].join(', ')})`);
    return chosen;
  }
  if (values.size > 1) throw new InvalidOptionError(option, `${source} holds several (${[...values].join(', ')}); choose one`);
  return undefined;
}

/**
 * Per-module series of activation sensitivity over layers 0..L-1, each matrix taking its block measurement
 * (see `sensitivityPartOf`). Where the table has no `attn_out` rows (the authors skip it for GQA models),
 * o_proj takes `attn_in`, as the authors do for Llama-3-8B.
 */
export function sensitivityByModule(
  table: SensitivityTable,
  numLayers: number,
  selection: SensitivitySelection = {},
  source = 'sensitivity.csv',
): Record<LinearModule, Float64Array> {
  const bits = selection.bits ?? 4;
  const groupSize = selection.groupSize ?? 64;
  const dataset = onlyValue(new Set(table.rows.map((r) => r.dataset)), 'dataset', selection.dataset, source);
  const model = onlyValue(new Set(table.rows.map((r) => r.model)), 'model', selection.model, source);
  const rows = table.rows.filter(
    (r) => r.bits === bits && r.groupSize === groupSize && (dataset === undefined || r.dataset === dataset) && (model === undefined || r.model === model),
  );
  if (rows.length === 0) {
    const configs = [...new Set(table.rows.map((r) => `nbits=${r.bits} group_size=${r.groupSize}`))];
    throw new InvalidOptionError('sensitivity config', `${source} has no rows for nbits=${bits} group_size=${groupSize}; it has ${configs.join(', ')}`);
  }
  const byPart = new Map<SensitivityPart, Float64Array>();
  for (const r of rows) {
    if (r.layer >= numLayers) throw new InvalidDataError(source, `layer ${r.layer} is beyond the model's ${numLayers} layers`);
    let series = byPart.get(r.part);
    if (!series) {
      series = new Float64Array(numLayers).fill(Number.NaN);
      byPart.set(r.part, series);
    }
    if (!Number.isNaN(series[r.layer]!)) throw new InvalidDataError(source, `duplicate ${r.part} row for layer ${r.layer} (nbits=${bits} group_size=${groupSize})`);
    series[r.layer] = r.sensitivity;
  }
  const result = {} as Record<LinearModule, Float64Array>;
  for (const module of LINEAR_MODULES) {
    let part = sensitivityPartOf(module);
    if (part === 'attn_out' && !byPart.has('attn_out')) part = 'attn_in';
    const series = byPart.get(part);
    if (!series) throw new InvalidDataError(source, `no "${part}" rows for nbits=${bits} group_size=${groupSize}`);
    const missing = series.findIndex((v) => Number.isNaN(v));
    if (missing >= 0) throw new InvalidDataError(source, `no "${part}" row for layer ${missing} (nbits=${bits} group_size=${groupSize})`);
    result[module] = series;
  }
  return result;
}

/**
 * Per-module series of weight kurtosis over layers 0..L-1: from the kurtosis table if there is one, else
 * from the fnorm table's `kurtosis` column (the authors read it from the b4g64 rows; it is per matrix).
 */
export function kurtosisByModule(stats: ModelStats, numLayers: number): Record<LinearModule, Float64Array> {
  const source = stats.source ?? 'statistics';
  const rows: { layer: number; module: LinearModule; kurtosis: number }[] = [];
  // The embedding units belong to no layer: the per-layer series (outlier detection) leave them out.
  const linear = <T extends { readonly module: UnitModule }>(r: T): r is T & { readonly module: LinearModule } => isLinearModule(r.module);
  if (stats.kurtosis) rows.push(...stats.kurtosis.rows.filter(linear));
  else if (stats.fnorm) {
    for (const r of stats.fnorm.rows.filter(linear)) {
      if (r.kurtosis !== undefined && r.bits === 4 && r.groupSize === 64 && r.zero === 'fractional') rows.push({ layer: r.layer, module: r.module, kurtosis: r.kurtosis });
    }
    if (rows.length === 0) {
      const seen = new Set<string>();
      for (const r of stats.fnorm.rows.filter(linear)) {
        const key = matrixKey(r.layer, r.module);
        if (r.kurtosis !== undefined && !seen.has(key)) {
          seen.add(key);
          rows.push({ layer: r.layer, module: r.module, kurtosis: r.kurtosis });
        }
      }
    }
  }
  if (rows.length === 0) {
    throw new InvalidDataError(source, 'no kurtosis: add kurtosis.csv (module,layer,param_count,kurtosis) or a kurtosis column to fnorm.csv');
  }
  const result = {} as Record<LinearModule, Float64Array>;
  for (const module of LINEAR_MODULES) result[module] = new Float64Array(numLayers).fill(Number.NaN);
  for (const r of rows) {
    if (r.layer >= numLayers) throw new InvalidDataError(source, `kurtosis of layer ${r.layer} is beyond the model's ${numLayers} layers`);
    result[r.module][r.layer] = r.kurtosis;
  }
  for (const module of LINEAR_MODULES) {
    const missing = result[module].findIndex((v) => Number.isNaN(v));
    if (missing >= 0) throw new InvalidDataError(source, `no kurtosis for matrix ${matrixKey(missing, module)}`);
  }
  return result;
}

/**
 * One (matrix, config) row of the measured block-output error (layerquant's `measured` statistic):
 * `layer,module,nbit1,gsize1,nbit2,gsize2,error,memmb,params,blocks`. `error` is the mean squared error of the
 * matrix's block output (attention block for q,k,v,o; MLP block for gate,up,down) when that matrix alone is
 * quantized with the config, the rest of the model float, over the calibration blocks, divided by the mean square
 * of the residual stream that block output is added to.
 */
export interface MeasuredRow {
  readonly layer: number;
  readonly module: UnitModule;
  readonly bits: number;
  readonly groupSize: number;
  readonly zero: ZeroKind;
  readonly metaBits: number;
  readonly metaGroupSize: number;
  readonly error: number;
  readonly memoryMB: number;
  readonly params: number;
  /** Calibration blocks the error was measured on. */
  readonly blocks: number;
}

export interface MeasuredTable {
  readonly rows: readonly MeasuredRow[];
}

export const MEASURED_COLUMNS = Object.freeze(['layer', 'module', 'nbit1', 'gsize1', 'nbit2', 'gsize2', 'error', 'memmb', 'params', 'blocks'] as const);

/**
 * The columns every measured per-(unit, config) table shares (measured.csv, kld.csv): the unit and config, the meta
 * settings, memmb (positive), params and calibration blocks.
 */
function measuredRowFields(doc: CsvDocument, record: CsvRecord, index: Record<string, number>, source: string, seen: Set<string>) {
  const fields = matrixConfigFields(doc, record, index, source, seen);
  const memoryMB = numberField(doc, record, index, 'memmb');
  if (memoryMB <= 0) throw new InvalidDataError(`${source}:${record.line}`, `memmb ${memoryMB} must be positive`);
  return {
    ...fields,
    metaBits: integerField(doc, record, index, 'nbit2', 1),
    metaGroupSize: integerField(doc, record, index, 'gsize2', 1),
    memoryMB,
    params: integerField(doc, record, index, 'params', 1),
    blocks: integerField(doc, record, index, 'blocks', 1),
  };
}

/** A measured per-(unit, config) table: the shared columns of every row, then `value` reads the table's own. */
function parseMeasuredTable<Row>(
  text: string,
  source: string,
  columns: readonly string[],
  value: (doc: CsvDocument, record: CsvRecord, index: Record<string, number>, common: ReturnType<typeof measuredRowFields>) => Row,
): { rows: Row[] } {
  const doc = readCsv(text, source);
  const index = columnIndex(doc, columns, ['zero']);
  const rows: Row[] = [];
  const seen = new Set<string>();
  for (const record of doc.records) rows.push(value(doc, record, index, measuredRowFields(doc, record, index, source, seen)));
  if (rows.length === 0) throw new InvalidDataError(source, 'has a header but no rows');
  return { rows };
}

export function parseMeasuredCsv(text: string, source = 'measured.csv'): MeasuredTable {
  return parseMeasuredTable(text, source, MEASURED_COLUMNS, (doc, record, index, common): MeasuredRow => {
    const error = numberField(doc, record, index, 'error');
    if (error < 0) throw new InvalidDataError(`${source}:${record.line}`, `error ${error} is negative (it is a mean squared error)`);
    return { ...common, error };
  });
}

export function formatMeasuredCsv(table: MeasuredTable): string {
  const withZero = !allFractional(table.rows);
  return formatCsv(
    withZero ? [...MEASURED_COLUMNS, 'zero'] : MEASURED_COLUMNS,
    table.rows.map((r) => [r.layer, r.module, r.bits, r.groupSize, r.metaBits, r.metaGroupSize, r.error, r.memoryMB, r.params, r.blocks, ...(withZero ? [r.zero] : [])]),
  );
}

/**
 * One (unit, config) row of the end-to-end ΔKLD table (`kld.csv`, the `kld` allocator's statistic):
 * `layer,module,nbit1,gsize1,nbit2,gsize2,delta_kld,memmb,params,blocks,seqlen[,zero]`. `delta_kld` is the mean KL
 * divergence (nats per token) of the model's next-token distribution from the float model's, at the final logits,
 * over the calibration's scored positions, with that unit alone quantized at the config and every other weight float.
 * Embedding units (embed_tokens, lm_head) have layer -1.
 */
export interface KldRow extends Omit<MeasuredRow, 'error'> {
  readonly deltaKld: number;
  /** Tokens per calibration block (scored positions: blocks x (seqlen - 1)). */
  readonly seqlen: number;
}

export interface KldTable {
  readonly rows: readonly KldRow[];
}

export const KLD_COLUMNS = Object.freeze(['layer', 'module', 'nbit1', 'gsize1', 'nbit2', 'gsize2', 'delta_kld', 'memmb', 'params', 'blocks', 'seqlen'] as const);

export function parseKldCsv(text: string, source = 'kld.csv'): KldTable {
  return parseMeasuredTable(text, source, KLD_COLUMNS, (doc, record, index, common): KldRow => {
    // A KL divergence is >= 0; a float64 sum of a near-zero one may land a rounding error below it.
    const deltaKld = numberField(doc, record, index, 'delta_kld');
    if (deltaKld < -1e-9) throw new InvalidDataError(`${source}:${record.line}`, `delta_kld ${deltaKld} is negative (it is a KL divergence from the float model)`);
    return { ...common, deltaKld, seqlen: integerField(doc, record, index, 'seqlen', 2) };
  });
}

export function formatKldCsv(table: KldTable): string {
  const withZero = !allFractional(table.rows);
  return formatCsv(
    withZero ? [...KLD_COLUMNS, 'zero'] : KLD_COLUMNS,
    table.rows.map((r) => [r.layer, r.module, r.bits, r.groupSize, r.metaBits, r.metaGroupSize, r.deltaKld, r.memoryMB, r.params, r.blocks, r.seqlen, ...(withZero ? [r.zero] : [])]),
  );
}
