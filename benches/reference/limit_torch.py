#!/usr/bin/env python3
"""PyTorch reference for the exact limit risk and its gradient, timed.

Computes the large-sample limit risk of docs/theory.md §2 on the full latent
set `Z = [n_c]^L` (`K = n_c^L` classes, in lexicographic order, position `L-1`
varying fastest, as in `fcollapse`):

    R(W, U) = (1/K) sum_k sum_beta mu_{beta_1} .. mu_{beta_L} CE(h(x(z_k, beta)), k)
              + (lambda_W/2) ||W||^2 + (lambda_U/2) ||U||^2,

    h_j(x) = sum_l <u_{j,l}, phi(w_{x_l})>,   x_l = z_{k,l} s_c + beta_l,

by brute force: for every class, every one of the `s_c^L` token choices is
scored against all `K` classes (one batched matrix product, `logsumexp`), in
float64; the gradient comes from autograd (`backward()`). It shares no code
with `src/limit/` (which walks the choices in Gray-code order with `O(K)`
updates), so it is an independent check as well as a baseline.

Timing: the median of `--reps` evaluations of risk + gradient after one
warm-up, on standard normal weights, `lambda_W = lambda_U = 0.01`, like
`examples/limit_timing.rs`. One JSON line is printed.

`--check FILE [FILE ...]` evaluates instead the weights written by
`limit_timing --dump FILE` and prints the relative difference of the risks
and the largest gradient difference relative to the largest gradient entry.
When the file holds a dense Hessian (`limit_timing --dump FILE --hessian`),
the reference Hessian is `torch.func.hessian` of the same risk over the flat
parameters `[W ; U]` (forward over reverse autodiff), and the largest entry
difference relative to the largest reference entry is printed too.

    python3 benches/reference/limit_torch.py --nc 3 --sc 2 --len 6 --dim 4 --reps 3
    python3 benches/reference/limit_torch.py --sc 3 --len 5 --layer-norm --zipf
"""

import argparse
import itertools
import json
import statistics
import time

import torch


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nc", type=int, default=3)
    p.add_argument("--sc", type=int, default=3)
    p.add_argument("--len", type=int, default=4)
    p.add_argument("--dim", type=int, default=4)
    p.add_argument("--zipf", action="store_true", help="Zipf(1) frequencies instead of uniform")
    p.add_argument("--layer-norm", action="store_true", help="LayerNorm without affine parameters")
    p.add_argument("--eps", type=float, default=0.0, help="LayerNorm eps (default 0)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--check", nargs="+", metavar="FILE",
                   help="JSON files written by limit_timing --dump (one output line each)")
    return p.parse_args()


def frequencies(s_c, zipf):
    if zipf:
        mu = 1.0 / torch.arange(1, s_c + 1, dtype=torch.float64)
    else:
        mu = torch.ones(s_c, dtype=torch.float64)
    return mu / mu.sum()


