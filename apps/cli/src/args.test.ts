import { describe, expect, it } from 'vitest';
import { closestName, editDistance } from './args.js';

describe('editDistance (optimal string alignment)', () => {
  it('counts insertions, deletions, substitutions and neighbour swaps as 1 each', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3); // the textbook Levenshtein example: k->s, e->i, +g
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('abc', 'abc')).toBe(0);
    expect(editDistance('--confgi', '--config')).toBe(1); // a swap
    expect(editDistance('ca', 'abc')).toBe(3); // OSA: a swapped pair is not edited again
  });

  it('is symmetric and within the bounds any edit distance has (property, random strings)', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const word = () => Array.from({ length: Math.floor(random() * 7) }, () => 'abc'[Math.floor(random() * 3)]).join('');
    for (let i = 0; i < 200; i++) {
      const [a, b] = [word(), word()];
      const d = editDistance(a, b);
      expect(d).toBe(editDistance(b, a));
      expect(d).toBeGreaterThanOrEqual(Math.abs(a.length - b.length));
      expect(d).toBeLessThanOrEqual(Math.max(a.length, b.length));
      expect(d === 0).toBe(a === b);
    }
  });
});

describe('closestName', () => {
  it('suggests only a close candidate', () => {
    expect(closestName('--confg', ['--out', '--config', '--configs'])).toBe('--config');
    expect(closestName('--frobnicate', ['--out', '--config'])).toBeUndefined();
    expect(closestName('quantise', ['quantize', 'eval'])).toBe('quantize');
  });
});
