import { SMALL_RANGE, asymmetricMinMaxInit, optimizeZeroProximal } from '@layerquant/quantizers';
import { affineError, fitAffine, fitSymmetric, symmetricError } from './block-solvers.js';
import { halfTable, toHalfBits } from './half.js';

// ggml's k-quants: super-blocks of 256 values in sub-blocks whose scales are themselves quantized against one fp16
// super-scale (layouts from ggml-common.h, decoders as ggml-quants.c's dequantize_row_q*_K).
//   Q2_K (84 bytes):  16 x 16 values, x = d*sc*q - dmin*m, q 2 bits, sc and m 4 bits each in one byte.
//   Q3_K (110 bytes): 16 x 16 values, x = d*(sc - 32)*(q - 4), q 3 bits (2 in qs, the high one in hmask), sc 6 bits.
//   Q4_K (144 bytes): 8 x 32 values, x = d*sc*q - dmin*m, q 4 bits, sc and m 6 bits (12 packed bytes).
//   Q5_K (176 bytes): 8 x 32 values, as Q4_K with a fifth bit per value in qh.
//   Q6_K (210 bytes): 16 x 16 values, x = d*sc*(q - 32), q 6 bits (4 in ql, 2 in qh), sc int8.
// The encoder is layerquant's own (not llama.cpp's quantize_row_*): for each sub-block the weighted least-squares
// grid (block-solvers.ts), then the sub-block scales quantized against a super-scale chosen for the weighted error
// they cause, every value re-rounded to its nearest level, one pass of +-1 moves of each sub-block's quantized
// scale and min, and a least-squares refit of the two super-scales, each step kept only where it lowers
// sum w (x - xhat)^2.
// With the `hqq` sub-block solver (Q2_K, Q4_K, Q5_K), each sub-block's scale and min are HQQ's instead: its min/max
// init and proximal solver of the zero (the l_p error, p = 0.7, of mobiusml/hqq) over the whole tensor in groups of
// the sub-block, as the hqq quantizer solves b4g32; the k-quant structure then quantizes those scales and mins to 6
// (Q2_K: 4) bits against the super-scales and rounds every value to its nearest level, without the least-squares
// moves and refit that would pull the grid back to the squared error.

export const QK_K = 256;
export type KQuantType = 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K';

interface AffineSpec {
  readonly kind: 'affine';
  readonly bytes: number;
  readonly sub: number;
  readonly nmax: number;
  /** Largest quantized sub-block scale or min. */
  readonly qmax: number;
}
interface SymmetricSpec {
  readonly kind: 'symmetric';
  readonly bytes: number;
  readonly sub: number;
  /** Value levels [lo, hi]. */
  readonly lo: number;
  readonly hi: number;
  /** Quantized sub-block scales [slo, shi]. */
  readonly slo: number;
  readonly shi: number;
}

export const K_QUANT_SPECS: Readonly<Record<KQuantType, AffineSpec | SymmetricSpec>> = Object.freeze({
  Q2_K: { kind: 'affine', bytes: 84, sub: 16, nmax: 3, qmax: 15 },
  Q3_K: { kind: 'symmetric', bytes: 110, sub: 16, lo: -4, hi: 3, slo: -32, shi: 31 },
  Q4_K: { kind: 'affine', bytes: 144, sub: 32, nmax: 15, qmax: 63 },
  Q5_K: { kind: 'affine', bytes: 176, sub: 32, nmax: 31, qmax: 63 },
  Q6_K: { kind: 'symmetric', bytes: 210, sub: 16, lo: -32, hi: 31, slo: -128, shi: 127 },
});

// ---- layouts: where value e of a super-block and sub-block j's scale live -------------------------------------------

function setHalf(out: Uint8Array, at: number, bits: number): void {
  out[at] = bits & 0xff;
  out[at + 1] = bits >> 8;
}

