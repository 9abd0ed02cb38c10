/**
 * IEEE half rounding in float64 arithmetic (round to nearest even, overflow to infinity): a test oracle for fp16
 * scales and zeros, independent of tensor-io's bit tricks. Shared by this package's tests; not exported.
 */
export function halfOracle(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const exponent = Math.max(-14, Math.floor(Math.log2(Math.abs(x))));
  const ulp = 2 ** (exponent - 10);
  const q = x / ulp;
  const floor = Math.floor(q);
  const rounded = q - floor > 0.5 || (q - floor === 0.5 && floor % 2 !== 0) ? floor + 1 : floor;
  const value = rounded * ulp;
  return Math.abs(value) > 65504 ? Math.sign(value) * Number.POSITIVE_INFINITY : value;
}
