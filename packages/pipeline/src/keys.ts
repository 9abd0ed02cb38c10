import { createHash } from 'node:crypto';

/**
 * Content keys of the experiment: what a statistics cache or a finished cell depends on, hashed. The same keys
 * name cached statistics under `<out>/stats/<key>`, cells in results.json and jobs on the queue, so a result is
 * reused exactly when every setting it depends on is the same, and never mixed with another setting's.
 */

// The model and text content hashes are tensor-io's: the sha256 of every byte, cached by path and file stamps (one
// hasher for the project; the queue worker checks the same full hash).
export { fileContentHash, modelContentHash } from '@layerquant/tensor-io';

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** JSON with object keys sorted, so equal settings always hash equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return v;
  });
}

/** The key of a settings object: the first 16 hex digits of the sha256 of its canonical JSON. */
export function settingsKey(settings: Readonly<Record<string, unknown>>): string {
  return sha256(canonicalJson(settings)).slice(0, 16);
}

/** Differences between two settings objects, in words (`blocks 2 -> 4`), for the "not reused because" lines. */
export function describeChanges(before: Readonly<Record<string, unknown>>, after: Readonly<Record<string, unknown>>): string[] {
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  const short = (v: unknown) => {
    const text = v === undefined ? '(none)' : canonicalJson(v);
    return text.length > 40 ? `${text.slice(0, 16)}...` : text;
  };
  return keys.filter((k) => canonicalJson(before[k]) !== canonicalJson(after[k])).map((k) => `${k} ${short(before[k])} -> ${short(after[k])}`);
}
