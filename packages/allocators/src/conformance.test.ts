import { ALLOCATOR_PLUGINS } from './registry.js';
import { runAllocatorConformance } from './testing.js';

// Every built-in allocator plug-in passes the suite a contributed one must pass.
for (const plugin of ALLOCATOR_PLUGINS) runAllocatorConformance(plugin);
