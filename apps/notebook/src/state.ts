import type { OptionValue } from '@layerquant/core';

/**
 * The knobs a reader turns; every cell that depends on them re-renders on change. Besides method and budget, a knob
 * per allocator option descriptor, by the option's name (boostStop and topM always; others once turned).
 */
export interface Knobs {
  readonly [option: string]: OptionValue;
  readonly method: string;
  /** One of the 12 budget stops (bits per weight as the paper writes them). */
  readonly budget: number;
  /** How many stops up the ladder an outlier matrix moves (SensiBoost, KurtBoost, ablation). */
  readonly boostStop: number;
  /** Keep the top_m most extreme outlier layers per module; 0 keeps all. */
  readonly topM: number;
}

export const DEFAULT_KNOBS: Knobs = Object.freeze({ method: 'sensiboost', budget: 2.25, boostStop: 2, topM: 1 });

export interface Store {
  get(): Knobs;
  set(change: Partial<Knobs>): void;
  subscribe(listener: (knobs: Knobs, previous: Knobs) => void): void;
}

export function createStore(initial: Knobs): Store {
  let knobs = initial;
  const listeners: ((knobs: Knobs, previous: Knobs) => void)[] = [];
  return {
    get: () => knobs,
    set(change) {
      const previous = knobs;
      knobs = Object.freeze({ ...knobs, ...change }) as Knobs;
      for (const listener of listeners) listener(knobs, previous);
    },
    subscribe(listener) {
      listeners.push(listener);
    },
  };
}
