"""Pooling result folders of one configuration run with disjoint seeds (python -m pipeline.pool).

The reference is a real 16-seed result folder (docs/runs/images-data/, every result file): cut
into seed groups, the pool of the groups must be the folder again, byte for byte, whatever the
grouping and the order the folders are named in. Folders written before an axis or a column
existed are pooled as pandas' concat of the columns they share, axis columns filled.
"""
from __future__ import annotations

import csv
import io as text_io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from pipeline import pool

FOLDER = ROOT / ("docs/runs/images-data/ext0-it20-fashion_mnist+fashion_mnist-784x392-"
                 "kaiming_normal-noise0.1-biaszero-n5000")
OLD = ROOT / "docs/runs/real-mnist/ext0-it20-mnist+fashion_mnist-784x392-kaiming_normal-noise0.1"


def part(src: Path, dest: Path, seeds: list[int], drop_columns=(), drop_files=(),
         drop_keys=()) -> Path:
    """src's result files for `seeds` only (rows filtered by their seed), as a run of those
    seeds writes them; an older version's folder when columns, files or config keys are
    dropped."""
    dest.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.name in drop_files:
            continue
        if f.suffix == ".csv":
            rows = list(csv.reader(text_io.StringIO(f.read_text(encoding="utf-8"))))
            keep = [i for i, c in enumerate(rows[0]) if c not in drop_columns]
            seed = rows[0].index("seed")
            body = [r for r in rows[1:] if int(r[seed]) in seeds]
            out = text_io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(
                [[r[i] for i in keep] for r in [rows[0], *body]])
            (dest / f.name).write_text(out.getvalue(), encoding="utf-8")
        elif f.name == "config.json":
            info = json.loads(f.read_text(encoding="utf-8"))
            info = {k: v for k, v in info.items() if k not in drop_keys}
            (dest / f.name).write_text(json.dumps({**info, "seeds": seeds}, indent=2) + "\n",
                                       encoding="utf-8")
        else:
            shutil.copy(f, dest / f.name)
    return dest


GROUPS = {"halves": [range(0, 8), range(8, 16)],
          "uneven thirds, named out of order": [range(13, 16), range(0, 2), range(2, 13)],
          "interleaved": [range(0, 16, 2), range(1, 16, 2)],
          "one seed each": [range(s, s + 1) for s in range(16)]}


@pytest.mark.parametrize("groups", GROUPS.values(), ids=GROUPS.keys())
def test_pooling_seed_groups_gives_back_the_whole_run(groups, tmp_path):
    folders = [part(FOLDER, tmp_path / f"g{i}", list(g)) for i, g in enumerate(groups)]
    files, notes = pool.pool(folders)
    assert notes == []
    assert sorted(files) == sorted(p.name for p in FOLDER.iterdir())
    for name, data in files.items():
        if name != "config.json":
            assert data == (FOLDER / name).read_bytes(), name  # dying.json recomputed too
    info, whole = json.loads(files["config.json"]), json.loads((FOLDER / "config.json").read_text())
    settings = {"train.workers": 2, "train.threads": 1, "train.device": "auto",
                "data.mnist_dir": None, "data.fashion_mnist_dir": "/usr/share/datasets/fashion-mnist"}
    assert info.pop("pooled_from") == sorted(
        ({"folder": f.name, "seeds": list(g), "run_settings": settings}
         for f, g in zip(folders, groups)), key=lambda p: p["seeds"][0])
    assert info == whole


def test_an_older_folder_is_pooled_on_the_columns_both_have(tmp_path):
    """Seeds 0-9 as written before the bias_init and n_samples axes and the dying files
    (config.json without those keys, but model.bias_init and data.n_samples in its params),
    and without two level columns added later; seeds 10-15 as now."""
    late = ("prune_threshold", "frozen_w")
    old = part(FOLDER, tmp_path / "old", list(range(10)), drop_columns=(
        "bias_init", "n_samples", *late), drop_keys=("bias_init", "n_samples"),
        drop_files=("dying.json", "episodes.csv", "bias_survival.csv",
                    "frozen_deaths_levels.csv"))
    new = part(FOLDER, tmp_path / "new", list(range(10, 16)))
    files, notes = pool.pool([old, new])
    assert notes == [f"{n} left out: not in every folder" for n in (
        "bias_survival.csv", "dying.json", "episodes.csv", "frozen_deaths_levels.csv")] + [
        f"{n}: columns left out (not in every folder): prune_threshold, frozen_w"
        for n in ("levels.csv", "random_levels.csv")]
    for name in ("accuracy.csv", "controls.csv", "levels.csv", "random_levels.csv", "seeds.csv"):
        got = pd.read_csv(text_io.BytesIO(files[name]))
        whole = pd.read_csv(FOLDER / name)
        assert list(got.columns) == [c for c in whole.columns if c not in late]
        assert got["bias_init"].eq("zero").all() and got["n_samples"].eq(5000).all()
        reference = pd.concat([pd.read_csv(old / name), pd.read_csv(new / name)]).assign(
            bias_init="zero", n_samples=5000)
        by = ["level", "seed"] if name in ("levels.csv", "random_levels.csv") else ["seed"]
        reference = reference.sort_values(by, kind="stable")  # pool.ROW_ORDER
        pd.testing.assert_frame_equal(got.reset_index(drop=True), reference[got.columns]
                                      .reset_index(drop=True), check_dtype=False)
    info = json.loads(files["config.json"])
    assert info["name"] == FOLDER.name and info["seeds"] == list(range(16))
    assert info["bias_init"] == "zero" and info["n_samples"] == 5000


