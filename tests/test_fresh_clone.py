"""A fresh clone is clean: after `dvc repro`, every DVC command the README and docs/running.md
show runs without an error or a warning, and `dvc status` (both pipelines) says everything is up to date.

The maintainers' side commits the results of both pipelines (the study's lock included); a
`git clone` of that has no DVC cache and no untracked files, exactly what a user gets.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, copied, dvc

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


@pytest.mark.xdist_group("experiments_repo")
def test_readme_dvc_commands_are_clean_in_a_fresh_clone(experiments_repo, tmp_path):
    """The fresh clone is conftest.experiments_repo (the maintainers ran the study and committed
    it; the clone ran `dvc repro`, committed its results and ran two experiments): the outputs
    of those commands, kept beside it, then the README's commands after them, in a copy of it
    (`dvc exp apply` changes the workspace)."""
    kept = experiments_repo.parent

    def was_clean(name: str, what: str) -> str:  # a command the fixture ran (exit code 0)
        out = (kept / f"{name}.out").read_text()
        problems = DVC_PROBLEM.findall(out)
        assert not problems, f"{what} printed {problems}:\n{out}"
        return out

    was_clean("repro-studies", "dvc repro studies/dvc.yaml")  # the maintainers' side
    was_clean("repro", "dvc repro")
    status = was_clean("status", "dvc status")
    assert status.strip() == UP_TO_DATE, status  # both pipelines, no "not in cache"
    was_clean("long", "dvc exp run -S prune.iterations=3")
    assert "Running stage 'imp'" in was_clean("short", "dvc exp run -S prune.iterations=2")

    clone = copied(experiments_repo, tmp_path / "clone")
    assert (clone / "reports/every_level/network_levels.gif").stat().st_size > 10_000
    shown = clean(dvc(clone, "exp", "show", "--only-changed", "--no-pager", check=False),
                  "dvc exp show")
    assert "short" in shown and "long" in shown
    clean(dvc(clone, "metrics", "diff", "main", check=False), "dvc metrics diff main")
    clean(dvc(clone, "plots", "diff", "main", "-o", str(tmp_path / "plots"), check=False),
          "dvc plots diff main")
    assert (tmp_path / "plots" / "index.html").is_file()
    assert yaml.safe_load((clone / "params.yaml").read_text())["prune"]["iterations"] == 2
    clean(dvc(clone, "exp", "apply", "long", check=False), "dvc exp apply")
    assert yaml.safe_load((clone / "params.yaml").read_text())["prune"]["iterations"] == 3
    status = clean(dvc(clone, "status", "dvc.yaml", check=False), "dvc status dvc.yaml")
    assert status.strip() == UP_TO_DATE, status


def cached_outputs() -> set[str]:
    """Paths of the main pipeline's outputs kept in DVC's cache (not in git): what a clone
    lacks until `dvc repro` (or `dvc pull`) makes them."""
    out = set()
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for entry in stage.get("outs", []) + stage.get("metrics", []):
            path, opts = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            if opts.get("cache", True):
                out.add(path)
    return out


def test_a_clone_of_this_repository_has_nothing_to_rerun(tmp_path):
    """`git clone` of the repository under test (its HEAD: what a user gets). Both locks match
    the committed code, params and git-tracked outputs: `dvc status studies/dvc.yaml` is up to
    date (every output that lock names is in git), and `dvc status` names nothing but the main
    pipeline's cached outputs, which no clone has without a DVC remote ("not in cache", and
    "deleted" where a stage depends on one). Issue 35: studies/dvc.lock was stale at HEAD
    (`modified: pipeline/study.py`), so the study could start in a fresh clone."""
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True,
                         text=True)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT.resolve():
        pytest.skip(f"{ROOT} is not a git checkout: there is no commit to clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    study = clean(dvc(clone, "status", "studies/dvc.yaml", check=False),
                  "dvc status studies/dvc.yaml")
    assert study.strip() == UP_TO_DATE, study
    status = json.loads(dvc(clone, "status", "--json").stdout)
    cached = cached_outputs()

    def cached_path(path: str) -> bool:
        return any(path == o or path.startswith(o.rstrip("/") + "/") for o in cached)

    unexpected = {}
    for stage, changes in status.items():
        for change in changes:
            for kind, paths in (change.items() if isinstance(change, dict) else [(change, {})]):
                allowed = {"changed outs": "not in cache", "changed deps": "deleted"}.get(kind)
                bad = {p: what for p, what in (paths.items() if isinstance(paths, dict) else [])
                       if what != allowed or not cached_path(p)} if allowed else {kind: paths}
                if bad:
                    unexpected.setdefault(stage, {}).update(bad)
    assert not unexpected, f"dvc status in a fresh clone: {unexpected}"
