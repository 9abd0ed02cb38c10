import { element } from '../notebook.js';
import type { Progress } from './protocol.js';

/** A progress bar with a line of status under it; `run` shows it for the time a task takes. */
export interface ProgressView {
  readonly root: HTMLElement;
  update(progress: Progress, step?: string): void;
  status(text: string, kind?: 'busy' | 'done' | 'error'): void;
}

export function progressView(name: string): ProgressView {
  const bar = element('progress', { 'data-progress': name, max: '1', value: '0' });
  const line = element('span', { class: 'progress-status', 'data-status': name });
  const root = element('div', { class: 'progress', hidden: '' }, bar, line);
  return {
    root,
    update(progress, step) {
      root.hidden = false;
      bar.max = Math.max(1, progress.total);
      bar.value = progress.done;
      line.textContent = `${step ? `${step}: ` : ''}${progress.label}`;
      root.dataset.state = 'busy';
    },
    status(text, kind = 'busy') {
      root.hidden = false;
      line.textContent = text;
      root.dataset.state = kind;
      if (kind === 'done') bar.value = bar.max;
    },
  };
}
