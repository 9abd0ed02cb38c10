import { InvalidDataError, LINEAR_MODULES, configName, isLinearModule, matrixKey, type MatrixKey, type ZeroKind } from '@layerquant/core';
import { SENSITIVITY_PARTS, rowConfig, type ModelStats } from './stats.js';

/** The matrices a model has (from its config: core's modelMatrixParams), to check statistics tables against. */
export interface ModelMatrixList {
  /** Matrix key -> parameter count, every linear matrix of the model. */
  readonly matrices: ReadonlyMap<MatrixKey, number>;
  /** The model, for messages (a directory). */
  readonly name: string;
}

/**
 * The size a row of fnorm.csv / measured.csv must state (`memmb`): what its config and params give in the paper's
 * accounting (b1 + 2*b2/g1 + 32/(g1*g2) bits per weight; MiB = 2^20 bytes). Allocators spend sizes, and a table that
 * lies about them buys an allocation far over the budget; Python's float printing leaves at most a few ulps.
 */
function checkRowSize(table: string, key: MatrixKey, row: { bits: number; groupSize: number; zero: ZeroKind; metaBits: number; metaGroupSize: number; params: number; memoryMB: number }, fix: string): void {
  // A symmetric config stores one meta value per group (core's bitsPerWeight), the others a scale and a zero.
  const values = row.zero === 'none' ? 1 : 2;
  const bpp = row.bits + (values * row.metaBits) / row.groupSize + (16 * values) / (row.groupSize * row.metaGroupSize);
  const expected = (bpp * row.params) / 8 / 2 ** 20;
  if (!(Math.abs(row.memoryMB - expected) <= 1e-9 * expected)) {
    throw new InvalidDataError(
      table,
      `matrix ${key} b${row.bits}g${row.groupSize} has memmb ${row.memoryMB}, but ${row.params} weights at that config take ${expected} MiB in the paper's accounting (meta ${row.metaBits} bits per ${row.metaGroupSize}); the table's sizes are wrong, ${fix}`,
    );
  }
}

/**
 * Rejects statistics tables that do not cover a model whole: a layer, matrix or config missing from fnorm.csv
 * (a table cut at a layer boundary would otherwise allocate only the matrices it lists), a kurtosis.csv or a
 * sensitivity.csv (per dataset, model and config) missing layers, rows beyond the model's layers, or sizes that
 * are not the model's, or sizes (`memmb`) that are not what each row's params and config give. Without `model` the
 * tables are checked against each other (same layers in every table).
 * Throws InvalidDataError naming the table, the matrix or layer and the config.
 */
