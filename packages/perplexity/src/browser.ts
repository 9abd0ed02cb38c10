// Browser-safe entry: perplexity over token ids and its window protocols, without reading files
// (a page passes any model with tokenNll, e.g. one run by onnxruntime-web).
export { nonOverlappingWindows, slidingWindows, type Window, type WindowPlan } from './protocols.js';
export {
  PERPLEXITY_PROTOCOLS,
  perplexity,
  perplexityOfText,
  windowPlan,
  type NllModel,
  type PerplexityOptions,
  type PerplexityProtocol,
  type PerplexityResult,
} from './perplexity.js';
export { pairedBootstrap, verdict, type BootstrapOptions, type PairedInterval } from './paired-bootstrap.js';
