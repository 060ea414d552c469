"""Per IMP level: the live path's training time against the arithmetic bound (issue 33).

    python benchmarks/bench_levels.py RUN_FOLDER [--levels 1 5 10 20] [--epochs 2] [--networks 16]

RUN_FOLDER is a finished run at the thesis' width (data/, models/init.pt, models/shape.json,
models/imp/level_XX.pt, params.yaml: e.g. `dvc repro imp` of studies/mnist_thesis.yaml's params
in a copy of the repository). For every chosen level it takes one worker's share of the stage's
population — the first networks/2 seeds' tickets and their random-mask controls, as
`train.workers: 2` gives each process — and trains it from θ₀ under that level's masks for
1 and 1 + `--epochs` epochs (no early stop; the difference is the steady state per epoch, the rest
the setup: plans, first validation, results), on the params' mini-batches, one torch thread:

- `loop`: every network on its own (the per-network loop, the live path before issue 33:
  engine.live.BLOCK_MAX_LIVE = 0);
- `now`: the live path as it is (small networks together in engine.blockdiag's block).

Printed per level: live weights (median per network), seconds per epoch of each, network-steps
per epoch, the live-weight FLOPs of an epoch — (6 · training rows + 2 · validation rows) ·
unpruned weights per network, the issue's count — and the ratio of each time to the bound:
those FLOPs at this machine's dense matmul throughput, measured here ([784 × 1568] · [1568 ×
512], best of 7).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gemm_gflops() -> float:
    """This core's dense float32 matmul throughput, GFLOP/s (best of 7)."""
    w, a = torch.randn(784, 1568), torch.randn(1568, 512)
    best = float("inf")
    for _ in range(8):
        t = time.perf_counter()
        w @ a
        best = min(best, time.perf_counter() - t)
    return 784 * 1568 * 512 * 2 / best / 1e9


def copy_gbytes() -> float:
    """This machine's memory throughput for streaming data, GB/s (read + write of a 64 MB
    copy, best of 5): what moving activations costs."""
    a, b = torch.empty(16 * 2 ** 20), torch.empty(16 * 2 ** 20)
    best = float("inf")
    for _ in range(6):
        t = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.numel() * 4 / best / 1e9


def activation_bytes(layout, mask, n_train: int, n_val: int) -> float:
    """Bytes of activations an epoch must move at least: per network and layer, its live
    block's inputs and outputs (engine.live.plan_network: kept rows × used columns), read and
    written about three times per training row (forward, weight and input gradients) and once
    per validation row."""
    from pipeline.engine.live import plan_network

    total = 0
    for j in range(mask.shape[0]):
        plan = plan_network(layout, mask[j])
        total += sum(len(lp.rows) + len(lp.cols) for lp in plan.layers)
    return total * (3 * n_train + n_val) * 4


def level_population(layout, state, init, networks: int):
    """(θ_start, masks) of one worker's share: the first networks/2 tickets and their random
    masks (when the run has the control), all starting from θ₀."""
    from pipeline.imp import CONTROLS  # noqa: F401 (the prefixes the level files use)

    half = networks // 2 if "random.layers.0.weight_mask" in state else networks
    theta0 = layout.from_state(init)[:half]
    masks = [layout.from_state(state, masks=True)[:half]]
    if "random.layers.0.weight_mask" in state:
        masks.append(layout.from_state(state, "random.", masks=True)[:half])
    mask = torch.cat(masks)
    return torch.cat([theta0] * len(masks)) * mask, mask


def timed(train, theta, mask, epochs: int, block_max: int | None) -> tuple[float, float]:
    """(seconds per epoch in the steady state, seconds of the rest: plans, first validation,
    results): one training of 1 epoch and one of 1 + `epochs`, the difference per epoch."""
    from pipeline.engine import live

    old = live.BLOCK_MAX_LIVE
    if block_max is not None:
        live.BLOCK_MAX_LIVE = block_max
    try:
        times = []
        for n in (1, 1 + epochs):
            t = time.perf_counter()
            train(theta, mask, n)
            times.append(time.perf_counter() - t)
        per_epoch = (times[1] - times[0]) / epochs
        return per_epoch, times[0] - per_epoch
    finally:
        live.BLOCK_MAX_LIVE = old


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--levels", type=int, nargs="+", default=list(range(1, 21)))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--networks", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--engines", nargs="+", default=["loop", "now"], choices=["loop", "now"])
    args = parser.parse_args()

    from pipeline import config
    from pipeline.engine import TaskLoss, load_splits, train_population
    from pipeline.imp import level_path, load_level
    from pipeline.model import Layout

    os.chdir(args.folder.resolve())
    params = config.load()
    tasks, splits = load_splits()
    init = torch.load("models/init.pt", weights_only=True)
    layout = Layout(tuple(json.loads(Path("models/shape.json").read_text(encoding="utf-8"))["layers"]))
    cfg = dataclasses.replace(params.train, max_epochs=args.epochs, patience=10 ** 6,
                              loss_cutoff=0.0, min_delta=0.0)
    n_train, n_val = splits["train"].x.shape[0], splits["val"].x.shape[0]
    steps = 1 if cfg.batch_size is None else -(-n_train // cfg.batch_size)
    gflops, gbytes = gemm_gflops(), copy_gbytes()
    is_weight = ~layout.is_bias()
    print(f"dense matmul: {gflops:.0f} GFLOP/s, memory copy {gbytes:.1f} GB/s; "
          f"{args.epochs} epochs per level, {steps} steps per epoch, one worker's {args.networks} networks")
    print(f"{'level':>5} {'weights':>9} {'net-steps':>9} {'GFLOP':>7} {'bound s':>8} "
          f"{'act MB':>7} {'act s':>6} " + " ".join(f"{e + ' s':>8} {e + ' ×':>7} {'setup':>6}" for e in args.engines), flush=True)

    def train(theta, mask, epochs):
        train_population(layout, theta, mask, splits["train"], splits["val"], TaskLoss(tasks),
                         dataclasses.replace(cfg, max_epochs=epochs),
                         shuffle_seeds=list(range(theta.shape[0])), engine="live")

    for lv in args.levels:
        path = level_path(Path("models/imp"), lv)
        if not path.exists():
            continue
        theta, mask = level_population(layout, load_level(path), init, args.networks)
        weights = (mask & is_weight).sum(dim=1).double()
        flop = float(weights.sum()) * (6 * n_train + 2 * n_val) / 1e9  # per epoch
        bound = flop / gflops
        act = activation_bytes(layout, mask, n_train, n_val)
        row = [f"{lv:5d} {int(np.median(weights.numpy())):9d} {steps * mask.shape[0]:9d} "
               f"{flop:7.1f} {bound:8.3f} {act / 1e6:7.0f} {act / gbytes / 1e9:6.3f}"]
        best = {}
        for _ in range(args.repeats):  # interleaved, the best of each: the machine is noisy
            for engine in args.engines:
                got = timed(train, theta, mask, args.epochs, 0 if engine == "loop" else None)
                best[engine] = min(best.get(engine, got), got)
        for engine in args.engines:
            per_epoch, rest = best[engine]
            row.append(f"{per_epoch:8.3f} {per_epoch / bound:7.1f} {rest:6.2f}")
        print(" ".join(row), flush=True)


if __name__ == "__main__":
    main()
