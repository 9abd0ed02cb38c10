import { matrixTensorName, type Allocation } from '@layerquant/core';
import { startModelWorker, type ModelWorker } from './client.js';
import type { ModelFilesSpec } from './model-files.js';
import type { GenerateAnswer, GenerateDevice, KldAnswer, OpenResult, PageQuantizer, PageTable, PerplexityAnswer, Progress, QuantizeResult, StatisticsAnswer } from './protocol.js';

/** Window length of the live perplexity: the protocol of the precomputed figures (brown-test, windows of 512). */
export const LIVE_SEQLEN = 512;

/** One model the page runs live, in its own worker: opened once, float session loaded once, quantized on demand. */
export interface LiveModel {
  readonly worker: ModelWorker;
  open(): Promise<OpenResult>;
  /** Quantizes with the allocation unless the current quantized model already is that allocation. */
  quantize(allocation: Allocation, onProgress?: (p: Progress) => void, quantizer?: PageQuantizer): Promise<QuantizeResult & { reused: boolean }>;
  perplexity(model: 'float' | 'quantized', windows: number, onProgress?: (p: Progress) => void): Promise<PerplexityAnswer>;
  /** The quantized model's KL divergence from the float model on the first windows (the float logits computed once). */
  kld(windows: number, onProgress?: (p: Progress) => void): Promise<KldAnswer>;
  generate(model: 'float' | 'quantized', prompt: string, tokens: number, onProgress?: (p: Progress) => void, device?: GenerateDevice): Promise<GenerateAnswer>;
  /** Measures one statistics table in the worker (`blocks`: calibration blocks of activation sensitivity). */
  statistics(table: PageTable, onProgress?: (p: Progress) => void, options?: { readonly blocks?: number }): Promise<StatisticsAnswer>;
  /** The allocation signature the quantized session holds, if any. */
  quantizedSignature(): string | undefined;
  terminate(): void;
}

export function allocationSignature(allocation: Allocation): string {
  return allocation.matrices.map((m) => (m.config ? `b${m.config.bits}g${m.config.groupSize}` : 'f')).join(' ');
}

export function createLiveModel(files: ModelFilesSpec, textUrl: string, calibrationUrl: string): LiveModel {
  const worker = startModelWorker();
  let opened: Promise<OpenResult> | undefined;
  let quantized: { signature: string; result: QuantizeResult } | undefined;
  const floatPpl = new Map<number, PerplexityAnswer>();
  const open = () => (opened ??= worker.request<OpenResult>({ kind: 'open', files, textUrl, calibrationUrl }));
  return {
    worker,
    open,
    async quantize(allocation, onProgress, quantizer = { id: 'hqq' }) {
      await open();
      // The quantizer (and GPTQ's calibration blocks) is part of what the quantized model is.
      const signature = `${quantizer.id}${quantizer.id === 'gptq' ? `:${quantizer.blocks ?? 'default'}` : ''} ${allocationSignature(allocation)}`;
      if (quantized?.signature === signature) return { ...quantized.result, reused: true };
      quantized = undefined;
      const matrices = allocation.matrices.filter((m) => m.config).map((m) => ({ name: matrixTensorName(m.layer, m.module), config: m.config! }));
      const result = await worker.request<QuantizeResult>({ kind: 'quantize', matrices, quantizer }, onProgress);
      quantized = { signature, result };
      return { ...result, reused: false };
    },
    async perplexity(model, windows, onProgress) {
      await open();
      // The float model does not change: measure each window count once.
      if (model === 'float' && floatPpl.has(windows)) return floatPpl.get(windows)!;
      const answer = await worker.request<PerplexityAnswer>({ kind: 'perplexity', model, windows, seqlen: LIVE_SEQLEN }, onProgress);
      if (model === 'float') floatPpl.set(windows, answer);
      return answer;
    },
    async kld(windows, onProgress) {
      await open();
      return worker.request<KldAnswer>({ kind: 'kld', windows, seqlen: LIVE_SEQLEN }, onProgress);
    },
    async generate(model, prompt, tokens, onProgress, device = 'wasm') {
      await open();
      return worker.request<GenerateAnswer>({ kind: 'generate', model, prompt, tokens, device }, onProgress);
    },
    async statistics(table, onProgress, options = {}) {
      await open();
      return worker.request<StatisticsAnswer>({ kind: 'statistics', table, ...(options.blocks === undefined ? {} : { blocks: options.blocks }) }, onProgress);
    },
    quantizedSignature: () => quantized?.signature,
    terminate: () => worker.terminate(),
  };
}
