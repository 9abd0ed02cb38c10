import { describe, expect, it } from 'vitest';
import { UnknownPluginError, createRegistry, matrixKey, matrixOfTensorName, parseMatrixKey } from './index.js';

describe('createRegistry', () => {
  it('is an instance per call, with no global state', () => {
    const a = createRegistry<{ id: string }>('quantizer', [{ id: 'rtn' }]);
    const b = createRegistry<{ id: string }>('quantizer');
    expect(a.ids()).toEqual(['rtn']);
    expect(b.ids()).toEqual([]);
    expect(() => b.get('rtn')).toThrow(UnknownPluginError);
    expect(() => a.register({ id: 'rtn' })).toThrow(/already registered/);
  });
});

describe('matrix keys', () => {
  it('round-trip between keys and tensor names', () => {
    expect(matrixKey(3, 'mlp.down_proj')).toBe('3.mlp.down_proj');
    expect(parseMatrixKey('31.self_attn.q_proj')).toEqual({ layer: 31, module: 'self_attn.q_proj' });
    expect(parseMatrixKey('x.mlp.up_proj')).toBeUndefined();
    expect(matrixOfTensorName('model.layers.12.mlp.gate_proj.weight')).toEqual({ layer: 12, module: 'mlp.gate_proj' });
    expect(matrixOfTensorName('model.layers.12.input_layernorm.weight')).toBeUndefined();
    expect(matrixOfTensorName('model.layers.1.self_attn.q_proj.bias')).toBeUndefined();
  });
});
