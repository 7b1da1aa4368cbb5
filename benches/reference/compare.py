#!/usr/bin/env python3
"""Times ours against the PyTorch references, back to back, and prints a table.

    python3 benches/reference/compare.py limit [--rounds 3]
    python3 benches/reference/compare.py sgd [--rounds 3]

Run it from the repository root after
`cargo build --release --example limit_timing --example train_timing`, with a
Python that has torch (the references are `limit_torch.py` and `sgd_torch.py`
beside this file). Every round runs each size on both sides, one program after
the other, so that a change in the machine's load hits both sides alike; the
table gives medians over the rounds and, per size, the smallest ratio of a
single round. Only same-round ratios are meaningful on a shared machine.

`limit`: seconds per exact limit risk + gradient, full latent set, `n_c = 3`,
`d = 4`; the reference on 2 and on 1 torch threads, ours on 2 and 1 rayon
threads; the speed-up compares the best setting of each side.

`sgd`: seconds per training epoch at the paper's shape (`K = 1000`,
`n_spl = 5`, 4 epochs) and a small one (`K = 50`, `n_spl = 100`, 30 epochs),
both sides on `--threads` threads (default 2); the ratio is ours / reference.
From round to round the two sides alternate which goes first; the 1-minute load
average is printed beside every round (stderr) and above the table. `--ours`
names another build of `train_timing` (to compare builds in the same run).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join("target", "release", "examples")

LIMIT_SIZES = [
    # (s_c, L, d, LayerNorm and Zipf)
    (2, 3, 4, False),
    (3, 3, 4, False),
    (3, 4, 4, False),
    (2, 6, 4, False),
    (3, 5, 4, False),
    (4, 4, 4, False),
    (3, 4, 4, True),
    (3, 5, 4, True),
]

SGD_SHAPES = [
    ("paper (`K` 1000, `n_spl` 5)", ["--epochs", "4"]),
    ("small (`K` 50, `n_spl` 100)", ["--epochs", "30", "--classes", "50", "--nspl", "100"]),
]


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def with_env(**kv):
    env = dict(os.environ)
    env.update(kv)
    return env


def limit(rounds, python):
    rows = {s: {"ref2": [], "ref1": [], "ours2": [], "ours1": []} for s in LIMIT_SIZES}
    for r in range(rounds):
        for s in LIMIT_SIZES:
            s_c, length, dim, ln = s
            flags = ["--nc", "3", "--sc", str(s_c), "--len", str(length), "--dim", str(dim)]
            if ln:
                flags += ["--layer-norm", "--zipf"]
            reps = "5" if s_c ** length < 200 and length < 6 else "3"
            ref = [python, os.path.join(HERE, "limit_torch.py"), *flags, "--reps", reps]
            ours = [os.path.join(EXAMPLES, "limit_timing"), *flags, "--reps", "21"]
            key = "secs_risk_and_grad_median"
            rows[s]["ref2"].append(run_json(ref + ["--threads", "2"])[key])
            rows[s]["ref1"].append(run_json(ref + ["--threads", "1"])[key])
            rows[s]["ours2"].append(run_json(ours, with_env(RAYON_NUM_THREADS="2"))[key])
            rows[s]["ours1"].append(run_json(ours, with_env(RAYON_NUM_THREADS="1"))[key])
        print(f"round {r + 1} of {rounds} done", file=sys.stderr)
    print("| size `(s_c, L, d)` | K | `s_c^L` | reference, s (2 thr / 1 thr) "
          "| ours, s (2 thr / 1 thr) | speed-up (best / best) | worst round |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s, t in rows.items():
        s_c, length, dim, ln = s
        med = {k: statistics.median(v) for k, v in t.items()}
        best = min(med["ref2"], med["ref1"]) / min(med["ours2"], med["ours1"])
        worst = min(
            min(t["ref2"][i], t["ref1"][i]) / min(t["ours2"][i], t["ours1"][i])
            for i in range(rounds)
        )
        name = f"({s_c}, {length}, {dim})" + (" LayerNorm, Zipf" if ln else "")
        print(f"| {name} | {3 ** length} | {s_c ** length} "
              f"| {med['ref2']:.3g} / {med['ref1']:.3g} | {med['ours2']:.3g} / {med['ours1']:.3g} "
              f"| **{best:.0f}x** | {worst:.0f}x |")


def sgd(rounds, python, threads, ours_bin):
    rows = {name: {"ref": [], "ours": []} for name, _ in SGD_SHAPES}
    loads = []
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        for name, flags in SGD_SHAPES:
            ref = [python, os.path.join(HERE, "sgd_torch.py"), *flags, "--threads", str(threads)]
            ours = [ours_bin, *flags, "--threads", str(threads)]
            sides = [("ref", ref), ("ours", ours)]
            for side, cmd in sides if r % 2 == 0 else sides[::-1]:
                rows[name][side].append(run_json(cmd)["secs_per_epoch"])
            t = rows[name]
            print(f"round {r + 1}: {name}: reference {t['ref'][-1]:.4g} s, ours {t['ours'][-1]:.4g} s, "
                  f"ratio {t['ours'][-1] / t['ref'][-1]:.3f}", file=sys.stderr)
        print(f"round {r + 1} of {rounds} done, load average {loads[-1]:.1f} at its start",
              file=sys.stderr)
    loads.append(os.getloadavg()[0])
    print(f"1-minute load average over the rounds: {min(loads):.1f}-{max(loads):.1f}")
    print("| shape | reference (s / epoch) | ours (s / epoch) | ours / reference per round | median |")
    print("|---|---:|---:|---|---:|")
    for name, t in rows.items():
        ratios = [o / f for o, f in zip(t["ours"], t["ref"])]
        per_round = ", ".join(f"{x:.3f}" for x in ratios)
        print(f"| {name} | {statistics.median(t['ref']):.3g} | {statistics.median(t['ours']):.3g} "
              f"| {per_round} | **{statistics.median(ratios):.2f}** |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["limit", "sgd"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--python", default=sys.executable, help="Python with torch for the references")
    p.add_argument("--threads", type=int, default=2, help="sgd: threads of both sides")
    p.add_argument("--ours", default=os.path.join(EXAMPLES, "train_timing"),
                   help="sgd: the train_timing binary to time")
    a = p.parse_args()
    if a.what == "limit":
        limit(a.rounds, a.python)
    else:
        sgd(a.rounds, a.python, a.threads, a.ours)


if __name__ == "__main__":
    main()
