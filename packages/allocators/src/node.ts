import { type Allocation } from '@layerquant/core';
import { writeTextAtomic } from '@layerquant/tensor-io';

/**
 * Node-only file access for @layerquant/allocators (the main entry stays browser-safe). Statistics directories are
 * @layerquant/stats' (re-exported here).
 */
export { STATS_FILES, loadStatsDirectory, saveStatsDirectory } from '@layerquant/stats/node';

/** Saves an allocation as JSON (atomic). */
export async function saveAllocationJson(path: string, allocation: Allocation): Promise<void> {
  await writeTextAtomic(path, `${JSON.stringify(allocation, null, 2)}\n`);
}
