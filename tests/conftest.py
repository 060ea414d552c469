"""Shared fixtures: tiny params, a temporary copy of the repository, subprocess helpers."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {"GIT_AUTHOR_NAME": "ticketsplit tests", "GIT_AUTHOR_EMAIL": "tests@ticketsplit.invalid",
           "GIT_COMMITTER_NAME": "ticketsplit tests",
           "GIT_COMMITTER_EMAIL": "tests@ticketsplit.invalid"}

# A run small enough for end-to-end tests: 2 tasks, 2 seeds, width 6, 3 levels.
TINY = {
    "data": {"tasks": ["moons", "circles"], "n_samples": 120, "noise": 0.1},
    "model": {"hidden": [6, 6], "seeds": [0, 1]},
    "train": {"max_epochs": 60, "patience": 5, "lr": 0.01},
    "prune": {"iterations": 3, "target": 30},
    "plot": {"draw_seed": 0},
}


def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny_params(**overrides) -> dict:
    """The repository's params.yaml with TINY applied, then `overrides` ({'sec.key': value})."""
    params = default_params()
    for section, values in TINY.items():
        params[section].update(copy.deepcopy(values))
    for key, value in overrides.items():
        section, name = key.split(".")
        params[section][name] = value
    return params


def write_params(folder: Path, params: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_stage(stage: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", f"pipeline.stages.{stage}"], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"stage {stage} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def copy_repo(dest: Path) -> Path:
    """Tracked project files (no data/models/reports) copied into dest, as a fresh git + dvc repo."""
    for name in ("pipeline", "studies", "dvc.yaml", "params.yaml", ".dvc", ".dvcignore", ".gitignore",
                 "pyproject.toml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(
                "__pycache__", "tmp", "cache"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **GIT_ENV, "PYTHONPATH": str(ROOT), "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A temporary git + DVC copy of the project with the tiny params, committed."""
    repo = copy_repo(tmp_path / "repo")
    write_params(repo, tiny_params())
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny")
    return repo