/** Q4_K / Q5_K's 12 bytes of 6-bit scales and mins (get_scale_min_k4's inverse). */
function packScaleMin6(out: Uint8Array, at: number, ls: ArrayLike<number>, lm: ArrayLike<number>): void {
  for (let j = 0; j < 12; j++) out[at + j] = 0;
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      out[at + j] = ls[j]!;
      out[at + j + 4] = lm[j]!;
    } else {
      out[at + j + 4] = (ls[j]! & 0xf) | ((lm[j]! & 0xf) << 4);
      out[at + j - 4] = out[at + j - 4]! | ((ls[j]! >> 4) << 6);
      out[at + j] = out[at + j]! | ((lm[j]! >> 4) << 6);
    }
  }
}

function unpackScaleMin6(bytes: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [bytes[at + j]! & 63, bytes[at + j + 4]! & 63];
  return [(bytes[at + j + 4]! & 0xf) | ((bytes[at + j - 4]! >> 6) << 4), (bytes[at + j + 4]! >> 4) | ((bytes[at + j]! >> 6) << 4)];
}

/** Q3_K's 12 bytes of 16 6-bit scales (stored + 32). */
function packScales3K(out: Uint8Array, at: number, scales: ArrayLike<number>): void {
  for (let j = 0; j < 12; j++) out[at + j] = 0;
  for (let j = 0; j < 16; j++) {
    const l = scales[j]! + 32;
    if (j < 8) out[at + j] = l & 0xf;
    else out[at + j - 8] = out[at + j - 8]! | ((l & 0xf) << 4);
    out[at + 8 + (j % 4)] = out[at + 8 + (j % 4)]! | ((l >> 4) << (2 * Math.floor(j / 4)));
  }
}

function unpackScale3K(bytes: Uint8Array, at: number, j: number): number {
  const low = j < 8 ? bytes[at + j]! & 0xf : bytes[at + j - 8]! >> 4;
  return (low | (((bytes[at + 8 + (j % 4)]! >> (2 * Math.floor(j / 4))) & 3) << 4)) - 32;
}

/** Writes the 256 codes of a super-block (0 .. 2^bits - 1) in the type's bit layout. */
function packCodes(type: KQuantType, out: Uint8Array, at: number, codes: Uint8Array): void {
  switch (type) {
    case 'Q2_K': // scales[16] qs[64] d dmin
      for (let e = 0; e < 64; e++) out[at + 16 + e] = 0;
      for (let e = 0; e < QK_K; e++) {
        const r = e & 127;
        out[at + 16 + (e >> 7) * 32 + (r & 31)] = out[at + 16 + (e >> 7) * 32 + (r & 31)]! | (codes[e]! << (2 * (r >> 5)));
      }
      return;
    case 'Q3_K': // hmask[32] qs[64] scales[12] d
      for (let e = 0; e < 96; e++) out[at + e] = 0;
      for (let e = 0; e < QK_K; e++) {
        const r = e & 127;
        const c = codes[e]!;
        out[at + 32 + (e >> 7) * 32 + (r & 31)] = out[at + 32 + (e >> 7) * 32 + (r & 31)]! | ((c & 3) << (2 * (r >> 5)));
        if (c & 4) out[at + (e & 31)] = out[at + (e & 31)]! | (1 << (e >> 5));
      }
      return;
    case 'Q4_K': // d dmin scales[12] qs[128]
    case 'Q5_K': { // d dmin scales[12] qh[32] qs[128]
      const qs = type === 'Q4_K' ? 16 : 48;
      for (let e = 0; e < (type === 'Q4_K' ? 128 : 160); e++) out[at + 16 + e] = 0;
      for (let e = 0; e < QK_K; e++) {
        const chunk = e >> 6;
        const w = e & 63;
        const c = codes[e]!;
        out[at + qs + 32 * chunk + (w & 31)] = out[at + qs + 32 * chunk + (w & 31)]! | ((c & 0xf) << (w >= 32 ? 4 : 0));
        if (type === 'Q5_K' && c & 16) out[at + 16 + (w & 31)] = out[at + 16 + (w & 31)]! | (1 << (2 * chunk + (w >= 32 ? 1 : 0)));
      }
      return;
    }
    case 'Q6_K': // ql[128] qh[64] scales[16] d
      for (let e = 0; e < 192; e++) out[at + e] = 0;
      for (let e = 0; e < QK_K; e++) {
        const h = e >> 7;
        const k = (e & 127) >> 5;
        const l = e & 31;
        const c = codes[e]!;
        out[at + 64 * h + l + (k & 1 ? 32 : 0)] = out[at + 64 * h + l + (k & 1 ? 32 : 0)]! | ((c & 0xf) << (k >= 2 ? 4 : 0));
        out[at + 128 + 32 * h + l] = out[at + 128 + 32 * h + l]! | ((c >> 4) << (2 * k));
      }
      return;
  }
}

