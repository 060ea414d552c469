"""Stage `imp`: IMP levels 1…T (+k) → models/imp/level_XX.pt and reports/imp/*.csv.

Finished levels are kept (dvc.yaml declares models/imp `persist: true`) and skipped on a rerun,
as long as models/imp/manifest.json says they were made from the same params, inputs, code (the
stage's import closure) and torch version; otherwise one line says which changed and the stage
starts over. Seeds are checked one by one: seeds added to (or removed from) model.seeds leave
the other seeds' finished levels in place, and the files come out byte for byte as a run of all
the seeds together. Ctrl+C or SIGTERM stops it with one line, exit 130 / 143.
"""
from __future__ import annotations

import dataclasses
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
    check_networks,
    close_pool,
    describe_level,
    drop_bad_levels,
    file_record,
    fingerprint,
    forget_after,
    level_path,
    level_tables,
    load_level,
    make_pool,
    merge_in_order,
    prepare_folder,
    prune_global,
    record_level,
    reusable_rows,
    rewind_error,
    save_level,
    seed_hashes,
    select_seeds,
    train_level_parallel,
    write_manifest,
)
from pipeline.model import Layout
from pipeline.paths import RunPaths
from pipeline.stages import StageError, cli, report_progress


def inputs(paths: RunPaths) -> list[Path]:
    """The files every seed's levels are made from (their fingerprint guards a resumed run).
    models/init.pt and models/dense.pt are checked seed by seed (imp.seed_hashes) instead, so
    that adding seeds keeps the finished ones."""
    return [paths.tasks_json, *(paths.data / f"{s}.npz" for s in ("train", "val", "test")),
            paths.shape_json, paths.trajectory_csv]


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
    """IMP levels 1…T (+k) of every seed (docs/science.md §4) under root: models/imp/level_XX.pt and
    reports/imp/*.csv. Finished levels with a matching fingerprint are kept (resume), per seed.
    Raises StageError (a rewind point past a seed's dense training, inputs of other seeds)."""
    paths = RunPaths(root)
    folder = paths.imp
    torch.set_num_threads(params.train.threads)
    # CUDA does not survive fork: on a GPU the seeds stay in one process, batched
    workers = params.train.workers if resolve_device(params.train.device).type == "cpu" else 1
    tasks, splits = load_splits(paths.data)
    layout = Layout(trajectory.read_shape(paths.shape_json))
    levels, counts = trajectory.read_csv(paths.trajectory_csv)
    seeds = list(params.model.seeds)
    init = io.read_torch(paths.init_pt, required=("seeds",))
    check_networks(paths.init_pt, init, layout, seeds, trained=False)
    dense = load_level(paths.dense_pt)
    check_networks(paths.dense_pt, dense, layout, seeds)
    refused = rewind_error(params.prune.rewind, seeds, dense["metrics.epochs"].tolist())
    if refused:
        raise StageError(refused)
    rewind = "rewind." if params.prune.rewind > 0 else ""
    if rewind and "rewind.layers.0.weight" not in init:
        raise StageError("models/init.pt has no rewind weights; rerun the train stage")
    ctx = Context(layout, tasks, splits, params.train, params.model, seeds,
                  prunable=layout.prunable(params.prune.biases),
                  rewind_theta=layout.from_state(init, rewind),
                  reinit_control=params.prune.reinit_control,
                  random_mask_control=params.prune.random_mask_control,
                  method=params.prune.method)
    warn = lambda line: print(line, file=sys.stderr)  # noqa: E731
    manifest = prepare_folder(folder, warn, fingerprint(run_record(params), inputs(paths), root),
                              seed_hashes(init, dense))
    del init, dense
    # finished levels are reused only as the files recorded: the others are made again (the
    # manifest on disk changes when they are: a stage that fails before leaves it as it was)
    remade = drop_bad_levels(folder, manifest, params.prune.biases, warn)
    report_progress("before level 1 was finished")
    start = time.perf_counter()
    pool = make_pool(workers)
    try:
        run_levels(ctx, folder, manifest, levels, counts, pool, workers, paths, remade)
    except BaseException:
        close_pool(pool, kill=True)  # an interrupt or an error: no worker outlives the stage
        raise
    close_pool(pool)
    write_reports(layout, ctx.prunable, tasks, levels, paths)
    print(f"imp: {len(levels) - 1} levels for {len(seeds)} seeds done in "
          f"{time.perf_counter() - start:.1f}s")
    return [folder, paths.imp_levels_csv, paths.imp_curves_csv, paths.imp_controls_csv]


