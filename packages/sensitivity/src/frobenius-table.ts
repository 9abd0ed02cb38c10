import {
  InvalidDataError,
  InvalidOptionError,
  LINEAR_MODULES,
  META_BITS,
  META_GROUP,
  PAPER_CONFIGS,
  EMBEDDING_UNITS,
  NO_LAYER,
  matrixKey,
  type EmbeddingUnit,
  type UnitModule,
  bitsPerWeight,
  isLinearModule,
  zeroKind,
  matrixOfTensorName,
  matrixTensorName,
  memoryMB,
  type LinearModule,
  type QuantConfig,
  type QuantizeContext,
  type Quantizer,
  type WeightTensor, moduleLadder, type ModuleLadders } from '@layerquant/core';
import type { FnormRow, FnormTable, KurtosisRow, KurtosisTable } from '@layerquant/stats';
import { hqqQuantizer, squaredError as squaredFrobeniusError, type KernelPool, type MatrixCalibration } from '@layerquant/quantizers';
import { pearsonKurtosis } from './kurtosis.js';
import { dequantizedWith, type QuantizationErrors } from './pooled-quantize.js';

/** Where matrices come from: a tensor-io checkpoint, a runtime TensorSource, a map in memory. */
export interface MatrixSource {
  has(name: string): boolean;
  read(name: string): Promise<WeightTensor>;
  /** The checkpoint's tensor list, when known (else layers are found by probing names). */
  readonly tensors?: readonly { readonly name: string }[];
  readonly dir?: string;
}

export interface MatrixRef {
  readonly layer: number;
  readonly module: UnitModule;
  readonly name: string;
}

/** The quantizable linear matrices of a source, layer ascending then in LINEAR_MODULES order. */
export function listMatrices(source: MatrixSource): (MatrixRef & { readonly module: LinearModule })[] {
  const found: (MatrixRef & { readonly module: LinearModule })[] = [];
  if (source.tensors) {
    for (const t of source.tensors) {
      const m = matrixOfTensorName(t.name);
      if (m) found.push({ ...m, name: t.name });
    }
  } else {
    for (let layer = 0; source.has(matrixTensorName(layer, LINEAR_MODULES[0])); layer++) {
      for (const module of LINEAR_MODULES) {
        const name = matrixTensorName(layer, module);
        if (source.has(name)) found.push({ layer, module, name });
      }
    }
  }
  if (found.length === 0) {
    throw new InvalidDataError(source.dir ?? 'model', 'has no linear matrices named model.layers.<i>.(self_attn|mlp).<module>.weight (Llama layout)');
  }
  return found.sort((a, b) => a.layer - b.layer || LINEAR_MODULES.indexOf(a.module) - LINEAR_MODULES.indexOf(b.module));
}

export interface FrobeniusTableOptions {
  /** The quantizer (default: HQQ with upstream settings, as the authors' table). */
  readonly quantizer?: Quantizer;
  /**
   * Worker threads running the quantizer's WebAssembly kernel (`createKernelPool` of @layerquant/quantizers/node):
   * the configs of a matrix are quantized in parallel, with results bit-identical to the calling thread's.
   */
  readonly pool?: KernelPool;
  /** Errors already measured in the same run (activation sensitivity's, measured's): those configs are not quantized again. */
  readonly errors?: QuantizationErrors;
  /** Called after each matrix with its key (`3.mlp.up_proj`). */
  readonly onMatrix?: (done: number, total: number, key: string) => void;
  /** The embedding units to tabulate too, each at its own ladder (rows with layer NO_LAYER); absent: linear matrices only. */
  readonly embeddingConfigs?: Partial<Readonly<Record<EmbeddingUnit, readonly QuantConfig[]>>>;
  /** Linear modules whose matrices take fewer configs than the ladder (a format's: core's moduleLadder). */
  readonly moduleConfigs?: ModuleLadders;
  /**
   * The statistics of a calibrated quantizer (GPTQ: each matrix's input Hessian), served in layer order; every matrix
   * is reported back as float (`done(matrix, null)`), so a layer pass serves the Hessians of float inputs.
   */
  readonly calibration?: MatrixCalibration;
}

/** One matrix's rows: fnorm, sq_err, memory and kurtosis under each config. */
export async function frobeniusRows(
  matrix: MatrixRef,
  weight: WeightTensor,
  configs: readonly QuantConfig[],
  quantizer: Quantizer,
  pool?: KernelPool,
  errors?: QuantizationErrors,
  context?: QuantizeContext,
): Promise<FnormRow[]> {
  const params = weight.data.length;
  const kurtosis = pearsonKurtosis(weight.data, `tensor "${matrix.name}"`);
  const squaredErrors = await Promise.all(
    configs.map(async (config) => errors?.get(quantizer, matrix.name, config) ?? squaredFrobeniusError(weight.data, await dequantizedWith(quantizer, weight, config, pool, context))),
  );
  return configs.map((config, c) => {
    const squaredError = squaredErrors[c]!;
    return Object.freeze({
      layer: matrix.layer,
      module: matrix.module,
      bits: config.bits,
      groupSize: config.groupSize,
      zero: zeroKind(config),
      metaBits: META_BITS,
      metaGroupSize: META_GROUP,
      fnorm: Math.sqrt(squaredError),
      memoryMB: memoryMB(bitsPerWeight(config), params),
      params,
      kurtosis,
      squaredError,
    });
  });
}