/** The 256 codes of a super-block, read back from the type's bit layout. */
function unpackCodes(type: KQuantType, bytes: Uint8Array, at: number, codes: Uint8Array): void {
  for (let e = 0; e < QK_K; e++) {
    const r = e & 127;
    switch (type) {
      case 'Q2_K':
        codes[e] = (bytes[at + 16 + (e >> 7) * 32 + (r & 31)]! >> (2 * (r >> 5))) & 3;
        break;
      case 'Q3_K':
        codes[e] = ((bytes[at + 32 + (e >> 7) * 32 + (r & 31)]! >> (2 * (r >> 5))) & 3) | (((bytes[at + (e & 31)]! >> (e >> 5)) & 1) << 2);
        break;
      case 'Q4_K':
      case 'Q5_K': {
        const chunk = e >> 6;
        const w = e & 63;
        const qs = type === 'Q4_K' ? 16 : 48;
        let c = (bytes[at + qs + 32 * chunk + (w & 31)]! >> (w >= 32 ? 4 : 0)) & 0xf;
        if (type === 'Q5_K') c |= ((bytes[at + 16 + (w & 31)]! >> (2 * chunk + (w >= 32 ? 1 : 0))) & 1) << 4;
        codes[e] = c;
        break;
      }
      case 'Q6_K': {
        const h = e >> 7;
        const k = r >> 5;
        const l = e & 31;
        codes[e] = ((bytes[at + 64 * h + l + (k & 1 ? 32 : 0)]! >> (k >= 2 ? 4 : 0)) & 0xf) | (((bytes[at + 128 + 32 * h + l]! >> (2 * k)) & 3) << 4);
        break;
      }
    }
  }
}

// ---- decoding -------------------------------------------------------------------------------------------------------

/**
 * dequantize_row_q{2,3,4,5,6}_K: x = p_j * code - o_j with each sub-block's multiplier and offset as kQuantFields reads
 * them (each value computed in float64, where the products are exact, and rounded once).
 */
export function decodeKQuant(type: KQuantType, bytes: Uint8Array, elements: number): Float32Array {
  const spec = K_QUANT_SPECS[type];
  const out = new Float32Array(elements);
  const codes = new Uint8Array(QK_K);
  const multiplier = new Float64Array(16);
  const offset = new Float64Array(16);
  for (let b = 0; b < elements / QK_K; b++) {
    const start = b * QK_K;
    kQuantFields(type, bytes, b * spec.bytes, codes, multiplier, offset);
    for (let e = 0; e < QK_K; e++) {
      const j = (e / spec.sub) | 0;
      out[start + e] = multiplier[j]! * codes[e]! - offset[j]!;
    }
  }
  return out;
}

// ---- encoding -------------------------------------------------------------------------------------------------------

/** Quantizes non-negative values a_j to integers q_j in [0, qmax] times one fp16 scale, minimizing sum s_j (a_j - D q_j)^2. */
function quantizeUnsigned(a: Float64Array, s: Float64Array, n: number, qmax: number, q: Int32Array): number {
  let max = 0;
  for (let j = 0; j < n; j++) max = Math.max(max, a[j]!);
  if (max <= 0) {
    q.fill(0, 0, n);
    return 0;
  }
  const table = halfTable();
  let bestD = 0;
  let bestError = Infinity;
  for (let step = -6; step <= 6; step++) {
    let D = table[toHalfBits(max / (qmax + step / 4))]!;
    if (!(D > 0)) continue;
    // One least-squares refit of D for the rounding it induces.
    let num = 0;
    let den = 0;
    for (let j = 0; j < n; j++) {
      const l = Math.min(qmax, Math.max(0, Math.round(a[j]! / D)));
      num += s[j]! * a[j]! * l;
      den += s[j]! * l * l;
    }
    if (den > 0) D = table[toHalfBits(num / den)]! || D;
    let error = 0;
    for (let j = 0; j < n; j++) {
      const l = Math.min(qmax, Math.max(0, Math.round(a[j]! / D)));
      error += s[j]! * (a[j]! - D * l) ** 2;
    }
    if (error < bestError) {
      bestError = error;
      bestD = D;
    }
  }
  for (let j = 0; j < n; j++) q[j] = Math.min(qmax, Math.max(0, Math.round(a[j]! / bestD)));
  return bestD;
}

