// Browser-safe entry: perplexity and KL divergence over token ids and their window protocols, without reading or
// writing files (a page passes any model with tokenNll / logitsAndNll, e.g. one run by onnxruntime-web; its KL
// divergence base is held in memory).
export { nonOverlappingWindows, slidingWindows, type Window, type WindowPlan } from './protocols.js';
export {
  PERPLEXITY_PROTOCOLS,
  PerplexitySums,
  perplexity,
  perplexityOfText,
  windowInputs,
  windowPlan,
  type NllModel,
  type PerplexityOptions,
  type PerplexityProtocol,
  type PerplexityResult,
  type WindowInputs,
} from './perplexity.js';
export {
  DELTA_P_QUANTILES,
  KLD_QUANTILES,
  KldAccumulator,
  comparePosition,
  kldSummary,
  logSumExpRow,
  sortedQuantile,
  type Distribution,
  type Estimate,
  type KldStatistics,
  type KldSummary,
  type PositionComparison,
  type WindowKld,
} from './kl-divergence.js';
export {
  checkSameWindows,
  forEachWindowLogits,
  hasLogits,
  klDivergence,
  kldBaseInMemory,
  scoredRows,
  type KlDivergenceResult,
  type KldBaseReader,
  type LogitsModel,
  type ScoredLogits,
} from './kld-evaluation.js';
export { pairedBootstrap, pairedBootstrapKld, verdict, type BootstrapOptions, type PairedInterval } from './paired-bootstrap.js';
