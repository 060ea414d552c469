"""Speed of the analyze stage's per-level work at the thesis' width (issue 17, item 7).

16 networks of [1568, 784, 392, 20] (two 784-pixel tasks of 10 classes each) × 21 levels of
IMP-like masks: one random weight matrix per network, pixels scaled by an informativeness bump
(central pixels larger, as IMP keeps informative pixels), pruned by global magnitude along the
20-level trajectory down to 600 weights. Per level, exactly what the stage computes:
pipeline.graph.analyze (states, task matrix, complete/effective/output split, coverage, λ, λ_w,
E_×), pipeline.cut.split_distance (minimum cuts d and d_w, issue 27), pipeline.analysis.level_frames
and pipeline.functional.functional_split (C_w and E_× zeroed) on `--rows` test rows;
and what dies during IMP (pipeline.dying.Tracker.level: τ_k, the budget on the dead, frozen
parameters, the cut's composition, the fold and its check on the same rows; the trained values
are θ · mask with 1 % noise per level except for the weights reading the border pixels, which
stay at θ₀: frozen, as constant-zero inputs are); then the run-wide steps of the stage:
check_monotone, lifetimes (+ summary, + the compressed lifetimes.npz), and the dying tables
(episodes, bias survival, frozen deaths, events.csv, written compressed as the stage does) with
their answers (H1–H5, the death prediction). Level files are not read (loading is I/O, not
analysis).

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

from pipeline import dying, dying_answers
from pipeline.analysis import check_monotone, level_frames, lifetime_summary, lifetimes
from pipeline.config import TrainConfig
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


def trained_values(theta: torch.Tensor, mask: torch.Tensor, frozen: torch.Tensor, level: int
                   ) -> torch.Tensor:
    """θ · mask with 1 % multiplicative noise (drawn per level), except the `frozen` [P] entries,
    which keep θ bit for bit (a frozen parameter keeps its start value, θ₀ when rewinding)."""
    g = torch.Generator().manual_seed(1000 + level)
    noise = 1 + 0.01 * torch.randn(theta.shape, generator=g)
    return theta * mask * torch.where(frozen, torch.ones_like(noise), noise)


def border_weights(layout: Layout) -> torch.Tensor:
    """[P] bool: the first layer's weights reading a pixel far from the centre (the bump of
    synthetic_run below 0.005), the stand-in for MNIST's constant border pixels."""
    side = torch.linspace(-1, 1, 28)
    bump = torch.exp(-(side[:, None] ** 2 + side[None, :] ** 2) / 0.3).reshape(-1)
    out = torch.zeros(layout.size, dtype=torch.bool)
    w, b, _ = layout.offsets[0]
    out[w:b] = (torch.cat([bump, bump]) < 0.005).expand(layout.layers[1], -1).reshape(-1)
    return out


def dying_run_wide(tracker: dying.Tracker, levels, seeds: list[int]) -> None:
    """The stage's run-wide dying work: tables, events.csv, the compressed frozen deaths and
    the answers that need no accuracy table."""
    import pandas as pd

    tables, without = tracker.tables()
    with tempfile.TemporaryDirectory() as tmp:
        dying.comatose_events(tables["episodes"]).to_csv(Path(tmp) / "events.csv", encoding="utf-8")
        tables["episodes"].to_csv(Path(tmp) / "episodes.csv", encoding="utf-8")
        tables["bias_survival"].to_csv(Path(tmp) / "bias_survival.csv", encoding="utf-8")
        dying.write_csv_gz(Path(tmp) / "frozen_deaths.csv.gz", tables["frozen_deaths"])
    frame = pd.concat(levels, ignore_index=True)
    episodes = tables["episodes"]
    dying_answers.h1_zombie_lifetime_vs_bias(episodes, seeds)
    dying_answers.h2_negative_biases_pruned_early(tables["bias_survival"])
    dying_answers.h3_comatose_peak(frame, episodes, int(frame["level"].max()))
    dying_answers.h4_zombies_at_high_sparsity(frame, None)
    dying_answers.h5_comatose_bias_before_detach(episodes, frame, False)
    dying_answers.death_predicted(tables["frozen_deaths"], True, "rewind", 0.0)
    print(f"dying tables: {len(episodes)} episodes, {len(tables['frozen_deaths'])} frozen "
          f"parameters followed, {int(without.sum())} zombies without bias")


