import { InvalidDataError } from '@layerquant/core';
import { writeTextAtomic } from '@layerquant/tensor-io';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { CellResult } from './cell.js';
import { cellLabel } from './cell.js';
import { describeChanges } from '@layerquant/pipeline';
import type { PlannedCell } from './plan.js';
import type { ExperimentRow } from './report.js';

/**
 * results.json: every finished cell of every setting ever run into this --out, keyed by its settings key, with
 * the settings it was computed under, its row and its per-window NLL. A run reuses a cell only under the same key
 * and never drops another setting's cells; results.csv/md show the current run's cells. Its rows say `perplexity`
 * as every JSON layerquant writes does (docs/json-schema.md); version 2 files, whose rows say `ppl`, are read too.
 */

export const RESULTS_FORMAT = 'layerquant-experiment-results';
export const RESULTS_VERSION = 3;
/** Versions this layerquant reads: 2 (rows with `ppl`) and 3 (rows with `perplexity`). */
const READABLE_VERSIONS: readonly number[] = [2, RESULTS_VERSION];

export interface StoredCell extends CellResult {
  readonly settings: Readonly<Record<string, unknown>>;
  /** ISO time the cell was finished. */
  readonly finished: string;
}

/** A row as results.json stores it: the in-memory row with `perplexity` in place of `ppl`. */
export type ResultsFileRow = Omit<ExperimentRow, 'ppl'> & { readonly perplexity: number };

interface ResultsFile {
  readonly format: typeof RESULTS_FORMAT;
  readonly version: number;
  /** Keys of the last run's cells, in its report order. */
  readonly current: readonly string[];
  readonly cells: Readonly<Record<string, Omit<StoredCell, 'row'> & { readonly row: ResultsFileRow }>>;
  /** The last run's settings in words (paths, not hashes) and its rows in report order: a view of `cells` for readers. */
  readonly settings?: Readonly<Record<string, unknown>>;
  readonly rows?: readonly ResultsFileRow[];
  /** Rows of a results.json written before cells had keys: kept, never reused. */
  readonly legacy?: readonly ResultsFileRow[];
}

const NUMERIC_FIELDS = ['bpp', 'memoryMB', 'packedBytes', 'extraMemoryPercent', 'ppl', 'seconds'] as const;

/** JSON has no NaN: non-finite numbers are written as null and read back as NaN. */
export function reviveRow(row: ExperimentRow): ExperimentRow {
  const out: Record<string, unknown> = { ...row };
  for (const f of NUMERIC_FIELDS) if (out[f] === null) out[f] = Number.NaN;
  return out as unknown as ExperimentRow;
}

function finiteOrNull(_: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? null : v;
}

/** A row as results.json writes it: `perplexity` where the row has `ppl`, every other key in its place. */
export function rowForFile(row: ExperimentRow): ResultsFileRow {
  return Object.fromEntries(Object.entries(row).map(([key, value]) => [key === 'ppl' ? 'perplexity' : key, value])) as unknown as ResultsFileRow;
}

/**
 * The perplexity of a results.json row: `perplexity` (version 3), or `ppl` (version 2, and rows from before cells
 * had keys); null (not finite) is kept as null for reviveRow. Undefined when the row has neither as a number or null.
 */
function filePerplexity(row: Readonly<Record<string, unknown>>): number | null | undefined {
  const value = 'perplexity' in row ? row.perplexity : row.ppl;
  return value === null || typeof value === 'number' ? value : undefined;
}

/** A results.json row (either version) as an in-memory row, non-finite numbers revived as NaN. */
export function rowFromFile(row: Readonly<Record<string, unknown>>): ExperimentRow {
  const { perplexity: _, ppl: __, ...rest } = row;
  return reviveRow({ ...rest, ppl: filePerplexity(row) } as unknown as ExperimentRow);
}

export class ResultsStore {
  private readonly cells = new Map<string, StoredCell>();
  private legacy: readonly ExperimentRow[] = [];
  private current: readonly string[] = [];
  /** Lines for stderr about what was found in the file. */
  readonly notes: string[] = [];

  private constructor(readonly path: string) {}

