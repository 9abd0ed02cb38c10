import {
  ALLOCATOR_PLUGINS,
  defaultLadder,
  findPlugin,
  refineMethod,
  type AllocationContext,
  type AllocationMeasurer,
  type AllocatorPlugin,
  type MatrixConfigs,
  type MethodSpec,
  type ModelStats,
  type RefinedAllocation,
  type RefinementRound,
} from '@layerquant/allocators';
import { InvalidDataError, InvalidOptionError, MissingFileError, configName, type Allocation, type QuantConfig, type Quantizer } from '@layerquant/core';
import { createKernelPool, defaultWorkerCount, type KernelPool } from '@layerquant/quantizers/node';
import { loadDecoderBlocks } from '@layerquant/runtime';
import { calibrationBlocks, createKldMeasurer, type KldMeasurer } from '@layerquant/sensitivity';
import { loadTokenizer, openModel, readTextFile } from '@layerquant/tensor-io';
import { existsSync } from 'node:fs';
import { freemem } from 'node:os';

/**
 * The correction of an allocation by measurement (an allocator plug-in's `refine`: the kld allocator's), as the
 * apps run it after `allocateMethod`: the model and the calibration blocks its statistics were measured on, a
 * measurer of the whole model's KL divergence from the float model there, the plug-in's plan and cost before it
 * starts, each measured allocation as it comes, and the host's own rule at the end: the refined allocation is kept
 * only when its measured KLD is not above the first (additive) one's, whatever the plug-in returned, both on the
 * calibration blocks it was fitted on and on held-out blocks of the same text it never saw (the blocks right after
 * them). A correction fitted on a few blocks can fit those blocks alone (measured on the shipped model: better on its
 * one block, worse on held-out text), so the held-out check decides.
 */

/**
 * Held-out blocks by default. One block is too few to decide: on the shipped model a correction fitted on one block of
 * brown-calib measured 4% better on the next block and 3% worse on 32 windows of brown-test.
 */
export const DEFAULT_HELD_OUT_BLOCKS = 4;
/** The float distributions of the default held-out blocks take at most this (fewer blocks for a large vocabulary, at least one). */
const DEFAULT_HELD_OUT_BYTES = 512 * 2 ** 20;

/** The held-out blocks a session takes by default: DEFAULT_HELD_OUT_BLOCKS, fewer where their float64 distributions would pass 512 MiB. */
export function defaultHeldOutBlocks(seqlen: number, vocabSize: number): number {
  return Math.max(1, Math.min(DEFAULT_HELD_OUT_BLOCKS, Math.floor(DEFAULT_HELD_OUT_BYTES / ((seqlen - 1) * vocabSize * 8))));
}

/** The calibration the correction measures on (the statistics': same text, blocks and block length). */
export interface RefineCalibration {
  /** The calibration text's file (read unless `text` is given). */
  readonly calibrationPath: string;
  /** The calibration text itself (a queue worker's, from its blob); `calibrationPath` then only names it. */
  readonly text?: string;
  readonly calibrationName: string;
  readonly blocks: number;
  readonly seqlen: number;
  /** onnxruntime intra-op threads of the measurements. */
  readonly threads?: number;
  /** Worker threads quantizing the candidates (default: one per core). */
  readonly workers?: number;
  /**
   * Blocks of the same text right after the calibration blocks on which the kept allocation is checked (default:
   * `defaultHeldOutBlocks`; fewer when the text ends sooner; 0: no held-out check).
   */
  readonly heldOutBlocks?: number;
}

/** A measurer over one model and calibration, shared by every allocation refined on it (an experiment's cells). */
export interface RefineSession {
  readonly measurer: KldMeasurer;
  readonly calibration: { readonly name: string; readonly blocks: number; readonly seqlen: number; readonly tokens: number; readonly heldOutBlocks: number; readonly heldOutTokens: number };
  /** The quantizer the candidates are quantized with (the statistics' quantizer). */
  readonly quantizer: string;
  close(): Promise<void>;
}

/** The correction quantizes each candidate with the statistics' quantizer, which must not be a calibrated one. */
export function checkRefineQuantizer(quantizer: Quantizer): void {
  if (quantizer.calibration) {
    throw new InvalidOptionError('--refine', `the correction by measurement quantizes each candidate with the statistics' quantizer, and "${quantizer.id}" is calibrated (a layer pass per allocation, not run there); measure the statistics with --stats-quantizer hqq, or keep the additive allocation with --no-refine`);
  }
}

/**
 * Opens the measurer: the float model's distributions on the calibration computed once, every decoder layer's float
 * weights held (MemoryBudgetError above what fits, saying what to lower). A calibrated quantizer (GPTQ) needs a layer
 * pass per allocation, which the measurer does not run: refused, saying what to do instead.
 */