class LimitRisk:
    """The exact limit risk of one task; `risk(W, U)` is differentiable."""

    def __init__(self, n_c, s_c, length, dim, mu, layer_norm, eps, lam_w, lam_u):
        self.dim, self.layer_norm, self.eps = dim, layer_norm, eps
        self.lam_w, self.lam_u = lam_w, lam_u
        z = torch.tensor(list(itertools.product(range(n_c), repeat=length)), dtype=torch.long)
        beta = torch.tensor(list(itertools.product(range(s_c), repeat=length)), dtype=torch.long)
        self.k = z.shape[0]
        # tokens[k, c, l]: the token at position l of choice c for class k
        self.tokens = z[:, None, :] * s_c + beta[None, :, :]
        # weight of choice c: prod_l mu_{beta_l}
        self.weight = mu[beta].prod(dim=1)
        # classes per chunk, so that one chunk's score block stays near 2^24 entries
        per_class = beta.shape[0] * self.k
        self.chunk = max(1, (1 << 24) // per_class)

    def phi(self, w):
        if not self.layer_norm:
            return w
        centred = w - w.mean(dim=1, keepdim=True)
        var = (centred * centred).mean(dim=1, keepdim=True)
        return centred / torch.sqrt(var + self.eps)

    def risk(self, w, u):
        feats = self.phi(w)
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, self.k, self.chunk):
            tok = self.tokens[start : start + self.chunk]  # (c, S, L)
            x = feats[tok].flatten(2)  # (c, S, L d)
            scores = x @ u.T  # (c, S, K)
            own = torch.arange(start, start + tok.shape[0])
            ce = torch.logsumexp(scores, dim=2) - scores[torch.arange(tok.shape[0]), :, own]
            total = total + (ce * self.weight).sum()
        return (
            total / self.k
            + 0.5 * self.lam_w * (w * w).sum()
            + 0.5 * self.lam_u * (u * u).sum()
        )

    def risk_grad(self, w, u):
        w = w.detach().requires_grad_(True)
        u = u.detach().requires_grad_(True)
        r = self.risk(w, u)
        r.backward()
        return r.item(), torch.cat([w.grad.flatten(), u.grad.flatten()])


def check(path):
    d = json.load(open(path))
    n_c, s_c, length, dim = d["nc"], d["sc"], d["len"], d["dim"]
    eps = d["eps"]
    f = LimitRisk(
        n_c, s_c, length, dim, torch.tensor(d["mu"], dtype=torch.float64),
        eps is not None, eps or 0.0, d["lambda_w"], d["lambda_u"],
    )
    w = torch.tensor(d["w"], dtype=torch.float64).view(n_c * s_c, dim)
    u = torch.tensor(d["u"], dtype=torch.float64).view(f.k, length * dim)
    r, g = f.risk_grad(w, u)
    theirs = torch.tensor(d["grad"], dtype=torch.float64)
    out = {
        "risk_reference": r,
        "risk_dumped": d["risk"],
        "risk_rel_diff": abs(r - d["risk"]) / abs(r),
        "grad_max_diff_rel": ((g - theirs).abs().max() / g.abs().max()).item(),
    }
    if "hessian" in d:
        n_w = w.numel()
        flat = torch.cat([w.flatten(), u.flatten()])
        h = torch.func.hessian(lambda x: f.risk(x[:n_w].view_as(w), x[n_w:].view_as(u)))(flat)
        ours = torch.tensor(d["hessian"], dtype=torch.float64)
        out["n_params"] = flat.numel()
        out["hessian_max_diff_rel"] = ((h - ours).abs().max() / h.abs().max()).item()
        out["hessian_reference_asymmetry_rel"] = ((h - h.T).abs().max() / h.abs().max()).item()
    print(json.dumps(out))


def main():
    a = parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.check:
        for path in a.check:
            check(path)
        return
    f = LimitRisk(
        a.nc, a.sc, a.len, a.dim, frequencies(a.sc, a.zipf),
        a.layer_norm, a.eps, 0.01, 0.01,
    )
    gen = torch.Generator().manual_seed(a.seed)
    w = torch.randn(a.nc * a.sc, a.dim, generator=gen, dtype=torch.float64)
    u = torch.randn(f.k, a.len * a.dim, generator=gen, dtype=torch.float64)
    times = []
    r = None
    for rep in range(a.reps + 1):
        start = time.perf_counter()
        r, _ = f.risk_grad(w, u)
        if rep > 0:
            times.append(time.perf_counter() - start)
    print(json.dumps({
        "implementation": "pytorch " + torch.__version__,
        "nc": a.nc, "sc": a.sc, "len": a.len, "dim": a.dim, "classes": f.k,
        "token_choices_per_class": a.sc ** a.len,
        "layer_norm": a.layer_norm, "zipf": a.zipf,
        "threads": torch.get_num_threads(),
        "secs_risk_and_grad_median": statistics.median(times), "risk": r,
    }))


if __name__ == "__main__":
    main()