/** Quantizes signed values to integers in [lo, hi] times one signed fp16 scale, minimizing sum s_j (v_j - D q_j)^2. */
function quantizeSigned(v: Float64Array, s: Float64Array, n: number, lo: number, hi: number, q: Int32Array): number {
  let amax = 0;
  let extreme = 0;
  for (let j = 0; j < n; j++) {
    if (Math.abs(v[j]!) > amax) {
      amax = Math.abs(v[j]!);
      extreme = v[j]!;
    }
  }
  if (amax === 0) {
    q.fill(0, 0, n);
    return 0;
  }
  const table = halfTable();
  const clamp = (l: number) => (l < lo ? lo : l > hi ? hi : l);
  let bestD = 0;
  let bestError = Infinity;
  for (let sideIndex = 0; sideIndex < 2; sideIndex++) {
    const side = sideIndex === 0 ? lo : hi;
    for (let step = 0; step <= 8; step++) {
      const target = side - (Math.sign(side) * step) / 4;
      let D = table[toHalfBits(extreme / target)]!;
      if (!D) continue;
      let num = 0;
      let den = 0;
      for (let j = 0; j < n; j++) {
        const l = clamp(Math.round(v[j]! / D));
        num += s[j]! * v[j]! * l;
        den += s[j]! * l * l;
      }
      if (den > 0) D = table[toHalfBits(num / den)]! || D;
      let error = 0;
      for (let j = 0; j < n; j++) error += s[j]! * (v[j]! - D * clamp(Math.round(v[j]! / D))) ** 2;
      if (error < bestError) {
        bestError = error;
        bestD = D;
      }
    }
  }
  for (let j = 0; j < n; j++) q[j] = clamp(Math.round(v[j]! / bestD));
  return bestD;
}

/** How each sub-block's scale and min are chosen before the k-quant structure quantizes them. */
export type SubBlockSolver = 'least-squares' | 'hqq';

/** Scratch of one encoder call, reused across super-blocks. */
interface Scratch {
  /** With the hqq solver: every sub-block's scale and offset (xhat = scale l + offset) of the tensor, and the super-block's first sub-block. */
  hqq?: { readonly scale: Float64Array; readonly offset: Float64Array; first: number };
  readonly scales: Float64Array;
  readonly mins: Float64Array;
  readonly weightScale: Float64Array;
  readonly weightMin: Float64Array;
  readonly qs: Int32Array;
  readonly qm: Int32Array;
  readonly codes: Uint8Array;
  /** Codes kept while a refit is tried. */
  readonly saved: Uint8Array;
  readonly x: Float64Array;
  readonly w: Float64Array;
}

/**
 * Sum over sub-block j of w (into weightMin[j]), and of w l^2 at the fitted grid (into weightScale[j]): how much an
 * error in its min or its scale costs.
 */
function subBlockWeights(t: Scratch, j: number, start: number, n: number, scale: number, offset: number, nmax: number, lo: number): void {
  const { x, w } = t;
  let sw = 0;
  let swll = 0;
  const inv = scale !== 0 ? 1 / scale : 0;
  for (let i = start; i < start + n; i++) {
    sw += w[i]!;
    let l = Math.round((x[i]! - offset) * inv);
    l = l < lo ? lo : l > nmax ? nmax : l;
    swll += w[i]! * l * l;
  }
  t.weightMin[j] = sw;
  t.weightScale[j] = swll;
}

const AFFINE_MOVES = Object.freeze([1, 0, -1, 0, 0, 1, 0, -1, 1, 1, -1, -1]);

