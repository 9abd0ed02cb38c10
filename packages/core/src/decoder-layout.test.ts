import { describe, expect, it } from 'vitest';
import {
  InvalidDataError,
  InvalidOptionError,
  MissingTensorError,
  ShapeMismatchError,
  UnsupportedArchitectureError,
  checkContextLength,
  modelMatrixParams,
  validateCheckpoint,
  UnsupportedDTypeError,
  type DecoderConfig,
} from './index.js';

const qwen2: DecoderConfig = Object.freeze({
  architecture: 'Qwen2ForCausalLM', modelType: 'qwen2', hiddenSize: 16, intermediateSize: 40, numLayers: 2, numHeads: 4,
  numKeyValueHeads: 2, headDim: 4, vocabSize: 50, rmsNormEps: 1e-6, ropeTheta: 1e6, ropeScaling: undefined,
  maxPositionEmbeddings: 64, tieWordEmbeddings: true, attentionBias: true, mlpBias: false, bosTokenId: undefined, eosTokenId: undefined,
});

/** A Qwen2 checkpoint's tensors, written out by hand from the Hugging Face layout (q/k/v biases, GQA, tied embeddings). */
function qwen2Tensors(layers = 2): Array<{ name: string; shape: number[] }> {
  const tensors = [{ name: 'model.embed_tokens.weight', shape: [50, 16] }, { name: 'model.norm.weight', shape: [16] }];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}.`;
    tensors.push(
      { name: `${p}input_layernorm.weight`, shape: [16] }, { name: `${p}post_attention_layernorm.weight`, shape: [16] },
      { name: `${p}self_attn.q_proj.weight`, shape: [16, 16] }, { name: `${p}self_attn.q_proj.bias`, shape: [16] },
      { name: `${p}self_attn.k_proj.weight`, shape: [8, 16] }, { name: `${p}self_attn.k_proj.bias`, shape: [8] },
      { name: `${p}self_attn.v_proj.weight`, shape: [8, 16] }, { name: `${p}self_attn.v_proj.bias`, shape: [8] },
      { name: `${p}self_attn.o_proj.weight`, shape: [16, 16] },
      { name: `${p}mlp.gate_proj.weight`, shape: [40, 16] }, { name: `${p}mlp.up_proj.weight`, shape: [40, 16] }, { name: `${p}mlp.down_proj.weight`, shape: [16, 40] },
    );
  }
  return tensors;
}

describe('validateCheckpoint', () => {
  it('accepts a Qwen2-shaped checkpoint (biases, GQA, tied embeddings) and ignores extra buffers', () => {
    const layout = validateCheckpoint(qwen2, { tensors: [...qwen2Tensors(), { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', shape: [2] }] });
    expect(layout).toEqual({ qkvBias: true, oBias: false, mlpBias: false, tiedEmbeddings: true });
  });

  it('names the field, tensor and file that disagree', () => {
    const tensors = qwen2Tensors();
    expect(() => validateCheckpoint({ ...qwen2, numLayers: 1 }, { tensors, dir: '/m' }, '/m/config.json')).toThrow(InvalidDataError);
    expect(() => validateCheckpoint({ ...qwen2, numLayers: 1 }, { tensors, dir: '/m' }, '/m/config.json')).toThrow(/\/m\/config\.json: num_hidden_layers is 1 but \/m has 2 layers/);
    expect(() => validateCheckpoint({ ...qwen2, numLayers: 3 }, { tensors })).toThrow(MissingTensorError);
    expect(() => validateCheckpoint({ ...qwen2, numLayers: 3 }, { tensors })).toThrow(/model\.layers\.2\.input_layernorm\.weight.*num_hidden_layers 3 but the checkpoint has 2 layers/);
    expect(() => validateCheckpoint({ ...qwen2, intermediateSize: 32 }, { tensors })).toThrow(ShapeMismatchError);
    expect(() => validateCheckpoint({ ...qwen2, numKeyValueHeads: 4 }, { tensors })).toThrow(/k_proj\.weight": has shape \[8, 16\].*needs \[16, 16\]/);
    expect(() => validateCheckpoint(qwen2, { tensors: tensors.filter((t) => t.name !== 'model.layers.1.self_attn.v_proj.bias') })).toThrow(/v_proj\.bias" not found/);
    expect(() => validateCheckpoint({ ...qwen2, architecture: 'MixtralForCausalLM', modelType: 'mixtral' }, { tensors })).toThrow(UnsupportedArchitectureError);
  });

  it('refuses a tensor the decoder reads that is stored as integers (only float dtypes are weights), naming file and tensor', () => {
    const floats = qwen2Tensors().map((t) => ({ ...t, dtype: 'BF16', file: '/m/model.safetensors' }));
    expect(() => validateCheckpoint(qwen2, { tensors: floats })).not.toThrow();
    for (const dtype of ['I16', 'I8', 'U8', 'I32', 'I64', 'BOOL']) {
      const tensors = floats.map((t) => (t.name === 'model.layers.1.self_attn.k_proj.bias' ? { ...t, dtype } : t));
      expect(() => validateCheckpoint(qwen2, { tensors })).toThrow(UnsupportedDTypeError);
      expect(() => validateCheckpoint(qwen2, { tensors })).toThrow(new RegExp(`^/m/model\\.safetensors \\(tensor "model\\.layers\\.1\\.self_attn\\.k_proj\\.bias"\\): dtype "${dtype}" is not supported \\(a weight is a float`));
    }
    // An integer buffer the decoder does not read (a rotary cache, position ids) is not its business.
    expect(() => validateCheckpoint(qwen2, { tensors: [...floats, { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', shape: [2], dtype: 'I64' }] })).not.toThrow();
  });
});

describe('modelMatrixParams and checkContextLength', () => {
  it('lists 7 matrices per layer with their sizes, and refuses a context beyond max_position_embeddings', () => {
    const params = modelMatrixParams(qwen2);
    expect(params.size).toBe(14);
    expect(params.get('1.self_attn.k_proj')).toBe(8 * 16);
    expect(params.get('0.mlp.down_proj')).toBe(16 * 40);
    expect(() => checkContextLength(64, qwen2)).not.toThrow();
    expect(() => checkContextLength(65, qwen2)).toThrow(InvalidOptionError);
    expect(() => checkContextLength(65, qwen2, '--seqlen', true)).not.toThrow();
  });
});
