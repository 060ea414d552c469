"""Stage `train`: the dense population (level 0) → models/init.pt (θ₀) and models/dense.pt.

Stops with exit code 2 and one line, writing nothing, when every dense network failed to learn
(never improved on its start, diverged, or has every task at chance level; pipeline.health): a
dense net that learned nothing gives IMP nothing to prune; and when prune.rewind is past the
epochs some seed's dense training ran (it would rewind to its last epoch instead, an unnamed
protocol; prune.method: finetune continues from trained weights). Partial failures are printed here and
flagged in metrics.json / report.md by the later stages.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from pipeline import config, health, io
from pipeline.engine import (
    TaskLoss,
    TrainResult,
    evaluate,
    load_splits,
    resolve_device,
    train_population,
)
from pipeline.imp import Context, describe_level, level_state, rewind_error
from pipeline.model import Layout, init_population
from pipeline.paths import RunPaths
from pipeline.stages import StageError, cli
from pipeline.trajectory import read_shape


def check_dense(params: config.Params, seeds: list[int], result: TrainResult,
                test_acc: torch.Tensor, tasks, test_y) -> None:
    """Raise StageError when every dense network failed to learn; print the partial failures
    and what params asked for but did not happen (stderr, one line each)."""
    names = [t.name for t in tasks]
    frame = result.health_frame(seeds, test_acc, names)
    reason = health.dense_failure(frame, names, test_y, patience=params.train.patience)
    if reason is not None:
        raise StageError(reason)
    flags = health.network_flags(frame, names, test_y, patience=params.train.patience)
    warn = lambda text: print(f"train: warning: {text}", file=sys.stderr)  # noqa: E731
    for check in health.CHECKS:
        hit = [s for s, f in zip(seeds, flags[check]) if f]
        if hit:
            warn(f"{len(hit)} of {len(seeds)} dense networks: {check.replace('_', ' ')} "
                 f"(seeds {', '.join(map(str, hit))}); {health.ADVICE[check]}")
    refused = rewind_error(params.prune.rewind, seeds, result.epochs.tolist())
    if refused:  # before anything is written: IMP would rewind those seeds elsewhere
        raise StageError(refused)


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """Train the dense population (IMP level 0, docs/science.md §4) under root: θ₀ → models/init.pt,
    the trained nets → models/dense.pt. Raises StageError when every dense network failed."""
    paths = RunPaths(root)
    torch.set_num_threads(params.train.threads)
    resolve_device(params.train.device)  # a missing GPU is a one-line error before any work
    tasks, splits = load_splits(paths.data)
    layout = Layout(read_shape(paths.shape_json))
    seeds = list(params.model.seeds)
    theta0 = init_population(layout, params.model, seeds)
    mask = torch.ones_like(theta0, dtype=torch.bool)
    start = time.perf_counter()
    result = train_population(layout, theta0, mask, splits["train"], splits["val"],
                              TaskLoss(tasks), params.train, shuffle_seeds=seeds,
                              rewind_epoch=params.prune.rewind)
    test_acc = evaluate(layout, result.theta, splits["test"], TaskLoss(tasks), params.train).accuracy
    check_dense(params, seeds, result, test_acc, tasks, splits["test"].y.numpy())
    ctx = Context(layout, tasks, splits, params.train, params.model, seeds,
                  prunable=layout.prunable(params.prune.biases), rewind_theta=theta0)
    init = {"seeds": torch.tensor(seeds, dtype=torch.long), **layout.to_state(theta0)}
    if result.rewind_theta is not None:
        init.update(layout.to_state(result.rewind_theta, prefix="rewind."))
    state = {"seeds": init["seeds"], **level_state(ctx, result.theta, mask, result)}
    io.save_tensors(paths.init_pt, init)
    io.save_tensors(paths.dense_pt, state)
    print(f"train: {len(seeds)} dense networks {list(layout.layers)} in "
          f"{time.perf_counter() - start:.1f}s: {describe_level(state, tasks, int(ctx.prunable.sum()))}")
    return [paths.init_pt, paths.dense_pt]


def main() -> list[Path]:
    return run(config.load())


if __name__ == "__main__":
    cli(main)