function encodeAffineSuperBlock(type: KQuantType, spec: AffineSpec, t: Scratch, out: Uint8Array, at: number): void {
  const { sub, nmax, qmax } = spec;
  const nsub = QK_K / sub;
  const { x, w, scales, mins, weightScale, weightMin, qs, qm, codes, saved } = t;
  for (let j = 0; j < nsub; j++) {
    const fit = t.hqq ? { scale: t.hqq.scale[t.hqq.first + j]!, offset: t.hqq.offset[t.hqq.first + j]! } : fitAffine(x, w, j * sub, sub, nmax, true);
    scales[j] = fit.scale;
    mins[j] = -fit.offset;
    subBlockWeights(t, j, j * sub, sub, fit.scale, fit.offset, nmax, 0);
  }
  let d = quantizeUnsigned(scales, weightScale, nsub, qmax, qs);
  let dmin = quantizeUnsigned(mins, weightMin, nsub, qmax, qm);
  const table = halfTable();
  if (t.hqq) {
    // HQQ's grid as the structure stores it: the quantized scales and mins, every value at its nearest level
    for (let e = 0; e < QK_K; e++) {
      const j = Math.floor(e / sub);
      const a = d * qs[j]!;
      let l = a > 0 ? Math.round((x[e]! + dmin * qm[j]!) / a) : 0;
      codes[e] = l < 0 ? 0 : l > nmax ? nmax : l;
    }
    writeAffineSuperBlock(type, out, at, d, dmin, qs, qm, codes);
    return;
  }
  // +-1 moves of each sub-block's quantized scale and min.
  for (let j = 0; j < nsub; j++) {
    let best = affineError(x, w, j * sub, sub, d * qs[j]!, -dmin * qm[j]!, nmax);
    const [ls0, lm0] = [qs[j]!, qm[j]!];
    for (let move = 0; move < AFFINE_MOVES.length; move += 2) {
      const ls = ls0 + AFFINE_MOVES[move]!;
      const lm = lm0 + AFFINE_MOVES[move + 1]!;
      if (ls < 0 || ls > qmax || lm < 0 || lm > qmax) continue;
      const e = affineError(x, w, j * sub, sub, d * ls, -dmin * lm, nmax);
      if (e < best) {
        best = e;
        qs[j] = ls;
        qm[j] = lm;
      }
    }
  }
  // Codes at the quantized grid, then a least-squares refit of (d, dmin): xhat = d * (qs_j l) - dmin * qm_j.
  const assign = () => {
    let error = 0;
    for (let e = 0; e < QK_K; e++) {
      const j = Math.floor(e / sub);
      const a = d * qs[j]!;
      const m = dmin * qm[j]!;
      let l = a > 0 ? Math.round((x[e]! + m) / a) : 0;
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      codes[e] = l;
      error += w[e]! * (a * l - m - x[e]!) ** 2;
    }
    return error;
  };
  let error = assign();
  let s11 = 0;
  let s12 = 0;
  let s22 = 0;
  let b1 = 0;
  let b2 = 0;
  for (let e = 0; e < QK_K; e++) {
    const j = Math.floor(e / sub);
    const u = qs[j]! * codes[e]!;
    const v = -qm[j]!;
    s11 += w[e]! * u * u;
    s12 += w[e]! * u * v;
    s22 += w[e]! * v * v;
    b1 += w[e]! * u * x[e]!;
    b2 += w[e]! * v * x[e]!;
  }
  const det = s11 * s22 - s12 * s12;
  if (det > 0) {
    const d0 = d;
    const dmin0 = dmin;
    saved.set(codes);
    d = table[toHalfBits((b1 * s22 - b2 * s12) / det)]!;
    dmin = table[toHalfBits((s11 * b2 - s12 * b1) / det)]!;
    const refit = d >= 0 && dmin >= 0 ? assign() : Infinity;
    if (!(refit < error)) {
      d = d0;
      dmin = dmin0;
      codes.set(saved);
    } else {
      error = refit;
    }
  }
  writeAffineSuperBlock(type, out, at, d, dmin, qs, qm, codes);
}

