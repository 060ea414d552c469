"""Stage `learned`: was every task learned? → reports/learned.json.

docs/science.md §4: "A dense net whose tasks are not all trained makes 'degradation' meaningless:
check every task's dense accuracy against the same task trained alone." For every task this
trains a net on the task alone with the run's protocol (pipeline.baseline: the same rows, the
task's own input columns and outputs, the same hidden widths, init, seeds, optimizer and
stopping) and compares its test accuracy with the side-by-side dense net's (models/dense.pt,
not trained again). A task is learned when no net failed on it (never improved, diverged, at
chance) and its mean side-by-side test accuracy is within baseline.TOLERANCE (0.02) of alone.

`analysis.check_learned`: `auto` (default) checks runs without an `mnist` or `fashion_mnist`
task (moons, circles and the 8 × 8 digits alone take seconds), `on` always, `off` never. The
analyze stage copies the result into metrics.json (`learned`), and the report names every task
that was not learned.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline import baseline, config, io
from pipeline.engine import STOP_REASONS, load_splits
from pipeline.imp import check_networks, load_level
from pipeline.model import Layout
from pipeline.paths import RunPaths
from pipeline.stages import cli
from pipeline.trajectory import read_shape

COSTLY_KINDS = ("mnist", "fashion_mnist")  # auto skips these: a dense training per task is long


def skip_reason(params: config.Params, tasks) -> str | None:
    """Why the check does not run (analysis.check_learned), or None when it runs."""
    mode = params.analysis.check_learned
    if mode == "off":
        return "analysis.check_learned is off"
    images = [t.name for t in tasks if t.kind in COSTLY_KINDS]
    if mode == "auto" and images:
        return (f"analysis.check_learned is auto and {', '.join(images)} is a 28 × 28 image task "
                "(each task alone is a full dense training; analysis.check_learned: on checks it)")
    return None


def side_by_side(state: dict, tasks, seeds: list[int], test_y, patience: int) -> dict:
    """baseline.train_dense's dict for the dense nets of a level-0 checkpoint (models/dense.pt)."""
    import pandas as pd

    names = [t.name for t in tasks]
    acc = state["metrics.test_acc_tasks"]
    frame = pd.DataFrame({"seed": seeds, "level": 0, "epochs": state["metrics.epochs"].numpy(),
                          "best_epoch": state["metrics.best_epoch"].numpy(),
                          "stop_reason": [STOP_REASONS[c] for c in
                                          state["metrics.stop_code"].tolist()],
                          "test_loss": state["metrics.test_loss"].numpy()})
    for i, name in enumerate(names):
        frame[f"test_acc_{name}"] = acc[:, i].numpy()
    return {"test_acc": acc, "train_acc": state["metrics.train_acc_tasks"],
            "epochs": state["metrics.epochs"], "best_epoch": state["metrics.best_epoch"],
            "problems": baseline.net_problems(frame, names, test_y, patience)}


def result_json(table, frame, tolerance: float) -> dict:
    """reports/learned.json's content from baseline.summary's table and compare's rows."""
    per_task = {name: {"learned": bool(r["learned"]),
                       "dense_test_acc": float(r["side_test_acc"]),
                       "alone_test_acc": float(r["alone_test_acc"]),
                       "gap": float(r["gap"]), "max_gap": float(r["max_gap"]),
                       "side_failed": int(r["side_failed"]),
                       "alone_failed": int(r["alone_failed"])}
                for name, r in table.iterrows()}
    missing = [name for name, r in per_task.items() if not r["learned"]]
    return {"checked": True, "all_learned": not missing, "not_learned": missing,
            "not_learned_count": len(missing), "tolerance": tolerance,
            "verdict": baseline.verdict(table, tolerance, frame["seed"].nunique()),
            "tasks": per_task}


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """Each task of the run under root trained alone, against models/dense.pt →
    reports/learned.json (`checked` false with a `reason` when analysis.check_learned skips)."""
    paths = RunPaths(root)
    tasks, splits = load_splits(paths.data)
    reason = skip_reason(params, tasks)
    if reason is not None:
        io.write_json(paths.learned_json, {"checked": False, "reason": reason,
                                           "all_learned": None, "not_learned": [],
                                           "not_learned_count": 0})
        print(f"learned: not checked ({reason})")
        return [paths.learned_json]
    torch.set_num_threads(params.train.threads)
    start = time.perf_counter()
    layers = list(read_shape(paths.shape_json))
    state = load_level(paths.dense_pt)
    seeds = list(params.model.seeds)
    check_networks(paths.dense_pt, state, Layout(tuple(layers)), seeds)
    side = side_by_side(state, tasks, seeds, splits["test"].y.numpy(), params.train.patience)
    alone = [baseline.train_alone(t, i, splits, layers, params, seeds, log=lambda *_: None)
             for i, t in enumerate(tasks)]
    frame = baseline.comparison_rows(tasks, seeds, side, alone)
    result = result_json(baseline.summary(frame), frame, baseline.TOLERANCE)
    io.write_json(paths.learned_json, result)
    print(f"learned: {len(tasks)} tasks alone in {time.perf_counter() - start:.1f}s; "
          f"{result['verdict'].removeprefix('baseline: ')}")
    return [paths.learned_json]


def main() -> list[Path]:
    return run(config.load())


if __name__ == "__main__":
    cli(main)