export async function openRefineSession(modelDir: string, quantizer: Quantizer, calibration: RefineCalibration): Promise<RefineSession> {
  checkRefineQuantizer(quantizer);
  if (calibration.text === undefined && !existsSync(calibration.calibrationPath)) throw new MissingFileError(calibration.calibrationPath, 'calibration text not found; pass a UTF-8 text file with --calib');
  const text = calibration.text ?? (await readTextFile(calibration.calibrationPath, 'a UTF-8 calibration text with --calib'));
  if (text.trim().length === 0) throw new InvalidDataError(calibration.calibrationPath, 'is empty; the correction by measurement needs calibration text');
  const { config, checkpoint } = await openModel(modelDir);
  let pool: KernelPool | undefined;
  try {
    const wantHeldOut = calibration.heldOutBlocks ?? defaultHeldOutBlocks(calibration.seqlen, config.vocabSize);
    if (!Number.isInteger(wantHeldOut) || wantHeldOut < 0) throw new InvalidOptionError('heldOutBlocks', `${wantHeldOut} must be a whole number of blocks (0: no held-out check)`);
    // In order: the first `blocks` blocks are the statistics' calibration, the next ones (where the text has them) held out.
    const all = calibrationBlocks(text, await loadTokenizer(modelDir), { source: calibration.calibrationName, blocks: calibration.blocks + wantHeldOut, seqlen: calibration.seqlen });
    const fitted = Math.min(all.blocks, calibration.blocks);
    const blocks = { ids: all.ids.subarray(0, fitted * all.seqlen), blocks: fitted, seqlen: all.seqlen };
    const heldOut = all.blocks > fitted ? { ids: all.ids.subarray(fitted * all.seqlen), blocks: all.blocks - fitted, seqlen: all.seqlen } : undefined;
    const model = await loadDecoderBlocks(checkpoint, config, calibration.threads ? { threads: calibration.threads } : {});
    try {
      const workers = calibration.workers ?? defaultWorkerCount();
      pool = workers > 1 ? createKernelPool(workers) : undefined;
      const measurer = await createKldMeasurer(model, blocks, { quantizer, ...(pool ? { pool } : {}), ...(heldOut ? { heldOut } : {}), availableMemoryBytes: freemem() });
      const opened = pool;
      return {
        measurer,
        calibration: { name: calibration.calibrationName, blocks: measurer.blocks, seqlen: measurer.seqlen, tokens: measurer.tokens, heldOutBlocks: measurer.heldOut?.blocks ?? 0, heldOutTokens: measurer.heldOut?.tokens ?? 0 },
        quantizer: quantizer.id,
        close: async () => {
          await opened?.close();
          await model.dispose();
          await checkpoint.close();
        },
      };
    } catch (error) {
      await model.dispose();
      throw error;
    }
  } catch (error) {
    await pool?.close();
    await checkpoint.close();
    throw error;
  }
}

/** What the correction will cost, printed before it starts. */
export interface RefinePlan {
  readonly method: string;
  /** Units the allocation spends its budget on. */
  readonly units: number;
  readonly configs: number;
  /** Rounds at most, and the single-unit measurements of each (each runs the layers after its unit). */
  readonly rounds: number;
  readonly measurementsPerRound: number;
  readonly calibration: RefineSession['calibration'];
}

/** What the correction did: the measured KLD (nats per token, on the calibration) of the first and the refined allocation. */
export interface RefinementReport {
  /** The measured KLD of the allocator's first (additive) allocation. */
  readonly additiveKld: number;
  /** The measured KLD of the allocation the plug-in's correction returned. */
  readonly refinedKld: number;
  /**
   * `refined` when its KLD is not above the additive one's on the calibration and on the held-out blocks (then it is
   * the result), else `additive`.
   */
  readonly kept: 'refined' | 'additive';
  /**
   * The measured KLD of both allocations on the held-out blocks (null: the session has none, or the correction
   * changed nothing).
   */
  readonly heldOut: { readonly blocks: number; readonly tokens: number; readonly additiveKld: number; readonly refinedKld: number } | null;
  /** Units whose config the kept allocation changed from the additive one. */
  readonly changed: number;
  /** Every allocation the plug-in measured, in order (round 0: the additive one); empty when it reported none. */
  readonly rounds: readonly RefinementRound[];
  /** Why the plug-in stopped (`converged`, `worse`, `rounds`), when it says. */
  readonly stopped: string | null;
  readonly calibration: RefineSession['calibration'];
  /** Forward passes the measurements ran, and the wall-clock seconds of the correction. */
  readonly runs: number;
  readonly seconds: number;
}

