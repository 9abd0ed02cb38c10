import { describe, expect, it } from 'vitest';
import { InvalidJobError, validateJob } from './job-schema.js';

const HASH = 'a'.repeat(64);
const KEY = '0123456789abcdef';
const config = { bits: 4, groupSize: 64, axis: 1, roundZero: false, symmetric: false };

/** A cell job's data as the coordinator writes it (coordinator.ts runCells). */
function cellData(): Record<string, unknown> {
  return {
    modelDir: '/models/llama',
    modelHash: HASH,
    cell: { key: KEY, kind: 'method', method: { id: 'sensiboost-2-1', allocator: 'sensiboost', options: { boostStop: 2, topM: 1, dataset: '' }, explicit: ['boostStop', 'topM'] }, budget: 3.25 },
    modelName: 'llama',
    textBlob: HASH,
    seqlen: 512,
    maxTokens: 2048,
    seed: 42,
    statsBlob: HASH,
    configs: [config],
    quantizer: { id: 'hqq', options: {} },
  };
}

function statisticsData(): Record<string, unknown> {
  return {
    modelDir: '/models/llama',
    modelHash: HASH,
    metrics: ['fnorm'],
    layers: [3],
    calibrationBlob: null,
    measure: { calibrationName: 'brown-calib', blocks: 8, seqlen: 512, configs: [config], sensitivityConfigs: [config], embeddingConfigs: { lm_head: [config] }, quantizer: { id: 'hqq', options: {} } },
  };
}

/** The message of the error validateJob throws (an InvalidJobError), or '' when it accepts. */
function refusal(name: string, data: unknown, id = `cell-${KEY}`): string {
  try {
    validateJob(id, name, data);
    return '';
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidJobError);
    return (error as Error).message;
  }
}

/** A copy of `data` with the field at `path` set to `value` (undefined: deleted). */
function edited(data: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const copy = structuredClone(data);
  const keys = path.split('.');
  let target = copy as Record<string, unknown>;
  for (const key of keys.slice(0, -1)) target = target[key] as Record<string, unknown>;
  if (value === undefined) delete target[keys.at(-1)!];
  else target[keys.at(-1)!] = value;
  return copy;
}

