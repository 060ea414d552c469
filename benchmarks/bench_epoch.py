"""Where an epoch's time goes, and what a better schedule of the IMP levels could save.

Run by hand (not a test), from the repository root:

    python benchmarks/bench_epoch.py ops            # each matmul of an epoch, both formulations
    python benchmarks/bench_epoch.py table          # ms per full-batch epoch vs K and width
    python benchmarks/bench_epoch.py schedule       # model schedules on models/imp (needs `table`)

`ops`: µs per call of every batched matmul of a full-batch epoch of the default shape family
[4, W, W, 2] (K = 16 networks, 800 rows forward, 600 backward), in the layout the engine uses and
the other way round (benchmarks/README.md, fifth pass).
`table`: ms per epoch of `train_population` on dense networks (no early stop) for K networks of
width W; written to benchmarks/epoch_table.json.
`schedule`: with that table as the cost model and the epoch counts and canonical widths of the
committed run in models/imp, the modelled wall time of the imp stage (two workers) under: the
engine's schedule (a level ends when both workers' slowest network stops; stopped networks
leave the batch), no barrier between the workers, continuous batching (a seed starts its next
level as soon as its own level ends), and an ideal packing (every network-epoch at its own
canonical width and K = 16 efficiency), a lower bound for any schedule.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TABLE = ROOT / "benchmarks" / "epoch_table.json"
KS, WIDTHS = (1, 2, 4, 8, 12, 16, 24, 32), (16, 24, 32, 40)


def best_of(fn, n: int = 200, repeats: int = 3, warmup: int = 10) -> float:
    """µs per call, the best of `repeats` timings of n calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


def ops(width: int, k: int = 16, rows: int = 800, train_rows: int = 600) -> None:
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    x = r(rows, 4).expand(k, rows, 4)
    w1, w2, w3 = r(k, width, 4), r(k, width, width), r(k, 2, width)
    b1, b3 = r(k, 1, width), r(k, 1, 2)
    a1, a2 = r(k, rows, width), r(k, rows, width)
    dz1, dz2, dz3 = r(k, train_rows, width), r(k, train_rows, width), r(k, train_rows, 2)
    xt = x[:, :train_rows]
    cases = [  # (what, as the engine does it, the other way round)
        ("layer 0 forward", lambda: torch.baddbmm(b1, x, w1.transpose(1, 2)), None),
        ("layer 1 forward", lambda: torch.baddbmm(b1, a1, w2.transpose(1, 2)), None),
        ("output layer forward", lambda: torch.baddbmm(b3.transpose(1, 2), w3, a2.transpose(1, 2)),
         lambda: torch.baddbmm(b3, a2, w3.transpose(1, 2))),
        ("output weight grad", lambda: torch.bmm(dz3.transpose(1, 2), a2[:, :train_rows]), None),
        ("output input grad", lambda: torch.bmm(dz3, w3), None),
        ("layer 1 weight grad", lambda: torch.bmm(dz2.transpose(1, 2), a1[:, :train_rows]), None),
        ("layer 1 input grad", lambda: torch.bmm(dz2, w2), None),
        ("layer 0 weight grad", lambda: torch.bmm(xt.transpose(1, 2), dz1),
         lambda: torch.bmm(dz1.transpose(1, 2), xt)),
    ]
    print(f"K = {k}, width {width}: µs per call (engine / other way round)")
    for name, engine, other in cases:
        alt = f"{best_of(other):8.1f}" if other is not None else "       -"
        print(f"  {name:22s} {best_of(engine):8.1f} {alt}")


