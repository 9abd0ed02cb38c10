import { cellLabel, computeCell, openCellSession, type CellContext, type CellResult, type CellSpec } from './cell.js';

export interface ExperimentEvent {
  readonly kind: 'cell-start' | 'cell-done' | 'window';
  readonly cell: number;
  readonly cells: number;
  readonly label: string;
  readonly done?: number;
  readonly total?: number;
  readonly result?: CellResult;
}

export interface ExperimentOptions extends CellContext {
  readonly modelDir: string;
  /** The planned cells, in report order (see plan.ts). */
  readonly cells: readonly CellSpec[];
  readonly threads?: number;
  /** Memory the fp cell's float32 weights may take in one session before it streams layer by layer (bytes). */
  readonly maxMemoryBytes?: number;
  /** Cells already computed with the same settings (a resumed run), by key: not run again. */
  readonly done?: ReadonlyMap<string, CellResult>;
  readonly onEvent?: (event: ExperimentEvent) => void;
  /** Called after every computed cell (to save progress). */
  readonly onCell?: (result: CellResult) => Promise<void>;
}

/**
 * The grid in process: one checkpoint for every cell, each cell's packed-weight model built from it matrix by matrix.
 * Returns the results of all planned cells (reused and computed) in plan order.
 */
export async function runExperiment(options: ExperimentOptions): Promise<CellResult[]> {
  const results = new Map<string, CellResult>(options.done ?? []);
  const todo = options.cells.filter((c) => !results.has(c.key));
  if (todo.length > 0) {
    const session = await openCellSession(options.modelDir, options.threads, options.maxMemoryBytes);
    try {
      for (const cell of todo) {
        const index = options.cells.indexOf(cell) + 1;
        const label = cellLabel(cell);
        const cells = options.cells.length;
        options.onEvent?.({ kind: 'cell-start', cell: index, cells, label });
        const result = await computeCell(session, cell, options, (done, total) => options.onEvent?.({ kind: 'window', cell: index, cells, label, done, total }));
        results.set(cell.key, result);
        options.onEvent?.({ kind: 'cell-done', cell: index, cells, label, result });
        await options.onCell?.(result);
      }
    } finally {
      await session.close();
    }
  }
  return options.cells.map((c) => results.get(c.key)!);
}
