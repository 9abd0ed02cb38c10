import { LINEAR_MODULES } from '@layerquant/core';
import { describe, expect, it } from 'vitest';
import type { MetricPlugin } from '../metrics.js';

export interface MetricConformanceOptions<Input, Options> {
  /** Makes the metric's input (a weight source, or decoder blocks with calibration ids), once per suite. */
  readonly input: () => Input | Promise<Input>;
  readonly options?: Options;
  /** Layers of the model the input describes (every layer must get rows). */
  readonly layers: number;
  /** Releases what `input` made (an onnxruntime session). */
  readonly dispose?: (input: Input) => void | Promise<void>;
}

type Row = Record<string, unknown> & { readonly layer: number };

/**
 * What every metric plug-in must satisfy; each plug-in's test file calls this (vitest). Checks: a table name, an
 * input kind and a description; rows for every layer (and every linear module, where rows name one) with finite
 * values; the same table from the same input (determinism); a table that survives its CSV layout through the
 * plug-in's own `format` and `parse` (written, read back, every number equal: the CSV keeps round-trip digits); and, for tables with bits
 * (fnorm, measured, kld), an error that falls as bits rise at each group size.
 */
export function runMetricConformance<Input, Output, Options>(metric: MetricPlugin<Input, Output, Options>, conformance: MetricConformanceOptions<Input, Options>): void {
  describe(`metric conformance: ${metric.id}`, () => {
    let input: Input;
    let first: { rows: readonly Row[] };
    let second: { rows: readonly Row[] };
    const options = (conformance.options ?? {}) as Options;

    it('describes itself: id, table, input kind, one-line description', () => {
      expect(metric.id).toMatch(/^[a-z0-9][a-z0-9-]*$/);
      expect(metric.table).toMatch(/^[a-z0-9][a-z0-9-]*$/);
      expect(['weights', 'activations']).toContain(metric.input);
      expect(metric.description.length).toBeGreaterThan(0);
      expect(metric.description).not.toContain('\n');
    });

    it('measures a row for every layer (and module), every value finite, the same table twice', async () => {
      input = await conformance.input();
      try {
        first = (await metric.measure(input, options)) as { rows: readonly Row[] };
        second = (await metric.measure(input, options)) as { rows: readonly Row[] };
      } finally {
        await conformance.dispose?.(input);
      }
      expect(Array.isArray(first.rows)).toBe(true);
      const layers = new Set(first.rows.map((r) => r.layer));
      for (let layer = 0; layer < conformance.layers; layer++) expect(layers.has(layer), `layer ${layer}`).toBe(true);
      if (first.rows.some((r) => 'module' in r)) {
        for (let layer = 0; layer < conformance.layers; layer++) {
          for (const module of LINEAR_MODULES) expect(first.rows.some((r) => r.layer === layer && r.module === module), `${layer}.${module}`).toBe(true);
        }
      }
      for (const row of first.rows) for (const [key, value] of Object.entries(row)) if (typeof value === 'number') expect(Number.isFinite(value), key).toBe(true);
      expect(second).toEqual(first);
    });

    it('survives the CSV layout of its table (its format, then its parse)', () => {
      // Both or neither: a table that is written must be readable by the tools that read statistics.
      expect(metric.format === undefined, 'format and parse come together').toBe(metric.parse === undefined);
      if (!metric.format || !metric.parse) return;
      const back = (metric.parse(metric.format(first as Output)) as { rows: readonly Row[] }).rows;
      expect(back).toHaveLength(first.rows.length);
      back.forEach((row, i) => {
        const original = first.rows[i]!;
        for (const [key, value] of Object.entries(row)) {
          const expected = original[key];
          if (typeof value === 'number' && typeof expected === 'number') expect(value, `${key} of row ${i}`).toBe(expected);
          else if (expected !== undefined) expect(value, `${key} of row ${i}`).toEqual(expected);
        }
      });
    });

    // Tables with a bits column and an error: skipped (and reported so) for other tables, never passed empty.
    const errorKey = metric.table === 'fnorm' ? 'fnorm' : metric.table === 'measured' ? 'error' : metric.table === 'kld' ? 'deltaKld' : undefined;
    it.runIf(errorKey !== undefined)('has an error that falls as bits rise (tables with a bits column)', () => {
      const byMatrix = new Map<string, Row[]>();
      for (const r of first.rows) {
        const key = `${r.layer}.${String(r.module)}.g${String(r.groupSize)}`;
        byMatrix.set(key, [...(byMatrix.get(key) ?? []), r]);
      }
      let compared = 0;
      for (const [key, rows] of byMatrix) {
        const sorted = [...rows].sort((a, b) => Number(a.bits) - Number(b.bits));
        for (let i = 1; i < sorted.length; i++) {
          expect(Number(sorted[i]![errorKey!]), `${key} b${String(sorted[i]!.bits)}`).toBeLessThan(Number(sorted[i - 1]![errorKey!]));
          compared++;
        }
      }
      expect(compared).toBeGreaterThan(0);
    });
  });
}
