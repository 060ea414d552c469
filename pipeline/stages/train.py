"""Stage `train`: the dense population (level 0) → models/init.pt (θ₀) and models/dense.pt."""
from __future__ import annotations

import json
import time

import torch

from pipeline import config, io
from pipeline.imp import Context, describe_level, level_state
from pipeline.model import Layout, init_population
from pipeline.stages import run
from pipeline.train import TaskLoss, load_splits, resolve_device, train_population


def main() -> None:
    params = config.load()
    torch.set_num_threads(params.train.threads)
    resolve_device(params.train.device)  # a missing GPU is a one-line error before any work
    tasks, splits = load_splits()
    layout = Layout(tuple(json.loads(open("models/shape.json").read())["layers"]))
    seeds = list(params.model.seeds)
    theta0 = init_population(layout, params.model, seeds)
    mask = torch.ones_like(theta0, dtype=torch.bool)
    start = time.perf_counter()
    result = train_population(layout, theta0, mask, splits["train"], splits["val"],
                              TaskLoss(tasks), params.train, shuffle_seeds=seeds,
                              rewind_epoch=params.prune.rewind)
    ctx = Context(layout, tasks, splits, params.train, params.model, seeds,
                  prunable=layout.prunable(params.prune.biases), rewind_theta=theta0)
    init = {"seeds": torch.tensor(seeds, dtype=torch.long), **layout.to_state(theta0)}
    if result.rewind_theta is not None:
        init.update(layout.to_state(result.rewind_theta, prefix="rewind."))
    state = {"seeds": init["seeds"], **level_state(ctx, result.theta, mask, result)}
    io.save_tensors("models/init.pt", init)
    io.save_tensors("models/dense.pt", state)
    print(f"train: {len(seeds)} dense networks {list(layout.layers)} in "
          f"{time.perf_counter() - start:.1f}s: {describe_level(state, tasks, int(ctx.prunable.sum()))}")


if __name__ == "__main__":
    run(main)
