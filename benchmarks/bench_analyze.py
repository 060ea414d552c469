"""Speed of the analyze stage's per-level work at the thesis' width (issue 17, item 7).

16 networks of [1568, 784, 392, 20] (two 784-pixel tasks of 10 classes each) × 21 levels of
IMP-like masks: one random weight matrix per network, pixels scaled by an informativeness bump
(central pixels larger, as IMP keeps informative pixels), pruned by global magnitude along the
20-level trajectory down to 600 weights. Per level, exactly what the stage computes:
pipeline.graph.analyze (states, task matrix, complete/effective/output split, coverage, λ, λ_w,
E_×), pipeline.cut.split_distance (minimum cuts d and d_w, issue 27), pipeline.analysis.level_frames
and pipeline.functional.functional_split (C_w and E_× zeroed) on `--rows` test rows;
then the run-wide steps of the stage: check_monotone, lifetimes (+ summary, + the compressed
lifetimes.npz), comatose_events. Level files are not read (loading is I/O, not analysis).

Run by hand (not a test):  python benchmarks/bench_analyze.py [--threads 2] [--nets 16]
Record results in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.analysis import check_monotone, comatose_events, level_frames, lifetime_summary, lifetimes
from pipeline.cut import split_distance
from pipeline.data import TaskInfo
from pipeline.functional import functional_split
from pipeline.graph import analyze
from pipeline.model import Layout

LAYERS = (1568, 784, 392, 20)


def synthetic_run(k: int, levels: int, target: int, seed: int = 0):
    """θ [K, P] (biases 0.01) and the masks of levels 0…levels: global magnitude pruning of θ,
    weights only, as IMP with weights-only pruning. To make the masks IMP-like (paths survive,
    uninformative pixels die first, tasks drift apart), a weight u → v is
    U(−1, 1)/√fan_in · s_u · s_v, with log-normal neuron importances s (σ = 1.5), pixels scaled
    by a central bump, outputs by 3, and weights between neurons of different tasks (each
    hidden neuron is given a task at random) by 0.05."""
    layout = Layout(LAYERS)
    g = torch.Generator().manual_seed(seed)
    side = torch.linspace(-1, 1, 28)
    bump = torch.exp(-(side[:, None] ** 2 + side[None, :] ** 2) / 0.3).reshape(-1)
    scale = [(torch.cat([bump, bump]) + 0.05).expand(k, -1)]
    owner = [torch.arange(1568).expand(k, -1) // 784]
    for width in LAYERS[1:-1]:
        scale.append(torch.exp(1.5 * torch.randn(k, width, generator=g)))
        owner.append(torch.randint(0, 2, (k, width), generator=g))
    scale.append(torch.full((k, 20), 3.0))
    owner.append(torch.arange(20).expand(k, -1) // 10)
    parts = []
    for i, (n_in, n_out) in enumerate(zip(LAYERS[:-1], LAYERS[1:])):
        w = (torch.rand(k, n_out, n_in, generator=g) * 2 - 1) / n_in ** 0.5
        w = w * scale[i].unsqueeze(1) * scale[i + 1].unsqueeze(2)
        w = torch.where(owner[i].unsqueeze(1) == owner[i + 1].unsqueeze(2), w, 0.05 * w)
        parts += [w.reshape(k, -1), torch.full((k, n_out), 0.01)]
    theta = torch.cat(parts, dim=1)
    is_bias = layout.is_bias()
    p0 = int((~is_bias).sum())
    q = (target / p0) ** (1 / levels)
    counts = [round(p0 * q ** j) for j in range(levels)] + [target]
    mag = theta.abs().masked_fill(is_bias, float("inf"))
    order = mag.argsort(dim=1, descending=True, stable=True)
    masks = []
    for c in counts:
        m = torch.zeros_like(theta, dtype=torch.bool)
        m.scatter_(1, order[:, :c + int(is_bias.sum())], True)
        masks.append(m)
    return layout, theta, masks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", type=int, default=16)
    ap.add_argument("--levels", type=int, default=20)
    ap.add_argument("--target", type=int, default=600)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="processes for the minimum cuts "
                    "(train.workers in the stage)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tasks = [TaskInfo("mnist_0", "mnist", list(range(784)), list(range(10)), 10, "ce"),
             TaskInfo("fashion_mnist_1", "fashion_mnist", list(range(784, 1568)),
                      list(range(10, 20)), 10, "ce")]
    t0 = time.perf_counter()
    layout, theta, masks = synthetic_run(args.nets, args.levels, args.target)
    print(f"synthesised {len(masks)} levels × {args.nets} nets in {time.perf_counter() - t0:.1f}s")
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(size=(args.rows, 1568))).float()
    y = torch.from_numpy(rng.integers(0, 10, size=(args.rows, 2)))
    prunable = layout.prunable(False)
    seeds = list(range(args.nets))
    totals = {"analyze": 0.0, "distance": 0.0, "tables": 0.0, "functional": 0.0}
    states, has_in, has_out, bias_masks = [], [], [], []
    start = time.perf_counter()
    for level, mask in enumerate(masks):
        th = theta * mask
        a = time.perf_counter()
        res = analyze(layout, mask, th, tasks)
        b0 = time.perf_counter()
        dist = split_distance(layout, res.state, th, tasks, args.workers)
        b = time.perf_counter()
        func = functional_split(layout, mask, th, res.cross, dist.cut_w, tasks, x, y, 0.01,
                                res.live)
        c = time.perf_counter()
        level_frames(layout, res, mask, th, prunable, tasks, seeds, level, functional=func,
                     distance=dist)
        d = time.perf_counter()
        states.append(res.state)
        has_in.append(res.has_in[1:-1])
        has_out.append(res.has_out[1:-1])
        bias_masks.append([bm for _, bm in layout.views(mask)[:-1]])
        totals["analyze"] += b0 - a
        totals["distance"] += b - b0
        totals["functional"] += c - b
        totals["tables"] += d - c
        print(f"level {level:2d}: {int(mask[:, ~layout.is_bias()].sum(1)[0]):8d} weights, "
              f"E_× in {int(res.cross.any(1).sum())}/{args.nets} nets, "
              f"split complete {int(res.split_complete.sum())} effective "
              f"{int(res.split_effective.sum())} functional {int(func.split.sum())}, "
              f"coverage {float(res.coverage.mean()):.2f}, "
              f"λ {float(res.leakage.nanmedian()):.3g}, d median {float(dist.d.median()):.0f} "
              f"(d_w share {float(dist.share_w.median()):.3f}), "
              f"analyze {b0 - a:.2f}s distance {b - b0:.2f}s functional {c - b:.2f}s "
              f"tables {d - c:.2f}s")
    a = time.perf_counter()
    check_monotone(states, masks)
    life = lifetimes(states)
    lifetime_summary(life, layout, seeds)
    comatose_events(has_in, has_out, bias_masks, seeds)
    with tempfile.TemporaryDirectory() as tmp:
        np.savez_compressed(Path(tmp) / "lifetimes.npz", lifetimes=life.numpy())
    totals["run-wide steps"] = time.perf_counter() - a
    total = time.perf_counter() - start
    cpu = time.process_time()
    children = os.times().children_user + os.times().children_system
    print(f"CPU time of the process {cpu:.1f}s (+ {children:.1f}s in cut workers); "
          f"load average {os.getloadavg()}")
    print(f"total {total:.1f}s for {len(masks)} levels × {args.nets} nets ({args.threads} threads): "
          + ", ".join(f"{k} {v:.1f}s" for k, v in totals.items()))


if __name__ == "__main__":
    main()