class Stopwatch:
    """Wall and CPU seconds per bucket. CPU = this process + its finished children (the cut
    workers of a level's pool are joined before the level ends), so a machine shared with other
    jobs inflates the wall times but not the CPU times."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        t = os.times()
        return time.perf_counter(), t.user + t.system + t.children_user + t.children_system

    def skip(self) -> None:
        """Start the next bucket here (what ran since the last lap is not counted)."""
        self._last = self._now()

    def lap(self, bucket: str) -> float:
        now = self._now()
        wall = now[0] - self._last[0]
        self.wall[bucket] = self.wall.get(bucket, 0.0) + wall
        self.cpu[bucket] = self.cpu.get(bucket, 0.0) + now[1] - self._last[1]
        self._last = now
        return wall

    def report(self) -> str:
        return ", ".join(f"{k} {self.wall[k]:.1f}s ({self.cpu[k]:.1f}s CPU)" for k in self.wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", type=int, default=16)
    ap.add_argument("--levels", type=int, default=20)
    ap.add_argument("--target", type=int, default=600)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="processes for the minimum cuts "
                    "(train.workers in the stage)")
    ap.add_argument("--no-dying", action="store_true", help="leave out what dies during IMP "
                    "(pipeline.dying): the stage's work before issue 32")
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
    states, frames = [], []
    border = border_weights(layout)
    tracker = dying.Tracker(dying.RunInfo(layout, prunable, theta, theta, "rewind", TrainConfig(),
                                          6000, x, seeds))
    watch = Stopwatch()
    for level, mask in enumerate(masks):
        th = trained_values(theta, mask, border, level)
        watch.skip()
        res = analyze(layout, mask, th, tasks)
        t_analyze = watch.lap("analyze")
        dist = split_distance(layout, res.state, th, tasks, args.workers)
        t_distance = watch.lap("distance")
        func = functional_split(layout, mask, th, res.cross, dist.cut_w, tasks, x, y, 0.01,
                                res.live)
        t_functional = watch.lap("functional")
        frame = level_frames(layout, res, mask, th, prunable, tasks, seeds, level,
                             functional=func, distance=dist)["levels"]
        t_tables = watch.lap("tables")
        if not args.no_dying:
            frame = frame.assign(**tracker.level(level, "", {}, mask, th, res, dist.cut_w))
        frames.append(frame)
        t_dying = watch.lap("dying")
        states.append(res.state)
        print(f"level {level:2d}: {int(mask[:, ~layout.is_bias()].sum(1)[0]):8d} weights, "
              f"E_× in {int(res.cross.any(1).sum())}/{args.nets} nets, "
              f"split complete {int(res.split_complete.sum())} effective "
              f"{int(res.split_effective.sum())} functional {int(func.split.sum())}, "
              f"coverage {float(res.coverage.mean()):.2f}, "
              f"λ {float(res.leakage.nanmedian()):.3g}, d median {float(dist.d.median()):.0f} "
              f"(d_w share {float(dist.share_w.median()):.3f}), "
              f"analyze {t_analyze:.2f}s distance {t_distance:.2f}s functional {t_functional:.2f}s "
              f"tables {t_tables:.2f}s dying {t_dying:.2f}s")
    watch.skip()
    check_monotone(states, masks)
    life = lifetimes(states)
    lifetime_summary(life, layout, seeds)
    with tempfile.TemporaryDirectory() as tmp:
        np.savez_compressed(Path(tmp) / "lifetimes.npz", lifetimes=life.numpy())
    watch.lap("run-wide steps")
    if not args.no_dying:
        dying_run_wide(tracker, frames, seeds)
    watch.lap("dying run-wide")
    wall, cpu = sum(watch.wall.values()), sum(watch.cpu.values())
    print(f"load average {os.getloadavg()}")
    print(f"total {wall:.1f}s ({cpu:.1f}s CPU) for {len(masks)} levels × {args.nets} nets "
          f"({args.threads} threads{', without dying' if args.no_dying else ''}): {watch.report()}")


if __name__ == "__main__":
    main()
