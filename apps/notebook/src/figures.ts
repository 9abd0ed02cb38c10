import * as Plot from '@observablehq/plot';
import { PLOT_WIDTH } from './plots.js';

/** A point of a perplexity-vs-bits figure: one method (series) at one bits-per-weight. */
export interface MethodPoint {
  readonly series: string;
  readonly bpp: number;
  readonly ppl: number;
  /** Extra text for the tooltip. */
  readonly note?: string;
}

export interface DeltaPoint extends MethodPoint {
  /** ppl - the uniform baseline at the same bits per weight. */
  readonly delta: number;
  readonly baseline: number;
}

/** Uniform points further apart than this (in bits per weight) are not interpolated between (the paper stops 4.51 and 8.13, 3.6 bits apart; our 3.25 and 4.25 are 1.0 apart and are). */
export const MAX_INTERPOLATION_GAP = 1.5;
/** A point this close (bits per weight) outside the uniform range is compared with the nearest uniform point. */
export const EDGE_TOLERANCE = 0.25;

/**
 * The uniform baseline at any bits per weight: linear interpolation between the two uniform points around it
 * (exact at a uniform point), the nearest end point within EDGE_TOLERANCE outside their range, and undefined
 * further out or across a gap wider than MAX_INTERPOLATION_GAP.
 * Methods spend slightly different memory at the same budget stop, so each is compared at its own bits.
 */
export function uniformBaselineAt(uniform: readonly { bpp: number; ppl: number }[], bpp: number, edgeTolerance = EDGE_TOLERANCE): number | undefined {
  const sorted = [...uniform].sort((a, b) => a.bpp - b.bpp);
  const first = sorted[0];
  const last = sorted[sorted.length - 1];
  if (!first || !last) return undefined;
  // Just outside the range (a boost spends a little more than the top stop, MXQ a little less than the bottom
  // one): the nearest stop.
  if (bpp < first.bpp) return first.bpp - bpp <= edgeTolerance ? first.ppl : undefined;
  if (bpp > last.bpp) return bpp - last.bpp <= edgeTolerance ? last.ppl : undefined;
  for (let i = 0; i < sorted.length; i++) {
    const here = sorted[i]!;
    if (Math.abs(here.bpp - bpp) < 1e-9) return here.ppl;
    const next = sorted[i + 1];
    if (next && here.bpp < bpp && bpp < next.bpp) {
      if (next.bpp - here.bpp > MAX_INTERPOLATION_GAP) return undefined;
      return here.ppl + ((next.ppl - here.ppl) * (bpp - here.bpp)) / (next.bpp - here.bpp);
    }
  }
  return undefined;
}

/** Every non-uniform point as its change against the uniform baseline at its bits per weight (points outside dropped). */
export function deltaAgainstUniform(points: readonly MethodPoint[], uniformSeries: string, edgeTolerance = EDGE_TOLERANCE): DeltaPoint[] {
  const uniform = points.filter((p) => p.series === uniformSeries && Number.isFinite(p.ppl));
  const deltas: DeltaPoint[] = [];
  for (const p of points) {
    if (p.series === uniformSeries || !Number.isFinite(p.ppl)) continue;
    const baseline = uniformBaselineAt(uniform, p.bpp, edgeTolerance);
    if (baseline !== undefined) deltas.push({ ...p, baseline, delta: p.ppl - baseline });
  }
  return deltas;
}

export interface DeltaFigureOptions {
  readonly uniformSeries: string;
  readonly color: { readonly domain: readonly string[]; readonly range: readonly string[] };
  readonly dashed?: (series: string) => boolean;
  readonly pplLabel: string;
  /** Highlighted points (the knobs' choice). */
  readonly selected?: (point: DeltaPoint) => boolean;
  readonly xDomain?: readonly [number, number];
  readonly height?: number;
  readonly className?: string;
  /** How far outside uniform's range a point is still compared with the nearest stop (default EDGE_TOLERANCE). */
  readonly edgeTolerance?: number;
}

/**
 * The change of each method against uniform HQQ at the same bits per weight (below zero is better): the lines that
 * overlap in a perplexity-vs-memory plot separate here. One line per method; the zero line is uniform HQQ.
 */
export function deltaFigure(points: readonly MethodPoint[], options: DeltaFigureOptions): SVGSVGElement | HTMLElement {
  const deltas = deltaAgainstUniform(points, options.uniformSeries, options.edgeTolerance).sort((a, b) => a.bpp - b.bpp);
  const dashed = options.dashed ?? (() => false);
  const inDomain = options.xDomain ? deltas.filter((d) => d.bpp >= options.xDomain![0] && d.bpp <= options.xDomain![1]) : deltas;
  const uniformBits = points.filter((p) => p.series === options.uniformSeries).map((p) => p.bpp);
  return Plot.plot({
    width: PLOT_WIDTH,
    height: options.height ?? 380,
    marginRight: 20,
    x: { label: 'bits per weight (bits) →', grid: true, ...(options.xDomain ? { domain: [...options.xDomain] } : {}) },
    y: { label: `↓ perplexity change against HQQ uniform at the same bits (${options.pplLabel}, ppl points)`, grid: true },
    color: { domain: [...options.color.domain], range: [...options.color.range], legend: true },
    marks: [
      Plot.ruleY([0], { stroke: '#222', strokeWidth: 1.5 }),
      Plot.ruleX(uniformBits.filter((b) => !options.xDomain || (b >= options.xDomain[0] && b <= options.xDomain[1])), { stroke: '#bbb', strokeDasharray: '2 3' }),
      Plot.line(inDomain.filter((d) => !dashed(d.series)), { x: 'bpp', y: 'delta', stroke: 'series', z: 'series', strokeWidth: 1.6 }),
      Plot.line(inDomain.filter((d) => dashed(d.series)), { x: 'bpp', y: 'delta', stroke: 'series', z: 'series', strokeWidth: 1.4, strokeDasharray: '4 3' }),
      Plot.dot(inDomain, {
        x: 'bpp',
        y: 'delta',
        fill: 'series',
        r: 3,
        className: options.className ?? 'delta-point',
        title: (d: DeltaPoint) => `${d.series} at ${d.bpp.toFixed(3)} bits: ppl ${d.ppl.toFixed(3)}, ${d.delta >= 0 ? '+' : ''}${d.delta.toFixed(3)} against uniform (${d.baseline.toFixed(3)})${d.note ? `; ${d.note}` : ''}`,
      }),
      ...(options.selected ? [Plot.dot(inDomain.filter(options.selected), { x: 'bpp', y: 'delta', r: 8, stroke: '#d62728', strokeWidth: 2.5, fill: 'none', className: 'selected-result' })] : []),
      Plot.text(['uniform HQQ'], { frameAnchor: 'top-left', dx: 4, dy: 4, text: () => 'zero line: HQQ uniform; dotted: its budget stops', fill: '#555', fontSize: 10 }),
    ],
  });
}
