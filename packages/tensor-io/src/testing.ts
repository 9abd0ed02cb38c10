// Test helpers for code that writes model directories (not part of the runtime API).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Every file under `dir` (hidden ones included, subdirectories walked) by relative path, with its sha256 (or its text
 * with `content: 'text'`): "unchanged" means equal snapshots. An absent directory is `{}`.
 */
export function directorySnapshot(dir: string, options: { readonly content?: 'sha256' | 'text' } = {}): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (sub: string) => {
    for (const name of readdirSync(join(dir, sub)).sort()) {
      const path = join(dir, sub, name);
      if (statSync(path).isDirectory()) walk(join(sub, name));
      else out[join(sub, name)] = options.content === 'text' ? readFileSync(path, 'utf8') : createHash('sha256').update(readFileSync(path)).digest('hex');
    }
  };
  if (existsSync(dir)) walk('');
  return out;
}

/**
 * How far a writeFileSet swap in `dir` has come: entries moved into its aside directory plus new entries moved in from
 * staging (of `incoming` in all), or -1 before it starts. Tests interrupt the swap after a given count of renames
 * (with LAYERQUANT_TEST_SWAP_DELAY_MS slowing each).
 */
export function swapRenamesDone(dir: string, incoming: number): number {
  try {
    const names = readdirSync(dir);
    const aside = names.find((n) => /^\.previous\.\d+\.[0-9a-f]{8}\.tmp$/.test(n));
    const staging = names.find((n) => /^\.output\.\d+\.[0-9a-f]{8}\.tmp$/.test(n));
    if (!aside || !staging) return -1;
    return readdirSync(join(dir, aside)).filter((n) => !n.startsWith('.swap')).length + (incoming - readdirSync(join(dir, staging)).length);
  } catch {
    return -1; // the swap moved on between two reads: not started, or done
  }
}
