"""Shared fixtures: tiny params, a temporary copy of the repository, subprocess helpers, and the
tiny runs that many tests read (built once per test run, in whichever pytest-xdist worker asks
first: `shared_folder`)."""
from __future__ import annotations

import copy
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
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


def stages_here(folder: Path, stages: tuple[str, ...]) -> None:
    """`stages` run in this process on folder's params.yaml, each through its run(params, root)
    (as tests/test_learned.py and the study runner run them): for the inputs of a run that a
    test reads but does not test, where a process per stage costs more than its work. The
    stages whose process a test checks run as processes (run_stage)."""
    import importlib

    from pipeline import config

    params = config.load(folder / "params.yaml")
    for stage in stages:
        importlib.import_module(f"pipeline.stages.{stage}").run(params, folder)


def stage_in_process(stage: str, cwd: Path, monkeypatch, capsys,
                     *args: str) -> subprocess.CompletedProcess:
    """`python -m pipeline.stages.<stage> ARGS` in cwd, run in this process (for tables of bad
    inputs, where a process per case costs more than the checks): exit code, stdout and stderr
    as a CompletedProcess. The stage's entry (stages.cli) runs as in its own process; what it
    changes for the process (signal handlers, torch's threads, argv, the current folder) is put
    back. An exception that is not SystemExit propagates: a traceback fails the test, as it
    would fail the process."""
    import importlib
    import signal

    import torch

    from pipeline.stages import cli

    module = importlib.import_module(f"pipeline.stages.{stage}")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [f"pipeline.stages.{stage}", *args])
    capsys.readouterr()
    code = 0
    try:
        cli(module.main)
    except SystemExit as stop:
        code = stop.code
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        torch.set_num_threads(threads)
        monkeypatch.chdir(ROOT)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([stage, *args], code, out, err)


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


DVC_RECORDER = """#!{python}
import json, sys
with open({out!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def with_recorded_dvc(command: list[str], tmp_path: Path, cwd: Path = ROOT
                      ) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run `command` in cwd with `dvc` on PATH a recorder of its arguments (nothing runs):
    (the process, the argument lists of every `dvc` call, in order)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    out = tmp_path / "calls.jsonl"
    out.unlink(missing_ok=True)
    fake = bin_dir / "dvc"
    fake.write_text(DVC_RECORDER.format(python=sys.executable, out=str(out)))
    fake.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
                   f"{os.environ.get('PATH', '')}"}
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    calls = ([json.loads(line) for line in out.read_text().splitlines()] if out.exists()
             else [])
    return proc, calls


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A temporary git + DVC copy of the project with the tiny params, committed."""
    return committed_tiny_repo(tmp_path / "repo")


def committed_tiny_repo(folder: Path) -> Path:
    """A copy of the project in folder with the tiny params, as a git repository, committed."""
    repo = copy_repo(folder)
    write_params(repo, tiny_params())
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny")
    return repo


# ---- tiny runs built once per test run ---------------------------------------------------------
def shared_folder(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that `build` fills once per test run and every test then reads (never writes: a
    test that changes a run works on `copied(...)`). With pytest-xdist the workers share it: the
    first to ask builds it under a lock in the session's temporary folder, the others wait and
    reuse it; a build that failed fails every test that asks for it, with the build's error."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the controller's folder, above every worker's own
    root = base / "shared"
    root.mkdir(exist_ok=True)
    folder, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            raise AssertionError(f"building the shared run {name} failed:\n{failed.read_text()}")
        if not done.exists():
            folder.mkdir()
            try:
                build(folder)
            except BaseException as exc:
                failed.write_text(f"{type(exc).__name__}: {exc}")
                raise
            done.touch()
    return folder


def copied(src: Path, dest: Path) -> Path:
    """A private copy of a shared run (a DVC repository's .dvc/tmp left out: its state database
    is keyed by inode, so DVC rebuilds it for the copy's files)."""
    shutil.copytree(src, dest, symlinks=True,
                    ignore=lambda folder, names: ["tmp"] if Path(folder).name == ".dvc" else [])
    return dest


def run_stages(folder: Path, params: dict, stages: tuple[str, ...]) -> None:
    write_params(folder, params)
    for stage in stages:
        run_stage(stage, folder)


PREPARED = ("generate", "trajectory", "train")
FOUR_LEVELS = {"prune.iterations": 4, "prune.target": 20}  # the resume tests' run


@pytest.fixture(scope="session")
def prepared_run(tmp_path_factory) -> Path:
    """generate + trajectory + train in a plain folder (no DVC): tiny params, 4 levels to 20."""
    return shared_folder(tmp_path_factory, "prepared", lambda folder: run_stages(
        folder, tiny_params(**FOUR_LEVELS), PREPARED))


@pytest.fixture(scope="session")
def imp_run(tmp_path_factory, prepared_run) -> Path:
    """prepared_run with its imp stage run (2 worker processes, the default)."""
    def build(folder: Path) -> None:
        shutil.rmtree(folder)
        copied(prepared_run, folder)
        run_stage("imp", folder)
    return shared_folder(tmp_path_factory, "imp", build)


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory) -> tuple[Path, str]:
    """tiny_repo after `dvc repro` (git: the tiny params committed, the results not), and the
    output of that first `dvc repro`."""
    def build(folder: Path) -> None:
        repo = committed_tiny_repo(folder / "repo")
        (folder / "repro.out").write_text(dvc(repo, "repro").stdout)
    folder = shared_folder(tmp_path_factory, "reproduced", build)
    return folder / "repo", (folder / "repro.out").read_text()


