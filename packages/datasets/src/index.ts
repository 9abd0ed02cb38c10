import { fileURLToPath } from 'node:url';

// src/ and dist/ both sit one level below the package root; the texts ship in data/.
const root = fileURLToPath(new URL('..', import.meta.url));

/** Held-out Brown corpus text for perplexity (159,079 tokens of the shipped model's tokenizer). */
export const brownTestPath = `${root}data/brown-test.txt`;
/** Brown corpus text for calibration (inside the shipped model's training split). */
export const brownCalibPath = `${root}data/brown-calib.txt`;

/** Built-in datasets by name (`--dataset`), as paths to UTF-8 text files. */
export const datasets: Readonly<Record<string, string>> = Object.freeze({
  'brown-test': brownTestPath,
  'brown-calib': brownCalibPath,
});
