import { callPlugin, createRegistry, resolveOptions, type OptionDescriptor, type Quantizer, type Registry, type ResolvedOptions } from '@layerquant/core';
import { checkedQuantizer } from './quantizer-check.js';
import { createHqqQuantizer, createRtnQuantizer, hqqQuantizer, rtnQuantizer } from './quantizers.js';
import { GPTQ_DEFAULTS, createGptqQuantizer, gptqQuantizer } from './gptq.js';
import { baqQuantizer, createBaqQuantizer } from './baq.js';

/**
 * A quantizer plug-in: a Quantizer (its defaults) that also says what it is and which options it takes. The CLI's
 * `--quantizer <id>` and the notebook look quantizers up in a registry of these; `configure` returns the quantizer
 * with options applied (the CLI derives a flag from each descriptor). A checkpoint records the id, and the reader
 * dequantizes each matrix with the plug-in of that id.
 */
export interface QuantizerPlugin extends Quantizer {
  readonly description: string;
  readonly options: readonly OptionDescriptor[];
  configure(options: ResolvedOptions): Quantizer;
}

/** Freezes a plug-in; one without options configures to itself. */
export function defineQuantizer(plugin: Omit<QuantizerPlugin, 'configure' | 'options'> & Partial<Pick<QuantizerPlugin, 'configure' | 'options'>>): QuantizerPlugin {
  const options = plugin.options ?? [];
  const base = { ...plugin, options };
  return Object.freeze({ ...base, configure: plugin.configure ?? (() => base as QuantizerPlugin) });
}

export const rtnPlugin: QuantizerPlugin = defineQuantizer({
  ...rtnQuantizer,
  id: 'rtn',
  description: 'round to nearest from the asymmetric min/max init',
  packedLayout: 'affine',
  configure: () => createRtnQuantizer(),
});

const kappaOption: OptionDescriptor = Object.freeze({
  name: 'kappa',
  flag: 'kappa',
  type: 'number',
  default: 1,
  min: 1,
  help: "multiply HQQ's beta by kappa after each step (1 = off, upstream; the authors' fork: 1.01)",
});

export const hqqPlugin: QuantizerPlugin = defineQuantizer({
  ...hqqQuantizer,
  id: 'hqq',
  description: 'half-quadratic quantization: RTN init, then the proximal solver on the zero points (upstream p=0.7, beta=10, 20 iterations)',
  options: [kappaOption],
  packedLayout: 'affine',
  configure: (options) => createHqqQuantizer({ solver: { kappa: Number(options.kappa ?? 1) } }),
});

/** GPTQ's settings as options (the CLI's --dampening, --act-order); a symmetric grid is the config's (`b4g128-sym`). */
export const GPTQ_OPTIONS: readonly OptionDescriptor[] = Object.freeze([
  Object.freeze({
    name: 'dampening',
    flag: 'dampening',
    type: 'number' as const,
    default: GPTQ_DEFAULTS.dampening,
    exclusiveMin: 0,
    help: "added to the Hessian's diagonal, as a fraction of its mean (GPTQ's percdamp); doubled and retried where the Hessian is not positive definite",
  }),
  Object.freeze({
    name: 'actOrder',
    flag: 'act-order',
    type: 'boolean' as const,
    default: GPTQ_DEFAULTS.actOrder,
    help: "quantize columns by descending Hessian diagonal, groups fixed up front on the original order (static groups, so it still exports)",
  }),
]);

/** The gptq settings of resolved options. */
export function gptqOptionsOf(options: ResolvedOptions): { dampening: number; actOrder: boolean } {
  return { dampening: Number(options.dampening ?? GPTQ_DEFAULTS.dampening), actOrder: options.actOrder === true };
}

export const gptqPlugin: QuantizerPlugin = defineQuantizer({
  ...gptqQuantizer,
  id: 'gptq',
  description: 'GPTQ (Frantar et al. 2022): columns quantized in turn, each error compensated on the later columns through the inverse Hessian of the layer inputs (calibrated: needs --calib)',
  options: GPTQ_OPTIONS,
  configure: (options) => createGptqQuantizer(gptqOptionsOf(options)),
});

export const baqPlugin: QuantizerPlugin = defineQuantizer({
  ...baqQuantizer,
  id: 'baq',
  description: "BAQ (Zhang et al. 2025): GPTQ's loss of each input column gives it a width by the equal-loss rule at the config's average bits, then GPTQ with those widths (calibrated: needs --calib; per-column widths do not export to ONNX)",
  options: GPTQ_OPTIONS,
  configure: (options) => createBaqQuantizer(gptqOptionsOf(options)),
});

/** The built-in quantizer plug-ins. */
export const QUANTIZER_PLUGINS: readonly QuantizerPlugin[] = Object.freeze([rtnPlugin, hqqPlugin, gptqPlugin, baqPlugin]);

/**
 * A plug-in whose results the host checks (checkedQuantizer): its own quantize/dequantize, and every quantizer its
 * configure() returns.
 */
export function checkedQuantizerPlugin(plugin: QuantizerPlugin): QuantizerPlugin {
  const checked = checkedQuantizer(plugin);
  return Object.freeze({
    ...checked,
    configure: (options: ResolvedOptions) => checkedQuantizer(callPlugin('quantizer', plugin.id, 'configure()', () => plugin.configure(options))),
  });
}

/**
 * The registry of quantizer plug-ins the app builds: every plug-in registered in it (built-in or from --plugin) is
 * checked (checkedQuantizerPlugin), so whatever a command gets from it, it never trusts a quantizer's output as it is.
 */
export function createQuantizerRegistry(plugins: readonly QuantizerPlugin[] = QUANTIZER_PLUGINS): Registry<QuantizerPlugin> {
  const registry = createRegistry<QuantizerPlugin>('quantizer');
  const checked: Registry<QuantizerPlugin> = {
    ...registry,
    register(plugin) {
      registry.register(checkedQuantizerPlugin(plugin));
      return checked;
    },
  };
  for (const p of plugins) checked.register(p);
  return checked;
}

/** A plug-in's quantizer with the given options validated and applied (checked: checkedQuantizer). */
export function configureQuantizer(plugin: QuantizerPlugin, given: Readonly<Record<string, unknown>> = {}, option = '--quantizer'): Quantizer {
  return checkedQuantizer(plugin.configure(resolveOptions(plugin, given, option)));
}
