import { ALLOCATOR_PLUGINS, RESERVED_TABLE_NAMES, createAllocatorRegistry, type AllocatorPlugin } from '@layerquant/allocators';
import { LayerquantError, createRegistry, resolveOptions, type OptionValue, type Quantizer, type Registry } from '@layerquant/core';
import { ggmlPlugin } from '@layerquant/gguf';
import { QUANTIZER_PLUGINS, createQuantizerRegistry, type QuantizerPlugin } from '@layerquant/quantizers';
import { SENSITIVITY_METRICS, type MetricPlugin } from '@layerquant/sensitivity';
import { existsSync, readFileSync } from 'node:fs';
import { register } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The three registries every command reads: built at start-up from the packages' plug-ins and `--plugin` modules. */
export interface PluginRegistries {
  readonly allocators: Registry<AllocatorPlugin>;
  readonly quantizers: Registry<QuantizerPlugin>;
  readonly metrics: Registry<MetricPlugin>;
  /** The `--plugin` modules loaded, as absolute file paths (queue workers load the same files in their threads). */
  readonly modules: readonly string[];
}

/** What a `--plugin` module exports as default (or as named exports). */
export interface PluginModule {
  readonly allocators?: readonly AllocatorPlugin[];
  readonly quantizers?: readonly QuantizerPlugin[];
  readonly metrics?: readonly MetricPlugin[];
}

/** A `--plugin` module that cannot be found, loaded, or does not export plug-ins. */
export class PluginLoadError extends LayerquantError {
  constructor(readonly specifier: string, message: string, options?: { cause?: unknown }) {
    super('PLUGIN_LOAD', `--plugin ${specifier}: ${message}`, options);
  }
}

/** The registries of the built-in plug-ins alone. */
export function builtinRegistries(): PluginRegistries {
  return {
    allocators: createAllocatorRegistry(ALLOCATOR_PLUGINS),
    // llama.cpp's block types (the GGUF package's quantizer) beside the packages' own quantizers
    quantizers: createQuantizerRegistry([...QUANTIZER_PLUGINS, ggmlPlugin]),
    metrics: createRegistry<MetricPlugin>('metric', SENSITIVITY_METRICS),
    modules: [],
  };
}

