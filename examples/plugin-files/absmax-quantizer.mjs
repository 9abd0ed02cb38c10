// A quantizer plug-in in one file (no package.json, no build): round to nearest on a grid symmetric about zero,
// each group scaled by its largest |w|. Load it with `--plugin ./absmax-quantizer.mjs`; the @layerquant imports
// resolve to the packages the loading app runs with (see CONTRIBUTING.md).
import { dequantizeGroups, groupLayout, matrixShape, maxCode, packCodes, unpackCodes, PACKING } from '@layerquant/quantizers';
import { InvalidOptionError } from '@layerquant/core';

/** @type {import('@layerquant/pipeline/plugin-spec').QuantizerPlugin} */
export const absmaxQuantizer = {
  id: 'absmax-rtn',
  description: 'round to nearest on a grid symmetric about zero, each group scaled by its largest |w|',
  options: [],
  configure: () => absmaxQuantizer,
  // dequantize is exactly (code - zero) / scale per group: the ONNX export may hold the codes as they are.
  packedLayout: 'affine',
  quantize(weight, config) {
    const [rows, columns] = matrixShape(weight);
    // Throws InvalidOptionError naming groupSize and the tensor when the group size does not divide the row.
    const layout = groupLayout(weight.name, [rows, columns], config);
    if (config.axis !== 1) throw new InvalidOptionError('axis', `absmax-rtn groups along rows only (axis 1), not axis ${config.axis}`);
    const top = maxCode(config.bits);
    const scale = new Float32Array(layout.groupCount);
    const zero = new Float32Array(layout.groupCount).fill(top / 2);
    const codes = new Uint8Array(rows * columns);
    for (let g = 0, base = 0; g < layout.groupCount; g++, base += config.groupSize) {
      let absMax = 0;
      for (let j = 0; j < config.groupSize; j++) absMax = Math.max(absMax, Math.abs(weight.data[base + j]));
      // code = w * scale + zero spans [0, top] from -absMax to absMax
      scale[g] = absMax > 0 ? top / (2 * absMax) : 1;
      for (let j = 0; j < config.groupSize; j++) codes[base + j] = Math.min(top, Math.max(0, Math.round(weight.data[base + j] * scale[g] + zero[g])));
    }
    return { name: weight.name, shape: [rows, columns], config, method: 'absmax-rtn', packed: packCodes(codes, rows, columns, config.bits), packing: PACKING, scale, zero };
  },
  dequantize(quantized) {
    const [rows, columns] = quantized.shape;
    const out = new Float32Array(rows * columns);
    dequantizeGroups(unpackCodes(quantized.packed, rows, columns, quantized.config.bits), quantized.config.groupSize, quantized.scale, quantized.zero, out);
    return out;
  },
};

export default { quantizers: [absmaxQuantizer] };
