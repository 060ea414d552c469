"""Run health: networks that did not train as asked are flagged in metrics.json and report.md,
and a dense population that learned nothing stops the pipeline (exit 2, one line)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_stage, stages_here, tiny_params, write_params

from pipeline import health

TASKS = ["moons_0", "circles_1"]


def random_levels(seed: int, k: int = 40, levels: int = 3) -> pd.DataFrame:
    """A levels.csv-like frame with every kind of outcome mixed in."""
    rng = np.random.default_rng(seed)
    n = k * levels
    frame = pd.DataFrame({
        "seed": np.tile(np.arange(k), levels), "level": np.repeat(np.arange(levels), k),
        "epochs": rng.integers(1, 30, n), "stop_reason": rng.choice(
            ["patience", "cutoff", "max_epochs", "diverged"], n, p=[0.6, 0.2, 0.1, 0.1])})
    frame["best_epoch"] = np.where(rng.random(n) < 0.2, 0, rng.integers(0, 30, n))
    frame.loc[rng.random(n) < 0.1, "epochs"] = 10  # patience exhausted without an improvement
    frame["test_loss"] = np.where(rng.random(n) < 0.05, np.nan, rng.random(n))
    for t in TASKS:
        frame[f"test_acc_{t}"] = rng.choice([0.45, 0.5, 0.55, 0.6, 0.7, 0.95], n)
    return frame


def reference_p(correct: int, n: int, rate: float) -> float:
    """P(X ≥ correct), X ~ Bin(n, rate), summed term by term."""
    return sum(math.comb(n, i) * rate ** i * (1 - rate) ** (n - i) for i in range(correct, n + 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flags_match_a_row_by_row_reference(seed):
    levels = random_levels(seed)
    rng = np.random.default_rng(seed + 10)
    test_y = np.stack([rng.integers(0, 2, 40), (rng.random(40) < 0.7).astype(int)], axis=1)
    patience = 10
    flags = health.network_flags(levels, TASKS, test_y, patience=patience)
    rates = [max(np.mean(test_y[:, t] == c) for c in (0, 1)) for t in range(2)]
    assert health.majority_rates(test_y).tolist() == pytest.approx(rates)
    for i, row in levels.iterrows():
        diverged = row["stop_reason"] == "diverged" or not math.isfinite(row["test_loss"])
        never = (row["best_epoch"] == 0
                 or (row["stop_reason"] == "patience" and row["epochs"] == patience))
        assert flags.loc[i, "diverged"] == diverged
        assert flags.loc[i, "never_improved"] == (never and not diverged)
        assert flags.loc[i, "max_epochs"] == (row["stop_reason"] == "max_epochs")
        chance = [reference_p(round(row[f"test_acc_{t}"] * 40), 40, rates[j]) >= 0.05
                  for j, t in enumerate(TASKS)]
        assert [flags.loc[i, f"at_chance_{t}"] for t in TASKS] == chance
        assert flags.loc[i, "at_chance"] == any(chance)
        assert flags.loc[i, "all_at_chance"] == all(chance)


def test_chance_is_the_majority_class_not_one_over_classes():
    """A 10-class task whose test labels are 70 % one class: 0.7 accuracy is chance, 0.9 is
    not; on a balanced binary task 0.5 is chance and 0.95 is not."""
    y = np.array([[0] * 70 + list(range(1, 10)) * 3 + [1] * 3, [0, 1] * 50]).T
    p = health.chance_p_values(np.array([[0.7, 0.5], [0.9, 0.95]]), y)
    assert (p[0] >= health.CHANCE_ALPHA).all() and (p[1] < health.CHANCE_ALPHA).all()


def test_section_counts_and_names_seeds(tmp_path):
    levels = random_levels(5, k=12)
    test_y = np.stack([np.arange(40) % 2, np.arange(40) % 2], axis=1)
    (tmp_path / "tasks.json").write_text(json.dumps(
        {"tasks": [{"name": t} for t in TASKS], "stratified_on": "joint"}))
    np.savez(tmp_path / "test.npz", x=np.zeros((40, 4), np.float32), y=test_y)
    out = health.section(levels, tmp_path)
    dense, imp = levels[levels["level"] == 0], levels[levels["level"] > 0]
    df = health.network_flags(dense, TASKS, test_y)
    fi = health.network_flags(imp, TASKS)
    for check in ("never_improved", "diverged", "max_epochs", "at_chance"):
        assert out["dense"][check] == int(df[check].sum())
        assert out["dense"][f"{check}_seeds"] == sorted(dense["seed"][df[check]].tolist())
    for check in ("never_improved", "diverged", "max_epochs"):
        assert out["imp"][check] == int(fi[check].sum())
        assert out["imp"][f"{check}_seeds"] == sorted(set(imp["seed"][fi[check]].tolist()))
        assert out["imp"][f"{check}_levels"] == sorted(set(imp["level"][fi[check]].tolist()))
    assert out["dense"]["networks"] == 12 and out["imp"]["networks"] == 24
    assert out["ok"] is False and out["problems"] > 0
    json.dumps(out)  # plain JSON types only; counts are scalars for `dvc exp show`
    assert all(isinstance(out[kind][c], int) for kind in ("dense", "imp")
               for c in ("networks", "never_improved", "diverged", "max_epochs"))


def test_report_block_only_when_something_is_off():
    report = "# ticketsplit report\n\nTasks **a**.\n\n## Does the ticket split?\n"
    ok = {"ok": True, "problems": 0, "dense": {}, "imp": {}}
    assert health.with_block(report, ok) == report
    assert health.with_block(report, None) == report
    off = {"ok": False, "problems": 1,
           "dense": {"networks": 4, "never_improved": 0, "never_improved_seeds": [],
                     "diverged": 2, "diverged_seeds": [1, 3], "max_epochs": 0,
                     "max_epochs_seeds": [], "at_chance": 0, "at_chance_seeds": [],
                     "at_chance_tasks": {"a_0": 0}, "majority_rate": {"a_0": 0.5}},
           "imp": {"networks": 8, "never_improved": 0, "never_improved_seeds": [],
                   "diverged": 0, "diverged_seeds": [], "max_epochs": 0, "max_epochs_seeds": []}}
    text = health.with_block(report, off)
    assert text.startswith("# ticketsplit report\n\n## Run health\n")
    assert "2 of 4 networks diverged (seeds 1, 3)" in text and "train.lr" in text
    assert text.endswith(report.split("\n\n", 1)[1])  # the rest of the report follows intact


def test_dense_failure_only_when_every_network_failed():
    y = np.stack([np.arange(40) % 2, np.arange(40) % 2], axis=1)
    rows = pd.DataFrame({"seed": [0, 1], "level": 0, "epochs": [10, 10], "best_epoch": [0, 0],
                         "stop_reason": ["patience", "patience"],
                         "test_acc_moons_0": [0.5, 1.0], "test_acc_circles_1": [0.5, 1.0]})
    line = health.dense_failure(rows, TASKS, y)
    assert "every dense network failed" in line and "train.min_delta" in line
    assert "\n" not in line
    rows.loc[1, "best_epoch"] = 7  # seed 1 learned: flagged later, not fatal
    assert health.dense_failure(rows, TASKS, y) is None
    rows.loc[1, ["test_acc_moons_0", "test_acc_circles_1"]] = 0.5  # …but every task at chance
    assert "every task at chance" in health.dense_failure(rows, TASKS, y)


def run_until(folder: Path, last: str, **overrides) -> dict:
    write_params(folder, tiny_params(**{"train.workers": 1, **overrides}))
    procs = {}
    for stage in ("generate", "trajectory", "train", "imp", "analyze", "plot"):
        procs[stage] = run_stage(stage, folder, check=False)
        if procs[stage].returncode or stage == last:
            break
    return procs


# the cases: (params, text in the one line); every dense network fails → exit 2
FATAL = [({"train.min_delta": 0.05}, "never improved", "train.min_delta"),
         ({"train.optimizer": "sgd", "train.lr": 1e6}, "diverged", "train.lr")]


@pytest.mark.parametrize("overrides,what,key", FATAL, ids=["min_delta 0.05", "sgd lr 1e6"])
def test_dense_nets_that_learned_nothing_stop_the_train_stage(tmp_path, overrides, what, key):
    """The train stage's process on the tiny data (made in this process: conftest.stages_here)."""
    write_params(tmp_path, tiny_params(**{"train.workers": 1, **overrides}))
    stages_here(tmp_path, ("generate", "trajectory"))
    train = run_stage("train", tmp_path, check=False)
    assert train.returncode == 2, train.stderr
    lines = train.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: train: every dense network failed")
    assert what in lines[0] and key in lines[0]
    assert not (tmp_path / "models/dense.pt").exists()
    assert not (tmp_path / "models/init.pt").exists()


