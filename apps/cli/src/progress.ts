import { formatSeconds } from '@layerquant/core';
import { wrapAtSpaces } from './output.js';

export { formatSeconds } from '@layerquant/core';

/** A line for stderr, broken at spaces to fit its width when it is a terminal (never inside a number). */
export function fitStderr(line: string): string {
  return wrapAtSpaces(line, process.stderr.isTTY && process.stderr.columns ? process.stderr.columns : Number.POSITIVE_INFINITY, 2);
}

/**
 * A progress bar with ETA on stderr when it is a terminal; silent otherwise (and with --json).
 */
export interface Progress {
  update(done: number, total: number, label?: string): void;
  done(message?: string): void;
}

export function createProgress(title: string, enabled = Boolean(process.stderr.isTTY)): Progress {
  const start = Date.now();
  let last = 0;
  const width = 20;
  return {
    update(done, total, label = '') {
      if (!enabled) return;
      const now = Date.now();
      if (now - last < 80 && done < total) return;
      last = now;
      const fraction = total > 0 ? Math.min(1, done / total) : 0;
      const filled = Math.round(fraction * width);
      const elapsed = (now - start) / 1000;
      const eta = fraction > 0 ? elapsed / fraction - elapsed : 0;
      const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
      // What the bar counts comes first: a narrow terminal cuts the times, not the label.
      const text = `${title} ${bar} ${(fraction * 100).toFixed(0).padStart(3)}% ${done}/${total}${label ? ` ${label}` : ''}, ${formatSeconds(elapsed)} elapsed, ETA ${formatSeconds(eta)}`;
      process.stderr.write(`\r${text.slice(0, (process.stderr.columns ?? 120) - 1)}\x1b[K`);
    },
    done(message) {
      if (!enabled) return;
      process.stderr.write(`\r\x1b[K${message ? `${fitStderr(`${title}: ${message}`)}\n` : ''}`);
    },
  };
}


/**
 * What a long step will cost, said before it starts and again once the first unit is measured:
 * `plan(line)` prints the plan (windows, layers, memory); `unit(done, total, unit)` prints, after the first
 * unit, its time and the extrapolated time of all of them. A step that reports `unit(0, total)` when its setup is
 * done (the kld statistic: weights loaded, the float model's distribution computed) is timed from there, its setup
 * said apart: the setup is paid once, not per unit. Writes to `write` (stderr) unless disabled (--json).
 */
export interface CostReporter {
  /** `estimateAfter`: units to time before extrapolating (default 1; a layer's matrices, which differ in size). */
  plan(line: string, options?: { readonly estimateAfter?: number }): void;
  unit(done: number, total: number, unit: string): void;
}

export function createCostReporter(title: string, write: (text: string) => void, enabled: boolean): CostReporter {
  let started = performance.now();
  let setup: number | undefined;
  let estimated = false;
  let after = 1;
  return {
    plan(line, options = {}) {
      started = performance.now();
      setup = undefined;
      after = Math.max(1, options.estimateAfter ?? 1);
      if (enabled) write(`${fitStderr(`${title}: ${line}`)}\n`);
    },
    unit(done, total, unit) {
      if (done === 0 && setup === undefined) {
        const now = performance.now();
        setup = (now - started) / 1000;
        started = now;
        return;
      }
      if (estimated || done < Math.min(after, total) || !enabled) return;
      estimated = true;
      const first = (performance.now() - started) / 1000 / done;
      const singular = unit === 'matrices' ? 'matrix' : unit.replace(/s$/, '');
      const setupText = setup === undefined ? '' : ` after ${formatSeconds(setup)} of setup`;
      write(`${fitStderr(`${title}: first ${done === 1 ? singular : `${done} ${unit}`} took ${formatSeconds(first * done)}${setupText}; estimated ${formatSeconds(first * total)} for all ${total} ${unit}`)}\n`);
    },
  };
}

export function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** A spinner with elapsed seconds on stderr for a step of unknown length (loading a model); silent when disabled. */
export function createSpinner(title: string, enabled = Boolean(process.stderr.isTTY)): { stop(message?: string): void } {
  if (!enabled) return { stop: () => undefined };
  const frames = ['|', '/', '-', '\\'];
  const start = Date.now();
  let i = 0;
  const draw = () => process.stderr.write(`\r${`${frames[i++ % frames.length]} ${formatSeconds((Date.now() - start) / 1000)} ${title}`.slice(0, (process.stderr.columns ?? 120) - 1)}\x1b[K`);
  draw();
  const timer = setInterval(draw, 120);
  timer.unref();
  let stopped = false;
  return {
    stop(message) {
      if (stopped) return; // idempotent: the first event of a long step stops it
      stopped = true;
      clearInterval(timer);
      process.stderr.write(`\r\x1b[K${message ? `${fitStderr(`${title}: ${message}`)}\n` : ''}`);
    },
  };
}
