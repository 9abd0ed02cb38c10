# Plain-PyTorch pieces of the Llama-family decoder for the bench anchors (Debian's /usr/bin/python3 + python3-torch):
# safetensors reading (BF16/F16/F32, sharded), rotary tables, RMSNorm, the attention and MLP blocks. Written from the
# Hugging Face modeling code, independently of layerquant's ONNX graph.
import glob
import json
import math
import struct

import torch
import torch.nn.functional as F


def load_safetensors(d, keep=None):
    """The tensors of the *.safetensors files of a directory (those whose name `keep` accepts), as float32; reads only those."""
    W = {}
    for f in sorted(glob.glob(d + '/*.safetensors')):
        with open(f, 'rb') as fh:
            n = struct.unpack('<Q', fh.read(8))[0]; h = json.loads(fh.read(n))
            for k, v in h.items():
                if k == '__metadata__' or (keep is not None and not keep(k)): continue
                s, e = v['data_offsets']; fh.seek(8 + n + s); raw = bytearray(fh.read(e - s))
                if v['dtype'] == 'BF16': t = torch.frombuffer(raw, dtype=torch.int16).to(torch.int32).bitwise_left_shift(16).view(torch.float32)
                elif v['dtype'] == 'F16': t = torch.frombuffer(raw, dtype=torch.float16).float()
                else: t = torch.frombuffer(raw, dtype=torch.float32).clone()
                W[k] = t.reshape(v['shape'])
    return W


def hqq_dequantized(W, bits, group, axis, optimize=True):
    """HQQ as upstream mobiusml/hqq: RTN init, then the proximal solver on the zero point only (fp32); optimize=False is RTN."""
    shape = W.shape
    Wg = W.float().reshape(-1, group) if axis == 1 else W.float().reshape(group, -1)
    mn = Wg.min(dim=axis, keepdim=True)[0]; mx = Wg.max(dim=axis, keepdim=True)[0]
    max_v = 2 ** bits - 1
    denom = mx - mn
    scale = max_v / denom
    scale = torch.where(denom.abs() <= 1e-4, torch.ones_like(scale), scale).clamp(max=2e4)
    zero = -mn * scale
    p, beta, best = 0.7, 10.0, float('inf')
    for _ in range(20 if optimize else 0):
        Wq = torch.round(Wg * scale + zero).clamp(0, max_v)
        Wr = (Wq - zero) / scale
        We = Wg - Wr
        We = torch.sign(We) * F.relu(We.abs() - (1.0 / beta) * torch.pow(We.abs(), p - 1))
        zero = torch.mean(Wq - (Wg - We) * scale, dim=axis, keepdim=True)
        err = (Wg - Wr).abs().mean().item()
        if err < best: best = err
        else: break
    Wq = torch.round(Wg * scale + zero).clamp(0, max_v)
    return ((Wq - zero) / scale).reshape(shape)


MODULES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']


class Llama:
    """config.json's shapes and the block functions for sequences of `seqlen` tokens (no biases: Llama layout)."""

    def __init__(self, model_dir, seqlen, dtype=torch.float32):
        cfg = json.load(open(model_dir + '/config.json'))
        self.hidden, self.heads, self.kv_heads = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_key_value_heads']
        self.head_dim = cfg.get('head_dim') or self.hidden // self.heads
        self.layers = cfg['num_hidden_layers']
        self.eps = cfg['rms_norm_eps']
        theta = cfg.get('rope_theta') or cfg['rope_parameters']['rope_theta']
        hd, T = self.head_dim, seqlen
        self.seqlen = T
        inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
        self.cos, self.sin = torch.cat([ang, ang], -1).cos().to(dtype), torch.cat([ang, ang], -1).sin().to(dtype)
        self.mask = torch.ones(T, T, dtype=torch.bool).triu(1)

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def context(self, h, wq, wk, wv):
        """The attention context [B, T, heads * head_dim] (o_proj's input) of normed inputs h."""
        B, T, hd, nh, nkv = h.shape[0], self.seqlen, self.head_dim, self.heads, self.kv_heads
        rot = lambda x: torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        q = (h @ wq.T).view(B, T, nh, hd).transpose(1, 2)
        k = (h @ wk.T).view(B, T, nkv, hd).transpose(1, 2)
        v = (h @ wv.T).view(B, T, nkv, hd).transpose(1, 2)
        q, k = q * self.cos + rot(q) * self.sin, k * self.cos + rot(k) * self.sin
        k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        a = s.masked_fill(self.mask, float('-inf')).softmax(-1) @ v
        return a.transpose(1, 2).reshape(B, T, nh * hd)

    def attention(self, h, wq, wk, wv, wo):
        return self.context(h, wq, wk, wv) @ wo.T

    @staticmethod
    def activation(h, wg, wu):
        """silu(h Wg^T) * (h Wu^T): down_proj's input."""
        return F.silu(h @ wg.T) * (h @ wu.T)

    def mlp(self, h, wg, wu, wd):
        return self.activation(h, wg, wu) @ wd.T
