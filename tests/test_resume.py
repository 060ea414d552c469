"""The imp stage's resume (models/imp/manifest.json): finished levels are reused only when the
params, the inputs, the code (the stage's import closure) and torch's version are the ones they
were made with, and seed by seed, so that a run grows from 2 to 4 seeds (16 to 32 in a study)
without redoing the first ones, byte for byte as a run of all seeds together.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FOUR_LEVELS, PREPARED, ROOT, copied, copy_repo, tiny_params, write_params

from pipeline import closure


def stage(name: str, cwd: Path, code: Path = ROOT) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", f"pipeline.stages.{name}"], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"{name}:\n{proc.stderr}"
    return proc


def files(run: Path) -> dict[str, str]:
    """sha256 of the imp stage's level files and reports (the manifest aside)."""
    out = {}
    for folder in ("models/imp", "reports/imp"):
        for p in sorted((run / folder).iterdir()):
            if p.name != "manifest.json":
                out[f"{folder}/{p.name}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def prepared(folder: Path, code: Path = ROOT, **overrides) -> Path:
    folder.mkdir(parents=True)
    write_params(folder, tiny_params(**{**FOUR_LEVELS, **overrides}))
    for name in PREPARED:
        stage(name, folder, code)
    return folder


def stop_after_level(run: Path, level: int) -> None:
    """What an interrupted run leaves: the level files up to `level` (and its manifest)."""
    for p in run.glob("models/imp/level_*.pt"):
        if int(p.stem.split("_")[1]) > level:
            p.unlink()


def test_closure_module_is_the_dag_tests_derivation():
    """The manifest hashes the same files tests/test_dag.py requires as the stage's deps."""
    found = closure.import_closure(ROOT / "pipeline/stages/imp.py")
    assert {"pipeline/imp.py", "pipeline/engine/loop.py", "pipeline/config.py",
            "pipeline/stages/imp.py", "pipeline/closure.py", "pipeline/io.py"} <= found
    assert "pipeline/stages/plot.py" not in found and "pipeline/plots.py" not in found
    hashes = closure.code_hashes(ROOT / "pipeline/stages/imp.py")
    assert list(hashes) == sorted(found)
    assert hashes["pipeline/imp.py"] == hashlib.sha256(
        (ROOT / "pipeline/imp.py").read_bytes()).hexdigest()


def test_code_edit_between_two_runs_starts_over(imp_run, tmp_path):
    """The issue's case: stop after level 2, change prune_global to rank by θ instead of |θ|,
    rerun. The finished levels are not reused: one line says the code changed (naming the
    file) and every level is the new code's, as a fresh run of it writes them. Unchanged code
    resumes to the uninterrupted bytes."""
    code = copy_repo(tmp_path / "repo")
    # what prepared(…, code) and its imp stage make: the code is hashed by content, code == ROOT
    run = copied(imp_run, tmp_path / "run")
    reference = files(run)

    stop_after_level(run, 2)
    proc = stage("imp", run, code)  # same code: resumed, no "starting over"
    assert "starting over" not in proc.stderr
    assert files(run) == reference

    stop_after_level(run, 2)
    source = code / "pipeline/imp.py"
    text = source.read_text()
    assert "theta.abs()" in text
    source.write_text(text.replace("score = torch.where(candidates, theta.abs(),",
                                   "score = torch.where(candidates, theta,"))
    proc = stage("imp", run, code)
    lines = [line for line in proc.stderr.splitlines() if "starting over" in line]
    assert len(lines) == 1 and "code (pipeline/imp.py) changed" in lines[0], proc.stderr
    edited = files(run)
    assert edited["models/imp/level_01.pt"] != reference["models/imp/level_01.pt"]
    assert edited["models/imp/level_00.pt"] == reference["models/imp/level_00.pt"]
    shutil.rmtree(run / "models/imp")
    stage("imp", run, code)
    assert files(run) == edited  # what the edited code makes from scratch


@pytest.fixture(scope="session")
def two_seeds(imp_run) -> Path:
    """prepared(…, train.workers=2) and its imp stage: the shared imp_run (2 workers is the
    default). Read only: tests copy it."""
    assert yaml.safe_load((imp_run / "params.yaml").read_text())["train"]["workers"] == 2
    return imp_run


@pytest.mark.parametrize("what,change,named", [
    ("params", lambda run: edit_params(run, "train", "lr", 0.02), "params (train.lr) changed"),
    ("torch", lambda run: edit_manifest(run, torch="1.0.0"), "torch (1.0.0 -> "),
    ("inputs", lambda run: edit_manifest_input(run, "reports/trajectory.csv"),
     "inputs (reports/trajectory.csv) changed"),
    ("older manifest", lambda run: (run / "models/imp/manifest.json").write_text(
        json.dumps({"fingerprint": "0" * 64})), "the manifest is from an older version"),
])
def test_the_starting_over_line_says_what_changed(what, change, named, two_seeds, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_seeds, run)
    stop_after_level(run, 2)
    change(run)
    proc = stage("imp", run)
    lines = [line for line in proc.stderr.splitlines() if "starting over" in line]
    assert len(lines) == 1 and named in lines[0], proc.stderr


def edit_params(run: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((run / "params.yaml").read_text())
    params[section][key] = value
    write_params(run, params)


def edit_manifest(run: Path, **values) -> None:
    path = run / "models/imp/manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


def edit_manifest_input(run: Path, name: str) -> None:
    """As if the file had other bytes when the levels were made."""
    path = run / "models/imp/manifest.json"
    manifest = json.loads(path.read_text())
    manifest["inputs"][name] = "0" * 64
    path.write_text(json.dumps(manifest))


def test_workers_do_not_invalidate_finished_levels(two_seeds, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_seeds, run)
    stop_after_level(run, 1)
    edit_params(run, "train", "workers", 1)
    proc = stage("imp", run)
    assert "starting over" not in proc.stderr
    assert files(run) == files(two_seeds)


def test_adding_seeds_keeps_the_finished_ones_and_equals_a_run_of_all(two_seeds, tmp_path):
    """2 → 4 seeds (the study's 16 → 32): the train stage trains all dense nets again (its
    seeds 0 and 1 come out identical), the imp stage keeps seeds 0 and 1's levels, trains only
    2 and 3, and every file equals that of an uninterrupted 4-seed run, byte for byte. Going
    back to 2 seeds gives the 2-seed files; an interruption while growing resumes exactly."""
    seeds4 = {"train.workers": 2, "model.seeds": [0, 1, 2, 3]}
    fresh = prepared(tmp_path / "fresh", **seeds4)
    stage("imp", fresh)

    run = tmp_path / "run"
    shutil.copytree(two_seeds, run)
    edit_params(run, "model", "seeds", [0, 1, 2, 3])
    stage("train", run)
    proc = stage("imp", run)
    assert "starting over" not in proc.stderr
    assert "keeping the finished levels of seeds 0, 1; training seeds 2, 3" in proc.stderr
    assert files(run) == files(fresh)
    assert (json.loads((run / "models/imp/manifest.json").read_text())
            == json.loads((fresh / "models/imp/manifest.json").read_text()))

    # back to 2 seeds: the 2-seed files, nothing trained
    edit_params(run, "model", "seeds", [0, 1])
    stage("train", run)
    proc = stage("imp", run)
    assert "imp level" not in proc.stdout and "starting over" not in proc.stderr
    assert files(run) == files(two_seeds)

    # growing again, stopped after level 2 of the new seeds: resumed to the same bytes
    edit_params(run, "model", "seeds", [0, 1, 2, 3])
    stage("train", run)
    stage("imp", run)
    stop_after_level(run, 2)
    manifest = json.loads((run / "models/imp/manifest.json").read_text())
    # level 3's file held seeds 0, 1 only
    two = json.loads((two_seeds / "models/imp/manifest.json").read_text())
    manifest["levels"]["3"], manifest["files"]["3"] = two["levels"]["3"], two["files"]["3"]
    shutil.copy(two_seeds / "models/imp/level_03.pt", run / "models/imp/level_03.pt")
    (run / "models/imp/manifest.json").write_text(json.dumps(manifest))
    stage("imp", run)
    assert files(run) == files(fresh)


def test_a_seed_whose_dense_net_changed_is_retrained(two_seeds, tmp_path):
    """A seed's levels are tied to its own rows of models/init.pt and models/dense.pt: when
    they differ from those the levels were made from, that seed is trained again."""
    run = tmp_path / "run"
    shutil.copytree(two_seeds, run)
    manifest = json.loads((run / "models/imp/manifest.json").read_text())
    for rows in manifest["levels"].values():  # as if seed 1's levels came from another net
        rows["1"] = "0" * 64
    (run / "models/imp/manifest.json").write_text(json.dumps(manifest))
    proc = stage("imp", run)
    assert "keeping the finished levels of seeds 0; training seeds 1" in proc.stderr
    assert files(run) == files(two_seeds)
