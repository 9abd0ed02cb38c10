import { describe, expect, it } from 'vitest';
import {
  BUDGET_STOPS,
  InvalidOptionError,
  PAPER_CONFIGS,
  bitsPerWeight,
  budgetStopIndex,
  configName,
  memoryMB,
  parseConfigList,
  parseConfigName,
  quantConfig,
} from './index.js';

describe('bitsPerWeight (paper accounting)', () => {
  it('matches b1 + 2*b2/g1 + 32/(g1*g2) computed by hand', () => {
    expect(bitsPerWeight(quantConfig(4, 64))).toBe(4 + 16 / 64 + 32 / (64 * 128));
    expect(bitsPerWeight(quantConfig(4, 64)).toFixed(4)).toBe('4.2539');
  });
  it('reproduces the memmb column of the authors\' Llama-2-7B table (16777216 params)', () => {
    // paper-data/llama-2-7b/fnorm.csv: b2g32 -> 5.015625 MB, b2g64 -> 4.5078125 MB
    expect(memoryMB(bitsPerWeight(quantConfig(2, 32)), 16777216)).toBeCloseTo(5.015625, 12);
    expect(memoryMB(bitsPerWeight(quantConfig(2, 64)), 16777216)).toBeCloseTo(4.5078125, 12);
  });
});

describe('budget stops', () => {
  it('are the 12 stops of the paper, ascending', () => {
    expect(BUDGET_STOPS.map((s) => s.budget)).toEqual([
      2.13, 2.25, 2.51, 3.13, 3.25, 3.51, 4.13, 4.25, 4.51, 8.13, 8.25, 8.51,
    ]);
    expect(BUDGET_STOPS.map((s) => configName(s.config))[4]).toBe('b3g64');
    expect(PAPER_CONFIGS).toHaveLength(12);
  });
  it('finds a stop by its rounded or exact value and rejects others', () => {
    expect(budgetStopIndex(3.25)).toBe(4);
    expect(budgetStopIndex(bitsPerWeight(quantConfig(3, 64)))).toBe(4);
    expect(() => budgetStopIndex(3.3)).toThrow(InvalidOptionError);
  });
});

describe('quantConfig', () => {
  it('parses names and rejects bad ones with the option named', () => {
    expect(parseConfigName('B3G128')).toEqual({ bits: 3, groupSize: 128, axis: 1, roundZero: false, symmetric: false });
    expect(configName(parseConfigName('b4g32-INT'))).toBe('b4g32-int');
    expect(parseConfigName('b4g32-sym')).toMatchObject({ symmetric: true, roundZero: false });
    expect(configName(parseConfigName('b4g64', { roundZero: true }))).toBe('b4g64-int');
    expect(() => parseConfigName('b4g64-half')).toThrow(/-int for an integer zero point or -sym/);
    // a symmetric config stores one meta value per group in the paper's accounting
    expect(bitsPerWeight(parseConfigName('b4g64-sym'))).toBe(4 + 8 / 64 + 16 / (64 * 128));
    expect(() => parseConfigName('4bit')).toThrow(/option "config"/);
    expect(parseConfigList('b2g64, B3G64,b4g32').map((c) => `b${c.bits}g${c.groupSize}`)).toEqual(['b2g64', 'b3g64', 'b4g32']);
    expect(() => parseConfigList('b2g64,b2g64', '--configs')).toThrow(/option "--configs": lists b2g64 twice/);
    expect(() => parseConfigList('b2g64,x', '--configs')).toThrow(/option "--configs"/);
    expect(() => parseConfigList(' , ', '--configs')).toThrow(/names no config/);
    expect(() => quantConfig(7, 64)).toThrow(/option "bits"/);
    expect(() => quantConfig(4, 0)).toThrow(/option "groupSize"/);
    expect(Object.isFrozen(quantConfig(4, 64))).toBe(true);
  });
});
