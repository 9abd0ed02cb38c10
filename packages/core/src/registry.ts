import { LayerquantError, UnknownPluginError } from './errors.js';

export interface Registry<T extends { readonly id: string }> {
  register(plugin: T): Registry<T>;
  get(id: string): T;
  has(id: string): boolean;
  ids(): string[];
  list(): T[];
}

/** A registry instance; nothing registers on import, the app builds the registry it needs. */
export function createRegistry<T extends { readonly id: string }>(kind: string, plugins: readonly T[] = []): Registry<T> {
  const entries = new Map<string, T>();
  const registry: Registry<T> = {
    register(plugin) {
      if (entries.has(plugin.id)) {
        throw new LayerquantError('DUPLICATE_PLUGIN', `${kind} "${plugin.id}" is already registered`);
      }
      entries.set(plugin.id, plugin);
      return registry;
    },
    get(id) {
      const plugin = entries.get(id);
      if (!plugin) throw new UnknownPluginError(kind, id, [...entries.keys()]);
      return plugin;
    },
    has: (id) => entries.has(id),
    ids: () => [...entries.keys()],
    list: () => [...entries.values()],
  };
  for (const p of plugins) registry.register(p);
  return registry;
}
