import { InvalidOptionError, parseOptionValue, resolveOptions, type OptionValue, type Quantizer } from '@layerquant/core';
import type { PluginRegistries } from '@layerquant/pipeline';
import { FORK_SOLVER_OPTIONS } from '@layerquant/quantizers';
import type { ParsedArgs } from '../args.js';
import { formatRows } from '../output.js';

/**
 * The quantizer of `--quantizer <id>` (default hqq) with its options from flags (`--kappa` for hqq). A flag of
 * another quantizer is an error naming the quantizer that takes it; `--fork` sets hqq's kappa to the fork's 1.01.
 */
export function quantizerFromFlags(id: string, values: ParsedArgs['values'], plugins: PluginRegistries, fork = false): { quantizer: Quantizer; options: Record<string, OptionValue> } {
  const plugin = plugins.quantizers.get(id);
  const given: Record<string, OptionValue> = {};
  for (const other of plugins.quantizers.list()) {
    for (const d of other.options) {
      const text = values[d.flag];
      if (text === undefined) continue;
      if (!plugin.options.some((o) => o.flag === d.flag)) throw new InvalidOptionError(`--${d.flag}`, `applies to --quantizer ${other.id} only, not ${plugin.id}`);
      given[d.name] = typeof text === 'boolean' ? text : parseOptionValue(d, String(text));
    }
  }
  // The fork's solver setting, for any quantizer that takes a kappa (hqq's option).
  if (fork && plugin.options.some((d) => d.name === 'kappa') && given.kappa === undefined) given.kappa = FORK_SOLVER_OPTIONS.kappa!;
  const options = resolveOptions(plugin, given, '--quantizer');
  return { quantizer: plugin.configure(options), options: Object.fromEntries(Object.entries(given)) };
}

/** Every option flag of the quantizer plug-ins (`--kappa`), for parseCommandArgs. */
export function quantizerFlags(plugins: PluginRegistries): Record<string, { type: 'string' | 'boolean' }> {
  const flags: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const q of plugins.quantizers.list()) for (const d of q.options) flags[d.flag] = { type: d.type === 'boolean' ? 'boolean' : 'string' };
  return flags;
}

/** Help lines of the quantizer plug-ins and their option flags. */
export function quantizerHelp(plugins: PluginRegistries, indent = '  '): string {
  return plugins.quantizers
    .list()
    .map((q) => formatRows([[q.id, q.description]], { indent, keyWidth: 22 }) + formatRows(q.options.map((d) => [`  --${d.flag} <v>`, `${d.help} (default ${String(d.default)})`]), { indent, keyWidth: 26 }))
    .join('')
    .trimEnd();
}
