import type { KldAnswer } from '../live/protocol.js';
import { element, formatFixed, formatInteger, table } from '../notebook.js';

/**
 * The measure cell's KL-divergence table: what `layerquant eval --kld-base` prints first (mean KLD with its error,
 * 99.9% KLD, same top p), computed in the page on the same windows as its perplexity; or why it was not measured.
 */
export function kldView(kld: KldAnswer | undefined, error: string | undefined, label: string): HTMLElement {
  if (!kld) return element('p', { class: 'note', 'data-live-kld': 'error' }, `KL divergence not measured: ${error ?? 'nothing quantized'}`);
  const value = (name: string, v: number, text: string) => element('span', { 'data-live': name, 'data-value': String(v) }, text);
  const s = kld.summary;
  const body: (string | Node)[][] = [
    ['mean KLD', value('mean-kld', s.mean, `${formatFixed(s.mean, 6)} ± ${formatFixed(s.error, 6)}`)],
    ['99.9% KLD', value('kld-999', s.p999, formatFixed(s.p999, 6))],
    ['99% KLD', value('kld-99', s.p99, formatFixed(s.p99, 6))],
    ['median KLD', value('median-kld', s.median, formatFixed(s.median, 6))],
    ['maximum KLD', value('max-kld', s.max, formatFixed(s.max, 6))],
    ['same top p', value('same-top', s.sameTop, `${formatFixed(100 * s.sameTop, 3)}% ± ${formatFixed(100 * s.sameTopError, 3)}%`)],
    ['RMS Δp', value('rms-delta-p', s.rmsDeltaP, `${formatFixed(100 * s.rmsDeltaP, 3)}%`)],
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
