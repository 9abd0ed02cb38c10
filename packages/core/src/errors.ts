/**
 * One error class per kind of failure. Every message names the offending file, tensor or option and says
 * how to fix it; `code` is stable for programs, `message` is for people.
 */
export class LayerquantError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A safetensors file (or its index) is malformed: truncated, bad header, offsets that lie. */
export class SafetensorsFormatError extends LayerquantError {
  readonly file: string;
  readonly tensor: string | undefined;
  constructor(file: string, message: string, tensor?: string, options?: { cause?: unknown }) {
    super('SAFETENSORS_FORMAT', `${file}${tensor ? ` (tensor "${tensor}")` : ''}: ${message}`, options);
    this.file = file;
    this.tensor = tensor;
  }
}

/** A dtype the reader or the operation does not support. */
export class UnsupportedDTypeError extends LayerquantError {
  constructor(readonly file: string, readonly tensor: string, readonly dtype: string, supported: readonly string[], why = '') {
    super(
      'UNSUPPORTED_DTYPE',
      `${file} (tensor "${tensor}"): dtype "${dtype}" is not supported${why ? ` (${why})` : ''}; supported dtypes are ${supported.join(', ')}. Convert the checkpoint to one of them.`,
    );
  }
}

/** A tensor whose shape does not match what the model config or the operation needs. */
export class ShapeMismatchError extends LayerquantError {
  constructor(readonly tensor: string, message: string) {
    super('SHAPE_MISMATCH', `tensor "${tensor}": ${message}`);
  }
}

/** A file or tensor that should exist does not. */
export class MissingFileError extends LayerquantError {
  constructor(readonly file: string, message: string) {
    super('MISSING_FILE', `${file}: ${message}`);
  }
}

export class MissingTensorError extends LayerquantError {
  constructor(readonly tensor: string, readonly where: string, hint = '') {
    super('MISSING_TENSOR', `tensor "${tensor}" not found in ${where}${hint ? `; ${hint}` : ''}`);
  }
}

/** A model architecture layerquant cannot run. */
export class UnsupportedArchitectureError extends LayerquantError {
  constructor(readonly file: string, readonly architecture: string, supported: readonly string[]) {
    super(
      'UNSUPPORTED_ARCHITECTURE',
      `${file}: architecture "${architecture}" is not supported; supported are ${supported.join(', ')} (Llama family: Llama 2/3, Mistral, Qwen2).`,
    );
  }
}

/** A user option (CLI flag, function option, config field) with a bad value. */
export class InvalidOptionError extends LayerquantError {
  constructor(readonly option: string, message: string) {
    super('INVALID_OPTION', `option "${option}": ${message}`);
  }
}

/** No allocation fits the budget. */
export class InfeasibleBudgetError extends LayerquantError {
  constructor(readonly budget: number, readonly smallestFeasible: number, unit = 'bits per weight', option = unit.startsWith('MiB') ? '--target-size' : unit === 'bits per weight' ? '--budget' : '--target-bpw') {
    super(
      'INFEASIBLE_BUDGET',
      `budget ${budget} ${unit} is below the cheapest allocation; the smallest feasible budget is ${smallestFeasible} ${unit}. Raise ${option} to at least that.`,
    );
  }
}

/** Input data (text, CSV table) that is empty or malformed. */
export class InvalidDataError extends LayerquantError {
  constructor(readonly source: string, message: string, options?: { cause?: unknown }) {
    super('INVALID_DATA', `${source}: ${message}`, options);
  }
}

/** A registry lookup for an id nobody registered. */
export class UnknownPluginError extends LayerquantError {
  constructor(readonly kind: string, readonly id: string, available: readonly string[]) {
    super('UNKNOWN_PLUGIN', `unknown ${kind} "${id}"; available: ${available.length ? available.join(', ') : '(none registered)'}`);
  }
}

/**
 * An output directory that cannot be used: it is a file, lies under a file, is not writable, or another
 * layerquant process holds its lock.
 */
