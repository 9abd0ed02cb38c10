# RTN b4g64 of the linear matrices of the first N layers of a checkpoint, in PyTorch with upstream HQQ's Quantizer
# (optimize=False), exactly as ../shared/anchors/torch_cpu_anchor.py times RTN; matrices read one at a time.
# usage: /usr/bin/python3 bench/rtn_anchor.py MODEL_DIR LAYERS HQQ_SRC_DIR   -> one JSON line
import sys, json, struct, time, types, glob, re
sys.modules['termcolor'] = types.SimpleNamespace(colored=lambda s, *a, **k: s)
sys.path.insert(0, sys.argv[3])
import torch
if not hasattr(torch, 'compile'): torch.compile = lambda *a, **k: (lambda f: f)
torch.set_num_threads(2)
from hqq.core.quantize import Quantizer
model_dir, layers = sys.argv[1], int(sys.argv[2])
pattern = re.compile(r'^model\.layers\.(\d+)\.(self_attn|mlp)\.\w+_proj\.weight$')
seconds, params, count = 0.0, 0, 0
for f in sorted(glob.glob(model_dir + '/*.safetensors')):
    with open(f, 'rb') as fh:
        n = struct.unpack('<Q', fh.read(8))[0]; header = json.loads(fh.read(n))
        for name, info in header.items():
            m = pattern.match(name)
            if name == '__metadata__' or not m or int(m.group(1)) >= layers: continue
            start, end = info['data_offsets']; fh.seek(8 + n + start); raw = bytearray(fh.read(end - start))
            assert info['dtype'] == 'BF16'
            w = torch.frombuffer(raw, dtype=torch.int16).to(torch.int32).bitwise_left_shift(16).view(torch.float32).reshape(info['shape'])
            t = time.perf_counter()
            Quantizer.quantize(w, nbits=4, channel_wise=True, group_size=64, optimize=False, round_zero=False, axis=1, bitpack=False, compute_dtype=torch.float32, device='cpu')
            seconds += time.perf_counter() - t; params += w.numel(); count += 1
print(json.dumps({'rtn_b4g64_s': seconds, 'params': params, 'matrices': count}))
