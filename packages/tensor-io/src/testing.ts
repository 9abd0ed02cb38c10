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
