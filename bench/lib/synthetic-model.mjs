// Synthetic Llama-family checkpoints of any shape, for benchmarks: random weights (uniform, std 0.02; norms 1),
// BF16, sharded safetensors + model.safetensors.index.json, config.json, and the shipped model's tokenizer files.
// Written tensor by tensor (writeSafetensorsStreaming), so a 7B-shape model (13.5 GB) never sits in memory: the
// peak is one matrix. Not a user command: `node bench/lib/synthetic-model.mjs <out-dir> --shape llama-2-7b`.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { shippedModelDir } from '@layerquant/fixtures';
import { writeSafetensorsStreaming } from '@layerquant/tensor-io';

/** Shapes of public models (vocab 8192: the shipped tokenizer's). */
export const SHAPES = Object.freeze({
  tinyllama: { hidden: 2048, layers: 22, ffn: 5632, heads: 32, kvHeads: 4, tied: false },
  'llama-3.2-3b': { hidden: 3072, layers: 28, ffn: 8192, heads: 24, kvHeads: 8, tied: true },
  'llama-2-7b': { hidden: 4096, layers: 32, ffn: 11008, heads: 32, kvHeads: 32, tied: false },
});

/** Prints a bench script's leading comment (its usage) and exits. */
export function printUsage(scriptUrl) {
  const source = readFileSync(fileURLToPath(scriptUrl), 'utf8');
  process.stdout.write(`${source.slice(0, source.indexOf('\nimport ')).replace(/^\/\/ ?/gm, '')}\n`);
  process.exit(0);
}

/**
 * Checks this process's arguments against the options a bench script takes, before it starts any work: an option it
 * does not take, or one without its value, exits 2 naming it (a misspelt option, or `--help`, used to be ignored and
 * the run went on with the defaults); `--help` prints the script's leading comment (its usage) and exits.
 */
export function checkArguments(scriptUrl, { values = [], flags = [] }) {
  const args = process.argv.slice(2);
  if (args.includes('--help')) printUsage(scriptUrl);
  const fail = (message) => {
    console.error(`${message}; it takes ${[...values.map((v) => `--${v} <value>`), ...flags.map((f) => `--${f}`)].join(', ')} (--help for the usage)`);
    process.exit(2);
  };
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith('--') ? args[i].slice(2) : undefined;
    if (name === undefined) fail(`${args[i]}: not an option`);
    if (values.includes(name)) {
      if (args[i + 1] === undefined || args[i + 1].startsWith('--')) fail(`--${name} needs a value`);
      i++;
    } else if (!flags.includes(name)) {
      fail(`--${name}: not an option of this script`);
    }
  }
}

/** `--name value` of this process's arguments, else `fallback`. */
export function argument(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : process.argv[i + 1];
}

