"""Resume by content (issue 36): the imp stage reuses a finished level only when its file is the
one recorded in models/imp/manifest.json (sha256, seeds, P_k per seed). A level file that is
missing, cut short, empty, another level's, another run's, random bytes or a torch file of other
keys is named in one line and made again — the run ends byte for byte as an uninterrupted one.
The stages that read the level files (analyze, plot) and every other file another stage wrote
refuse such a file in one line naming it and the command that makes it again, exit code 2.
"""
from __future__ import annotations

import hashlib
import io as bytes_io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, copied, dvc, stage_in_process
from test_faults import NAME, STUDY_ARGS, finished_run, leftovers, tree

from pipeline import io
from pipeline.imp import load_level, select_seeds


@pytest.fixture(scope="session")
def finished(tmp_path_factory, reproduced_repo) -> Path:
    """Every stage of both pipelines run once (test_faults' shared run): read only."""
    return finished_run(tmp_path_factory, reproduced_repo)


LEVEL = 2  # the damaged level: one before it and two after it in the 4-level tiny run


def run_stage(stage: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"pipeline.stages.{stage}", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True)


def imp_files(run: Path) -> dict[str, str]:
    """sha256 of everything the imp stage writes, its manifest included."""
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("models/imp", "reports/imp") for p in sorted((run / folder).iterdir())}


def torch_bytes(obj) -> bytes:
    buffer = bytes_io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def cut(n):
    return lambda path: path.write_bytes(path.read_bytes()[:n(path.stat().st_size)])


def changed_weight(level: int):
    """Level `level`'s file with one surviving weight changed: a file of another run (or of
    another level of it, when level != LEVEL), readable, with this run's seeds."""
    def damage(path: Path) -> None:
        state = load_level(path.with_name(f"level_{level:02d}.pt"))
        w = state["layers.1.weight"]
        w[state["layers.1.weight_mask"]] += 1.0
        path.write_bytes(torch_bytes(state))
    return damage


LEVEL_DAMAGES = {  # name: (damage of level_02.pt, what the line says about it)
    "missing": (lambda p: p.unlink(), "is missing"),
    "cut to 1 byte": (cut(lambda n: 1), "is damaged (torch.load(weights_only=True) refuses it"),
    "cut to 100 bytes": (cut(lambda n: 100), "is damaged (cut short or overwritten"),
    "cut in half": (cut(lambda n: n // 2), "is damaged (cut short or overwritten"),
    "cut by its last byte": (cut(lambda n: n - 1), "is damaged (cut short or overwritten"),
    "zero bytes": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "swapped with level 1": (lambda p: shutil.copy(p.with_name("level_01.pt"), p),
                             "is a copy of level_01.pt, not the level 2 written"),
    "swapped with level 3": (lambda p: shutil.copy(p.with_name("level_03.pt"), p),
                             "is a copy of level_03.pt, not the level 2 written"),
    "other seeds": (lambda p: p.write_bytes(torch_bytes(select_seeds(load_level(p), [1]))),
                    "holds seeds 1, not the seeds 0, 1 written (another run's file)"),
    "another run's, same seeds": (changed_weight(LEVEL), "has other bytes than the file written"),
    "another run's level 3": (changed_weight(3), "holds networks of 29, 29 parameters, not the "
                                                 "41, 41 written"),
    "random bytes": (lambda p: p.write_bytes(random.Random(0).randbytes(5000)),
                     "is damaged (torch.load(weights_only=True) refuses it: not a file of "
                     "tensors, damaged or foreign)"),
    "torch file, other keys": (lambda p: p.write_bytes(torch_bytes({"weights": torch.ones(3)})),
                               "is damaged (no key seeds)"),
    "torch file, seeds only": (lambda p: p.write_bytes(torch_bytes({"seeds": torch.tensor([0, 1])})),
                               "is not a level file (other keys or shapes)"),
    "not only tensors": (lambda p: p.write_bytes(torch_bytes({"seeds": np.arange(2)})),
                         "is damaged (torch.load(weights_only=True) refuses it"),
}


@pytest.mark.parametrize("case", list(LEVEL_DAMAGES))
def test_a_bad_level_file_is_named_and_made_again(case, imp_run, tmp_path):
    """Each kind of bad level file: one line naming it and why, the level made again, and every
    file (levels, reports, manifest) byte for byte the uninterrupted run's; never a traceback,
    never a silent reuse."""
    run = copied(imp_run, tmp_path / "run")
    damage, said = LEVEL_DAMAGES[case]
    damage(run / f"models/imp/level_{LEVEL:02d}.pt")
    proc = run_stage("imp", run)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("imp: ")]
    assert lines == [f"imp: models/imp/level_02.pt {lines[0].split('level_02.pt ', 1)[1]}"]
    assert said in lines[0] and lines[0].endswith("; making level 2 again"), lines[0]
    assert "weights_only=False" not in proc.stderr
    assert "imp level  2" in proc.stdout and "imp level  1" not in proc.stdout
    assert imp_files(run) == imp_files(imp_run)


def test_several_bad_levels_each_named_and_made_again(imp_run, tmp_path):
    run = copied(imp_run, tmp_path / "run")
    (run / "models/imp/level_00.pt").write_bytes(b"")
    shutil.copy(run / "models/imp/level_04.pt", run / "models/imp/level_01.pt")
    (run / "models/imp/level_03.pt").unlink()
    proc = run_stage("imp", run)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("imp: ")] == [
        "imp: models/imp/level_00.pt is empty (0 bytes); making level 0 again",
        "imp: models/imp/level_01.pt is a copy of level_04.pt, not the level 1 written; "
        "making level 1 again",
        "imp: models/imp/level_03.pt is missing; making level 3 again"]
    assert imp_files(run) == imp_files(imp_run)