function writeAffineSuperBlock(type: KQuantType, out: Uint8Array, at: number, d: number, dmin: number, qs: Int32Array, qm: Int32Array, codes: Uint8Array): void {
  const dBits = toHalfBits(d);
  const mBits = toHalfBits(dmin);
  if (type === 'Q2_K') {
    for (let j = 0; j < 16; j++) out[at + j] = qs[j]! | (qm[j]! << 4);
    setHalf(out, at + 80, dBits);
    setHalf(out, at + 82, mBits);
  } else {
    setHalf(out, at, dBits);
    setHalf(out, at + 2, mBits);
    packScaleMin6(out, at + 4, qs, qm);
  }
  packCodes(type, out, at, codes);
}

function encodeSymmetricSuperBlock(type: KQuantType, spec: SymmetricSpec, t: Scratch, out: Uint8Array, at: number): void {
  const { sub, lo, hi, slo, shi } = spec;
  const nsub = QK_K / sub;
  const { x, w, scales, weightScale, qs, codes, saved } = t;
  for (let j = 0; j < nsub; j++) {
    const fit = fitSymmetric(x, w, j * sub, sub, lo, hi);
    scales[j] = fit.scale;
    subBlockWeights(t, j, j * sub, sub, fit.scale, 0, hi, lo);
  }
  let d = quantizeSigned(scales, weightScale, nsub, slo, shi, qs);
  const table = halfTable();
  for (let j = 0; j < nsub; j++) {
    let best = symmetricError(x, w, j * sub, sub, d * qs[j]!, lo, hi);
    const ls0 = qs[j]!;
    for (let ds = -1; ds <= 1; ds += 2) {
      const ls = ls0 + ds;
      if (ls < slo || ls > shi) continue;
      const e = symmetricError(x, w, j * sub, sub, d * ls, lo, hi);
      if (e < best) {
        best = e;
        qs[j] = ls;
      }
    }
  }
  const assign = () => {
    let error = 0;
    for (let e = 0; e < QK_K; e++) {
      const a = d * qs[Math.floor(e / sub)]!;
      let l = a !== 0 ? Math.round(x[e]! / a) : 0;
      l = l < lo ? lo : l > hi ? hi : l;
      codes[e] = l - lo;
      error += w[e]! * (a * l - x[e]!) ** 2;
    }
    return error;
  };
  const error = assign();
  let num = 0;
  let den = 0;
  for (let e = 0; e < QK_K; e++) {
    const u = qs[Math.floor(e / sub)]! * (codes[e]! + lo);
    num += w[e]! * u * x[e]!;
    den += w[e]! * u * u;
  }
  if (den > 0) {
    const d0 = d;
    saved.set(codes);
    d = table[toHalfBits(num / den)]!;
    if (!(assign() < error)) {
      d = d0;
      codes.set(saved);
    }
  }
  const dBits = toHalfBits(d);
  if (type === 'Q3_K') {
    packScales3K(out, at + 96, qs);
    setHalf(out, at + 108, dBits);
  } else {
    for (let j = 0; j < 16; j++) out[at + 192 + j] = qs[j]! & 0xff;
    setHalf(out, at + 208, dBits);
  }
  packCodes(type, out, at, codes);
}

/**
 * Encodes rows of `rowLength` values (a multiple of 256) as a k-quant type. `importance` gives each input channel's
 * weight (llama.cpp's imatrix; absent: 1): the encoder minimizes sum w (x - xhat)^2 per super-block. `solver` `hqq`
 * takes the sub-block scales and mins of Q2_K, Q4_K and Q5_K from HQQ's solver instead (the symmetric types have no
 * zero for it to solve and ignore it).
 */
