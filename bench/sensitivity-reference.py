# Independent PyTorch reference for @layerquant/sensitivity (run with Debian's /usr/bin/python3 + python3-torch).
# The authors' activation-sensitivity method (lm-quant-toolkit prep/sensitivity.py) written again from the
# SPEC in plain torch, with HQQ (upstream defaults: optimize, no round_zero) in fp32 on the CPU.
# Per decoder layer, with the fp output of layer i-1 as the input of layer i:
#   attn_in  = MSE(attn(x), attn(x; q,k,v quantized))   attn = input_layernorm -> attention incl. o_proj
#   attn_out = MSE(attn(x), attn(x; o quantized))
#   mlp_gate = MSE(mlp(h), mlp(h; gate,up quantized))   h = x + attn(x), mlp = post_attention_layernorm -> MLP
#   mlp_down = MSE(mlp(h), mlp(h; down quantized))
# MSE = mean over every element of the [blocks, seqlen, hidden] output.
# usage: /usr/bin/python3 bench/sensitivity-reference.py MODEL_DIR IDS_JSON BLOCKS SEQLEN BITS GROUP [--method hqq|rtn] [--axis 0|1]
#        [--float64] [--layers N] [--dequantized FILE]
# IDS_JSON: a JSON array of token ids (the calibration text tokenized by @layerquant/tensor-io); blocks are cut in order.
# Prints one JSON object {rows: [{part, layer, sensitivity}], kurtosis: {...}, seconds}.
import json, sys, time, argparse
import torch
import torch.nn.functional as F
from llama_torch import MODULES, Llama, hqq_dequantized, load_safetensors

parser = argparse.ArgumentParser()
parser.add_argument('model_dir'); parser.add_argument('ids'); parser.add_argument('blocks', type=int); parser.add_argument('seqlen', type=int)
parser.add_argument('bits', type=int); parser.add_argument('group', type=int)
parser.add_argument('--axis', type=int, default=1); parser.add_argument('--float64', action='store_true'); parser.add_argument('--layers', type=int, default=0)
parser.add_argument('--threads', type=int, default=2)
parser.add_argument('--method', choices=['hqq', 'rtn'], default='hqq')
# float32 dequantized matrices (layer-major, LINEAR_MODULES order) to use instead of this script's HQQ: isolates the forward pass
parser.add_argument('--dequantized', default=None)
args = parser.parse_args()
torch.set_num_threads(args.threads)
dtype = torch.float64 if args.float64 else torch.float32


W = load_safetensors(args.model_dir)
model = Llama(args.model_dir, args.seqlen, dtype)
L = args.layers or model.layers
T = args.seqlen
rms, attention, mlp = model.rms, model.attention, model.mlp


def mse(a, b):
    return (a - b).double().pow(2).mean().item()


def kurtosis(w):
    w = w.double().flatten(); d = w - w.mean()
    return (d.pow(4).mean() / d.pow(2).mean() ** 2).item()


ids = json.load(open(args.ids))
if len(ids) < args.blocks * T: sys.exit(f'{args.ids}: {len(ids)} tokens, need {args.blocks * T}')
tokens = torch.tensor(ids[:args.blocks * T]).view(args.blocks, T)
t0 = time.perf_counter()
x = W['model.embed_tokens.weight'].to(dtype)[tokens]
rows, kurt = [], {}
dequantized = torch.from_numpy(__import__('numpy').fromfile(args.dequantized, dtype='float32')) if args.dequantized else None
offset = 0
with torch.no_grad():
    for i in range(L):
        p = f'model.layers.{i}.'
        w = {m: W[p + m + '.weight'] for m in MODULES}
        for m, t in w.items(): kurt[f'{i}.{m}'] = kurtosis(t)
        if dequantized is not None:
            wq = {}
            for m, t in w.items():
                wq[m] = dequantized[offset:offset + t.numel()].view(t.shape).to(dtype); offset += t.numel()
        else:
            wq = {m: hqq_dequantized(t, args.bits, args.group, args.axis, args.method == 'hqq').to(dtype) for m, t in w.items()}
        w = {m: t.to(dtype) for m, t in w.items()}
        h = rms(x, W[p + 'input_layernorm.weight'].to(dtype))
        a = attention(h, w['self_attn.q_proj'], w['self_attn.k_proj'], w['self_attn.v_proj'], w['self_attn.o_proj'])
        a_in = attention(h, wq['self_attn.q_proj'], wq['self_attn.k_proj'], wq['self_attn.v_proj'], w['self_attn.o_proj'])
        a_out = attention(h, w['self_attn.q_proj'], w['self_attn.k_proj'], w['self_attn.v_proj'], wq['self_attn.o_proj'])
        r = x + a
        g = rms(r, W[p + 'post_attention_layernorm.weight'].to(dtype))
        m = mlp(g, w['mlp.gate_proj'], w['mlp.up_proj'], w['mlp.down_proj'])
        m_gate = mlp(g, wq['mlp.gate_proj'], wq['mlp.up_proj'], w['mlp.down_proj'])
        m_down = mlp(g, w['mlp.gate_proj'], w['mlp.up_proj'], wq['mlp.down_proj'])
        for part, y in [('attn_in', a_in), ('attn_out', a_out), ('mlp_gate', m_gate), ('mlp_down', m_down)]:
            rows.append({'part': part, 'layer': i, 'sensitivity': mse(a if part.startswith('attn') else m, y)})
        x = r + m
print(json.dumps({'rows': rows, 'kurtosis': kurt, 'seconds': time.perf_counter() - t0}))
