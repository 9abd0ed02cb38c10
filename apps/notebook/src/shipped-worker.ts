/// <reference lib="webworker" />
import { parseDecoderConfig } from '@layerquant/tensor-io/browser';
import { analyse } from './analysis.js';
import { validateNotebookData } from './data.js';
import { shippedSizes } from './shipped.js';

// The shipped size of every results row off the page's thread: each row re-runs its allocator (the MILPs take a
// while) and the export's cost model builds the file's skeleton, about a second per row on a slow machine.

declare const self: DedicatedWorkerGlobalScope;

export interface ShippedRequest {
  readonly dataUrl: string;
  readonly configUrl: string;
}

export type ShippedMessage = { readonly bytes: readonly (number | null)[]; readonly label: string } | { readonly error: string };

self.onmessage = async (event: MessageEvent<ShippedRequest>) => {
  try {
    const fetchJson = async (url: string) => {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      return response.json() as Promise<unknown>;
    };
    const data = validateNotebookData(await fetchJson(event.data.dataUrl), event.data.dataUrl);
    const sizes = shippedSizes(parseDecoderConfig(await fetchJson(event.data.configUrl), 'config.json'), data.tensors.map((t) => t.name), analyse(data).stats);
    self.postMessage({ bytes: data.results.map((row) => sizes.bytesOf(row) ?? null), label: sizes.label } satisfies ShippedMessage);
  } catch (error) {
    self.postMessage({ error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) } satisfies ShippedMessage);
  }
};
