import { MemoryBudgetError, checkContextLength, matrixOfTensorName, type DecoderConfig, type QuantConfig, type Quantizer } from '@layerquant/core';
import { isOnnxExportDir, openOnnxExport, openPackedModel, type ModelGraphSource } from '@layerquant/export';
import { readEvaluationText, type NllModel } from '@layerquant/perplexity';
import { openModelWeights, type QuantizerLookup } from '@layerquant/quantizers/node';
import { floatWeightBytes, loadDecoderModel, loadLayerStreamedModel, streamedWeightBytes, type TensorSource } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer, loadValidatedConfig, type Checkpoint, type Tokenizer } from '@layerquant/tensor-io';
import { decoderConfigOfGguf } from '@layerquant/gguf';
import { openLlamaCppModel, readGgufHeader } from '@layerquant/gguf/node';
import { existsSync, statSync } from 'node:fs';
import { freemem } from 'node:os';

/** How a model is evaluated. */
export type EvaluationKind = 'float' | 'float-streamed' | 'packed' | 'onnx' | 'gguf';

export const EVALUATION_KINDS: Readonly<Record<EvaluationKind, string>> = Object.freeze({
  float: 'float32, one onnxruntime session',
  'float-streamed': 'float32, layer by layer (weights do not fit --max-memory)',
  packed: 'packed weights in MatMulNBits (the graph `layerquant export` writes)',
  onnx: 'ONNX export, its own file',
  gguf: 'GGUF file in llama.cpp (node-llama-cpp, CPU), its own file and tokenizer',
});

/** Whether a model argument is a GGUF file (evaluated by llama.cpp itself). */
export function isGgufFile(path: string): boolean {
  return path.endsWith('.gguf') && existsSync(path) && statSync(path).isFile();
}

export interface EvaluationModel {
  readonly model: NllModel;
  readonly kind: EvaluationKind;
  /** The model's config (validated against its tensors for checkpoints). */
  readonly config: DecoderConfig;
  /** Bytes of weights the evaluation holds (estimate for float models, exact initializer bytes for packed ones). */
  readonly weightBytes: number;
  readonly file?: string;
  /** The model's own tokenizer where it carries one (a GGUF file); otherwise the directory's tokenizer.json. */
  readonly tokenizer?: Tokenizer;
  dispose(): Promise<void>;
}

/** The memory budget when --max-memory is not given: 80% of what the machine has free now. */
export function defaultMemoryBudget(): number {
  return 0.8 * freemem();
}

/**
 * What the one-session float path holds: the float32 weights once (weights fed as inputs), or about three times
 * below 1.5 GiB, where they are also baked into the graph's protobuf and onnxruntime's pre-packed copy.
 */
export function oneSessionBytes(config: DecoderConfig, source: Pick<TensorSource, 'has'>): number {
  const bytes = floatWeightBytes(config, source);
  return bytes < 1.5 * 2 ** 30 ? 3 * bytes : bytes;
}

/**
 * For commands that need the whole float model in one session (generate: every token runs every layer, so layers
 * cannot be streamed): refuses a float checkpoint whose float32 weights exceed the budget, before anything is
 * loaded, instead of being killed at the machine's limit. ONNX exports and quantized checkpoints pass (packed).
 */
export async function checkFloatSessionFits(modelDir: string, what: string, maxMemoryBytes?: number): Promise<void> {
  if (isOnnxExportDir(modelDir)) return;
  const weights = await openModelWeights(modelDir);
  try {
    if ('isQuantized' in weights) return;
    const { config } = await loadValidatedConfig(weights.dir, weights);
    const needed = oneSessionBytes(config, weights);
    const budget = maxMemoryBytes ?? defaultMemoryBudget();
    if (needed > budget) {
      throw new MemoryBudgetError(
        `${what} of ${modelDir} (float32 weights in one onnxruntime session)`,
        needed,
        budget,
        `quantize it first (\`layerquant quantize ${modelDir} --config b4g64 --out <dir>\`, which runs on packed weights), or raise --max-memory if the machine has the memory`,
      );
    }
  } finally {
    await weights.close();
  }
}

export interface EvaluationOptions {
  /** Bytes the float path may use before it streams layer by layer (default: defaultMemoryBudget()). */
  readonly maxMemoryBytes?: number;
  readonly threads?: number;
  /** Called with the config before any weight is read (checks such as the context length; throw to stop). */
  readonly onConfig?: (config: DecoderConfig) => void;
  /** Where the quantizer a checkpoint records is found (the command's registry, --plugin's included). */
  readonly quantizers?: QuantizerLookup['quantizers'];
  /** The longest window the evaluation runs (llama.cpp's context for a GGUF file; default 512). */
  readonly contextSize?: number;
}

/** A float checkpoint: one session when it fits the budget, else layer by layer (same perplexity). */
async function openFloat(source: Checkpoint, config: DecoderConfig, options: EvaluationOptions): Promise<EvaluationModel> {
  const runtime = options.threads === undefined ? {} : { threads: options.threads };
  const budget = options.maxMemoryBytes ?? defaultMemoryBudget();
  try {
    if (oneSessionBytes(config, source) <= budget) {
      const weightBytes = floatWeightBytes(config, source);
      const model = await loadDecoderModel(source, config, runtime);
      await source.close();
      return { model, kind: 'float', config, weightBytes, dispose: () => model.dispose() };
    }
    const model = await loadLayerStreamedModel(source, config, runtime);
    return {
      model,
      kind: 'float-streamed',
      config,
      weightBytes: streamedWeightBytes(config, source),
      async dispose() {
        await model.dispose();
        await source.close();
      },
    };
  } catch (error) {
    await source.close();
    throw error;
  }
}

