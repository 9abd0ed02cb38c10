import { openModel } from './model.js';
import { summarizeModel, type ModelSummary } from './model-summary.js';

export { summarizeModel, type ModelSummary } from './model-summary.js';

/**
 * What `layerquant inspect` prints: read from config.json and the safetensors headers only (no weights), after the
 * one config-vs-tensors validation (openModel).
 */
export async function inspectModel(dir: string): Promise<ModelSummary> {
  const { config, checkpoint } = await openModel(dir);
  try {
    return summarizeModel(checkpoint.dir, config, checkpoint.tensors, checkpoint.files.length);
  } finally {
    await checkpoint.close();
  }
}
