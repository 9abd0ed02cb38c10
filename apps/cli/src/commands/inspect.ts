import { inspectModel } from '@layerquant/tensor-io';
import { parseCommandArgs, requireString } from '../args.js';
import type { Command } from '../command.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'architecture, sizes and tensors of a model directory',
  usage: 'layerquant inspect <model-dir> [--json]\n\nPrints architecture, layer count, hidden size, total params, quantizable linear params, tensor count and dtypes.',
  async run({ argv, stdout }) {
    const { values, positionals } = parseCommandArgs(argv, {});
    const dir = requireString(positionals[0], 'model-dir', 'layerquant inspect <model-dir>');
    const s = await inspectModel(dir);
    if (values.json) {
      stdout(`${JSON.stringify({
        architecture: s.architecture,
        modelType: s.modelType,
        numLayers: s.numLayers,
        hiddenSize: s.hiddenSize,
        intermediateSize: s.intermediateSize,
        numHeads: s.numHeads,
        numKeyValueHeads: s.numKeyValueHeads,
        vocabSize: s.vocabSize,
        tieWordEmbeddings: s.tieWordEmbeddings,
        params: s.params,
        linearParams: s.linearParams,
        linearMatrices: s.linearMatrices,
        tensors: s.tensors,
        dtypes: s.dtypes,
        files: s.files,
        bytes: s.bytes,
      })}\n`);
      return;
    }
    const rows: Array<[string, string]> = [
      ['model', s.dir],
      ['architecture', `${s.architecture} (${s.modelType})`],
      ['layers', String(s.numLayers)],
      ['hidden size', String(s.hiddenSize)],
      ['ffn size', String(s.intermediateSize)],
      ['heads', `${s.numHeads} (${s.numKeyValueHeads} key/value)`],
      ['vocab', `${s.vocabSize}${s.tieWordEmbeddings ? ' (tied embeddings)' : ''}`],
      ['params', s.params.toLocaleString('en-US')],
      ['linear params', `${s.linearParams.toLocaleString('en-US')} in ${s.linearMatrices} matrices (${((100 * s.linearParams) / s.params).toFixed(1)}%)`],
      ['tensors', `${s.tensors} in ${s.files} file${s.files === 1 ? '' : 's'} (${(s.bytes / 2 ** 20).toFixed(1)} MiB)`],
      ['dtypes', Object.entries(s.dtypes).map(([d, n]) => `${d} x${n}`).join(', ')],
    ];
    stdout(`${rows.map(([k, v]) => `${k.padEnd(14)} ${v}`).join('\n')}\n`);
  },
};
