import { configName, type Allocation } from '@layerquant/core';
import type { ModelAnalysis } from '../analysis.js';
import type { NotebookData, ResultRow } from '../data.js';
import { LIVE_SEQLEN, type LiveModel } from '../live/session.js';
import { describeError } from '../live/client.js';
import { progressView } from '../live/progress.js';
import { PAGE_CALIBRATION_BLOCKS, type KldAnswer, type PageQuantizer, type PerplexityAnswer, type QuantizeResult } from '../live/protocol.js';
import { kldView } from './kld-view.js';
import { allocate, methodLabel, methods } from '../methods.js';
import { element, formatFixed, formatInteger, table, type Cell } from '../notebook.js';
import type { Knobs } from '../state.js';
import { selectedBy } from './results.js';

export const WINDOW_CHOICES: readonly number[] = Object.freeze([1, 2, 4, 8, 16, 32]);
/** GPTQ's calibration blocks of brown-calib in the page (the CLI defaults to 128). */
export const GPTQ_BLOCK_CHOICES: readonly number[] = Object.freeze([1, 2, 4, 8, 16, 32]);

interface Measured {
  readonly knobs: Knobs;
  readonly label: string;
  readonly windows: number;
  readonly float: PerplexityAnswer;
  readonly quantized: PerplexityAnswer;
  readonly quantizeSeconds: number;
  readonly squaredError: number;
  readonly matrices: number;
  /** The quantized model's KL divergence from fp32 on the same windows, or why it was not measured. */
  readonly kld?: KldAnswer;
  readonly kldError?: string;
  readonly quantize: QuantizeResult;
}

export interface MeasureCell {
  update(knobs: Knobs): void;
  /** New statistics of the same model (a table measured in the page): later allocations use them. */
  setAnalysis(analysis: ModelAnalysis): void;
}

export function knobsLabel(knobs: Knobs): string {
  const method = methods.get(knobs.method);
  return `${method.label}${method.boosts ? ` (stop ${knobs.boostStop}, ${knobs.topM === 0 ? 'all outliers' : `top ${knobs.topM}`})` : ''} at ${knobs.budget}`;
}

/**
 * Quantize the shipped model with the knobs' allocation and measure perplexity, here: HQQ on the WebAssembly
 * kernel in the model worker, the decoder graph in onnxruntime-web, the first N windows of brown-test.
 */
