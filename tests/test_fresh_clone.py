"""A fresh clone is clean: after `dvc repro`, every DVC command the README and docs/running.md
show runs without an error or a warning, and `dvc status` (both pipelines) says everything is up to date.

The maintainers' side commits the results of both pipelines (the study's lock included); a
`git clone` of that has no DVC cache and no untracked files, exactly what a user gets.
"""
from __future__ import annotations

import re
import subprocess

import pytest
from conftest import dvc, git, tiny_params, write_params

pytestmark = pytest.mark.e2e

UP_TO_DATE = "Data and pipelines are up to date."
# DVC's own messages start with these words; the stages' health notes ("train: warning: …" on
# the tiny nets) are part of the product's output, not DVC's
DVC_PROBLEM = re.compile(r"^(WARNING|ERROR)\b|failed to load", re.MULTILINE | re.IGNORECASE)


def clean(proc: subprocess.CompletedProcess, what: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{out}"
    problems = DVC_PROBLEM.findall(out)
    assert not problems, f"{what} printed {problems}:\n{out}"
    return out


def test_readme_dvc_commands_are_clean_in_a_fresh_clone(tiny_repo, tmp_path):
    origin = tiny_repo
    params = tiny_params(**{"prune.iterations": 2})
    params["study"].update({"iterations": [2], "hidden": ["6x6"]})  # the study: one tiny run
    write_params(origin, params)
    git(origin, "branch", "-M", "main")
    # maintainers: run both pipelines and commit what git tracks (the study lock included)
    clean(dvc(origin, "repro", "studies/dvc.yaml", check=False), "dvc repro studies/dvc.yaml")
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "study results")

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    clean(dvc(clone, "repro", check=False), "dvc repro")
    status = clean(dvc(clone, "status", check=False), "dvc status")
    assert status.strip() == UP_TO_DATE, status  # both pipelines, no "not in cache"
    assert (clone / "reports/every_level/network_levels.gif").stat().st_size > 10_000
    git(clone, "add", "-A")  # the maintainers' commit of the main results, so that `main`
    git(clone, "commit", "-qm", "results")  # has metrics and plots to compare with

    out = clean(dvc(clone, "exp", "run", "-S", "prune.iterations=1", "-n", "short",
                    check=False), "dvc exp run")
    assert "Running stage 'imp'" in out
    shown = clean(dvc(clone, "exp", "show", "--only-changed", "--no-pager", check=False),
                  "dvc exp show")
    assert "short" in shown
    clean(dvc(clone, "metrics", "diff", "main", check=False), "dvc metrics diff main")
    clean(dvc(clone, "plots", "diff", "main", "-o", str(tmp_path / "plots"), check=False),
          "dvc plots diff main")
    assert (tmp_path / "plots" / "index.html").is_file()
    clean(dvc(clone, "exp", "apply", "short", check=False), "dvc exp apply")
    assert "iterations: 1" in (clone / "params.yaml").read_text()
    status = clean(dvc(clone, "status", "dvc.yaml", check=False), "dvc status dvc.yaml")
    assert status.strip() == UP_TO_DATE, status