/** The entry file of an installed package, found the way Node finds it from `cwd` (exports "." import/default, else main). */
function resolvePackage(specifier: string, cwd: string): string | undefined {
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
  const sub = parts.slice(specifier.startsWith('@') ? 2 : 1).join('/');
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const root = join(dir, 'node_modules', name);
    const manifest = join(root, 'package.json');
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { exports?: unknown; main?: string; module?: string };
      const key = sub ? `./${sub}` : '.';
      const exportsField = pkg.exports as Record<string, unknown> | string | undefined;
      let entry: unknown = typeof exportsField === 'string' && key === '.' ? exportsField : (exportsField as Record<string, unknown> | undefined)?.[key];
      if (entry && typeof entry === 'object') {
        const conditions = entry as Record<string, unknown>;
        entry = conditions.import ?? conditions.node ?? conditions.default;
        if (entry && typeof entry === 'object') entry = (entry as Record<string, unknown>).default;
      }
      if (typeof entry === 'string') return join(root, entry);
      if (sub) return join(root, sub);
      return join(root, pkg.module ?? pkg.main ?? 'index.js');
    }
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * A resolve hook for `--plugin` files: an `@layerquant/*` import that does not resolve from the plug-in's own place
 * (a lone .mjs with no package.json, no node_modules beside it) resolves from the packages layerquant itself runs
 * with, so the plug-in gets the very modules the app uses (one copy: its errors are the app's error classes).
 */
const RESOLVE_HOOK = `let parents = [];
export function initialize(data) { parents = data.parents; }
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !specifier.startsWith('@layerquant/')) throw error;
    for (const parentURL of parents) {
      try { return await next(specifier, { ...context, parentURL }); } catch {}
    }
    throw error;
  }
}`;

let hookRegistered = false;

/**
 * Registers RESOLVE_HOOK once per thread (queue processor threads load plug-ins too). The parents are this module and
 * the entries of the packages whose plug-in helpers a plug-in imports, so their own dependencies (stats) resolve too.
 */
function registerPluginResolution(): void {
  if (hookRegistered) return;
  hookRegistered = true;
  const parents = [import.meta.url];
  for (const name of ['@layerquant/core', '@layerquant/allocators', '@layerquant/quantizers', '@layerquant/sensitivity']) {
    try {
      parents.push(import.meta.resolve(name));
    } catch {
      // not resolvable from here (a bundled copy): the plug-in's own resolution stays the only one
    }
  }
  register(`data:text/javascript,${encodeURIComponent(RESOLVE_HOOK)}`, { data: { parents } });
}

/** A TypeScript plug-in file loads where Node strips types itself (22.6+ with --experimental-strip-types, 23.6+). */
function checkTypeScript(specifier: string, path: string): void {
  if (!/\.(m|c)?ts$/.test(path)) return;
  const features = process.features as { typescript?: string | false };
  if (features.typescript) return;
  throw new PluginLoadError(
    specifier,
    `is TypeScript, which this Node (${process.version}) does not load; write the plug-in as .mjs (the types stay in JSDoc: /** @type {import('@layerquant/pipeline/plugin-spec').PluginModule} */), compile it (tsc, esbuild), or run Node 22.18+ / 23.6+`,
  );
}

/** The file a `--plugin` specifier names: a path (relative to `cwd`) or an installed package's entry. */
function moduleFile(specifier: string, cwd: string): string {
  const looksLikePath = specifier.startsWith('.') || isAbsolute(specifier) || /\.(m?js|cjs|m?ts|cts)$/.test(specifier);
  if (looksLikePath) {
    const path = resolve(cwd, specifier);
    if (!existsSync(path)) throw new PluginLoadError(specifier, `no file ${path}; give the path of the plug-in's .mjs (or built .js) module`);
    checkTypeScript(specifier, path);
    return path;
  }
  const entry = resolvePackage(specifier, cwd);
  if (!entry || !existsSync(entry)) throw new PluginLoadError(specifier, `package not found from ${cwd} (install it, or give a path such as ./dist/index.js)`);
  return entry;
}

function list<T>(specifier: string, kind: string, value: unknown): T[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new PluginLoadError(specifier, `"${kind}" must be an array of plug-ins`);
  return value as T[];
}

function checkPlugin(specifier: string, kind: string, plugin: unknown, methods: readonly string[]): void {
  const p = plugin as Record<string, unknown> | null;
  if (!p || typeof p !== 'object' || typeof p.id !== 'string' || p.id === '') throw new PluginLoadError(specifier, `every entry of "${kind}" needs a string id`);
  for (const m of methods) if (typeof p[m] !== 'function') throw new PluginLoadError(specifier, `${kind} "${p.id}" has no ${m}() function`);
  if (p.options !== undefined && !Array.isArray(p.options)) throw new PluginLoadError(specifier, `${kind} "${p.id}": options must be an array of option descriptors`);
}

/** An allocator from a plug-in module with the fields the apps read filled in (label = id, no name options, any budget). */
function completeAllocator(plugin: AllocatorPlugin): AllocatorPlugin {
  return Object.freeze({
    ...plugin,
    label: plugin.label ?? plugin.id,
    description: plugin.description ?? plugin.id,
    budget: plugin.budget ?? 'any',
    options: plugin.options ?? [],
    nameOptions: plugin.nameOptions ?? [],
    tablesNeeded: plugin.tablesNeeded ?? (() => []),
  });
}

function completeQuantizer(plugin: QuantizerPlugin): QuantizerPlugin {
  const base = { ...plugin, description: plugin.description ?? plugin.id, options: plugin.options ?? [] };
  return Object.freeze({ ...base, configure: plugin.configure ?? (() => base as QuantizerPlugin) });
}

/**
 * Awaits `promise`, or rejects with `stalled()` when the event loop runs out of work first: a promise nothing can settle
 * any more (a plug-in's top-level await on a promise nobody resolves) would otherwise end the process with exit 13 and
 * no message. Node emits 'beforeExit' exactly then.
 */
export async function settledOrIdle<T>(promise: Promise<T>, stalled: () => Error): Promise<T> {
  let onIdle: (() => void) | undefined;
  const idle = new Promise<never>((_, reject) => {
    onIdle = () => reject(stalled());
    process.once('beforeExit', onIdle);
  });
  try {
    return await Promise.race([promise, idle]);
  } finally {
    process.off('beforeExit', onIdle!);
  }
}

/**
 * Loads `--plugin` modules (paths relative to `cwd`, or package names) and builds the registries once: built-ins
 * first, then each module's allocators, quantizers and metrics in order. An id used twice is an error.
 */
export async function loadPlugins(specifiers: readonly string[], cwd = process.cwd()): Promise<PluginRegistries> {
  const registries = builtinRegistries();
  const modules: string[] = [];
  if (specifiers.length > 0) registerPluginResolution();
  for (const specifier of specifiers) {
    let loaded: Record<string, unknown>;
    const file = moduleFile(specifier, cwd);
    modules.push(file);
    try {
      loaded = (await settledOrIdle(import(pathToFileURL(file).href), () => new PluginLoadError(specifier, 'never finished loading: its top-level await never settles (nothing left to run could settle it); fix the module'))) as Record<string, unknown>;
    } catch (error) {
      if (error instanceof LayerquantError) throw error;
      throw new PluginLoadError(specifier, `could not be imported: ${(error as Error).message.split('\n')[0]}`, { cause: error });
    }
    const module = (loaded.default && typeof loaded.default === 'object' ? loaded.default : loaded) as PluginModule;
    const allocators = list<AllocatorPlugin>(specifier, 'allocators', module.allocators);
    const quantizers = list<QuantizerPlugin>(specifier, 'quantizers', module.quantizers);
    const metrics = list<MetricPlugin>(specifier, 'metrics', module.metrics);
    if (allocators.length + quantizers.length + metrics.length === 0) {
      throw new PluginLoadError(specifier, 'exports no plug-ins; its default export must be { allocators?, quantizers?, metrics? }');
    }
    for (const a of allocators) {
      checkPlugin(specifier, 'allocator', a, ['allocate']);
      registries.allocators.register(completeAllocator(a));
    }
    for (const q of quantizers) {
      checkPlugin(specifier, 'quantizer', q, ['quantize', 'dequantize']);
      registries.quantizers.register(completeQuantizer(q));
    }
    for (const m of metrics) {
      checkPlugin(specifier, 'metric', m, ['measure']);
      if (typeof m.table !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(m.table) || RESERVED_TABLE_NAMES.includes(m.table)) {
        throw new PluginLoadError(specifier, `metric "${m.id}" needs a table name of lower-case letters, digits and - (not ${RESERVED_TABLE_NAMES.join(' or ')}): the allocators' tablesNeeded name it, and it is written to <table>.csv`);
      }
      registries.metrics.register(m);
    }
  }
  return { ...registries, modules };
}

/** A quantizer as settings travel (experiment cells, queue jobs): its id and the options given to it. */
export interface QuantizerChoice {
  readonly id: string;
  readonly options: Readonly<Record<string, OptionValue>>;
}

/** Thrown where a queue job names a plug-in this worker's registries do not hold. */
export class MissingPluginError extends LayerquantError {
  constructor(kind: string, id: string, known: readonly string[]) {
    super('MISSING_PLUGIN', `${kind} "${id}" is not in this worker's registry (it has ${known.join(', ')}); start \`layerquant worker\` with the coordinator's --plugin modules`);
  }
}

/** The configured quantizer of a choice, through the registry (its options validated against its descriptors). */
export function quantizerOf(registries: PluginRegistries, choice: QuantizerChoice): Quantizer {
  if (!registries.quantizers.has(choice.id)) throw new MissingPluginError('quantizer', choice.id, registries.quantizers.ids());
  const plugin = registries.quantizers.get(choice.id);
  return plugin.configure(resolveOptions(plugin, choice.options, '--quantizer'));
}

/**
 * What an experiment cell's result depends on of its quantizer, for the cell's key: the id, the solver settings of
 * a quantizer that has them (HQQ's p, beta, iterations, kappa, ...) and the options given.
 */
export function quantizerSettings(quantizer: Quantizer, options: Readonly<Record<string, OptionValue>>): Readonly<Record<string, unknown>> {
  const solver = (quantizer as { solver?: unknown }).solver;
  return Object.freeze({ id: quantizer.id, ...(solver === undefined ? {} : { solver }), ...(Object.keys(options).length > 0 ? { options } : {}) });
}