def run_record(params: config.Params) -> dict:
    """The params a level's bytes depend on, for the fingerprint (seeds are checked one by one,
    train.workers does not change a result)."""
    train_record = section_dict(params.train)
    del train_record["workers"]  # results do not depend on it: keep finished levels
    model_record = section_dict(params.model)
    del model_record["seeds"]
    record = {"model": model_record, "train": train_record, "prune": section_dict(params.prune)}
    _drop_new_defaults(record)
    return record


def run_levels(ctx: Context, folder: Path, manifest: dict, levels: list[int], counts: list[int],
               pool, workers: int, paths: RunPaths, remade: dict[int, str] | None = None) -> None:
    """Make every level file that does not hold all of ctx.seeds yet; seeds a file already holds
    (valid per the manifest) are kept, the others trained from their own previous level.
    `remade` {level: sha256 recorded before}: levels whose file was bad (drop_bad_levels); if
    one comes out with other bytes, the finished levels after it are made again too."""
    seeds, layout = ctx.seeds, ctx.layout
    remade = dict(remade or {})
    def complete(level: int) -> bool:
        # the file holds exactly these seeds' rows, in this order, each made from today's nets
        held = [int(s) for s in manifest["levels"].get(str(level), {})]
        return (held == seeds == reusable_rows(manifest, level)
                and level_path(folder, level).exists())

    def record(level: int, state: dict[str, torch.Tensor]) -> None:
        file = file_record(level_path(folder, level), state, layout, ctx.prunable)
        record_level(manifest, level, seeds, file)
        if remade.pop(level, file["sha256"]) != file["sha256"]:
            later = forget_after(manifest, level)
            if later:
                print(f"imp: level {level} made again differs from the file it replaces; "
                      f"making levels {', '.join(map(str, later))} again", file=sys.stderr)
        write_manifest(folder, manifest)

    if not complete(0):
        dense = load_level(paths.dense_pt)
        if layout.size >= PACK_MIN_PARAMS:  # the dense level, packed like the others
            save_level(level_path(folder, 0), dense, layout)
        else:  # a copy, byte for byte
            io.copy_file(paths.dense_pt, level_path(folder, 0))
        record(0, dense)
    kept_any, last = False, None  # last: the level just written (no reload for the next)
    bar = tqdm(range(1, len(levels)), desc="imp", unit="level", disable=None, leave=False)
    for i in bar:
        path = level_path(folder, i)
        if complete(i):
            report_progress(f"after level {i}")
            last = None  # load lazily: only the last finished level is needed
            continue
        held = [s for s in reusable_rows(manifest, i) if s in seeds] if path.exists() else []
        missing = [s for s in seeds if s not in held]
        parts = [select_seeds(load_level(path), held)] if held else []
        t0 = time.perf_counter()
        if missing:
            before = last if last is not None else load_level(level_path(folder, i - 1))
            previous = select_seeds(before, missing)
            rows = torch.tensor([seeds.index(s) for s in missing])
            sub = dataclasses.replace(ctx, seeds=missing,
                                      rewind_theta=ctx.rewind_theta.index_select(0, rows))
            theta = layout.from_state(previous)
            new_mask = prune_global(theta, layout.from_state(previous, masks=True),
                                    ctx.prunable, counts[i])
            parts.append(train_level_parallel(
                sub, new_mask, i, pool, workers, ctx.train_cfg.threads,
                trained=theta if ctx.method == "finetune" else None))
        state = merge_in_order(parts, seeds)
        save_level(path, state, layout)
        report_progress(f"after level {i}")
        last = state
        record(i, state)
        if held and missing and not kept_any:
            kept_any = True
            print(f"imp: keeping the finished levels of seeds {', '.join(map(str, held))}; "
                  f"training seeds {', '.join(map(str, missing))}", file=sys.stderr)
        if not missing:  # only seeds dropped: nothing trained
            continue
        line = describe_level(state, ctx.tasks, counts[i])
        bar.write(f"imp level {i:2d} (base level {levels[i]:+d}): {line} "
                  f"[{time.perf_counter() - t0:.1f}s]")
    bar.close()
    io.remove_stale(folder)


def main() -> list[Path]:
    return run(config.load())


if __name__ == "__main__":
    cli(main)
