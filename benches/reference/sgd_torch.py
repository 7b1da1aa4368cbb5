#!/usr/bin/env python3
"""PyTorch reference for `fcollapse train`: the same SGD training loop, timed.

The task and the protocol are those of docs/theory.md §1, §2 and §9 (the
paper's figure-3 shape by default):

- `n_c` concepts of `s_c = n_w / n_c` tokens, sentences of `L` positions, `K`
  distinct latent variables drawn uniformly from `[n_c]^L`; token
  `(alpha, beta)` has index `alpha * s_c + beta`, `beta ~ mu` independently at
  every position (`mu` uniform, or Zipf with exponent 1);
- `n_spl` training sentences and `n_test` test sentences per class;
- network: embedding `W` (`n_w x d`), optional LayerNorm without affine
  parameters (`eps = 1e-5`), the `L` representations concatenated, a linear
  classifier `U` (`K x L d`) without bias;
- initial weights: PyTorch's defaults divided by 1000 (`W` standard normal,
  `U` uniform in `[-1/sqrt(L d), 1/sqrt(L d)]`);
- plain SGD on the mean cross entropy of each mini-batch, mini-batches taken in
  order from a permutation redrawn every epoch; weight decay `lambda_W` on `W`
  and `lambda_U` on `U` (added to the gradient; the embedding's gradient is
  dense, so every row of `W` decays at every step, as in `fcollapse train`).

What is timed: the training steps of every epoch (forward, backward, update),
not the data generation nor the accuracy evaluation. The script prints one JSON
line whose fields match those of `examples/train_timing.rs`: `secs_per_epoch`
(mean over all epochs, the first included), `secs_per_epoch_median`, `gflops`
(three products of `2 B K L d` flops per step), `losses` (the mean batch loss of
every epoch) and, with `--accuracy`, train and test accuracy.

    python3 benches/reference/sgd_torch.py --epochs 5                       # paper shape
    python3 benches/reference/sgd_torch.py --epochs 20 --classes 50 --nspl 100
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nc", type=int, default=3)
    p.add_argument("--nw", type=int, default=1200)
    p.add_argument("--len", type=int, default=15)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--nspl", type=int, default=5)
    p.add_argument("--ntest", type=int, default=5)
    p.add_argument("--zipf", action="store_true", help="Zipf(1) frequencies instead of uniform")
    p.add_argument("--layer-norm", action="store_true", help="LayerNorm with eps = 1e-5")
    p.add_argument("--lambda-w", type=float, default=1e-3)
    p.add_argument("--lambda-u", type=float, default=1e-3)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--accuracy", action="store_true", help="also report train/test accuracy")
    return p.parse_args()


def frequencies(s_c, zipf):
    """`mu_beta`, beta = 1..s_c: uniform, or proportional to 1/beta."""
    if zipf:
        mu = 1.0 / torch.arange(1, s_c + 1, dtype=torch.float64)
    else:
        mu = torch.ones(s_c, dtype=torch.float64)
    return mu / mu.sum()


def distinct_latent(n_c, length, k, gen):
    """`k` distinct rows drawn uniformly from `[n_c]^L` (a repeated row is redrawn)."""
    rows, seen = [], set()
    while len(rows) < k:
        row = tuple(torch.randint(n_c, (length,), generator=gen).tolist())
        if row not in seen:
            seen.add(row)
            rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


def sentences(z, s_c, mu, per_class, gen):
    """`per_class` sentences of every class: token indices `(K per_class) x L` and labels."""
    k, length = z.shape
    beta = torch.multinomial(mu, k * per_class * length, replacement=True, generator=gen)
    tokens = z.repeat_interleave(per_class, dim=0) * s_c + beta.view(k * per_class, length)
    labels = torch.arange(k).repeat_interleave(per_class)
    return tokens, labels


class Net(torch.nn.Module):
    """Scores `h_j(x) = sum_l <u_{j,l}, phi(w_{x_l})>`."""

    def __init__(self, n_w, length, dim, k, layer_norm):
        super().__init__()
        self.emb = torch.nn.Embedding(n_w, dim)
        self.norm = (
            torch.nn.LayerNorm(dim, eps=1e-5, elementwise_affine=False)
            if layer_norm
            else torch.nn.Identity()
        )
        self.lin = torch.nn.Linear(length * dim, k, bias=False)
        with torch.no_grad():
            self.emb.weight.div_(1000.0)
            self.lin.weight.div_(1000.0)

    def forward(self, x):
        return self.lin(self.norm(self.emb(x)).flatten(1))


def accuracy(net, tokens, labels):
    with torch.no_grad():
        return (net(tokens).argmax(dim=1) == labels).double().mean().item()


def main():
    a = parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    s_c = a.nw // a.nc
    mu = frequencies(s_c, a.zipf)
    z = distinct_latent(a.nc, a.len, a.classes, gen)
    x_train, y_train = sentences(z, s_c, mu, a.nspl, gen)
    x_test, y_test = sentences(z, s_c, mu, a.ntest, gen)
    n_w = a.nc * s_c

    net = Net(n_w, a.len, a.dim, a.classes, a.layer_norm)
    opt = torch.optim.SGD(
        [
            {"params": net.emb.parameters(), "weight_decay": a.lambda_w},
            {"params": net.lin.parameters(), "weight_decay": a.lambda_u},
        ],
        lr=a.lr,
    )

    n = x_train.shape[0]
    secs, losses = [], []
    for _ in range(a.epochs):
        perm = torch.randperm(n, generator=gen)
        start = time.perf_counter()
        total = torch.zeros((), dtype=torch.float64)
        steps = 0
        for i in range(0, n, a.batch):
            idx = perm[i : i + a.batch]
            loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
            steps += 1
        secs.append(time.perf_counter() - start)
        losses.append(total.item() / steps)

    mean = sum(secs) / len(secs)
    flop = 3.0 * 2.0 * n * a.classes * a.len * a.dim
    out = {
        "implementation": "pytorch " + torch.__version__,
        "k": a.classes,
        "n_w": n_w,
        "len": a.len,
        "dim": a.dim,
        "n_spl": a.nspl,
        "batch": a.batch,
        "layer_norm": a.layer_norm,
        "threads": torch.get_num_threads(),
        "epochs": a.epochs,
        "steps_per_epoch": steps,
        "secs_per_epoch": mean,
        "secs_per_epoch_median": statistics.median(secs),
        "gflops": flop / mean / 1e9,
        "loss": losses[-1],
        "losses": losses,
    }
    if a.accuracy:
        out["train_accuracy"] = accuracy(net, x_train, y_train)
        out["test_accuracy"] = accuracy(net, x_test, y_test)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
