# Independent PyTorch reference of GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
# Generative Pre-trained Transformers", Algorithm 1), written from the paper for bench/gptq.mjs; run with Debian's
# /usr/bin/python3 + python3-torch. Per linear matrix W [rows, K] with inputs X [N, K]:
#   H = 2 X^T X / N (float64 sum, factorized in float32 as the paper's code does); dead columns (H_jj = 0): W_:,j = 0,
#   H_jj = 1; H += 0.01 mean(diag H) I; U = chol(H^-1) upper; then in batches of 128 columns, each column quantized
#   on its group's grid, its error e = (w - q) / U_jj fed to the batch's later columns (w -= e U_j,:), the batch's
#   errors to every later column at the batch's end (lazy batch update). A group's grid (asymmetric min/max with 0
#   in range, integer zero) is taken from the current, already updated weights when its first column is reached.
# The layer pass is GPTQ's sequential one ("true sequential"): the calibration blocks run through the model with
# every matrix before the current one quantized (earlier layers; q/k/v before o_proj before gate/up before down_proj).
# usage: /usr/bin/python3 bench/gptq_reference.py MODEL_DIR IDS_JSON BLOCKS SEQLEN BITS GROUP --out DEQUANTIZED.f32
#        [--threads 2] [--dampening 0.01] [--act-order] [--factor64]
#        /usr/bin/python3 bench/gptq_reference.py MODEL_DIR IDS_JSON BLOCKS SEQLEN BITS GROUP --evaluate OTHER.f32
#        [--layers N]: the first N layers only (bench/gptq-scale.mjs at model shapes too large to hold)
#        [--hessians DIR]: also write each Hessian this run quantized with (float64, row-major [K, K]) to
#        DIR/<layer>.<first module>.f64 and DIR/index.json ({"<layer>.<module>": file}), so that another GPTQ can be
#        solved on exactly these Hessians (bench/gptq.mjs's same-Hessian comparison, matrix by matrix)
# Writes the dequantized matrices (float32, layer-major, q,k,v,o,gate,up,down) to --out; prints one JSON object
# {errors: {"<layer>.<module>": tr((W - Q) H (W - Q)^T)}, seconds, hessianSeconds, gptqSeconds, peakBytes}.
# --evaluate takes another quantization's matrices (same layout) instead of running GPTQ: the same sequential pass
# then gives each of its matrices' Hessian (with its own earlier matrices in place) and Hessian-weighted error.
import argparse
import json
import resource
import sys
import time

import torch
from llama_torch import MODULES, Llama, load_safetensors

parser = argparse.ArgumentParser()
parser.add_argument('model_dir'); parser.add_argument('ids'); parser.add_argument('blocks', type=int); parser.add_argument('seqlen', type=int)
parser.add_argument('bits', type=int); parser.add_argument('group', type=int)
parser.add_argument('--out')
parser.add_argument('--evaluate')
parser.add_argument('--threads', type=int, default=2)
parser.add_argument('--dampening', type=float, default=0.01)
parser.add_argument('--act-order', action='store_true')
parser.add_argument('--batch', type=int, default=8)
parser.add_argument('--layers', type=int, default=0, help='the first N layers only (0: all)')
parser.add_argument('--factor64', action='store_true', help='factorize H in float64 (then U in float32), as layerquant does, instead of the paper code\'s float32')
parser.add_argument('--hessians', help='write each Hessian (float64) to this directory, with index.json')
args = parser.parse_args()
torch.set_num_threads(args.threads)
BLOCK = 128


def grid(cols, maxq):
    """GPTQ's quantizer: min/max of each row with 0 in range, step (max - min) / maxq, integer zero."""
    zero = torch.zeros(cols.shape[0])
    xmin = torch.minimum(cols.min(1).values, zero)
    xmax = torch.maximum(cols.max(1).values, zero)
    empty = (xmax - xmin) < 1e-30
    xmin[empty], xmax[empty] = -1.0, 1.0
    scale = (xmax - xmin) / maxq
    return scale, torch.round(-xmin / scale)


