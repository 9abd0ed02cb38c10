import {
  InvalidOptionError,
  configName,
  formatUnits,
  quantConfig,
  zeroKind,
  type FormatCostModel,
  type MatrixInfo,
  type QuantConfig,
  type Quantizer,
  type ZeroKind,
} from '@layerquant/core';
import { openModel } from '@layerquant/tensor-io';
import { basename } from 'node:path';
import { exactAffineType } from './affine-mapping.js';
import { fileMetadata, floatType, ggufTensorList } from './export-gguf.js';
import { GGML_QUANTIZER_TYPES, ggmlTypeOfConfig } from './ggml-quantizer.js';
import { ggufTensorBytes, type GgmlTypeName } from './ggml-types.js';
import { ggufLayout, type GgufTensorSpec } from './gguf-format.js';
import { LLAMA_FILE_TYPES } from './llama-names.js';

/**
 * The exact bytes of the .gguf file `quantize --format gguf` writes, as a format cost model the allocators spend:
 * each matrix at each config is the llama.cpp type its quantizer's blocks become (the ggml quantizer's own types;
 * an affine quantizer's exact legacy blocks, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0), and the whole file is laid out as the writer
 * lays it out (header, the very metadata and tokenizer, tensor table, alignment padding).
 */

/** The affine configs a GGUF legacy block holds code for code, at no wider a width than their own. */
const AFFINE_LADDER: readonly QuantConfig[] = Object.freeze([
  quantConfig(4, 32, { symmetric: true }),
  quantConfig(4, 32),
  quantConfig(4, 32, { roundZero: true }),
  quantConfig(5, 32, { symmetric: true }),
  quantConfig(5, 32),
  quantConfig(5, 32, { roundZero: true }),
  quantConfig(8, 32, { symmetric: true }),
]);

/** Bits of the codes a legacy type holds (a config with fewer bits would be stored wider). */
const LEGACY_BITS: Readonly<Record<string, number>> = Object.freeze({ Q4_0: 4, Q4_1: 4, Q5_0: 5, Q5_1: 5, Q8_0: 8 });

export interface GgufCostOptions {
  /** general.name (default: the model directory's name), as the export writes it. */
  readonly name?: string;
  /** llama.cpp's pre-tokenizer name, as the export is given it. */
  readonly tokenizerPre?: string;
}

export interface GgufCostModel extends FormatCostModel {
  readonly format: 'gguf';
  /** The type a unit is stored as at a config (null: its float type, F32 or F16). */
  typeOf(unit: MatrixInfo, config: QuantConfig | null): GgmlTypeName;
}

/** How a quantizer's configs become GGUF types, or why they cannot. */
function storageOf(quantizer: Pick<Quantizer, 'id' | 'packedLayout'>): { readonly candidates: readonly QuantConfig[]; readonly typeOf: (config: QuantConfig, columns: number) => GgmlTypeName | undefined } {
  if (quantizer.packedLayout === 'ggml') return { candidates: GGML_QUANTIZER_TYPES.map((e) => e.config), typeOf: ggmlTypeOfConfig };
  if (quantizer.packedLayout === 'affine') {
    return {
      candidates: AFFINE_LADDER,
      typeOf: (config, columns) => {
        const type = exactAffineType(config);
        return type && config.bits === LEGACY_BITS[type] && columns % 32 === 0 ? type : undefined;
      },
    };
  }
  throw new InvalidOptionError('--quantizer', `"${quantizer.id}" stores codes no GGUF block holds as they are, so a GGUF file's bytes cannot be allocated for it; use --quantizer ggml (llama.cpp's types, k-quants included) or an affine quantizer (rtn, hqq, gptq: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)`);
}

/**
 * The GGUF cost model of a model directory for a quantizer (its configs' types) under the export's options. Reads
 * the config, the tensor table and the tokenizer files; holds no weights.
 */
export async function ggufCostModel(modelDir: string, quantizer: Pick<Quantizer, 'id' | 'packedLayout'>, options: GgufCostOptions = {}): Promise<GgufCostModel> {
  const storage = storageOf(quantizer);
  const model = await openModel(modelDir);
  const { config, layout } = model;
  const tensors = ggufTensorList(config, layout);
  let floatTypes: Map<string, GgmlTypeName>;
  try {
    floatTypes = new Map(tensors.filter((t) => t.hfName).map((t) => [t.hfName!, floatType(model.checkpoint.info(t.hfName!).dtype)]));
  } finally {
    await model.checkpoint.close();
  }
  const metadata = await fileMetadata(modelDir, config, options.name ?? basename(modelDir), LLAMA_FILE_TYPES.F32, options.tokenizerPre);
  const { units, unitOf } = formatUnits(config, layout);
  const unitByName = new Map(units.map((u) => [u.name, u]));
  const unsupported = (unit: MatrixInfo, c: QuantConfig): string | undefined => {
    const u = unitOf(unit);
    const type = storage.typeOf(c, u.shape[1]);
    if (type) return undefined;
    const here = storage.candidates.filter((k) => storage.typeOf(k, u.shape[1]));
    return `${quantizer.id} at ${configName(c)} has no GGUF type that holds its codes as they are in rows of ${u.shape[1]} values (${u.name}); there it stores ${here.map((k) => `${configName(k)} as ${storage.typeOf(k, u.shape[1])}`).join(', ') || 'nothing'}`;
  };
  const typeOf = (unit: MatrixInfo, c: QuantConfig | null): GgmlTypeName => {
    const u = unitOf(unit);
    if (c === null) return floatTypes.get(u.name)!;
    const why = unsupported(unit, c);
    if (why) throw new InvalidOptionError('config', why);
    return storage.typeOf(c, u.shape[1])!;
  };
  return Object.freeze({
    format: 'gguf' as const,
    label: `the shipped GGUF file (${options.name ?? basename(modelDir)}.gguf)`,
    units,
    nativeLadder: (unit: MatrixInfo, zeroKinds?: readonly ZeroKind[]) => storage.candidates.filter((c) => (zeroKinds === undefined || zeroKinds.includes(zeroKind(c))) && unsupported(unit, c) === undefined),
    unsupported,
    typeOf,
    unitBytes: (unit: MatrixInfo, c: QuantConfig | null) => {
      const u = unitOf(unit);
      return ggufTensorBytes(typeOf(unit, c), u.shape, u.name);
    },
    fileBytes: (configOf: (unit: MatrixInfo) => QuantConfig | null) => {
      const specs: GgufTensorSpec[] = tensors.map(({ name, hfName, shape }) => {
        const unit = hfName ? unitByName.get(hfName) : undefined;
        const type: GgmlTypeName = shape.length === 1 || !hfName ? 'F32' : unit ? typeOf(unit, configOf(unit)) : floatTypes.get(hfName)!;
        return { name, type, shape };
      });
      return ggufLayout(metadata, specs).fileBytes;
    },
  });
}
