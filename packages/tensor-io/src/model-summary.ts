import { elementCount, matrixOfTensorName, type DType, type DecoderConfig } from '@layerquant/core';

// The model facts `layerquant inspect` prints, from config.json and the tensor list alone (browser-safe).

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

/** A model's facts from its config and its safetensors headers' tensor list (no weights read). */
export function summarizeModel(
  dir: string,
  config: DecoderConfig,
  tensors: readonly { readonly name: string; readonly dtype: DType; readonly shape: readonly number[]; readonly byteLength: number }[],
  files: number,
): ModelSummary {
  let params = 0;
  let linearParams = 0;
  let linearMatrices = 0;
  let bytes = 0;
  const dtypes: Partial<Record<DType, number>> = {};
  for (const t of tensors) {
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
    dir,
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
    tensors: tensors.length,
    dtypes: Object.freeze(dtypes),
    files,
    bytes,
  });
}

/**
 * The architecture rows `layerquant inspect` prints and the notebook shows, in that order, as [label, value]:
 * architecture, layers, sizes, heads, vocabulary (tied embeddings said). Browser-safe; integers grouped as en-US.
 */
export function architectureFacts(s: Pick<ModelSummary, 'architecture' | 'modelType' | 'numLayers' | 'hiddenSize' | 'intermediateSize' | 'numHeads' | 'numKeyValueHeads' | 'vocabSize' | 'tieWordEmbeddings'>): Array<[string, string]> {
  return [
    ['architecture', `${s.architecture} (${s.modelType})`],
    ['layers', String(s.numLayers)],
    ['hidden size', String(s.hiddenSize)],
    ['ffn size', String(s.intermediateSize)],
    ['heads', `${s.numHeads} (${s.numKeyValueHeads} key/value)`],
    ['vocabulary', `${s.vocabSize.toLocaleString('en-US')}${s.tieWordEmbeddings ? ' (tied embeddings)' : ''}`],
  ];
}
