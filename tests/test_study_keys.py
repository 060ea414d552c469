"""Study keys on the wrong pipeline (issue 36): `dvc exp run -S 'study.noise=[0.2]'` on the main
dvc.yaml used to skip every stage and record an experiment showing the main run's metrics. The
params stage declares `study` and stops with one line when a study key is the only change and
the study pipeline has not run it; a study run through studies/dvc.yaml reruns no main output."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import copied, dvc, git, write_params

from pipeline.stages.params import study_problem

STUDY = {"extensions": [0], "iterations": [20], "tasks": ["moons+circles"], "hidden": ["40x40"],
         "init": ["torch_default"], "noise": [0.1], "method": ["rewind"], "weight_decay": [0],
         "bias_init": ["default"]}
MAIN = {"data": {"seed": 0}, "model": {"hidden": [6, 6]}, "train": {}, "prune": {},
        "analysis": {}, "plot": {}}


def locks(root: Path, main: dict | None, study_ran: dict | None) -> Path:
    """dvc.lock's params stage recording `main` (sections), studies/dvc.lock's aggregate stage
    recording `study_ran` (the study section), as DVC writes them; None: no such lock."""
    if main is not None:
        (root / "dvc.lock").write_text(yaml.safe_dump(
            {"schema": "2.0", "stages": {"params": {"cmd": "x", "params": {"params.yaml": main}}}}))
    if study_ran is not None:
        (root / "studies").mkdir(exist_ok=True)
        (root / "studies" / "dvc.lock").write_text(yaml.safe_dump(
            {"schema": "2.0", "stages": {"aggregate": {"cmd": "x", "params": {"params.yaml": {
                "plot.dpi": 110, "study": study_ran}}}}}))
    return root


NOISE = {**STUDY, "noise": [0.2]}
CASES = [
    # (dvc.lock's record, studies/dvc.lock's study, params.yaml now, expected: None | stop | note)
    ("nothing changed", {**MAIN, "study": STUDY}, STUDY, {**MAIN, "study": STUDY}, None),
    ("a study key alone", {**MAIN, "study": STUDY}, STUDY, {**MAIN, "study": NOISE}, "stop"),
    ("a study key alone, no study lock", {**MAIN, "study": STUDY}, None, {**MAIN, "study": NOISE},
     "stop"),
    ("a study key alone, lock from before `study` was declared", MAIN, STUDY,
     {**MAIN, "study": NOISE}, "stop"),
    ("a study key and a main key", {**MAIN, "study": STUDY}, STUDY,
     {**MAIN, "data": {"seed": 1}, "study": NOISE}, "note"),
    ("the study pipeline ran these values", {**MAIN, "study": STUDY}, NOISE,
     {**MAIN, "study": NOISE}, None),
    ("first run: no lock at all", None, None, {**MAIN, "study": NOISE}, None),
    ("first run of dvc.yaml, a study lock of other values", None, STUDY, {**MAIN, "study": NOISE},
     "note"),
    ("a main key alone", {**MAIN, "study": STUDY}, STUDY, {**MAIN, "data": {"seed": 1},
                                                           "study": STUDY}, None),
]


@pytest.mark.parametrize("main, study_ran, now, expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_study_problem_cases(main, study_ran, now, expected, tmp_path):
    problem = study_problem(now, locks(tmp_path, main, study_ran))
    if expected is None:
        assert problem is None
        return
    line, stop = problem
    assert stop == (expected == "stop") and "\n" not in line
    assert "study.noise" in line and "studies/dvc.yaml" in line


def test_study_problem_names_every_changed_key(tmp_path):
    now = {**MAIN, "study": {**STUDY, "noise": [0.2], "hidden": ["6x6"]}}
    line, _ = study_problem(now, locks(tmp_path, {**MAIN, "study": STUDY}, STUDY))
    assert "study.hidden, study.noise changed" in line


def file_hashes(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes()
            for top in ("data", "models", "reports") for p in sorted((repo / top).rglob("*"))
            if p.is_file() and p.name != "params_checked.txt"}


@pytest.fixture
def finished(reproduced_repo, tmp_path) -> Path:
    """A committed tiny run (both locks: the study's is the committed default study's)."""
    repo = copied(reproduced_repo[0], tmp_path / "repo")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "finished")
    return repo


@pytest.mark.e2e
def test_a_study_key_given_to_the_main_pipeline_is_one_line(finished):
    """The field case: one `error:` line pointing to studies/dvc.yaml, no other stage runs, no
    output changes; the same with `dvc repro` after editing the key."""
    before = file_hashes(finished)
    proc = dvc(finished, "exp", "run", "-S", "study.noise=[0.2]", check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "study.noise" in errors[0] and "dvc exp run studies/dvc.yaml" in errors[0]
    assert "Running stage 'params'" in proc.stdout and "Running stage 'generate'" not in proc.stdout
    assert file_hashes(finished) == before
    params = yaml.safe_load((finished / "params.yaml").read_text())
    assert params["study"]["noise"] == [0.2]  # what dvc exp run wrote: `dvc repro` refuses too
    proc = dvc(finished, "repro", check=False)
    assert proc.returncode != 0 and "study.noise" in proc.stderr
    assert file_hashes(finished) == before


@pytest.mark.e2e
def test_a_study_key_beside_a_main_key_runs_with_a_note(finished):
    params = yaml.safe_load((finished / "params.yaml").read_text())
    params["study"]["noise"] = [0.2]
    params["plot"]["dpi"] = 100  # reruns the plot stage only
    write_params(finished, params)
    proc = dvc(finished, "repro")
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "study.noise" in notes[0] and "studies/dvc.yaml" in notes[0]
    assert "Running stage 'plot'" in proc.stdout and "Running stage 'imp'" not in proc.stdout


@pytest.mark.e2e
def test_a_study_run_by_its_pipeline_reruns_no_main_output(finished):
    """`dvc exp run studies/dvc.yaml -S study.…` runs the study pipeline only; afterwards the main
    pipeline's params stage (it declares `study`) is its one changed stage, and `dvc repro`
    reruns that check alone: no main output is remade."""
    before = file_hashes(finished)
    dvc(finished, "exp", "run", "studies/dvc.yaml", "-S", "study.noise=[0.2]",
        "-S", "study.iterations=[2]", "-S", "study.hidden=['6x6']")
    status = json.loads(dvc(finished, "status", "dvc.yaml", "--json").stdout)
    assert list(status) == ["params"], status
    out = dvc(finished, "repro", "dvc.yaml").stdout
    assert "Running stage 'params'" in out
    for stage in ("generate", "trajectory", "train", "learned", "imp", "analyze", "plot"):
        assert f"Running stage '{stage}'" not in out, stage
    assert {k: v for k, v in file_hashes(finished).items()
            if not k.startswith(("reports/study", "models/study"))} \
        == before
    assert json.loads(dvc(finished, "status", "dvc.yaml", "--json").stdout) == {}
