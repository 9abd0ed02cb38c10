# PyTorch anchor for bench/perplexity.mjs: the plain fp32 Llama forward of ../shared/anchors/torch_cpu_anchor.py
# (BF16/F16 weights widened to fp32, RMSNorm, rotate_half rotary, repeat_interleave GQA, causal softmax, SiLU MLP),
# non-overlapping windows of seqlen, cross-entropy over seqlen-1 tokens each, on 2 threads.
# With --allocation FILE (a `layerquant allocate --json` allocation: {"<layer>.<module>": "b4g64" | null}) every
# matrix given a config is replaced by its HQQ dequantization first (llama_torch.hqq_dequantized: upstream HQQ,
# axis 1): the oracle of an experiment cell, for bench/experiment-oracle-windows.mjs.
# usage: /usr/bin/python3 bench/perplexity_anchor.py MODEL_DIR IDS_JSON SEQLEN [THREADS] [MAX_TOKENS] [--allocation FILE]
# Prints one JSON object: ppl, seconds, tokens, windowNll (summed NLL of each window), windowTokens (scored tokens).
import json, math, re, sys, time
import torch, torch.nn.functional as F
from llama_torch import hqq_dequantized, load_safetensors

argv = sys.argv[1:]
allocation_path = None
if '--allocation' in argv:
    at = argv.index('--allocation')
    allocation_path = argv[at + 1]
    del argv[at:at + 2]
model_dir, ids_path, seqlen = argv[0], argv[1], int(argv[2])
torch.set_num_threads(int(argv[3]) if len(argv) > 3 else 2)

W = load_safetensors(model_dir)
cfg = json.load(open(model_dir + '/config.json'))
H, nh, nkv = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_key_value_heads']
hd = cfg.get('head_dim') or H // nh
L = cfg['num_hidden_layers']
theta = cfg.get('rope_theta') or cfg['rope_parameters']['rope_theta']
eps = cfg['rms_norm_eps']
head = W.get('lm_head.weight', W['model.embed_tokens.weight'])
inv = 1.0 / theta ** (torch.arange(0, hd, 2).float() / hd)
angles = torch.outer(torch.arange(seqlen).float(), inv)
cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()


def rotate_half(x):
    return torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(tokens):
    x = W['model.embed_tokens.weight'][tokens]
    T = tokens.numel()
    for i in range(L):
        p = f'model.layers.{i}.'
        h = rms(x, W[p + 'input_layernorm.weight'])
        q = (h @ W[p + 'self_attn.q_proj.weight'].T).view(T, nh, hd).transpose(0, 1)
        k = (h @ W[p + 'self_attn.k_proj.weight'].T).view(T, nkv, hd).transpose(0, 1)
        v = (h @ W[p + 'self_attn.v_proj.weight'].T).view(T, nkv, hd).transpose(0, 1)
        q, k = q * cos[:T] + rotate_half(q) * sin[:T], k * cos[:T] + rotate_half(k) * sin[:T]
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float('-inf'))
        a = scores.softmax(-1) @ v
        x = x + a.transpose(0, 1).reshape(T, nh * hd) @ W[p + 'self_attn.o_proj.weight'].T
        h = rms(x, W[p + 'post_attention_layernorm.weight'])
        x = x + (F.silu(h @ W[p + 'mlp.gate_proj.weight'].T) * (h @ W[p + 'mlp.up_proj.weight'].T)) @ W[p + 'mlp.down_proj.weight'].T
    return rms(x, W['model.norm.weight']) @ head.T


if allocation_path:
    with torch.no_grad():
        for key, config in json.load(open(allocation_path)).items():
            if config is None:
                continue
            layer, module = key.split('.', 1)
            bits, group = map(int, re.fullmatch(r'b(\d+)g(\d+)', config).groups())
            name = f'model.layers.{layer}.{module}.weight'
            W[name] = hqq_dequantized(W[name], bits, group, 1)

ids = torch.tensor(json.load(open(ids_path)))
if len(argv) > 4:
    ids = ids[:int(argv[4])]
windows = ids.numel() // seqlen
window_nll = []
start = time.perf_counter()
with torch.no_grad():
    for i in range(windows):
        chunk = ids[i * seqlen:(i + 1) * seqlen]
        window_nll.append(F.cross_entropy(forward(chunk)[:-1], chunk[1:], reduction='sum').item())
seconds = time.perf_counter() - start
print(json.dumps({'ppl': math.exp(sum(window_nll) / (windows * (seqlen - 1))), 'seconds': seconds, 'tokens': windows * seqlen,
                  'windowNll': window_nll, 'windowTokens': [seqlen - 1] * windows}), flush=True)