def test_a_remade_level_with_other_bytes_remakes_the_levels_after_it(imp_run, tmp_path):
    """The levels after a remade one are kept because they were made from its recorded bytes;
    if the remade file had other bytes (here: a record that never matched), they are made
    again too."""
    run = copied(imp_run, tmp_path / "run")
    path = run / "models/imp/manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["1"]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    proc = run_stage("imp", run)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("imp: ")] == [
        "imp: models/imp/level_01.pt has other bytes than the file written (another run's, or "
        "changed by hand); making level 1 again",
        "imp: level 1 made again differs from the file it replaces; making levels 2, 3, 4 again"]
    assert all(f"imp level  {i}" in proc.stdout for i in (1, 2, 3, 4))
    assert imp_files(run) == imp_files(imp_run)


MANIFEST_DAMAGES = {
    "cut short": (lambda p: p.write_bytes(p.read_bytes()[:50]),
                  "cannot be read (JSONDecodeError)"),
    "not UTF-8": (lambda p: p.write_bytes(b"\xff\xfe" + p.read_bytes()),
                  "cannot be read (UnicodeDecodeError)"),
    "a list": (lambda p: p.write_text("[]\n"), "is malformed (not a JSON object)"),
    "no file records": (lambda p: p.write_text(json.dumps(
        {k: v for k, v in json.loads(p.read_text()).items() if k != "files"})),
        "is malformed (no files)"),
    "bad file record": (lambda p: p.write_text(json.dumps(
        {**json.loads(p.read_text()), "files": {"1": "x"}})),
        "is malformed (a file record without sha256, seeds and params)"),
    "missing": (lambda p: p.unlink(), "missing"),
}


@pytest.mark.parametrize("case", list(MANIFEST_DAMAGES))
def test_a_bad_manifest_starts_over_with_one_line(case, imp_run, tmp_path):
    run = copied(imp_run, tmp_path / "run")
    damage, said = MANIFEST_DAMAGES[case]
    damage(run / "models/imp/manifest.json")
    proc = run_stage("imp", run)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("imp: ")] == [
        f"imp: models/imp/manifest.json {said}; starting over"]
    assert imp_files(run) == imp_files(imp_run)


def test_a_bad_level_file_in_a_study_work_folder_is_made_again(finished, tmp_path):
    """Study configurations resume through the same manifest: a damaged level file in the work
    folder is named and made again, and the configuration's results are unchanged."""
    run = copied(finished, tmp_path / "run")
    work = Path("models/study") / NAME
    (run / work / "models/imp/level_01.pt").write_bytes(b"\0" * 100)
    before = tree(run / "reports/study/runs" / NAME)
    proc = run_stage("study_run", run, *STUDY_ARGS)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert (f"imp: {work}/models/imp/level_01.pt is damaged (torch.load(weights_only=True) "
            "refuses it: not a file of tensors, damaged or foreign); making level 1 again"
            in proc.stderr.splitlines()), proc.stderr
    assert tree(run / "reports/study/runs" / NAME) == before
    assert tree(run / work / "models/imp") == tree(finished / work / "models/imp")


# ---- files of another stage: one line naming the file and how to make it again, exit 2 --------
def _root(path: Path) -> Path:
    """The run folder of a file in it (the folder holding params.yaml)."""
    return next(p for p in path.parents if (p / "params.yaml").exists())


