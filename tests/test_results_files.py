"""docs/results.md (f) and (k) against their committed result files (docs/runs/real-mnist/,
docs/runs/images-data/): the tables script reads every configuration folder, each criterion's
fraction of seeds it prints is the one the section quotes for that configuration, and every
dense-baseline row it prints is in (k) as printed."""
from __future__ import annotations

import importlib.util
import re
import sys

import pandas as pd
import pytest
from conftest import ROOT

RUNS = ROOT / "docs/runs/real-mnist"
# one folder per configuration, and under more-seeds/ (f′)'s second run of a cell and its pool
MORE = RUNS / "more-seeds"
FOLDERS = sorted(p for top in (RUNS, MORE) for p in top.iterdir() if (p / "config.json").is_file())
DATA_RUNS = ROOT / "docs/runs/images-data"
DATA_FOLDERS = sorted(p for p in DATA_RUNS.iterdir() if (p / "config.json").is_file())
BASELINES = sorted(DATA_RUNS.glob("*.csv"))


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs/runs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import does: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def section(heading_start: str) -> str:
    text = (ROOT / "docs/results.md").read_text()
    start = text.index(heading_start)
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_every_result_folder_has_the_files_the_tables_read():
    assert FOLDERS, "no result folders under docs/runs/real-mnist"
    for folder in FOLDERS:
        for name in ("levels.csv", "seeds.csv", "controls.csv", "accuracy.csv",
                     "random_levels.csv"):
            assert (folder / name).is_file(), (folder.name, name)
        seeds = pd.read_csv(folder / "seeds.csv")
        assert len(seeds) >= 16  # issue 26: ≥ 16 seeds per answer


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_quoted_fractions_are_the_result_files(folder):
    tables = load("tables")
    printed = tables.configuration(tables.load(folder))
    text = section("## (f) Real MNIST")
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"^\| (effective|complete|output|functional)[^|]* \| (\d+/\d+)", printed,
                        re.M)}
    assert set(rows) == {"effective", "complete", "output", "functional"}
    for criterion, fraction in rows.items():
        assert fraction in text, (folder.name, criterion, fraction)


@pytest.mark.parametrize("folder", DATA_FOLDERS, ids=lambda p: p.name)
def test_size_study_fractions_are_the_result_files(folder):
    """(k): ≥ 16 seeds, and every criterion's fraction (at some level and before degradation)
    and the degrading seeds as the tables script prints them are quoted in the section."""
    tables = load("tables")
    assert len(pd.read_csv(folder / "seeds.csv")) >= 16
    printed = tables.configuration(tables.load(folder))
    text = section("## (k) Training-set size")
    rows = re.findall(r"^\| (?:effective|complete|output|functional)[^|]* \| [^|]+ \| [^|]+ \|",
                      printed, re.M)
    assert len(rows) == 4
    for row in rows:
        assert row in text, row
    degrade = next(line for line in printed.splitlines() if line.startswith("Seeds that degrade"))
    assert degrade in text


def test_size_study_baseline_tables_are_the_baseline_files():
    """(k)'s dense-gap tables are what `tables.py --baselines` prints from the committed files:
    every printed row is in the section, and every file is printed there."""
    assert DATA_FOLDERS and len(BASELINES) >= 5
    tables = load("tables")
    printed = tables.baseline_table(BASELINES).splitlines()[2:]
    text = section("## (k) Training-set size")
    assert len(printed) == 2 * len(BASELINES)  # two tasks per file
    for row in printed:
        assert row in text, row


@pytest.mark.parametrize("script", ["tables", "against_alone"])
def test_a_reader_that_stops_early_ends_the_scripts_quietly(script):
    """`python docs/runs/tables.py … | head`: exit 0 and no BrokenPipeError traceback (found by a
    new-user review)."""
    import subprocess
    folder = DATA_FOLDERS[0]
    args = [str(folder)] + ([str(DATA_RUNS / "baseline_n5000.csv")] if script == "against_alone"
                            else [])
    proc = subprocess.Popen([sys.executable, str(ROOT / "docs/runs" / f"{script}.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # the reader goes away before the script prints
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_the_pooled_cell_is_the_pool_of_its_two_runs():
    """(f′)'s 32-seed rewind / 1e-4 cell is exactly `python -m pipeline.pool` of the two
    committed 16-seed runs it names (their seeds disjoint, every seed once)."""
    import json

    from pipeline import pool

    pooled = MORE / "ext0-it20-mnist+fashion_mnist-784x392-kaiming_normal-noise0.1-wd0.0001-seeds0-31"
    info = json.loads((pooled / "config.json").read_text())
    halves = [next(p for p in (RUNS / source["folder"], MORE / source["folder"]) if p.is_dir())
              for source in info["pooled_from"]]
    assert [len(source["seeds"]) for source in info["pooled_from"]] == [16, 16]
    files, _ = pool.pool(halves)
    assert sorted(files) == sorted(p.name for p in pooled.iterdir())
    for name, data in files.items():
        assert (pooled / name).read_bytes() == data, name
    assert info["seeds"] == list(range(32))


def test_the_size_figure_is_drawn_from_the_result_files(tmp_path):
    """(k)'s figure script on the committed folders and baselines writes the figure; a baseline
    file whose name gives no sample count, or a figure that is not .png, is one line, exit 2."""
    import subprocess

    script = [sys.executable, str(ROOT / "docs/runs/size_figure.py"), *map(str, DATA_FOLDERS)]
    own = [str(p) for p in BASELINES if p.stem.startswith("baseline_n")]
    out = tmp_path / "k.png"
    proc = subprocess.run([*script, "--baselines", *own, "--out", str(out)], capture_output=True,
                          text=True, encoding="utf-8", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    for extra, says in (([str(DATA_RUNS / "lever_n5000_sgd.csv").replace("_n5000", "")],
                         "named …_n<samples per task>.csv"), ([], "allowed: a .png file")):
        bad = subprocess.run([*script, "--baselines", *(extra or own), "--out",
                              str(tmp_path / ("k.png" if extra else "k.pdf"))],
                             capture_output=True, text=True, encoding="utf-8", cwd=ROOT)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and says in bad.stderr, bad.stderr
