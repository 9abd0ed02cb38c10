/**
 * The plug-in interfaces of layerquant in one place, types only (`import type { ... } from
 * '@layerquant/pipeline/plugin-spec'`; this entry has no runtime code). A plug-in is a module whose default export is
 * a `PluginModule`; `layerquant <command> --plugin ./file.mjs` (or a package name) loads it, and the library's
 * `loadPlugins([file])` builds the same registries. CONTRIBUTING.md walks each kind in steps.
 *
 * Kinds:
 * - `QuantizerPlugin`: turns one weight matrix and a `QuantConfig` into a `QuantizedTensor` and back
 *   (`quantize`/`dequantize`); `configure(options)` applies its `options`. Looked up by `--quantizer <id>`; a
 *   checkpoint records the id, and readers dequantize with the plug-in of that id.
 * - `AllocatorPlugin`: reads statistics tables (`tablesNeeded(options)` names them; `ModelStats` holds them by name)
 *   and returns an `Allocation`: one config (or float) per matrix within `context.budget` bits per weight. Used by
 *   `--method <id>` and experiment grids (`--methods id-value-value`, positional `nameOptions`).
 * - `MetricPlugin`: measures one statistics table (`table`, written as `<table>.csv` through `format`/`parse`) from
 *   the weights (`input: 'weights'`: a `MatrixSource`) or from the model on calibration text (`'activations'`).
 *   An allocator plug-in names that table in `tablesNeeded`, and the pipeline measures or reads it: no other change.
 *
 * Options of every kind are `OptionDescriptor`s: the CLI derives a `--<flag>` from each, validates values against it
 * and shows its help; the plug-in receives `ResolvedOptions` (defaults filled in). Fields the loader fills in when a
 * plug-in omits them: an allocator's `label`, `description` (its id), `budget` ('any'), `options` and `nameOptions`
 * ([]), `tablesNeeded` (none); a quantizer's `description`, `options` and `configure` (itself).
 *
 * Helpers (`definePlugin`, `matricesOf`, `checkAllocation`, `defineQuantizer`, `LayerquantError`, ...) are imported
 * from `@layerquant/allocators`, `@layerquant/quantizers`, `@layerquant/core` and `@layerquant/sensitivity`; from a
 * lone plug-in file with no package.json they resolve to the copies the loading app runs with.
 */
export type { PluginModule } from './plugins.js';

// Shared by every kind.
export type { OptionDescriptor, OptionValue, ResolvedOptions, QuantConfig, WeightTensor, MatrixKey, LinearModule, UnitModule, LayerquantError } from '@layerquant/core';

// Quantizers.
export type { QuantizerPlugin } from '@layerquant/quantizers';
export type { Quantizer, QuantizedTensor, QuantizeContext, InputHessian } from '@layerquant/core';

// Allocators.
export type { AllocatorPlugin, AllocationContext, AllocationMeasurer, RefinementRound, ModelStats, StatsTableName, SizeBudget } from '@layerquant/allocators';
export type { Allocation, AllocationTotals, MatrixAllocation, MatrixInfo } from '@layerquant/core';

// Metrics.
export type { MetricPlugin, MetricRunOptions, MatrixSource } from '@layerquant/sensitivity';
