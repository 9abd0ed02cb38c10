import type { KldAnswer } from '../live/protocol.js';
import { element, formatFixed, formatInteger, table } from '../notebook.js';

/**
 * The measure cell's KL-divergence table: what `layerquant eval --kld-base` prints first (mean KLD with its error,
 * 99.9% KLD, same top p), computed in the page on the same windows as its perplexity; or why it was not measured.
 */
export function kldView(kld: KldAnswer | undefined, error: string | undefined, label: string): HTMLElement {
  if (!kld) return element('p', { class: 'note', 'data-live-kld': 'error' }, `KL divergence not measured: ${error ?? 'nothing quantized'}`);
  const value = (name: string, v: number, text: string) => element('span', { 'data-live': name, 'data-value': String(v) }, text);
  const body: (string | Node)[][] = [
    ['mean KLD', value('mean-kld', kld.mean, `${formatFixed(kld.mean, 6)} ± ${formatFixed(kld.error, 6)}`)],
    ['99.9% KLD', value('kld-999', kld.p999, formatFixed(kld.p999, 6))],
    ['99% KLD', value('kld-99', kld.p99, formatFixed(kld.p99, 6))],
    ['median KLD', value('median-kld', kld.median, formatFixed(kld.median, 6))],
    ['maximum KLD', value('max-kld', kld.max, formatFixed(kld.max, 6))],
    ['same top p', value('same-top', kld.sameTop, `${formatFixed(100 * kld.sameTop, 3)}% ± ${formatFixed(100 * kld.sameTopError, 3)}%`)],
    ['RMS Δp', value('rms-delta-p', kld.rmsDeltaP, `${formatFixed(100 * kld.rmsDeltaP, 3)}%`)],
  ];
  const base = kld.base.computed
    ? `computed now in ${formatFixed(kld.base.seconds, 1)} s`
    : 'held from an earlier measurement (computed once per page session)';
  return element(
    'div',
    { 'data-live-kld': 'done' },
    table([`${label} against fp32`, 'KL divergence (nats per token)'], body, { 'data-table': 'live-kld', class: 'compact' }),
    element(
      'p',
      { class: 'note' },
      `KL divergence of the quantized model's next-token distribution from the fp32 model's on the same ${formatInteger(kld.tokens)} scored tokens, llama.cpp's statistics (\`layerquant eval --kld-base\`; @layerquant/perplexity). ` +
        `The fp32 logits of ${kld.base.windows} window${kld.base.windows === 1 ? '' : 's'} (${formatFixed(kld.base.bytes / 2 ** 20, 1)} MiB in the page): ${base}; the quantized model's pass took ${formatFixed(kld.seconds, 1)} s.`,
    ),
  );
}