def edit_config(folder: Path, edit) -> Path:
    path = folder / "config.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))
    return folder


def edit_file(folder: Path, name: str, edit) -> Path:
    """folder with `name`'s bytes replaced by edit(bytes)."""
    path = folder / name
    path.write_bytes(edit(path.read_bytes()))
    return folder


def swap_lines(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[1], lines[-2] = lines[-2], lines[1]
    return b"\n".join(lines)


def two(a: Path, b: Path, **damage_b) -> tuple[Path, Path]:
    """Seeds 0-1 in a, 2-3 in b (b damaged by `damage_b`: part's drop options)."""
    return part(FOLDER, a, [0, 1]), part(FOLDER, b, [2, 3], **damage_b)


def damaged(name: str, edit):
    return lambda a, b: (part(FOLDER, a, [0, 1]), edit_file(part(FOLDER, b, [2, 3]), name, edit))


def config_of(edit):
    return lambda a, b: (part(FOLDER, a, [0, 1]), edit_config(part(FOLDER, b, [2, 3]), edit))


def levels_folder(a: Path, b: Path):
    first, second = two(a, b)
    (second / "levels.csv").unlink()
    (second / "levels.csv").mkdir()
    return first, second


# every kind of input the pool must refuse, and what the one line must say
REFUSED = {
    # not one configuration, or not disjoint
    "a seed in both": (lambda a, b: (part(FOLDER, a, [0, 1, 2]), part(FOLDER, b, [2, 3])),
                       "seed 2 is in both"),
    "one folder twice": (lambda a, b: (part(FOLDER, a, [0]), a),
                         "; allowed: distinct result folders of one configuration, each once"),
    "another weight decay": (config_of(lambda i: i.update(weight_decay=0.0001)),
                             "study axis weight_decay is 0.0001"),
    "an axis implied by older params": (config_of(lambda i: (i.pop("n_samples"), i["params"][
        "data"].update(n_samples=15000))), "study axis n_samples is 15000"),
    "another learning rate": (config_of(lambda i: i["params"]["train"].update(lr=0.01)),
                              "params train.lr is 0.01 where"),
    "other layers": (config_of(lambda i: i.update(layers=[1568, 10, 20])),
                     "config.json's layers is [1568, 10, 20] where"),
    "one folder": (lambda a, b: (part(FOLDER, a, [0]),),
                   "at least two folders (1 given); allowed: two or more result folders"),
    # not a result folder
    "not a folder": (lambda a, b: (part(FOLDER, a, [0]), b / "missing"), "is not a folder"),
    "an empty folder": (lambda a, b: (part(FOLDER, a, [0]), _mkdir(b)), "has no config.json"),
    "no seeds.csv": (lambda a, b: two(a, b, drop_files=("seeds.csv",)), "has no seeds.csv"),
    "no levels.csv": (lambda a, b: two(a, b, drop_files=("levels.csv",)), "has no levels.csv"),
    "levels.csv a folder": (levels_folder, "levels.csv is not a file"),
    # a damaged config.json
    "config.json cut short": (damaged("config.json", lambda d: d[:9]), "not a JSON text"),
    "config.json a list": (damaged("config.json", lambda d: b"[]"), "not a result folder's"),
    "params a list": (config_of(lambda i: i.update(params=[])), "not a result folder's"),
    "seeds an integer": (config_of(lambda i: i.update(seeds=3)), "seeds 3 are not allowed"),
    "seeds as text": (config_of(lambda i: i.update(seeds=["2", "3"])), "are not allowed"),
    "no seeds": (config_of(lambda i: i.update(seeds=[])), "seeds [] are not allowed"),
    "a seed twice": (config_of(lambda i: i.update(seeds=[2, 2, 3])), "are not allowed"),
    "seeds out of order": (config_of(lambda i: i.update(seeds=[3, 2])),
                           "not allowed; allowed: a list of distinct integers in increasing"),
    "fewer seeds than the rows": (config_of(lambda i: i.update(seeds=[2])),
                                  "has seed '3'; allowed: the seeds its config.json lists"),
    "more seeds than the rows": (config_of(lambda i: i.update(seeds=[2, 3, 4])),
                                 "no rows for seeds [4]"),
    # a damaged CSV
    "a CSV cut short": (damaged("levels.csv", lambda d: d[:-1000]), "cut short"),
    "an empty CSV": (damaged("levels.csv", lambda d: b""), "cut short"),
    "a CSV of its header": (damaged("accuracy.csv", lambda d: d.split(b"\n")[0] + b"\n"),
                            "no rows for seeds [2, 3]"),
    "a CSV not UTF-8": (damaged("levels.csv", lambda d: d.replace(b"True", b"Tru\xe9", 1)),
                        "not UTF-8 text"),
    "a byte order mark": (damaged("controls.csv", lambda d: b"\xef\xbb\xbf" + d),
                          "no seed column"),
    "a row short of a field": (damaged("seeds.csv", lambda d: d.replace(b"\n2,", b"\n2", 1)),
                               "line 2 has"),
    "a row with a field more": (damaged("controls.csv", lambda d: d.replace(
        b"\n3,", b"\n3,x,", 1)), "line 3 has"),
    "no seed column": (damaged("controls.csv", lambda d: d.replace(b"seed,", b"sed,", 1)),
                       "no seed column"),
    "a seed not a number": (damaged("levels.csv", lambda d: d.replace(b"\n2,", b"\nx2,", 1)),
                            "has seed 'x2'"),
    "rows out of order": (damaged("accuracy.csv", swap_lines), "rows not by seed"),
    "a level row out of order": (damaged("levels.csv", swap_lines), "rows not by level"),
    "a line break in a field": (damaged("seeds.csv", lambda d: d.replace(
        b",", b',"a\nb",', 1)), "not one row per line"),
    "dying.json a list": (damaged("dying.json", lambda d: b"[]\n"), "not a JSON object"),
    "dying.json cut short": (damaged("dying.json", lambda d: d[:20]), "not a JSON text"),
}


def _mkdir(folder: Path) -> Path:
    folder.mkdir()
    return folder


def run_pool(*argv) -> subprocess.CompletedProcess:
    """`python -m pipeline.pool ARGV` in its own process."""
    return subprocess.run([sys.executable, "-m", "pipeline.pool", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, encoding="utf-8")


def main_of(capsys, *argv) -> subprocess.CompletedProcess:
    """pool.main(ARGV) in this process (the refusal tables: a process each would cost more than
    the checks), as a CompletedProcess; an exception other than SystemExit propagates, so a
    traceback still fails the test."""
    try:
        code = pool.main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


def assert_one_line(proc: subprocess.CompletedProcess, says: str) -> None:
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("make, says", REFUSED.values(), ids=REFUSED.keys())
def test_what_cannot_be_pooled_is_one_line_and_writes_nothing(make, says, tmp_path, capsys):
    folders = make(tmp_path / "a", tmp_path / "b")
    out = tmp_path / "pooled"
    assert_one_line(main_of(capsys, "--out", out, *folders), says)
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_refusal_is_one_line_from_the_command_too(tmp_path):
    """The same as above through `python -m pipeline.pool` (exit code and streams of a real
    process): a damaged CSV."""
    a, b = damaged("levels.csv", lambda d: d[:-1000])(tmp_path / "a", tmp_path / "b")
    assert_one_line(run_pool("--out", tmp_path / "pooled", a, b), "cut short")
    assert not (tmp_path / "pooled").exists()


# every --out that would destroy or mix into what it should not
OUTS = {
    "an input": (lambda t: t / "a", "it is, holds or is inside"),
    "the folder above the inputs": (lambda t: t, "it is, holds or is inside"),
    "inside an input": (lambda t: t / "a" / "sub", "it is, holds or is inside"),
    "a file": (lambda t: _file(t / "notes.txt"), "it is a file"),
    "a folder of other files": (lambda t: _file(t / "other" / "notes.txt").parent,
                                "no config.json"),
    "empty": (lambda t: Path(""), "is not allowed"),
    "the current folder": (lambda t: Path("."), "is not allowed"),
}


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("kept\n")
    return path


@pytest.mark.parametrize("make, says", OUTS.values(), ids=OUTS.keys())
def test_an_out_that_would_destroy_something_is_refused(make, says, tmp_path, capsys):
    folders = two(tmp_path / "a", tmp_path / "b")
    out = make(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert_one_line(main_of(capsys, "--out", out, *folders), says)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_the_command_writes_the_pool_and_says_what_it_left_out(tmp_path):
    old = part(FOLDER, tmp_path / "old", [0, 1], drop_files=("episodes.csv",))
    new = part(FOLDER, tmp_path / "new", [2, 3])
    out = tmp_path / "pooled"
    proc = subprocess.run([sys.executable, "-m", "pipeline.pool", str(old), str(new), "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, encoding="utf-8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "pool: episodes.csv left out: not in every folder",
        "pool: dying.json left out: it is recomputed from bias_survival.csv, episodes.csv, "
        "frozen_deaths_levels.csv, not all in every folder",
        f"pool: 4 seeds of {FOLDER.name} from 2 folders in {out}"]
    assert json.loads((out / "config.json").read_text())["seeds"] == [0, 1, 2, 3]
    assert not (out / "episodes.csv").exists() and not (out / "dying.json").exists()
    assert (out / "bias_survival.csv").exists()
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run_pool(old, new, "--out", out).returncode == 0  # a result folder is replaced
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    again = subprocess.run([sys.executable, "-m", "pipeline.pool", "--out", str(old), str(old),
                            str(new)], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "it is, holds or is inside" in again.stderr


def test_a_folder_of_an_older_version_reads_its_axes_from_its_params():
    """The committed (f) folder, written before the bias_init and n_samples axes: its axes are
    its params' values, as the pool compares them."""
    info = json.loads((OLD / "config.json").read_text())
    assert "bias_init" not in info and "n_samples" not in info
    axes = pool.axes_of(info)
    assert axes["bias_init"] == "zero" and axes["n_samples"] == 5000
    assert axes["weight_decay"] == 0.0 and axes["method"] == "rewind"


def test_run_settings_may_differ_and_are_recorded(tmp_path):
    """Worker processes, threads, device and data folders decide how a seed is computed, not
    what: a sweep's folder (train.workers 1) pools with a dvc repro one (2), and a run on a
    machine with the data elsewhere too; each folder's settings are in pooled_from."""
    a = part(FOLDER, tmp_path / "a", list(range(8)))
    b = edit_config(part(FOLDER, tmp_path / "b", list(range(8, 16))), lambda i: (
        i["params"]["train"].update(workers=1, threads=2, device="cpu"),
        i["params"]["data"].update(fashion_mnist_dir="/data/fashion")))
    files, notes = pool.pool([a, b])
    assert notes == []
    for name, data in files.items():
        if name != "config.json":
            assert data == (FOLDER / name).read_bytes(), name
    sources = json.loads(files["config.json"])["pooled_from"]
    assert [s["run_settings"]["train.workers"] for s in sources] == [2, 1]
    assert sources[1]["run_settings"]["data.fashion_mnist_dir"] == "/data/fashion"


def test_a_pooled_folder_pools_again_with_more_seeds(tmp_path):
    groups = [part(FOLDER, tmp_path / f"g{i}", list(g)) for i, g in
              enumerate([range(0, 4), range(4, 8), range(8, 16)])]
    first = tmp_path / "first"
    pool.write(first, pool.pool(groups[:2])[0])
    files, notes = pool.pool([first, groups[2]])
    assert notes == []
    for name, data in files.items():
        if name != "config.json":
            assert data == (FOLDER / name).read_bytes(), name
    assert [s["folder"] for s in json.loads(files["config.json"])["pooled_from"]] == [
        "g0", "g1", "g2"]


def test_every_column_left_out_is_named(tmp_path):
    """Each folder with a column of its own (same header length): both are named."""
    a = part(FOLDER, tmp_path / "a", [0, 1], drop_columns=("frozen_w",))
    b = part(FOLDER, tmp_path / "b", [2, 3], drop_columns=("frozen_b",))
    _, notes = pool.pool([a, b])
    assert "levels.csv: columns left out (not in every folder): frozen_b, frozen_w" in notes


def test_an_older_folder_is_named_as_configurations_are_now(tmp_path):
    old = edit_config(part(FOLDER, tmp_path / "old", [0, 1], drop_keys=("bias_init", "n_samples")),
                      lambda i: i.update(name="ext0-old-name"))
    new = part(FOLDER, tmp_path / "new", [2, 3])
    files, notes = pool.pool([old, new])
    assert json.loads(files["config.json"])["name"] == FOLDER.name
    assert notes[0] == f"{old}: config.json's name ext0-old-name is {FOLDER.name} now (named as " \
        "configurations are today)"
