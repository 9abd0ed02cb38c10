import type { RefinementRound } from '@layerquant/allocators';
import type { RefinePlan, RefinementReport } from '@layerquant/pipeline';
import { formatSeconds } from '../progress.js';

// The lines every command prints of an allocator's correction by measurement (kld's refine): its plan and cost before
// it starts, each allocation it measured, and what was kept.

const kld = (value: number) => value.toPrecision(5);

/** The plan and cost, before the float model's distributions on the calibration are computed. */
export function refinePlanLine(plan: RefinePlan): string {
  const { calibration: c } = plan;
  const rounds = Number.isFinite(plan.rounds) ? `up to ${plan.rounds} round${plan.rounds === 1 ? '' : 's'} of ${plan.measurementsPerRound.toLocaleString('en-US')} single-unit measurements (each runs the layers after its unit)` : 'the plug-in\'s own rounds';
  return `${plan.method}'s correction by measurement on ${c.blocks} calibration block${c.blocks === 1 ? '' : 's'} of ${c.seqlen} tokens (${c.name}, ${c.tokens.toLocaleString('en-US')} scored tokens), ${plan.units} units x ${plan.configs} configs: the additive allocation measured, then ${rounds}, each proposed allocation measured whole; the corrected one is kept only when its KLD is not higher, there${c.heldOutBlocks > 0 ? ` and on ${c.heldOutBlocks} held-out block${c.heldOutBlocks === 1 ? '' : 's'} (the next ones of the text)` : ' (the text has no block after them to hold out)'} (--no-refine: the additive allocation, nothing measured)`;
}

/** One measured allocation: round 0 is the additive one. */
export function refineRoundLine(round: RefinementRound): string {
  if (round.round === 0) return `additive allocation: measured KLD ${kld(round.loss)} (sum of the units' own ΔKLD ${kld(round.predicted)})`;
  return `step ${round.round}${round.correction ? ` (${round.correction})` : ''}: measured KLD ${kld(round.loss)} (predicted ${kld(round.predicted)}), ${round.changed} unit${round.changed === 1 ? '' : 's'} changed${round.penalty ? `, penalty ${round.penalty.toExponential(2)}` : ''}`;
}

/** What was kept, and the measured KLD of both. */
export function refineDoneLine(report: RefinementReport): string {
  const change = report.additiveKld > 0 ? ` (${(100 * (report.refinedKld / report.additiveKld - 1)).toFixed(1)}%)` : '';
  const h = report.heldOut;
  const worseHeldOut = h !== null && h.refinedKld > h.additiveKld && report.refinedKld <= report.additiveKld;
  const kept = report.kept === 'refined'
    ? `kept the corrected allocation (${report.changed} unit${report.changed === 1 ? '' : 's'} changed)`
    : `kept the additive allocation (the corrected one measured worse${worseHeldOut ? ' on the held-out blocks' : ''})`;
  const heldOut = h ? `; on ${h.blocks} held-out block${h.blocks === 1 ? '' : 's'} ${kld(h.additiveKld)} additive, ${kld(h.refinedKld)} corrected` : '';
  return `${kept}: measured KLD ${kld(report.additiveKld)} additive, ${kld(report.refinedKld)} corrected${change}${heldOut}${report.stopped ? `; stopped: ${report.stopped}` : ''}; ${report.runs.toLocaleString('en-US')} forward passes, ${formatSeconds(report.seconds)}`;
}

/** The --json form of a correction (every measured allocation included). */
export function refinementJson(report: RefinementReport): Record<string, unknown> {
  return {
    additiveKld: report.additiveKld,
    refinedKld: report.refinedKld,
    kept: report.kept,
    heldOut: report.heldOut,
    changed: report.changed,
    stopped: report.stopped,
    calibration: report.calibration,
    runs: report.runs,
    seconds: report.seconds,
    rounds: report.rounds.map((r) => ({ round: r.round, correction: r.correction ?? null, kld: r.loss, predicted: r.predicted, changed: r.changed, penalty: r.penalty ?? 0 })),
  };
}
