"""Stage `imp`: IMP levels 1…T (+k) → models/imp/level_XX.pt and reports/imp/*.csv.

Finished levels are kept (dvc.yaml declares models/imp `persist: true`) and skipped on a rerun,
as long as models/imp/manifest.json says they were made from the same params and inputs.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline import config, io, trajectory
from pipeline.config import section_dict
from pipeline.engine import load_splits, resolve_device
from pipeline.imp import (
    PACK_MIN_PARAMS,
    Context,
    describe_level,
    fingerprint,
    level_path,
    level_tables,
    load_level,
    make_pool,
    prepare_folder,
    prune_global,
    save_level,
    train_level_parallel,
)
from pipeline.model import Layout
from pipeline.paths import RunPaths
from pipeline.stages import StageError, cli


def inputs(paths: RunPaths) -> list[Path]:
    """The files the levels are made from (their fingerprint guards a resumed run)."""
    return [paths.tasks_json, *(paths.data / f"{s}.npz" for s in ("train", "val", "test")),
            paths.shape_json, paths.init_pt, paths.dense_pt, paths.trajectory_csv]


def write_reports(layout: Layout, prunable: torch.Tensor, tasks, levels: list[int],
                  paths: RunPaths = RunPaths()) -> None:
    import pandas as pd

    frames, curves, controls = [], [], []
    for i, base_level in enumerate(levels):
        state = load_level(level_path(paths.imp, i))
        frame, curve = level_tables(state, layout, prunable, tasks, i, base_level)
        frames.append(frame)
        curves.append(curve)
        for name in ("reinit", "random"):
            if f"{name}.metrics.epochs" in state:
                c, _ = level_tables(state, layout, prunable, tasks, i, base_level, prefix=f"{name}.")
                controls.append(c.assign(control=name))
    table = pd.concat(frames, ignore_index=True)
    io.write_csv(paths.imp_levels_csv, table.sort_values(["seed", "level"], kind="stable"))
    io.write_csv(paths.imp_curves_csv,
                 pd.concat(curves, ignore_index=True).sort_values(["seed", "level", "epoch"],
                                                                  kind="stable"))
    cols = ["control", *table.columns]
    ctrl = (pd.concat(controls, ignore_index=True)[cols] if controls
            else pd.DataFrame(columns=cols))
    io.write_csv(paths.imp_controls_csv, ctrl)


# Keys added after runs were made, with the value that reproduces those runs: left out of the
# fingerprint at that value, so finished levels made before the keys existed are kept.
NEW_DEFAULTS = {("train", "weight_decay"): 0.0, ("prune", "method"): "rewind"}


def _drop_new_defaults(record: dict) -> None:
    for (section, key), default in NEW_DEFAULTS.items():
        if record[section].get(key) == default:
            del record[section][key]


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """IMP levels 1…T (+k) of every seed (SCIENCE.md §4) under root: models/imp/level_XX.pt and
    reports/imp/*.csv. Finished levels with a matching fingerprint are kept (resume)."""
    paths = RunPaths(root)
    folder = paths.imp
    torch.set_num_threads(params.train.threads)
    # CUDA does not survive fork: on a GPU the seeds stay in one process, batched
    workers = params.train.workers if resolve_device(params.train.device).type == "cpu" else 1
    tasks, splits = load_splits(paths.data)
    layout = Layout(tuple(json.loads(paths.shape_json.read_text())["layers"]))
    levels, counts = trajectory.read_csv(paths.trajectory_csv)
    init = torch.load(paths.init_pt, weights_only=True)
    seeds = init["seeds"].tolist()
    if seeds != list(params.model.seeds):
        raise StageError("models/init.pt was trained for other model.seeds; run dvc repro")
    rewind = "rewind." if params.prune.rewind > 0 else ""
    if rewind and "rewind.layers.0.weight" not in init:
        raise StageError("models/init.pt has no rewind weights; rerun the train stage")
    ctx = Context(layout, tasks, splits, params.train, params.model, seeds,
                  prunable=layout.prunable(params.prune.biases),
                  rewind_theta=layout.from_state(init, rewind),
                  reinit_control=params.prune.reinit_control,
                  random_mask_control=params.prune.random_mask_control,
                  method=params.prune.method)
    train_record = section_dict(params.train)
    del train_record["workers"]  # results do not depend on it: keep finished levels
    record = {"model": section_dict(params.model), "train": train_record,
              "prune": section_dict(params.prune)}
    _drop_new_defaults(record)
    prepare_folder(folder, lambda m: print(m, file=sys.stderr),
                   fingerprint(record, inputs(paths), root))
    if not level_path(folder, 0).exists():
        if layout.size >= PACK_MIN_PARAMS:  # the dense level, packed like the others
            save_level(level_path(folder, 0), load_level(paths.dense_pt), layout)
        else:  # a copy, byte for byte
            tmp = folder / ".level_00.pt.tmp"
            shutil.copyfile(paths.dense_pt, tmp)
            tmp.replace(level_path(folder, 0))

    start = time.perf_counter()
    pool = make_pool(workers)
    bar = tqdm(range(1, len(levels)), desc="imp", unit="level", disable=None, leave=False)
    previous = None
    for i in bar:
        path = level_path(folder, i)
        if path.exists():
            previous = None  # load lazily: only the last finished level is needed
            continue
        if previous is None:
            previous = load_level(level_path(folder, i - 1))
        theta = layout.from_state(previous)
        mask = layout.from_state(previous, masks=True)
        new_mask = prune_global(theta, mask, ctx.prunable, counts[i])
        t0 = time.perf_counter()
        state = train_level_parallel(ctx, new_mask, i, pool, workers, params.train.threads,
                                     trained=theta if params.prune.method == "finetune" else None)
        save_level(path, state, layout)
        previous = state
        line = describe_level(state, tasks, counts[i])
        bar.write(f"imp level {i:2d} (base level {levels[i]:+d}): {line} "
                  f"[{time.perf_counter() - t0:.1f}s]")
    bar.close()
    if pool is not None:
        pool.shutdown()
    write_reports(layout, ctx.prunable, tasks, levels, paths)
    print(f"imp: {len(levels) - 1} levels for {len(seeds)} seeds done in "
          f"{time.perf_counter() - start:.1f}s")
    return [folder, paths.imp_levels_csv, paths.imp_curves_csv, paths.imp_controls_csv]


def main() -> None:
    run(config.load())


if __name__ == "__main__":
    cli(main)
