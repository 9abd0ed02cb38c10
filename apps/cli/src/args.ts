import { existsSync, readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InvalidOptionError } from '@layerquant/core';
import { PluginLoadError } from '@layerquant/pipeline';

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean; default?: string | boolean }>;

export interface ParsedArgs {
  readonly values: Readonly<Record<string, string | boolean | string[] | undefined>>;
  readonly positionals: string[];
}

/**
 * Edit distance between two strings (optimal string alignment: insertions, deletions, substitutions and swaps of two
 * neighbouring characters each count 1, so `--confgi` is 1 from `--config`).
 */
export function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

/**
 * The one candidate closest to `name` by edit distance, if it is close enough to be a typo (at most a third of the
 * name's characters, at least 1); ties go to the first candidate.
 */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

/**
 * Strict argument parsing: an unknown flag is an InvalidOptionError naming it, with the command's closest flag as a
 * suggestion. `--json` and `--help` are always known.
 */
export function parseCommandArgs(argv: string[], options: OptionSpec): ParsedArgs {
  const known = { ...options, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;
  try {
    return parseArgs({ args: argv, options: known, allowPositionals: true, strict: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const flag = /'(-{1,2}[^']+)'/.exec(message)?.[1] ?? 'arguments';
    const unknown = (error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION';
    const suggestion = unknown ? closestName(flag, Object.keys(known).map((name) => `--${name}`)) : undefined;
    throw new InvalidOptionError(flag, `${message.replace(/\. To specify.*$/s, '')}${suggestion ? `; did you mean ${suggestion}? Run` : '; run'} with --help for the options`);
  }
}

export function requireString(value: string | boolean | undefined | string[], option: string, hint: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new InvalidOptionError(option, `is required: ${hint}`);
  return value;
}

/** The value of a string option, or undefined; a repeated or boolean use is an error naming the option. */
export function stringOption(values: ParsedArgs['values'], name: string): string | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new InvalidOptionError(`--${name}`, 'needs one value');
  return value;
}

export function parseNumberOption(value: string | undefined, option: string, fallback: number, check: (n: number) => boolean = Number.isFinite): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || !check(n)) throw new InvalidOptionError(option, `"${value}" is not a valid value`);
  return n;
}

export function parseIntegerOption(value: string | undefined, option: string, fallback: number, min = 0): number {
  return parseNumberOption(value, option, fallback, (n) => Number.isInteger(n) && n >= min);
}

/** `--max-memory <GiB>` as bytes, or undefined when not given (callers then use the machine's free memory). */
export function parseMemoryOption(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  return parseNumberOption(value, '--max-memory', 0, (n) => n > 0) * 2 ** 30;
}

/** `--plugin <module>` (repeatable, also `--plugin=<module>`) taken out of a command line. */
export function splitPluginArgs(argv: readonly string[]): { plugins: string[]; argv: string[] } {
  const plugins: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (arg === '--plugin') {
      const value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) throw new PluginLoadError('', 'needs a module: a path (./my-allocator.js) or a package name');
      plugins.push(value);
      i++;
    } else if (arg.startsWith('--plugin=')) plugins.push(arg.slice('--plugin='.length));
    else rest.push(arg);
  }
  return { plugins, argv: rest };
}


/**
 * An existing, non-empty --out is written into only with --force (a directory that is not there or empty is fine;
 * an absent --out is for requireString to name): a second quantize or export must not silently replace a model.
 * With --force the writer replaces the model's own files and keeps the others.
 */
export function checkOverwrite(outDir: string | undefined, force: boolean, options: { readonly file?: boolean } = {}): void {
  if (outDir === undefined || force || !existsSync(outDir)) return;
  // A single-file output (a .gguf) that exists is replaced only with --force, as a directory's model is; a file where
  // a directory is written is left to the output directory's own typed error.
  if (!statSync(outDir).isDirectory()) {
    if (options.file) throw new InvalidOptionError('--out', `${resolve(outDir)} exists; pass --force to replace it, or choose another --out`);
    return;
  }
  // layerquant's own lock and journal files, and the statistics cache a run keeps in <out>/stats (also after it
  // failed, e.g. on a target below the smallest file), are not a model to protect.
  const entries = readdirSync(outDir).filter((name) => !name.startsWith('.layerquant') && name !== 'stats');
  if (entries.length > 0) {
    throw new InvalidOptionError('--out', `${resolve(outDir)} exists and is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}); pass --force to replace the model in it (other files stay), or choose another --out`);
  }
}
