"""End to end: the real `dvc repro` on a tiny params file in a temporary copy of the repo."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import (
    FOUR_LEVELS,
    PREPARED,
    ROOT,
    copied,
    dvc,
    git,
    run_stage,
    stage_in_process,
    stages_here,
    tiny_params,
    write_params,
)

from pipeline.analysis import wilson

pytestmark = pytest.mark.e2e


def digest(folder: Path, pattern: str = "**/*") -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob(pattern)) if p.is_file()}


@pytest.mark.xdist_group("experiments_repo")
def test_dvc_repro_contract_and_caching(reproduced_repo, experiments_repo, tmp_path):
    """The first `dvc repro` of tiny_repo (conftest.reproduced_repo, shared), checked in a
    copy of it, then a second repro and a params change in that copy. The repro of that change
    is the experiments' `short` (conftest.experiments_repo: `dvc exp run -S prune.iterations=2`
    on the same tiny run, reproduced and committed in a fresh clone), whose output and level
    files are kept beside it."""
    shared, out = reproduced_repo
    repo = copied(shared, tmp_path / "repo")
    for stage in ("generate", "trajectory", "train", "learned", "imp", "analyze", "plot"):
        assert f"Running stage '{stage}'" in out
    # checkpoint contract
    levels = sorted((repo / "models/imp").glob("level_*.pt"))
    assert [p.name for p in levels] == [f"level_{i:02d}.pt" for i in range(4)]
    for p in levels:
        state = torch.load(p, weights_only=True)
        assert state["seeds"].tolist() == [0, 1]
        shapes = [(6, 4), (6, 6), (2, 6)]
        for i, (o, n) in enumerate(shapes):
            w, m = state[f"layers.{i}.weight"], state[f"layers.{i}.weight_mask"]
            assert w.shape == (2, o, n) and m.dtype == torch.bool and m.shape == w.shape
            assert state[f"layers.{i}.bias"].shape == (2, o)
            assert bool((w[~m] == 0).all())
            assert bool((state[f"layers.{i}.bias"][~state[f"layers.{i}.bias_mask"]] == 0).all())
    traj = (repo / "reports/trajectory.csv").read_text().splitlines()
    assert traj[0] == "level,params,rate" and traj[-1].startswith("3,30,")
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["seeds"] == 2 and set(metrics["dense_test_acc"]) == {"moons_0", "circles_1"}
    assert metrics["learned"]["checked"] and set(metrics["learned"]["tasks"]) == {
        "moons_0", "circles_1"}  # stage learned, copied in by analyze
    lv = pd.read_csv(repo / "reports/imp/levels.csv")
    assert len(lv) == 8 and lv.groupby("level")["params"].first().tolist() == [
        int(r.split(",")[1]) for r in traj[1:]]
    assert {"test_acc_moons_0", "test_acc_circles_1", "stop_reason"} <= set(lv.columns)
    an = pd.read_csv(repo / "reports/analysis/levels.csv")
    assert (an[["alive", "audience", "zombie", "unproductive", "pruned"]].sum(axis=1)
            == an["params"].iloc[0]).all()
    # the split distance (issue 27): d = 0 exactly where the ticket is pure, at every level
    assert an["split_distance"].notna().all() and an["split_distance_exact"].astype(bool).all()
    assert ((an["split_distance"] == 0) >= an["split_effective"].astype(bool)).all()
    assert {"split_output", "test_acc_cut_moons_0", "split_cut_layer_0"} <= set(an.columns)
    assert metrics["split_distance"]["per_level"][0]["level"] == 0 and "split_output" in metrics
    # what dies during IMP (issue 32, docs/science.md §8): columns, tables, answers
    assert {"prune_threshold", "newly_pruned", "pruned_dead", "pruned_dead_share", "alive_share",
            "frozen_params", "cut_frozen_share", "cut_init_ratio", "folded_params",
            "fold_max_abs_diff"} <= set(an.columns)
    assert (an["fold_max_abs_diff"] <= 1e-5).all() and (an["folded_params"] >= an["alive"]).all()
    assert an.loc[an["level"] == 0, "prune_threshold"].isna().all()
    assert an.loc[an["level"] > 0, "prune_threshold"].notna().all()
    for name in ("episodes.csv", "bias_survival.csv", "frozen_deaths.csv.gz", "dying.json"):
        assert (repo / "reports/analysis" / name).exists(), name
    dying = metrics["dying"]
    for key in ("h1_zombie_lifetime_vs_bias", "h2_negative_biases_pruned_early", "h3_comatose_peak",
                "h4_zombies_at_high_sparsity", "h5_comatose_bias_before_detach",
                "h6_split_vs_unsplit_accuracy", "death_predicted"):
        assert isinstance(dying[key]["testable"], bool), key

    # figures: valid, non-trivial PNGs; the report carries the metrics
    figures = sorted((repo / "reports/figures").glob("*.png"))
    assert {f.name for f in figures} == {
        "accuracy.png", "comatose_events.png", "dying.png", "leakage.png", "lifetimes.png",
        "network.png", "neurons.png", "split.png", "split_criteria.png",
        "split_distance.png", "states.png", "task_matrix.png",
        "val_curves.png"}  # coverage_maps.png only for image tasks
    # every level's drawings: beside, not among the git-tracked figures (megabytes)
    every = repo / "reports/every_level"
    assert sorted(p.name for p in every.iterdir()) == ["network_levels.gif", "network_levels.png"]
    assert (every / "network_levels.gif").read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    for fig in [*figures, every / "network_levels.png"]:
        data = fig.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 15_000, fig.name
    report = (repo / "reports/report.md").read_text()
    s = metrics["split"]
    assert f"**{s['seeds_split']}/2 ({s['fraction_split']:.2f}, 95% CI " \
           f"{s['fraction_split_ci95'][0]:.2f}–{s['fraction_split_ci95'][1]:.2f})**" in report
    # the intervals are Wilson's, computed from the per-seed table
    seeds = pd.read_csv(repo / "reports/analysis/seeds.csv")
    k = int(seeds["first_split_level"].notna().sum())
    assert s["fraction_split_ci95"] == pytest.approx(list(wilson(k, len(seeds))))
    k = int(seeds["split_before_degradation"].astype(bool).sum())
    assert s["fraction_split_before_degradation_ci95"] == pytest.approx(list(wilson(k, len(seeds))))
    for name, acc in metrics["dense_test_acc"].items():
        assert f"| {name} | {acc:.3f} |" in report
    assert "## What dies during IMP" in report
    assert "- **H6** (*nets that do not split perform worse*?): " in report
    plots_out = dvc(repo, "plots", "show", "--json").stdout
    assert "fraction_split" in plots_out

    # everything is up to date, and a second repro changes nothing
    assert json.loads(dvc(repo, "status", "dvc.yaml", "--json").stdout) == {}
    before = digest(repo / "models") | digest(repo / "reports")
    out = dvc(repo, "repro").stdout
    assert "Running stage" not in out
    assert digest(repo / "models") | digest(repo / "reports") == before

    # changing prune.iterations reruns trajectory and downstream only, not generate or train
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prune"]["iterations"] = 2
    write_params(repo, params)
    status = json.loads(dvc(repo, "status", "dvc.yaml", "--json").stdout)
    assert "trajectory" in status and "generate" not in status and "train" not in status
    kept = experiments_repo.parent
    out = (kept / "short.out").read_text()
    assert "Running stage 'trajectory'" in out and "Running stage 'imp'" in out
    assert "Running stage 'train'" not in out and "Running stage 'generate'" not in out
    assert "Running stage 'learned'" not in out  # the dense net did not change
    assert (kept / "short.levels").read_text().split() == [f"level_{i:02d}.pt" for i in range(3)]


def file_hashes(repo: Path) -> dict[str, str]:
    """{path: sha256} of every file of the run's outputs (data, models, reports)."""
    return {p.relative_to(repo).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for top in ("data", "models", "reports") for p in sorted((repo / top).rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("setting, key", [
    ("analysis.degradation_threshold=2", "analysis.degradation_threshold"),   # last stages' key
    ("plot.dpi=0", "plot.dpi"),                                               # the last stage's
    ("prune.iterations=0", "prune.iterations"),                               # a middle stage's
], ids=["analysis", "plot", "prune"])
def test_a_wrong_value_from_dvc_exp_run_removes_no_output(setting, key, reproduced_repo, tmp_path):
    """`dvc exp run -S key=<wrong>` on a finished run: the params stage, first in the DAG, stops
    with one line naming the key before DVC removes any other stage's outputs to rerun it (the
    stage that reads the key used to be the one refusing, after its outputs were gone)."""
    repo = copied(reproduced_repo[0], tmp_path / "repo")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "finished")
    before = file_hashes(repo)
    proc = dvc(repo, "exp", "run", "-S", setting, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and key in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert "Running stage 'params'" in proc.stdout
    for stage in ("generate", "trajectory", "train", "imp", "analyze", "plot"):
        assert f"Running stage '{stage}'" not in proc.stdout, stage
    after = file_hashes(repo)
    checked = "reports/params_checked.txt"  # the params stage's own output, remade on success
    assert {k: v for k, v in after.items() if k != checked} == \
        {k: v for k, v in before.items() if k != checked}


@pytest.mark.xdist_group("experiments_repo")
def test_dvc_exp_run_and_show(experiments_repo):
    show = json.loads(dvc(experiments_repo, "exp", "show", "--json").stdout)
    text = json.dumps(show)
    assert "short" in text and "long" in text and "fraction_split" in text


@pytest.mark.xdist_group("experiments_repo")
def test_dvc_plots_diff_between_experiments(experiments_repo, tmp_path):
    out = tmp_path / "diff"
    dvc(experiments_repo, "plots", "diff", "short", "long", "-o", str(out))
    page = (out / "index.html").read_text()
    for title in ("Accuracy vs remaining parameters", "Fraction of seeds split per level",
                  "Validation loss per epoch by IMP level"):
        assert title in page
    # both experiments' data are in the page: 3 vs 4 levels of the git-tracked summary table
    assert page.count('"rev": "short"') > 0 and page.count('"rev": "long"') > 0
    assert '"scheme": "viridis"' in page  # the custom per-level template, not a 7-colour cycle


VEGA_PLOTS = ("Accuracy vs remaining parameters", "Fraction of seeds split per level",
              "Validation loss per epoch by IMP level")


@pytest.fixture(scope="session")
def offline_template(tmp_path_factory) -> Path:
    from pipeline import offline_plots
    path = tmp_path_factory.mktemp("vega") / "offline.html"
    try:
        sources = {n: offline_plots.fetch(n, v, m, timeout=30)
                   for n, v, m in offline_plots.PACKAGES}
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"the npm registry is unreachable, no offline Vega template: {exc}")
    path.write_text(offline_plots.build_page(sources), encoding="utf-8")
    return path


@pytest.mark.xdist_group("experiments_repo")
def test_plots_diff_renders_in_headless_chromium(experiments_repo, offline_template, tmp_path):
    import shutil

    from PIL import Image
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    out = tmp_path / "diff"
    # the Vega-Lite views only: the PNG figures would show even if Vega failed to load
    dvc(experiments_repo, "plots", "diff", "short", "long", "-o", str(out),
        "--html-template", str(offline_template), "--targets", *VEGA_PLOTS)
    page = (out / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in page  # nothing is loaded from the network
    body = page.split("<body>", 1)[1]
    assert body.count("vegaEmbed('#") == len(VEGA_PLOTS) and "<img" not in body
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--hide-scrollbars",
                    "--window-size=1400,1000", "--virtual-time-budget=15000",
                    f"--screenshot={shot}", (out / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("L"), dtype=np.uint8)
    ink = image < 200
    assert ink.mean() > 0.005, "the Vega plots did not render (page is blank)"
    assert ink.any(axis=1).mean() > 0.25


def prepared(tmp_path: Path, **overrides) -> Path:
    """generate + trajectory + train done in a plain folder (no DVC) with the tiny params, in
    this process (conftest.stages_here: the tests run the imp stage's processes on them)."""
    work = tmp_path / "work"
    work.mkdir()
    write_params(work, tiny_params(**{**FOUR_LEVELS, **overrides}))
    stages_here(work, PREPARED)
    return work


def test_rerun_is_bit_identical_and_resume_after_kill_equals_uninterrupted(imp_run, tmp_path):
    """imp_run: prepared, then the imp stage run once (shared with other tests)."""
    reference = digest(imp_run / "models/imp") | digest(imp_run / "reports/imp")
    work = copied(imp_run, tmp_path / "work")

    # a second run of a finished stage changes nothing
    run_stage("imp", work)
    assert digest(work / "models/imp") | digest(work / "reports/imp") == reference

    # from scratch: identical bytes
    import shutil
    shutil.rmtree(work / "models/imp")
    run_stage("imp", work)
    assert digest(work / "models/imp") | digest(work / "reports/imp") == reference

    # killed after its second level file appeared: a rerun finishes to the same bytes
    shutil.rmtree(work / "models/imp")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.stages.imp"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (work / "models/imp/level_02.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "models/imp/level_04.pt").exists()
    # its worker processes die with it instead of waiting for work forever
    assert wait_until(lambda: not processes_in(work), seconds=10), processes_in(work)
    run_stage("imp", work)
    assert digest(work / "models/imp") | digest(work / "reports/imp") == reference


def processes_in(folder: Path) -> list[int]:
    """PIDs of the processes whose working directory is `folder` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")) == folder.resolve():
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def wait_until(condition, seconds: float) -> bool:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_changed_params_discard_persisted_levels(imp_run, tmp_path):
    work = copied(imp_run, tmp_path / "work")
    first = digest(work / "models/imp", "level_0[1-9].pt")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["prune"]["rewind"] = 0
    params["train"]["lr"] = 0.02  # imp must not reuse levels trained with the old lr
    write_params(work, params)
    proc = run_stage("imp", work)
    assert "starting over" in proc.stderr
    assert digest(work / "models/imp", "level_0[1-9].pt") != first


@pytest.mark.parametrize("compact,hidden", [(True, [6, 6]), (True, [13, 7]), (False, [16, 16])])
def test_worker_processes_give_identical_files(tmp_path, compact, hidden, prepared_run):
    """In canonical compact layouts (the default) any widths give identical files for any
    number of workers; without compaction, canonical widths (multiples of 8, >= 16) do."""
    overrides = {"model.hidden": hidden, "train.compact": compact}
    if tiny_params(**FOUR_LEVELS, **overrides) == tiny_params(**FOUR_LEVELS):
        work = copied(prepared_run, tmp_path / "work")  # the same params: the shared run
    else:
        work = prepared(tmp_path, **overrides)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["prune"]["random_mask_control"] = True
    params["prune"]["reinit_control"] = True
    results = []
    for workers in (1, 2):
        params["train"]["workers"] = workers
        write_params(work, params)
        import shutil
        shutil.rmtree(work / "models/imp", ignore_errors=True)
        run_stage("imp", work)
        results.append(digest(work / "models/imp", "level_*.pt") | digest(work / "reports/imp"))
    assert results[0] == results[1]
    controls = pd.read_csv(work / "reports/imp/controls.csv")
    assert set(controls["control"]) == {"reinit", "random"} and len(controls) == 2 * 2 * 4


def test_extended_network_runs_k_extra_levels(tmp_path):
    """The extended net's shape and trajectory, then the imp and analyze stages' processes on
    it (the stages before them run in this process: conftest.stages_here)."""
    work = tmp_path / "work"
    work.mkdir()
    write_params(work, tiny_params(**{"prune.iterations": 2, "prune.target": None,
                                      "prune.rate": 0.3, "prune.extensions": 2}))
    stages_here(work, PREPARED)
    for stage in ("imp", "analyze"):
        run_stage(stage, work)
    shape = json.loads((work / "models/shape.json").read_text())
    assert shape["base_layers"] == [4, 6, 6, 2] and shape["extensions"] == 2
    assert shape["layers"][1] > 6 and shape["layers"][1] == shape["layers"][2]
    rows = (work / "reports/trajectory.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [-2, -1, 0, 1, 2]
    assert int(rows[2].split(",")[1]) == 4 * 6 + 6 * 6 + 6 * 2 + 14  # level 0: the base count
    levels = sorted((work / "models/imp").glob("level_*.pt"))
    assert len(levels) == 5  # dense extended net + 2 extension levels + 2 base levels
    lv = pd.read_csv(work / "reports/imp/levels.csv")
    assert lv.groupby("level")["params"].first().tolist() == [int(r.split(",")[1]) for r in rows]
    assert sorted(lv["base_level"].unique()) == [-2, -1, 0, 1, 2]


FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian: dataset-fashion-mnist


@pytest.mark.skipif(not FASHION_MNIST.is_dir(),
                    reason="real Fashion-MNIST IDX files not installed: Debian package "
                           "dataset-fashion-mnist (.ci/run installs it where apt is available)")
def test_real_fashion_mnist_slice_beside_digits_end_to_end(tmp_path):
    """generate → analyze on a small slice of the real Fashion-MNIST files (from the Debian
    package) at 14 × 14 beside digits: 64 + 196 inputs, both tasks learned well above chance."""
    work = tmp_path / "work"
    work.mkdir()
    write_params(work, tiny_params(**{
        "data.tasks": ["digits", "fashion_mnist"], "data.fashion_mnist_dir": str(FASHION_MNIST),
        "data.image_size": 14, "data.n_samples": 400, "model.hidden": [24, 16],
        "train.batch_size": 64, "train.monitor": "per_task", "train.max_epochs": 80,
        "train.patience": 20, "train.lr": 0.003,
        "prune.biases": False, "prune.iterations": 2, "prune.target": 2000,
        "study.tasks": ["digits+fashion_mnist"], "study.hidden": ["24x16"]}))
    for stage in ("generate", "trajectory", "train", "imp", "analyze"):
        run_stage(stage, work)
    meta = json.loads((work / "data/tasks.json").read_text())
    assert meta["n_inputs"] == 64 + 196 and meta["n_outputs"] == 20
    metrics = json.loads((work / "reports/metrics.json").read_text())
    acc = metrics["dense_test_acc"]
    assert acc["digits_0"] > 0.6 and acc["fashion_mnist_1"] > 0.6  # chance: 0.1
    levels = pd.read_csv(work / "reports/analysis/levels.csv")
    assert sorted(levels["level"].unique()) == [0, 1, 2]


@pytest.mark.parametrize("stage", ["trajectory", "train", "imp", "analyze", "plot"])
def test_stage_without_its_inputs_says_which_file_is_missing(stage, tmp_path, monkeypatch, capsys):
    """A stage run before the stages that make its inputs: one line naming the file, exit 2,
    no traceback, nothing written. It stops before any work: trajectory runs as its own process
    (exit code and streams of a real process), the others in this one
    (conftest.stage_in_process: a process each cost more than the check)."""
    write_params(tmp_path, tiny_params())
    if stage == "trajectory":
        proc = run_stage(stage, tmp_path, check=False)
    else:
        proc = stage_in_process(stage, tmp_path, monkeypatch, capsys)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "data/tasks.json" in lines[0]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
