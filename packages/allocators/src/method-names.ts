import { InvalidOptionError, parseOptionValue, resolveOptions, type OptionValue, type ResolvedOptions } from '@layerquant/core';
import { findPlugin, type AllocatorPlugin } from './allocator-plugin.js';
import { ALLOCATOR_PLUGINS } from './builtin-allocators.js';

// The grid's method-name grammar: `sensiboost-2-1`, `ablation-kurtboost-3-0`, `sensi-milp-1:factor=3:ablation`,
// method lists with bare ids for a plug-in's variants, and a method's options in words.

function formatValue(value: OptionValue): string {
  return typeof value === 'boolean' ? String(value) : String(value);
}

/** The grid method name of a plug-in with options: id (or gridName) + positional values + non-defaults. */
export function methodName(plugin: AllocatorPlugin, options: ResolvedOptions): string {
  const positional = plugin.nameOptions.map((name) => formatValue(options[name]!));
  const extra = plugin.options
    .filter((d) => !plugin.nameOptions.includes(d.name) && d.name !== 'seed' && options[d.name] !== undefined && options[d.name] !== d.default)
    .map((d) => (d.type === 'boolean' && options[d.name] === true ? `:${d.flag}` : `:${d.flag}=${formatValue(options[d.name]!)}`));
  const base = plugin.nameOptions.length === 0 && plugin.gridName ? plugin.gridName : plugin.id;
  return [base, ...positional].join('-') + extra.join('');
}

/** One method of a grid: a plug-in with fixed options, under its grid name. */
export interface MethodSpec {
  /** `hqq`, `mxq`, `sensiboost-2-1`, `ablation-kurtboost-3-0`, `sensi-milp-1`, `measured`, ... */
  readonly id: string;
  /** The plug-in's id. */
  readonly allocator: string;
  readonly options: ResolvedOptions;
  /** Options the name set explicitly (a context seed does not override these). */
  readonly explicit: readonly string[];
}

function spec(plugin: AllocatorPlugin, given: Readonly<Record<string, OptionValue>>, option: string): MethodSpec {
  const options = resolveOptions(plugin, given, option);
  return Object.freeze({ id: methodName(plugin, options), allocator: plugin.id, options, explicit: Object.freeze(Object.keys(given)) });
}

/** Method names the plug-ins accept, for error messages. */
export function methodNameHelp(plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): string {
  return plugins
    .map((p) => {
      const base = p.nameOptions.length === 0 && p.gridName ? p.gridName : p.id;
      const letters = p.nameOptions.map((n) => (n === 'boostStop' ? 'S' : n === 'topM' ? 'M' : n === 'imitate' ? '<sensiboost|kurtboost>' : n.toUpperCase()));
      return [base, ...letters].join('-');
    })
    .join(', ');
}

/**
 * Parses one method name: a plug-in id (longest match; `hqq`/`uniform` alias), the plug-in's positional
 * options separated by `-` (`sensiboost-2-1`: boost stop 2, top_m 1; `ablation-kurtboost-3-0`), then optional
 * `:flag=value` or `:flag` (boolean) segments (`sensi-milp-1:factor=3:ablation`). A bare id with variants is not a
 * single method: use `expandMethodList`.
 */
export function parseMethodName(text: string, plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS, option = '--methods'): MethodSpec {
  const raw = text.trim().toLowerCase();
  const [head, ...extras] = raw.split(':');
  const names = plugins.flatMap((p) => [p.id, ...(p.aliases ?? []), ...(p.gridName ? [p.gridName] : [])].map((name) => ({ name, plugin: p })));
  names.sort((a, b) => b.name.length - a.name.length);
  const match = names.find(({ name }) => head === name || head!.startsWith(`${name}-`));
  const help = `use ${methodNameHelp(plugins)} (S = boost stop, M = top_m, 0 = all), optionally with :option=value, or a bare id for its variants`;
  if (!match) throw new InvalidOptionError(option, `"${text}" is not a method; ${help}`);
  const { plugin } = match;
  const rest = head === match.name ? [] : head!.slice(match.name.length + 1).split('-');
  if (rest.length > plugin.nameOptions.length || rest.some((r) => r === '')) {
    throw new InvalidOptionError(option, `"${text}": ${plugin.id} takes ${plugin.nameOptions.length === 0 ? 'no values in its name' : `${plugin.nameOptions.join(', ')} in its name`}; ${help}`);
  }
  const given: Record<string, OptionValue> = {};
  rest.forEach((value, i) => {
    const d = plugin.options.find((o) => o.name === plugin.nameOptions[i])!;
    given[d.name] = parseOptionValue(d, value, option);
  });
  for (const extra of extras) {
    const [key, ...valueParts] = extra.split('=');
    const d = plugin.options.find((o) => o.flag === key || o.name.toLowerCase() === key);
    if (!d) throw new InvalidOptionError(option, `"${text}": ${plugin.id} has no option "${key}"; it takes ${plugin.options.map((o) => o.flag).join(', ') || 'none'}`);
    given[d.name] = parseOptionValue(d, valueParts.join('='), option);
  }
  return spec(plugin, given, option);
}

/**
 * Parses a comma-separated method list: method names, bare ids of plug-ins with variants (`sensiboost` = the
 * paper's four settings), and `paper` (hqq, mxq, both boosts and all ablations). Duplicates are dropped.
 */
export function expandMethodList(list: string, plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS, option = '--methods'): MethodSpec[] {
  const out: MethodSpec[] = [];
  const add = (m: MethodSpec) => {
    if (!out.some((o) => o.id === m.id)) out.push(m);
  };
  for (const raw of list.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (raw === 'paper') {
      for (const m of expandMethodList('hqq,mxq,sensiboost,kurtboost,ablation', plugins, option)) add(m);
      continue;
    }
    const bare = plugins.find((p) => p.id === raw && p.variants && p.variants.length > 0);
    if (bare) for (const variant of bare.variants!) add(spec(bare, variant, option));
    else add(parseMethodName(raw, plugins, option));
  }
  if (out.length === 0) throw new InvalidOptionError(option, 'names no method');
  return out;
}

/** Options in words for tables: `boost_stop=2 top_m=1`, `imitates=sensiboost ...`, `factor=3 ablation`. */
export function describeMethodOptions(method: MethodSpec, plugins: readonly AllocatorPlugin[] = ALLOCATOR_PLUGINS): string {
  const plugin = findPlugin(method.allocator, plugins);
  const parts: string[] = [];
  for (const d of plugin.options) {
    const value = method.options[d.name];
    if (value === undefined || d.name === 'seed' || d.name === 'relativeGap') continue;
    const named = plugin.nameOptions.includes(d.name);
    if (!named && value === d.default) continue;
    const key = d.name === 'imitate' ? 'imitates' : d.name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    parts.push(d.type === 'boolean' ? (value ? key : `${key}=false`) : `${key}=${d.describe ? d.describe(value) : String(value)}`);
  }
  return parts.join(' ');
}
