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
    folder = next(p for p in DATA_FOLDERS if p.name.endswith("-n5000"))  # baseline_n5000's
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


# ---- every input path of every docs/runs script that is not a readable file of its kind -----
DYING = ROOT / "docs/runs/dying/ext0-it10-moons+circles-40x40-torch_default-noise0.1-rewind-wd0-biaszero"
N5000 = next(p for p in DATA_FOLDERS if p.name.endswith("-n5000"))
BAD_PATHS = ("a folder", "a broken link", "unreadable", "binary")


def linked_copy(folder, to):
    """`folder` as a new folder `to` of links to its files: one file replaced costs no copy."""
    to.mkdir()
    for f in folder.iterdir():
        (to / f.name).symlink_to(f)
    return to


def make_bad(path, case, monkeypatch):
    """`path` made into `case`: a folder, a link to nothing, a file no one may read (a
    PermissionError from every read of it: tests may run as root, who reads any file), bytes."""
    if path.is_symlink() or path.exists():
        path.unlink()
    if case == "a folder":
        path.mkdir()
    elif case == "a broken link":
        path.symlink_to(path.parent / "nowhere")
    else:
        path.write_bytes(bytes(range(256)) * 4 if case == "binary" else b"seed\n0\n")
    if case == "unreadable":
        import pathlib

        for method in ("read_bytes", "read_text"):
            real = getattr(pathlib.Path, method)

            def refuse(self, *a, _real=real, **k):
                if self == path:
                    raise PermissionError(13, "Permission denied", str(path))
                return _real(self, *a, **k)
            monkeypatch.setattr(pathlib.Path, method, refuse)


def script_inputs(tmp):
    """(script, argv, the input path in it to spoil) for every input file of every script."""
    folder = linked_copy(N5000, tmp / "result")
    base = tmp / "baseline_n5000.csv"
    base.symlink_to(DATA_RUNS / "baseline_n5000.csv")
    dying = linked_copy(DYING, tmp / "dying")
    return {
        "tables FOLDER levels.csv": ("tables", [str(folder)], folder / "levels.csv"),
        "tables FOLDER config.json": ("tables", [str(folder)], folder / "config.json"),
        "tables FOLDER random_levels.csv": ("tables", [str(folder)], folder / "random_levels.csv"),
        "tables --baselines": ("tables", ["--baselines", str(base)], base),
        "against_alone FOLDER accuracy.csv": ("against_alone", [str(folder), str(base)],
                                              folder / "accuracy.csv"),
        "against_alone FOLDER seeds.csv": ("against_alone", [str(folder), str(base)],
                                           folder / "seeds.csv"),
        "against_alone BASELINE_CSV": ("against_alone", [str(folder), str(base)], base),
        "size_figure FOLDER seeds.csv": ("size_figure", [str(folder), "--baselines", str(base),
                                                         "--out", str(tmp / "k.png")],
                                         folder / "seeds.csv"),
        "size_figure --baselines": ("size_figure", [str(folder), "--baselines", str(base),
                                                    "--out", str(tmp / "k.png")], base),
        "dying_tables levels.csv": ("dying_tables", [str(dying)], dying / "levels.csv"),
        "dying_tables episodes.csv": ("dying_tables", [str(dying)], dying / "episodes.csv"),
        "dying_tables random_levels.csv": ("dying_tables", [str(dying)],
                                           dying / "random_levels.csv"),
        "dying_tables config.json": ("dying_tables", [str(dying)], dying / "config.json"),
    }


@pytest.mark.parametrize("case", BAD_PATHS)
@pytest.mark.parametrize("which", [  # script_inputs' keys
    "tables FOLDER levels.csv", "tables FOLDER config.json", "tables FOLDER random_levels.csv",
    "tables --baselines", "against_alone FOLDER accuracy.csv", "against_alone FOLDER seeds.csv",
    "against_alone BASELINE_CSV", "size_figure FOLDER seeds.csv", "size_figure --baselines",
    "dying_tables levels.csv", "dying_tables episodes.csv", "dying_tables random_levels.csv",
    "dying_tables config.json"])
def test_an_input_that_is_no_readable_file_is_one_line(which, case, tmp_path, monkeypatch,
                                                       capsys):
    """Every input file of every docs/runs script given as a folder, a broken link, an
    unreadable file or binary: one line naming it, exit 2, no traceback (a folder gave
    IsADirectoryError's traceback, found by a review)."""
    script, argv, spoil = script_inputs(tmp_path)[which]
    make_bad(spoil, case, monkeypatch)
    with pytest.raises(SystemExit) as end:
        load(script).main(argv)
    err = capsys.readouterr().err
    assert end.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert spoil.name in err and ("allowed" in err or "not allowed" in err), err
    assert not (tmp_path / "k.png").exists()