def table() -> None:
    from pipeline import config
    from pipeline.model import Layout
    from pipeline.stages import tune_malloc
    from pipeline.train import TaskLoss, load_splits, train_population

    tune_malloc()
    params = config.load(ROOT / "params.yaml")
    tasks, splits = load_splits(str(ROOT / "data"))
    cfg = dataclasses.replace(params.train, max_epochs=200, patience=10**9, loss_cutoff=0.0,
                              compact=False)
    out = {}
    for k in KS:
        for width in WIDTHS:
            layout = Layout((4, width, width, 2))
            theta = torch.randn(k, layout.size, generator=torch.Generator().manual_seed(0)) * 0.3
            mask = torch.ones(k, layout.size, dtype=torch.bool)
            best = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                train_population(layout, theta, mask, splits["train"], splits["val"],
                                 TaskLoss(tasks), cfg)
                best = min(best, (time.perf_counter() - t) / cfg.max_epochs * 1e3)
            out[f"{k},{width}"] = best
            print(f"K = {k:2d}, width {width}: {best:.3f} ms / epoch", flush=True)
    TABLE.write_text(json.dumps(out, indent=1), encoding="utf-8")


def schedule(folder: Path, workers: int = 2) -> None:
    from pipeline.imp import load_level
    from pipeline.model import Layout, canonical_width, kept_neurons

    costs = json.loads(TABLE.read_text(encoding="utf-8"))
    grid = np.array([[costs[f"{k},{w}"] for w in WIDTHS] for k in KS])

    def cost(k: int, width: float) -> float:  # ms per epoch, interpolated in K and width
        if k == 0:
            return 0.0
        col = [np.interp(k, KS, grid[:, j]) for j in range(len(WIDTHS))]
        return float(np.interp(min(max(width, WIDTHS[0]), WIDTHS[-1]), WIDTHS, col))

    shape = json.loads((ROOT / "models" / "shape.json").read_text(encoding="utf-8"))
    layout = Layout(tuple(shape["layers"]))
    files = sorted(folder.glob("level_*.pt"))[1:]  # level 0 is the train stage's
    epochs, widths = [], []
    for f in files:
        state = load_level(f)
        kept = torch.stack([kp.sum(1) for kp in
                            kept_neurons(layout, layout.from_state(state, masks=True))], 1)
        epochs.append(state["metrics.epochs"].numpy())
        widths.append(canonical_width(kept).float().mean(1).numpy())  # mean hidden width
    epochs, widths = np.array(epochs), np.array(widths)  # [levels, seeds]
    levels, seeds = epochs.shape
    groups = np.array_split(np.arange(seeds), workers)

    def level_time(ep, wd):  # one worker, one level: networks leave as they stop
        t, prev = 0.0, 0
        for stop in np.unique(ep):
            active = ep > prev
            t += (stop - prev) * cost(int(active.sum()), wd[active].max())
            prev = stop
        return t

    def continuous(g):  # every seed starts its next level as soon as its own level ends
        level, left, t = np.zeros(len(g), int), epochs[0, g].copy(), 0.0
        while (level < levels).any():
            active = level < levels
            wd = max(widths[level[i], g[i]] for i in np.flatnonzero(active))
            step = left[active].min()
            t += step * cost(int(active.sum()), wd)
            left[active] -= step
            for i in np.flatnonzero(active & (left == 0)):
                level[i] += 1
                if level[i] < levels:
                    left[i] = epochs[level[i], g[i]]
        return t

    engine = sum(max(level_time(epochs[lv, g], widths[lv, g]) for g in groups)
                 for lv in range(levels))
    no_barrier = max(sum(level_time(epochs[lv, g], widths[lv, g]) for lv in range(levels))
                     for g in groups)
    cont = max(continuous(g) for g in groups)
    ideal = sum(epochs[lv, s] * cost(16, widths[lv, s]) / 16
                for lv in range(levels) for s in range(seeds)) / workers
    print(f"{folder}: {levels} levels × {seeds} seeds, {int(epochs.sum())} network-epochs")
    for name, t in (("engine (barrier per level)", engine), ("no barrier", no_barrier),
                    ("continuous batching", cont), ("ideal packing (bound)", ideal)):
        print(f"  {name:28s} {t / 1e3:7.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["ops", "table", "schedule"])
    ap.add_argument("--folder", type=Path, default=ROOT / "models" / "imp")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.what == "ops":
        for width in (40, 16):
            ops(width)
    elif args.what == "table":
        table()
    else:
        schedule(args.folder)


if __name__ == "__main__":
    main()
