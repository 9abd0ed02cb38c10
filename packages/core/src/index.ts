export * from './errors.js';
export * from './tensor.js';
export * from './model.js';
export * from './config.js';
export * from './plugins.js';
export * from './allocation.js';
export * from './registry.js';
export * from './decoder-layout.js';
