// The allocator plug-ins, by job: the plug-in interface (allocator-plugin.ts), the built-ins and their registry
// (builtin-allocators.ts), the grid's method-name grammar (method-names.ts), and running a method with its checks
// (run-method.ts). This module is their public face, as before the split.
export { checkOptionValue, definePlugin, findPlugin, parseOptionValue, resolveOptions } from './allocator-plugin.js';
export type { AllocationContext, AllocatorOptionDescriptor, AllocatorPlugin, OptionValue, ResolvedOptions, StatsTableName } from './allocator-plugin.js';
export * from './builtin-allocators.js';
export { describeMethodOptions, expandMethodList, methodName, methodNameHelp, parseMethodName, type MethodSpec } from './method-names.js';
export * from './run-method.js';
