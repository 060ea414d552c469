"""Every argument validated before work starts (issue 36): each params key is bounded by what
the library it reaches accepts, and each command-line argument of pipeline.sweep,
pipeline.baseline and docs/runs/*.py is checked; a wrong value is one line naming it and what is
allowed, exit code 2, no traceback, nothing written. For each, a value at the boundary is
accepted. (The type, range and cross-key checks from before: tests/test_config.py.)"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_stage, stage_in_process, stages_here, tiny_params, write_params
from test_results_files import load  # docs/runs/<name>.py as a module

from pipeline import config
from pipeline.stages import out_of_memory

F32 = config.MAX_FLOAT
WIDEST = (config.MAX_PARAMS - 2) // 7  # [4, w, 2] has 7 w + 2 parameters

# (key, wrong value, the key the line names); each wrong value once reached a library unchecked
WRONG = [
    ("data.seed", 2**32, "data.seed"),              # sklearn's random_state: the field case
    ("data.seed", 10**30, "data.seed"),
    ("data.n_samples", 10**8 + 1, "data.n_samples"),  # numpy: 3.6 TiB, or "array is too big"
    ("data.n_samples", 2**62, "data.n_samples"),
    ("data.noise", 1e39, "data.noise"),              # float32: inf
    ("data.circles_factor", 1e39, "data.circles_factor"),
    ("model.hidden", [2**63, 6], "model.hidden[0]"),
    ("model.hidden", [WIDEST + 1], "model.hidden"),  # level files: int32 positions
    ("model.init_std", 1e39, "model.init_std"),
    ("model.bias_std", 1e39, "model.bias_std"),
    ("train.lr", F32 / 10 * 1.01, "train.lr"),       # Adam: 10 · lr in float32 overflowed
    ("train.lr", 1e300, "train.lr"),
    ("train.weight_decay", 1e39, "train.weight_decay"),  # torch: float overflow
    ("train.min_delta", 1e39, "train.min_delta"),
    ("train.loss_cutoff", 1e39, "train.loss_cutoff"),
    ("train.batch_size", 2**63, "train.batch_size"),
    ("train.max_epochs", 2**63, "train.max_epochs"),
    ("train.patience", 2**63, "train.patience"),
    ("prune.iterations", 10**6, "prune.iterations"),  # validation itself hung
    ("prune.extensions", 10**6, "prune.extensions"),  # ZeroDivisionError in the widths
    ("prune.extensions", 60, "prune.extensions"),     # a 1e11-parameter net
    ("prune.rate", 1e39, "prune.rate"),
    ("study.noise", [1e39], "study.noise[0]"),
    ("study.weight_decay", [1e39], "study.weight_decay[0]"),
]


def _id(case) -> str:
    return f"{case[0]}={case[1]!r:.16}"


@pytest.mark.parametrize("key, value, named", WRONG, ids=[_id(c) for c in WRONG])
def test_a_value_beyond_what_the_libraries_accept_is_one_line(key, value, named, tmp_path,
                                                              monkeypatch, capsys):
    """The params stage (first in the DAG) stops with one line, exit 2, writing nothing (run in
    this process; tests/test_config.py's study table runs stage processes)."""
    params = tiny_params()
    if key == "prune.rate":
        params["prune"]["target"] = None
    section, name = key.split(".")
    params[section][name] = value
    write_params(tmp_path, params)
    proc = stage_in_process("params", tmp_path, monkeypatch, capsys)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: {named}: ") and "allowed: " in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# (key, the largest value allowed): accepted by the validation
BOUNDARY = [
    ("data.seed", 2**32 - 1), ("data.n_samples", 10**8), ("data.noise", F32),
    ("model.hidden", [WIDEST]), ("model.init_std", F32), ("model.bias_std", F32),
    ("train.lr", F32 / 10), ("train.weight_decay", F32), ("train.min_delta", F32),
    ("train.batch_size", 2**63 - 1), ("train.max_epochs", 2**63 - 1),
    ("train.patience", 2**63 - 1), ("model.seeds", [0, 2**63 - 1]),
]


@pytest.mark.parametrize("key, value", BOUNDARY, ids=[_id(c) for c in BOUNDARY])
def test_the_largest_allowed_value_is_accepted(key, value):
    config.parse(tiny_params(**{key: value}))


def test_the_level_bounds_accept_their_largest_values():
    """prune.iterations up to 10 000 where every level can prune, and prune.extensions up to the
    count the refusal names."""
    config.parse(tiny_params(**{"model.hidden": [1000, 1000], "prune.target": 5000,
                                "prune.iterations": config.MAX_LEVELS}))
    with pytest.raises(config.ConfigError, match=r"at most (\d+) at this pruning rate") as info:
        config.parse(tiny_params(**{"prune.extensions": 60}))
    most = int(re.search(r"at most (\d+)", str(info.value)).group(1))
    assert 0 < most < 60
    config.parse(tiny_params(**{"prune.extensions": most}))
    with pytest.raises(config.ConfigError, match="prune.extensions"):
        config.parse(tiny_params(**{"prune.extensions": most + 1}))


def test_the_data_seed_field_case_stops_generate_without_sklearns_traceback(tmp_path):
    write_params(tmp_path, tiny_params(**{"data.seed": 4294967296}))
    proc = run_stage("generate", tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr == (
        "error: data.seed: 4294967296 is not allowed; allowed: an integer from 0 to 4294967295 "
        "(sklearn's random_state)\n")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("raw", [
    {"prune": {"iterations": 10000, "target": 1900}},
    {"prune": {"iterations": 10000, "target": None, "rate": 1e-9}},
    {"prune": {"iterations": 10000, "target": 1900, "extensions": 10000}},
    {"model": {"hidden": [392, 392]}, "data": {"tasks": ["mnist", "moons"]},
     "prune": {"iterations": 5000, "target": 50}},
], ids=["many-levels-target", "many-levels-rate", "many-extensions", "mnist-many-levels"])
def test_the_worst_trajectories_are_refused_with_a_hint(raw):
    """Trajectories whose hint search was quadratic in the levels (10⁶ levels hung validation):
    still one line with the keys named (the search is bounded, tests/test_config.py checks the
    hints' values)."""
    with pytest.raises(config.ConfigError, match=r"prune\.(target|rate).*not allowed"):
        config.parse(raw)


# ---- more memory than the machine has: one line too ----------------------------------------------
@pytest.mark.parametrize("exc, reason", [
    (MemoryError("Unable to allocate 3.64 TiB for an array with shape (500000000000,)"),
     "Unable to allocate 3.64 TiB for an array with shape (500000000000,)"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 1600000000 bytes."),
     "can't allocate memory: you tried to allocate 1600000000 bytes."),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     "CUDA out of memory. Tried to allocate 2.00 GiB"),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), None),  # a bug: its traceback
    (ValueError("can't allocate memory"), None),
])
def test_out_of_memory_is_told_from_other_errors(exc, reason):
    assert out_of_memory(exc) == reason