export function encodeKQuant(type: KQuantType, values: Float32Array, rowLength: number, importance?: Float32Array, solver: SubBlockSolver = 'least-squares'): Uint8Array {
  const spec = K_QUANT_SPECS[type];
  const blocks = values.length / QK_K;
  const out = new Uint8Array(blocks * spec.bytes);
  const t: Scratch = {
    scales: new Float64Array(16), mins: new Float64Array(16), weightScale: new Float64Array(16), weightMin: new Float64Array(16),
    qs: new Int32Array(16), qm: new Int32Array(16), codes: new Uint8Array(QK_K), saved: new Uint8Array(QK_K), x: new Float64Array(QK_K), w: new Float64Array(QK_K),
  };
  if (solver === 'hqq' && spec.kind === 'affine') t.hqq = { ...hqqSubBlockFits(values, spec.sub, spec.nmax), first: 0 };
  for (let b = 0; b < blocks; b++) {
    const start = b * QK_K;
    if (t.hqq) t.hqq.first = start / spec.sub;
    const column = start % rowLength;
    for (let e = 0; e < QK_K; e++) {
      t.x[e] = values[start + e]!;
      t.w[e] = importance ? importance[column + e]! : 1;
    }
    if (spec.kind === 'affine') encodeAffineSuperBlock(type, spec, t, out, b * spec.bytes);
    else encodeSymmetricSuperBlock(type, spec, t, out, b * spec.bytes);
  }
  return out;
}

/**
 * HQQ's scale and offset of every sub-block of `sub` values (min/max init, then the proximal solver of the zero, in
 * float32 as the hqq quantizer runs it), as xhat = scale l + offset with l in [0, nmax]. A sub-block whose range HQQ's
 * init treats as none (at most SMALL_RANGE: its scale would be 1, far beyond the values, and would coarsen every other
 * sub-block's quantized scale in the super-block) gets the grid that spans it, offset its min. The k-quants subtract a
 * non-negative min, so an offset above 0 (a sub-block of positive values) becomes 0 with the scale that spans its max.
 */
function hqqSubBlockFits(values: Float32Array, sub: number, nmax: number): { scale: Float64Array; offset: Float64Array } {
  const groups = values.length / sub;
  const bits = Math.log2(nmax + 1);
  const inverse = new Float32Array(groups);
  const zero = new Float32Array(groups);
  asymmetricMinMaxInit(values, sub, bits, false, inverse, zero);
  optimizeZeroProximal(values, sub, bits, inverse, zero);
  const scale = new Float64Array(groups);
  const offset = new Float64Array(groups);
  for (let k = 0; k < groups; k++) {
    let min = Infinity;
    let max = -Infinity;
    for (let i = k * sub; i < (k + 1) * sub; i++) {
      min = Math.min(min, values[i]!);
      max = Math.max(max, values[i]!);
    }
    const spanned = Math.fround(max - min) <= SMALL_RANGE;
    scale[k] = spanned ? (max - min) / nmax : 1 / inverse[k]!;
    offset[k] = spanned ? min : -zero[k]! / inverse[k]!;
    if (offset[k]! > 0) {
      offset[k] = 0;
      scale[k] = max / nmax;
    }
  }
  return { scale, offset };
}

// ---- fields: a super-block as codes and one multiplier and offset per sub-block ------------------------------------

/**
 * Reads super-block `b` as its 256 codes (0 .. 2^bits - 1) and, per sub-block j, the multiplier p_j and offset o_j
 * with x = p_j * code - o_j (Q2_K, Q4_K, Q5_K: p = d sc, o = dmin m; Q3_K, Q6_K: p = d sc, o = centre p). Every p and
 * o is a product of an fp16 value and a small integer, exact in float32; decodeKQuant gives the same values.
 */
export function kQuantFields(type: KQuantType, bytes: Uint8Array, at: number, codes: Uint8Array, multiplier: Float64Array, offset: Float64Array): void {
  const table = halfTable();
  const half = (i: number) => table[bytes[i]! | (bytes[i + 1]! << 8)]!;
  unpackCodes(type, bytes, at, codes);
  if (type === 'Q2_K') {
    const d = half(at + 80);
    const dmin = half(at + 82);
    for (let j = 0; j < 16; j++) {
      multiplier[j] = d * (bytes[at + j]! & 0xf);
      offset[j] = dmin * (bytes[at + j]! >> 4);
    }
  } else if (type === 'Q4_K' || type === 'Q5_K') {
    const d = half(at);
    const dmin = half(at + 2);
    for (let j = 0; j < 8; j++) {
      const [sc, m] = unpackScaleMin6(bytes, at + 4, j);
      multiplier[j] = d * sc;
      offset[j] = dmin * m;
    }
  } else if (type === 'Q3_K') {
    const d = half(at + 108);
    for (let j = 0; j < 16; j++) {
      multiplier[j] = d * unpackScale3K(bytes, at + 96, j);
      offset[j] = 4 * multiplier[j]!;
    }
  } else {
    const d = half(at + 208);
    for (let j = 0; j < 16; j++) {
      multiplier[j] = d * ((bytes[at + 192 + j]! << 24) >> 24);
      offset[j] = 32 * multiplier[j]!;
    }
  }
}

