import { openCheckpoint } from './checkpoint.js';
import { loadDecoderConfig } from './config.js';
import { summarizeModel, type ModelSummary } from './model-summary.js';

export { summarizeModel, type ModelSummary } from './model-summary.js';

/** What `layerquant inspect` prints: read from config.json and the safetensors headers only (no weights). */
export async function inspectModel(dir: string): Promise<ModelSummary> {
  const config = await loadDecoderConfig(dir);
  const checkpoint = await openCheckpoint(dir);
  try {
    return summarizeModel(checkpoint.dir, config, checkpoint.tensors, checkpoint.files.length);
  } finally {
    await checkpoint.close();
  }
}
