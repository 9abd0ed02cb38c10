// Node-only API: statistics directories read and written (atomically).
export { STATS_FILES, loadStatsDirectory, saveStatsDirectory } from './stats-directory.js';
