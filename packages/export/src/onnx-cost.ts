import {
  EMBED_TOKENS,
  LM_HEAD,
  formatUnits,
  configName,
  expectedShapes,
  matrixKey,
  quantConfig,
  unitOfTensorName,
  zeroKind,
  type DecoderConfig,
  type DecoderLayout,
  type FormatCostModel,
  type MatrixInfo,
  type QuantConfig,
  type ZeroKind,
} from '@layerquant/core';
import {
  MICROSOFT_DOMAIN,
  OnnxDataType,
  buildDecoderGraph,
  encodeModelWithExternalData,
  encodedInitializerLength,
  encodedModelLength,
  encodedNodeLength,
  type ActivationType,
  type DecoderOperators,
  type GraphWeight,
  type MatMulNBitsWeight,
  type OnnxDataTypeValue,
  type OnnxModel,
  type OnnxNode,
} from '@layerquant/runtime/graph';

/**
 * The exact bytes of the ONNX file `layerquant export --format onnx` writes (onnx/model_q4.onnx and, above 2 GiB,
 * its external data), as a format cost model the allocators spend: each unit's initializers and nodes at each
 * config, and the whole file by encoding the very graph the export builds with zero-filled weights of the right sizes
 * (views of one buffer: no memory beyond the graph's nodes). Browser-safe.
 */

/** The bit widths com.microsoft MatMulNBits (and GatherBlockQuantized) has kernels for (onnxruntime 1.30, CPU and WebAssembly). */
export const MATMUL_NBITS_BITS = Object.freeze([2, 4, 8] as const);
export type NativeBits = (typeof MATMUL_NBITS_BITS)[number];

/** The block sizes of the default ladder (MatMulNBits takes any power of two >= 16 that divides the row). */
export const ONNX_LADDER_GROUPS = Object.freeze([32, 64, 128] as const);

export type ScaleType = 'float32' | 'float16';

/**
 * The scales (and zero corrections) an export stores unless told otherwise: float16, half the bytes of float32 at an
 * error far below the quantization's own (a scale's relative rounding is 2^-11; bench/README.md has the measured
 * perplexity). With float32 activations the graph casts them once; onnxruntime folds the cast when it loads the file.
 */
export const DEFAULT_EXPORT_SCALE_TYPE: ScaleType = 'float16';
export type FloatType = 'float32' | 'float16';

/** The narrowest native width that holds `bits`-bit codes unchanged (1 -> 2, 3 -> 4, 5 and 6 -> 8), or undefined above 8. */
export function nativeBits(bits: number): NativeBits | undefined {
  return MATMUL_NBITS_BITS.find((b) => b >= bits);
}

/** Why MatMulNBits cannot hold a [rows, columns] matrix at a config, or undefined. */
export function matMulNBitsProblem(columns: number, config: QuantConfig): string | undefined {
  if (config.axis !== 1) return `strided groups (axis 0) have no MatMulNBits form: its blocks run along the input dimension; quantize with --axis 1`;
  const block = config.groupSize;
  if (block < 16 || (block & (block - 1)) !== 0 || columns % block !== 0) {
    return `group size ${block} cannot be a MatMulNBits block (a power of two >= 16 that divides the row length ${columns}); use 32, 64 or 128`;
  }
  if (nativeBits(config.bits) === undefined) return `${config.bits}-bit codes do not fit MatMulNBits (at most 8 bits)`;
  return undefined;
}

export interface OnnxFileOptions {
  /** Activations and KV cache (float32: `model_q4.onnx`; float16: `model_q4f16.onnx`). */
  readonly activations?: ActivationType;
  /** MatMulNBits / GatherBlockQuantized scales, and the zero corrections (default DEFAULT_EXPORT_SCALE_TYPE, float16). */
  readonly scaleType?: ScaleType;
  /** Float embed_tokens and lm_head (default: the activation type). */
  readonly embeddingType?: FloatType;
  /** MatMulNBits accuracy_level (no effect on bytes; kept so the graph is the export's). */
  readonly accuracyLevel?: 0 | 4;
  /** Initializer bytes above which the weights go to an external data file (the export's EXTERNAL_DATA_THRESHOLD). */
  readonly externalDataThreshold?: number;
  /** The operator set of the graph (default DEFAULT_OPERATORS, the export's): the exact file is that graph's. */
  readonly operators?: DecoderOperators;
}

