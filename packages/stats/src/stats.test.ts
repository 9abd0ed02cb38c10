import { readFileSync } from 'node:fs';
import { InvalidDataError, InvalidOptionError, LINEAR_MODULES } from '@layerquant/core';
import { llama2PaperDir, llama405bPaperDir, shippedOraclesDir } from '@layerquant/fixtures';
import { describe, expect, it } from 'vitest';
import {
  formatFnormCsv,
  formatKurtosisCsv,
  formatSensitivityCsv,
  kurtosisByModule,
  matricesOf,
  parseFnormCsv,
  parseKurtosisCsv,
  parseSensitivityCsv,
  sensitivityByModule,
  type SensitivityTable,
} from './index.js';

const read = (path: string): string => readFileSync(path, 'utf8');

describe('fnorm tables', () => {
  it('parse the authors\' Llama-2-7B, Llama-3.1-405B and shipped tables', () => {
    const llama2 = parseFnormCsv(read(`${llama2PaperDir}/fnorm.csv`));
    expect(llama2.rows).toHaveLength(224 * 12);
    expect(llama2.rows[0]).toEqual({
      layer: 0, module: 'self_attn.q_proj', bits: 2, groupSize: 32, zero: 'fractional', metaBits: 8, metaGroupSize: 128,
      fnorm: 23.5625, memoryMB: 5.015625, params: 16777216, kurtosis: 70.89063407817052,
    });
    expect(matricesOf({ fnorm: parseFnormCsv(read(`${llama405bPaperDir}/fnorm.csv`)) })).toHaveLength(882);
    const shipped = parseFnormCsv(read(`${shippedOraclesDir}/fnorm.csv`));
    expect(shipped.rows[0]!.squaredError).toBeCloseTo(3.7448339462280273 ** 2, 4);
    const matrices = matricesOf({ fnorm: shipped });
    expect(matrices).toHaveLength(224);
    expect(matrices[0]).toEqual({ key: '0.self_attn.q_proj', layer: 0, module: 'self_attn.q_proj', params: 65536 });
    expect(matrices[6]!.key).toBe('0.mlp.down_proj');
  });
  it('round-trip through CSV bit-exactly', () => {
    for (const path of [`${llama2PaperDir}/fnorm.csv`, `${shippedOraclesDir}/fnorm.csv`]) {
      const table = parseFnormCsv(read(path));
      const text = formatFnormCsv(table);
      expect(parseFnormCsv(text)).toEqual(table);
      expect(text.split('\n')[0]).toMatch(/^layer,module,nbit1,gsize1,nbit2,gsize2,fnorm,memmb,params,kurtosis/);
    }
    // The shipped table is written in our layout already: formatting reproduces it line for line.
    const shippedText = read(`${shippedOraclesDir}/fnorm.csv`).replace(/\r\n/g, '\n'); // the file has CRLF endings
    expect(formatFnormCsv(parseFnormCsv(shippedText)).trim()).toBe(shippedText.trim());
  });
  it('reject malformed files, naming file and line', () => {
    const header = 'layer,module,nbit1,gsize1,nbit2,gsize2,fnorm,memmb,params';
    expect(() => parseFnormCsv(`${header}\n0,self_attn.q_proj,4,64,8,128,abc,1,16`, 'x.csv')).toThrow(/x\.csv:2: column "fnorm" has "abc"/);
    expect(() => parseFnormCsv(`${header}\n0,self_attn.q_proj,4,64,8,128,1,1`, 'x.csv')).toThrow(/x\.csv:2: has 8 fields/);
    expect(() => parseFnormCsv(`${header}\n0,lm_head,4,64,8,128,1,1,16`, 'x.csv')).toThrow(/x\.csv:2: module "lm_head"/);
    expect(() => parseFnormCsv('layer,module\n0,self_attn.q_proj', 'x.csv')).toThrow(/x\.csv:1: missing column "nbit1"/);
    expect(() => parseFnormCsv('', 'x.csv')).toThrow(InvalidDataError);
    expect(() => parseFnormCsv(`${header}\n0,self_attn.q_proj,4,64,8,128,1,1,16\n0,self_attn.q_proj,4,64,8,128,2,1,16`, 'x.csv')).toThrow(/x\.csv:3: duplicate row/);
  });
  it('need every module at every layer', () => {
    const header = 'layer,module,nbit1,gsize1,nbit2,gsize2,fnorm,memmb,params';
    const table = parseFnormCsv(`${header}\n0,self_attn.q_proj,4,64,8,128,1,1,16\n1,self_attn.k_proj,4,64,8,128,1,1,16`);
    expect(() => matricesOf({ fnorm: table })).toThrow(/matrix 1\.self_attn\.q_proj is missing/);
  });
});

