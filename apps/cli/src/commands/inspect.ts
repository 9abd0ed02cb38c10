import { isOnnxExportDir, summarizeOnnxExport } from '@layerquant/export';
import { isQuantizedMetadata } from '@layerquant/quantizers';
import { openQuantizedCheckpoint, summarizeQuantizedCheckpoint } from '@layerquant/quantizers/node';
import { inspectModel, loadDecoderConfig, openCheckpoint, type ModelSummary } from '@layerquant/tensor-io';
import { parseCommandArgs, requireString } from '../args.js';
import type { Command } from '../command.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'architecture, sizes and tensors of a model directory',
  usage: [
    'layerquant inspect <model-dir | quantized-dir | onnx-dir> [--json]',
    '',
    'Prints architecture, layer count, hidden size, total params, quantizable linear params, tensor count and dtypes.',
    'A quantized checkpoint (layerquant-quantized-v1) counts its matrices at their original shapes and lists the',
    'configs; an ONNX export lists its MatMulNBits nodes by bits and block size, and the bytes of its linear weights.',
  ].join('\n'),
  async run({ argv, stdout }) {
    const { values, positionals } = parseCommandArgs(argv, {});
    const dir = requireString(positionals[0], 'model-dir', 'layerquant inspect <model-dir>');
    if (isOnnxExportDir(dir)) {
      await inspectOnnx(dir, values.json === true, stdout);
      return;
    }
    const summary = await inspectModel(dir);
    const quantized = await quantizedLayout(dir);
    const s: ModelSummary = quantized ? { ...summary, params: quantized.params, linearParams: quantized.linearParams, linearMatrices: quantized.linearMatrices } : summary;
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
        ...(quantized ? { layout: 'layerquant-quantized-v1', quantizedMatrices: quantized.quantizedMatrices, configs: quantized.configs, linearBytes: quantized.linearBytes } : {}),
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
    if (quantized) {
      rows.push(['layout', `layerquant-quantized-v1, ${quantized.quantizedMatrices} of ${quantized.linearMatrices} matrices quantized`]);
      rows.push(['configs', Object.entries(quantized.configs).map(([c, n]) => `${c} x${n}`).join(', ')]);
      rows.push(['linear bytes', `${(quantized.linearBytes / 2 ** 20).toFixed(2)} MiB (${((8 * quantized.linearBytes) / quantized.linearParams).toFixed(4)} bits/weight as stored)`]);
    }
    stdout(`${rows.map(([k, v]) => `${k.padEnd(14)} ${v}`).join('\n')}\n`);
  },
};

/** The linear matrices of a layerquant-quantized-v1 directory, or undefined for a plain checkpoint. */
async function quantizedLayout(dir: string) {
  const checkpoint = await openCheckpoint(dir);
  const isQuantized = isQuantizedMetadata(checkpoint.metadata);
  await checkpoint.close();
  if (!isQuantized) return undefined;
  const quantized = await openQuantizedCheckpoint(dir);
  try {
    return summarizeQuantizedCheckpoint(quantized);
  } finally {
    await quantized.close();
  }
}

async function inspectOnnx(dir: string, json: boolean, stdout: (text: string) => void): Promise<void> {
  const config = await loadDecoderConfig(dir);
  const o = await summarizeOnnxExport(dir);
  const ops: Record<string, number> = {};
  for (const node of o.summary.nodes) ops[node.opType] = (ops[node.opType] ?? 0) + 1;
  const facts = {
    layout: 'onnx',
    file: o.file,
    fileBytes: o.fileBytes,
    externalDataBytes: o.externalDataBytes,
    architecture: config.architecture,
    modelType: config.modelType,
    numLayers: config.numLayers,
    hiddenSize: config.hiddenSize,
    vocabSize: config.vocabSize,
    linearParams: o.linearParams,
    linearMatrices: o.linearMatrices,
    linearBytes: o.linearBytes,
    matMulNBits: o.matMulNBits,
    inputs: o.summary.inputs.length,
    outputs: o.summary.outputs.length,
    nodes: o.summary.nodes.length,
    operators: ops,
  };
  if (json) {
    stdout(`${JSON.stringify(facts)}\n`);
    return;
  }
  const rows: Array<[string, string]> = [
    ['model', dir],
    ['layout', `ONNX export ${o.file} (${(o.fileBytes / 2 ** 20).toFixed(2)} MiB${o.externalDataBytes ? ` + ${(o.externalDataBytes / 2 ** 20).toFixed(2)} MiB external data` : ''})`],
    ['architecture', `${config.architecture} (${config.modelType}), ${config.numLayers} layers, hidden ${config.hiddenSize}`],
    ['linear params', `${o.linearParams.toLocaleString('en-US')} in ${o.linearMatrices} matrices`],
    ['MatMulNBits', Object.entries(o.matMulNBits).map(([c, n]) => `${c} x${n}`).join(', ') || 'none'],
    ['linear bytes', `${(o.linearBytes / 2 ** 20).toFixed(2)} MiB (${((8 * o.linearBytes) / o.linearParams).toFixed(4)} bits/weight as stored)`],
    ['graph', `${o.summary.nodes.length} nodes, ${o.summary.inputs.length} inputs, ${o.summary.outputs.length} outputs`],
  ];
  stdout(`${rows.map(([k, v]) => `${k.padEnd(14)} ${v}`).join('\n')}\n`);
}
