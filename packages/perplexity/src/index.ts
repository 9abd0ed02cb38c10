export { nonOverlappingWindows, slidingWindows, type Window, type WindowPlan } from './protocols.js';
export {
  PERPLEXITY_PROTOCOLS,
  perplexity,
  perplexityOfText,
  resolveTextPath,
  windowPlan,
  type NllModel,
  type PerplexityOptions,
  type PerplexityProtocol,
  type PerplexityResult,
} from './perplexity.js';
export { readEvaluationText } from './text-file.js';
export { pairedBootstrap, verdict, type BootstrapOptions, type PairedInterval } from './paired-bootstrap.js';