/** The shape named by `--shape` (default tinyllama): its name and dimensions; exits 2 naming the shapes otherwise. */
export function shapeArgument() {
  const name = argument('shape', 'tinyllama');
  if (!SHAPES[name]) {
    console.error(`--shape must be one of ${Object.keys(SHAPES).join(', ')}`);
    process.exit(2);
  }
  return { shapeName: name, shape: SHAPES[name] };
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'];

/** Every tensor of the shape, in the order a Hugging Face checkpoint stores them. */
export function syntheticTensorSpecs(shape) {
  const { hidden: h, layers, ffn, heads, kvHeads, vocab = 8192, tied } = shape;
  const d = shape.headDim ?? h / heads;
  const specs = [{ name: 'model.embed_tokens.weight', shape: [vocab, h] }];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}.`;
    specs.push(
      { name: `${p}input_layernorm.weight`, shape: [h] },
      { name: `${p}self_attn.q_proj.weight`, shape: [heads * d, h] },
      { name: `${p}self_attn.k_proj.weight`, shape: [kvHeads * d, h] },
      { name: `${p}self_attn.v_proj.weight`, shape: [kvHeads * d, h] },
      { name: `${p}self_attn.o_proj.weight`, shape: [h, heads * d] },
      { name: `${p}post_attention_layernorm.weight`, shape: [h] },
      { name: `${p}mlp.gate_proj.weight`, shape: [ffn, h] },
      { name: `${p}mlp.up_proj.weight`, shape: [ffn, h] },
      { name: `${p}mlp.down_proj.weight`, shape: [h, ffn] },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [h] });
  if (!tied) specs.push({ name: 'lm_head.weight', shape: [vocab, h] });
  return specs.map((s) => ({ ...s, dtype: 'BF16' }));
}

/** BF16 bits of uniform random values in [-a, a] (std a/sqrt(3)), xorshift32 from `seed`. */
function randomBf16(count, seed, std) {
  const out = new Uint16Array(count);
  const chunk = new Float32Array(1 << 16);
  const bits = new Uint32Array(chunk.buffer);
  const a = std * Math.sqrt(3);
  let x = seed >>> 0 || 1;
  for (let start = 0; start < count; start += chunk.length) {
    const n = Math.min(chunk.length, count - start);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      chunk[i] = ((x >>> 0) / 4294967296 * 2 - 1) * a;
    }
    for (let i = 0; i < n; i++) out[start + i] = (bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16;
  }
  return out;
}

function hashName(name, seed) {
  let hash = 2166136261 ^ seed;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 16777619);
  return hash >>> 0;
}

/**
 * Writes a synthetic checkpoint into `dir` (replacing one there). `shape`: { hidden, layers, ffn, heads, kvHeads,
 * vocab?, headDim?, tied? }. Shards hold about `shardBytes` each (default 2 GB, as Hugging Face's 2GB shards).
 */
export async function writeSyntheticCheckpoint(dir, shape, { seed = 1, shardBytes = 2e9, std = 0.02 } = {}) {
  if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const specs = syntheticTensorSpecs(shape);
  const shards = [];
  let current = [];
  let bytes = 0;
  for (const spec of specs) {
    const size = spec.shape.reduce((a, b) => a * b, 1) * 2;
    if (current.length > 0 && bytes + size > shardBytes) {
      shards.push(current);
      current = [];
      bytes = 0;
    }
    current.push(spec);
    bytes += size;
  }
  shards.push(current);
  const weightMap = {};
  let totalBytes = 0;
  let totalParams = 0;
  for (const [s, shard] of shards.entries()) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    await writeSafetensorsStreaming(join(dir, file), shard, (spec) => {
      const count = spec.shape.reduce((a, b) => a * b, 1);
      weightMap[spec.name] = file;
      totalBytes += count * 2;
      totalParams += count;
      const data = spec.name.endsWith('norm.weight') ? new Uint16Array(count).fill(0x3f80) : randomBf16(count, hashName(spec.name, seed), std);
      return new Uint8Array(data.buffer);
    }, { format: 'pt' });
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_parameters: totalParams, total_size: totalBytes }, weight_map: weightMap }, null, 2)}\n`);
  const { hidden, layers, ffn, heads, kvHeads, vocab = 8192, tied = false } = shape;
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: hidden, num_hidden_layers: layers, intermediate_size: ffn,
    num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: shape.headDim ?? hidden / heads, vocab_size: vocab,
    hidden_act: 'silu', rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 4096, tie_word_embeddings: tied,
    attention_bias: false, mlp_bias: false, bos_token_id: 0, eos_token_id: 0, torch_dtype: 'bfloat16',
  };
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  for (const f of TOKENIZER_FILES) if (existsSync(join(shippedModelDir, f))) copyFileSync(join(shippedModelDir, f), join(dir, f));
  return { dir, params: totalParams, bytes: totalBytes, shards: readdirSync(dir).filter((f) => f.endsWith('.safetensors')).length };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [dir, flag, name] = process.argv.slice(2);
  if (!dir || flag !== '--shape' || !SHAPES[name]) {
    console.error(`usage: node bench/lib/synthetic-model.mjs <out-dir> --shape ${Object.keys(SHAPES).join('|')}`);
    process.exit(2);
  }
  const start = performance.now();
  const result = await writeSyntheticCheckpoint(dir, SHAPES[name]);
  console.log(JSON.stringify({ ...result, seconds: (performance.now() - start) / 1000 }));
}
