import { elementCount, matrixOfTensorName, type DType } from '@layerquant/core';
import { openModel } from './model.js';

export interface ModelSummary {
  readonly dir: string;
  readonly architecture: string;
  readonly modelType: string;
  readonly numLayers: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHeads: number;
  readonly numKeyValueHeads: number;
  readonly vocabSize: number;
  readonly tieWordEmbeddings: boolean;
  readonly maxPositionEmbeddings: number;
  /** All parameters stored in the checkpoint. */
  readonly params: number;
  /** Parameters of the quantizable linear matrices (q,k,v,o,gate,up,down of every layer). */
  readonly linearParams: number;
  readonly linearMatrices: number;
  readonly tensors: number;
  /** Tensor count per stored dtype. */
  readonly dtypes: Readonly<Partial<Record<DType, number>>>;
  readonly files: number;
  readonly bytes: number;
}

/**
 * What `layerquant inspect` prints: read from config.json and the safetensors headers only (no weights), after the
 * one config-vs-tensors validation (openModel).
 */
export async function inspectModel(dir: string): Promise<ModelSummary> {
  const { config, checkpoint } = await openModel(dir);
  try {
    let params = 0;
    let linearParams = 0;
    let linearMatrices = 0;
    let bytes = 0;
    const dtypes: Partial<Record<DType, number>> = {};
    for (const t of checkpoint.tensors) {
      const n = elementCount(t.shape);
      params += n;
      bytes += t.byteLength;
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
      if (matrixOfTensorName(t.name)) {
        linearParams += n;
        linearMatrices++;
      }
    }
    return Object.freeze({
      dir: checkpoint.dir,
      architecture: config.architecture,
      modelType: config.modelType,
      numLayers: config.numLayers,
      hiddenSize: config.hiddenSize,
      intermediateSize: config.intermediateSize,
      numHeads: config.numHeads,
      numKeyValueHeads: config.numKeyValueHeads,
      vocabSize: config.vocabSize,
      tieWordEmbeddings: config.tieWordEmbeddings,
      maxPositionEmbeddings: config.maxPositionEmbeddings,
      params,
      linearParams,
      linearMatrices,
      tensors: checkpoint.tensors.length,
      dtypes: Object.freeze(dtypes),
      files: checkpoint.files.length,
      bytes,
    });
  } finally {
    await checkpoint.close();
  }
}
