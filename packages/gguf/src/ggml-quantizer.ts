import { InvalidDataError, InvalidOptionError, ShapeMismatchError, configName, isEmbeddingUnit, quantConfig, unitOfTensorName, type InputHessian, type OptionDescriptor, type QuantConfig, type QuantizeContext, type QuantizedTensor, type Quantizer, type WeightTensor } from '@layerquant/core';
import { PACKING, defineQuantizer, packCodes, unpackCodes, type QuantizerPlugin } from '@layerquant/quantizers';
import { encodeGgml } from './codecs.js';
import { ggmlType, type GgmlTypeName } from './ggml-types.js';
import { K_QUANT_SPECS, QK_K, kQuantFields, writeKQuantFields, type KQuantType, type SubBlockSolver } from './k-quants.js';
import { LEGACY_BLOCK, LEGACY_LAYOUTS, legacyFields, writeLegacyFields, type LegacyType } from './legacy-blocks.js';

// llama.cpp's block types as a quantizer: a matrix at config b4g32 is encoded as Q4_K, exactly the bytes the GGUF
// export writes, and the allocators choose among the types as among any configs (their bytes from the GGUF cost
// model). Each type is held as codes and, per sub-block, the multiplier p and offset o with x = p * code - o:
//   Q2_K  b2g16      p = d sc, o = dmin m (sc, m 4-bit)
//   Q3_K  b3g16-sym  p = d sc (sc 6-bit signed), o = 4 p
//   Q4_0  b4g32-sym  p = d, o = 8 d
//   Q4_K  b4g32      p = d sc, o = dmin m (sc, m 6-bit)
//   Q5_0  b5g32-sym  p = d, o = 16 d
//   Q5_K  b5g32      as Q4_K
//   Q6_K  b6g16-sym  p = d sc (sc int8), o = 32 p
//   Q8_0  b8g32-sym  p = d, o = 128 d (codes: int8 + 128)
// Every p and o is an fp16 value times a small integer, exact in float32, so a checkpoint stores them as F32 scales
// and zeros and the GGUF export rebuilds the very blocks (ggmlBlocks). The codecs' decoders give the same values.
// A k-quant needs rows of whole super-blocks (256 values). In other rows b4g32 and b5g32 are stored as Q4_1 and Q5_1,
// the legacy blocks with the same codes, group and fractional min (llama-quantize falls back to a wider Q5_0 there);
// b2g16, b3g16-sym and b6g16-sym have no such block and are not offered for those matrices.

/** llama.cpp's types and the configs the ggml quantizer gives them, ascending in bits per weight. */
export const GGML_QUANTIZER_TYPES: readonly { readonly type: GgmlTypeName; readonly config: QuantConfig }[] = Object.freeze([
  { type: 'Q2_K', config: quantConfig(2, 16) },
  { type: 'Q3_K', config: quantConfig(3, 16, { symmetric: true }) },
  { type: 'Q4_0', config: quantConfig(4, 32, { symmetric: true }) },
  { type: 'Q4_K', config: quantConfig(4, 32) },
  { type: 'Q5_0', config: quantConfig(5, 32, { symmetric: true }) },
  { type: 'Q5_K', config: quantConfig(5, 32) },
  { type: 'Q6_K', config: quantConfig(6, 16, { symmetric: true }) },
  { type: 'Q8_0', config: quantConfig(8, 32, { symmetric: true }) },
] as const).map((entry) => Object.freeze(entry));

const BY_CONFIG = new Map(GGML_QUANTIZER_TYPES.map((e) => [configName(e.config), e.type]));

/** The legacy block of the same codes where a k-quant's super-blocks do not fit the rows. */
const FALLBACK: Readonly<Partial<Record<GgmlTypeName, GgmlTypeName>>> = Object.freeze({ Q4_K: 'Q4_1', Q5_K: 'Q5_1' });

/**
 * The llama.cpp type the ggml quantizer stores a config as in rows of `columns` values (`b4g32` -> Q4_K, or Q4_1
 * where the rows are not whole super-blocks of 256), or undefined. Groups must run along rows (axis 1).
 */
export function ggmlTypeOfConfig(config: QuantConfig, columns: number): GgmlTypeName | undefined {
  const type = config.axis === 1 ? BY_CONFIG.get(configName(config)) : undefined;
  if (!type) return undefined;
  if (columns % ggmlType(type).blockSize === 0) return type;
  const fallback = FALLBACK[type];
  return fallback && columns % ggmlType(fallback).blockSize === 0 ? fallback : undefined;
}

/** The config of a llama.cpp type in the ggml quantizer (`Q4_K` -> b4g32), or undefined for a type it does not make. */
export function configOfGgmlType(type: string): QuantConfig | undefined {
  const upper = type.trim().toUpperCase();
  return GGML_QUANTIZER_TYPES.find((e) => e.type === upper)?.config;
}

/** `b4g32 (Q4_K), b6g16-sym (Q6_K), ...`: the ladder as a user reads it. */
export function ggmlLadderText(): string {
  return GGML_QUANTIZER_TYPES.map((e) => `${configName(e.config)} (${e.type})`).join(', ');
}