export function validateStats(stats: ModelStats, model?: ModelMatrixList): void {
  const source = stats.source ?? 'statistics';
  const layerCounts: Array<[string, number]> = [];
  const expectedLayers = model ? Math.max(0, ...[...model.matrices.keys()].map((k) => Number(k.slice(0, k.indexOf('.'))) + 1)) : undefined;
  const where = model ? `the model ${model.name}` : 'the other tables';
  const fix = model ? `they were made for another model or are incomplete; compute them again with \`layerquant sensitivity ${model.name}\`` : 'the tables are incomplete; compute them again with `layerquant sensitivity`';

  if (stats.fnorm) {
    const table = `${source}/fnorm.csv`;
    const configs = new Map<MatrixKey, Set<string>>();
    const params = new Map<MatrixKey, number>();
    // The embedding units of a format's table have their own ladder (integer or no zeros for the lookup): checked
    // for duplicates and sizes, not against the linear matrices' configs.
    for (const r of stats.fnorm.rows) {
      const key = matrixKey(r.layer, r.module);
      const config = configName(rowConfig(r));
      const set = configs.get(key) ?? new Set<string>();
      if (set.has(config)) throw new InvalidDataError(table, `matrix ${key} has two rows for ${config}; ${fix}`);
      set.add(config);
      configs.set(key, set);
      if (params.has(key) && params.get(key) !== r.params) throw new InvalidDataError(table, `matrix ${key} has params ${params.get(key)} and ${r.params} in different rows; ${fix}`);
      params.set(key, r.params);
    }
    const linearKeys = [...configs.keys()].filter((key) => isLinearModule(key.slice(key.indexOf('.') + 1)));
    // Every matrix of a module has the configs the module's other matrices have (a format may store some configs
    // only in some row lengths, so modules of other shapes can have shorter ladders: GGUF's k-quants).
    const moduleOf = (key: string) => key.slice(key.indexOf('.') + 1);
    const all = new Map<string, Set<string>>();
    for (const key of linearKeys) {
      const set = all.get(moduleOf(key)) ?? new Set<string>();
      for (const config of configs.get(key)!) set.add(config);
      all.set(moduleOf(key), set);
    }
    const keys = model ? [...model.matrices.keys()] : linearKeys;
    for (const key of keys) {
      const have = configs.get(key);
      if (!have) throw new InvalidDataError(table, `has no row for matrix ${key} of ${where}; ${fix}`);
      for (const config of all.get(moduleOf(key)) ?? []) if (!have.has(config)) throw new InvalidDataError(table, `has no ${config} row for matrix ${key} (other ${moduleOf(key)} matrices have one); ${fix}`);
      const size = model?.matrices.get(key);
      if (size !== undefined && params.get(key) !== size) {
        throw new InvalidDataError(table, `matrix ${key} has params ${params.get(key)} but ${size} in ${model!.name}; ${fix}`);
      }
    }
    if (model) for (const key of linearKeys) if (!model.matrices.has(key)) throw new InvalidDataError(table, `has rows for matrix ${key}, which ${model.name} does not have; ${fix}`);
    // Sizes last: a row of another model's params is named as that first.
    for (const r of stats.fnorm.rows) checkRowSize(table, matrixKey(r.layer, r.module), r, fix);
    layerCounts.push([table, Math.max(0, ...stats.fnorm.rows.map((r) => r.layer + 1))]);
  }

  if (stats.measured) {
    const table = `${source}/measured.csv`;
    for (const r of stats.measured.rows) {
      const key = matrixKey(r.layer, r.module);
      const size = model?.matrices.get(key);
      if (model && size === undefined && isLinearModule(r.module)) throw new InvalidDataError(table, `has rows for matrix ${key}, which ${model.name} does not have; ${fix}`);
      if (size !== undefined && r.params !== size) throw new InvalidDataError(table, `matrix ${key} has params ${r.params} but ${size} in ${model!.name}; ${fix}`);
      checkRowSize(table, key, r, fix);
    }
  }

  if (stats.kurtosis) {
    const table = `${source}/kurtosis.csv`;
    const have = new Set(stats.kurtosis.rows.filter((r) => isLinearModule(r.module)).map((r) => matrixKey(r.layer, r.module)));
    const keys = model ? [...model.matrices.keys()] : [...have];
    for (const key of keys) if (!have.has(key)) throw new InvalidDataError(table, `has no row for matrix ${key} of ${where}; ${fix}`);
    if (model) for (const key of have) if (!model.matrices.has(key)) throw new InvalidDataError(table, `has a row for matrix ${key}, which ${model.name} does not have; ${fix}`);
    const layers = Math.max(0, ...stats.kurtosis.rows.map((r) => r.layer + 1));
    if (!model) {
      for (let layer = 0; layer < layers; layer++) {
        for (const module of LINEAR_MODULES) if (!have.has(matrixKey(layer, module))) throw new InvalidDataError(table, `has no row for matrix ${matrixKey(layer, module)}; ${fix}`);
      }
    }
    layerCounts.push([table, layers]);
  }

  if (stats.sensitivity) {
    const table = `${source}/sensitivity.csv`;
    const groups = new Map<string, Map<string, Set<number>>>();
    for (const r of stats.sensitivity.rows) {
      const group = `${r.dataset}/${r.model}/${`b${r.bits}g${r.groupSize}`}`;
      const parts = groups.get(group) ?? new Map<string, Set<number>>();
      groups.set(group, parts);
      const layers = parts.get(r.part) ?? new Set<number>();
      parts.set(r.part, layers);
      if (layers.has(r.layer)) throw new InvalidDataError(table, `has two ${r.part} rows for layer ${r.layer} (${group}); ${fix}`);
      layers.add(r.layer);
    }
    let layersSeen = 0;
    for (const [group, parts] of groups) {
      const count = expectedLayers ?? Math.max(0, ...[...parts.values()].flatMap((s) => [...s].map((l) => l + 1)));
      layersSeen = Math.max(layersSeen, ...[...parts.values()].flatMap((s) => [...s].map((l) => l + 1)));
      // attn_out may be absent as a whole (the authors skip it for GQA models); the other three are needed.
      for (const part of SENSITIVITY_PARTS) {
        const layers = parts.get(part);
        if (!layers) {
          if (part === 'attn_out') continue;
          throw new InvalidDataError(table, `has no ${part} rows for ${group}; ${fix}`);
        }
        for (let layer = 0; layer < count; layer++) if (!layers.has(layer)) throw new InvalidDataError(table, `has no ${part} row for layer ${layer} (${group}) of ${where}; ${fix}`);
        for (const layer of layers) if (layer >= count) throw new InvalidDataError(table, `has a ${part} row for layer ${layer} (${group}) but ${where} has ${count} layers; ${fix}`);
      }
    }
    layerCounts.push([table, layersSeen]);
  }

  const reference = expectedLayers ?? layerCounts[0]?.[1];
  for (const [table, layers] of layerCounts) {
    if (layers !== reference) {
      throw new InvalidDataError(table, `covers ${layers} layers but ${model ? `${model.name} has` : `${layerCounts[0]![0]} covers`} ${reference}; ${fix}`);
    }
  }
}
