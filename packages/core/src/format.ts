import { configName, type QuantConfig, type ZeroKind } from './config.js';
import { expectedShapes, type DecoderLayout } from './decoder-layout.js';
import { matrixKey, unitOfTensorName, type DecoderConfig, type LinearModule } from './model.js';
import type { MatrixInfo } from './plugins.js';

/**
 * Per linear module, the configs of the ladder its matrices take where that is fewer than the whole ladder: a format
 * stores some configs only in rows of some lengths (GGUF's k-quants in whole super-blocks of 256), so down_proj's
 * ladder can be shorter than q_proj's. Absent module: the whole ladder.
 */
export type ModuleLadders = Partial<Readonly<Record<LinearModule, readonly QuantConfig[]>>>;

/** The configs of `ladder` a linear module's matrices are measured and allocated at (its own ladder's, in `ladder`'s order). */
export function moduleLadder(ladder: readonly QuantConfig[], module: LinearModule, modules: ModuleLadders | undefined): readonly QuantConfig[] {
  const own = modules?.[module];
  if (!own) return ladder;
  const names = new Set(own.map(configName));
  return ladder.filter((c) => names.has(configName(c)));
}

/** A unit of a model as a format stores it: a linear matrix or an embedding unit, with its tensor name and shape. */
export interface FormatUnit extends MatrixInfo {
  /** Checkpoint tensor name (`model.layers.3.self_attn.q_proj.weight`, `model.embed_tokens.weight`, `lm_head.weight`). */
  readonly name: string;
  /** [rows (out features; vocabulary for the embeddings), columns (in features; hidden size)]. */
  readonly shape: readonly [number, number];
}

/**
 * An output format's exact byte accounting for one model (ONNX MatMulNBits, GGUF, ...), made from the model's config
 * and the export options: what each unit adds to the shipped file at each config, and the whole file. The allocators
 * spend these bytes (allocators' formatSizeBudget); reports name them as `label`.
 */
export interface FormatCostModel {
  /** The format's id (`onnx`, `gguf`). */
  readonly format: string;
  /** What the bytes are, for reports: `the shipped ONNX file (onnx/model_q4.onnx)`. */
  readonly label: string;
  /** Every unit an allocation may give a config: the linear matrices, embed_tokens, and lm_head where it is not tied. */
  readonly units: readonly FormatUnit[];
  /** The configs the format stores natively for a unit, given the zero kinds the quantizer can make: the default ladder. */
  nativeLadder(unit: MatrixInfo, zeroKinds?: readonly ZeroKind[]): readonly QuantConfig[];
  /** Why the format cannot store a unit at a config (a sentence), or undefined when it can. */
  unsupported(unit: MatrixInfo, config: QuantConfig): string | undefined;
  /** Bytes the unit adds to the file at a config; null: kept in float (the export's float type for it). */
  unitBytes(unit: MatrixInfo, config: QuantConfig | null): number;
  /** Bytes of the whole file with every unit at `configOf(unit)` (null: float): exact, not a sum of estimates. */
  fileBytes(configOf: (unit: MatrixInfo) => QuantConfig | null): number;
}

/**
 * The units a format stores of a model (its linear matrices, embed_tokens, lm_head where untied), in tensor order,
 * and a lookup of a unit by key that refuses a key of another model: what every cost model starts from.
 */
export function formatUnits(config: DecoderConfig, layout: DecoderLayout): { readonly units: readonly FormatUnit[]; readonly unitOf: (unit: MatrixInfo) => FormatUnit } {
  const units: FormatUnit[] = [];
  for (const [name, shape] of expectedShapes(config, layout)) {
    const unit = unitOfTensorName(name);
    if (!unit) continue;
    units.push(Object.freeze({ key: matrixKey(unit.layer, unit.module), layer: unit.layer, module: unit.module, params: shape[0]! * shape[1]!, name, shape: [shape[0]!, shape[1]!] as const }));
  }
  const byKey = new Map(units.map((u) => [u.key, u]));
  const unitOf = (unit: MatrixInfo): FormatUnit => {
    const found = byKey.get(unit.key);
    if (!found) throw new RangeError(`${unit.key} is not a unit of this model (${units.length} units)`);
    return found;
  };
  return { units: Object.freeze(units), unitOf };
}
