import { PluginError, callPlugin, type QuantConfig, type QuantizeContext, type QuantizedTensor, type Quantizer, type WeightTensor } from '@layerquant/core';
import { PACKING, wordsPerRow } from './bit-packing.js';

/**
 * The one check of a quantizer plug-in's results: quantize() returns a QuantizedTensor of the weight's shape and the
 * config asked for, with one finite scale and zero per group (a nonzero scale, and codes packed as MatMulNBits reads
 * them, where the plug-in declares the affine layout), whose own dequantize() gives back a finite matrix of the
 * weight's size (the round trip); dequantize() always returns such a matrix. Anything else is a PluginError naming
 * the plug-in and the tensor, before a code or a NaN reaches a checkpoint, an export or a perplexity.
 */
export function checkedQuantizer<Q extends Quantizer>(quantizer: Q): Q {
  if ((quantizer as { [CHECKED]?: true })[CHECKED]) return quantizer;
  const id = quantizer.id;
  const fail = (message: string): never => {
    throw new PluginError('quantizer', id, message);
  };
  const dequantize = (quantized: QuantizedTensor): Float32Array => {
    const data = callPlugin('quantizer', id, `dequantize(${quantized.name})`, () => quantizer.dequantize(quantized));
    const [rows, columns] = quantized.shape;
    if (!(data instanceof Float32Array)) fail(`dequantize(${quantized.name}) returned ${describeValue(data)}, not a Float32Array`);
    if (data.length !== rows * columns) fail(`dequantize(${quantized.name}) returned ${data.length} values for a [${rows}, ${columns}] matrix`);
    const bad = firstNonFiniteIndex(data);
    if (bad >= 0) fail(`dequantize(${quantized.name}) returned ${data[bad]} at flat index ${bad} (row ${Math.floor(bad / columns)}, column ${bad % columns})`);
    return data;
  };
  // The context (a calibrated quantizer's input statistics) passes through untouched.
  const quantize = (weight: WeightTensor, config: QuantConfig, context?: QuantizeContext): QuantizedTensor => {
    const q = callPlugin('quantizer', id, `quantize(${weight.name})`, () => quantizer.quantize(weight, config, context)) as unknown;
    const what = `quantize(${weight.name}, b${config.bits}g${config.groupSize})`;
    if (q === null || typeof q !== 'object') fail(`${what} returned ${describeValue(q)}, not a quantized tensor`);
    if (typeof (q as { then?: unknown }).then === 'function') fail(`${what} returned a Promise; quantize() must return the quantized tensor itself`);
    const t = q as Partial<QuantizedTensor>;
    const [rows, columns] = weight.shape as [number, number];
    if (!Array.isArray(t.shape) || t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== columns) fail(`${what} returned shape ${describeValue(t.shape)} for a [${rows}, ${columns}] weight`);
    const c = t.config as Partial<QuantConfig> | undefined;
    if (!c || c.bits !== config.bits || c.groupSize !== config.groupSize || (c.axis ?? config.axis) !== config.axis || (c.roundZero ?? config.roundZero) !== config.roundZero || (c.symmetric ?? config.symmetric ?? false) !== (config.symmetric ?? false)) {
      fail(`${what} returned the config ${describeValue(c)}, not the one asked for`);
    }
    if (!(t.packed instanceof Uint32Array)) fail(`${what} returned packed codes that are not a Uint32Array`);
    const groups = (rows * columns) / config.groupSize;
    for (const part of ['scale', 'zero'] as const) {
      const values = t[part];
      if (!(values instanceof Float32Array) || values.length !== groups) fail(`${what} returned ${part} ${values instanceof Float32Array ? `of ${values.length} values` : describeValue(values)}; the config has ${groups} groups`);
      const bad = firstNonFiniteIndex(values!);
      if (bad >= 0) fail(`${what} returned ${part} ${values![bad]} for group ${bad}`);
    }
    if (quantizer.packedLayout === 'affine') {
      // The export and the packed-weight evaluation read these codes and scales as they are.
      if (t.packing !== PACKING) fail(`${what} declares the affine layout but packs "${String(t.packing)}", not "${PACKING}"`);
      const words = rows * wordsPerRow(columns, config.bits);
      if (t.packed!.length !== words) fail(`${what} returned ${t.packed!.length} packed words; ${PACKING} codes of [${rows}, ${columns}] at ${config.bits} bits take ${words}`);
      const zero = t.scale!.indexOf(0);
      if (zero >= 0) fail(`${what} returned scale 0 for group ${zero}; (code - zero) / scale would be infinite`);
    }
    dequantize(t as QuantizedTensor);
    return t as QuantizedTensor;
  };
  return Object.freeze({ ...quantizer, quantize, dequantize, [CHECKED]: true as const });
}

const CHECKED = Symbol('layerquant.checkedQuantizer');

function firstNonFiniteIndex(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v !== v || v === Infinity || v === -Infinity) return i;
  }
  return -1;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text.length > 60 ? `${text.slice(0, 60)}...` : text;
  } catch {
    return String(value);
  }
}
