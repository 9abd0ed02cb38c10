import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { validateNotebookData } from './data.js';

const committed = fileURLToPath(new URL('../public/data/notebook.json', import.meta.url));

/** Every string of a JSON value with where it is. */
function strings(value: unknown, at: string): [string, string][] {
  if (typeof value === 'string') return [[at, value]];
  if (Array.isArray(value)) return value.flatMap((v, i) => strings(v, `${at}[${i}]`));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => strings(v, `${at}.${k}`));
  return [];
}

describe('the committed notebook.json', () => {
  const json: unknown = JSON.parse(readFileSync(committed, 'utf8'));
  it('names no path of the machine that computed it and no issue number', () => {
    const all = strings(json, 'notebook.json');
    expect(all.length).toBeGreaterThan(10);
    // An absolute POSIX or Windows path, or an issue reference.
    expect(all.filter(([, s]) => /(?:^|[\s('"`])\/[A-Za-z]|[A-Za-z]:\\/.test(s)).map(([at]) => at)).toEqual([]);
    expect(all.filter(([, s]) => /\bissues? #?\d+/i.test(s)).map(([at]) => at)).toEqual([]);
  });
  it('is valid and has every tensor size the page sums', () => {
    const data = validateNotebookData(json, 'notebook.json');
    expect(data.tensors.every((t) => Number.isInteger(t.bytes) && t.bytes > 0)).toBe(true);
  });
});
