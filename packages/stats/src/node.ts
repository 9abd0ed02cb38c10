// Node-only API: statistics directories read.
export { loadStatsDirectory, type TableReader } from './stats-directory.js';
export { STATS_FILES, tableFile } from './stats.js';