function typeOf(config: QuantConfig, tensor: string, columns: number): GgmlTypeName {
  const type = ggmlTypeOfConfig(config, columns);
  if (type) return type;
  if (config.axis === 1 && BY_CONFIG.has(configName(config))) {
    throw new ShapeMismatchError(tensor, `rows of ${columns} values are not whole ${BY_CONFIG.get(configName(config))} blocks; choose a config whose blocks divide ${columns} (${GGML_QUANTIZER_TYPES.filter((e) => ggmlTypeOfConfig(e.config, columns)).map((e) => `${configName(e.config)} (${ggmlTypeOfConfig(e.config, columns)})`).join(', ') || 'none'})`);
  }
  throw new InvalidOptionError('config', `${configName(config)}${config.axis === 1 ? '' : ' with strided groups'} is not a llama.cpp type; the ggml quantizer (tensor "${tensor}") makes ${ggmlLadderText()}`);
}

function blockOf(type: GgmlTypeName): { elements: number; bytes: number; sub: number } {
  if (type in K_QUANT_SPECS) return { elements: QK_K, bytes: K_QUANT_SPECS[type as KQuantType].bytes, sub: K_QUANT_SPECS[type as KQuantType].sub };
  return { elements: LEGACY_BLOCK, bytes: LEGACY_LAYOUTS[type as LegacyType].bytes, sub: LEGACY_BLOCK };
}

/** Codes, multipliers and offsets of a tensor's blocks (rows of `columns` values, blocks along them). */
function fieldsOf(type: GgmlTypeName, bytes: Uint8Array, values: number): { codes: Uint8Array; scale: Float32Array; zero: Float32Array } {
  const block = blockOf(type);
  const codes = new Uint8Array(values);
  const scale = new Float32Array(values / block.sub);
  const zero = new Float32Array(values / block.sub);
  const nsub = block.elements / block.sub;
  const multiplier = new Float64Array(16);
  const offset = new Float64Array(16);
  for (let b = 0; b < values / block.elements; b++) {
    const blockCodes = codes.subarray(b * block.elements, (b + 1) * block.elements);
    if (type in K_QUANT_SPECS) {
      kQuantFields(type as KQuantType, bytes, b * block.bytes, blockCodes, multiplier, offset);
    } else {
      const f = legacyFields(type as LegacyType, bytes, b * block.bytes, blockCodes);
      multiplier[0] = f.multiplier;
      offset[0] = f.offset;
    }
    for (let j = 0; j < nsub; j++) {
      scale[b * nsub + j] = multiplier[j]!;
      zero[b * nsub + j] = offset[j]!;
    }
  }
  return { codes, scale, zero };
}

/** Quantizes a matrix as the llama.cpp type of `config` (llama.cpp's reference encoder for Q4_0, Q5_0 and Q8_0; layerquant's k-quant encoder, weighted by `importance` where given). */
export function quantizeGgml(weight: Pick<WeightTensor, 'name' | 'shape' | 'data'>, config: QuantConfig, importance?: Float32Array, solver: SubBlockSolver = 'least-squares'): QuantizedTensor {
  if (weight.shape.length !== 2) throw new ShapeMismatchError(weight.name, `has shape [${weight.shape.join(', ')}]; the ggml quantizer takes matrices`);
  const [rows, columns] = weight.shape as [number, number];
  const type = typeOf(config, weight.name, columns);
  const bytes = encodeGgml(type, weight.data, [rows, columns], { tensor: weight.name, ...(importance ? { importance } : {}), solver });
  const { codes, scale, zero } = fieldsOf(type, bytes, rows * columns);
  return Object.freeze({ name: weight.name, shape: [rows, columns] as [number, number], config, method: 'ggml', packed: packCodes(codes, rows, columns, config.bits), packing: PACKING, scale, zero });
}

/** The values of a ggml-quantized matrix: p * code - o per sub-block, as llama.cpp's decoder computes them. */
export function dequantizeGgml(q: QuantizedTensor): Float32Array {
  if (q.packing !== PACKING) throw new InvalidDataError(q.name, `packing "${q.packing}" is not supported; expected "${PACKING}"`);
  const [rows, columns] = q.shape;
  const codes = unpackCodes(q.packed, rows, columns, q.config.bits);
  const out = new Float32Array(rows * columns);
  const g = q.config.groupSize;
  for (let i = 0; i < out.length; i++) {
    const group = (i / g) | 0;
    out[i] = q.scale[group]! * codes[i]! - q.zero[group]!;
  }
  return out;
}

/**
 * The llama.cpp blocks of a ggml-quantized matrix, rows in `rowOrder` (row r of the output is source row rowOrder[r];
 * the q/k permutation): the bytes its quantize encoded. An InvalidDataError names the tensor where its scales are not
 * the exact products the quantizer makes (a checkpoint written with --scale-dtype f16 or u8).
 */
