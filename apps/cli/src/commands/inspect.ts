import { summarizeOnnxExport } from '@layerquant/export';
import { architectureFacts, inspectModel, loadDecoderConfig, loadValidatedConfig, openCheckpoint, type ModelSummary } from '@layerquant/tensor-io';
import type { DType } from '@layerquant/core';
import { openModelWeights } from '@layerquant/quantizers/node';
import { parseCommandArgs, requireString } from '../args.js';
import type { Command } from '../command.js';
import { directorySizes, isGgufFile, resolveModelPath } from '@layerquant/pipeline';
import { boostLines, formatRows, jsonLine, sizeRows } from '../output.js';
import { decoderConfigOfGguf } from '@layerquant/gguf';
import { readGgufHeader } from '@layerquant/gguf/node';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'architecture, sizes and tensors of a model directory or a GGUF file',
  usage: [
    'layerquant inspect <model-dir | quantized-dir | onnx-dir | file.gguf> [--json]',
    '',
    'Prints architecture, layer count, hidden size, total params, quantizable linear params, tensor count and dtypes,',
    'and the size of the linear matrices in MiB: on disk (as stored) and, for a quantized directory, in the paper\'s',
    'accounting. A quantized checkpoint (layerquant-quantized-v1) counts its matrices at their original shapes, lists',
    'the configs and, when a boost quantized it, the boosted layers; an ONNX export lists its MatMulNBits nodes; a',
    'GGUF file (validated as strictly as safetensors) lists its tensor types, its bytes and the header\'s share.',
    '  --json   one JSON object (docs/json-schema.md): command "inspect", layout, sizes { paperMiB, diskMiB, ... }',
  ].join('\n'),
  async run({ argv, stdout }) {
    const { values, positionals } = parseCommandArgs(argv, {});
    const dir = resolveModelPath(requireString(positionals[0], 'model-dir', 'layerquant inspect <model-dir>'));
    if (isGgufFile(dir)) {
      await inspectGguf(dir, values.json === true, stdout);
      return;
    }
    const layout = await directorySizes(dir);
    if (layout.layout === 'onnx') {
      const config = await loadDecoderConfig(dir);
      const o = await summarizeOnnxExport(dir);
      const operators: Record<string, number> = {};
      for (const node of o.summary.nodes) operators[node.opType] = (operators[node.opType] ?? 0) + 1;
      if (values.json) {
        stdout(jsonLine('inspect', {
          model: dir, layout: 'onnx', file: o.file, architecture: config.architecture, modelType: config.modelType, numLayers: config.numLayers,
          hiddenSize: config.hiddenSize, vocabSize: config.vocabSize, linearParams: o.linearParams, linearMatrices: o.linearMatrices,
          configs: layout.configs, sizes: layout.sizes, boosts: layout.boosts ?? null,
          graph: { inputs: o.summary.inputs.length, outputs: o.summary.outputs.length, nodes: o.summary.nodes.length, operators },
        }));
        return;
      }
      stdout(formatRows([
        ['model', dir],
        ['layout', `ONNX export ${o.file}`],
        ['architecture', `${config.architecture} (${config.modelType}), ${config.numLayers} layers, hidden ${config.hiddenSize}`],
        ['linear params', `${o.linearParams.toLocaleString('en-US')} in ${o.linearMatrices} matrices`],
        ['MatMulNBits', Object.entries(o.matMulNBits).map(([c, n]) => `${c} x${n}`).join(', ') || 'none'],
        ...sizeRows(layout.sizes),
        ['graph', `${o.summary.nodes.length} nodes, ${o.summary.inputs.length} inputs, ${o.summary.outputs.length} outputs`],
      ]));
      if (layout.boosts) stdout(`${boostLines(layout.boosts).join('\n')}\n`);
      return;
    }
    const quantized = layout.layout === 'layerquant-quantized-v1';
    const summary = quantized ? await quantizedSummary(dir) : await inspectModel(dir);
    const params: number | undefined = layout.params;
    const s = { ...summary, linearParams: layout.sizes.params, linearMatrices: layout.linearMatrices };
    if (values.json) {
      stdout(jsonLine('inspect', {
        model: dir,
        layout: layout.layout,
        architecture: s.architecture,
        modelType: s.modelType,
        numLayers: s.numLayers,
        hiddenSize: s.hiddenSize,
        intermediateSize: s.intermediateSize,
        numHeads: s.numHeads,
        numKeyValueHeads: s.numKeyValueHeads,
        vocabSize: s.vocabSize,
        tieWordEmbeddings: s.tieWordEmbeddings,
        params: params ?? null,
        linearParams: s.linearParams,
        linearMatrices: s.linearMatrices,
        tensors: s.tensors,
        dtypes: s.dtypes,
        files: s.files,
        configs: layout.configs,
        sizes: layout.sizes,
        boosts: layout.boosts ?? null,
      }));
      return;
    }
    const rows: Array<[string, string]> = [
      ['model', s.dir],
      ...architectureFacts(s),
      ...(params === undefined ? [] : [['params', params.toLocaleString('en-US')] as [string, string]]),
      ['linear params', `${s.linearParams.toLocaleString('en-US')} in ${s.linearMatrices} matrices${params === undefined ? '' : ` (${((100 * s.linearParams) / params).toFixed(1)}%)`}`],
      ['tensors', `${s.tensors} in ${s.files} file${s.files === 1 ? '' : 's'}`],
      ['dtypes', Object.entries(s.dtypes).map(([d, n]) => `${d} x${n}`).join(', ')],
    ];
    if (quantized) rows.push(['layout', `layerquant-quantized-v1; configs ${Object.entries(layout.configs).map(([c, n]) => `${c} x${n}`).join(', ')}`]);
    rows.push(...sizeRows(layout.sizes));
    stdout(formatRows(rows));
    if (layout.boosts) stdout(`${boostLines(layout.boosts).join('\n')}\n`);
  },
};

