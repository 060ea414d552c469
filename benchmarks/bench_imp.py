"""IMP throughput: a straightforward reference (nn.Linear + torch.nn.utils.prune + DataLoader, one
network at a time) against the batched engine, on the same config and seeds.

Run by hand (not a test):  python benchmarks/bench_imp.py [--levels 3] [--widths 40,100,300]
Prints network-levels per second (one network trained through one IMP level) and the ratios.
Record results in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune
from torch.utils.data import DataLoader, TensorDataset

from pipeline import config, imp
from pipeline.data import build, task_infos
from pipeline.model import Layout, init_population
from pipeline.train import Split, TaskLoss, train_population
from pipeline.trajectory import base_trajectory, param_count


# ---- the reference: what one would write first ------------------------------------------------
def reference_net(layers: list[int], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(layers) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def reference_loss(out, y):
    return sum(F.binary_cross_entropy_with_logits(out[:, j], y[:, j].float())
               for j in range(y.shape[1]))


def reference_train(net, train_ds, val, cfg: config.TrainConfig) -> int:
    loader = DataLoader(train_ds, batch_size=cfg.batch_size or len(train_ds), shuffle=True)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    best, best_state, bad = float("inf"), copy.deepcopy(net.state_dict()), 0
    for epoch in range(1, cfg.max_epochs + 1):
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = reference_loss(net(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb) / len(train_ds)
        with torch.no_grad():
            v = reference_loss(net(val[0]), val[1]).item()
        if v < best - cfg.min_delta:
            best, best_state, bad = v, copy.deepcopy(net.state_dict()), 0
        else:
            bad += 1
        if bad >= cfg.patience or total < cfg.loss_cutoff:
            break
    net.load_state_dict(best_state)
    return epoch


def reference_imp(layers, seed, counts, train_ds, val, cfg) -> int:
    net = reference_net(layers, seed)
    init = copy.deepcopy(net.state_dict())
    epochs = reference_train(net, train_ds, val, cfg)
    params = [(m, name) for m in net if isinstance(m, nn.Linear) for name in ("weight", "bias")]
    for keep in counts[1:]:
        current = sum(int(getattr(m, n).ne(0).sum()) for m, n in params)
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured,
                                  amount=current - keep)
        with torch.no_grad():  # rewind the survivors to θ₀
            for m, n in params:
                getattr(m, n + "_orig").copy_(init[f"{list(net).index(m)}.{n}"])
        epochs += reference_train(net, train_ds, val, cfg)
    return epochs


# ---- the engine ---------------------------------------------------------------------------------
def engine_imp(layers, seeds, counts, splits, tasks, params) -> int:
    layout = Layout(tuple(layers))
    theta0 = init_population(layout, params.model, seeds)
    mask = torch.ones_like(theta0, dtype=torch.bool)
    loss_fn = TaskLoss(tasks)
    res = train_population(layout, theta0, mask, splits["train"], splits["val"], loss_fn,
                           params.train, shuffle_seeds=seeds)
    epochs = int(res.epochs.sum())
    prunable = layout.prunable(True)
    for keep in counts[1:]:
        mask = imp.prune_global(res.theta, mask, prunable, keep)
        res = train_population(layout, theta0 * mask, mask, splits["train"], splits["val"],
                               loss_fn, params.train, shuffle_seeds=seeds)
        epochs += int(res.epochs.sum())
    return epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=3, help="IMP levels after the dense one")
    ap.add_argument("--widths", default="40,100,300,600,1000")
    ap.add_argument("--populations", default="1,8,64")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="mini-batch size for reference and engine (default: full batch)")
    ap.add_argument("--compaction", action="store_true",
                    help="only the train.compact comparison (needs models/imp from dvc repro)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = config.load("params.yaml")
    params = dataclasses.replace(
        params, train=dataclasses.replace(params.train, batch_size=args.batch_size, compact=False))
    arrays, _ = build(params.data)
    tasks = task_infos(params.data.tasks)
    splits = {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
              for s, a in arrays.items()}
    layers = params.base_layers
    counts = base_trajectory(param_count(layers), 20, target=params.prune.target)[:args.levels + 1]
    nl = len(counts)  # network-levels per network
    if args.compaction:
        return compaction_sweep(params, layers, splits, tasks)
    batching = f"mini-batch {args.batch_size}" if args.batch_size else "full batch"
    print(f"config: {layers}, {nl} levels per network (dense + {args.levels}), {batching}, "
          f"{len(splits['train'].x)} training samples, 1 thread")

    if not args.skip_reference:
        train_ds = TensorDataset(splits["train"].x, splits["train"].y)
        val = (splits["val"].x, splits["val"].y)
        t = time.perf_counter()
        ep = reference_imp(layers, 0, counts, train_ds, val, params.train)
        ref = nl / (time.perf_counter() - t)
        print(f"reference K=1: {ref:.3f} network-levels/s ({ep} epochs)")
    for k in [int(v) for v in args.populations.split(",")]:
        seeds = list(range(k))
        t = time.perf_counter()
        ep = engine_imp(layers, seeds, counts, splits, tasks, params)
        rate = k * nl / (time.perf_counter() - t)
        extra = f", {rate / ref:.1f}x reference" if not args.skip_reference else ""
        print(f"engine K={k}: {rate:.3f} network-levels/s ({ep / k:.0f} epochs per net{extra})")
    # width sweep: per-epoch cost of one dense population (50 epochs, no early stop)
    sweep = dataclasses.replace(params.train, max_epochs=50, patience=10**6, loss_cutoff=0.0)
    for width in [int(v) for v in args.widths.split(",")]:
        layout = Layout((layers[0], width, width, layers[-1]))
        for k in (1, 8):
            theta0 = init_population(layout, params.model, list(range(k)))
            t = time.perf_counter()
            train_population(layout, theta0, torch.ones_like(theta0, dtype=torch.bool),
                             splits["train"], splits["val"], TaskLoss(tasks), sweep)
            dt = (time.perf_counter() - t) / 50
            print(f"width {width:5d} K={k}: {dt * 1e3:8.2f} ms per epoch, "
                  f"{dt / k * 1e3:8.2f} ms per network-epoch")

def compaction_sweep(params, layers, splits, tasks, epochs: int = 300, repeats: int = 3) -> None:
    """ms per epoch with train.compact off and on, for the masks of the committed default run
    (models/imp, width 40) and one-shot magnitude masks of θ₀ at the same parameter counts for
    wider nets (cost only: their kept-neuron structure is not IMP's). Fixed epochs, no early
    stop; interleaved, min of `repeats`."""
    from pathlib import Path

    from pipeline.model import compaction
    levels = (1, 5, 10, 14, 17, 20)
    cfg = dataclasses.replace(params.train, max_epochs=epochs, patience=10**6, loss_cutoff=0.0)
    folder = Path("models/imp")
    cases = []
    if (folder / "level_20.pt").exists():
        layout = Layout(tuple(layers))
        theta0 = layout.from_state(torch.load("models/init.pt", weights_only=True))
        for level in levels:
            state = imp.load_level(folder / f"level_{level:02d}.pt")
            cases.append((f"IMP level {level}", layout, theta0,
                          layout.from_state(state, masks=True)))
    counts = base_trajectory(param_count(layers), 20, target=params.prune.target)
    for width in (100, 300):
        layout = Layout((layers[0], width, width, layers[-1]))
        theta0 = init_population(layout, params.model, list(range(8)))
        for level in levels:  # the base net's count at that level, as a fraction of this net
            keep = max(1, round(layout.size * counts[level] / counts[0]))
            mask = imp.prune_global(theta0, torch.ones_like(theta0, dtype=torch.bool),
                                    layout.prunable(True), keep)
            cases.append((f"width {width}, one-shot, {keep} params", layout, theta0, mask))
    print(f"train.compact off vs on, {epochs} full-batch epochs (fewer for wider nets), "
          f"ms per epoch (min of {repeats})")
    for name, layout, theta0, mask in cases:
        n_epochs = max(20, epochs * 40 // layout.layers[1])  # the same work at every width
        c_base = dataclasses.replace(cfg, max_epochs=n_epochs)
        for k in (4, 8):
            m, t0 = mask[:k], theta0[:k] * mask[:k]
            best = {}
            for _ in range(repeats):
                for compact in (False, True):
                    c = dataclasses.replace(c_base, compact=compact)
                    t = time.perf_counter()
                    train_population(layout, t0, m, splits["train"], splits["val"],
                                     TaskLoss(tasks), c)
                    dt = (time.perf_counter() - t) / n_epochs * 1e3
                    best[compact] = min(best.get(compact, dt), dt)
            plan = compaction(layout, m)
            widths = layout.layers[1:-1] if plan is None else plan.layout.layers[1:-1]
            print(f"{name:34s} K={k}: widths {layout.layers[1:-1]} -> {widths}: "
                  f"{best[False]:7.2f} -> {best[True]:7.2f} ms/epoch "
                  f"({best[False] / best[True]:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