export function ggmlBlocks(q: QuantizedTensor, rowOrder?: Int32Array): { readonly type: GgmlTypeName; readonly bytes: Uint8Array } {
  const [rows, columns] = q.shape;
  const type = typeOf(q.config, q.name, columns);
  const block = blockOf(type);
  const codes = unpackCodes(q.packed, rows, columns, q.config.bits);
  const blocksPerRow = columns / block.elements;
  const rowBytes = blocksPerRow * block.bytes;
  const nsub = block.elements / block.sub;
  const out = new Uint8Array(rows * rowBytes);
  for (let r = 0; r < rows; r++) {
    const source = rowOrder ? rowOrder[r]! : r;
    for (let b = 0; b < blocksPerRow; b++) {
      const first = source * columns + b * block.elements;
      const group = first / block.sub;
      const at = r * rowBytes + b * block.bytes;
      const blockCodes = codes.subarray(first, first + block.elements);
      const ok = type in K_QUANT_SPECS
        ? writeKQuantFields(type as KQuantType, out, at, blockCodes, q.scale.subarray(group, group + nsub), q.zero.subarray(group, group + nsub))
        : writeLegacyFields(type as LegacyType, out, at, blockCodes, q.scale[group]!, q.zero[group]!);
      if (!ok) {
        throw new InvalidDataError(`tensor "${q.name}"`, `row ${source}, block ${b}: its scales and zeros are not the exact ${type} multipliers the ggml quantizer writes (was the checkpoint stored with --scale-dtype f16 or u8?); quantize it again with --scale-dtype f32`);
      }
    }
  }
  return { type, bytes: out };
}

/**
 * llama.cpp's imatrix of a matrix from its input Hessian H = 2 XᵀX / N: the mean squared activation of each input
 * channel, diag(H) / 2.
 */
export function importanceOfHessian(hessian: InputHessian, tensor: string, columns: number): Float32Array {
  if (hessian.columns !== columns) throw new ShapeMismatchError(tensor, `has rows of ${columns} values but its input Hessian is ${hessian.columns} x ${hessian.columns}`);
  return Float32Array.from({ length: columns }, (_, i) => hessian.data[i * columns + i]! / 2);
}

const imatrixOption: OptionDescriptor = Object.freeze({
  name: 'imatrix',
  flag: 'imatrix',
  type: 'boolean' as const,
  default: false,
  help: "weigh each input channel by its mean squared activation on the calibration text (llama.cpp's imatrix, collected in the layer pass with the layers before already quantized; needs --calib)",
});

const solverOption: OptionDescriptor = Object.freeze({
  name: 'kquantSolver',
  flag: 'kquant-solver',
  type: 'choice' as const,
  choices: ['least-squares', 'hqq'],
  default: 'least-squares',
  help: "how Q2_K, Q4_K and Q5_K choose each sub-block's scale and min: least-squares (the (weighted) squared error, as llama.cpp) or hqq (HQQ's l_p proximal solver of the zero, then the k-quant structure quantizes them)",
});

/**
 * The ggml quantizer; with `imatrix`, calibrated: each matrix's k-quant and legacy blocks minimize the error weighted
 * by its inputs' mean squares (the embedding units, given no Hessian, unweighted). `kquantSolver` `hqq` takes the
 * affine k-quants' sub-block scales and mins from HQQ's solver.
 */
export function createGgmlQuantizer(options: { readonly imatrix?: boolean; readonly kquantSolver?: SubBlockSolver } = {}): Quantizer {
  const solver = options.kquantSolver ?? 'least-squares';
  const base = { id: 'ggml', dequantize: dequantizeGgml, packedLayout: 'ggml' as const, zeroKinds: ['fractional', 'none'] as const };
  if (!options.imatrix) return Object.freeze({ ...base, quantize: (weight: WeightTensor, config: QuantConfig) => quantizeGgml(weight, config, undefined, solver) });
  return Object.freeze({
    ...base,
    calibration: 'hessian' as const,
    quantize: (weight: WeightTensor, config: QuantConfig, context?: QuantizeContext) => {
      if (!context?.hessian) {
        // embed_tokens (a lookup) and lm_head have no input the layer pass collects: unweighted, as llama.cpp's
        // token_embd without imatrix data
        if (isEmbeddingUnit(unitOfTensorName(weight.name)?.module ?? '')) return quantizeGgml(weight, config, undefined, solver);
        throw new InvalidOptionError('--calib', `the ggml quantizer with --imatrix weighs "${weight.name}" by its inputs on calibration text: give it with --calib <file>`);
      }
      return quantizeGgml(weight, config, importanceOfHessian(context.hessian, weight.name, weight.shape[weight.shape.length - 1]!), solver);
    },
  });
}

/** The ggml quantizer plug-in: llama.cpp's block types as configs (GGML_QUANTIZER_TYPES), with an optional imatrix. */
export const ggmlPlugin: QuantizerPlugin = defineQuantizer({
  ...createGgmlQuantizer(),
  description: `llama.cpp's block types, encoded as the GGUF export writes them: ${ggmlLadderText()} (checkpoints store their exact multipliers: --scale-dtype f32)`,
  options: [imatrixOption, solverOption],
  configure: (options) => createGgmlQuantizer({ imatrix: options.imatrix === true, kquantSolver: options.kquantSolver === 'hqq' ? 'hqq' : 'least-squares' }),
});
