import { f16BitsToFloat32, f32BitsToF16Bits } from '@layerquant/tensor-io';

// Scalar half-precision helpers over tensor-io's conversions (round to nearest even, as ggml's GGML_FP32_TO_FP16
// does on x86 with F16C and in its scalar fallback).

let table: Float32Array | undefined;

/** The float32 value of every half bit pattern. */
export function halfTable(): Float32Array {
  table ??= f16BitsToFloat32(Uint16Array.from({ length: 65536 }, (_, i) => i));
  return table;
}

const one = new Float32Array(1);
const oneBits = new Uint32Array(one.buffer);

/** Half bits of a number (rounded to float32 first, as C's float argument is). */
export function toHalfBits(value: number): number {
  one[0] = value;
  return f32BitsToF16Bits(oneBits[0]!);
}

/** A number rounded to half precision and back. */
export function roundToHalf(value: number): number {
  return halfTable()[toHalfBits(value)]!;
}
