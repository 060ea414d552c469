"""Stage `learned`: was every task learned? → reports/learned.json.

docs/science.md §4: "A dense net whose tasks are not all trained makes 'degradation' meaningless:
check every task's dense accuracy against the same task trained alone." For every task this
trains a net on the task alone with the run's protocol (pipeline.baseline: the same rows, the
task's own input columns and outputs, the same hidden widths, init, seeds, optimizer and
stopping) and compares its test accuracy with the side-by-side dense net's (models/dense.pt,
not trained again). A task is learned when no net failed on it (never improved, diverged, at
chance) and its mean side-by-side test accuracy is within baseline.TOLERANCE (0.02) of alone.

`analysis.check_learned`: `auto` (default) checks a run when the check is cheap — when training
every task alone would take at most AUTO_BUDGET multiply-adds (check_cost: estimated from the
epochs the train stage's dense nets trained, so the decision is the same on every machine) —
`on` always, `off` never. Where it is skipped, the report says so at its top with the command
that checks it (CHECK_COMMAND).

Checked or not, every task's dense accuracy is set beside a linear model's and the chance rate
(linear_reference: a logistic regression on the same training rows, seconds): a report never
analyses nets that are below a linear model or near chance without saying so at its top.

The analyze stage copies the result into metrics.json (`learned`), and the report names every
task that was not learned.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline import baseline, config, health, io
from pipeline import trajectory as traj
from pipeline.engine import STOP_REASONS, load_splits
from pipeline.imp import check_networks, load_level
from pipeline.model import Layout
from pipeline.paths import RunPaths
from pipeline.stages import cli
from pipeline.trajectory import read_shape

# auto's budget, in multiply-adds of forward passes over the training rows (check_cost). Measured
# on a 2-core CPU: the default run's check (6.1e10) took 20 s, MNIST beside Fashion-MNIST on
# [64, 32] with 2 seeds at 1000 images per task (6.4e9) 3 s; at the default's rate the budget is
# about 5 minutes. The thesis' width (784, 392) with 16 seeds on 5000-image tasks (1.4e12 at 16
# epochs per seed) is skipped unless asked for.
AUTO_BUDGET = 1e12
NEAR_CHANCE = 0.05  # a task is near chance when its mean dense accuracy is this close to guessing
CHECK_COMMAND = "dvc exp run -S analysis.check_learned=on"


def check_cost(layers: list[int], tasks, n_train: int, epochs: list[int]) -> float:
    """The check's work in multiply-adds of the forward passes over the training rows: every
    task's net alone (its own inputs and outputs, the run's hidden widths `layers[1:-1]`),
    trained for as many epochs as each seed's dense net was (`epochs`, models/dense.pt)."""
    weights = sum(traj.param_count([len(t.inputs), *layers[1:-1], len(t.outputs)], biases=False)
                  for t in tasks)
    return float(n_train) * float(sum(epochs)) * float(weights)


def skip_reason(params: config.Params, cost: float) -> str | None:
    """Why the check does not run (analysis.check_learned; `cost`: check_cost), or None when it
    runs."""
    mode = params.analysis.check_learned
    if mode == "off":
        return "analysis.check_learned is off"
    if mode == "auto" and cost > AUTO_BUDGET:
        return (f"analysis.check_learned is auto and training each task alone would take about "
                f"{cost:.1e} multiply-adds, above auto's budget of {AUTO_BUDGET:.0e}")
    return None


def linear_reference(tasks, splits: dict, dense_acc: torch.Tensor) -> dict:
    """Every task's dense test accuracy (`dense_acc` [K, T], models/dense.pt) against a linear
    model's on the same rows (baseline.linear_accuracy) and the chance rate (always guessing the
    most frequent test class, health.majority_rates): the tasks whose mean dense accuracy is
    below the linear model's (`below`) or within NEAR_CHANCE of chance (`near_chance`)."""
    majority = health.majority_rates(splits["test"].y.numpy())
    per = {}
    for i, task in enumerate(tasks):
        linear = baseline.linear_accuracy(task, i, splits)
        acc = dense_acc[:, i].double()
        per[task.name] = {"test_acc": linear, "majority_rate": float(majority[i]),
                          "dense_test_acc": float(acc.mean()),
                          "nets_below": int((acc < linear - 1e-6).sum())}  # float32 k/n
    return {"model": baseline.LINEAR_MODEL, "near_chance_margin": NEAR_CHANCE,
            "seeds": int(dense_acc.shape[0]),
            "below": [n for n, r in per.items() if r["dense_test_acc"] < r["test_acc"] - 1e-6],
            "near_chance": [n for n, r in per.items()
                            if r["dense_test_acc"] <= r["majority_rate"] + NEAR_CHANCE],
            "tasks": per}


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
    """Each task of the run under root trained alone, against models/dense.pt, and the linear
    reference → reports/learned.json (`checked` false with a `reason` when
    analysis.check_learned skips the training alone; the linear reference is always there)."""
    paths = RunPaths(root)
    torch.set_num_threads(params.train.threads)
    start = time.perf_counter()
    tasks, splits = load_splits(paths.data)
    layers = list(read_shape(paths.shape_json))
    state = load_level(paths.dense_pt)
    seeds = list(params.model.seeds)
    check_networks(paths.dense_pt, state, Layout(tuple(layers)), seeds)
    cost = check_cost(layers, tasks, len(splits["train"].y), state["metrics.epochs"].tolist())
    always = {"cost": cost, "budget": AUTO_BUDGET,
              "linear": linear_reference(tasks, splits, state["metrics.test_acc_tasks"])}
    weak = always["linear"]["below"] + always["linear"]["near_chance"]
    note = f"; below a linear model or near chance: {', '.join(dict.fromkeys(weak))}" if weak else ""
    reason = skip_reason(params, cost)
    if reason is not None:
        io.write_json(paths.learned_json, {"checked": False, "reason": reason,
                                           "command": CHECK_COMMAND, "all_learned": None,
                                           "not_learned": [], "not_learned_count": 0, **always})
        print(f"learned: not checked ({reason}; check it: {CHECK_COMMAND}){note}")
        return [paths.learned_json]
    side = side_by_side(state, tasks, seeds, splits["test"].y.numpy(), params.train.patience)
    alone = [baseline.train_alone(t, i, splits, layers, params, seeds, log=lambda *_: None)
             for i, t in enumerate(tasks)]
    frame = baseline.comparison_rows(tasks, seeds, side, alone)
    result = result_json(baseline.summary(frame), frame, baseline.TOLERANCE)
    io.write_json(paths.learned_json, {**result, **always})
    print(f"learned: {len(tasks)} tasks alone in {time.perf_counter() - start:.1f}s; "
          f"{result['verdict'].removeprefix('baseline: ')}{note}")
    return [paths.learned_json]


def main() -> list[Path]:
    return run(config.load())


if __name__ == "__main__":
    cli(main)
