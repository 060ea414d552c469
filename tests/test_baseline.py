"""pipeline.baseline: every task trained alone with the run's protocol (docs/science.md §4)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, tiny_params, write_params

from pipeline import baseline, config, data
from pipeline.engine import Split


def _cli(cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipeline.baseline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def assert_one_line_error(proc, text: str) -> None:
    """Bad input: exit code 2 and one line `error: …` on stderr naming `text`, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("kinds", [["moons", "circles"], ["moons", "moons", "circles"],
                                   ["digits", "moons"]])
def test_task_alone_is_its_own_columns_and_labels(kinds):
    params = config.parse(tiny_params(**{"data.tasks": kinds, "data.n_samples": 200}))
    arrays, meta = data.build(params.data)
    tasks = [data.TaskInfo(**t) for t in meta["tasks"]]
    splits = {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"])) for s, a in arrays.items()}
    for i, task in enumerate(tasks):
        alone, parts = baseline.task_alone(task, i, splits)
        assert alone.inputs == list(range(len(task.inputs)))
        assert alone.outputs == list(range(len(task.outputs)))
        assert (alone.name, alone.kind, alone.loss) == (task.name, task.kind, task.loss)
        for s, a in arrays.items():  # the same rows, only this task's columns and label
            assert np.array_equal(parts[s].x.numpy(), a["x"][:, task.inputs])
            assert np.array_equal(parts[s].y.numpy(), a["y"][:, [i]])


@pytest.mark.parametrize("kinds", [["moons", "circles"], ["moons", "moons", "circles"],
                                   ["digits", "moons"], ["circles"]])
def test_task_alone_with_all_inputs_keeps_every_column_and_only_its_label(kinds):
    """--alone-inputs all: the net alone sees the side-by-side inputs (the other tasks' columns
    as noise) and predicts its own task only; with one task it is the own-columns net."""
    params = config.parse(tiny_params(**{"data.tasks": kinds, "data.n_samples": 200}))
    arrays, meta = data.build(params.data)
    tasks = [data.TaskInfo(**t) for t in meta["tasks"]]
    splits = {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"])) for s, a in arrays.items()}
    for i, task in enumerate(tasks):
        alone, parts = baseline.task_alone(task, i, splits, inputs="all")
        assert alone.inputs == list(range(arrays["train"]["x"].shape[1]))
        assert alone.outputs == list(range(len(task.outputs)))
        for s, a in arrays.items():
            assert np.array_equal(parts[s].x.numpy(), a["x"])
            assert np.array_equal(parts[s].y.numpy(), a["y"][:, [i]])
        own = baseline.task_alone(task, i, splits, inputs="own")[1]
        assert (len(kinds) == 1) == all(torch.equal(own[s].x, parts[s].x) for s in splits)


def test_alone_with_all_inputs_trains_the_wide_input_net():
    """compare(alone_inputs="all"): one net per task on every input column; with one task
    it is the side-by-side net (gap exactly 0), with two it differs from the own-columns one."""
    one = tiny_params(**{"data.tasks": ["circles"], "model.seeds": [3, 4], "plot.draw_seed": None})
    frame = baseline.compare(config.parse(one), log=lambda *_: None, alone_inputs="all")
    assert (frame["gap"] == 0).all()
    two = config.parse(tiny_params(**{"model.seeds": [3, 4], "plot.draw_seed": None}))
    logs = []
    wide = baseline.compare(two, log=logs.append, alone_inputs="all")
    own = baseline.compare(two, log=lambda *_: None)
    assert wide["side_test_acc"].tolist() == own["side_test_acc"].tolist()
    n_in = sum(len(t["inputs"]) for t in data.build(two.data)[1]["tasks"])
    assert any(f"alone [{n_in}, " in line for line in logs), logs
    assert wide["alone_test_acc"].tolist() != own["alone_test_acc"].tolist()


def test_side_by_side_is_the_train_stage_dense_net(prepared_run):
    """The side-by-side nets are bit for bit the dense nets `dvc repro` trains (prepared_run:
    the train stage run on tiny params, shared)."""
    raw = yaml.safe_load((prepared_run / "params.yaml").read_text())
    dense = torch.load(prepared_run / "models" / "dense.pt", weights_only=True)
    frame = baseline.compare(config.parse(raw), log=lambda *_: None)
    side = frame.pivot(index="seed", columns="task", values="side_test_acc")
    names = [t["name"] for t in data.build(config.parse(raw).data)[1]["tasks"]]
    assert np.array_equal(side[names].to_numpy(np.float32), dense["metrics.test_acc_tasks"].numpy())
    assert frame["side_epochs"].groupby(frame["seed"]).first().tolist() == \
        dense["metrics.epochs"].tolist()


def test_one_task_alone_equals_side_by_side():
    """With one task the alone net is the side-by-side net: gap exactly 0 on every seed."""
    raw = tiny_params(**{"data.tasks": ["circles"], "model.seeds": [3, 4, 5], "plot.draw_seed": None})
    frame = baseline.compare(config.parse(raw), log=lambda *_: None)
    assert len(frame) == 3 and (frame["gap"] == 0).all()
    assert (frame["side_train_acc"] == frame["alone_train_acc"]).all()


def test_summary_flags_a_task_beyond_tolerance():
    frame = pd.DataFrame({"seed": [0, 1, 0, 1], "task": ["a_0", "a_0", "b_1", "b_1"],
                          "side_test_acc": [0.90, 0.92, 0.80, 0.84],
                          "alone_test_acc": [0.91, 0.93, 0.85, 0.85]})
    frame["gap"] = frame["alone_test_acc"] - frame["side_test_acc"]
    frame["side_problems"] = ""
    frame["alone_problems"] = ""
    table = baseline.summary(frame, tolerance=0.02)
    assert list(table.index) == ["a_0", "b_1"]
    assert table.loc["a_0", "gap"] == pytest.approx(0.01)
    assert table.loc["b_1", "gap"] == pytest.approx(0.03)
    assert table.loc["b_1", "max_gap"] == pytest.approx(0.05)
    assert table["learned"].tolist() == [True, False]
    assert "more than 0.02 below alone: b_1" in baseline.verdict(table, 0.02, 2)
    assert baseline.summary(frame, tolerance=0.03)["learned"].all()
    frame.loc[1, "side_problems"] = "at_chance"  # one failed seed side by side fails the task
    table = baseline.summary(frame, tolerance=0.03)
    assert table["side_failed"].tolist() == [1, 0] and table["learned"].tolist() == [False, True]
    assert "failed side by side: a_0" in baseline.verdict(table, 0.03, 2)
    frame.loc[3, "alone_problems"] = "diverged"  # no reference for b_1
    table = baseline.summary(frame, tolerance=0.03)
    assert table["learned"].tolist() == [False, False]
    assert "no reference for b_1" in baseline.verdict(table, 0.03, 2)


@pytest.mark.parametrize("overrides, problem", [
    ({"data.tasks": ["moons"], "train.optimizer": "sgd", "train.lr": 1e6}, "diverged"),
    ({"train.optimizer": "sgd", "train.lr": 1e6}, "diverged"),
    ({"train.max_epochs": 1, "train.lr": 1e-6}, "at_chance"),
])
def test_failed_nets_are_never_learned(overrides, problem):
    """A gap of 0 between two nets that learned nothing is no evidence: diverged or at-chance
    nets (pipeline.health's checks) fail the task, on either side."""
    raw = tiny_params(**overrides)
    frame = baseline.compare(config.parse(raw), log=lambda *_: None)
    table = baseline.summary(frame)
    assert frame["side_problems"].str.contains(problem).any()
    assert not table["learned"].any()
    assert "not learned" in baseline.verdict(table, 0.02, 2)


def test_cli_table_csv_and_overrides(tmp_path):
    write_params(tmp_path, tiny_params())
    out = tmp_path / "rows.csv"
    proc = _cli(tmp_path, "--seeds", "0,1", "-S", "train.lr=2e-2", "-S", "model.hidden=[5, 4]",
                "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "side by side [4, 5, 4, 2]" in proc.stderr  # the -S values were read as YAML 1.2
    assert proc.stdout.strip().splitlines()[-1].startswith("baseline: ")
    rows = pd.read_csv(out)
    assert sorted(rows["seed"].unique()) == [0, 1] and len(rows) == 4
    assert np.allclose(rows["gap"], rows["alone_test_acc"] - rows["side_test_acc"], atol=1e-5)


@pytest.mark.parametrize("args, names", [
    (["-S", "train.lr=-1"], "train.lr"),
    (["-S", "nosuch.key=1"], "-S"),
    (["-S", "train.lr"], "-S"),
    (["--seeds", "0,x"], "--seeds"),
    (["--seeds", "1,1"], "--seeds"),
    (["--tolerance", "1.5"], "--tolerance"),
    (["--preset", "missing.yaml"], "missing.yaml"),
    (["-S", "model.hidden=[8,8"], "not valid YAML"),
    (["-S", "train.lr=@x"], "not valid YAML"),
    (["-S", "model.hidden=!!python/object:os.system ls"], "not valid YAML"),
    (["--seeds=-1,2"], "--seeds"),
    (["--seeds", "99999999999999999999"], "--seeds"),
    (["-S", "model.seeds=[99999999999999999999]"], "model.seeds"),
    (["--out", "."], "--out"),
    (["--out", "params.yaml/rows.csv"], "--out"),
    (["--out", ""], "--out"),
    (["--out", "new_folder/"], "--out"),
    (["--preset", "missing.yaml"], "preset file"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, names):
    write_params(tmp_path, tiny_params())
    assert_one_line_error(_cli(tmp_path, *args), names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


@pytest.mark.parametrize("document, args, names", [
    ("- a\n- b\n", ["--preset", "bad.yaml"], "bad.yaml"),
    ("model: 5\n", ["--preset", "bad.yaml"], "bad.yaml"),
    ("- a\n", ["--params", "bad.yaml", "-S", "train.lr=0.1"], "bad.yaml"),
    ("model: 5\n", ["--params", "bad.yaml", "-S", "model.hidden=[4]"], "model"),
])
def test_cli_params_or_preset_of_the_wrong_shape_is_one_line(tmp_path, document, args, names):
    write_params(tmp_path, tiny_params())
    (tmp_path / "bad.yaml").write_text(document)
    assert_one_line_error(_cli(tmp_path, *args), names)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "device"])
def test_cli_out_never_replaces_a_link_pipe_or_device(tmp_path, kind):
    """--out is written atomically (a new file renamed over the path): over a symlink, pipe or
    device that would replace it, so such paths are refused before any training."""
    write_params(tmp_path, tiny_params())
    out = tmp_path / "rows.csv"
    if kind == "symlink":
        (tmp_path / "target.csv").write_text("kept\n")
        out.symlink_to(tmp_path / "target.csv")
    elif kind == "fifo":
        os.mkfifo(out)
    else:
        out = Path("/dev/null")
    before = out.lstat()
    assert_one_line_error(_cli(tmp_path, "--out", str(out)), "not a plain file")
    after = out.lstat()
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    if kind == "symlink":
        assert (tmp_path / "target.csv").read_text() == "kept\n"


def test_study_flags_skip_null_sections(tmp_path):
    """A preset section set to null sets nothing (python -m pipeline.study flags, baseline)."""
    from pipeline import study

    (tmp_path / "p.yaml").write_text("train: null\nmodel:\n  hidden: [8, 8]\n")
    # study.hidden follows the base key the preset sets (issue 26)
    assert study.preset_flags(tmp_path / "p.yaml") == ["-S", "model.hidden=[8, 8]",
                                                       "-S", 'study.hidden=["8x8"]']
    raw = study.apply_preset(ROOT / "params.yaml", tmp_path / "p.yaml")
    assert raw["model"]["hidden"] == [8, 8] and raw["study"]["hidden"] == ["8x8"]


def test_cli_damaged_image_file_is_one_line(tmp_path):
    (tmp_path / "fashion").mkdir()
    (tmp_path / "fashion" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03junk")
    write_params(tmp_path, tiny_params(**{"data.tasks": ["fashion_mnist"],
                                          "data.fashion_mnist_dir": str(tmp_path / "fashion")}))
    assert_one_line_error(_cli(tmp_path), "fashion")


def test_the_verdict_names_its_reference():
    """--alone-inputs own: the learned check's lines as they were; all: every line says the
    reference is each task alone on every task's inputs, and never calls a task learned."""
    frame = pd.DataFrame({"seed": [0, 1, 0, 1], "task": ["a_0", "a_0", "b_1", "b_1"],
                          "side_test_acc": [0.90, 0.92, 0.80, 0.84],
                          "alone_test_acc": [0.91, 0.93, 0.81, 0.85]})
    frame["gap"] = frame["alone_test_acc"] - frame["side_test_acc"]
    frame["side_problems"] = frame["alone_problems"] = ""
    table = baseline.summary(frame, tolerance=0.02)
    assert baseline.verdict(table, 0.02, 2) == baseline.verdict(table, 0.02, 2, "own") == (
        "baseline: every task is learned (above chance and within 0.02 of the task alone; "
        "2 seeds)")
    wide = baseline.verdict(table, 0.02, 2, "all")
    assert "alone on every task's inputs" in wide and "learned (" not in wide
    assert wide.endswith("every task above chance and within 0.02 of the task alone on every "
                         "task's inputs (2 seeds)")
    table = baseline.summary(frame, tolerance=0.005)
    assert "more than 0.005 below alone on every task's inputs: a_0, b_1" in baseline.verdict(
        table, 0.005, 2, "all")
    assert "not learned: more than 0.005 below alone: a_0, b_1" in baseline.verdict(table, 0.005, 2)


def test_cli_alone_on_every_input_says_so(tmp_path):
    """`--alone-inputs all` on stdout: the summary's heading and the verdict name the
    reference (found by a review: it printed own mode's "every task is learned")."""
    write_params(tmp_path, tiny_params())
    proc = _cli(tmp_path, "--seeds", "0", "--alone-inputs", "all")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("per task: means over seeds, each task alone on every task's inputs")
    assert lines[-1].startswith("baseline, against each task alone on every task's inputs")
    assert "is learned" not in proc.stdout


@pytest.mark.parametrize("kind", ["mnist", "fashion_mnist"])
def test_cli_missing_image_files_name_the_params_key(tmp_path, kind):
    """A folder without the IDX files: one line naming the file and the params key to set."""
    (tmp_path / "empty").mkdir()
    write_params(tmp_path, tiny_params(**{"data.tasks": [kind],
                                          f"data.{kind}_dir": str(tmp_path / "empty")}))
    proc = _cli(tmp_path)
    assert_one_line_error(proc, "missing IDX file")
    assert f"allowed: params key data.{kind}_dir set to a folder holding the four" in proc.stderr
