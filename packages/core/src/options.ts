import { InvalidOptionError } from './errors.js';
import { configName, parseConfigName } from './config.js';

/**
 * Options of a plug-in (allocator, quantizer, metric): each says its default, how it is validated and its help
 * text. The CLI derives its flags (`--<flag>`) and the notebook its knobs from these descriptors.
 */
export type OptionValue = number | boolean | string;

export interface OptionDescriptor {
  /** Key in the options object (`topM`). */
  readonly name: string;
  /** CLI flag without the dashes (`top-m`). */
  readonly flag: string;
  readonly type: 'integer' | 'number' | 'boolean' | 'choice' | 'config';
  readonly default: OptionValue;
  readonly help: string;
  /** Inclusive bounds of a number. */
  readonly min?: number;
  readonly max?: number;
  /** Bounds that may not be reached (a factor > 0). */
  readonly exclusiveMin?: number;
  readonly choices?: readonly string[];
  /** Values a picker offers (the notebook's knobs); any valid value may still be given on a command line. */
  readonly suggested?: readonly OptionValue[];
  /** How a value reads in a table's options column (`all` for top_m 0). */
  readonly describe?: (value: OptionValue) => string;
}


export type ResolvedOptions = Readonly<Record<string, OptionValue>>;

/** Anything with options: a plug-in. */
export interface WithOptions {
  readonly id: string;
  readonly options: readonly OptionDescriptor[];
}

function fail(option: string, descriptor: OptionDescriptor, text: string, why: string): never {
  throw new InvalidOptionError(option, `"${text}" is not a valid ${descriptor.name}: ${why} (${descriptor.help})`);
}

/** Parses and validates one option value from text (a flag or a method name). */
export function parseOptionValue(descriptor: OptionDescriptor, text: string, option = `--${descriptor.flag}`): OptionValue {
  const value = text.trim();
  switch (descriptor.type) {
    case 'boolean': {
      if (value === '' || value === 'true' || value === '1' || value === 'yes') return true;
      if (value === 'false' || value === '0' || value === 'no') return false;
      return fail(option, descriptor, text, 'write true or false');
    }
    case 'choice':
      return checkOptionValue(descriptor, value, option);
    case 'config':
      try {
        return configName(parseConfigName(value));
      } catch (error) {
        return fail(option, descriptor, text, (error as Error).message);
      }
    case 'integer':
    case 'number': {
      if (value === '' || !Number.isFinite(Number(value))) return fail(option, descriptor, text, 'expected a number');
      return checkOptionValue(descriptor, Number(value), option);
    }
  }
}

/** Validates a value against its descriptor (type, bounds, choices); returns it. */
export function checkOptionValue(descriptor: OptionDescriptor, value: OptionValue, option = `--${descriptor.flag}`): OptionValue {
  const text = String(value);
  switch (descriptor.type) {
    case 'boolean':
      if (typeof value !== 'boolean') fail(option, descriptor, text, 'expected true or false');
      return value;
    case 'choice':
      if (typeof value !== 'string') fail(option, descriptor, text, 'expected a name');
      if (descriptor.choices && !descriptor.choices.includes(value as string)) fail(option, descriptor, text, `use one of ${descriptor.choices.join(', ')}`);
      return value;
    case 'config':
      if (typeof value !== 'string') fail(option, descriptor, text, 'expected a config name such as b4g64');
      return configName(parseConfigName(value as string));
    case 'integer':
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) fail(option, descriptor, text, 'expected a number');
      const n = value as number;
      if (descriptor.type === 'integer' && !Number.isInteger(n)) fail(option, descriptor, text, 'expected an integer');
      if (descriptor.min !== undefined && n < descriptor.min) fail(option, descriptor, text, `must be at least ${descriptor.min}`);
      if (descriptor.max !== undefined && n > descriptor.max) fail(option, descriptor, text, `must be at most ${descriptor.max}`);
      if (descriptor.exclusiveMin !== undefined && n <= descriptor.exclusiveMin) fail(option, descriptor, text, `must be above ${descriptor.exclusiveMin}`);
      return n;
    }
  }
}

/** Defaults filled in, every given option validated; an unknown option is an error naming the plug-in's options. */
export function resolveOptions(plugin: WithOptions, given: Readonly<Record<string, unknown>> = {}, option = 'options'): ResolvedOptions {
  const resolved: Record<string, OptionValue> = {};
  for (const d of plugin.options) {
    const value = given[d.name];
    resolved[d.name] = value === undefined ? d.default : checkOptionValue(d, value as OptionValue, option);
  }
  for (const key of Object.keys(given)) {
    if (!plugin.options.some((d) => d.name === key)) {
      throw new InvalidOptionError(option, `${plugin.id} has no option "${key}"${plugin.options.length ? `; it takes ${plugin.options.map((d) => d.name).join(', ')}` : ''}`);
    }
  }
  return Object.freeze(resolved);
}

