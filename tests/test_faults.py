"""Faults a user meets around the stages (issue 25), each a family of inputs with a test:

- a write that fails (file size limit, read-only folder) in any stage: one line naming the
  output, exit code 2, the previous version or nothing left, no temporary file published;
- Ctrl+C / SIGTERM in any stage: one line, exit 130 / 143, no traceback, no orphaned worker,
  and the resumed run is byte for byte the uninterrupted one;
- a rewind point past a seed's dense training: refused before IMP with one line;
- a trajectory with a level that removes no parameter: refused by the params checks (main run
  and studies) with one line naming the keys.
"""
from __future__ import annotations

import copy
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, shared_folder, stage_in_process, stages_here, tiny_params, write_params

from pipeline import config, io

# One pytest-xdist worker runs this file: it builds the shared runs (`finished`, `longer`) and
# reads them; spread over two workers, both asked for `finished` at once and one waited idle
# for the other's build (groups are handed out first, before any other test).
pytestmark = pytest.mark.xdist_group("finished")

MAIN = ("generate", "trajectory", "train", "imp", "analyze", "plot")
STUDY = {"extensions": 0, "iterations": 2, "tasks": "moons+circles", "hidden": "6x6",
         "init": "torch_default", "noise": 0.1}
NAME = config.configuration_name(STUDY)
STUDY_ARGS = ["--work", f"models/study/{NAME}", "--out", f"reports/study/runs/{NAME}",
              *[f"--{k}={v}" for k, v in STUDY.items()]]
# what each stage writes (relative to the run folder)
OUTPUTS = {
    "generate": ["data"],
    "trajectory": ["models/shape.json", "reports/trajectory.csv"],
    "train": ["models/init.pt", "models/dense.pt"],
    "imp": ["models/imp", "reports/imp"],
    "analyze": ["reports/analysis", "reports/plots/levels.csv", "reports/metrics.json"],
    "plot": ["reports/figures", "reports/every_level", "reports/report.md",
             "reports/plots/curves.csv"],
    "study_run": [f"models/study/{NAME}", f"reports/study/runs/{NAME}"],
    "aggregate": [f"reports/study/{n}" for n in ("tidy.csv", "seeds.csv", "summary.csv",
                                                 "metrics.json", "figures")],
}
TEMP = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$|^\..+\.old$")


def command(stage: str) -> list[str]:
    return [sys.executable, "-m", f"pipeline.stages.{stage}",
            *(STUDY_ARGS if stage == "study_run" else [])]


def env(root: Path = ROOT) -> dict:
    return {**os.environ, "PYTHONPATH": str(root)}