/** Whether a method's plug-in corrects its allocation by measurement. */
export function methodRefines(method: MethodSpec, allocators: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): boolean {
  return findPlugin(method.allocator, allocators).refine !== undefined;
}

const itemName = (c: QuantConfig | null | undefined) => (c ? `${configName(c)}:${c.axis}:${c.roundZero ? 1 : 0}:${c.symmetric ? 1 : 0}` : 'float');
const configsOf = (allocation: Allocation): Map<string, QuantConfig | null> => new Map(allocation.matrices.map((m) => [m.key, m.config]));

/** The measurer with its whole-model losses remembered by allocation, so the host's check re-runs nothing the plug-in ran. */
function rememberingLosses(measurer: KldMeasurer): AllocationMeasurer {
  const losses = new Map<string, number>();
  const fingerprint = (allocation: MatrixConfigs) => [...allocation].filter(([, c]) => c).map(([key, c]) => `${key}=${itemName(c)}`).sort().join(',');
  return {
    async lossOf(allocation) {
      const key = fingerprint(allocation);
      let loss = losses.get(key);
      if (loss === undefined) {
        loss = await measurer.lossOf(allocation);
        losses.set(key, loss);
      }
      return loss;
    },
    marginals: (reference, candidates) => measurer.marginals(reference, candidates),
  };
}

/**
 * Runs a method's correction by measurement on `first` (its `allocateMethod` result): the plan first (`onPlan`),
 * each measured allocation (`onRound`), then the host's rule. A method without `refine` returns `first` and null.
 */
export async function refineAllocation(
  method: MethodSpec,
  first: Allocation,
  stats: ModelStats,
  context: AllocationContext,
  session: RefineSession,
  options: { readonly allocators?: readonly AllocatorPlugin[]; readonly onPlan?: (plan: RefinePlan) => void; readonly onRound?: (round: RefinementRound) => void } = {},
): Promise<{ readonly allocation: Allocation; readonly refinement: RefinementReport | null }> {
  const allocators = options.allocators ?? ALLOCATOR_PLUGINS;
  const plugin = findPlugin(method.allocator, allocators);
  if (!plugin.refine) return { allocation: first, refinement: null };
  const started = performance.now();
  const runsBefore = session.measurer.runs;
  const units = first.matrices.length;
  const configs = (context.configs ?? defaultLadder(stats)).length;
  const cost = plugin.refineCost?.(method.options, units, configs);
  options.onPlan?.({ method: method.id, units, configs, rounds: cost?.rounds ?? Number.NaN, measurementsPerRound: cost?.measurementsPerRound ?? Number.NaN, calibration: session.calibration });
  // Every unit the allocation names must be one the measurer quantizes (the same model).
  const known = new Set(session.measurer.units.map((u) => u.key));
  const foreign = first.matrices.find((m) => !known.has(m.key));
  if (foreign) throw new InvalidDataError(stats.source ?? 'statistics', `name unit ${foreign.key}, which the model has not: the statistics were made for another model`);
  const measurer = rememberingLosses(session.measurer);
  const rounds: RefinementRound[] = [];
  const refined = await refineMethod(method, first, stats, context, measurer, (round) => {
    rounds.push(round);
    options.onRound?.(round);
  }, allocators);
  const additiveKld = await measurer.lossOf(configsOf(first));
  const refinedKld = await measurer.lossOf(configsOf(refined));
  const additiveConfigs = configsOf(first);
  const differs = refined.matrices.some((m) => itemName(m.config) !== itemName(additiveConfigs.get(m.key)));
  // On text the correction never saw: kept only if it is not worse there either.
  const held = session.measurer.heldOutLossOf && session.measurer.heldOut && differs
    ? { ...session.measurer.heldOut, additiveKld: await session.measurer.heldOutLossOf(configsOf(first)), refinedKld: await session.measurer.heldOutLossOf(configsOf(refined)) }
    : null;
  const keep = refinedKld <= additiveKld && (held === null || held.refinedKld <= held.additiveKld);
  const kept = keep ? refined : first;
  const reported = (refined as Partial<RefinedAllocation>).refinement;
  return {
    allocation: kept,
    refinement: Object.freeze({
      additiveKld,
      refinedKld,
      kept: keep ? ('refined' as const) : ('additive' as const),
      heldOut: held ? Object.freeze(held) : null,
      changed: kept.matrices.filter((m) => itemName(m.config) !== itemName(additiveConfigs.get(m.key))).length,
      rounds: Object.freeze(rounds),
      stopped: reported?.stopped ?? null,
      calibration: session.calibration,
      runs: session.measurer.runs - runsBefore,
      seconds: (performance.now() - started) / 1000,
    }),
  };
}
