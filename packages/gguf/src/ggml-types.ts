import { InvalidOptionError, ShapeMismatchError } from '@layerquant/core';

// ggml's tensor types as GGUF files store them: the id in the tensor table, the elements per block and the bytes per
// block (ggml.c's type_traits; block layouts in ggml-common.h). Sizes are facts of the file format, so the reader
// knows every type llama.cpp writes; the codecs (codecs.ts) cover the types layerquant encodes and decodes.

/** The types layerquant encodes and decodes. */
export const GGML_CODEC_TYPES = Object.freeze(['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const);
export type GgmlTypeName = (typeof GGML_CODEC_TYPES)[number];

export interface GgmlTypeInfo {
  /** The id in a GGUF tensor table (ggml's enum ggml_type). */
  readonly id: number;
  /** ggml's name, upper case (`Q4_K`). */
  readonly name: string;
  /** Elements per block (1 for plain floats and ints). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly blockBytes: number;
}

const info = (id: number, name: string, blockSize: number, blockBytes: number): GgmlTypeInfo => Object.freeze({ id, name, blockSize, blockBytes });

/** Every type llama.cpp can store in a GGUF file (removed ids 4, 5, 31-33, 36-38 are not listed: a file with one is corrupt). */
export const GGML_TYPES: readonly GgmlTypeInfo[] = Object.freeze([
  info(0, 'F32', 1, 4),
  info(1, 'F16', 1, 2),
  info(2, 'Q4_0', 32, 18),
  info(3, 'Q4_1', 32, 20),
  info(6, 'Q5_0', 32, 22),
  info(7, 'Q5_1', 32, 24),
  info(8, 'Q8_0', 32, 34),
  info(9, 'Q8_1', 32, 36),
  info(10, 'Q2_K', 256, 84),
  info(11, 'Q3_K', 256, 110),
  info(12, 'Q4_K', 256, 144),
  info(13, 'Q5_K', 256, 176),
  info(14, 'Q6_K', 256, 210),
  info(15, 'Q8_K', 256, 292),
  info(16, 'IQ2_XXS', 256, 66),
  info(17, 'IQ2_XS', 256, 74),
  info(18, 'IQ3_XXS', 256, 98),
  info(19, 'IQ1_S', 256, 50),
  info(20, 'IQ4_NL', 32, 18),
  info(21, 'IQ3_S', 256, 110),
  info(22, 'IQ2_S', 256, 82),
  info(23, 'IQ4_XS', 256, 136),
  info(24, 'I8', 1, 1),
  info(25, 'I16', 1, 2),
  info(26, 'I32', 1, 4),
  info(27, 'I64', 1, 8),
  info(28, 'F64', 1, 8),
  info(29, 'IQ1_M', 256, 56),
  info(30, 'BF16', 1, 2),
  info(34, 'TQ1_0', 256, 54),
  info(35, 'TQ2_0', 256, 66),
  info(39, 'MXFP4', 32, 17),
  info(40, 'NVFP4', 64, 36),
  info(41, 'Q1_0', 128, 18),
  info(42, 'Q2_0', 64, 18),
]);

const BY_ID = new Map(GGML_TYPES.map((t) => [t.id, t]));
const BY_NAME = new Map(GGML_TYPES.map((t) => [t.name, t]));

/** The type with this id, or undefined for an id llama.cpp does not define. */
export function ggmlTypeById(id: number): GgmlTypeInfo | undefined {
  return BY_ID.get(id);
}

/** Whether `name` is one of the types layerquant encodes (`Q4_K`, case-sensitive). */
export function isGgmlCodecType(name: string): name is GgmlTypeName {
  return (GGML_CODEC_TYPES as readonly string[]).includes(name);
}

/** A type layerquant encodes, by name (case-insensitive: `q4_k` is Q4_K); `option` names the flag in the error. */
export function ggmlType(name: string, option = 'type'): GgmlTypeInfo & { readonly name: GgmlTypeName } {
  const upper = name.trim().toUpperCase();
  if (!isGgmlCodecType(upper)) {
    throw new InvalidOptionError(option, `"${name}" is not a GGUF type layerquant writes; use one of ${GGML_CODEC_TYPES.join(', ')}`);
  }
  return BY_NAME.get(upper)! as GgmlTypeInfo & { readonly name: GgmlTypeName };
}

/**
 * Exact bytes of a tensor of `type` and `shape` in a GGUF file, without the alignment padding after it. `shape` is in
 * Hugging Face order ([rows, columns] for a matrix): blocks run along the last dimension, which must be a multiple of
 * the type's block size (a ShapeMismatchError naming `tensor` otherwise).
 */
export function ggufTensorBytes(type: GgmlTypeName | GgmlTypeInfo, shape: readonly number[], tensor = 'tensor'): number {
  const t = typeof type === 'string' ? ggmlType(type) : type;
  const row = shape.length === 0 ? 1 : shape[shape.length - 1]!;
  if (row % t.blockSize !== 0) {
    throw new ShapeMismatchError(tensor, `rows of ${row} values cannot be stored as ${t.name}, whose blocks hold ${t.blockSize}; choose a type whose block size divides ${row} (${compatibleTypes(row).join(', ')})`);
  }
  let elements = 1;
  for (const d of shape) elements *= d;
  return (elements / t.blockSize) * t.blockBytes;
}

/** The codec types that can store rows of `rowLength` values. */
export function compatibleTypes(rowLength: number): GgmlTypeName[] {
  return GGML_CODEC_TYPES.filter((name) => rowLength % BY_NAME.get(name)!.blockSize === 0);
}

/** Bits per weight of a type (its bytes per block * 8 / elements per block): Q4_K 4.5, Q6_K 6.5625. */
export function ggmlBitsPerWeight(type: GgmlTypeName): number {
  const t = BY_NAME.get(type)!;
  return (t.blockBytes * 8) / t.blockSize;
}

/** llama.cpp's replacement for a 256-block type in rows that are not whole super-blocks (llama-quant.cpp's tensor_type_fallback). */
const FALLBACKS: Readonly<Partial<Record<GgmlTypeName, GgmlTypeName>>> = Object.freeze({ Q2_K: 'Q4_0', Q3_K: 'Q4_0', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' });

/**
 * The type llama-quantize stores instead of `type` in rows of `rowLength` values: `type` itself where the rows are
 * whole blocks; for a k-quant, its legacy stand-in (Q2_K and Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0);
 * F16 where even that does not fit.
 */
export function ggmlFallbackType(type: GgmlTypeName, rowLength: number): GgmlTypeName {
  const fits = (t: GgmlTypeName) => rowLength % BY_NAME.get(t)!.blockSize === 0;
  if (fits(type)) return type;
  const fallback = FALLBACKS[type];
  return fallback && fits(fallback) ? fallback : 'F16';
}
