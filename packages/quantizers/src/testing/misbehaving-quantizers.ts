import type { QuantizedTensor, Quantizer } from '@layerquant/core';
import { rtnPlugin, type QuantizerPlugin } from '../registry.js';

/** A quantizer plug-in that misbehaves one way, and the PluginError the host must throw for it. */
export interface MisbehavingQuantizer {
  readonly label: string;
  readonly plugin: QuantizerPlugin;
  readonly error: RegExp;
}

/**
 * Quantizer plug-ins that return what a careless or hostile plug-in returns (issue 27): NaN or infinite scales and
 * zeros, a zero scale, the wrong shape, config, group count or packed length, a dequantize that gives NaN or the wrong
 * size, an exception, a Promise. Each starts from RTN's correct result and breaks it. For hosts' tests: every one must
 * be refused with a PluginError naming it, on quantize (the round trip included) or dequantize.
 */
export function misbehavingQuantizers(): MisbehavingQuantizer[] {
  const make = (id: string, affine: boolean, edit: (q: QuantizedTensor) => unknown, dequantize?: (q: QuantizedTensor) => unknown): QuantizerPlugin => {
    const base: Quantizer = {
      id,
      quantize: (weight, config) => edit(rtnPlugin.quantize(weight, config)) as QuantizedTensor,
      dequantize: (q) => (dequantize ? dequantize(q) : rtnPlugin.dequantize(q)) as Float32Array,
      ...(affine ? { packedLayout: 'affine' as const } : {}),
    };
    return Object.freeze({ ...base, description: `misbehaving quantizer: ${id}`, options: [], configure: () => base });
  };
  const withScale = (i: number, value: number) => (q: QuantizedTensor) => {
    const scale = q.scale.slice();
    scale[i] = value;
    return { ...q, scale };
  };
  return [
    { label: 'a NaN scale', plugin: make('nan-scale', false, withScale(3, Number.NaN)), error: /quantizer "nan-scale" quantize\(.*, b4g64\) returned scale NaN for group 3/ },
    { label: 'an infinite zero', plugin: make('inf-zero', false, (q) => ({ ...q, zero: Float32Array.from(q.zero, (z, i) => (i === 5 ? Infinity : z)) })), error: /quantizer "inf-zero" .* returned zero Infinity for group 5/ },
    { label: 'a zero scale in the affine layout', plugin: make('zero-scale', true, withScale(2, 0)), error: /quantizer "zero-scale" .* returned scale 0 for group 2/ },
    { label: 'the wrong shape', plugin: make('shape', false, (q) => ({ ...q, shape: [q.shape[1], q.shape[0]] })), error: /quantizer "shape" .* returned shape \[\d+,\d+\] for a \[\d+, \d+\] weight/ },
    { label: 'another config', plugin: make('config', false, (q) => ({ ...q, config: { ...q.config, bits: 2 } })), error: /quantizer "config" .* returned the config \{"bits":2,.* not the one asked for/ },
    { label: 'half the scales', plugin: make('short-scale', false, (q) => ({ ...q, scale: q.scale.subarray(0, q.scale.length >> 1) })), error: /quantizer "short-scale" .* returned scale of \d+ values; the config has \d+ groups/ },
    { label: 'codes that are not a Uint32Array', plugin: make('codes', false, (q) => ({ ...q, packed: Array.from(q.packed) })), error: /quantizer "codes" .* returned packed codes that are not a Uint32Array/ },
    { label: 'too few packed words in the affine layout', plugin: make('short-codes', true, (q) => ({ ...q, packed: q.packed.subarray(1) })), error: /quantizer "short-codes" .* returned \d+ packed words; rows-u32-lsb codes of \[\d+, \d+\] at 4 bits take \d+/ },
    { label: 'a dequantize that gives NaN', plugin: make('nan-dequantize', false, (q) => q, (q) => Float32Array.from(rtnPlugin.dequantize(q), (v, i) => (i === 9 ? Number.NaN : v))), error: /quantizer "nan-dequantize" dequantize\(.*\) returned NaN at flat index 9/ },
    { label: 'a dequantize of the wrong size', plugin: make('short-dequantize', false, (q) => q, (q) => rtnPlugin.dequantize(q).subarray(1)), error: /quantizer "short-dequantize" dequantize\(.*\) returned \d+ values for a \[\d+, \d+\] matrix/ },
    { label: 'an exception', plugin: make('throws', false, () => { throw new RangeError('Invalid typed array length: -1'); }), error: /quantizer "throws" failed in quantize\(.*\): RangeError: Invalid typed array length/ },
    { label: 'a Promise', plugin: make('async', false, async (q) => q), error: /quantizer "async" .* returned a Promise/ },
  ];
}
