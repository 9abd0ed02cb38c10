import { InvalidOptionError, parseConfigName, type Quantizer } from '@layerquant/core';
import { createHqqQuantizer, FORK_SOLVER_OPTIONS, rtnQuantizer } from '@layerquant/quantizers';
import { defaultWorkerCount, quantizeModel } from '@layerquant/quantizers/node';
import { parseCommandArgs, parseNumberOption, requireString, stringOption } from '../args.js';
import type { Command } from '../command.js';
import { createProgress, formatSeconds } from '../progress.js';

const METHODS = ['rtn', 'hqq'] as const;

function quantizerFor(method: string, kappa: number | undefined): Quantizer {
  if (method === 'rtn') {
    if (kappa !== undefined) throw new InvalidOptionError('--kappa', 'applies to --method hqq only');
    return rtnQuantizer;
  }
  if (method === 'hqq') return createHqqQuantizer({ solver: kappa === undefined ? {} : { kappa } });
  throw new InvalidOptionError('--method', `"${method}" is not a method; use one of ${METHODS.join(', ')}`);
}

export const quantizeCommand: Command = {
  name: 'quantize',
  summary: 'quantize every linear matrix of a model into a quantized checkpoint',
  usage: [
    'layerquant quantize <model-dir> --method rtn|hqq --config b4g64 --out <dir> [--json]',
    '',
    'Writes <dir>/model.safetensors (packed codes, scales, zeros per matrix; other tensors copied), config and',
    'tokenizer files, and quantization.json. Prints bits per weight (paper accounting), packed bytes, the summed',
    'squared dequantization error and the time.',
    '',
    'Options:',
    '  --method rtn|hqq     quantizer (default hqq: upstream HQQ, p=0.7, beta=10, 20 iterations, early stop)',
    '  --config b{b}g{g}    bits in 1,2,3,4,5,6,8 and a group size that divides the row length (default b4g64)',
    '  --out <dir>          output directory (required)',
    '  --axis 0|1           1: groups along the input dimension (default); 0: strided groups, as the authors\' fork',
    '  --round-zero         round the zero point (the fork does for 4-bit)',
    '  --kappa <k>          multiply HQQ\'s beta by k after each step (the fork: 1.01; default off)',
    '  --fork               the authors\' fork defaults: --kappa 1.01 --axis 0, --round-zero for 4-bit',
    '  --json               one JSON object: bpp, bytes, sqErr, seconds, ...',
  ].join('\n'),
  async run({ argv, stdout }) {
    const { values, positionals } = parseCommandArgs(argv, {
      method: { type: 'string' },
      config: { type: 'string' },
      out: { type: 'string' },
      axis: { type: 'string' },
      'round-zero': { type: 'boolean' },
      kappa: { type: 'string' },
      fork: { type: 'boolean' },
    });
    const modelDir = requireString(positionals[0], 'model-dir', 'layerquant quantize <model-dir> --config b4g64 --out <dir>');
    if (positionals.length > 1) throw new InvalidOptionError('model-dir', `one model directory expected, got ${positionals.length}`);
    const outDir = requireString(stringOption(values, 'out'), '--out', 'where to write the quantized model, e.g. --out ./model-b4g64');
    const method = stringOption(values, 'method') ?? 'hqq';
    const fork = values.fork === true;
    const bits = parseConfigName(stringOption(values, 'config') ?? 'b4g64').bits;
    const axisText = stringOption(values, 'axis');
    if (axisText !== undefined && axisText !== '0' && axisText !== '1') throw new InvalidOptionError('--axis', `"${axisText}" must be 0 or 1`);
    const axis = axisText === undefined ? (fork ? 0 : 1) : axisText === '0' ? 0 : 1;
    const roundZero = values['round-zero'] === true || (fork && bits === 4);
    const config = parseConfigName(stringOption(values, 'config') ?? 'b4g64', { axis, roundZero });
    const kappaText = stringOption(values, 'kappa');
    const kappa = kappaText === undefined ? (fork && method === 'hqq' ? FORK_SOLVER_OPTIONS.kappa : undefined) : parseNumberOption(kappaText, '--kappa', 1, (k) => k >= 1);
    const quantizer = quantizerFor(method, kappa);

    const progress = createProgress('quantize', !values.json && Boolean(process.stderr.isTTY));
    const report = await quantizeModel({
      modelDir,
      outDir,
      quantizer,
      configFor: () => config,
      method,
      workers: defaultWorkerCount(),
      options: { config: `b${config.bits}g${config.groupSize}`, axis, roundZero, ...(kappa === undefined ? {} : { kappa }) },
      onProgress: (p) => progress.update(p.done, p.total, p.key),
    });
    progress.done();
    if (values.json) {
      stdout(`${JSON.stringify({
        method,
        config: `b${config.bits}g${config.groupSize}`,
        axis,
        roundZero,
        ...(kappa === undefined ? {} : { kappa }),
        out: report.outDir,
        matrices: report.matrices,
        params: report.params,
        bpp: report.bpp,
        paperMB: report.paperMB,
        bytes: report.bytes,
        fileBytes: report.fileBytes,
        sqErr: report.sqErr,
        seconds: report.seconds,
        quantizeSeconds: report.quantizeSeconds,
      })}\n`);
      return;
    }
    const rows: Array<[string, string]> = [
      ['model', report.modelDir],
      ['out', report.outDir],
      ['method', `${method} ${`b${config.bits}g${config.groupSize}`}${axis === 0 ? ' axis 0' : ''}${roundZero ? ' round-zero' : ''}${kappa === undefined ? '' : ` kappa ${kappa}`}`],
      ['matrices', `${report.quantizedMatrices} of ${report.matrices} (${report.params.toLocaleString('en-US')} weights)`],
      ['bits/weight', `${report.bpp.toFixed(4)} (paper), ${((8 * report.bytes) / report.params).toFixed(4)} (packed)`],
      ['size', `${(report.bytes / 2 ** 20).toFixed(2)} MiB packed linear weights, ${(report.fileBytes / 2 ** 20).toFixed(2)} MiB file`],
      ['sq. error', report.sqErr.toPrecision(8)],
      ['time', `${formatSeconds(report.seconds)} (${formatSeconds(report.quantizeSeconds)} quantizing)`],
    ];
    stdout(`${rows.map(([k, v]) => `${k.padEnd(12)} ${v}`).join('\n')}\n`);
  },
};