export function createMeasureCell(cell: Cell, live: LiveModel, analysis: ModelAnalysis, initial: Knobs, precomputedData?: NotebookData): MeasureCell {
  let knobs = initial;
  let measured: Measured | undefined;
  let busy = false;
  const windows = element('select', { 'data-live-input': 'windows' });
  for (const n of WINDOW_CHOICES) windows.append(element('option', { value: String(n) }, `${n} window${n === 1 ? '' : 's'} (${formatInteger(n * LIVE_SEQLEN)} tokens)`));
  windows.value = '4';
  // The quantizer: HQQ (weights only) or GPTQ, whose layer pass over brown-calib runs here before it quantizes.
  const quantizerSelect = element('select', { 'data-live-input': 'quantizer' });
  quantizerSelect.append(element('option', { value: 'hqq' }, 'HQQ'), element('option', { value: 'gptq' }, 'GPTQ (calibrated here)'));
  const blocksSelect = element('select', { 'data-live-input': 'gptq-blocks' });
  for (const n of GPTQ_BLOCK_CHOICES) blocksSelect.append(element('option', { value: String(n) }, `${n} block${n === 1 ? '' : 's'} of brown-calib`));
  blocksSelect.value = String(PAGE_CALIBRATION_BLOCKS);
  const blocksLabel = element('label', {}, 'GPTQ calibration ', blocksSelect);
  const chosenQuantizer = (): PageQuantizer => (quantizerSelect.value === 'gptq' ? { id: 'gptq', blocks: Number(blocksSelect.value) } : { id: 'hqq' });
  const showBlocks = () => (blocksLabel.hidden = quantizerSelect.value !== 'gptq');
  showBlocks();
  const button = element('button', { type: 'button', 'data-action': 'measure' }, 'Quantize and measure');
  const progress = progressView('measure');
  const results = element('div', { 'data-live-results': '' });
  const selection = element('p', { class: 'note', 'data-live-selection': '' });

  const precomputed = (k: Knobs): ResultRow | undefined => precomputedData?.results.find((r) => selectedBy(k, r));
  const renderResults = () => {
    if (!measured) {
      results.replaceChildren(element('p', { class: 'muted' }, 'Nothing measured yet. Choose the knobs above and press the button: the model loads once, then each allocation takes a few seconds.'));
      return;
    }
    const m = measured;
    const row = precomputed(m.knobs);
    const span = `first ${m.windows} window${m.windows === 1 ? '' : 's'} of ${LIVE_SEQLEN} (${formatInteger(m.float.tokens)} tokens)`;
    const ratio = (q: number, f: number) => `x${formatFixed(q / f, 4)}`;
    const body: (string | Node)[][] = [
      ['fp32', element('span', { 'data-live': 'float-ppl', 'data-value': String(m.float.ppl) }, formatFixed(m.float.ppl, 4)), '', span, element('span', { class: 'badge badge-live' }, 'measured here, partial')],
      [`${m.label}${m.quantize.quantizer === 'gptq' ? ', GPTQ' : ''}`, element('span', { 'data-live': 'quant-ppl', 'data-value': String(m.quantized.ppl) }, formatFixed(m.quantized.ppl, 4)), ratio(m.quantized.ppl, m.float.ppl), span, element('span', { class: 'badge badge-live' }, 'measured here, partial')],
    ];
    if (precomputedData) {
      const { reference, sources } = precomputedData;
      const whole = `whole text (${reference.perplexityDataset})`;
      body.push(['fp32', formatFixed(reference.fp32Perplexity, 4), '', whole, element('span', { class: `badge badge-${reference.fp32Source}` }, 'precomputed')]);
      body.push(
        row
          ? [`${methodLabel(row.method, row.options)} at ${row.budget}`, formatFixed(row.ppl, 4), ratio(row.ppl, reference.fp32Perplexity), whole, element('span', { class: `badge badge-${sources.results.kind}` }, 'precomputed')]
          : [m.label, element('span', { class: 'muted' }, 'not in the precomputed grid: the live figure is the only one'), '', '', ''],
      );
    }
    results.replaceChildren(
      table(['model', 'perplexity', 'vs fp32', 'text', 'source'], body, { 'data-table': 'live-results', class: 'compact' }),
      element(
        'p',
        { class: 'note' },
        `A partial measurement: the first ${m.windows} window${m.windows === 1 ? '' : 's'} of brown-test${precomputedData ? ', not the whole text the precomputed figures cover, so compare the ratios rather than the perplexities' : ''}. ` +
          `Quantized ${m.matrices} matrices with ${quantizerText(m.quantize)} on the WebAssembly kernel in ${formatFixed(m.quantizeSeconds, 1)} s (summed squared error ${formatFixed(m.squaredError, 3)}); ` +
          `perplexity by onnxruntime-web in ${formatFixed(m.float.seconds, 1)} s (fp32) and ${formatFixed(m.quantized.seconds, 1)} s (quantized).`,
      ),
      kldView(m.kld, m.kldError, m.label),
    );
  };

  const run = async () => {
    if (busy) return;
    busy = true;
    button.disabled = true;
    cell.root.dataset.live = 'busy';
    const k = knobs;
    const count = Number(windows.value);
    try {
      const { allocation } = allocate(analysis, k);
      progress.status('opening the model');
      await live.open();
      const chosen = chosenQuantizer();
      const quantized = await live.quantize(allocation, (p) => progress.update(p, chosen.id === 'gptq' ? 'GPTQ' : 'quantize'), chosen);
      // KL divergence from fp32 on the same windows; its two passes (fp32 logits once per session, the quantized
      // model's) give both perplexities too. Where it cannot be measured (too many windows to hold), perplexity alone.
      let kld: { kld: KldAnswer } | { kldError: string };
      try {
        kld = { kld: await live.kld(count, (p) => progress.update(p, 'KL divergence from fp32')) };
      } catch (error) {
        kld = { kldError: describeError(error) };
      }
      const float = 'kld' in kld && kld.kld.floatPerplexity ? kld.kld.floatPerplexity : await live.perplexity('float', count, (p) => progress.update(p, 'fp32 perplexity'));
      const q = 'kld' in kld ? kld.kld.perplexity : await live.perplexity('quantized', count, (p) => progress.update(p, 'quantized perplexity'));
      measured = { knobs: k, label: knobsLabel(k), windows: count, float, quantized: q, quantizeSeconds: quantized.seconds, squaredError: quantized.squaredError, matrices: quantized.matrices, quantize: quantized, ...kld };
      progress.status(`done: ${knobsLabel(k)}${quantized.quantizer === 'gptq' ? ' with GPTQ' : ''} on ${count} window${count === 1 ? '' : 's'}`, 'done');
      renderResults();
      cell.root.dataset.live = 'done';
    } catch (error) {
      progress.status(describeError(error), 'error');
      cell.root.dataset.live = 'error';
    } finally {
      busy = false;
      button.disabled = false;
      update(knobs);
    }
  };
  button.addEventListener('click', () => void run());

  const output = [element('div', { class: 'live-controls' }, button, element('label', {}, 'quantizer ', quantizerSelect), blocksLabel, element('label', {}, 'evaluate on ', windows)), selection, progress.root, results];
  const update = (next: Knobs) => {
    knobs = next;
    const { allocation } = allocate(analysis, knobs);
    // After knobs the model cannot allocate (a missing table), the cell showed that error or what it needs: bring the
    // controls back.
    if (cell.root.dataset.state === 'error' || !output[0]!.isConnected) cell.setOutput(...output);
    cell.setCode(codeOf(allocation, Number(windows.value), chosenQuantizer()));
    const stale = measured && JSON.stringify(measured.knobs) !== JSON.stringify(knobs);
    selection.textContent =
      `The knobs select ${knobsLabel(knobs)}: ${allocation.matrices.filter((m) => m.config).length} matrices, ${formatFixed(allocation.totals.bpp, 4)} bits per weight.` +
      (stale ? ` The table below was measured for ${measured!.label}; press the button to measure this one.` : '');
  };
  windows.addEventListener('change', () => update(knobs));
  quantizerSelect.addEventListener('change', () => {
    showBlocks();
    update(knobs);
  });
  blocksSelect.addEventListener('change', () => update(knobs));
  cell.setOutput(...output);
  renderResults();
  update(knobs);
  return {
    update,
    setAnalysis(next) {
      analysis = next;
    },
  };
}

