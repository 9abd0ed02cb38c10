/**
 * The one seeded pseudo-random generator of layerquant (mulberry32): same seed, same draws, on every platform.
 * Returns uniform numbers in [0, 1). The ablation's random layers, the bootstrap's window draws, shuffled
 * calibration lines and every test's random data come from it. The draws are part of a result's definition: a
 * change here changes those results (they are documented where they are used).
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Roughly standard normal numbers from seededRandom (Box-Muller on two uniform draws, the cosine branch). */
export function seededNormal(seed: number): () => number {
  const uniform = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
}
