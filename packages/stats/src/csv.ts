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
  // A column named twice would be read from whichever comes first: the table is ambiguous, never guessed.
  const twice = header.find((name, i) => header.indexOf(name) !== i);
  if (twice !== undefined) throw new InvalidDataError(`${source}:${headerIndex + 1}`, `names the column "${twice}" twice; keep one`);
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

/**
 * A number as the authors' Python writes it: an integral value as an integer (`16777216`; a float column's 2.0
 * prints `2`, which reads back equal), any other as Python's repr of the float: the shortest digits that round-trip
 * (the same digits as JavaScript's), in positional notation for decimal exponents -4 to 15 (`0.0001`, `1e-05`,
 * `1.5e+16`, `inf`, `nan`, `-0.0`). Files reload bit-exact; tested against repr() output (python-repr.json).
 */
export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'nan';
  if (value === Number.POSITIVE_INFINITY) return 'inf';
  if (value === Number.NEGATIVE_INFINITY) return '-inf';
  if (Object.is(value, -0)) return '-0.0';
  if (Number.isInteger(value)) return BigInt(value).toString();
  // toExponential() without an argument gives the shortest round-trip digits: d.ddde±x.
  const [mantissa, exponentText] = value.toExponential().split('e') as [string, string];
  const exponent = Number(exponentText);
  const negative = mantissa.startsWith('-');
  const digits = mantissa.replace('-', '').replace('.', '');
  const sign = negative ? '-' : '';
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
    const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, '0');
    const fraction = digits.slice(exponent + 1);
    return `${sign}${whole}.${fraction === '' ? '0' : fraction}`;
  }
  const head = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${head}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
}

/** A text field: quoted (RFC 4180, `"` doubled) when it holds a comma, quote or line break; the authors' never do. */
function textField(value: string): string {
  return /[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/**
 * The one CSV writer: a header line, then one line per row; numbers as formatNumber writes them (Python's repr),
 * `null` as an empty field, text quoted only where it must be.
 */
export function formatCsv(header: readonly string[], rows: readonly (readonly (string | number | null)[])[]): string {
  const lines = [header.map(textField).join(',')];
  for (const row of rows) lines.push(row.map((v) => (v === null ? '' : typeof v === 'number' ? formatNumber(v) : textField(v))).join(','));
  return `${lines.join('\n')}\n`;
}