@pytest.mark.e2e
def test_flagged_single_task_run_reports_health(tmp_path):
    """A single-task run whose dense nets hit max_epochs: every stage finishes (partial
    problems are not fatal), metrics.json counts them as the levels table says, and report.md
    opens with the Run health block naming the seeds and the key to change."""
    procs = run_until(tmp_path, "plot", **{"data.tasks": ["moons"], "train.max_epochs": 12,
                                           "train.patience": 50})
    for stage, proc in procs.items():
        assert proc.returncode == 0, f"{stage}: {proc.stderr}"
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    h = metrics["health"]
    levels = pd.read_csv(tmp_path / "reports/imp/levels.csv")
    dense = levels[levels["level"] == 0]
    assert h["dense"]["networks"] == 2 and h["dense"]["max_epochs"] == 2
    assert h["dense"]["max_epochs_seeds"] == [0, 1]
    assert h["imp"]["max_epochs"] == int((levels[levels["level"] > 0]["stop_reason"]
                                          == "max_epochs").sum())
    assert (dense["stop_reason"] == "max_epochs").all() and h["ok"] is False
    report = (tmp_path / "reports/report.md").read_text()
    assert report.startswith("# ticketsplit report\n\n## Run health\n")
    assert "2 of 2 networks hit train.max_epochs (seeds 0, 1)" in report
    assert "raise train.max_epochs" in report
