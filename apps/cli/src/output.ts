// The one place the CLI formats output: the JSON envelope every command prints under --json (schema:
// apps/cli/schema/output.schema.json, documented in docs/json-schema.md), sizes in MiB with their accounting named,
// and a table renderer that fits the terminal width.
import { resolve } from 'node:path';
import type { Column } from '@layerquant/experiment';
import type { BoostReport, Sizes } from '@layerquant/pipeline';

export { sizes, boostReport, type BoostReport, type Sizes } from '@layerquant/pipeline';
export { markdownTable, type Column } from '@layerquant/experiment';

/** Bumped whenever a key of the --json output changes meaning or disappears. */
export const SCHEMA_VERSION = 1;

const MIB = 2 ** 20;

/** NaN and ±Infinity have no JSON form: they are written as null (never as a string, never dropped). */
function finiteOrNull(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}

/** One line of JSON: `{ command, schemaVersion, ...payload }`. */
export function jsonLine(command: string, payload: Readonly<Record<string, unknown>>): string {
  return `${JSON.stringify({ command, schemaVersion: SCHEMA_VERSION, ...payload }, finiteOrNull)}\n`;
}

/** The --json form of a failure: `{ command, schemaVersion, error: { code, message } }`. */
export function jsonError(command: string | null, code: string, message: string): string {
  return jsonLine(command ?? 'layerquant', { error: { code, message } });
}

/** An absolute path, as every path in the JSON output is. */
export function absolutePath(path: string): string {
  return resolve(path);
}

/** Bytes in MiB (2^20 bytes), the one unit of sizes in the CLI. */
export function mib(bytes: number): number {
  return bytes / MIB;
}

/** `17.21 MiB, 6.55 bits per linear weight (the shipped onnx file: every byte; predicted 17.21 MiB; target 17.40 MiB)`. */
export function shippedText(s: NonNullable<Sizes['shipped']>): string {
  const notes = [
    `the shipped ${s.format} file, every byte`,
    ...(s.predictedMiB === undefined ? [] : [`predicted ${s.predictedMiB.toFixed(2)} MiB`]),
    ...(s.targetMiB === undefined ? [] : [`target ${s.targetMiB.toFixed(2)} MiB`]),
  ];
  return `${s.MiB.toFixed(2)} MiB, ${s.bitsPerWeight.toFixed(4)} bits per linear weight (${notes.join('; ')})`;
}

/** Key/value rows of the terminal report for a Sizes. */
export function sizeRows(s: Sizes): Array<[string, string]> {
  const rows: Array<[string, string]> = [];
  if (s.paperBitsPerWeight !== null && s.paperMiB !== null) {
    rows.push(['paper size', `${s.paperMiB.toFixed(2)} MiB, ${s.paperBitsPerWeight.toFixed(4)} bits/weight (paper accounting: 8-bit scale and zero per group)`]);
  }
  if (s.diskMiB !== null && s.diskBitsPerWeight !== null) rows.push(['on disk', `${s.diskMiB.toFixed(2)} MiB, ${s.diskBitsPerWeight.toFixed(4)} bits/weight (linear matrices as stored)${s.fileMiB === undefined ? '' : `; ${s.fileMiB.toFixed(2)} MiB weight files`}`]);
  if (s.shipped) rows.push(['shipped', shippedText(s.shipped)]);
  return rows;
}

/**
 * `key   value` lines, keys padded to the longest (or to `keyWidth`, as help lists align), each line after `indent`.
 * The one key/value printer: reports, help lists of plug-ins and their options.
 */
export function formatRows(rows: ReadonlyArray<readonly [string, string]>, options: { readonly indent?: string; readonly keyWidth?: number } = {}): string {
  const width = options.keyWidth ?? Math.max(0, ...rows.map(([k]) => k.length)) + 1;
  const indent = options.indent ?? '';
  if (rows.length === 0) return '';
  return `${rows.map(([k, v]) => `${indent}${k.padEnd(width)} ${v}`.trimEnd()).join('\n')}\n`;
}

/** Columns of the terminal: stdout's width when it is a terminal, else $COLUMNS, else unlimited (a pipe or file). */
export function terminalColumns(stream: { isTTY?: boolean; columns?: number } = process.stdout): number {
  if (stream.isTTY && stream.columns) return stream.columns;
  const env = Number(process.env.COLUMNS);
  return Number.isInteger(env) && env > 0 ? env : Number.POSITIVE_INFINITY;
}

/**
 * A table that fits `width` columns. When the aligned table is wider, each row is printed as a block of
 * `header: value` lines instead, so no cell (a number in particular) is ever split across lines; a value longer than
 * the line is broken at spaces only.
 */
export function renderTable(columns: readonly Column[], rows: ReadonlyArray<readonly string[]>, width: number = terminalColumns()): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const total = widths.reduce((s, w) => s + w, 0) + 2 * (columns.length - 1);
  const cell = (text: string, i: number) => (columns[i]!.align === 'right' ? text.padStart(widths[i]!) : text.padEnd(widths[i]!));
  if (total <= width) {
    const lines = [columns.map((c, i) => cell(c.header, i)).join('  '), widths.map((w) => '-'.repeat(w)).join('  ')];
    for (const r of rows) lines.push(columns.map((_, i) => cell(r[i] ?? '', i)).join('  ').trimEnd());
    return `${lines.map((l) => l.trimEnd()).join('\n')}\n`;
  }
  const keyWidth = Math.max(...columns.map((c) => c.header.length));
  const blocks = rows.map((r) =>
    columns
      .map((c, i) => [c, r[i] ?? ''] as const)
      .filter(([, v]) => v !== '')
      .map(([c, v]) => wrapAtSpaces(`${c.header.padEnd(keyWidth)}  ${v}`, width, keyWidth + 2))
      .join('\n'),
  );
  return `${blocks.join('\n\n')}\n`;
}

/** Breaks a line at spaces so that no line is longer than `width` (a single word longer than it stays whole). */
export function wrapAtSpaces(line: string, width: number, indent = 0): string {
  if (line.length <= width) return line;
  const lead = /^ */.exec(line)![0];
  const words = line.slice(lead.length).split(' ');
  const lines: string[] = [];
  let current = lead;
  for (const word of words) {
    const next = current.trim() === '' ? `${current}${word}` : `${current} ${word}`;
    if (next.length > width && current.trim() !== '') {
      lines.push(current);
      current = `${' '.repeat(indent)}${word}`;
    } else current = next;
  }
  if (current !== '') lines.push(current);
  return lines.join('\n');
}

/** Terminal lines of a boost report: one line per boosted layer. */
export function boostLines(report: BoostReport): string[] {
  const lines = [`boosted layers (base ${report.baseConfig}, boosted ${report.boostConfig}):`];
  if (report.layers.length === 0) lines.push('  none');
  for (const l of report.layers) lines.push(`  layer ${String(l.layer).padStart(3)}  ${l.module.padEnd(17)} ${l.config}${l.zScore === null ? '' : `  z ${l.zScore.toFixed(1)}`}`);
  return lines;
}
