// The one seeded generator is core's (mulberry32); re-exported for the ablation and its users.
export { seededRandom } from '@layerquant/core';