def gptq(W, H64, bits, group, dampening, act_order):
    W = W.clone().float()
    rows, K = W.shape
    maxq = 2 ** bits - 1
    H = H64.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    static = None
    perm = torch.arange(K)
    if act_order:
        static = [grid(W[:, g:g + group], maxq) for g in range(0, K, group)]
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
        W, H = W[:, perm], H[perm][:, perm]
    H = H.double() if args.factor64 else H.float()
    H[range(K), range(K)] += dampening * torch.mean(torch.diag(H))
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).float()
    Q = torch.zeros_like(W)
    scale = zero = None
    for i1 in range(0, K, BLOCK):
        i2 = min(i1 + BLOCK, K)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            if static is not None:
                scale, zero = static[int(perm[col]) // group]
            elif col % group == 0:
                # the group's current weights (this script's configs never start a group inside a batch it overruns)
                assert i == 0 or i + group <= i2 - i1
                scale, zero = grid(torch.cat([W1[:, i:], W[:, i2:]], 1)[:, :group], maxq)
            w = W1[:, i]
            q = scale * (torch.clamp(torch.round(w / scale) + zero, 0, maxq) - zero)
            Q[:, col] = q
            e = (w - q) / U[col, col]
            W1[:, i:] -= e[:, None] @ U[col, col:i2][None, :]
            E1[:, i] = e
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    if act_order:
        Q = Q[:, torch.argsort(perm)]
    return Q


model = Llama(args.model_dir, args.seqlen)
layers = args.layers or model.layers
W = load_safetensors(args.model_dir, lambda k: not k.startswith('model.layers.') or int(k.split('.')[2]) < layers)
T = args.seqlen
ids = json.load(open(args.ids))
if len(ids) < args.blocks * T: sys.exit(f'{args.ids}: {len(ids)} tokens, need {args.blocks * T}')
tokens = torch.tensor(ids[:args.blocks * T]).view(args.blocks, T)
batches = list(torch.split(tokens, args.batch))
t0 = time.perf_counter()
hessian_seconds = gptq_seconds = measuring = 0.0
errors = {}
if args.out and args.evaluate: sys.exit('give --out (run GPTQ) or --evaluate FILE (measure given matrices), not both')
out = open(args.out, 'wb') if args.out else None
given = torch.from_numpy(__import__('numpy').fromfile(args.evaluate, dtype='float32')) if args.evaluate else None
offset = 0
hessian_files = {}
if args.hessians and not args.out: sys.exit('--hessians goes with --out (the Hessians of this run\'s own GPTQ pass)')
with torch.no_grad():
    xs = [W['model.embed_tokens.weight'][b] for b in batches]

    def collect(inputs):
        """H = 2 X^T X / N over every batch's tokens, summed in float64."""
        global hessian_seconds
        t = time.perf_counter()
        rows = [x.reshape(-1, x.shape[-1]).double() for x in inputs]
        total = sum(r.T @ r for r in rows) * (2 / sum(r.shape[0] for r in rows))
        hessian_seconds += time.perf_counter() - t
        return total

    for layer in range(layers):
        p = f'model.layers.{layer}.'
        w = {m: W[p + m + '.weight'] for m in MODULES}
        q = {}

        def quantize(modules, h):
            global gptq_seconds, measuring, offset
            if args.hessians:
                t = time.perf_counter()
                name = f'{layer}.{modules[0]}.f64'
                h.contiguous().numpy().astype('<f8').tofile(f'{args.hessians}/{name}')
                for m in modules: hessian_files[f'{layer}.{m}'] = name
                measuring += time.perf_counter() - t
            for m in modules:
                t = time.perf_counter()
                if given is not None:
                    q[m] = given[offset:offset + w[m].numel()].view(w[m].shape).clone()
                    offset += w[m].numel()
                else:
                    q[m] = gptq(w[m], h, args.bits, args.group, args.dampening, args.act_order)
                gptq_seconds += time.perf_counter() - t
                t = time.perf_counter()
                d = (w[m].double() - q[m].double())
                errors[f'{layer}.{m}'] = torch.einsum('ri,ij,rj->', d, h, d).item()
                measuring += time.perf_counter() - t

        normed = [model.rms(x, W[p + 'input_layernorm.weight']) for x in xs]
        quantize(MODULES[:3], collect(normed))
        contexts = [model.context(h, q[MODULES[0]], q[MODULES[1]], q[MODULES[2]]) for h in normed]
        quantize(MODULES[3:4], collect(contexts))
        residual = [x + c @ q[MODULES[3]].T for x, c in zip(xs, contexts)]
        normed = [model.rms(r, W[p + 'post_attention_layernorm.weight']) for r in residual]
        quantize(MODULES[4:6], collect(normed))
        activations = [model.activation(g, q[MODULES[4]], q[MODULES[5]]) for g in normed]
        quantize(MODULES[6:], collect(activations))
        xs = [r + a @ q[MODULES[6]].T for r, a in zip(residual, activations)]
        if out:
            for m in MODULES: out.write(q[m].float().contiguous().numpy().tobytes())
if out: out.close()
if args.hessians: json.dump(hessian_files, open(f'{args.hessians}/index.json', 'w'))
# seconds leave out the error measurement (an einsum per matrix) and the Hessians' writing; peak = the process's max RSS (Linux: KiB)
print(json.dumps({'errors': errors, 'seconds': time.perf_counter() - t0 - measuring, 'hessianSeconds': hessian_seconds, 'gptqSeconds': gptq_seconds,
                  'peakBytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