describe('sensitivity tables', () => {
  it('round-trip through CSV and give each module its block measurement at nbits=4 group_size=64', () => {
    const table = parseSensitivityCsv(read(`${llama2PaperDir}/sensitivity.csv`));
    expect(table.rows).toHaveLength(1536);
    expect(parseSensitivityCsv(formatSensitivityCsv(table))).toEqual(table);
    const series = sensitivityByModule(table, 32);
    const pick = (part: string, layer: number) => table.rows.find((r) => r.part === part && r.layer === layer && r.bits === 4 && r.groupSize === 64)!.sensitivity;
    expect(series['self_attn.k_proj'][5]).toBe(pick('attn_in', 5));
    expect(series['self_attn.o_proj'][5]).toBe(pick('attn_out', 5));
    expect(series['mlp.up_proj'][5]).toBe(pick('mlp_gate', 5));
    expect(series['mlp.down_proj'][31]).toBe(pick('mlp_down', 31));
    expect(sensitivityByModule(table, 32, { bits: 2, groupSize: 128 })['mlp.down_proj'][3]).toBe(
      table.rows.find((r) => r.part === 'mlp_down' && r.layer === 3 && r.bits === 2 && r.groupSize === 128)!.sensitivity,
    );
  });
  it('let o_proj take attn_in where the table has no attn_out (GQA models)', () => {
    const table = parseSensitivityCsv(read(`${llama2PaperDir}/sensitivity.csv`));
    const withoutAttnOut: SensitivityTable = { rows: table.rows.filter((r) => r.part !== 'attn_out') };
    const series = sensitivityByModule(withoutAttnOut, 32);
    expect([...series['self_attn.o_proj']]).toEqual([...series['self_attn.q_proj']]);
  });
  it('reject a missing layer, an unknown part and an ambiguous dataset', () => {
    const header = 'dataset,part,model,nbits,group_size,layer,sensitivity';
    expect(() => parseSensitivityCsv(`${header}\npileval,attn_x,m,4,64,0,1e-6`, 's.csv')).toThrow(/s\.csv:2: part "attn_x"/);
    const table = parseSensitivityCsv(read(`${shippedOraclesDir}/sensitivity.csv`));
    const missing: SensitivityTable = { rows: table.rows.filter((r) => !(r.part === 'mlp_down' && r.layer === 7)) };
    expect(() => sensitivityByModule(missing, 32)).toThrow(/no "mlp_down" row for layer 7/);
    const twoDatasets: SensitivityTable = { rows: [...table.rows, ...table.rows.map((r) => ({ ...r, dataset: 'other' }))] };
    expect(() => sensitivityByModule(twoDatasets, 32)).toThrow(InvalidOptionError);
    expect(sensitivityByModule(twoDatasets, 32, { dataset: 'other' })['mlp.down_proj']).toHaveLength(32);
  });
});

describe('kurtosis tables', () => {
  it('round-trip in the authors\' layout and agree with the fnorm table\'s kurtosis column', () => {
    const fnorm = parseFnormCsv(read(`${llama2PaperDir}/fnorm.csv`));
    const rows = matricesOf({ fnorm }).map((m) => ({
      module: m.module,
      layer: m.layer,
      params: m.params,
      kurtosis: fnorm.rows.find((r) => r.layer === m.layer && r.module === m.module)!.kurtosis!,
    }));
    const text = formatKurtosisCsv({ rows });
    expect(text.split('\n')[0]).toBe('module,layer,param_count,kurtosis');
    const table = parseKurtosisCsv(text);
    expect(table.rows).toEqual(rows);
    expect(kurtosisByModule({ kurtosis: table }, 32)).toEqual(kurtosisByModule({ fnorm }, 32));
    expect(matricesOf({ kurtosis: table })).toEqual(matricesOf({ fnorm }));
  });
  it('are required for KurtBoost', () => {
    const header = 'layer,module,nbit1,gsize1,nbit2,gsize2,fnorm,memmb,params';
    expect(() => kurtosisByModule({ fnorm: parseFnormCsv(`${header}\n0,self_attn.q_proj,4,64,8,128,1,1,16`) }, 1)).toThrow(/no kurtosis/);
  });
});

describe('matricesOf a plug-in table', () => {
  it('lists the units of a metric plug-in table whose rows name them with their sizes, when no built-in table does', () => {
    const rows = [0, 1].flatMap((layer) => LINEAR_MODULES.map((module, i) => ({ layer, module, params: 100 + i, crest: layer + i })));
    const units = matricesOf({ crest: { rows }, source: 'crest.csv' });
    expect(units.map((u) => u.key)).toEqual(rows.map((r) => `${r.layer}.${r.module}`));
    expect(units.map((u) => u.params)).toEqual(rows.map((r) => r.params));
    // A table whose rows are not units (no params) names nothing: the error says what is missing.
    expect(() => matricesOf({ other: { rows: [{ layer: 0, module: 'x' }] }, source: 'other.csv' })).toThrow(/no fnorm or kurtosis table/);
  });
});