/**
 * The Frobenius-error table MXQ reads (the authors' `fnorm.csv`): for every linear matrix and each config,
 * ‖W - dequant(HQQ(W))‖_F with the paper's memory (`memmb`), the parameter count, the matrix's kurtosis and
 * the squared error. Streams matrix by matrix: one matrix in memory at a time.
 */
export async function frobeniusTable(
  source: MatrixSource,
  configs: readonly QuantConfig[] = PAPER_CONFIGS,
  options: FrobeniusTableOptions = {},
): Promise<FnormTable> {
  const quantizer = options.quantizer ?? hqqQuantizer;
  const units: { matrix: MatrixRef; configs: readonly QuantConfig[] }[] = listMatrices(source).map((matrix) => ({ matrix, configs: moduleLadder(configs, matrix.module, options.moduleConfigs) }));
  for (const unit of EMBEDDING_UNITS) {
    const ladder = options.embeddingConfigs?.[unit];
    if (!ladder || ladder.length === 0) continue;
    const name = matrixTensorName(NO_LAYER, unit);
    if (!source.has(name)) throw new InvalidOptionError('embeddingConfigs', `the model has no "${name}"${unit === 'lm_head' ? ' (its lm_head is tied to embed_tokens: tabulate embed_tokens, which serves both)' : ''}`);
    units.push({ matrix: { layer: NO_LAYER, module: unit, name }, configs: ladder });
  }
  const rows: FnormRow[] = [];
  if (quantizer.calibration && !options.calibration) {
    throw new InvalidOptionError('calibration', `quantizer "${quantizer.id}" is calibrated: its fnorm table needs each matrix's input statistics (a layer pass over calibration text)`);
  }
  for (const [i, { matrix, configs: ladder }] of units.entries()) {
    const weight = await source.read(matrix.name);
    const key = matrixKey(matrix.layer, matrix.module);
    const unit = { key, name: matrix.name, layer: matrix.layer, module: matrix.module, shape: [weight.shape[0]!, weight.shape[1]!] as const };
    const context = options.calibration ? await options.calibration.context(unit) : undefined;
    rows.push(...(await frobeniusRows(matrix, weight, ladder, quantizer, options.pool, options.errors, context)));
    options.calibration?.done(unit, null);
    options.onMatrix?.(i + 1, units.length, key);
  }
  return Object.freeze({ rows: Object.freeze(rows) });
}

/** Kurtosis of every linear matrix (the authors' `kurtosis-<model>.csv`: module-major, then layer). */
export async function kurtosisTable(source: MatrixSource): Promise<KurtosisTable> {
  const rows: KurtosisRow[] = [];
  for (const matrix of listMatrices(source)) {
    const weight = await source.read(matrix.name);
    rows.push(Object.freeze({ module: matrix.module, layer: matrix.layer, params: weight.data.length, kurtosis: pearsonKurtosis(weight.data, `tensor "${matrix.name}"`) }));
  }
  return Object.freeze({ rows: Object.freeze(sortKurtosisRows(rows)) });
}

/** The kurtosis table carried by an fnorm table's `kurtosis` column (no second read of the weights). */
export function kurtosisTableFromFnorm(table: FnormTable): KurtosisTable {
  const byKey = new Map<string, KurtosisRow>();
  for (const r of table.rows) {
    if (r.kurtosis === undefined) throw new InvalidDataError('fnorm table', `row of matrix ${r.layer}.${r.module} has no kurtosis`);
    const key = `${r.layer}.${r.module}`;
    if (!byKey.has(key)) byKey.set(key, Object.freeze({ module: r.module, layer: r.layer, params: r.params, kurtosis: r.kurtosis }));
  }
  return Object.freeze({ rows: Object.freeze(sortKurtosisRows([...byKey.values()])) });
}

/** The authors' order: by module, then layer; the embedding units (no layer) after the linear modules. */
export function sortKurtosisRows(rows: KurtosisRow[]): KurtosisRow[] {
  const rank = (m: KurtosisRow['module']) => (isLinearModule(m) ? LINEAR_MODULES.indexOf(m) : LINEAR_MODULES.length + EMBEDDING_UNITS.indexOf(m));
  return rows.sort((a, b) => rank(a.module) - rank(b.module) || a.layer - b.layer);
}
