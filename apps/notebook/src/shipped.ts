import { allocateMethod, resolveOptions, type ModelStats, type OptionValue } from '@layerquant/allocators';
import { LayerquantError, type Allocation, type DecoderConfig, type QuantConfig } from '@layerquant/core';
import { onnxCostModel, type OnnxCostModel } from '@layerquant/export/browser';
import { decoderLayout } from '@layerquant/runtime/graph';
import type { ResultRow } from './data.js';
import { allocators } from './methods.js';

/** MiB: 2^20 bytes, the unit of every size the page shows. */
export const MIB = 2 ** 20;

/** The shipped file of each results row: what a user ships when exporting that allocation. */
export interface ShippedSizes {
  /** What the bytes are (the cost model's label: the ONNX file of `layerquant export --format onnx`). */
  readonly label: string;
  /**
   * Bytes of that file for a row (every byte under onnx/: graph and external data), or undefined where the page
   * cannot re-make the row's allocation (an allocator it does not have, or one that no longer gives the row's bits).
   */
  bytesOf(row: ResultRow): number | undefined;
}

/** The ONNX cost model of a model under the export's defaults, from its config and tensor names. */
export function exportCostModel(config: DecoderConfig, tensorNames: Iterable<string>): OnnxCostModel {
  const names = new Set(tensorNames);
  return onnxCostModel(config, decoderLayout(config, { has: (name: string) => names.has(name) }));
}

/** Bytes of the ONNX file an allocation exports to: its configs for the linear units, embeddings and lm_head in float. */
export function allocationFileBytes(cost: OnnxCostModel, allocation: Allocation): number {
  const configs = new Map<string, QuantConfig | null>(allocation.matrices.map((m) => [m.key, m.config ?? null]));
  return cost.fileBytes((unit) => configs.get(unit.key) ?? null);
}

/**
 * The exact size of the ONNX export of each row's allocation (`@layerquant/export`'s cost model, the export's
 * defaults: float32 activations and embeddings, float16 scales): the row's allocator is re-run on the page's
 * statistics (stop allocators floored to the stop, as the experiment does), and its bits per weight must equal the
 * row's, else the row gets no shipped size.
 */
export function shippedSizes(config: DecoderConfig, tensorNames: Iterable<string>, stats: ModelStats): ShippedSizes {
  const cost = exportCostModel(config, tensorNames);
  const memo = new Map<ResultRow, number | undefined>();
  const measure = (row: ResultRow): number | undefined => {
    if (!allocators.has(row.method)) return undefined;
    const plugin = allocators.get(row.method);
    const given = row.options as Record<string, OptionValue>;
    let allocation;
    try {
      allocation = allocateMethod({ id: row.method, allocator: plugin.id, options: resolveOptions(plugin, given), explicit: Object.keys(given) }, stats, { budget: row.budget, floorToStop: true }, allocators.list());
    } catch (error) {
      // A table the page does not hold: no shipped size rather than a wrong one.
      if (error instanceof LayerquantError) return undefined;
      throw error;
    }
    if (Math.abs(allocation.totals.bpp - row.bpp) > 1e-6) return undefined;
    return allocationFileBytes(cost, allocation);
  };
  return {
    label: cost.label,
    bytesOf(row) {
      if (!memo.has(row)) memo.set(row, measure(row));
      return memo.get(row);
    },
  };
}

/** A row's identity across copies (the figure labels copies of the rows; the worker parses its own). */
const rowKey = (row: ResultRow): string => JSON.stringify([row.model, row.method, row.options, row.budget, row.bpp]);

/**
 * The rows' shipped sizes computed in a worker (shipped-worker.ts) from the page's notebook.json and the served
 * model's config.json: resolves once all are known, in the order of `rows`.
 */
export function shippedSizesInWorker(rows: readonly ResultRow[], urls: { readonly data: string; readonly config: string }): Promise<ShippedSizes> {
  const worker = new Worker(new URL('./shipped-worker.ts', import.meta.url), { type: 'module', name: 'layerquant-shipped-sizes' });
  return new Promise<ShippedSizes>((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<{ bytes: readonly (number | null)[]; label: string } | { error: string }>) => {
      worker.terminate();
      const message = event.data;
      if ('error' in message) {
        reject(new Error(message.error));
        return;
      }
      const byRow = new Map(rows.map((row, i) => [rowKey(row), message.bytes[i] ?? undefined]));
      resolve({ label: message.label, bytesOf: (row) => byRow.get(rowKey(row)) });
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(event.message || 'the shipped-size worker failed to start'));
    };
    worker.postMessage({ dataUrl: urls.data, configUrl: urls.config });
  });
}
