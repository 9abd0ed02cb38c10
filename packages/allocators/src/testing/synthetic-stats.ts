import { LINEAR_MODULES, PAPER_CONFIGS, bitsPerWeight, memoryMB, zeroKind, type QuantConfig } from '@layerquant/core';
import { seededRandom } from '../random.js';
import { sensitivityPartOf, type FnormRow, type KldRow, type KurtosisRow, type MeasuredRow, type ModelStats, type SensitivityRow } from '../stats.js';

export interface SyntheticStatsOptions {
  readonly layers?: number;
  readonly hidden?: number;
  readonly intermediate?: number;
  readonly configs?: readonly QuantConfig[];
  readonly seed?: number;
}

/**
 * Every table of a small Llama-shaped model (q,k,v,o hidden x hidden; gate, up, down hidden x intermediate), with
 * seeded values shaped like real ones: errors fall with bits and rise with group size; one layer per module is a
 * kurtosis and a sensitivity outlier. For conformance suites and tests; not a measurement of anything.
 */
export function syntheticStats(options: SyntheticStatsOptions = {}): ModelStats {
  const layers = options.layers ?? 8;
  const hidden = options.hidden ?? 64;
  const intermediate = options.intermediate ?? 160;
  const configs = options.configs ?? PAPER_CONFIGS;
  const random = seededRandom(options.seed ?? 1);
  const fnorm: FnormRow[] = [];
  const measured: MeasuredRow[] = [];
  const kld: KldRow[] = [];
  const kurtosis: KurtosisRow[] = [];
  const sensitivity: SensitivityRow[] = [];
  const outlierLayer = Math.floor(random() * layers);
  for (let layer = 0; layer < layers; layer++) {
    for (const module of LINEAR_MODULES) {
      const params = module.startsWith('self_attn') ? hidden * hidden : hidden * intermediate;
      const scale = 0.5 + random();
      const k = (layer === outlierLayer ? 40 : 3) + random();
      kurtosis.push({ module, layer, params, kurtosis: k });
      for (const c of configs) {
        const error = scale * Math.sqrt(params) * 2 ** -c.bits * Math.sqrt(c.groupSize / 32) * (1 + k / 100);
        const bpp = bitsPerWeight(c);
        const common = { layer, module, bits: c.bits, groupSize: c.groupSize, zero: zeroKind(c), metaBits: 8, metaGroupSize: 128, memoryMB: memoryMB(bpp, params), params };
        fnorm.push({ ...common, fnorm: error, kurtosis: k });
        measured.push({ ...common, error: error * error * 1e-3, blocks: 4 });
        kld.push({ ...common, deltaKld: error * error * 1e-5 * (1 + layer / layers), blocks: 4, seqlen: 64 });
      }
    }
    for (const part of new Set(LINEAR_MODULES.map(sensitivityPartOf))) {
      sensitivity.push({ dataset: 'synthetic', part, model: 'synthetic', bits: 4, groupSize: 64, layer, sensitivity: (layer === outlierLayer ? 5 : 0.5) + random() * 0.1 });
    }
  }
  return Object.freeze({
    fnorm: { rows: fnorm },
    measured: { rows: measured },
    kld: { rows: kld },
    kurtosis: { rows: kurtosis },
    sensitivity: { rows: sensitivity },
    source: 'synthetic statistics',
  });
}
