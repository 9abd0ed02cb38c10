import { InvalidDataError, modelMatrixParams, type DecoderConfig } from '@layerquant/core';
import { shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseFnormCsv, parseKurtosisCsv, parseSensitivityCsv, type ModelStats } from './stats.js';
import { validateStats } from './validate-stats.js';

// The shipped model's own config (32 layers, hidden 256, 4 heads of 64, 2 KV heads, ffn 640), read from its file.
const raw = JSON.parse(readFileSync(join(shippedModelDir, 'config.json'), 'utf8')) as Record<string, number>;
const config = {
  numLayers: raw.num_hidden_layers!, hiddenSize: raw.hidden_size!, intermediateSize: raw.intermediate_size!, numHeads: raw.num_attention_heads!,
  numKeyValueHeads: raw.num_key_value_heads!, headDim: raw.hidden_size! / raw.num_attention_heads!, vocabSize: raw.vocab_size!,
} as DecoderConfig;
const model = { matrices: modelMatrixParams(config), name: 'llama-brown-26m' };
const fnormText = readFileSync(join(shippedOraclesDir, 'fnorm.csv'), 'utf8');
const sensitivityText = readFileSync(join(shippedOraclesDir, 'sensitivity.csv'), 'utf8');
const lines = (text: string) => text.trimEnd().split('\n');

function stats(fnorm: string, sensitivity = sensitivityText): ModelStats {
  return { source: 'oracles', fnorm: parseFnormCsv(fnorm, 'fnorm.csv'), sensitivity: parseSensitivityCsv(sensitivity, 'sensitivity.csv') };
}

describe('validateStats', () => {
  it('accepts the shipped oracles for the shipped model (224 matrices x 12 configs, 32 layers)', () => {
    expect(model.matrices.size).toBe(224);
    expect(() => validateStats(stats(fnormText), model)).not.toThrow();
    expect(() => validateStats(stats(fnormText))).not.toThrow();
  });

  it('rejects an fnorm table cut at a layer boundary, against the model (the tables alone cannot tell)', () => {
    const [header, ...rows] = lines(fnormText);
    const cut = [header, ...rows.filter((r) => Number(r.split(',')[0]) < 19)].join('\n');
    expect(() => validateStats({ fnorm: parseFnormCsv(cut) })).not.toThrow();
    expect(() => validateStats({ source: 'oracles', fnorm: parseFnormCsv(cut) }, model)).toThrow(/fnorm\.csv: has no row for matrix 19\.self_attn\.q_proj of the model llama-brown-26m/);
    // ... and against a full sensitivity table when no model is given.
    expect(() => validateStats(stats(cut))).toThrow(/covers 19 layers but .*fnorm\.csv covers 32|covers 32 layers but .*fnorm\.csv covers 19/);
  });

  it('rejects a missing config row, an extra layer, wrong sizes and a sensitivity layer missing', () => {
    const [header, ...rows] = lines(fnormText);
    const noConfig = [header, ...rows.filter((r) => !r.startsWith('7,mlp.down_proj,3,64,'))].join('\n');
    expect(() => validateStats(stats(noConfig), model)).toThrow(InvalidDataError);
    expect(() => validateStats(stats(noConfig), model)).toThrow(/no b3g64 row for matrix 7\.mlp\.down_proj/);
    const extra = [header, ...rows, ...rows.filter((r) => r.startsWith('31,')).map((r) => r.replace(/^31,/, '32,'))].join('\n');
    expect(() => validateStats(stats(extra), model)).toThrow(/rows for matrix 32\.self_attn\.q_proj, which llama-brown-26m does not have/);
    const resized = [header, ...rows.map((r) => (r.startsWith('0,self_attn.q_proj,') ? r.replace(',65536,', ',65537,') : r))].join('\n');
    expect(() => validateStats(stats(resized), model)).toThrow(/matrix 0\.self_attn\.q_proj has params 65537 but 65536/);
    const [sHeader, ...sRows] = lines(sensitivityText);
    const noLayer = [sHeader, ...sRows.filter((r) => !(r.includes(',mlp_down,') && r.split(',')[5] === '12'))].join('\n');
    expect(() => validateStats(stats(fnormText, noLayer), model)).toThrow(/sensitivity\.csv: has no mlp_down row for layer 12/);
  });
});

describe('statistics that lie (issue 27)', () => {
  it('refuses memmb values that are not what the row\'s params and config give (with or without the model), naming matrix and config', () => {
    const [header, ...rows] = lines(fnormText);
    // The sweep's case: every size a third of the truth, so mxq "fits" 3.25 bits with an 8.51-bit allocation.
    const lying = [header, ...rows.map((r) => {
      const f = r.split(',');
      f[7] = String(Number(f[7]) / 3);
      return f.join(',');
    })].join('\n');
    expect(() => validateStats(stats(lying), model)).toThrow(InvalidDataError);
    expect(() => validateStats(stats(lying), model)).toThrow(/oracles\/fnorm\.csv: matrix 0\.self_attn\.q_proj b2g128 has memmb 0\.0055389\d*, but 65536 weights at that config take 0\.0166168212890625 MiB/);
    expect(() => validateStats(stats(lying))).toThrow(/has memmb .* but 65536 weights at that config take/);
    // One row off by one ulp of a printed float is Python's rounding, not a lie.
    const rounded = [header, ...rows.map((r, i) => {
      if (i !== 5) return r;
      const f = r.split(',');
      f[7] = String(Number(f[7]) * (1 + 2 ** -50));
      return f.join(',');
    })].join('\n');
    expect(() => validateStats(stats(rounded), model)).not.toThrow();
  });

  it('refuses a second kurtosis.csv row for a matrix (the last would win) and a NaN in an optional fnorm column', () => {
    const kurtosis = 'module,layer,param_count,kurtosis\nself_attn.q_proj,0,65536,3.1\nself_attn.k_proj,0,32768,3.2\nself_attn.q_proj,0,65536,9.9\n';
    expect(() => parseKurtosisCsv(kurtosis, 'kurtosis.csv')).toThrow(/kurtosis\.csv:4: duplicate row for matrix 0\.self_attn\.q_proj \(first at line 2\)/);
    const [header, ...rows] = lines(fnormText);
    const nan = [header, ...rows.map((r, i) => (i === 40 ? r.replace(/,[^,]+,([^,]+)$/, ',nan,$1') : r))].join('\n');
    expect(() => parseFnormCsv(nan, 'fnorm.csv')).toThrow(/fnorm\.csv:42: column "kurtosis" has "nan", expected a finite number/);
  });
});
