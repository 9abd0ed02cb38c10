import { ALLOCATOR_PLUGINS, methodName, parseMethodName, parseOptionValue, resolveOptions, type AllocatorPlugin, type MethodSpec, type OptionValue } from '@layerquant/allocators';
import { InvalidOptionError } from '@layerquant/core';
import { formatRows } from '../output.js';

/** Every option flag of the allocator plug-ins (`--boost-stop`, `--top-m`, `--factor`, `--ablation`, ...), for parseCommandArgs. */
export function allocatorFlags(plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): Record<string, { type: 'string' | 'boolean' }> {
  const flags: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const p of plugins) for (const d of p.options) flags[d.flag] = { type: d.type === 'boolean' ? 'boolean' : 'string' };
  return flags;
}

/** Help lines for the plug-ins and their option flags (defaults included), generated from the registry. */
export function allocatorHelp(plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS, indent = '  '): string {
  const allocators: Array<[string, string]> = plugins.map((p) => [p.gridName && p.gridName !== p.id ? `${p.id} (${p.gridName})` : p.id, `${p.description}; budget: ${p.budget === 'stop' ? 'a stop of the ladder' : 'any'}`]);
  const options: Array<[string, string]> = [];
  const seen = new Set<string>();
  for (const p of plugins) {
    for (const d of p.options) {
      if (seen.has(d.flag)) continue;
      seen.add(d.flag);
      const users = plugins.filter((q) => q.options.some((o) => o.flag === d.flag)).map((q) => q.id);
      const value = d.type === 'boolean' ? '' : d.type === 'choice' && d.choices ? ` <${d.choices.join('|')}>` : ' <v>';
      options.push([`--${d.flag}${value}`, `${d.help}${d.type === 'boolean' || d.default === '' ? '' : ` (default ${String(d.default)})`} [${users.join(', ')}]`]);
    }
  }
  return [formatRows(allocators, { indent, keyWidth: 22 }).trimEnd(), '', `${indent}allocator options (each applies to the allocators that take it):`, formatRows(options, { indent, keyWidth: 26 }).trimEnd()].join('\n');
}

/**
 * The method of `--method <id or grid name>` plus plug-in option flags (`--method sensi-milp --top-m 2 --factor 3`):
 * the flags are shared by every allocator, so one the method does not take is ignored (as before the registry: the
 * same command line can switch --method); a flag overrides the name's value and the default.
 */
export function methodFromFlags(
  methodText: string,
  values: Readonly<Record<string, string | boolean | string[] | undefined>>,
  plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS,
): MethodSpec {
  const base = parseMethodName(methodText, plugins, '--method');
  const plugin = plugins.find((p) => p.id === base.allocator)!;
  const given: Record<string, OptionValue> = {};
  for (const name of base.explicit) given[name] = base.options[name]!;
  const known = new Set(plugins.flatMap((p) => p.options.map((d) => d.flag)));
  for (const flag of known) {
    const value = values[flag];
    if (value === undefined) continue;
    const d = plugin.options.find((o) => o.flag === flag);
    if (!d) continue;
    if (typeof value !== 'string' && typeof value !== 'boolean') throw new InvalidOptionError(`--${flag}`, 'needs one value');
    given[d.name] = typeof value === 'boolean' ? value : parseOptionValue(d, value);
  }
  const options = resolveOptions(plugin, given, '--method');
  return Object.freeze({ id: methodName(plugin, options), allocator: plugin.id, options, explicit: Object.freeze(Object.keys(given)) });
}