def tree(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under folder (params.yaml included)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def leftovers(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if TEMP.match(p.name)]


def build_finished(folder: Path, main_run: Path) -> None:
    """Every stage of both pipelines run once in `folder` on tiny params (one tiny study
    configuration). The main pipeline's outputs are main_run's, copied (conftest.reproduced_repo:
    `dvc repro` of the same tiny params, but for the `study` section, which no main stage reads
    but `params`: tests/test_dag.py), not made a second time; the study's stages run here."""
    params = tiny_params(**{"train.workers": 2})
    params["study"] = {axis: [value] for axis, value in STUDY.items()}
    made_with = yaml.safe_load((main_run / "params.yaml").read_text())
    assert {**made_with, "study": None} == {**params, "study": None}
    assert not (main_run / "reports/study").exists() and not (main_run / "models/study").exists()
    write_params(folder, params)
    for top in ("data", "models", "reports"):  # DVC's .gitignore files aside
        shutil.copytree(main_run / top, folder / top, ignore=shutil.ignore_patterns(".gitignore"))
    (folder / "reports/params_checked.txt").unlink()  # the params stage's: it reads `study`
    for stage in ("study_run", "aggregate"):
        proc = subprocess.run(command(stage), cwd=folder, env=env(), capture_output=True,
                              text=True)
        assert proc.returncode == 0, f"{stage}:\n{proc.stderr}"


def finished_run(tmp_path_factory, reproduced_repo) -> Path:
    """build_finished's run, built once per test run (in whichever pytest-xdist worker asks
    first) for the `finished` fixtures here, in tests/test_resume_content.py and in
    tests/test_params_changed.py: read only, tests copy it."""
    return shared_folder(tmp_path_factory, "finished",
                         lambda folder: build_finished(folder, reproduced_repo[0]))


@pytest.fixture(scope="session")
def finished(tmp_path_factory, reproduced_repo) -> Path:
    return finished_run(tmp_path_factory, reproduced_repo)


def limited(limit: int):
    """preexec_fn: files may grow to `limit` bytes; a larger write fails with EFBIG (SIGXFSZ
    ignored, as `ulimit -f` in a shell that ignores it; its default would kill the process)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def largest_output(folder: Path, stage: str) -> int:
    sizes = [p.stat().st_size for out in OUTPUTS[stage] for p in
             ([folder / out] if (folder / out).is_file() else (folder / out).rglob("*"))
             if p.is_file()]
    return max(sizes)


def assert_one_line_naming_an_output(proc, stage: str) -> None:
    """(The stage's own warnings before it, like train's health lines, may precede it.)"""
    errors = [line for line in proc.stderr.strip().splitlines() if line.startswith("error")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    assert errors[0].startswith("error: cannot write "), errors
    named = errors[0][len("error: cannot write "):].split(":")[0]
    assert any(named == out or named.startswith(out + "/") for out in OUTPUTS[stage]), named
    assert ".tmp" not in named


# ---- failed writes ------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", [*MAIN, "study_run", "aggregate"])
def test_failed_write_keeps_the_previous_version(stage, finished, tmp_path):
    """Files limited to half the stage's largest output (a write cut off in the middle, as
    `ulimit -f` or a full disk does it): one line naming the output, exit 2, and every file as
    it was before (the rerun would write the same bytes); no temporary file anywhere. For imp,
    its last level file is missing: it is recomputed, fails, and stays missing."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    if stage == "imp":
        (run / "models/imp/level_03.pt").unlink()
    before = tree(run)
    proc = subprocess.run(command(stage), cwd=run, env=env(), capture_output=True, text=True,
                          preexec_fn=limited(largest_output(finished, stage) // 2))
    assert_one_line_naming_an_output(proc, stage)
    assert tree(run) == before
    assert leftovers(run) == []


@pytest.mark.parametrize("stage", ["imp", "plot"])
def test_failed_write_without_a_previous_version_leaves_nothing_half_written(stage, finished,
                                                                             tmp_path):
    """The stage's outputs removed first: after the failed write each output file is either
    absent or complete (equal to the finished run's), and no temporary file is left inside the
    output folders DVC would cache. (imp's manifest, complete too, lists what is finished.)"""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for out in OUTPUTS[stage]:
        target = run / out
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    reference = tree(finished)
    proc = subprocess.run(command(stage), cwd=run, env=env(), capture_output=True, text=True,
                          preexec_fn=limited(largest_output(finished, stage) // 2))
    assert_one_line_naming_an_output(proc, stage)
    after = tree(run)
    after.pop("models/imp/manifest.json", None)
    assert all(reference.get(path) == digest for path, digest in after.items()), \
        [p for p, d in after.items() if reference.get(p) != d]
    assert leftovers(run) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_one_line(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = tree(run)
    (run / "reports/figures").chmod(0o555)
    try:
        proc = subprocess.run(command("plot"), cwd=run, env=env(), capture_output=True,
                              text=True)
    finally:
        (run / "reports/figures").chmod(0o755)
    assert_one_line_naming_an_output(proc, "plot")
    assert tree(run) == before


def test_leftovers_of_a_killed_write_are_never_published(finished, tmp_path):
    """A temporary file a SIGKILLed write left inside an output folder is removed by the next
    run of the stage, before DVC caches the folder."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for out in ("models/imp/.level_02.pt.abcd1234.tmp", "reports/figures/.split.png.x1y2z3w4.tmp"):
        (run / out).write_bytes(b"half a file")
    for stage in ("imp", "plot"):
        proc = subprocess.run(command(stage), cwd=run, env=env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert leftovers(run) == []
    assert tree(run) == tree(finished)


# ---- interrupts ---------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    """PIDs whose parent is pid (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1]
                                            .split()[1]) == pid:
                out.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def finished_level(run: Path, level: int) -> bool:
    """The imp stage's manifest lists `level` as finished (its file is written before)."""
    import json
    try:
        manifest = json.loads((run / "models/imp/manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return str(level) in manifest.get("levels", {})


def wait_for(condition, seconds: float = 120) -> bool:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="session")
def longer(tmp_path_factory) -> tuple[Path, dict]:
    """generate, trajectory and train done for a 6-level run with 2 worker processes (in this
    process: conftest.stages_here), and the uninterrupted imp stage's files (shared: read only,
    tests copy it)."""
    def build(folder: Path) -> None:
        prepared = folder / "prepared"
        prepared.mkdir()
        write_params(prepared, tiny_params(**{"train.workers": 2, "prune.iterations": 6,
                                              "prune.target": 20, "model.seeds": [0, 1, 2, 3]}))
        stages_here(prepared, ("generate", "trajectory", "train"))
        reference = folder / "reference"
        shutil.copytree(prepared, reference)
        subprocess.run(command("imp"), cwd=reference, env=env(), check=True, capture_output=True)
    folder = shared_folder(tmp_path_factory, "longer", build)
    reference = folder / "reference"
    return folder / "prepared", tree(reference / "models/imp") | tree(reference / "reports/imp")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_imp_is_one_line_leaves_no_worker_and_resumes_exactly(how, longer, tmp_path):
    """Ctrl+C (SIGINT to the whole process group, workers included) or SIGTERM (to the stage
    only, as a supervisor sends it) after the first level: one line, exit 130 / 143, no
    traceback from the stage or its workers, no worker left; a rerun gives the uninterrupted
    files byte for byte."""
    prepared, reference = longer
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    proc = subprocess.Popen(command("imp"), cwd=run, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert wait_for(lambda: finished_level(run, 1))
    workers = children(proc.pid)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if how == "ctrl-c" else 143), err
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(r"imp: interrupted after level \d+; `dvc repro` resumes.*", lines[0])
    assert wait_for(lambda: not alive(workers), seconds=10), alive(workers)
    assert leftovers(run) == []
    subprocess.run(command("imp"), cwd=run, env=env(), check=True, capture_output=True)
    assert tree(run / "models/imp") | tree(run / "reports/imp") == reference


def test_workers_die_with_a_killed_stage(longer, tmp_path):
    """`kill -9` of the stage (no handler can run): its pool workers die with it
    (PR_SET_PDEATHSIG in imp._die_with_parent) instead of waiting for work for ever."""
    prepared, _ = longer
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    proc = subprocess.Popen(command("imp"), cwd=run, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert wait_for(lambda: (run / "models/imp/level_01.pt").exists())
    workers = children(proc.pid)
    assert len(workers) == 2, workers
    proc.kill()
    proc.wait()
    assert wait_for(lambda: not alive(workers), seconds=10), alive(workers)


@pytest.mark.parametrize("stage", ["train", "analyze"])
def test_interrupted_stage_without_levels_is_one_line(stage, finished, tmp_path):
    """SIGTERM at any moment of another stage (importing, computing): one line, exit 143, and
    its outputs as they were (nothing half-written). The one line comes after whatever the
    stage had printed by then in an uninterrupted run (train warns of max_epochs once its
    networks are trained), so those lines are its only company."""
    normal = tmp_path / "normal"
    shutil.copytree(finished, normal)
    plain = subprocess.run(command(stage), cwd=normal, env=env(), capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = tree(run)
    proc = subprocess.Popen(command(stage), cwd=run, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the stage finished before the signal")
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert "interrupted" in lines[-1] and "Traceback" not in err, err
    assert lines[:-1] == plain.stderr.strip().splitlines()[:len(lines) - 1], err
    assert tree(run) == before and leftovers(run) == []


# ---- rewind past the dense stop ------------------------------------------------------------------
def test_rewind_past_a_seeds_dense_training_is_refused_before_imp(finished, tmp_path):
    """prune.rewind larger than the epochs some seed's dense net trained (early stopping): the
    train stage refuses before writing anything, naming the key, the seeds and their epochs,
    and points to fine-tuning; the imp stage refuses the same for dense nets trained earlier."""
    import torch

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    epochs = torch.load(run / "models/dense.pt", weights_only=True)["metrics.epochs"].tolist()
    rewind = min(epochs) + 1
    short = [s for s, e in zip([0, 1], epochs) if e < rewind]
    params = yaml.safe_load((run / "params.yaml").read_text())
    params["prune"]["rewind"] = rewind
    write_params(run, params)
    before = tree(run)
    for stage in ("train", "imp"):
        proc = subprocess.run(command(stage), cwd=run, env=env(), capture_output=True, text=True)
        lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error")]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert lines[0].startswith(f"error: prune.rewind: {rewind} is not allowed")
        assert all(f"seed {s} ran {epochs[s]}" in lines[0] for s in short), lines[0]
        assert "prune.method: finetune" in lines[0]
        assert tree(run) == before
    # a rewind point every seed reached is accepted
    params["prune"]["rewind"] = min(epochs)
    write_params(run, params)
    proc = subprocess.run(command("train"), cwd=run, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---- degenerate trajectories ---------------------------------------------------------------------
def params_with(hidden=(16, 16), **prune) -> dict:
    raw = copy.deepcopy(tiny_params())
    raw["model"]["hidden"] = list(hidden)  # moons + circles: P_0 = 386 with biases
    raw["prune"].update({"target": None, "rate": None, "extensions": 0, **prune})
    return raw


# (case, prune keys, keys the line must name, the level that repeats)
DEGENERATE = [
    ("target P_0 - 1 over 5 levels (the issue's case)", {"target": 385, "iterations": 5},
     "prune.target, prune.iterations", 1),
    ("target a few below P_0, many levels", {"target": 380, "iterations": 10},
     "prune.target, prune.iterations", None),
    ("target far below, so many levels that rounding repeats at the end",
     {"target": 3, "iterations": 40}, "prune.target, prune.iterations", None),
    ("rate so small that rounding repeats", {"rate": 0.001, "iterations": 5},
     "prune.rate, prune.iterations", 1),
    ("rate that repeats a small count near the end (..., 2, 1, 1)",
     {"rate": 0.3, "iterations": 17}, "prune.rate, prune.iterations", 17),
    ("extension whose extended net rounds to the base width", {"rate": 0.01, "iterations": 3,
                                                              "extensions": 1},
     "prune.extensions, prune.rate, prune.iterations", 0),
    ("an extension whose count rounds equal to P_0 (target given)",
     {"target": 370, "iterations": 5, "extensions": 1},
     "prune.extensions, prune.target, prune.iterations", 0),
    ("two extensions: the width-rounded extended net is below the next level",
     {"rate": 0.01, "iterations": 3, "extensions": 2},
     "prune.extensions, prune.rate, prune.iterations", -1),
    ("weights only (P_0 = 352), target P_0 - 2 over 4 levels",
     {"target": 350, "iterations": 4, "biases": False}, "prune.target, prune.iterations", 2),
]


def repeats(counts: list[int]) -> bool:
    return any(b >= a for a, b in zip(counts[:-1], counts[1:]))


@pytest.mark.parametrize("case,prune,keys,level", DEGENERATE, ids=[c[0] for c in DEGENERATE])
def test_trajectory_with_a_level_that_prunes_nothing_is_refused(case, prune, keys, level):
    from pipeline import trajectory as traj

    raw = params_with(**prune)
    # the case is degenerate indeed (computed without the validator)
    base = [raw["data"]["tasks"], raw["model"]["hidden"]]
    assert base == [["moons", "circles"], [16, 16]]
    plan = traj.plan(4, 2, [16, 16], prune["iterations"], prune.get("target"), prune.get("rate"),
                     prune.get("extensions", 0), prune.get("biases", True))
    assert repeats(plan.params), plan.params
    with pytest.raises(config.ConfigError) as err:
        config.parse(raw)
    line = str(err.value)
    assert "\n" not in line and line.startswith(keys + ": ")
    first = next(lv for lv, a, b in zip(plan.levels[1:], plan.params, plan.params[1:]) if b >= a)
    assert f"level {first} would keep" in line
    if level is not None:
        assert first == level


@pytest.mark.parametrize("prune", [{"target": 381, "iterations": 5}, {"rate": 0.3, "iterations": 13},
                                   {"target": 50, "iterations": 20, "extensions": 3},
                                   {"target": 1, "iterations": 8}])
def test_the_fix_a_refusal_suggests_is_accepted_and_strict_trajectories_pass(prune):
    """The boundary: these trajectories remove at least one parameter at every level."""
    params = config.parse(params_with(**prune))
    assert not repeats(params.trajectory().params)


def test_refusal_suggests_a_working_value():
    with pytest.raises(config.ConfigError) as err:
        config.parse(params_with(target=385, iterations=5))
    suggested = int(re.search(r"a target of at most (\d+) for 5 levels", str(err.value))[1])
    ok = config.parse(params_with(target=suggested, iterations=5))
    assert not repeats(ok.trajectory().params)
    with pytest.raises(config.ConfigError):
        config.parse(params_with(target=suggested + 1, iterations=5))


def test_study_configuration_with_a_degenerate_trajectory_is_refused():
    """A study axis can make one configuration degenerate (more levels to the same target):
    the study check names the configuration and the keys."""
    raw = params_with(target=300, iterations=5)
    config.parse(raw)
    raw["study"] = {"extensions": [0], "iterations": [5, 100], "tasks": ["moons+circles"],
                    "hidden": ["16x16"], "init": ["torch_default"], "noise": [0.1]}
    with pytest.raises(config.ConfigError) as err:
        config.parse(raw, study=True)
    assert str(err.value).startswith("study configuration ext0-it100-")
    assert "prune.target, prune.iterations: level" in str(err.value)


def test_degenerate_trajectory_stops_the_stage_with_one_line(tmp_path):
    write_params(tmp_path, params_with(target=385, iterations=5))
    proc = subprocess.run(command("trajectory"), cwd=tmp_path, env=env(), capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: prune.target, prune.iterations: level 1 would keep 386")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# ---- a signal after the stage's work is done -----------------------------------------------------
LATE_SIGNAL_STAGE = """
import atexit, pathlib, sys, time
from pipeline.stages import cli
def main():
    pathlib.Path("written").write_text("done")
# Python's shutdown after main() (torch unloading takes tenths of a second): the signal lands here.
atexit.register(lambda: (pathlib.Path("exiting").write_text("1"), time.sleep(1)))
cli(main)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_once_the_outputs_are_written_leaves_a_finished_stage(sig, tmp_path):
    """SIGTERM or Ctrl+C arriving after a stage wrote its outputs, while Python shuts down: the
    stage exits 0 without a traceback (its work is complete), never -15 / -2 (killed by the
    default action, which Python's shutdown restores for handled signals) nor a traceback from
    the handler raising in an exit hook. Found by CI: train signalled at 1.5 s, as it exited."""
    proc = subprocess.Popen([sys.executable, "-c", LATE_SIGNAL_STAGE], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (tmp_path / "exiting").exists(), seconds=60)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == "", (proc.returncode, err)
    assert (tmp_path / "written").read_text() == "done"


# ---- a damaged input file ------------------------------------------------------------------------
DAMAGES = {
    "truncated": lambda b: b[: len(b) // 3],
    "garbage": lambda b: b"garbage\n",
    "empty": lambda b: b"",
}
DAMAGED_CASES = [  # (stage that reads it, file, damage): every kind of file the stages load,
    # each kind of damage on the level file (the reported case), one each on the others
    ("analyze", "models/imp/level_02.pt", "truncated"),   # a level file (torch, zip)
    ("analyze", "models/imp/level_02.pt", "garbage"),
    ("analyze", "models/imp/level_02.pt", "empty"),
    ("analyze", "models/init.pt", "garbage"),
    ("imp", "models/dense.pt", "truncated"),
    ("train", "data/train.npz", "truncated"),
    ("analyze", "data/test.npz", "empty"),
    ("trajectory", "data/tasks.json", "truncated"),       # json
    ("train", "models/shape.json", "garbage"),
    ("plot", "reports/analysis/coverage.npz", "garbage"),
    ("analyze", "reports/imp/levels.csv", "truncated"),     # tables: cut short mid-row,
    ("plot", "reports/analysis/levels.csv", "garbage"),      # overwritten (no seed column),
    ("plot", "reports/imp/curves.csv", "empty"),             # emptied
    ("aggregate", f"reports/study/runs/{NAME}/levels.csv", "truncated"),
]


@pytest.mark.parametrize("stage, name, damage", DAMAGED_CASES,
                         ids=[f"{n}-{d}" for _, n, d in DAMAGED_CASES])
def test_a_damaged_input_is_one_line_naming_it(stage, name, damage, finished, tmp_path,
                                              monkeypatch, capsys):
    """A truncated, overwritten or emptied input of a stage: one line naming the file and how to
    remake it, exit 2, no traceback, nothing else written (found: a truncated level file ended
    the analyze stage in torch's PytorchStreamReader traceback). The reported case runs the
    stage's own process; the others run it in this one (conftest.stage_in_process)."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    path = run / name
    path.write_bytes(DAMAGES[damage](path.read_bytes()))
    before = tree(run)
    if (stage, name, damage) == DAMAGED_CASES[0]:
        proc = subprocess.run(command(stage), cwd=run, env=env(), capture_output=True, text=True)
    else:
        proc = stage_in_process(stage, run, monkeypatch, capsys)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) >= 1, proc.stderr
    # a level file is checked against the imp stage's manifest (pipeline.imp.level_problem)
    said = "is empty" if "level_" in name and damage == "empty" else "is damaged"
    assert lines[-1].startswith(f"error: {name} {said}") and "(" in lines[-1], proc.stderr
    assert lines[-1].endswith(f"; {io.remake_hint(name)}"), proc.stderr
    assert tree(run) == before and leftovers(run) == []