/** A quantized checkpoint's architecture (config.json validated against its matrices at their original shapes) and stored tensors. */
async function quantizedSummary(dir: string): Promise<ModelSummary> {
  const weights = await openModelWeights(dir);
  let config: Awaited<ReturnType<typeof loadValidatedConfig>>['config'];
  try {
    config = (await loadValidatedConfig(weights.dir, weights)).config;
  } finally {
    await weights.close();
  }
  const checkpoint = await openCheckpoint(dir);
  try {
    const dtypes: Partial<Record<DType, number>> = {};
    for (const t of checkpoint.tensors) dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
    return {
      dir: checkpoint.dir, architecture: config.architecture, modelType: config.modelType, numLayers: config.numLayers, hiddenSize: config.hiddenSize,
      intermediateSize: config.intermediateSize, numHeads: config.numHeads, numKeyValueHeads: config.numKeyValueHeads, vocabSize: config.vocabSize,
      tieWordEmbeddings: config.tieWordEmbeddings, params: 0, linearParams: 0, linearMatrices: 0, tensors: checkpoint.tensors.length, dtypes,
      files: checkpoint.files.length, bytes: checkpoint.tensors.reduce((s, t) => s + t.byteLength, 0),
    } as ModelSummary;
  } finally {
    await checkpoint.close();
  }
}

/** `inspect` of a .gguf file: the header validated, the architecture from its metadata, types and sizes of its tensors. */
async function inspectGguf(file: string, json: boolean, stdout: (text: string) => void): Promise<void> {
  const header = await readGgufHeader(file);
  const config = decoderConfigOfGguf(header);
  const layout = await directorySizes(file);
  const tensorBytes = header.tensors.reduce((sum, t) => sum + t.byteLength, 0);
  if (json) {
    stdout(jsonLine('inspect', {
      model: file, layout: 'gguf', file, architecture: config.architecture, modelType: config.modelType, numLayers: config.numLayers,
      hiddenSize: config.hiddenSize, intermediateSize: config.intermediateSize, numHeads: config.numHeads, numKeyValueHeads: config.numKeyValueHeads,
      vocabSize: config.vocabSize, tieWordEmbeddings: config.tieWordEmbeddings, params: layout.params,
      linearParams: layout.sizes.params, linearMatrices: layout.linearMatrices, tensors: header.tensors.length, configs: layout.configs, sizes: layout.sizes, boosts: null,
    }));
    return;
  }
  const all: Record<string, number> = {};
  for (const t of header.tensors) all[t.type.name] = (all[t.type.name] ?? 0) + 1;
  stdout(formatRows([
    ['model', file],
    ['layout', `GGUF v${header.version}, ${header.tensors.length} tensors, ${header.metadata.size} metadata keys, alignment ${header.alignment}`],
    ['architecture', `${config.architecture} (llama.cpp ${config.modelType}), ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} heads / ${config.numKeyValueHeads} kv`],
    ['linear params', `${layout.sizes.params.toLocaleString('en-US')} in ${layout.linearMatrices} matrices: ${Object.entries(layout.configs).map(([t, n]) => `${n} ${t}`).join(', ')}`],
    ['tensor types', Object.entries(all).map(([t, n]) => `${t} x${n}`).join(', ')],
    ...sizeRows(layout.sizes),
    ['file', `${(header.fileSize / 2 ** 20).toFixed(2)} MiB: tensors ${(tensorBytes / 2 ** 20).toFixed(2)} MiB, header/metadata/padding ${((header.fileSize - tensorBytes) / 2 ** 10).toFixed(1)} KiB`],
  ]));
}
