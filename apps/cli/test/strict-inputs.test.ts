import { shippedModelDir, shippedOraclesDir } from '@layerquant/fixtures';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './run-cli.js';

/**
 * Damaged inputs that used to give a believable number with exit 0 (issue 11): each must now exit 1 with one line
 * naming the file, tensor or option, and leave the output directory exactly as it was.
 */

const scratch = mkdtempSync(join(tmpdir(), 'layerquant-strict-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const index = JSON.parse(readFileSync(join(shippedModelDir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
const shippedConfig = JSON.parse(readFileSync(join(shippedModelDir, 'config.json'), 'utf8')) as Record<string, unknown>;

/** A copy of the shipped model: shards linked, small files copied, so a case can edit one file cheaply. */
function modelCopy(name: string): string {
  const dir = join(scratch, name);
  mkdirSync(dir);
  for (const file of readdirSync(shippedModelDir)) {
    const from = join(shippedModelDir, file);
    if (!statSync(from).isFile()) continue;
    if (file.endsWith('.safetensors')) symlinkSync(from, join(dir, file));
    else copyFileSync(from, join(dir, file));
  }
  return dir;
}

function withConfig(name: string, edit: (config: Record<string, unknown>) => void): string {
  const dir = modelCopy(name);
  const config = structuredClone(shippedConfig);
  edit(config);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return dir;
}

/** Splits a safetensors file by hand (independent of tensor-io): header object, data section. */
function splitShard(bytes: Buffer): { header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>; data: Buffer; headerLength: number } {
  const headerLength = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as never, data: bytes.subarray(8 + headerLength), headerLength };
}

/** Replaces a linked shard of `dir` by an edited copy. */
function editShard(dir: string, shard: string, edit: (bytes: Buffer) => Buffer): void {
  const bytes = edit(Buffer.from(readFileSync(join(shippedModelDir, shard))));
  rmSync(join(dir, shard));
  writeFileSync(join(dir, shard), bytes);
}

/** Names and hashes of everything under `dir` (hidden files included): "unchanged" means equal snapshots. */
function snapshot(dir: string): Record<string, string> {
  if (!existsSync(dir)) return {};
  const out: Record<string, string> = {};
  const walk = (sub: string) => {
    for (const name of readdirSync(join(dir, sub))) {
      const path = join(dir, sub, name);
      if (statSync(path).isDirectory()) walk(join(sub, name));
      else out[join(sub, name)] = createHash('sha256').update(readFileSync(path)).digest('hex');
    }
  };
  walk('');
  return out;
}

const downProj = 'model.layers.3.mlp.down_proj.weight';
const qProj = 'model.layers.5.self_attn.q_proj.weight';

describe('damaged inputs exit 1 with one line naming the problem, and leave --out unchanged', () => {
  let previous: string;
  let before: Record<string, string>;
  const models: Record<string, string> = {};

  beforeAll(async () => {
    // An output directory holding a complete earlier result, which no failed run may touch.
    previous = join(scratch, 'previous-out');
    const first = await cli('quantize', shippedModelDir, '--method', 'rtn', '--config', 'b4g64', '--out', previous, '--json');
    expect(first.code).toBe(0);
    before = snapshot(previous);

    models.shortHeader = modelCopy('short-header');
    editShard(models.shortHeader, index.weight_map[downProj]!, (bytes) => {
      bytes.writeBigUInt64LE(bytes.readBigUInt64LE(0) - 3n, 0); // the header's trailing spaces still parse as JSON
      return bytes;
    });
    models.halfLayers = withConfig('half-layers', (c) => (c.num_hidden_layers = 16));
    models.noConfig = modelCopy('no-config');
    rmSync(join(models.noConfig, 'config.json'));
    models.gpt2 = withConfig('gpt2', (c) => ((c.architectures = ['GPT2LMHeadModel']), (c.model_type = 'gpt2')));
    models.mixtral = withConfig('mixtral', (c) => ((c.architectures = ['MixtralForCausalLM']), (c.model_type = 'mixtral')));
    models.wideHidden = withConfig('wide-hidden', (c) => (c.hidden_size = 512));
    models.heads = withConfig('heads', (c) => (c.num_key_value_heads = 4));
    models.ffn = withConfig('ffn', (c) => (c.intermediate_size = 512));
    models.noQProj = modelCopy('no-q-proj');
    editShard(models.noQProj, index.weight_map[qProj]!, (bytes) => {
      const { header, data } = splitShard(bytes);
      const kept: Buffer[] = [];
      const out: Record<string, unknown> = { __metadata__: (header as Record<string, unknown>).__metadata__ };
      let offset = 0;
      for (const [name, entry] of Object.entries(header)) {
        if (name === '__metadata__' || name === qProj) continue;
        const chunk = data.subarray(entry.data_offsets[0], entry.data_offsets[1]);
        out[name] = { ...entry, data_offsets: [offset, offset + chunk.length] };
        kept.push(chunk);
        offset += chunk.length;
      }
      const json = Buffer.from(JSON.stringify(out));
      const length = Buffer.alloc(8);
      length.writeBigUInt64LE(BigInt(json.length));
      return Buffer.concat([length, json, ...kept]);
    });
    const reduced = structuredClone(index);
    delete reduced.weight_map[qProj];
    writeFileSync(join(models.noQProj, 'model.safetensors.index.json'), JSON.stringify(reduced));
    models.nan = modelCopy('nan');
    editShard(models.nan, index.weight_map[downProj]!, (bytes) => {
      const { header, headerLength } = splitShard(bytes);
      bytes.writeUInt16LE(0x7fc0, 8 + headerLength + header[downProj]!.data_offsets[0] + 2 * 1234); // bf16 NaN
      return bytes;
    });
    models.inf = modelCopy('inf');
    editShard(models.inf, index.weight_map[downProj]!, (bytes) => {
      const { header, headerLength } = splitShard(bytes);
      bytes.writeUInt16LE(0xff80, 8 + headerLength + header[downProj]!.data_offsets[0] + 2 * 700); // bf16 -Infinity
      return bytes;
    });
    models.shortContext = withConfig('short-context', (c) => (c.max_position_embeddings = 128));
  });

  const nanAt = 'value NaN at flat index 1234 \\(row 1, column 594 of \\[256, 640\\]\\)';
  const cases: Array<[string, () => string[], RegExp]> = [
    ['header length 3 bytes short (eval)', () => ['eval', models.shortHeader!, '--dataset', 'brown-test', '--max-tokens', '512'], /model-00001-of-00004\.safetensors .*3 trailing bytes/],
    ['header length 3 bytes short (quantize)', () => ['quantize', models.shortHeader!, '--method', 'rtn', '--out', previous, '--force'], /model-00001-of-00004\.safetensors .*3 trailing bytes/],
    ['num_hidden_layers 16 on 32 layers (eval)', () => ['eval', models.halfLayers!, '--dataset', 'brown-test', '--max-tokens', '512'], /config\.json: num_hidden_layers is 16 but .* has 32 layers \(tensor "model\.layers\.31\./],
    ['num_hidden_layers 16 on 32 layers (quantize)', () => ['quantize', models.halfLayers!, '--method', 'rtn', '--out', previous, '--force'], /num_hidden_layers is 16 but .* has 32 layers/],
    ['num_hidden_layers 16 on 32 layers (sensitivity)', () => ['sensitivity', models.halfLayers!, '--blocks', '1', '--out', previous], /num_hidden_layers is 16 but .* has 32 layers/],
    ['num_hidden_layers 16 on 32 layers (inspect)', () => ['inspect', models.halfLayers!], /num_hidden_layers is 16/],
    ['num_hidden_layers 16 on 32 layers (generate)', () => ['generate', models.halfLayers!, '--prompt', 'The jury', '--max-new-tokens', '2'], /num_hidden_layers is 16 but .* has 32 layers/],
    ['num_hidden_layers 16 on 32 layers (allocate --model)', () => ['allocate', '--stats', shippedOraclesDir, '--method', 'mxq', '--budget', '3', '--model', models.halfLayers!], /num_hidden_layers is 16/],
    ['num_hidden_layers 16 on 32 layers (experiment)', () => ['experiment', models.halfLayers!, '--methods', 'hqq', '--budgets', '3.25', '--stats', shippedOraclesDir, '--out', previous], /num_hidden_layers is 16/],
    ['config.json missing (quantize)', () => ['quantize', models.noConfig!, '--method', 'rtn', '--out', previous, '--force'], /no-config\/config\.json: not found/],
    ['GPT2LMHeadModel (quantize)', () => ['quantize', models.gpt2!, '--method', 'rtn', '--out', previous, '--force'], /architecture "GPT2LMHeadModel" is not supported/],
    ['MixtralForCausalLM (quantize)', () => ['quantize', models.mixtral!, '--method', 'rtn', '--out', previous, '--force'], /architecture "MixtralForCausalLM" is not supported/],
    ['wrong hidden size (quantize)', () => ['quantize', models.wideHidden!, '--method', 'rtn', '--out', previous, '--force'], /tensor "model\.embed_tokens\.weight": has shape \[8192, 256\] .*hidden_size 512.* needs \[8192, 512\]/],
    ['wrong key/value heads (eval)', () => ['eval', models.heads!, '--dataset', 'brown-test', '--max-tokens', '512'], /tensor "model\.layers\.0\.self_attn\.k_proj\.weight": has shape \[128, 256\] .*num_key_value_heads 4.* needs \[256, 256\]/],
    ['wrong intermediate size (quantize)', () => ['quantize', models.ffn!, '--method', 'rtn', '--out', previous, '--force'], /tensor "model\.layers\.0\.mlp\.gate_proj\.weight": has shape \[640, 256\] .*intermediate_size 512/],
    ['q_proj removed from shard and index (quantize)', () => ['quantize', models.noQProj!, '--method', 'rtn', '--out', previous, '--force'], /tensor "model\.layers\.5\.self_attn\.q_proj\.weight" not found in .*no-q-proj/],
    ['q_proj removed from shard and index (eval)', () => ['eval', models.noQProj!, '--dataset', 'brown-test', '--max-tokens', '512'], /tensor "model\.layers\.5\.self_attn\.q_proj\.weight" not found/],
    ['NaN in a weight (quantize)', () => ['quantize', models.nan!, '--method', 'hqq', '--out', previous, '--force'], new RegExp(`tensor "${downProj.replace(/\./g, '\\.')}"\\): ${nanAt}`)],
    ['NaN in a weight (eval)', () => ['eval', models.nan!, '--dataset', 'brown-test', '--max-tokens', '512'], new RegExp(`tensor "${downProj.replace(/\./g, '\\.')}"\\): ${nanAt}`)],
    ['NaN in a weight (sensitivity)', () => ['sensitivity', models.nan!, '--blocks', '1', '--out', previous], /NaN at flat index 1234/],
    ['-Infinity in a weight (quantize)', () => ['quantize', models.inf!, '--method', 'rtn', '--out', previous, '--force'], /value -Infinity at flat index 700 \(row 1, column 60 of \[256, 640\]\)/],
    ['--seqlen above max_position_embeddings (eval)', () => ['eval', models.shortContext!, '--dataset', 'brown-test', '--seqlen', '256', '--max-tokens', '512'], /option "--seqlen": 256 tokens is more than the model's max_position_embeddings 128 .*--allow-long-context/],
    ['--seqlen above max_position_embeddings (experiment)', () => ['experiment', shippedModelDir, '--methods', 'hqq', '--budgets', '3.25', '--seqlen', '4096', '--stats', shippedOraclesDir, '--out', previous], /option "--seqlen": 4096 tokens is more than the model's max_position_embeddings 1024/],
    ['--seqlen above max_position_embeddings (sensitivity)', () => ['sensitivity', models.shortContext!, '--seqlen', '256', '--blocks', '1', '--out', previous], /option "--seqlen": 256 tokens/],
    ['--out is a file', () => ['quantize', shippedModelDir, '--method', 'rtn', '--out', join(previous, 'config.json')], /--out is an existing file, not a directory/],
    ['--out under a file', () => ['quantize', shippedModelDir, '--method', 'rtn', '--out', join(previous, 'config.json', 'sub')], /--out lies under .*config\.json", which is a file/],
  ];
  for (const [label, argv, message] of cases) {
    it(label, async () => {
      const { code, stdout, stderr } = await cli(...argv());
      expect(stderr).toMatch(message);
      expect(code).toBe(1);
      expect(stdout).toBe('');
      // One error line, the last; a step that had already started (a NaN is found when its matrix is read) said
      // its plan before it, in its own cost line, and nothing else (no stack trace).
      const lines = stderr.trim().split('\n');
      expect(lines.at(-1)).toMatch(/^layerquant: error: /);
      expect(lines.filter((l) => l.startsWith('layerquant: error: '))).toHaveLength(1);
      for (const line of lines.slice(0, -1)) expect(line).toMatch(/^(quantize|sensitivity|fnorm|kurtosis|measured|eval): \S/);
      expect(snapshot(previous)).toEqual(before);
    });
  }

  it('--allow-long-context runs a --seqlen above max_position_embeddings', async () => {
    const { code, stdout } = await cli('eval', models.shortContext!, '--dataset', 'brown-test', '--seqlen', '256', '--max-tokens', '512', '--allow-long-context', '--json');
    expect(code).toBe(0);
    expect((JSON.parse(stdout) as { windows: number }).windows).toBe(2);
  });

  it('a quantize that fails leaves a new --out absent', async () => {
    const out = join(scratch, 'never-made');
    const { code } = await cli('quantize', models.nan!, '--method', 'rtn', '--out', out);
    expect(code).toBe(1);
    expect(existsSync(out)).toBe(false);
  });
});

describe('statistics tables that miss whole layers are rejected against the model', () => {
  it('an fnorm.csv cut at a layer boundary (quantize --stats, allocate --model), nothing written', async () => {
    const stats = join(scratch, 'cut-stats');
    mkdirSync(stats);
    const [header, ...rows] = readFileSync(join(shippedOraclesDir, 'fnorm.csv'), 'utf8').trimEnd().split('\n');
    writeFileSync(join(stats, 'fnorm.csv'), `${[header, ...rows.filter((r) => Number(r.split(',')[0]) < 19)].join('\n')}\n`);
    const out = join(scratch, 'cut-out');
    const quantize = await cli('quantize', shippedModelDir, '--method', 'mxq', '--budget', '3', '--stats', stats, '--out', out);
    expect(quantize.stderr).toMatch(/cut-stats\/fnorm\.csv: has no row for matrix 19\.self_attn\.q_proj of the model/);
    expect(quantize.code).toBe(1);
    expect(existsSync(out)).toBe(false);
    const allocate = await cli('allocate', '--stats', stats, '--method', 'mxq', '--budget', '3', '--model', shippedModelDir);
    expect(allocate.stderr).toMatch(/has no row for matrix 19\.self_attn\.q_proj/);
    expect(allocate.code).toBe(1);
  });
});