def rows_of_seed_1(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    path.write_bytes(torch_bytes({k: v[1:].clone() for k, v in state.items()}))


def wrong_keys(path: Path) -> None:
    """A valid file of the same format with other keys (columns)."""
    if path.suffix == ".pt":
        data = torch_bytes({"weights": torch.ones(3)})
    elif path.suffix == ".json":
        data = b'{"other": 1}\n'
    elif path.suffix == ".csv":
        data = b"a,b\n1,2\n"
    else:
        buffer = bytes_io.BytesIO()
        np.savez(buffer, other=np.ones(3))
        data = buffer.getvalue()
    path.write_bytes(data)


DAMAGES = {
    "cut to 1 byte": cut(lambda n: 1),
    "cut in half": cut(lambda n: n // 2),
    "cut by its last byte": cut(lambda n: n - 1),
    "zero bytes": lambda p: p.write_bytes(b""),
    "random bytes": lambda p: p.write_bytes(random.Random(1).randbytes(3000)),
    "other keys": wrong_keys,
    "other seeds": rows_of_seed_1,
    "another table": lambda p: shutil.copy(_root(p) / "reports/imp/curves.csv", p),
    "level 1's file": lambda p: shutil.copy(p.with_name("level_01.pt"), p),
}
ALL = ("cut to 1 byte", "cut in half", "cut by its last byte", "zero bytes", "random bytes",
       "other keys")
READ_CASES = [  # (stage, file it reads that another stage wrote, damages)
    ("imp", "models/dense.pt", (*ALL, "other seeds")),
    ("imp", "models/init.pt", ("cut in half", "other keys", "other seeds")),
    ("learned", "models/dense.pt", ("other keys", "other seeds")),
    ("analyze", "models/init.pt", ("random bytes", "other keys")),
    ("train", "data/train.npz", ("cut by its last byte", "random bytes", "other keys")),
    ("analyze", "data/test.npz", ("other keys",)),
    ("trajectory", "data/tasks.json", ("cut in half", "other keys")),
    ("train", "data/tasks.json", ("other keys",)),
    ("imp", "models/shape.json", ("zero bytes", "other keys")),
    ("imp", "reports/trajectory.csv", ("cut by its last byte", "other keys", "another table")),
    ("analyze", "reports/imp/levels.csv", ("other keys", "another table")),
    ("analyze", "reports/learned.json", ("other keys",)),
    ("analyze", f"models/imp/level_0{LEVEL}.pt", ("level 1's file", "cut in half", "other keys")),
    ("plot", "models/imp/level_01.pt", ("other seeds", "random bytes")),
    ("plot", "reports/analysis/seeds.csv", ("cut by its last byte", "another table")),
    ("plot", "reports/analysis/levels.csv", ("another table",)),
    ("plot", "reports/imp/curves.csv", ("other keys",)),
    ("plot", "reports/metrics.json", ("other keys", "random bytes")),
]
CASES = [(stage, name, damage) for stage, name, damages in READ_CASES for damage in damages]


@pytest.mark.parametrize("stage, name, damage", CASES,
                         ids=[f"{s}-{n}-{d}" for s, n, d in CASES])
def test_a_bad_file_of_another_stage_is_one_line_naming_it(stage, name, damage, finished,
                                                           tmp_path, monkeypatch, capsys):
    """A file another stage wrote, damaged or replaced: exit 2, one line naming it, why, and
    the command that makes it again (`dvc repro -f -s <stage that writes it>`, then `dvc repro`;
    DVC reruns that stage by itself when it sees the change); no traceback, nothing written."""
    run = copied(finished, tmp_path / "run")
    DAMAGES[damage](run / name)
    before = tree(run)
    proc = stage_in_process(stage, run, monkeypatch, capsys)  # one case through a process: below
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {name} ") and "weights_only=False" not in proc.stderr, last
    assert last.endswith(f"; {io.remake_hint(name)}"), last
    assert io.remake_hint(name).startswith("the ") and "`dvc repro -f -s " in last
    assert tree(run) == before and leftovers(run) == []


def test_a_bad_file_of_another_stage_is_one_line_from_the_stage_process_too(finished, tmp_path):
    """One case of the table above through `python -m pipeline.stages.imp` (exit code and
    streams of a real process)."""
    run = copied(finished, tmp_path / "run")
    DAMAGES["cut in half"](run / "models/dense.pt")
    before = tree(run)
    proc = run_stage("imp", run)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: models/dense.pt ")
    assert tree(run) == before and leftovers(run) == []


def test_field_cases_end_in_a_correct_redo_under_dvc(reproduced_repo, tmp_path):
    """The issue's two field cases with `dvc repro`: a level file replaced by another level's
    (was: silently reused, wrong P_k in dvc.lock) and one cut to 20000 bytes (was: an OSError
    traceback on every `dvc repro`; here cut in half: the tiny run's files are smaller). Now
    each is named, made again, and everything ends byte for byte as before with `dvc status`
    clean."""
    repo = copied(reproduced_repo[0], tmp_path / "repo")
    outputs = ("models/imp", "reports/imp", "reports/analysis", "reports/metrics.json")
    before = {out: tree(repo / out) if (repo / out).is_dir() else
              hashlib.sha256((repo / out).read_bytes()).hexdigest() for out in outputs}
    imp = repo / "models/imp"
    for damage, said in ((lambda: shutil.copy(imp / "level_01.pt", imp / "level_02.pt"),
                          "is a copy of level_01.pt, not the level 2 written"),
                         (lambda: (imp / "level_02.pt").write_bytes(
                             (imp / "level_02.pt").read_bytes()[:5000]), "is damaged (")):
        damage()
        proc = dvc(repo, "repro")
        lines = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines()
                 if line.startswith("imp: models/imp/level_02.pt")]
        assert len(lines) == 1 and said in lines[0], proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        after = {out: tree(repo / out) if (repo / out).is_dir() else
                 hashlib.sha256((repo / out).read_bytes()).hexdigest() for out in outputs}
        assert after == before
        assert "up to date" in dvc(repo, "status", "dvc.yaml").stdout
