#!/usr/bin/env python3
"""A held-out model of another shape for the anchors in bench/ (issue 25: "on the shipped model and on a held-out
shape"): a small Qwen2ForCausalLM (tied embeddings, q/k/v biases, GQA 2:1) trained here, on CPU, on brown-calib with
the shipped model's tokenizer. No model hub is reachable, so a real checkpoint of another shape is made rather than
downloaded; it is trained, not random, so its weights carry the structure quantization meets in real models (uneven
channel scales, a peaked next-token distribution). Nothing of it is committed; bench scripts take its directory.

    /usr/bin/python3 bench/heldout_model.py --out /tmp/heldout-qwen2 [--minutes 12] [--threads 1]

Shape: hidden 256, intermediate 768 (rows of 256 and 768: whole k-quant super-blocks, unlike the shipped model's 640),
4 layers, 4 heads of 64, 2 key/value heads, vocabulary 8192 (the shipped tokenizer), BF16 weights, one safetensors
file. Needs Debian's python3-torch and node (it tokenizes through layerquant's own tokenizer, packages built).
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, 'packages', 'fixtures', 'models', 'llama-brown-26m')
CALIB = os.path.join(ROOT, 'packages', 'datasets', 'data', 'brown-calib.txt')


def tokenize(path):
    script = (
        "const { loadTokenizer } = await import('@layerquant/tensor-io');"
        "const { readFileSync } = await import('node:fs');"
        f"const t = await loadTokenizer({json.dumps(SHIPPED)});"
        f"process.stdout.write(JSON.stringify(t.encode(readFileSync({json.dumps(path)}, 'utf8'))));"
    )
    out = subprocess.run(['node', '--input-type=module', '-e', script], cwd=os.path.join(ROOT, 'apps', 'cli'), check=True, capture_output=True, text=True).stdout
    return torch.tensor(json.loads(out), dtype=torch.long)


class Model(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        h, i, d = c['hidden_size'], c['intermediate_size'], c['head_dim']
        nh, nkv = c['num_attention_heads'], c['num_key_value_heads']
        self.embed = torch.nn.Embedding(c['vocab_size'], h)
        self.layers = torch.nn.ModuleList()
        for _ in range(c['num_hidden_layers']):
            layer = torch.nn.Module()
            layer.ln1 = torch.nn.Parameter(torch.ones(h))
            layer.ln2 = torch.nn.Parameter(torch.ones(h))
            layer.q = torch.nn.Linear(h, nh * d, bias=True)
            layer.k = torch.nn.Linear(h, nkv * d, bias=True)
            layer.v = torch.nn.Linear(h, nkv * d, bias=True)
            layer.o = torch.nn.Linear(nh * d, h, bias=False)
            layer.gate = torch.nn.Linear(h, i, bias=False)
            layer.up = torch.nn.Linear(h, i, bias=False)
            layer.down = torch.nn.Linear(i, h, bias=False)
            self.layers.append(layer)
        self.norm = torch.nn.Parameter(torch.ones(h))
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)
        inv = 1.0 / (c['rope_theta'] ** (torch.arange(0, d, 2).float() / d))
        t = torch.arange(c['max_position_embeddings']).float()
        freqs = torch.outer(t, inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.register_buffer('cos', emb.cos(), persistent=False)
        self.register_buffer('sin', emb.sin(), persistent=False)

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c['rms_norm_eps']) * w

    def rope(self, x, n):
        cos, sin = self.cos[:n], self.sin[:n]
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def forward(self, ids):
        b, n = ids.shape
        d, nh, nkv = self.c['head_dim'], self.c['num_attention_heads'], self.c['num_key_value_heads']
        x = self.embed(ids)
        mask = torch.full((n, n), float('-inf')).triu(1)
        for L in self.layers:
            y = self.rms(x, L.ln1)
            q = self.rope(L.q(y).view(b, n, nh, d).transpose(1, 2), n)
            k = self.rope(L.k(y).view(b, n, nkv, d).transpose(1, 2), n)
            v = L.v(y).view(b, n, nkv, d).transpose(1, 2)
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + mask, dim=-1)
            x = x + L.o((att @ v).transpose(1, 2).reshape(b, n, nh * d))
            y = self.rms(x, L.ln2)
            x = x + L.down(torch.nn.functional.silu(L.gate(y)) * L.up(y))
        return self.rms(x, self.norm) @ self.embed.weight.T

    def tensors(self):
        out = {'model.embed_tokens.weight': self.embed.weight, 'model.norm.weight': self.norm}
        for i, L in enumerate(self.layers):
            p = f'model.layers.{i}.'
            out[p + 'input_layernorm.weight'] = L.ln1
            out[p + 'post_attention_layernorm.weight'] = L.ln2
            for name, lin in (('self_attn.q_proj', L.q), ('self_attn.k_proj', L.k), ('self_attn.v_proj', L.v), ('self_attn.o_proj', L.o), ('mlp.gate_proj', L.gate), ('mlp.up_proj', L.up), ('mlp.down_proj', L.down)):
                out[p + name + '.weight'] = lin.weight
                if lin.bias is not None:
                    out[p + name + '.bias'] = lin.bias
        return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
        header[name] = {'dtype': 'BF16', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--minutes', type=float, default=12)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    config = {
        'architectures': ['Qwen2ForCausalLM'], 'model_type': 'qwen2', 'hidden_size': 256, 'intermediate_size': 768,
        'num_hidden_layers': 4, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'head_dim': 64, 'vocab_size': 8192,
        'max_position_embeddings': 512, 'rms_norm_eps': 1e-6, 'rope_theta': 10000.0, 'tie_word_embeddings': True,
        'hidden_act': 'silu', 'bos_token_id': 0, 'eos_token_id': 0, 'torch_dtype': 'bfloat16', 'use_sliding_window': False,
    }
    ids = tokenize(CALIB)
    print(f'{len(ids)} training tokens (brown-calib)', flush=True)
    model = Model(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.95))
    seq, batch = 128, 16
    start, step = time.time(), 0
    budget = args.minutes * 60
    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        for g in opt.param_groups:
            g['lr'] = 3e-3 * min(1.0, step / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        starts = torch.randint(0, len(ids) - seq - 1, (batch,))
        x = torch.stack([ids[s:s + seq] for s in starts])
        y = torch.stack([ids[s + 1:s + seq + 1] for s in starts])
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, config['vocab_size']), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            print(f'step {step} {time.time() - start:.0f}s loss {loss.item():.3f}', flush=True)
        step += 1
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, 'model.safetensors'), model.tensors())
    with open(os.path.join(args.out, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    for name in ('tokenizer.json', 'tokenizer_config.json'):
        shutil.copy(os.path.join(SHIPPED, name), os.path.join(args.out, name))
    print(f'wrote {args.out} after {step} steps, last loss {loss.item():.3f}', flush=True)


if __name__ == '__main__':
    sys.exit(main())
