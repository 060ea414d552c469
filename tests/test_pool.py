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
    assert info.pop("pooled_from") == [{"folder": f.name, "seeds": list(g)}
                                       for f, g in zip(folders, groups)]
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


REFUSED = {
    "a seed in both": (lambda a, b: (part(FOLDER, a, [0, 1, 2]), part(FOLDER, b, [2, 3])),
                       "seed 2 is in both"),
    "another weight decay": (lambda a, b: (part(FOLDER, a, [0]), edit_config(
        part(FOLDER, b, [1]), lambda i: i.update(weight_decay=0.0001))),
        "study axis weight_decay is 0.0001"),
    "an axis implied by older params": (lambda a, b: (part(FOLDER, a, [0]), edit_config(
        part(FOLDER, b, [1], drop_keys=("n_samples",)),
        lambda i: i["params"]["data"].update(n_samples=15000))), "study axis n_samples is 15000"),
    "another learning rate": (lambda a, b: (part(FOLDER, a, [0]), edit_config(
        part(FOLDER, b, [1]), lambda i: i["params"]["train"].update(lr=0.01))),
        "config.json's params differs"),
    "other layers": (lambda a, b: (part(FOLDER, a, [0]), edit_config(
        part(FOLDER, b, [1]), lambda i: i.update(layers=[1568, 10, 20]))),
        "config.json's layers differs"),
    "seeds out of order": (lambda a, b: (part(FOLDER, a, [0]), edit_config(
        part(FOLDER, b, [2, 1]), lambda i: i.update(seeds=[2, 1]))), "not in increasing order"),
    "one folder": (lambda a, b: (part(FOLDER, a, [0]),), "at least two folders"),
    "no seeds.csv": (lambda a, b: (part(FOLDER, a, [0]), part(FOLDER, b, [1],
                                                           drop_files=("seeds.csv",))),
                     "has no seeds.csv"),
    "not a folder": (lambda a, b: (part(FOLDER, a, [0]), b / "missing"), "is not a folder"),
    "a damaged config.json": (lambda a, b: (part(FOLDER, a, [0]), _damaged(part(
        FOLDER, b, [1]))), "config.json"),
}


def _damaged(folder: Path) -> Path:
    (folder / "config.json").write_text('{"name": ')
    return folder


@pytest.mark.parametrize("make, says", REFUSED.values(), ids=REFUSED.keys())
def test_what_cannot_be_pooled_is_one_line_and_writes_nothing(make, says, tmp_path):
    folders = make(tmp_path / "a", tmp_path / "b")
    out = tmp_path / "pooled"
    proc = subprocess.run([sys.executable, "-m", "pipeline.pool", "--out", str(out),
                           *map(str, folders)], cwd=ROOT, capture_output=True, text=True,
                          encoding="utf-8")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


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
    again = subprocess.run([sys.executable, "-m", "pipeline.pool", "--out", str(old), str(old),
                            str(new)], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "a folder other than those pooled" in again.stderr


def test_a_folder_of_an_older_version_reads_its_axes_from_its_params():
    """The committed (f) folder, written before the bias_init and n_samples axes: its axes are
    its params' values, as the pool compares them."""
    info = json.loads((OLD / "config.json").read_text())
    assert "bias_init" not in info and "n_samples" not in info
    axes = pool.axes_of(info)
    assert axes["bias_init"] == "zero" and axes["n_samples"] == 5000
    assert axes["weight_decay"] == 0.0 and axes["method"] == "rewind"
