import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { brownCalibPath, brownTestPath, datasets } from './index.js';

describe('built-in datasets', () => {
  it('ships both texts as non-empty UTF-8 files, named as --dataset takes them', () => {
    expect(Object.keys(datasets)).toEqual(['brown-test', 'brown-calib']);
    for (const path of [brownCalibPath, brownTestPath]) {
      expect(existsSync(path), path).toBe(true);
      const text = readFileSync(path, 'utf8');
      expect(text.length).toBeGreaterThan(100_000);
      expect(text).not.toContain('\uFFFD');
    }
    // Calibration and test texts are different text.
    expect(readFileSync(brownCalibPath, 'utf8').slice(0, 2000)).not.toBe(readFileSync(brownTestPath, 'utf8').slice(0, 2000));
  });
});
