import { InvalidOptionError, ShapeMismatchError } from '@layerquant/core';

/** A linear weight [N, K] packed for com.microsoft MatMulNBits. Dequantized: (code - zp) * scale - correction. */
export interface MatMulNBitsWeight {
  readonly format: 'matmul-nbits';
  readonly bits: 2 | 4 | 8;
  readonly blockSize: number;
  /** [N (out features), K (in features)]. */
  readonly shape: readonly [number, number];
  /** uint8 [N, K / blockSize, blockSize * bits / 8], codes least significant bits first along K. */
  readonly codes: Uint8Array;
  /** [N, K / blockSize]: float32, or float16 bits (a Uint16Array). */
  readonly scales: Float32Array | Uint16Array;
  /** Packed uint8 [N, ceil(K / blockSize * bits / 8)]; absent: 2^(bits-1). */
  readonly zeroPoints?: Uint8Array;
  /** [K / blockSize, N]: (z - zp) * scale where the zero is fractional; absent where zp is exact. */
  readonly correction?: Float32Array | Uint16Array;
}

/** A float tensor stored as IEEE half-precision bits. */
export interface Float16Weight {
  readonly format: 'float16';
  readonly data: Uint16Array;
}

/** A tensor of the graph: float32 data, float16 bits, or (linear matrices only) a packed MatMulNBits weight. */
export type GraphWeight = Float32Array | Float16Weight | MatMulNBitsWeight;

export type ActivationType = 'float32' | 'float16';

export function isPacked(weight: GraphWeight): weight is MatMulNBitsWeight {
  return (weight as MatMulNBitsWeight).format === 'matmul-nbits';
}

export function isFloat16(weight: GraphWeight): weight is Float16Weight {
  return (weight as Float16Weight).format === 'float16';
}

/** The values of a float weight (float32 data or float16 bits). */
export function floatData(weight: Float32Array | Float16Weight): Float32Array | Uint16Array {
  return isFloat16(weight) ? weight.data : weight;
}

/** Whether several packed matrices over the same input can be one MatMulNBits (rows stacked): same K and storage. */
export function packedCompatible(weights: readonly MatMulNBitsWeight[]): boolean {
  const [first, ...rest] = weights;
  if (!first) return false;
  return rest.every(
    (w) =>
      w.bits === first.bits &&
      w.blockSize === first.blockSize &&
      w.shape[1] === first.shape[1] &&
      w.scales.constructor === first.scales.constructor &&
      (w.zeroPoints === undefined) === (first.zeroPoints === undefined) &&
      (w.correction === undefined || first.correction === undefined || w.correction.constructor === first.correction.constructor),
  );
}

function concatenate<T extends Uint8Array | Uint16Array | Float32Array>(parts: readonly T[]): T {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new (parts[0]!.constructor as new (length: number) => T)(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/**
 * Packed matrices over the same input stacked along N (q/k/v, gate/up) as one MatMulNBitsWeight: codes, scales and
 * zero points are row-major per output row, so they concatenate; the [blocks, N] correction is interleaved per block,
 * with zeros for a matrix whose zero was exact.
 */
export function stackPacked(names: readonly string[], weights: readonly MatMulNBitsWeight[]): MatMulNBitsWeight {
  if (!packedCompatible(weights)) {
    throw new InvalidOptionError('weights', `${names.join(', ')} differ in bits, block size, input width or storage and cannot share one MatMulNBits`);
  }
  const first = weights[0]!;
  const k = first.shape[1];
  const blocks = k / first.blockSize;
  const n = weights.reduce((sum, w) => sum + w.shape[0], 0);
  for (const [i, w] of weights.entries()) {
    if (w.codes.length !== (w.shape[0] * k * w.bits) / 8) throw new ShapeMismatchError(names[i]!, `has ${w.codes.length} code bytes for [${w.shape.join(', ')}] at ${w.bits} bits`);
  }
  let correction: Float32Array | Uint16Array | undefined;
  const typed = weights.find((w) => w.correction)?.correction;
  if (typed) {
    correction = new (typed.constructor as new (length: number) => Float32Array | Uint16Array)(blocks * n);
    let column = 0;
    for (const w of weights) {
      const rows = w.shape[0];
      if (w.correction) for (let b = 0; b < blocks; b++) correction.set(w.correction.subarray(b * rows, (b + 1) * rows), b * n + column);
      column += rows;
    }
  }
  return {
    format: 'matmul-nbits',
    bits: first.bits,
    blockSize: first.blockSize,
    shape: [n, k],
    codes: concatenate(weights.map((w) => w.codes)),
    scales: concatenate(weights.map((w) => w.scales) as (Float32Array | Uint16Array)[]) as Float32Array | Uint16Array,
    ...(first.zeroPoints ? { zeroPoints: concatenate(weights.map((w) => w.zeroPoints!)) } : {}),
    ...(correction ? { correction } : {}),
  };
}
