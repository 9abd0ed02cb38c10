import { LayerquantError } from '@layerquant/core';
import type { Progress, WorkerMessage, WorkerRequest } from './protocol.js';

/** An error the model worker reported, with its original class name (InvalidOptionError, ...). */
export class WorkerError extends LayerquantError {
  constructor(readonly originalName: string, message: string) {
    super('NOTEBOOK_WORKER', message);
    // The class the worker threw (MissingFileError, InvalidOptionError, ...) is the name a reader sees.
    this.name = originalName;
  }
}

/** "MissingFileError: <message>" for a status line. */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** The page's side of a model worker: one promise per request, progress through a callback. */
export interface ModelWorker {
  request<T>(request: WorkerRequest, onProgress?: (progress: Progress) => void): Promise<T>;
  terminate(): void;
}

export function startModelWorker(): ModelWorker {
  const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'layerquant-model' });
  let next = 1;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: unknown) => void; onProgress?: (p: Progress) => void }>();
  worker.onmessage = (event: MessageEvent<WorkerMessage>) => {
    const message = event.data;
    const entry = pending.get(message.id);
    if (!entry) return;
    if ('progress' in message) entry.onProgress?.(message.progress);
    else {
      pending.delete(message.id);
      if ('error' in message) entry.reject(new WorkerError(message.error.name, message.error.message));
      else entry.resolve(message.result);
    }
  };
  worker.onerror = (event) => {
    for (const entry of pending.values()) entry.reject(new WorkerError('WorkerError', event.message || 'the model worker failed to start'));
    pending.clear();
  };
  return {
    request<T>(request: WorkerRequest, onProgress?: (progress: Progress) => void) {
      const id = next++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (value: unknown) => void, reject, ...(onProgress ? { onProgress } : {}) });
        worker.postMessage({ id, request });
      });
    },
    terminate: () => worker.terminate(),
  };
}
