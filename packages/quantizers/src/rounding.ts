/** 1.5 * 2^52: adding and subtracting it rounds a double to an integer with ties to even (|x| < 2^51). */
const ROUND_MAGIC = 6755399441055744;

/** Round half to even, as `torch.round` and WebAssembly's `f32.nearest` do (Math.round rounds half up). */
export function roundHalfEven(x: number): number {
  return x + ROUND_MAGIC - ROUND_MAGIC;
}
