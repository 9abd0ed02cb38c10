import type { ModelAnalysis } from '../analysis.js';
import { describeError } from '../live/client.js';
import { progressView } from '../live/progress.js';
import type { GenerateAnswer } from '../live/protocol.js';
import type { LiveModel } from '../live/session.js';
import { allocate } from '../methods.js';
import { element, formatFixed, type Cell } from '../notebook.js';
import type { Knobs } from '../state.js';
import { knobsLabel } from './measure.js';

export const DEFAULT_PROMPT = 'Call me Ishmael. Some years ago, never mind how long precisely,';
export const TOKEN_CHOICES: readonly number[] = Object.freeze([16, 32, 48, 64]);

export interface GenerateCell {
  update(knobs: Knobs): void;
}

/**
 * Greedy decoding from the float and the quantized model side by side, in the model worker: the quantized model runs
 * the exported graph itself (packed MatMulNBits weights), on WebAssembly or WebGPU.
 */
export function createGenerateCell(cell: Cell, live: LiveModel, analysis: ModelAnalysis, initial: Knobs): GenerateCell {
  let knobs = initial;
  const prompt = element('textarea', { 'data-live-input': 'prompt', rows: '2', spellcheck: 'false' });
  prompt.value = DEFAULT_PROMPT;
  const tokens = element('select', { 'data-live-input': 'tokens' });
  for (const n of TOKEN_CHOICES) tokens.append(element('option', { value: String(n) }, `${n} tokens`));
  tokens.value = '32';
  // WebGPU only where the browser offers it (navigator.gpu); the worker asks for an adapter when it builds the session.
  const device = element('select', { 'data-live-input': 'device' });
  device.append(element('option', { value: 'wasm' }, 'WebAssembly'));
  if ('gpu' in navigator) device.append(element('option', { value: 'webgpu' }, 'WebGPU'));
  device.value = 'wasm';
  const button = element('button', { type: 'button', 'data-action': 'generate' }, 'Generate');
  const progress = progressView('generate');
  const columns = element('div', { class: 'generations' });

  const column = (title: string, which: string, answer: GenerateAnswer, divergesAt: number, tokenizerDecode: string) =>
    element(
      'div',
      { class: 'generation', 'data-generated': which, 'data-ids': answer.ids.join(' ') },
      element('h3', {}, title),
      element('p', { class: 'generated-text' }, element('span', { class: 'prompt-text' }, prompt.value), tokenizerDecode),
      element(
        'p',
        { class: 'note', 'data-decode-tps': String(answer.decodeTokensPerSecond ?? '') },
        `${answer.ids.length} tokens in ${formatFixed(answer.seconds, 1)} s (${answer.weights === 'packed' ? 'packed MatMulNBits weights, as exported' : 'float32 weights'}, ${answer.device === 'webgpu' ? 'WebGPU' : 'WebAssembly'}: ` +
          `prefill ${formatFixed(answer.prefillSeconds, 2)} s${answer.decodeTokensPerSecond === null ? '' : `, decode ${formatFixed(answer.decodeTokensPerSecond, 1)} tokens/s`})` +
          `${divergesAt >= 0 ? `; departs from the float model at token ${divergesAt + 1}` : ''}`,
      ),
    );

  const run = async () => {
    button.disabled = true;
    cell.root.dataset.live = 'busy';
    const k = knobs;
    try {
      const count = Number(tokens.value);
      const { allocation } = allocate(analysis, k);
      progress.status('opening the model');
      await live.open();
      await live.quantize(allocation, (p) => progress.update(p, 'quantize'));
      const on = device.value === 'webgpu' ? 'webgpu' : 'wasm';
      const float = await live.generate('float', prompt.value, count, (p) => progress.update(p, 'fp32'), on);
      const quantized = await live.generate('quantized', prompt.value, count, (p) => progress.update(p, knobsLabel(k)), on);
      const diverges = quantized.ids.findIndex((id, i) => id !== float.ids[i]);
      columns.replaceChildren(column('fp32', 'float', float, -1, float.text), column(knobsLabel(k), 'quantized', quantized, diverges, quantized.text));
      progress.status(`done: greedy, ${count} tokens, prompt of ${float.promptIds.length} tokens`, 'done');
      cell.root.dataset.live = 'done';
    } catch (error) {
      progress.status(describeError(error), 'error');
      cell.root.dataset.live = 'error';
    } finally {
      button.disabled = false;
    }
  };
  button.addEventListener('click', () => void run());
  const update = (next: Knobs) => {
    knobs = next;
    cell.setCode(
      `// greedy: append argmax(logits[last]) ${tokens.value} times, for fp32 and for ${knobsLabel(knobs)}\n` +
        `const ids = tokenizer.encode(prompt); for (let t = 0; t < ${tokens.value}; t++) ids.push(argmax(await model.logits({ ids })))`,
    );
  };
  tokens.addEventListener('change', () => update(knobs));
  cell.setOutput(element('div', { class: 'live-controls' }, prompt, tokens, device, button), progress.root, columns);
  update(knobs);
  return { update };
}
