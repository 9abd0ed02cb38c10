// Node-only API: statistics directories read and written (atomically).
export { loadStatsDirectory, saveStatsDirectory, type TableReader } from './stats-directory.js';
export { STATS_FILES, tableFile } from './stats.js';
