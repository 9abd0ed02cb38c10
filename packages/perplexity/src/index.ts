// Everything the browser entry has, plus what reads or writes files.
export * from './browser.js';
export { resolveTextPath } from './perplexity.js';
export { readEvaluationText } from './text-file.js';
export {
  KldBaseMismatchError,
  cachedKldBase,
  checkBaseWindows,
  kldBaseFileName,
  kldBaseKey,
  openKldBase,
  tokensHash,
  windowSettings,
  writeKldBase,
  type CachedKldBase,
  type KldBaseFile,
  type KldBaseKey,
  type KldWindowSettings,
  type WrittenKldBase,
} from './kld-base.js';
