import { parseArgs } from 'node:util';
import { InvalidOptionError } from '@layerquant/core';

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean; default?: string | boolean }>;

/** Strict argument parsing: an unknown flag is an InvalidOptionError naming it. */
export function parseCommandArgs<T extends OptionSpec>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options: { ...options, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const flag = /'(-{1,2}[^']+)'/.exec(message)?.[1] ?? 'arguments';
    throw new InvalidOptionError(flag, `${message.replace(/\. To specify.*$/s, '')}; run with --help for the options`);
  }
}

export function requireString(value: string | boolean | undefined | (string | boolean)[], option: string, hint: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new InvalidOptionError(option, `is required: ${hint}`);
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