describe('queue job schema', () => {
  it('accepts the jobs the coordinator writes (cell: method and fp; statistics: per layer and whole model)', () => {
    expect(refusal('cell', cellData())).toBe('');
    expect(refusal('cell', { ...cellData(), cell: { key: KEY, kind: 'fp' }, statsBlob: null, configs: null, maxTokens: null })).toBe('');
    // experiment --kld: the optional flag.
    expect(refusal('cell', { ...cellData(), kld: true })).toBe('');
    // A calibrated quantizer's cell: the calibration text by hash, its name, blocks and block length.
    expect(refusal('cell', { ...cellData(), quantizer: { id: 'gptq', options: { actOrder: true } }, calibration: { blob: HASH, name: 'brown-calib', blocks: 128, seqlen: 512 } })).toBe('');
    // experiment --refine: the statistics' calibration by hash and the quantizer the candidates are quantized with.
    const refine = { calibration: { blob: HASH, name: 'brown-calib', blocks: 1, seqlen: 512 }, quantizer: { id: 'hqq', options: {} } };
    expect(refusal('cell', { ...cellData(), refine })).toBe('');
    expect(refusal('cell', { ...cellData(), refine: { ...refine, calibration: { ...refine.calibration, blob: 'x' } } })).toMatch(/data\.refine\.calibration\.blob "x" is not a sha256/);
    expect(refusal('cell', { ...cellData(), refine: { calibration: refine.calibration } })).toMatch(/data\.refine\.quantizer/);
    expect(refusal('statistics', statisticsData(), 'statistics-x')).toBe('');
    expect(refusal('statistics', { ...statisticsData(), layers: null, calibrationBlob: HASH, measure: { calibrationName: 'c', blocks: 1, seqlen: 512, configs: [config], sensitivityConfigs: [config] } }, 'statistics-x')).toBe('');
  });

  it('refuses each tampered field, naming the job and the field', () => {
    const cases: [string, unknown, RegExp][] = [
      ['modelDir', 'relative/path', /data\.modelDir "relative\/path" is not an absolute path/],
      ['modelDir', 7, /data\.modelDir must be an absolute path, not number 7/],
      ['modelHash', 'abc', /data\.modelHash "abc" is not a sha256/],
      ['seqlen', '512', /data\.seqlen must be an integer from 2 to \d+, not the string "512"/],
      ['seqlen', 1e12, /data\.seqlen must be an integer/],
      ['maxTokens', 1.5, /data\.maxTokens must be an integer/],
      ['cell.budget', Number.NaN, /data\.cell\.budget must be a number from/],
      ['cell.kind', 'gptq', /data\.cell\.kind must be one of "fp", "method"/],
      ['cell.key', 'fedcba9876543210', /data\.cell\.key fedcba9876543210 is not the key in the job id/],
      ['cell.method.options', { boostStop: { $gt: 1 } }, /data\.cell\.method\.options\.boostStop must be text/],
      ['configs', [{ ...config, bits: 7 }], /data\.configs\[0\]\.bits must be one of 1, 2, 3, 4, 5, 6, 8, not number 7/],
      ['configs', [], /data\.configs must hold 1 to 256 entries, not 0/],
      ['quantizer.id', 'hqq\u0000', /data\.quantizer\.id holds control characters/],
      ['modelName', undefined, /data\.modelName is missing/],
      ['kld', 'yes', /data\.kld must be/],
      ['calibration', { blob: '../calib.txt', name: 'c', blocks: 1, seqlen: 512 }, /data\.calibration\.blob "\.\.\/calib\.txt" is not a sha256/],
      ['calibration', { blob: HASH, name: 'c', blocks: 0, seqlen: 512 }, /data\.calibration\.blocks must be an integer from 1/],
      ['calibration', { blob: HASH, name: 'c', blocks: 1, seqlen: 512, path: '/etc/passwd' }, /data\.calibration\.path is not a field of this job/],
      ['extra', '/etc/shadow', /data\.extra is not a field of this job \(unknown fields are refused\)/],
      ['cell.method.path', '/etc', /data\.cell\.method\.path is not a field of this job/],
    ];
    for (const [field, value, expected] of cases) {
      const message = refusal('cell', edited(cellData(), field, value));
      expect(message, field).toMatch(expected);
      expect(message, field).toMatch(new RegExp(`^job cell-${KEY}: .*; the job is refused, not retried`));
    }
    const stats: [string, unknown, RegExp][] = [
      ['layers', [1, 1], /data\.layers holds an entry twice/],
      ['layers', [-1], /data\.layers\[0\] must be an integer from 0/],
      ['metrics', [], /data\.metrics must hold 1 to 64 entries/],
      ['measure.order', 'random', /data\.measure\.order must be one of "in-order", "shuffled"/],
      ['measure.embeddingConfigs', { wte: [config] }, /data\.measure\.embeddingConfigs\.wte is not a field/],
      ['measure.blocks', 0, /data\.measure\.blocks must be an integer from 1/],
    ];
    for (const [field, value, expected] of stats) expect(refusal('statistics', edited(statisticsData(), field, value), 'statistics-x'), field).toMatch(expected);
  });

  it('refuses an unknown job kind and data that is no object', () => {
    expect(refusal('shell', cellData())).toMatch(/its name "shell" is not a job kind of this worker \(cell, statistics\)/);
    expect(refusal('cell', null)).toMatch(/data must be an object, not null/);
    expect(refusal('cell', [cellData()])).toMatch(/data must be an object, not an array/);
    expect(refusal('cell', 'x'.repeat(10))).toMatch(/data must be an object, not the string/);
  });

  it('shows job ids and values from Redis bounded and with control characters escaped', () => {
    const message = refusal('cell', edited(cellData(), 'modelDir', 5), `cell-\u001b[2J${'x'.repeat(500)}`);
    expect(message).not.toContain('\u001b');
    expect(message).toContain('\\u001b[2J');
    expect(message.length).toBeLessThan(400);
  });
});