/**
 * An fp16 value D and integers q_j in [lo, hi] with D q_j = p_j exactly for every j, or undefined where none exists
 * (values that are not such products: scales stored at a lower precision). All zero: D = 0.
 */
export function factorHalf(p: ArrayLike<number>, n: number, lo: number, hi: number, q: Int32Array): number | undefined {
  let top = 0;
  for (let j = 1; j < n; j++) if (Math.abs(p[j]!) > Math.abs(p[top]!)) top = j;
  const largest = p[top]!;
  if (largest === 0) {
    q.fill(0, 0, n);
    return 0;
  }
  const table = halfTable();
  // The integer of the largest |p| first (the encoders give it the end of the range), then smaller ones.
  for (let s = Math.max(hi, -lo); s >= 1; s--) {
    for (const sign of [1, -1]) {
      const l = sign * s;
      if (l < lo || l > hi) continue;
      const D = largest / l;
      if (table[toHalfBits(D)] !== D) continue;
      let ok = true;
      for (let j = 0; j < n && ok; j++) {
        const v = p[j]! / D;
        if (!Number.isInteger(v) || v < lo || v > hi || D * v !== p[j]) ok = false;
        else q[j] = v;
      }
      if (ok) return D;
    }
  }
  return undefined;
}

/** The quantized sub-block scales and mins of the block writeKQuantFields is writing (one call at a time). */
const FIELD_SCALES = new Int32Array(16);
const FIELD_MINS = new Int32Array(16);

/**
 * Writes super-block `at` from its codes and per-sub-block multipliers and offsets as kQuantFields reads them (the
 * inverse: the block decodes to the same values). False where the multipliers or offsets are not products of one
 * fp16 value and the type's integers (or an offset is not the type's centre times its multiplier).
 */
export function writeKQuantFields(type: KQuantType, out: Uint8Array, at: number, codes: Uint8Array, multiplier: ArrayLike<number>, offset: ArrayLike<number>): boolean {
  const spec = K_QUANT_SPECS[type];
  const nsub = QK_K / spec.sub;
  const ls = FIELD_SCALES;
  const lm = FIELD_MINS;
  if (spec.kind === 'affine') {
    const d = factorHalf(multiplier, nsub, 0, spec.qmax, ls);
    const dmin = factorHalf(offset, nsub, 0, spec.qmax, lm);
    if (d === undefined || dmin === undefined || d < 0 || dmin < 0) return false;
    if (type === 'Q2_K') {
      for (let j = 0; j < 16; j++) out[at + j] = ls[j]! | (lm[j]! << 4);
      setHalf(out, at + 80, toHalfBits(d));
      setHalf(out, at + 82, toHalfBits(dmin));
    } else {
      setHalf(out, at, toHalfBits(d));
      setHalf(out, at + 2, toHalfBits(dmin));
      packScaleMin6(out, at + 4, ls, lm);
    }
  } else {
    const d = factorHalf(multiplier, nsub, spec.slo, spec.shi, ls);
    if (d === undefined) return false;
    for (let j = 0; j < nsub; j++) if (offset[j] !== -spec.lo * multiplier[j]!) return false;
    if (type === 'Q3_K') {
      packScales3K(out, at + 96, ls);
      setHalf(out, at + 108, toHalfBits(d));
    } else {
      for (let j = 0; j < 16; j++) out[at + 192 + j] = ls[j]! & 0xff;
      setHalf(out, at + 208, toHalfBits(d));
    }
  }
  packCodes(type, out, at, codes);
  return true;
}
