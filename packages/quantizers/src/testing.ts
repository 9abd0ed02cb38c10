// Test helpers for quantizer plug-ins (vitest is a peer dependency): `import { runQuantizerConformance } from '@layerquant/quantizers/testing'`.
export { runQuantizerConformance } from './testing/quantizer-conformance.js';
export { hessianOfInputs, hessianWeightedError, randomInputs, randomMatrix } from './testing/random-matrix.js';
export { misbehavingQuantizers, type MisbehavingQuantizer } from './testing/misbehaving-quantizers.js';