def test_a_run_too_big_for_the_memory_is_one_line(tmp_path):
    """Within the libraries' bounds but beyond the machine (here a 4 GiB address-space limit; a network of 1.6e9 parameters, 6.4 GB, fails at its first allocation: nothing is touched):
    the train stage's allocation fails, one line naming what to make smaller, exit 2."""
    import resource

    write_params(tmp_path, tiny_params(**{"model.hidden": [40000, 40000]}))
    stages_here(tmp_path, ("generate", "trajectory"))  # its inputs, made in this process
    limit = 4 * 2**30
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.stages.train"], cwd=tmp_path, capture_output=True,
        text=True, encoding="utf-8", env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: train: out of memory (")
    assert "model.hidden" in lines[0] and not (tmp_path / "models" / "dense.pt").exists()


# ---- command-line tools ------------------------------------------------------------------------
def run_main(main, argv, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of an in-process main(argv) (argparse exits via SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code: int, out: str, err: str, named: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and named in lines[0], lines[0]
    assert out == ""


SWEEP = [
    (["--scheduler", "local", "--workers", "two"], "--workers"),
    (["--scheduler", "local", "--shards", "1.5"], "--shards"),
    (["--scheduler", "locl"], "--scheduler"),     # the field case (41 lines of Dask's traceback)
    (["--scheduler", "local", "--workers", "0"], "--workers"),  # the field case (a silent hang)
    (["--scheduler", "local", "--params", "/nonexistent/params.yaml"], "/nonexistent/params.yaml"),
    (["--scheduler", "local", "--preset", "/nonexistent/preset.yaml"], "/nonexistent/preset.yaml"),
    (["--workers", "2"], "--scheduler"),          # required
    (["--scheduler", "local", "--bogus"], "--bogus"),
]


@pytest.mark.parametrize("argv, named", SWEEP, ids=[" ".join(a) for a, _ in SWEEP])
def test_sweep_arguments(argv, named, capsys):
    from pipeline.sweep import main

    one_line(*run_main(main, argv, capsys), named)


BASELINE = [
    (["--seeds", "0,x"], "--seeds"),
    (["--seeds", "0,0"], "--seeds"),
    (["--tolerance", "1"], "--tolerance"),
    (["--tolerance", "nan"], "--tolerance"),
    (["--tolerance", "x"], "--tolerance"),
    (["-S", "data.seed=4294967296"], "data.seed"),
    (["-S", "train.lr=1e39"], "train.lr"),
    (["-S", "data"], "-S"),
    (["--params", "/nonexistent/params.yaml"], "/nonexistent/params.yaml"),
    (["--preset", "/nonexistent/preset.yaml"], "/nonexistent/preset.yaml"),
    (["--out", "/"], "--out"),
    (["--bogus"], "--bogus"),
]


@pytest.mark.parametrize("argv, named", BASELINE, ids=[" ".join(a) for a, _ in BASELINE])
def test_baseline_arguments(argv, named, capsys):
    from pipeline.baseline import main

    one_line(*run_main(main, argv, capsys), named)


RESULT = ROOT / "docs/runs/real-mnist/ext0-it20-mnist+fashion_mnist-784x392-kaiming_normal-noise0.1"
BASELINE_CSV = ROOT / "docs/runs/real-mnist/baseline_mnist_thesis.csv"
DYING = ROOT / "docs/runs/dying/ext0-it10-moons+circles-40x40-torch_default-noise0.1-rewind-wd0-biaszero"


def script(name: str, *args, cwd: Path = ROOT) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "runs" / f"{name}.py"), *map(str, args)],
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, encoding="utf-8")
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, Path]:
    """Copies of a result folder and a dying folder with one file cut short each."""
    root = tmp_path_factory.mktemp("damaged")
    out = {}
    for name, src, victim in (("result", RESULT, "levels.csv"), ("dying", DYING, "dying.json")):
        folder = shutil.copytree(src, root / name)
        data = (folder / victim).read_bytes()
        (folder / victim).write_bytes(data[:len(data) // 2])
        out[name] = folder
    return out


DOCS_RUNS = [
    ("tables", [], "FOLDER"),
    ("tables", ["/nonexistent"], "FOLDER '/nonexistent'"),
    ("tables", [ROOT / "docs"], "config.json is missing"),
    ("tables", ["damaged:result"], "levels.csv is damaged"),
    ("tables", ["--bogus", RESULT], "--bogus"),
    ("against_alone", [RESULT], "BASELINE_CSV"),
    ("against_alone", [RESULT, BASELINE_CSV, "2"], "THRESHOLD"),
    ("against_alone", [RESULT, BASELINE_CSV, "x"], "THRESHOLD"),
    ("against_alone", [RESULT, "/nonexistent.csv"], "/nonexistent.csv is missing"),
    ("against_alone", [RESULT, RESULT / "seeds.csv"], "seeds.csv is damaged"),
    ("against_alone", [RESULT, ROOT / "docs/runs/real-mnist/baseline_mnist_pair.csv"],
     "BASELINE_CSV"),
    ("against_alone", ["/nonexistent", BASELINE_CSV], "FOLDER '/nonexistent'"),
    ("dying_tables", [], "FOLDER"),
    ("dying_tables", ["/nonexistent"], "FOLDER '/nonexistent'"),
    ("dying_tables", [DYING, "--rows", "0,x"], "--rows"),
    ("dying_tables", [DYING, "--rows", "99"], "--rows"),
    ("dying_tables", [DYING, "--per-level", "nothing-matches"], "--per-level"),
    ("dying_tables", ["damaged:dying"], "dying.json is damaged"),
]


@pytest.mark.parametrize("name, args, named", DOCS_RUNS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(DOCS_RUNS)])
def test_docs_runs_arguments(name, args, named, damaged, monkeypatch, capsys):
    """Refused before any work: each script's first case runs as its own process (exit code and
    streams of a real process), the others run its main() in this process (a process each
    cost more than the check)."""
    first = next(case for case in DOCS_RUNS if case[0] == name) == (name, args, named)
    args = [damaged[a.split(":")[1]] if str(a).startswith("damaged:") else a for a in args]
    if first:
        one_line(*script(name, *args), named)
    else:
        monkeypatch.chdir(ROOT)
        one_line(*run_main(load(name).main, [str(a) for a in args], capsys), named)


@pytest.mark.parametrize("name, args", [
    ("tables", [RESULT]),
    ("against_alone", [RESULT, BASELINE_CSV, "0"]),
    ("against_alone", [RESULT, BASELINE_CSV, "1"]),
    ("dying_tables", [DYING, "--rows", "0,10", "--per-level", "biaszero"]),
], ids=["tables", "against-alone-0", "against-alone-1", "dying-tables"])
def test_docs_runs_accept_boundary_values(name, args):
    code, out, err = script(name, *args)
    assert code == 0 and out and err == "", err
