/**
 * Node-only file access for @layerquant/allocators (the main entry stays browser-safe): statistics directories are
 * @layerquant/stats' (re-exported here).
 */
export { STATS_FILES, loadStatsDirectory, type TableReader } from '@layerquant/stats/node';
