"""Seconds per epoch vs live density at the thesis' width: the dense path vs the live path.

    python benchmarks/bench_live.py kernels                  # one layer's three products
    python benchmarks/bench_live.py epochs RUN_FOLDER [--levels 0 5 10 15 20] [--epochs 3]

`epochs` reads a run folder made with the issue-18 image params (data/, models/imp/level_XX.pt,
e.g. by `dvc repro` of a copy of the repository) and, for each chosen level, trains seed 0 for
`--epochs` epochs (no early stop) under that level's mask, from θ₀, on the dense batched path
(train.compact, the engine of 0fab11d) and on the live path, interleaved, best of `--repeats`.
One torch thread. Numbers in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_epoch import best_of  # noqa: E402 (a sibling script, importable as a module)


def best_ms(fn) -> float:
    """ms per call: bench_epoch.best_of with 10 calls per timing and one warm-up call."""
    return best_of(fn, n=10, warmup=1) / 1e3


def kernels(rows: int = 128) -> None:
    """ms for forward + input gradient + weight gradient of one layer, dense vs sparse."""
    g = torch.Generator().manual_seed(0)
    for out_f, in_f in ((784, 1568), (392, 784), (128, 512)):
        a_t, dz_t, w = torch.randn(in_f, rows), torch.randn(out_f, rows), torch.randn(out_f, in_f)

        def dense():
            w @ a_t, dz_t @ a_t.T, w.T @ dz_t
        t_dense = best_ms(dense)
        line = [f"{out_f} x {in_f}: dense {t_dense:.2f} ms"]
        for density in (0.3, 0.15, 0.1, 0.05, 0.02, 0.01, 0.003):
            m = torch.rand(out_f, in_f, generator=g) < density
            w_csr, wt_csr = (w * m).to_sparse_csr(), (w * m).T.contiguous().to_sparse_csr()

            def sparse():
                torch.sparse.mm(w_csr, a_t)
                torch.sparse.sampled_addmm(w_csr, dz_t, a_t.T, beta=0.0)
                torch.sparse.mm(wt_csr, dz_t)
            t = best_ms(sparse)
            line.append(f"density {density}: {t:.3f} ms ({t_dense / t:.1f}x; "
                        f"{t * 1e6 / int(m.sum()):.0f} ns per live entry, "
                        f"dense {t_dense * 1e6 / m.numel():.0f} ns per entry)")
        print("\n  ".join(line), flush=True)


def epochs(folder: Path, levels: list[int], n_epochs: int, repeats: int) -> None:
    from pipeline import config
    from pipeline.engine import TaskLoss, load_splits, train_population
    from pipeline.engine.live import plan_network
    from pipeline.imp import level_path, load_level
    from pipeline.model import Layout

    os.chdir(folder)
    params = config.load()
    tasks, splits = load_splits()
    init = torch.load("models/init.pt", weights_only=True)
    levels_found = [lv for lv in levels if level_path(Path("models/imp"), lv).exists()]
    layout = Layout(tuple(json.loads(Path("models/shape.json").read_text(encoding="utf-8"))["layers"]))
    theta0 = layout.from_state(init)[:1]
    cfg = dataclasses.replace(params.train, max_epochs=n_epochs, patience=10 ** 6,
                              loss_cutoff=0.0, min_delta=0.0)
    print(f"{'level':>5} {'live params':>11} {'density':>8} {'dense s/ep':>10} "
          f"{'live s/ep':>9} {'ratio':>6}  live kernels (rows x cols, S = sparse)")
    for lv in levels_found:
        state = load_level(level_path(Path("models/imp"), lv))
        mask = layout.from_state(state, masks=True)[:1]
        live_n = int(mask.sum())
        times = {}
        for _ in range(repeats):
            for engine in ("dense", "live"):
                t = time.perf_counter()
                train_population(layout, theta0, mask, splits["train"], splits["val"],
                                 TaskLoss(tasks), cfg, shuffle_seeds=[0], engine=engine)
                times[engine] = min(times.get(engine, float("inf")),
                                    (time.perf_counter() - t) / n_epochs)
        plan = plan_network(layout, mask[0])
        desc = " ".join(f"{lp.shape[0]}x{lp.shape[1]}{'S' if lp.sparse else ''}"
                        for lp in plan.layers)
        print(f"{lv:5d} {live_n:11d} {live_n / layout.size:8.4f} {times['dense']:10.3f} "
              f"{times['live']:9.3f} {times['dense'] / times['live']:6.1f}  {desc}", flush=True)


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("kernels")
    ep = sub.add_parser("epochs")
    ep.add_argument("folder", type=Path)
    ep.add_argument("--levels", type=int, nargs="+", default=[0, 2, 4, 6, 8, 10, 12, 14, 16, 20])
    ep.add_argument("--epochs", type=int, default=3)
    ep.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.cmd == "kernels":
        kernels()
    else:
        epochs(args.folder.resolve(), args.levels, args.epochs, args.repeats)


if __name__ == "__main__":
    main()
