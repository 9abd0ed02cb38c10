import { InvalidOptionError } from '@layerquant/core';
import { isOnnxExportDir } from '@layerquant/export';
import { cachedKldBase, hasLogits, kldBaseFileName, kldBaseKey, windowPlan, type KldBaseFile, type KldBaseKey, type PerplexityOptions, type PerplexityResult } from '@layerquant/perplexity';
import { openModelWeights } from '@layerquant/quantizers/node';
import { fileContentHash, modelContentHash } from '@layerquant/tensor-io';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { isGgufFile, openEvaluationModel, type EvaluationOptions } from './evaluation-model.js';

/**
 * The float model's logits that a KL divergence compares against (llama.cpp's `--kl-divergence-base`), computed once
 * per model, tokenizer, text and window settings and cached as a base file (@layerquant/perplexity's kld-base): a
 * cache hit costs nothing but reading, a miss one float pass over the windows and tokens x vocab x 4 bytes on disk.
 */

/** Where base files go when no directory is given: $XDG_CACHE_HOME/layerquant/kld-base (~/.cache/... without it). */
export function defaultKldCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'layerquant', 'kld-base');
}

/** The content hashes a base is keyed by: every byte of the float model, and of its tokenizer.json ('none' without one). */
export async function kldBaseHashes(floatModelDir: string): Promise<{ model: string; tokenizer: string }> {
  const tokenizer = join(floatModelDir, 'tokenizer.json');
  return { model: await modelContentHash(floatModelDir), tokenizer: existsSync(tokenizer) ? await fileContentHash(tokenizer) : 'none' };
}

/** Bytes a base file takes for these windows (the scored positions' float32 logits; the header aside). */
export function kldBaseBytes(tokenCount: number, vocab: number, options: PerplexityOptions): number {
  const plan = windowPlan(options.maxTokens === undefined ? tokenCount : Math.min(tokenCount, options.maxTokens), options);
  return plan.windows.reduce((sum, w) => sum + (w.end - w.scoreFrom), 0) * vocab * 4;
}

/**
 * A KL divergence's base must be the float model: a quantized checkpoint, an ONNX export or a GGUF file is refused
 * (a KLD against a quantized model says nothing about what the quantization lost).
 */
export async function checkFloatBaseModel(floatModelDir: string, option: string): Promise<void> {
  const quantized = (what: string) => new InvalidOptionError(option, `${floatModelDir} is ${what}; give the float model (a checkpoint of float weights) the KL divergence is measured against`);
  if (isGgufFile(floatModelDir)) throw quantized('a GGUF file');
  if (isOnnxExportDir(floatModelDir)) throw quantized('an ONNX export');
  const weights = await openModelWeights(floatModelDir);
  try {
    if ('isQuantized' in weights) throw quantized('a quantized checkpoint');
  } finally {
    await weights.close();
  }
}

export interface FloatKldBase {
  readonly base: KldBaseFile;
  readonly key: KldBaseKey;
  /** Whether the base was computed now (false: read from the cache). */
  readonly computed: boolean;
  /** The float model's perplexity when computed now. */
  readonly perplexity?: PerplexityResult;
  /** Seconds spent computing it (0 when cached). */
  readonly seconds: number;
}

export interface FloatKldBaseOptions {
  /** Base files are cached here by their key (default: defaultKldCacheDir()). */
  readonly cacheDir?: string;
  /** How the float model is opened when the base must be computed (threads, memory: layer by layer above it). */
  readonly evaluation?: EvaluationOptions;
  /** Called before a base is computed, with its file and its bytes (the cost line). */
  readonly onCompute?: (file: string, bytes: number) => void;
}

/**
 * The base of `floatModelDir` on `ids` under the window settings of `options`: from the cache, or computed by one
 * float pass (the model opened the way `eval` opens it, so a model larger than the memory budget streams layer by
 * layer) and written window by window. Close `base` when done.
 */
export async function floatKldBase(floatModelDir: string, ids: readonly number[], options: PerplexityOptions, settings: FloatKldBaseOptions = {}): Promise<FloatKldBase> {
  const dir = resolve(floatModelDir);
  await checkFloatBaseModel(dir, '--kld-base');
  const cacheDir = resolve(settings.cacheDir ?? defaultKldCacheDir());
  const hashes = await kldBaseHashes(dir);
  const key = kldBaseKey(hashes, ids, options);
  const started = performance.now();
  const cached = await cachedKldBase(cacheDir, ids, hashes, options, async () => {
    const opened = await openEvaluationModel(dir, settings.evaluation ?? {});
    if (!hasLogits(opened.model)) {
      await opened.dispose();
      throw new InvalidOptionError('--kld-base', `${dir} is evaluated as ${opened.kind}, which gives no logits`);
    }
    settings.onCompute?.(join(cacheDir, kldBaseFileName(key)), kldBaseBytes(ids.length, opened.config.vocabSize, options));
    return { model: opened.model, vocab: opened.config.vocabSize, dispose: () => opened.dispose() };
  });
  return {
    base: cached.base,
    key,
    computed: cached.computed,
    ...(cached.perplexity ? { perplexity: cached.perplexity } : {}),
    seconds: cached.computed ? (performance.now() - started) / 1000 : 0,
  };
}
