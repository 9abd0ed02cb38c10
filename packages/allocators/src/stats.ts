// The statistics tables live in @layerquant/stats (producers and consumers share them); re-exported here.
export * from '@layerquant/stats';
