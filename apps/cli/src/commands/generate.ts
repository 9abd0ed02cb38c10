import { InvalidOptionError, checkContextLength } from '@layerquant/core';
import { openKvDecoder } from '@layerquant/export';
import { greedyDecode } from '@layerquant/runtime';
import { loadDecoderConfig, loadTokenizer } from '@layerquant/tensor-io';
import { parseCommandArgs, parseIntegerOption, parseMemoryOption, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';
import { createSpinner, formatSeconds } from '../progress.js';
import { jsonLine } from '../output.js';
import { builtinRegistries, checkFloatSessionFits, resolveModelPath } from '@layerquant/pipeline';

const SOURCES = {
  onnx: 'ONNX export, run as shipped',
  quantized: 'quantized checkpoint, packed weights in MatMulNBits',
  float: 'float checkpoint',
} as const;

export const generateCommand: Command = {
  name: 'generate',
  summary: 'greedy-decode a prompt with the KV cache, to read what a (quantized) model writes',
  usage: [
    'layerquant generate <model-dir | quantized-dir | onnx-dir> --prompt "..." [--max-new-tokens 32] [--json]',
    '',
    'Runs the decoder graph with a KV cache: an ONNX export runs its own file; a quantized checkpoint runs the graph',
    '`layerquant export` writes (fused operators, MatMulNBits, accuracy level 0); a plain checkpoint runs in float.',
    'Greedy: the most likely token every step (the graph computes only the last position\'s logits), stopping at',
    'the end-of-sequence token or after --max-new-tokens. The KV cache is preallocated for prompt + new tokens and',
    'written in place by the attention. The text is printed as it is generated, then the prefill and decode speeds.',
    '',
    'Options:',
    '  --prompt <text>         the text to continue (required)',
    '  --max-new-tokens <n>    tokens to generate (default 32); with the prompt at most max_position_embeddings',
    '  --allow-long-context    generate beyond max_position_embeddings (positions the model was never trained on)',
    '  --threads <n>           onnxruntime intra-op threads (default: one per core)',
    '  --max-memory <GiB>      memory a float model\'s float32 weights may take (default: 80% of the free memory);',
    '                          a larger float model is refused before loading (decoding needs every layer for every',
    '                          token, so it cannot stream layers as eval does): quantize it, or run its ONNX export',
    '  --json                  one JSON object: prompt, text, ids, seconds, prefill and decode tokens per second,',
    '                          peak resident memory (MiB)',
  ].join('\n'),
  async run({ argv, stdout, plugins = builtinRegistries() }) {
    const { values, positionals } = parseCommandArgs(argv, { prompt: { type: 'string' }, 'max-new-tokens': { type: 'string' }, threads: { type: 'string' }, 'max-memory': { type: 'string' }, 'allow-long-context': { type: 'boolean' } });
    const dir = resolveModelPath(requireString(positionals[0], 'model-dir', 'layerquant generate <model-dir> --prompt "Once upon a time"'));
    if (positionals.length > 1) throw new InvalidOptionError('model-dir', `one model directory expected, got ${positionals.length}`);
    const prompt = requireString(stringOption(values, 'prompt'), '--prompt', 'the text to continue, e.g. --prompt "The jury said"');
    const maxNewTokens = parseIntegerOption(stringOption(values, 'max-new-tokens'), '--max-new-tokens', 32, 1);
    const threadsText = stringOption(values, 'threads');
    const threads = threadsText === undefined ? undefined : parseIntegerOption(threadsText, '--threads', 0, 1);
    const maxMemoryBytes = parseMemoryOption(stringOption(values, 'max-memory'));
    await checkFloatSessionFits(dir, 'generate', maxMemoryBytes);
    const tokenizer = await loadTokenizer(dir);
    const ids = tokenizer.encode(prompt);
    if (ids.length === 0) throw new InvalidOptionError('--prompt', 'encodes to no tokens; give some text');
    // The prompt and every new token take a position: bounded by the context the model runs (as eval's --seqlen);
    // the error names the prompt when it alone is too long (no --max-new-tokens would fit it).
    const decoderConfig = await loadDecoderConfig(dir);
    const allowLong = values['allow-long-context'] === true;
    checkContextLength(ids.length, decoderConfig, '--prompt', allowLong);
    checkContextLength(ids.length + maxNewTokens, decoderConfig, '--max-new-tokens', allowLong);
    const loading = createSpinner(`loading ${dir}`, !values.json && Boolean(process.stderr.isTTY));
    const { decoder, source } = await openKvDecoder(dir, { accuracyLevel: 0, operators: 'fused', quantizers: plugins.quantizers, ...(threads === undefined ? {} : { threads }) }).finally(() => loading.stop());
    try {
      const eos = decoder.config.eosTokenId;
      const stream = !values.json;
      if (stream) stdout(prompt);
      let printed = '';
      const generatedSoFar: number[] = [];
      const started = performance.now();
      let firstToken = started;
      const generated = await greedyDecode(decoder, ids, {
        maxNewTokens,
        ...(eos === undefined ? {} : { eosTokenIds: [eos] }),
        onToken: (id, index) => {
          if (index === 0) firstToken = performance.now();
          if (!stream) return;
          // Byte-level BPE: a token can end inside a character, so print what the whole continuation decodes to so far.
          generatedSoFar.push(id);
          const text = tokenizer.decode(generatedSoFar);
          const stable = text.endsWith('\uFFFD') ? text.slice(0, text.lastIndexOf('\uFFFD')) : text;
          if (stable.length > printed.length && stable.startsWith(printed)) {
            stdout(stable.slice(printed.length));
            printed = stable;
          }
        },
      });
      const finished = performance.now();
      const seconds = (finished - started) / 1000;
      const prefillSeconds = (firstToken - started) / 1000;
      const decodeSeconds = (finished - firstToken) / 1000;
      // The first new token comes from the prefill; each later one from one decode step.
      const decodeTokensPerSecond = generated.length > 1 ? (generated.length - 1) / decodeSeconds : null;
      const prefillTokensPerSecond = ids.length / prefillSeconds;
      const peakRssMiB = process.resourceUsage().maxRSS / 1024;
      const text = tokenizer.decode(generated);
      if (values.json) {
        stdout(
          jsonLine('generate', {
            model: dir, source, prompt, promptIds: ids, ids: generated, text, seconds, tokensPerSecond: generated.length / seconds,
            prefillSeconds, prefillTokensPerSecond, decodeSeconds, decodeTokensPerSecond, cacheMode: decoder.cacheMode, peakRssMiB,
          }),
        );
        return;
      }
      if (text.length > printed.length) stdout(text.slice(printed.length));
      const decodeRate = decodeTokensPerSecond === null ? '' : `, decode ${decodeTokensPerSecond.toFixed(1)} tokens/s`;
      stdout(
        `\n\n(${SOURCES[source]}; ${generated.length} tokens in ${formatSeconds(seconds)}: prefill ${ids.length} tokens at ${prefillTokensPerSecond.toFixed(1)} tokens/s${decodeRate}; peak memory ${peakRssMiB.toFixed(0)} MiB)\n`,
      );
    } finally {
      await decoder.dispose();
    }
  },
};
