import { InvalidDataError } from '@layerquant/core';

/**
 * A minimal reader for the authors' CSV files: a header line, comma-separated fields, no quoting
 * (none of their tables quotes a field). Every error names the source and the 1-based line.
 */
export interface CsvRecord {
  /** 1-based line number in the source, for error messages. */
  readonly line: number;
  readonly fields: readonly string[];
}

export interface CsvDocument {
  readonly source: string;
  readonly header: readonly string[];
  readonly headerLine: number;
  readonly records: readonly CsvRecord[];
}

export function readCsv(text: string, source: string): CsvDocument {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const headerIndex = lines.findIndex((l) => l.trim().length > 0);
  if (headerIndex < 0) throw new InvalidDataError(source, 'is empty; expected a CSV header line and rows');
  const header = lines[headerIndex]!.split(',').map((h) => h.trim());
  const records: CsvRecord[] = [];
  for (let i = headerIndex + 1; i < lines.length; i++) {
    const raw = lines[i]!;
    if (raw.trim().length === 0) continue;
    if (raw.includes('"')) throw new InvalidDataError(`${source}:${i + 1}`, 'quoted fields are not supported in this table');
    const fields = raw.split(',').map((f) => f.trim());
    if (fields.length !== header.length) {
      throw new InvalidDataError(`${source}:${i + 1}`, `has ${fields.length} fields, the header has ${header.length}`);
    }
    records.push({ line: i + 1, fields });
  }
  return { source, header, headerLine: headerIndex + 1, records };
}

/** Index of each required column; a missing one is an InvalidDataError listing what the file has. */
export function columnIndex(doc: CsvDocument, required: readonly string[], optional: readonly string[] = []): Record<string, number> {
  const index: Record<string, number> = {};
  for (const name of [...required, ...optional]) {
    const i = doc.header.indexOf(name);
    if (i >= 0) index[name] = i;
    else if (required.includes(name)) {
      throw new InvalidDataError(
        `${doc.source}:${doc.headerLine}`,
        `missing column "${name}"; expected columns ${required.join(',')} (found ${doc.header.join(',')})`,
      );
    }
  }
  return index;
}

export function field(doc: CsvDocument, record: CsvRecord, index: Record<string, number>, name: string): string {
  const i = index[name];
  if (i === undefined) throw new InvalidDataError(`${doc.source}:${record.line}`, `missing column "${name}"`);
  return record.fields[i]!;
}

export function numberField(doc: CsvDocument, record: CsvRecord, index: Record<string, number>, name: string): number {
  const text = field(doc, record, index, name);
  const value = text === '' ? Number.NaN : Number(text);
  if (!Number.isFinite(value)) {
    throw new InvalidDataError(`${doc.source}:${record.line}`, `column "${name}" has "${text}", expected a finite number`);
  }
  return value;
}

export function integerField(doc: CsvDocument, record: CsvRecord, index: Record<string, number>, name: string, min = 0): number {
  const value = numberField(doc, record, index, name);
  if (!Number.isInteger(value) || value < min) {
    throw new InvalidDataError(`${doc.source}:${record.line}`, `column "${name}" has ${value}, expected an integer >= ${min}`);
  }
  return value;
}

/** Shortest round-tripping text of a number, as Python's repr writes floats (so files reload bit-exact). */
export function formatNumber(value: number): string {
  return String(value);
}

export function formatCsv(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const lines = [header.join(',')];
  for (const row of rows) lines.push(row.map((v) => (typeof v === 'number' ? formatNumber(v) : v)).join(','));
  return `${lines.join('\n')}\n`;
}
