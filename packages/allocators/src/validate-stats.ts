// Statistics validation lives in @layerquant/stats; re-exported here.
export { validateStats, type ModelMatrixList } from '@layerquant/stats';
