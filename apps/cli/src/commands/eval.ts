import { InvalidOptionError } from '@layerquant/core';
import { datasets } from '@layerquant/datasets';
import { PERPLEXITY_PROTOCOLS, hasLogits, klDivergence, perplexity, resolveTextPath, windowPlan, type KlDivergenceResult, type PerplexityProtocol } from '@layerquant/perplexity';
import { parseCommandArgs, parseIntegerOption, parseMemoryOption, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';
import { EVALUATION_KINDS, builtinRegistries, openForEvaluation, resolveModelPath } from '@layerquant/pipeline';
import { createCostReporter, createProgress, createSpinner, formatBytes, formatSeconds } from '../progress.js';
import { absolutePath, formatRows, jsonLine } from '../output.js';
import { KLD_OPTIONS, KLD_USAGE, kldRows, openKldBase, parseKldFlags } from '../flags/kld-flags.js';

export const evalCommand: Command = {
  name: 'eval',
  summary: 'perplexity of a model, a quantized model directory or an ONNX export on a text',
  usage: [
    'layerquant eval <model-dir | quantized-dir | onnx-dir | file.gguf> --text <file> | --dataset brown-test [options] [--json]',
    '',
    'Tokenizes the whole text once (no BOS) and runs the decoder with onnxruntime, one session for all windows.',
    'A quantized directory written by `layerquant quantize` runs the graph `layerquant export` writes (packed',
    'weights in MatMulNBits, accuracy level 0: memory is the quantized model\'s); an ONNX export (`layerquant',
    'export`, `quantize --format onnx`) is evaluated as shipped: its own file. A .gguf file runs in llama.cpp itself',
    '(node-llama-cpp 3.21.1, installed beside layerquant; CPU, --threads default 1) with its own tokenizer: the same',
    'windows, perplexity from llama.cpp\'s logits. A float model whose float32 weights',
    'do not fit --max-memory runs layer by layer over all windows (same perplexity, one layer\'s weights in memory).',
    '',
    'Options:',
    `  --dataset <name>       built-in text: ${Object.keys(datasets).join(', ')}`,
    '  --text <file>          a UTF-8 text file instead',
    '  --protocol windows|sliding',
    '                         windows (default): non-overlapping windows of --seqlen, loss over seqlen-1 tokens each;',
    '                         sliding: the Hugging Face sliding window the paper\'s authors use (max_length = --seqlen,',
    '                         default 1024, and --stride, default 512)',
    '  --seqlen <n>           window length (default 512; 1024 with --protocol sliding)',
    '  --stride <n>           sliding-window stride (default 512)',
    '  --max-tokens <n>       use only the first n tokens of the text',
    '  --threads <n>          onnxruntime intra-op threads (default: one per core); llama.cpp threads for a .gguf (default 1)',
    '  --max-memory <GiB>     memory the float32 weights may take in one session before eval streams layer by layer',
    '                         (default: 80% of the free memory)',
    '  --allow-long-context   run a --seqlen above the model\'s max_position_embeddings (refused otherwise: rotary',
    '                         positions it was never trained on give a different, worse perplexity)',
    ...KLD_USAGE,
    '  --json                 one JSON object (docs/json-schema.md): perplexity, tokens, seconds, nll, windows, ...;',
    '                         with --kld-base also kld: every statistic, the base file and whether it was computed now',
  ].join('\n'),
  async run({ argv, stdout, stderr, plugins = builtinRegistries() }) {
    const { values, positionals } = parseCommandArgs(argv, {
      text: { type: 'string' },
      dataset: { type: 'string' },
      protocol: { type: 'string' },
      seqlen: { type: 'string' },
      stride: { type: 'string' },
      'max-tokens': { type: 'string' },
      threads: { type: 'string' },
      'max-memory': { type: 'string' },
      'allow-long-context': { type: 'boolean' },
      ...KLD_OPTIONS,
    });
    const kldFlags = parseKldFlags(values);
    if (positionals.length > 1) throw new InvalidOptionError('model-dir', `one model directory expected, got ${positionals.length}; to evaluate several on the same windows, use \`layerquant compare ${positionals.join(' ')} ...\``);
    const modelDir = resolveModelPath(requireString(positionals[0], 'model-dir', 'layerquant eval <model-dir> --dataset brown-test'));
    const protocol = (stringOption(values, 'protocol') ?? 'windows') as PerplexityProtocol;
    if (!PERPLEXITY_PROTOCOLS.includes(protocol)) {
      throw new InvalidOptionError('--protocol', `"${protocol}" is not a protocol; use ${PERPLEXITY_PROTOCOLS.join(' or ')}`);
    }
    const seqlen = parseIntegerOption(stringOption(values, 'seqlen'), '--seqlen', protocol === 'sliding' ? 1024 : 512, 2);
    const stride = parseIntegerOption(stringOption(values, 'stride'), '--stride', Math.min(512, seqlen), 1);
    if (protocol === 'windows' && stringOption(values, 'stride') !== undefined) throw new InvalidOptionError('--stride', 'applies to --protocol sliding only');
    const maxTokensText = stringOption(values, 'max-tokens');
    const maxTokens = maxTokensText === undefined ? undefined : parseIntegerOption(maxTokensText, '--max-tokens', 0, 2);
    const threadsText = stringOption(values, 'threads');
    const threads = threadsText === undefined ? undefined : parseIntegerOption(threadsText, '--threads', 0, 1);
    const maxMemoryBytes = parseMemoryOption(stringOption(values, 'max-memory'));
    const textPath = resolveTextPath({ text: stringOption(values, 'text'), dataset: stringOption(values, 'dataset') }, datasets);

    const cost = createCostReporter('eval', stderr, !values.json);
    const loading = createSpinner(`loading ${modelDir}`, !values.json && Boolean(process.stderr.isTTY));
    let evaluation: Awaited<ReturnType<typeof openForEvaluation>>;
    try {
      evaluation = await openForEvaluation(modelDir, textPath, {
        seqlen,
        allowLongContext: values['allow-long-context'] === true,
        quantizers: plugins.quantizers,
        ...(threads === undefined ? {} : { threads }),
        ...(maxMemoryBytes === undefined ? {} : { maxMemoryBytes }),
      });
    } finally {
      loading.stop();
    }
    const { text, tokenizer, quantized, opened } = evaluation;
    const { model, kind, config } = opened;
    const onnxFile = kind === 'onnx' ? opened.file : undefined;
    try {
      const ids = tokenizer.encode(text);
      const progress = createProgress('perplexity', !values.json && Boolean(process.stderr.isTTY));
      const plan = windowPlan(Math.min(ids.length, maxTokens ?? ids.length), protocol === 'windows' ? { seqlen } : { protocol, maxLength: seqlen, stride });
      const memory = opened.weightBytes > 0 ? `, ${formatBytes(opened.weightBytes)} of weights` : '';
      cost.plan(`${plan.windows.length} windows of up to ${seqlen} tokens, ${config.numLayers} layers; ${EVALUATION_KINDS[kind]}${memory}`);
      const windowOptions = {
        protocol,
        ...(protocol === 'windows' ? { seqlen } : { maxLength: seqlen, stride }),
        ...(maxTokens === undefined ? {} : { maxTokens }),
      };
      const onProgress = (done: number, total: number, unit: 'windows' | 'layers') => {
        cost.unit(done, total, unit);
        progress.update(done, total, unit);
      };
      let kld: (KlDivergenceResult & { base: Awaited<ReturnType<typeof openKldBase>> }) | undefined;
      let result: Awaited<ReturnType<typeof perplexity>>;
      if (kldFlags) {
        if (!hasLogits(model)) throw new InvalidOptionError('--kld-base', `${modelDir} is evaluated as ${EVALUATION_KINDS[kind]}, which gives no logits to compare`);
        const note = (line: string) => {
          if (!values.json) stderr(`eval: ${line}\n`);
        };
        const base = await openKldBase(kldFlags, ids, windowOptions, { ...(threads === undefined ? {} : { threads }), ...(maxMemoryBytes === undefined ? {} : { maxMemoryBytes }) }, note);
        try {
          kld = { ...(await klDivergence(model, base.base, ids, { ...windowOptions, onProgress })), base };
        } finally {
          await base.base.close();
        }
        result = kld.perplexity;
      } else {
        result = await perplexity(model, ids, { ...windowOptions, onProgress });
      }
      progress.done();
      if (values.json) {
        stdout(jsonLine('eval', {
          perplexity: result.ppl,
          tokens: result.tokens,
          seconds: result.seconds,
          nll: result.nll,
          scoredTokens: result.scoredTokens,
          windows: result.windows,
          protocol: result.protocol,
          seqlen: result.seqlen,
          stride: result.stride,
          quantized,
          evaluation: kind,
          onnx: onnxFile ?? null,
          model: modelDir,
          text: absolutePath(textPath),
          ...(kld
            ? {
                kld: {
                  ...kld.statistics,
                  base: { model: kldFlags!.floatModelDir, file: kld.base.base.path, bytes: kld.base.base.bytes, computed: kld.base.computed, seconds: kld.base.seconds },
                },
              }
            : {}),
        }));
        return;
      }
      const rows: Array<[string, string]> = [
        ['model', `${modelDir} (${onnxFile ? `ONNX export ${onnxFile}` : EVALUATION_KINDS[kind]})`],
        ['text', `${textPath} (${ids.length.toLocaleString('en-US')} tokens${maxTokens !== undefined && maxTokens < ids.length ? `, first ${maxTokens} used` : ''})`],
        ['protocol', protocol === 'windows' ? `non-overlapping windows of ${seqlen}` : `sliding window, max_length ${seqlen}, stride ${stride}`],
        ['windows', String(result.windows)],
        ['perplexity', result.ppl.toFixed(4)],
        ['time', `${formatSeconds(result.seconds)} (${Math.round(result.tokens / result.seconds).toLocaleString('en-US')} tokens/s)`],
      ];
      if (kld) rows.push(['KLD against', `${kldFlags!.floatModelDir} on the same ${kld.statistics.tokens.toLocaleString('en-US')} scored tokens`], ...kldRows(kld.statistics));
      stdout(formatRows(rows));
    } finally {
      await opened.dispose();
    }
  },
};
