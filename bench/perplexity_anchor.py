# PyTorch anchor for bench/perplexity.mjs: the plain fp32 Llama forward of ../shared/anchors/torch_cpu_anchor.py
# (BF16/F16 weights widened to fp32, RMSNorm, rotate_half rotary, repeat_interleave GQA, causal softmax, SiLU MLP),
# non-overlapping windows of seqlen, cross-entropy over seqlen-1 tokens each, on 2 threads.
# usage: /usr/bin/python3 bench/perplexity_anchor.py MODEL_DIR IDS_JSON SEQLEN [THREADS] [MAX_TOKENS]
import glob, json, math, struct, sys, time
import torch, torch.nn.functional as F

model_dir, ids_path, seqlen = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)


def load(d):
    weights = {}
    for path in sorted(glob.glob(d + '/*.safetensors')):
        data = open(path, 'rb').read()
        n = struct.unpack('<Q', data[:8])[0]
        header = json.loads(data[8:8 + n])
        for name, info in header.items():
            if name == '__metadata__':
                continue
            start, end = info['data_offsets']
            raw = bytearray(data[8 + n + start:8 + n + end])
            if info['dtype'] == 'BF16':
                t = torch.frombuffer(raw, dtype=torch.int16).to(torch.int32).bitwise_left_shift(16).view(torch.float32)
            elif info['dtype'] == 'F16':
                t = torch.frombuffer(raw, dtype=torch.float16).float()
            else:
                t = torch.frombuffer(raw, dtype=torch.float32).clone()
            weights[name] = t.reshape(info['shape'])
    return weights


W = load(model_dir)
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


ids = torch.tensor(json.load(open(ids_path)))
if len(sys.argv) > 5:
    ids = ids[:int(sys.argv[5])]
windows = ids.numel() // seqlen
nll = 0.0
start = time.perf_counter()
with torch.no_grad():
    for i in range(windows):
        chunk = ids[i * seqlen:(i + 1) * seqlen]
        nll += F.cross_entropy(forward(chunk)[:-1], chunk[1:], reduction='sum').item()
seconds = time.perf_counter() - start
print(json.dumps({'ppl': math.exp(nll / (windows * (seqlen - 1))), 'seconds': seconds, 'tokens': windows * seqlen}), flush=True)