def run_main(script: str, argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = load(script).main(argv) or 0
    except SystemExit as end:
        code = end.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_pool_and_its_runs_are_told_apart_and_never_tested_against_each_other(capsys):
    """(f′)'s documented command: the pooled folder and its 16-seed halves share a configuration
    (name): every heading and row is one folder's, Mann–Whitney's p are the pool's as (f′)
    quotes them (not the half's), and no test compares folders of one configuration that share
    seeds (the same nets), a line says so; the two disjoint halves are compared."""
    folders = [*sorted(RUNS.glob("ext0-it20-mnist+fashion_mnist*")), *sorted(MORE.iterdir())]
    code, out, _ = run_main("tables", [str(f) for f in folders], capsys)
    assert code == 0
    headings = re.findall(r"^### (ext0.*)$", out, re.M)
    assert len(headings) == len(folders) == len(set(headings))
    compared = re.findall(r"^(?:\| |- d at the last level, |- )(ext0\S+) vs (ext0\S+?)[:| ]", out, re.M)
    assert compared and all(a != b for a, b in compared)
    pool, half = (f.name for f in sorted(MORE.iterdir()))  # …-seeds0-31, …-seeds16-31
    first = "ext0-it20-mnist+fashion_mnist-784x392-kaiming_normal-noise0.1-wd0.0001"
    tests = [line for line in out.splitlines() if "Mann–Whitney p" in line or " vs " in line
             and line.startswith("| ")]
    for a, b in ((first, pool), (pool, half)):
        assert not [t for t in tests if f"{a} vs {b}" in t]
        assert f"- {a} vs {b}: not compared, one configuration with seeds" in out
    assert [t for t in tests if f"{first} vs {half}" in t]  # disjoint seeds: compared
    rewind = "ext0-it20-mnist+fashion_mnist-784x392-kaiming_normal-noise0.1"
    assert f"- d at the last level, {rewind} vs {pool}: Mann–Whitney p = 2.7e-08" in out
    assert f"- d at the last level, {rewind}-finetune-wd0.0001 vs {pool}: Mann–Whitney p = 0.00014" \
        in out


def test_one_folder_given_twice_is_refused(tmp_path, capsys):
    """tables.py and size_figure.py: the same folder twice (also spelled otherwise, or through
    a link) is one line, exit 2, saying what is allowed: it would be compared with itself."""
    link = tmp_path / "link"
    link.symlink_to(N5000)
    for again in (N5000, N5000 / ".", link):
        for script, extra in (("tables", []), ("size_figure", [
                "--baselines", str(DATA_RUNS / "baseline_n5000.csv"), "--out", str(tmp_path / "k.png")])):
            code, out, err = run_main(script, [str(N5000), str(again), *extra], capsys)
            assert code == 2 and out == "" and err.count("\n") == 1, err
            assert "is given twice" in err and "allowed: distinct study result folders" in err


def test_folders_of_one_configuration_name_are_labelled_by_folder_or_path(tmp_path, capsys):
    """Folders whose configuration names collide are named by their folder names, or where
    those collide too, by their paths: two headings, never `X vs X`."""
    for a, b in ((tmp_path / "a", tmp_path / "b"), (tmp_path / "x" / "r", tmp_path / "y" / "r")):
        a.parent.mkdir(exist_ok=True)
        b.parent.mkdir(exist_ok=True)
        linked_copy(N5000, a)
        linked_copy(N5000, b)
        tables = load("tables")
        names = [r.name for r in tables.load_all([a, b])]
        assert names == ([a.name, b.name] if a.name != b.name else [str(a), str(b)])
        code, out, _ = run_main("tables", [str(a), str(b)], capsys)
        assert code == 0 and f"{names[0]} vs {names[1]}: not compared" in out
        assert "Mann–Whitney" not in out


@pytest.mark.parametrize("size,other", [("5000", "15000"), ("15000", "5000")])
def test_a_baseline_of_another_configuration_is_refused(size, other, tmp_path, capsys):
    """against_alone.py and size_figure.py: the baseline's side_test_acc is the test accuracy of
    the side-by-side dense net the folder trained, so a baseline of another n_samples (its own
    file renamed, for size_figure) is one line, exit 2; the committed pairs agree."""
    folder = next(p for p in DATA_FOLDERS if p.name.endswith(f"-n{size}"))
    own, wrong = DATA_RUNS / f"baseline_n{size}.csv", DATA_RUNS / f"baseline_n{other}.csv"
    assert run_main("against_alone", [str(folder), str(own)], capsys)[0] == 0
    code, out, err = run_main("against_alone", [str(folder), str(wrong)], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "is not of" in err and "configuration" in err and "allowed: " in err
    renamed = tmp_path / f"wrong_n{size}.csv"
    renamed.symlink_to(wrong)
    code, out, err = run_main("size_figure", [str(folder), "--baselines", str(renamed), "--out",
                                              str(tmp_path / "k.png")], capsys)
    assert code == 2 and err.count("\n") == 1 and "is not of" in err, err
    assert not (tmp_path / "k.png").exists()


def test_the_size_figure_refuses_folders_of_other_configurations(tmp_path, capsys):
    """size_figure.py: folders that differ in more than n_samples, or two of one n_samples,
    are one line, exit 2."""
    args = ["--baselines", str(DATA_RUNS / "baseline_n5000.csv"), "--out", str(tmp_path / "k.png")]
    other = RUNS / "ext0-it20-mnist+fashion_mnist-784x392-kaiming_normal-noise0.1"
    copy = linked_copy(N5000, tmp_path / "copy")
    for folders, says in (([N5000, other], "study axis tasks is"),
                          ([N5000, copy], "has n_samples 5000, as")):
        code, out, err = run_main("size_figure", [*map(str, folders), *args], capsys)
        assert code == 2 and err.count("\n") == 1 and says in err, err
        assert "allowed: study result folders of one configuration at different n_samples" in err


def test_one_file_or_dying_folder_given_twice_is_refused(tmp_path, capsys):
    """tables.py --baselines with one file twice, dying_tables.py with one folder twice: one
    line, exit 2, nothing on stdout."""
    base = DATA_RUNS / "baseline_n5000.csv"
    for script, argv in (("tables", ["--baselines", str(base), str(base.parent / "." / base.name)]),
                         ("dying_tables", [str(DYING), str(DYING / ".")])):
        code, out, err = run_main(script, argv, capsys)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert "is given twice" in err and "each once" in err, err
