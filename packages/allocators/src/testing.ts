// Test helpers for allocator plug-ins (vitest is a peer dependency): `import { runAllocatorConformance } from '@layerquant/allocators/testing'`.
export { runAllocatorConformance, type AllocatorConformanceOptions } from './testing/allocator-conformance.js';
export { syntheticStats, type SyntheticStatsOptions } from './testing/synthetic-stats.js';
export { hostTotals, misbehavingAllocators, type MisbehavingAllocator } from './testing/misbehaving-allocators.js';
