"""Has the dense net learned every task? Each task trained alone, same protocol (SCIENCE.md §4).

    python -m pipeline.baseline [--preset studies/images_thesis.yaml] [--seeds 0,1,2,3]
                                [-S train.lr=3e-4 ...] [--tolerance 0.02] [--out baseline.csv]

SCIENCE.md §4: "A dense net whose tasks are not all trained makes 'degradation' meaningless:
check every task's dense accuracy against the same task trained alone." This trains the run's
dense side-by-side net (params.yaml's data, model and train sections, a preset's keys and -S
overrides applied) and, for every task t, a net on task t alone: the same rows of the same
train / val / test splits with only t's input columns and t's outputs (so the same samples, the
same standardisation), the same hidden widths (extended ones included), the same init scheme,
seeds, optimizer, batches and early stopping. Nothing is written to the run's folders.

A task is *learned* when its mean side-by-side test accuracy over the seeds is at most
`tolerance` (default 0.02, two points) below its mean alone accuracy. Training accuracy is
reported beside it: a gap at equal training accuracy is generalisation, not under-training.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from pipeline import config

TOLERANCE = 0.02  # the largest allowed mean gap (alone − side by side), accuracy units


def task_alone(task, index: int, splits: dict) -> tuple[object, dict]:
    """Task number `index` (data.TaskInfo `task`) on its own: its input columns and its label
    column of every split (engine.Split x [N, n_in], y [N, T]) → (the TaskInfo with inputs and
    outputs renumbered from 0, {split: Split x [N, len(task.inputs)], y [N, 1]})."""
    from pipeline.engine import Split

    cols = torch.tensor(task.inputs)
    alone = dataclasses.replace(task, inputs=list(range(len(task.inputs))),
                                outputs=list(range(len(task.outputs))))
    return alone, {s: Split(sp.x[:, cols].contiguous(), sp.y[:, index:index + 1].contiguous())
                   for s, sp in splits.items()}


def train_dense(layers: list[int], tasks: list, splits: dict, params: config.Params,
                seeds: list[int]) -> dict[str, torch.Tensor]:
    """Train the dense nets of `seeds` (engine.train_population with params.train) →
    {"test_acc", "train_acc": [K, T], "epochs", "best_epoch": [K]}."""
    from pipeline.engine import TaskLoss, evaluate, train_population
    from pipeline.model import Layout, init_population

    layout = Layout(tuple(layers))
    theta0 = init_population(layout, params.model, seeds)
    loss_fn = TaskLoss(tasks)
    result = train_population(layout, theta0, torch.ones_like(theta0, dtype=torch.bool),
                              splits["train"], splits["val"], loss_fn, params.train,
                              shuffle_seeds=seeds)
    return {"test_acc": evaluate(layout, result.theta, splits["test"], loss_fn).accuracy,
            "train_acc": evaluate(layout, result.theta, splits["train"], loss_fn).accuracy,
            "epochs": result.epochs, "best_epoch": result.best_epoch}


def compare(params: config.Params, seeds: list[int] | None = None, log=print):
    """Side by side vs alone for every task and seed → pandas.DataFrame with one row per
    (seed, task): side_test_acc, alone_test_acc, gap (alone − side, accuracy units),
    side_train_acc, alone_train_acc, side_epochs, alone_epochs, side_best_epoch,
    alone_best_epoch. Raises data.DataError for unreadable data files."""
    import pandas as pd

    from pipeline import data
    from pipeline.engine import Split

    seeds = list(params.model.seeds if seeds is None else seeds)
    torch.set_num_threads(params.train.threads)
    arrays, meta = data.build(params.data)
    tasks = [data.TaskInfo(**t) for t in meta["tasks"]]
    splits = {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
              for s, a in arrays.items()}
    layers = list(params.trajectory().layers)  # the dense net the train stage trains
    start = time.perf_counter()
    side = train_dense(layers, tasks, splits, params, seeds)
    log(f"baseline: side by side {layers}, {len(seeds)} seeds, {time.perf_counter() - start:.1f}s")
    rows = []
    for i, task in enumerate(tasks):
        alone_task, alone_splits = task_alone(task, i, splits)
        alone_layers = [len(task.inputs), *layers[1:-1], len(task.outputs)]
        start = time.perf_counter()
        alone = train_dense(alone_layers, [alone_task], alone_splits, params, seeds)
        log(f"baseline: {task.name} alone {alone_layers}, {time.perf_counter() - start:.1f}s")
        for k, seed in enumerate(seeds):
            rows.append({"seed": seed, "task": task.name,
                         "side_test_acc": float(side["test_acc"][k, i]),
                         "alone_test_acc": float(alone["test_acc"][k, 0]),
                         "side_train_acc": float(side["train_acc"][k, i]),
                         "alone_train_acc": float(alone["train_acc"][k, 0]),
                         "side_epochs": int(side["epochs"][k]),
                         "alone_epochs": int(alone["epochs"][k]),
                         "side_best_epoch": int(side["best_epoch"][k]),
                         "alone_best_epoch": int(alone["best_epoch"][k])})
    frame = pd.DataFrame(rows)
    frame.insert(4, "gap", frame["alone_test_acc"] - frame["side_test_acc"])
    return frame


def summary(frame, tolerance: float = TOLERANCE):
    """Per task: the means over seeds of compare()'s columns, the largest gap of one seed, and
    `learned` (mean gap ≤ tolerance) → pandas.DataFrame indexed by task, in the data's order."""
    means = frame.drop(columns="seed").groupby("task", sort=False).mean()
    means["max_gap"] = frame.groupby("task", sort=False)["gap"].max()
    means["learned"] = means["gap"] <= tolerance
    return means