# the study of the maintainers' repository experiments_repo is a clone of: one tiny configuration
CLONED_STUDY = {"iterations": [2], "hidden": ["6x6"]}


@pytest.fixture(scope="session")
def experiments_repo(tmp_path_factory) -> Path:
    """A fresh clone of a tiny repository as a user gets it, reproduced and committed, plus two
    experiments of the whole pipeline, in this order: `long` (3 levels: the committed value, so
    no stage runs — an experiment need not change a value; run after `short`, it ran every
    stage from trajectory on again) and `short` (2 levels).

    The maintainers' side (`origin`, beside it): tiny params with a one-configuration study
    (CLONED_STUDY), `dvc repro studies/dvc.yaml` run and everything git tracks committed (the
    study's lock included); a `git clone` of that has no DVC cache and no untracked files. In
    the clone: `dvc repro`, `dvc status`, the results committed (`main` has metrics and plots to
    compare with), then the experiments. Beside the repository: every DVC command's output,
    stdout then stderr (`repro-studies.out` in origin, `repro.out`, `status.out`, `<name>.out`
    for each experiment; tests/test_fresh_clone.py checks them), and as each experiment
    finished, its metrics.json and seeds.csv (`<name>.metrics.json`, `<name>.seeds.csv`) and
    the names of the level files in models/imp (`<name>.levels`). Its tests share one
    pytest-xdist worker (mark them xdist_group("experiments_repo")): DVC commands in one
    repository take its lock."""
    def build(folder: Path) -> None:
        def kept(name: str, proc: subprocess.CompletedProcess) -> None:
            (folder / f"{name}.out").write_text(proc.stdout + proc.stderr)

        origin = committed_tiny_repo(folder / "origin")
        params = tiny_params()
        assert params["prune"]["iterations"] == 3
        params["study"].update(CLONED_STUDY)
        write_params(origin, params)
        git(origin, "branch", "-M", "main")
        kept("repro-studies", dvc(origin, "repro", "studies/dvc.yaml"))
        git(origin, "add", "-A")
        git(origin, "commit", "-qm", "study results")
        repo = folder / "repo"
        subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True)
        kept("repro", dvc(repo, "repro"))
        kept("status", dvc(repo, "status"))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "results")
        for name, levels in (("long", 3), ("short", 2)):
            kept(name, dvc(repo, "exp", "run", "-S", f"prune.iterations={levels}", "-n", name))
            (folder / f"{name}.levels").write_text("".join(
                f"{p.name}\n" for p in sorted((repo / "models/imp").glob("level_*.pt"))))
            for suffix, path in (("metrics.json", "reports/metrics.json"),
                                 ("seeds.csv", "reports/analysis/seeds.csv")):
                (folder / f"{name}.{suffix}").write_bytes((repo / path).read_bytes())
    return shared_folder(tmp_path_factory, "experiments", build) / "repo"


def digits_beside_moons(seeds: int, density: list[float], max_epochs: int):
    """digits (64 pixels, a 10-class task) beside moons on [66, 48, 24, 11], one network per seed
    under a random mask of the given density (one per network): (params, loss, splits, layout,
    theta0, mask) for the engine's path tests (test_sparse, test_blockdiag)."""
    import torch

    from pipeline import config
    from pipeline.data import build, task_infos
    from pipeline.engine import Split, TaskLoss
    from pipeline.model import Layout, init_population

    params = config.parse({"data": {"n_samples": 300, "tasks": ["digits", "moons"]},
                           "model": {"hidden": [48, 24], "seeds": list(range(seeds))},
                           "train": {"max_epochs": max_epochs, "patience": 3, "lr": 0.01,
                                     "batch_size": 32, "monitor": "per_task"}})
    arrays, _ = build(params.data)
    splits = {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
              for s, a in arrays.items()}
    layout = Layout(tuple(params.base_layers))
    theta0 = init_population(layout, params.model, params.model.seeds)
    mask = torch.rand(theta0.shape, generator=torch.Generator().manual_seed(0)) \
        < torch.tensor(density).unsqueeze(1)
    return params, TaskLoss(task_infos(params.data.tasks)), splits, layout, theta0, mask