/**
 * The model `eval` and `experiment` measure, from a directory: a .gguf file runs in llama.cpp itself with its own
 * tokenizer; an ONNX export runs its own file; a quantized checkpoint runs the packed-weight graph the export writes
 * (never float32 copies); a float checkpoint runs in one session or, when its float32 weights exceed the budget,
 * layer by layer.
 */
export async function openEvaluationModel(modelDir: string, options: EvaluationOptions = {}): Promise<EvaluationModel> {
  const runtime = options.threads === undefined ? {} : { threads: options.threads };
  if (isGgufFile(modelDir)) {
    const header = await readGgufHeader(modelDir);
    const config = decoderConfigOfGguf(header);
    options.onConfig?.(config);
    // llama.cpp on one thread unless told: its spin barrier makes more threads slower on a shared machine.
    const model = await openLlamaCppModel(modelDir, { contextSize: options.contextSize ?? 512, threads: options.threads ?? 1 });
    const weightBytes = header.tensors.reduce((sum, t) => sum + t.byteLength, 0);
    return { model, kind: 'gguf', config, weightBytes, file: modelDir, tokenizer: { encode: (text) => model.tokenize(text), decode: (ids) => model.detokenize(ids) }, dispose: () => model.dispose() };
  }
  if (isOnnxExportDir(modelDir)) {
    options.onConfig?.(await loadDecoderConfig(modelDir));
    const model = await openOnnxExport(modelDir, runtime);
    return { model, kind: 'onnx', config: model.config, weightBytes: 0, file: model.file, dispose: () => model.dispose() };
  }
  const weights = await openModelWeights(modelDir, options.quantizers ? { quantizers: options.quantizers } : {});
  let config: DecoderConfig;
  try {
    // The one config-vs-tensors check every command makes, before any long step.
    config = (await loadValidatedConfig(weights.dir, weights)).config;
    options.onConfig?.(config);
  } catch (error) {
    await weights.close();
    throw error;
  }
  if ('isQuantized' in weights) {
    try {
      const model = await openPackedModel(weights, config, runtime);
      return { model, kind: 'packed', config, weightBytes: model.weightBytes, dispose: () => model.dispose() };
    } finally {
      await weights.close();
    }
  }
  return openFloat(weights, config, options);
}

/** A checkpoint whose linear matrices are quantized when read: `configOf(name)` gives each one's config (null: float). */
export function quantizingSource(checkpoint: Checkpoint, configOf: (name: string) => QuantConfig | null, quantizer: Quantizer): ModelGraphSource {
  const configFor = (name: string) => (matrixOfTensorName(name) ? configOf(name) : null);
  return {
    dir: checkpoint.dir,
    has: (name) => checkpoint.has(name),
    // What the model holds: a quantized matrix as the quantizer dequantizes it (read where its codes cannot be packed).
    read: async (name) => {
      const weight = await checkpoint.read(name);
      const config = configFor(name);
      return config ? { ...weight, dtype: 'F32' as const, data: quantizer.dequantize(quantizer.quantize(weight, config)) } : weight;
    },
    isQuantized: (name) => configFor(name) !== null,
    readQuantized: async (name) => quantizer.quantize(await checkpoint.read(name), configFor(name)!),
    quantizer: () => quantizer,
  };
}

/** An allocation quantized on the fly and evaluated as the packed-weight model (experiment cells). */
export async function openAllocationModel(
  checkpoint: Checkpoint,
  config: DecoderConfig,
  configOf: (name: string) => QuantConfig | null,
  quantizer: Quantizer,
  options: EvaluationOptions = {},
): Promise<EvaluationModel> {
  const model = await openPackedModel(quantizingSource(checkpoint, configOf, quantizer), config, options.threads === undefined ? {} : { threads: options.threads });
  return { model, kind: 'packed', config, weightBytes: model.weightBytes, dispose: () => model.dispose() };
}

/**
 * Opens a model directory for perplexity the one way eval and compare do (openEvaluationModel: a .gguf file in
 * llama.cpp, an ONNX export as shipped, a quantized checkpoint on its packed weights, a float checkpoint in one session or layer by layer);
 * config.json is validated against the tensors and the context length checked before the text is read.
 */
export async function openForEvaluation(
  modelDir: string,
  textPath: string,
  options: { seqlen: number; allowLongContext: boolean; threads?: number; maxMemoryBytes?: number; quantizers?: QuantizerLookup['quantizers'] },
): Promise<{ text: string; tokenizer: Tokenizer; quantized: boolean; opened: EvaluationModel }> {
  const opened = await openEvaluationModel(modelDir, {
    contextSize: options.seqlen,
    ...(options.threads === undefined ? {} : { threads: options.threads }),
    ...(options.maxMemoryBytes === undefined ? {} : { maxMemoryBytes: options.maxMemoryBytes }),
    // A quantized checkpoint is read back through the quantizer it records (built-in or a --plugin's).
    ...(options.quantizers ? { quantizers: options.quantizers } : {}),
    // Before any weight is read: the context length against the validated config.
    onConfig: (config) => checkContextLength(options.seqlen, config, '--seqlen', options.allowLongContext),
  });
  try {
    const text = await readEvaluationText(textPath);
    const tokenizer = opened.tokenizer ?? (await loadTokenizer(modelDir));
    return { text, tokenizer, quantized: opened.kind === 'packed' || opened.kind === 'onnx' || opened.kind === 'gguf', opened };
  } catch (error) {
    await opened.dispose();
    throw error;
  }
}
