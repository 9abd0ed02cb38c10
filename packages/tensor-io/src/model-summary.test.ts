import { describe, expect, it } from 'vitest';
import { architectureFacts, summarizeModel } from './model-summary.js';
import type { DecoderConfig } from '@layerquant/core';

describe('architectureFacts', () => {
  it('gives inspect\'s architecture rows from the config, tied embeddings said, integers grouped', () => {
    const config = {
      architecture: 'Qwen2ForCausalLM', modelType: 'qwen2', numLayers: 3, hiddenSize: 96, intermediateSize: 160, numHeads: 6, numKeyValueHeads: 2, headDim: 16, vocabSize: 151936,
      rmsNormEps: 1e-6, ropeTheta: 1e6, ropeScaling: undefined, maxPositionEmbeddings: 4096, tieWordEmbeddings: true, attentionBias: true, mlpBias: false, bosTokenId: 0, eosTokenId: 0,
    } as DecoderConfig;
    const facts = architectureFacts(summarizeModel('m', config, [], 1));
    expect(facts).toEqual([
      ['architecture', 'Qwen2ForCausalLM (qwen2)'],
      ['layers', '3'],
      ['hidden size', '96'],
      ['ffn size', '160'],
      ['heads', '6 (2 key/value)'],
      ['vocabulary', '151,936 (tied embeddings)'],
    ]);
    expect(architectureFacts(summarizeModel('m', { ...config, tieWordEmbeddings: false }, [], 1)).at(-1)).toEqual(['vocabulary', '151,936']);
  });
});
