import { configName, type QuantConfig, type ZeroKind } from './config.js';
import type { LinearModule } from './model.js';
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