/** The operator set an export uses unless told otherwise (the runtime README says which runtimes run which). */
export const DEFAULT_OPERATORS: DecoderOperators = 'fused';

/** Above this many bytes of initializers the weights go to an external data file (protobuf's 2 GiB limit). */
export const EXTERNAL_DATA_THRESHOLD = 2 ** 31 - 2 ** 26;

/** Zero-filled views of one growing buffer: weights of the right sizes that cost no memory until read (they never are). */
class ZeroViews {
  private buffer = new ArrayBuffer(0);
  private view(bytes: number): ArrayBuffer {
    if (bytes > this.buffer.byteLength) this.buffer = new ArrayBuffer(bytes);
    return this.buffer;
  }
  u8(length: number): Uint8Array {
    return new Uint8Array(this.view(length), 0, length);
  }
  u16(length: number): Uint16Array {
    return new Uint16Array(this.view(2 * length), 0, length);
  }
  f32(length: number): Float32Array {
    return new Float32Array(this.view(4 * length), 0, length);
  }
}

/** A node with output names as long as the graph builder's generated ones (`matmul_1234`). */
function node(opType: string, inputs: readonly string[], attributes: OnnxNode['attributes'] = {}, name?: string, domain?: string): OnnxNode {
  return { opType, inputs, outputs: [`${opType.toLowerCase()}_1234`], attributes, ...(name ? { name } : {}), ...(domain ? { domain } : {}) };
}

export interface OnnxCostModel extends FormatCostModel {
  readonly activations: ActivationType;
  readonly scaleType: ScaleType;
  readonly embeddingType: FloatType;
  /** The graph the export writes for an allocation, its weights zero-filled views of the right sizes (never read). */
  skeleton(configOf: (unit: MatrixInfo) => QuantConfig | null): OnnxModel;
  /** Bytes of onnx/<file> and of its external data file for an allocation (their sum is fileBytes). */
  files(configOf: (unit: MatrixInfo) => QuantConfig | null): { readonly model: number; readonly externalData: number };
}

