# PyTorch oracle of the KL-divergence statistics (llama.cpp's definitions, tools/perplexity/perplexity.cpp), from the
# same logits layerquant compares: float64 throughout, torch's own log_softmax, kl_div, quantile and cov.
# usage: /usr/bin/python3 kld_torch.py BASE_F32 MODEL_F32 TARGETS_I32 VOCAB  -> one JSON object on stdout
import json, math, sys
import numpy as np
import torch

base_path, model_path, targets_path, vocab = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = torch.from_numpy(np.fromfile(base_path, dtype='<f4').astype(np.float64)).reshape(-1, vocab)
model = torch.from_numpy(np.fromfile(model_path, dtype='<f4').astype(np.float64)).reshape(-1, vocab)
targets = torch.from_numpy(np.fromfile(targets_path, dtype='<i4').astype(np.int64))
n = targets.numel()

lp_base = torch.log_softmax(base, dim=-1)
lp = torch.log_softmax(model, dim=-1)
kld = torch.nn.functional.kl_div(lp, lp_base, reduction='none', log_target=True).sum(-1)
nll = -lp.gather(1, targets[:, None])[:, 0]
nll_base = -lp_base.gather(1, targets[:, None])[:, 0]
p_diff = torch.exp(-nll) - torch.exp(-nll_base)
same = (torch.argmax(model, dim=-1) == torch.argmax(base, dim=-1)).double()


def stderr(x):
    # llama.cpp: sqrt((E[x^2] - E[x]^2) / (n - 1)) = unbiased std / sqrt(n)
    return (torch.std(x, unbiased=True) / math.sqrt(n)).item()


cov = (torch.cov(torch.stack([nll, nll_base]), correction=1)[0, 1] / n).item()
ppl, ppl_base = math.exp(nll.mean().item()), math.exp(nll_base.mean().item())
ln_ratio = nll.mean().item() - nll_base.mean().item()
ln_ratio_err = math.sqrt(stderr(nll) ** 2 + stderr(nll_base) ** 2 - 2 * cov)
sq = p_diff ** 2
rms = math.sqrt(sq.mean().item())
p_top = same.mean().item()


def dist(x, fractions):
    return {
        'mean': x.mean().item(), 'error': stderr(x), 'median': torch.quantile(x, 0.5).item(),
        'min': x.min().item(), 'max': x.max().item(),
        'quantiles': {repr(f): torch.quantile(x, f, interpolation='linear').item() for f in fractions},
    }


print(json.dumps({
    'tokens': n,
    'ppl': [ppl, ppl * stderr(nll)],
    'pplBase': [ppl_base, ppl_base * stderr(nll_base)],
    'nllCorrelation': cov / (stderr(nll) * stderr(nll_base)),
    'lnPplRatio': [ln_ratio, ln_ratio_err],
    'pplRatio': [math.exp(ln_ratio), math.exp(ln_ratio) * ln_ratio_err],
    'pplDifference': [ppl - ppl_base, math.sqrt((ppl * stderr(nll)) ** 2 + (ppl_base * stderr(nll_base)) ** 2 - 2 * ppl * ppl_base * cov)],
    'kld': dist(kld, [0.999, 0.99, 0.95, 0.9, 0.1, 0.05, 0.01, 0.001]),
    'deltaP': dist(p_diff, [0.999, 0.99, 0.95, 0.9, 0.75, 0.25, 0.1, 0.05, 0.01, 0.001]),
    'rmsDeltaP': [rms, 0.5 / rms * stderr(sq)],
    'sameTop': [p_top, math.sqrt(p_top * (1 - p_top) / (n - 1))],
}))