  /**
   * Reads results.json (absent: an empty store). A truncated or damaged file is a typed error naming the file and
   * the fix, never silently replaced; `fresh` ignores its content (and overwrites it on the first save).
   */
  static async open(path: string, fresh = false): Promise<ResultsStore> {
    const store = new ResultsStore(path);
    if (!existsSync(path)) return store;
    if (fresh) {
      store.notes.push(`--fresh: ignoring the results already in ${path}`);
      return store;
    }
    const text = await readFile(path, 'utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new InvalidDataError(path, `is truncated or not JSON (${(error as Error).message}); move it away to keep it, or pass --fresh to start the results over`);
    }
    const damaged = (what: string) => new InvalidDataError(path, `${what}; it was not written by this layerquant or was edited: move it away, or pass --fresh to start the results over`);
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw damaged('is not a JSON object');
    const file = parsed as Partial<ResultsFile> & { settings?: unknown; rows?: unknown };
    if (file.format === undefined && Array.isArray(file.rows)) {
      store.legacy = (file.rows as Array<Record<string, unknown>>).map(rowFromFile);
      store.notes.push(`${path} is from an earlier layerquant whose rows carry no settings keys: its ${file.rows.length} rows are kept (under "legacy") but not reused`);
      return store;
    }
    if (file.format !== RESULTS_FORMAT) throw damaged(`has format ${JSON.stringify(file.format)}, not "${RESULTS_FORMAT}"`);
    if (!READABLE_VERSIONS.includes(file.version as number)) throw damaged(`has version ${String(file.version)}; this layerquant reads versions ${READABLE_VERSIONS.join(' and ')}`);
    if (!file.cells || typeof file.cells !== 'object') throw damaged('has no "cells" object');
    for (const [key, cell] of Object.entries(file.cells)) {
      const c = cell as Partial<Omit<StoredCell, 'row'>> & { readonly row?: Record<string, unknown> };
      const row = c.row;
      if (c.key !== key || !c.settings || typeof c.settings !== 'object' || !row || typeof row.method !== 'string' || filePerplexity(row) === undefined || !Array.isArray(row.windowNll) || !Array.isArray(row.windowWeights)) {
        throw damaged(`cell "${key}" is incomplete`);
      }
      store.cells.set(key, { ...(c as Omit<StoredCell, 'row'>), row: rowFromFile(row) });
    }
    store.legacy = Array.isArray(file.legacy) ? (file.legacy as Array<Record<string, unknown>>).map(rowFromFile) : [];
    store.current = Array.isArray(file.current) ? file.current : [];
    return store;
  }

  get(key: string): StoredCell | undefined {
    return this.cells.get(key);
  }

  get size(): number {
    return this.cells.size;
  }

  /** The stored cells among `planned`, by key (what a run reuses). */
  reusable(planned: readonly PlannedCell[]): Map<string, CellResult> {
    const out = new Map<string, CellResult>();
    for (const p of planned) {
      const c = this.cells.get(p.spec.key);
      if (c) out.set(p.spec.key, c);
    }
    return out;
  }

  /**
   * What is reused and what not, in words: a planned cell without a stored result under its key is matched to a
   * stored cell of the same method and budget, whose settings differences are the reason.
   */
  explain(planned: readonly PlannedCell[]): string[] {
    const lines: string[] = [];
    const reused = planned.filter((p) => this.cells.has(p.spec.key));
    if (reused.length > 0) lines.push(`results: reusing ${reused.length} of ${planned.length} cells from ${this.path} (same settings key: model, text, protocol, method, budget, statistics): ${reused.map((p) => cellLabel(p.spec)).join(', ')}`);
    const missing = planned.filter((p) => !this.cells.has(p.spec.key));
    for (const p of missing) {
      const label = cellLabel(p.spec);
      const same = [...this.cells.values()].filter((c) => {
        const method = (c.settings as { method?: unknown }).method;
        const budget = (c.settings as { budget?: unknown }).budget;
        return p.spec.kind === 'fp' ? method === 'fp' : typeof method === 'object' && method !== null && (method as { id?: unknown }).id === p.spec.method.id && budget === p.spec.budget;
      });
      if (same.length > 0) {
        const latest = same.sort((a, b) => (a.finished < b.finished ? 1 : -1))[0]!;
        lines.push(`results: not reusing ${label} from ${this.path}: computed under other settings (${describeChanges(latest.settings, p.settings).join('; ')}); that row is kept`);
      }
    }
    const others = this.cells.size - reused.length;
    if (others > 0) lines.push(`results: ${others} cell(s) of other settings kept in ${this.path}, not shown in results.csv/md`);
    return lines;
  }

  /** Records a finished cell (written by `save`). */
  add(result: CellResult, settings: Readonly<Record<string, unknown>>): void {
    this.cells.set(result.key, { ...result, settings, finished: new Date().toISOString() });
  }

  /** The current run's rows in plan order (cells not finished yet are left out). */
  rows(planned: readonly PlannedCell[]): ExperimentRow[] {
    return planned.map((p) => this.cells.get(p.spec.key)?.row).filter((r): r is ExperimentRow => r !== undefined);
  }

  /**
   * Writes results.json atomically: every setting's cells, and for readers (the notebook's precompute, scripts) the
   * current run's `settings` and `rows`, as results.json had them before cells were keyed.
   */
  async save(planned: readonly PlannedCell[], settings: Readonly<Record<string, unknown>> = {}): Promise<void> {
    this.current = planned.map((p) => p.spec.key);
    const file: ResultsFile = {
      format: RESULTS_FORMAT,
      version: RESULTS_VERSION,
      settings,
      rows: this.rows(planned).map(rowForFile),
      current: this.current,
      cells: Object.fromEntries([...this.cells].map(([key, cell]) => [key, { ...cell, row: rowForFile(cell.row) }])),
      ...(this.legacy.length > 0 ? { legacy: this.legacy.map(rowForFile) } : {}),
    };
    await writeTextAtomic(this.path, `${JSON.stringify(file, finiteOrNull, 1)}\n`);
  }
}
