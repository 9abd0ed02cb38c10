/** dtypes as safetensors names them. */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element of each dtype (frozen table). */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
});

/** The dtypes a weight can have: integers are codes, ids or masks, never weights (read as numbers they give a wrong model). */
export const WEIGHT_DTYPES: readonly DType[] = Object.freeze(['F64', 'F32', 'F16', 'BF16']);

export function isWeightDType(dtype: string): boolean {
  return (WEIGHT_DTYPES as readonly string[]).includes(dtype);
}

/** A tensor read into float32 for computation. `dtype` is the dtype it was stored in. */
export interface WeightTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