def _override(raw: dict, assignment: str) -> None:
    """Apply one `section.key=value` (value read as YAML 1.2, as dvc exp run -S does)."""
    from ruamel.yaml import YAML

    key, sep, text = assignment.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not dot or section not in config.SECTIONS:
        raise config.ConfigError(f"-S {assignment!r}: expected section.key=value with a section "
                                 f"of {', '.join(config.SECTIONS)}")
    raw.setdefault(section, {})[name] = YAML(typ="safe").load(text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.baseline",
                                     description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--preset", help="a studies/*.yaml preset applied to params.yaml")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one params key (repeatable)")
    parser.add_argument("--seeds", help="comma-separated seeds (default: model.seeds)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="largest allowed mean gap per task, accuracy units (default 0.02)")
    parser.add_argument("--out", type=Path, help="write the per-seed rows to this CSV file")
    args = parser.parse_args(argv)
    from pipeline import data
    from pipeline.study import apply_preset

    try:
        raw = (apply_preset(Path(args.params), Path(args.preset)) if args.preset
               else config.read_yaml(args.params))
        for assignment in args.set:
            _override(raw, assignment)
        params = config.parse(raw)
        try:
            seeds = None if args.seeds is None else [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise config.ConfigError(f"--seeds: {args.seeds!r} is not allowed; allowed: "
                                     "comma-separated integers >= 0") from None
        if seeds is not None and (not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds)):
            raise config.ConfigError(f"--seeds: {args.seeds!r} is not allowed; allowed: "
                                     "distinct comma-separated integers >= 0")
        if not 0 <= args.tolerance < 1:
            raise config.ConfigError(f"--tolerance: {args.tolerance} is not allowed; allowed: "
                                     "a number in [0, 1)")
        frame = compare(params, seeds, log=lambda text: print(text, file=sys.stderr))
    except (config.ConfigError, data.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        from pipeline import io
        io.write_text(args.out, frame.to_csv(index=False, float_format="%.6g"))
    table = summary(frame, args.tolerance)
    print(table[["side_test_acc", "alone_test_acc", "gap", "max_gap", "side_train_acc",
                 "alone_train_acc", "side_epochs", "alone_epochs", "learned"]]
          .to_string(float_format=lambda v: f"{v:.4f}"))
    unlearned = list(table.index[~table["learned"]])
    verdict = ("every task is learned" if not unlearned
               else f"not learned: {', '.join(unlearned)} (more than {args.tolerance:g} below alone)")
    print(f"baseline: {verdict} ({len(frame['seed'].unique())} seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
