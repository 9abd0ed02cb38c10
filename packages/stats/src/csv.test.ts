import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatNumber, readCsv } from './csv.js';

// Oracle: Python's repr() of each double, computed with /usr/bin/python3 by __fixtures__/python-repr.py.
const fixture = JSON.parse(readFileSync(new URL('./__fixtures__/python-repr.json', import.meta.url), 'utf8')) as { rows: [string, string][] };

function fromBits(hex: string): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${hex}`));
  return view.getFloat64(0);
}

describe('formatNumber', () => {
  it("writes every non-integral double of the fixture exactly as Python's repr()", () => {
    expect(fixture.rows.length).toBeGreaterThan(400);
    const wrong = fixture.rows.filter(([bits, repr]) => formatNumber(fromBits(bits)) !== repr).map(([bits, repr]) => `${bits}: ${formatNumber(fromBits(bits))} != ${repr}`);
    expect(wrong).toEqual([]);
  });

  it('reads back bit-exact, and writes integral values as integers', () => {
    for (const [bits] of fixture.rows) {
      const x = fromBits(bits);
      if (Number.isFinite(x)) expect(Object.is(Number(formatNumber(x)), x), bits).toBe(true);
    }
    expect(formatNumber(16777216)).toBe('16777216');
    expect(formatNumber(-3)).toBe('-3');
    expect(formatNumber(1e21)).toBe('1000000000000000000000');
    expect(formatNumber(0)).toBe('0');
  });
});

describe('a header that names a column twice', () => {
  it('is refused, naming the column and the line (whichever copy a reader took would be a guess)', () => {
    expect(() => readCsv('layer,module,kurtosis,kurtosis\n0,self_attn.q_proj,3.1,99\n', 'fnorm.csv')).toThrow(/fnorm\.csv:1: names the column "kurtosis" twice/);
  });
});