/** The ONNX cost model of a model (its config and layout) under the export's options. */
export function onnxCostModel(config: DecoderConfig, layout: DecoderLayout, options: OnnxFileOptions = {}): OnnxCostModel {
  const activations = options.activations ?? 'float32';
  const scaleType = options.scaleType ?? DEFAULT_EXPORT_SCALE_TYPE;
  const embeddingType = options.embeddingType ?? activations;
  const accuracyLevel = options.accuracyLevel ?? 4;
  const operators = options.operators ?? DEFAULT_OPERATORS;
  const threshold = options.externalDataThreshold ?? EXTERNAL_DATA_THRESHOLD;
  const actType = activations === 'float16' ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
  const scaleDataType = scaleType === 'float16' ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
  const scaleBytes = scaleType === 'float16' ? 2 : 4;
  const embedDataType = embeddingType === 'float16' ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
  const shapes = expectedShapes(config, layout);

  const { units, unitOf } = formatUnits(config, layout);
  const byKey = new Map(units.map((u) => [u.key, u]));
  // A tied lm_head reads embed_tokens: one unit, used by the lookup and by the output projection.
  const tied = layout.tiedEmbeddings;

  const castBytes = (input: string) => encodedNodeLength(node('Cast', [input], { to: actType }));

  /** MatMulNBits' initializers and nodes for a [n, k] weight named `name` (node `nodeName`). */
  function packedLinearBytes(name: string, nodeName: string, n: number, k: number, c: QuantConfig, withNode = true, withInitializers = true): number {
    const bits = nativeBits(c.bits)!;
    const blocks = k / c.groupSize;
    let bytes = 0;
    if (withInitializers) {
      bytes += encodedInitializerLength({ name: `${name}.qweight`, dataType: OnnxDataType.UINT8, dims: [n, blocks, (c.groupSize * bits) / 8] }, (n * k * bits) / 8);
      bytes += encodedInitializerLength({ name: `${name}.scales`, dataType: scaleDataType, dims: [n, blocks] }, n * blocks * scaleBytes);
      if (scaleDataType !== actType) bytes += castBytes(`${name}.scales`);
      if (!c.symmetric) {
        const zeroBytes = Math.ceil((blocks * bits) / 8);
        bytes += encodedInitializerLength({ name: `${name}.zero_points`, dataType: OnnxDataType.UINT8, dims: [n, zeroBytes] }, n * zeroBytes);
      }
    }
    if (withNode) {
      const inputs = ['x_1234', `${name}.qweight`, 'cast_1234', ...(c.symmetric ? [] : [`${name}.zero_points`])];
      bytes += encodedNodeLength(node('MatMulNBits', inputs, { K: k, N: n, bits, block_size: c.groupSize, accuracy_level: accuracyLevel }, nodeName, MICROSOFT_DOMAIN));
      if (zeroKind(c) === 'fractional') {
        // The correction: its initializer, a cast, Y - S @ C (one Gemm), and (counted for each user; shared per input)
        // the block sums.
        bytes += encodedInitializerLength({ name: `${name}.zero_correction`, dataType: scaleDataType, dims: [blocks, n] }, blocks * n * scaleBytes);
        if (scaleDataType !== actType) bytes += castBytes(`${name}.zero_correction`);
        bytes += encodedNodeLength(node('Gemm', ['reducesum_1234', 'cast_1234', 'matmulnbits_1234'], { alpha: { float: -1 }, beta: { float: 1 } }));
        bytes += encodedNodeLength(node('Reshape', ['x_1234', 'ints_1234'])) + encodedNodeLength(node('ReduceSum', ['reshape_1234', 'ints_1234'], { keepdims: 0 }));
        bytes += encodedInitializerLength({ name: 'ints_1234', dataType: OnnxDataType.INT64, dims: [3] }, 24);
        bytes += encodedInitializerLength({ name: 'ints_1234', dataType: OnnxDataType.INT64, dims: [1] }, 8);
      }
    }
    return bytes;
  }

  function floatBytes(name: string, n: number, k: number, type: OnnxDataTypeValue): number {
    return encodedInitializerLength({ name, dataType: type, dims: [n, k] }, n * k * (type === OnnxDataType.FLOAT16 ? 2 : 4)) + (type !== actType ? castBytes(name) : 0);
  }

  function unitBytes(unit: MatrixInfo, c: QuantConfig | null): number {
    const u = unitOf(unit);
    const [n, k] = u.shape;
    const gemm = encodedNodeLength(node('Gemm', ['x_1234', 'cast_1234'], { transB: 1 }));
    if (u.module === 'embed_tokens') {
      const lookup = encodedNodeLength(node('Gather', [EMBED_TOKENS, 'input_ids'])) + encodedNodeLength(node('Cast', ['gather_1234'], { to: actType }));
      if (c === null) return floatBytes(EMBED_TOKENS, n, k, embedDataType) + lookup + (tied ? gemm : 0);
      const bits = nativeBits(c.bits)!;
      const gather =
        encodedNodeLength(node('Reshape', [`${EMBED_TOKENS}.qweight`, 'ints_1234'])) +
        encodedInitializerLength({ name: 'ints_1234', dataType: OnnxDataType.INT64, dims: [2] }, 16) +
        encodedNodeLength(node('GatherBlockQuantized', ['reshape_1234', 'input_ids', `${EMBED_TOKENS}.scales`, `${EMBED_TOKENS}.zero_points`], { gather_axis: 0, quantize_axis: 1, block_size: c.groupSize, bits }, `${EMBED_TOKENS}.gather`, MICROSOFT_DOMAIN)) +
        (scaleDataType !== actType ? castBytes('gatherblockquantized_1234') : 0);
      return packedLinearBytes(EMBED_TOKENS, LM_HEAD, n, k, c, tied) + gather;
    }
    if (c === null) {
      const type = u.module === 'lm_head' ? embedDataType : OnnxDataType.FLOAT;
      return floatBytes(u.name, n, k, type) + gemm;
    }
    return packedLinearBytes(u.name, u.module === 'lm_head' ? LM_HEAD : u.name, n, k, c);
  }

  function unsupported(unit: MatrixInfo, c: QuantConfig): string | undefined {
    const u = unitOf(unit);
    const problem = matMulNBitsProblem(u.shape[1], c);
    if (problem) return problem;
    if (u.module === 'embed_tokens' && zeroKind(c) === 'fractional') {
      return `the embedding lookup (GatherBlockQuantized) takes integer zero points only; use ${configName({ ...c, roundZero: true })} or ${configName({ ...c, symmetric: true })}`;
    }
    return undefined;
  }

  function nativeLadder(unit: MatrixInfo, zeroKinds: readonly ZeroKind[] = ['fractional', 'integer']): QuantConfig[] {
    const u = unitOf(unit);
    const configs: QuantConfig[] = [];
    // 32, 64 and 128 where they divide the row; else the largest power of two >= 16 that does (small test models).
    let groups: number[] = ONNX_LADDER_GROUPS.filter((g) => u.shape[1] % g === 0);
    if (groups.length === 0) {
      let g = 16;
      while (u.shape[1] % (2 * g) === 0) g *= 2;
      groups = u.shape[1] % g === 0 ? [g] : [];
    }
    for (const bits of MATMUL_NBITS_BITS) {
      for (const group of groups) {
        for (const zero of zeroKinds) {
          const c = quantConfig(bits, group, { roundZero: zero === 'integer', symmetric: zero === 'none' });
          if (!unsupported(u, c)) configs.push(c);
        }
      }
    }
    return configs.sort((a, b) => unitBytes(u, a) - unitBytes(u, b));
  }

  /** The graph weights of an allocation: zero-filled views, packed where a unit has a config. */
  function skeletonWeights(configOf: (unit: MatrixInfo) => QuantConfig | null): Map<string, GraphWeight> {
    const zeros = new ZeroViews();
    const weights = new Map<string, GraphWeight>();
    for (const [name, shape] of shapes) {
      const parsed = unitOfTensorName(name);
      const unit = parsed ? byKey.get(matrixKey(parsed.layer, parsed.module)) : undefined;
      const c = unit ? configOf(unit) : null;
      const count = shape.reduce((a, b) => a * b, 1);
      if (!c) {
        const half = (name === EMBED_TOKENS || name === LM_HEAD) && embeddingType === 'float16';
        weights.set(name, half ? { format: 'float16', data: zeros.u16(count) } : zeros.f32(count));
        continue;
      }
      const why = unsupported(unit!, c);
      if (why) throw new RangeError(`${name} at ${configName(c)}: ${why}`);
      const [n, k] = [shape[0]!, shape[1]!];
      const bits = nativeBits(c.bits)!;
      const blocks = k / c.groupSize;
      const packed: MatMulNBitsWeight = {
        format: 'matmul-nbits',
        bits,
        blockSize: c.groupSize,
        shape: [n, k],
        codes: zeros.u8((n * k * bits) / 8),
        scales: scaleType === 'float16' ? zeros.u16(n * blocks) : zeros.f32(n * blocks),
        ...(c.symmetric ? {} : { zeroPoints: zeros.u8(n * Math.ceil((blocks * bits) / 8)) }),
        ...(zeroKind(c) === 'fractional' ? { correction: scaleType === 'float16' ? zeros.u16(n * blocks) : zeros.f32(n * blocks) } : {}),
      };
      weights.set(name, packed);
    }
    return weights;
  }

  function skeleton(configOf: (unit: MatrixInfo) => QuantConfig | null): OnnxModel {
    // The fused graph stacks q/k/v and gate/up of equal configs into one initializer: those few are real copies of
    // the zero views (the per-unit bytes above count each matrix's own MatMulNBits; the file is exact).
    return buildDecoderGraph(config, layout, { weights: skeletonWeights(configOf), kvCache: true, activations, accuracyLevel, operators }).toModel();
  }

  function files(configOf: (unit: MatrixInfo) => QuantConfig | null): { model: number; externalData: number } {
    const model = skeleton(configOf);
    const initializerBytes = model.graph.initializers.reduce((sum, t) => sum + t.data.byteLength, 0);
    if (initializerBytes <= threshold) return { model: encodedModelLength(model), externalData: 0 };
    const encoded = encodeModelWithExternalData(model, 'model.onnx_data');
    return { model: encoded.model.byteLength, externalData: encoded.dataBytes };
  }

  return Object.freeze({
    format: 'onnx',
    label: `the shipped ONNX file (onnx/${activations === 'float16' ? 'model_q4f16' : 'model_q4'}.onnx${scaleType === 'float16' ? ', fp16 scales' : ''})`,
    units: Object.freeze(units),
    activations,
    scaleType,
    embeddingType,
    nativeLadder,
    unsupported,
    unitBytes,
    files,
    skeleton,
    fileBytes: (configOf: (unit: MatrixInfo) => QuantConfig | null) => {
      const f = files(configOf);
      return f.model + f.externalData;
    },
  });
}