export class OutputDirectoryError extends LayerquantError {
  constructor(readonly directory: string, message: string, code = 'OUTPUT_DIRECTORY') {
    super(code, `${directory}: ${message}`);
  }
}

/** A weight that is NaN or infinite: nothing computed from it would be a number. */
export class NonFiniteWeightError extends LayerquantError {
  constructor(
    readonly tensor: string,
    readonly file: string,
    readonly index: number,
    readonly value: string,
    shape: readonly number[],
  ) {
    const position = shape.length === 2 ? ` (row ${Math.floor(index / shape[1]!)}, column ${index % shape[1]!} of [${shape.join(', ')}])` : shape.length > 2 ? ` (of shape [${shape.join(', ')}])` : '';
    super(
      'NON_FINITE_WEIGHT',
      `${file} (tensor "${tensor}"): value ${value} at flat index ${index}${position}; the checkpoint is corrupt or was saved from a diverged run, use a checkpoint whose weights are finite`,
    );
  }
}

/** A step whose memory need is known up front and exceeds the budget: refused before it is started (not killed at the limit). */
export class MemoryBudgetError extends LayerquantError {
  constructor(readonly what: string, readonly neededBytes: number, readonly budgetBytes: number, hint: string) {
    const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
    super('MEMORY_BUDGET', `${what} needs about ${gib(neededBytes)}, more than the memory budget of ${gib(budgetBytes)}; ${hint}`);
  }
}

/** A GGUF file (llama.cpp) that is malformed: truncated, bad header, metadata or tensor table that lies about the file. */
export class GgufFormatError extends LayerquantError {
  readonly file: string;
  readonly tensor: string | undefined;
  constructor(file: string, message: string, tensor?: string, options?: { cause?: unknown }) {
    super('GGUF_FORMAT', `${file}${tensor ? ` (tensor "${tensor}")` : ''}: ${message}`, options);
    this.file = file;
    this.tensor = tensor;
  }
}

/** An optional package a step needs is not installed: the message says how to install it. */
export class MissingDependencyError extends LayerquantError {
  constructor(readonly packageName: string, message: string, options?: { cause?: unknown }) {
    super('MISSING_DEPENDENCY', `${packageName}: ${message}`, options);
  }
}

/**
 * A plug-in (allocator, quantizer, metric, or a `--plugin` module) that threw, returned something the host cannot
 * use (a matrix twice or not at all, a config off the ladder, a NaN, a wrong shape), or never settled. The host checks
 * every plug-in result in one place per kind and names the plug-in, so its output is never trusted as it is.
 */
export class PluginError extends LayerquantError {
  constructor(readonly kind: string, readonly plugin: string, message: string, options?: { cause?: unknown }) {
    super('PLUGIN_OUTPUT', `${kind} "${plugin}" ${message}`, options);
  }
}

/** The first line of what a plug-in threw, for a PluginError's message. */
export function describeThrown(error: unknown): string {
  const text = error instanceof Error ? `${error.name === 'Error' ? '' : `${error.name}: `}${error.message}` : String(error);
  return text.split('\n')[0]!.slice(0, 200);
}

/**
 * Runs a plug-in's synchronous call: a typed error it throws passes as it is (an infeasible budget, a bad option);
 * anything else becomes a PluginError naming the plug-in and the call, never an internal error of the host.
 */
export function callPlugin<T>(kind: string, id: string, what: string, call: () => T): T {
  try {
    return call();
  } catch (error) {
    if (error instanceof LayerquantError) throw error;
    throw new PluginError(kind, id, `failed in ${what}: ${describeThrown(error)}`, { cause: error });
  }
}

/**
 * A computation that gave no number (a NaN or infinite loss, perplexity or error) from inputs that all passed their
 * checks: refused with what was computed and where, never printed as a result.
 */
export class NonFiniteResultError extends LayerquantError {
  constructor(readonly what: string, readonly value: number, hint: string) {
    super('NON_FINITE_RESULT', `${what} is ${value}, not a number; ${hint}`);
  }
}