function quantizerText(q: QuantizeResult): string {
  return q.quantizer === 'gptq' ? `GPTQ (Hessians from ${q.blocks} block${q.blocks === 1 ? '' : 's'} of ${q.seqlen} tokens of brown-calib, collected here layer by layer)` : 'HQQ';
}

function codeOf(allocation: Allocation, windows: number, quantizer: PageQuantizer): string {
  const configs = new Set(allocation.matrices.map((m) => (m.config ? configName(m.config) : 'float')));
  const quantize =
    (quantizer.id === 'gptq'
      ? `const pass = createSequentialCalibration(decoderBlocks, calibrationBlocks(brownCalib, tokenizer, { blocks: ${quantizer.blocks} }))   // @layerquant/sensitivity\n` +
        `// in layer order (q, k, v, o, gate, up, down), each matrix on its input Hessian with the ones before it quantized:\n` +
        `for await (const unit of quantizeUnits({ plans, read, quantizer: gptq, calibration: pass }))   // createGptqQuantizer({ kernel: 'wasm' })\n`
      : `for await (const unit of quantizeUnits({ plans, read, quantizer: hqq }))   // createHqqQuantizer({ kernel: 'wasm' })\n`) +
    `  if (unit.quantized) weights.set(unit.plan.matrix.name, unit.dequantized)\n`;
  return (
    `// in the model worker (WebAssembly): the ${allocation.matrices.length} matrices (${[...configs].join(', ')}), planned and quantized by quantizeModel's loop\n` +
    `const plans = planUnits(tensors, (key, matrix) => configs.get(matrix.name) ?? null)   // @layerquant/quantizers\n` +
    quantize +
    `const model = await ort.InferenceSession.create(buildDecoderGraph(config, layout, { weights, tokenNll: true }).encode())\n` +
    `await perplexity(model, brownTestIds, { seqlen: ${LIVE_SEQLEN}, maxTokens: ${windows * LIVE_SEQLEN} })   // @layerquant/perplexity\n` +
    `const base = await kldBaseInMemory(fp32Model, vocab, brownTestIds, windows)   // once per page session\n` +
    `await klDivergence(model, base, brownTestIds, windows)   // mean KLD, 99.9% KLD, same top p`
  );
}
