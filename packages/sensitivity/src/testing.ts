// Test helpers for metric plug-ins (vitest is a peer dependency): `import { runMetricConformance } from '@layerquant/sensitivity/testing'`.
export { runMetricConformance, type MetricConformanceOptions } from './testing/metric-conformance.js';
