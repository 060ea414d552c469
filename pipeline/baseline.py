"""Has the dense net learned every task? Each task trained alone, same protocol (docs/science.md §4).

    python -m pipeline.baseline [--preset studies/images_thesis.yaml] [--seeds 0,1,2,3]
                                [-S train.lr=3e-4 ...] [--tolerance 0.02] [--out baseline.csv]

docs/science.md §4: "A dense net whose tasks are not all trained makes 'degradation' meaningless:
check every task's dense accuracy against the same task trained alone." This trains the run's
dense side-by-side net (params.yaml's data, model and train sections, a preset's keys and -S
overrides applied) and, for every task t, a net on task t alone: the same rows of the same
train / val / test splits with only t's input columns and t's outputs (so the same samples, the
same standardisation), the same hidden widths (extended ones included), the same init scheme,
seeds, optimizer, batches and early stopping (and prune.extensions' widths). The study axes
play no part: a preset's top-level sections are the run checked. Nothing is written to the
run's folders.

Every network is also checked as the run's health section checks the dense nets
(pipeline.health): never improved, diverged, or the task's test accuracy not above always
guessing its majority class (at chance). A task is *learned* when no side-by-side net failed on
it, no net alone failed on it (else there is no reference: the protocol learns nothing on the
task), and its mean side-by-side test accuracy over the seeds is at most `tolerance` (default
0.02, two points) below its mean alone accuracy (`near_alone`). Training accuracy is reported
beside it: a gap at equal training accuracy is generalisation, not under-training.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from pipeline import config

TOLERANCE = 0.02  # the largest allowed mean gap (alone − side by side), accuracy units
LINEAR_MAX_ITER = 1000  # lbfgs iterations of the linear reference (linear_accuracy)
LINEAR_MODEL = ("logistic regression on the task's own input columns and training rows "
                "(scikit-learn LogisticRegression: L2, C = 1, lbfgs, at most "
                f"{LINEAR_MAX_ITER} iterations)")
ALONE_INPUTS = ("own", "all")  # --alone-inputs: the input columns a net alone sees
FAILURES = ("never_improved", "diverged", "at_chance")  # pipeline.health checks that fail a net


def task_alone(task, index: int, splits: dict, inputs: str = "own") -> tuple[object, dict]:
    """Task number `index` (data.TaskInfo `task`) on its own: its label column of every split
    and its own input columns (`inputs` "own") or every input column of the side-by-side data
    (`inputs` "all": the other tasks' inputs stay, as noise for this task, and only their outputs
    go) (engine.Split x [N, n_in], y [N, T]) → (the TaskInfo with inputs and outputs renumbered
    from 0, {split: Split x [N, len(task.inputs) or n_in], y [N, 1]})."""
    import torch

    from pipeline.engine import Split

    n_in = next(iter(splits.values())).x.shape[1]
    cols = torch.tensor(task.inputs if inputs == "own" else list(range(n_in)))
    alone = dataclasses.replace(task, inputs=list(range(len(cols))),
                                outputs=list(range(len(task.outputs))))
    return alone, {s: Split(sp.x[:, cols].contiguous(), sp.y[:, index:index + 1].contiguous())
                   for s, sp in splits.items()}


def net_problems(frame, task_names: list[str], test_y, patience: int) -> list[list[list[str]]]:
    """Per network (row of a levels.csv-like frame, pipeline.health) and task, the FAILURES that
    pipeline.health finds on it (network-wide ones repeated for each task): [K][T] lists."""
    from pipeline import health

    flags = health.network_flags(frame, task_names, test_y, patience=patience)
    return [[[c for c in FAILURES if flags.loc[k, f"{c}_{name}" if c == "at_chance" else c]]
             for name in task_names] for k in range(len(frame))]


def train_dense(layers: list[int], tasks: list, splits: dict, params: config.Params,
                seeds: list[int]) -> dict:
    """Train the dense nets of `seeds` (engine.train_population with params.train) →
    {"test_acc", "train_acc": [K, T] tensors, "epochs", "best_epoch": [K] tensors,
    "problems": [K][T] lists of the FAILURES that pipeline.health finds (network-wide ones
    repeated for each task)}."""
    import torch

    from pipeline.engine import TaskLoss, evaluate, train_population
    from pipeline.model import Layout, init_population

    layout = Layout(tuple(layers))
    theta0 = init_population(layout, params.model, seeds)
    loss_fn = TaskLoss(tasks)
    result = train_population(layout, theta0, torch.ones_like(theta0, dtype=torch.bool),
                              splits["train"], splits["val"], loss_fn, params.train,
                              shuffle_seeds=seeds)
    test = evaluate(layout, result.theta, splits["test"], loss_fn)
    names = [t.name for t in tasks]
    frame = result.health_frame(seeds, test.accuracy, names, test_loss=test.loss)
    return {"test_acc": test.accuracy,
            "train_acc": evaluate(layout, result.theta, splits["train"], loss_fn).accuracy,
            "epochs": result.epochs, "best_epoch": result.best_epoch,
            "problems": net_problems(frame, names, splits["test"].y.numpy(),
                                     params.train.patience)}


def train_alone(task, index: int, splits: dict, layers: list[int], params: config.Params,
                seeds: list[int], log=print, inputs: str = "own") -> dict:
    """Task number `index` trained alone (task_alone's columns, the hidden widths of `layers`)
    → train_dense's dict for that one task."""
    alone_task, alone_splits = task_alone(task, index, splits, inputs)
    alone_layers = [len(alone_task.inputs), *layers[1:-1], len(task.outputs)]
    start = time.perf_counter()
    alone = train_dense(alone_layers, [alone_task], alone_splits, params, seeds)
    log(f"baseline: {task.name} alone {alone_layers}, {time.perf_counter() - start:.1f}s")
    return alone


def linear_accuracy(task, index: int, splits: dict) -> float:
    """Test accuracy of a linear model of task number `index` alone (LINEAR_MODEL; the columns
    of task_alone, fitted on the training rows): the floor that a net which learned the task
    beats. A training split with one class predicts that class."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    _, alone = task_alone(task, index, splits)
    x, y = alone["train"].x.numpy(), alone["train"].y[:, 0].numpy()
    test_x, test_y = alone["test"].x.numpy(), alone["test"].y[:, 0].numpy()
    if len(np.unique(y)) < 2:
        return float(np.mean(test_y == y[0]))
    with warnings.catch_warnings():  # not converged in LINEAR_MAX_ITER: still a linear model
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(max_iter=LINEAR_MAX_ITER).fit(x, y)
    return float(model.score(test_x, test_y))


def comparison_rows(tasks: list, seeds: list[int], side: dict, alone: list[dict]):
    """compare()'s frame from train_dense's dict of the side-by-side nets (`side`) and one
    train_alone dict per task (`alone`)."""
    import pandas as pd

    rows = []
    for i, task in enumerate(tasks):
        one = alone[i]
        for k, seed in enumerate(seeds):
            rows.append({"seed": seed, "task": task.name,
                         "side_test_acc": float(side["test_acc"][k, i]),
                         "alone_test_acc": float(one["test_acc"][k, 0]),
                         "side_train_acc": float(side["train_acc"][k, i]),
                         "alone_train_acc": float(one["train_acc"][k, 0]),
                         "side_epochs": int(side["epochs"][k]),
                         "alone_epochs": int(one["epochs"][k]),
                         "side_best_epoch": int(side["best_epoch"][k]),
                         "alone_best_epoch": int(one["best_epoch"][k]),
                         "side_problems": " ".join(side["problems"][k][i]),
                         "alone_problems": " ".join(one["problems"][k][0])})
    frame = pd.DataFrame(rows)
    frame.insert(4, "gap", frame["alone_test_acc"] - frame["side_test_acc"])
    return frame


def compare(params: config.Params, seeds: list[int] | None = None, log=print,
            alone_inputs: str = "own"):
    """Side by side vs alone for every task and seed → pandas.DataFrame with one row per
    (seed, task): side_test_acc, alone_test_acc, gap (alone − side, accuracy units),
    side_train_acc, alone_train_acc, side_epochs, alone_epochs, side_best_epoch,
    alone_best_epoch, side_problems, alone_problems (space-separated FAILURES of that net on
    that task, "" when none). `alone_inputs` "all" gives each net alone every task's input
    columns (task_alone). Raises data.DataError for unreadable data files."""
    import torch  # here, not at the top: bad command-line input is refused without it

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
    alone = [train_alone(task, i, splits, layers, params, seeds, log, alone_inputs)
             for i, task in enumerate(tasks)]
    return comparison_rows(tasks, seeds, side, alone)


def summary(frame, tolerance: float = TOLERANCE):
    """Per task, from compare()'s rows: the means over seeds of the numeric columns, the largest
    gap of one seed (max_gap), the number of seeds whose net failed on the task side by side
    (side_failed) and alone (alone_failed), near_alone (mean gap ≤ tolerance) and learned
    (near_alone and no net failed) → pandas.DataFrame indexed by task, in the data's order."""
    by_task = frame.groupby("task", sort=False)
    numeric = [c for c in frame.columns if c not in ("seed", "task")
               and frame[c].dtype.kind in "fiu"]
    means = by_task[numeric].mean()
    means["max_gap"] = by_task["gap"].max()
    for side in ("side", "alone"):
        failed = frame[f"{side}_problems"].fillna("").astype(str).ne("")
        means[f"{side}_failed"] = failed.groupby(frame["task"], sort=False).sum().astype(int)
    means["near_alone"] = means["gap"] <= tolerance
    means["learned"] = means["near_alone"] & means["side_failed"].eq(0) & \
        means["alone_failed"].eq(0)
    return means


# what the nets alone saw (--alone-inputs), as the summary and verdict lines name it: "own" is
# the learned check's reference and keeps its lines as they were
REFERENCE = {"own": "", "all": " on every task's inputs"}


def verdict(table, tolerance: float, n_seeds: int, alone_inputs: str = "own") -> str:
    """One line for summary()'s table: which tasks are not learned, and why. With alone_inputs
    "all" the reference is each task alone on every task's inputs, which the line says: it is not
    the learned check's reference (the task alone on its own inputs)."""
    ref = REFERENCE[alone_inputs]
    parts = []
    alone_failed = list(table.index[table["alone_failed"] > 0])
    if alone_failed:
        parts.append(f"no reference for {', '.join(alone_failed)} (the net alone failed: "
                     "never improved, diverged or at chance)")
    side_failed = [t for t in table.index[table["side_failed"] > 0] if t not in alone_failed]
    if side_failed:
        parts.append(f"failed side by side: {', '.join(side_failed)} (never improved, "
                     "diverged or at chance)")
    below = [t for t in table.index[~table["near_alone"]]
             if t not in alone_failed and t not in side_failed]
    if below:
        parts.append(f"more than {tolerance:g} below alone{ref}: {', '.join(below)}")
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    if alone_inputs != "own":
        head = f"baseline, against each task alone{ref} (not the learned check's reference: " \
               "--alone-inputs own)"
        if not parts:
            return (f"{head}: every task above chance and within {tolerance:g} of the task "
                    f"alone{ref} ({seeds})")
        return f"{head}: {'; '.join(parts)} ({seeds})"
    if not parts:
        return (f"baseline: every task is learned (above chance and within {tolerance:g} of "
                f"the task alone; {seeds})")
    return f"baseline: not learned: {'; '.join(parts)} ({seeds})"


def _override(raw: dict, assignment: str, source) -> None:
    """Apply one `section.key=value` (value read as YAML 1.2, as dvc exp run -S does) to the
    document read from `source`."""
    key, sep, text = assignment.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not dot or section not in config.SECTIONS:
        raise config.ConfigError(f"-S {assignment!r}: expected section.key=value with a section "
                                 f"of {', '.join(config.SECTIONS)}")
    value = config.parse_yaml(text, f"-S {assignment!r}")
    config.section_to_update(raw, section, source)[name] = value


def _check_out(text: str) -> None:
    """Refuse an --out path that cannot become a plain file before any training (ConfigError):
    a folder, a path ending in '/', or an existing symlink, device or pipe (written atomically
    by renaming over it, these would be replaced, not written to)."""
    bad = lambda why: config.ConfigError(f"--out: {text!r} is not allowed; {why}")  # noqa: E731
    path = Path(text)
    if not text or text.endswith(("/", os.sep)) or path.is_dir():
        raise bad("allowed: a CSV file path, not a folder")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise bad("it exists and is not a plain file (a link, device or pipe); allowed: a "
                  "regular file path (an existing file is replaced)")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise bad(f"{parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise bad(f"the folder {parent} is not writable")


def _seed_list(text: str) -> list[int]:
    """--seeds' comma-separated list → distinct seeds in the range model.seeds allows."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or max(seeds) > config.MAX_SEED or len(set(seeds)) < len(seeds):
        raise config.ConfigError(f"--seeds: {text!r} is not allowed; allowed: distinct "
                                 f"comma-separated integers from 0 to {config.MAX_SEED}")
    return seeds


def main(argv: list[str]) -> int:
    from pipeline import cli

    parser = cli.parser(
        "python -m pipeline.baseline",
        "Train the run's dense side-by-side nets and every task alone with the same "
        "protocol (same rows, the task's own columns, same widths, seeds and "
        "stopping; docs/science.md §4) and print, per task, the test accuracies, the gap "
        "and whether the task was learned. It checks the run the params' data, "
        "model and train sections describe, not the study axes: for one study "
        "configuration, set its values with -S (e.g. -S prune.extensions=3). "
        "Base: --preset is applied to the params file as it is in the working tree "
        "(default params.yaml, uncommitted changes included), the file that "
        "`python -m pipeline.study run PRESET` (dvc exp run studies/dvc.yaml) "
        "and `python -m pipeline.sweep --preset PRESET` apply the same preset to, so "
        "the baseline checks the dense nets that study trains; keys where that file "
        "differs from its committed version and the preset does not set are named "
        "on stderr. Writes nothing unless --out is given.")
    parser.add_argument("--params", default="params.yaml",
                        help="the params file (default: params.yaml)")
    parser.add_argument("--preset", help="a studies/*.yaml preset applied to the params file as "
                                         "it is in the working tree (the study's base too)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one params key, value read as YAML (repeatable)")
    parser.add_argument("--seeds", help="comma-separated seeds (default: model.seeds); "
                                        "write --seeds=… for a list that starts with '-'")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="largest allowed mean gap (alone − side by side) per task, accuracy "
                             "units (default 0.02); a task is learned when its gap is within it "
                             "and no net failed on it (never improved, diverged, at chance)")
    parser.add_argument("--alone-inputs", choices=ALONE_INPUTS, default="own",
                        help="what each net alone sees: its task's own input columns (own, the "
                             "reference of the learned check) or every task's (all: the other "
                             "tasks' inputs kept as noise, their outputs dropped; own − all is "
                             "what the other inputs cost, all − side by side what sharing the "
                             "hidden units costs)")
    parser.add_argument("--out", help="also write the per-seed rows to this CSV file")
    args = parser.parse_args(argv)
    from pipeline import data
    from pipeline.study import apply_preset

    try:
        raw = (apply_preset(Path(args.params), Path(args.preset)) if args.preset
               else config.read_sections(args.params))
        if args.preset:
            from pipeline.study import drift_note
            note = drift_note(Path(args.params), config.read_yaml(args.preset) or {})
            if note:
                print(note, file=sys.stderr)
        for assignment in args.set:
            _override(raw, assignment, args.params)
        params = config.parse(raw)
        seeds = None if args.seeds is None else _seed_list(args.seeds)
        args.tolerance += 0.0  # -0.0 → 0.0
        if not 0 <= args.tolerance < 1:
            raise config.ConfigError(f"--tolerance: {args.tolerance} is not allowed; allowed: "
                                     "a number in [0, 1)")
        if args.out is not None:
            _check_out(args.out)
        frame = compare(params, seeds, log=lambda text: print(text, file=sys.stderr),
                        alone_inputs=args.alone_inputs)
    except (config.ConfigError, data.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = summary(frame, args.tolerance)
    columns = ["side_test_acc", "alone_test_acc", "gap", "max_gap", "side_train_acc",
               "alone_train_acc", "side_epochs", "alone_epochs", "side_failed", "alone_failed",
               "learned"]
    epochs = {c: "{:.1f}".format for c in ("side_epochs", "alone_epochs")}
    ref = REFERENCE[args.alone_inputs]
    print(f"per task: means over seeds{', each task alone' + ref if ref else ''} (max_gap: the "
          "worst seed; *_failed: seeds whose net never improved, diverged or is at chance on the "
          f"task{'; learned: against this reference' if ref else ''})")
    print(table[columns].to_string(float_format="{:.4f}".format, formatters=epochs))
    print(verdict(table, args.tolerance, frame["seed"].nunique(), args.alone_inputs))
    if args.out is not None:
        from pipeline import io
        try:
            io.write_text(Path(args.out), frame.to_csv(index=False, float_format="%.6g"))
        except OSError as exc:
            print(f"error: --out: cannot write {args.out} ({exc.strerror or exc})",
                  file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
