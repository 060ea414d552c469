"""Datasets side by side: column bookkeeping, task independence, determinism, IDX reading."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from pipeline import config
from pipeline.data import DataError, build, load_idx_dataset, read_idx, task_infos


def data_cfg(**kw) -> config.DataConfig:
    base = {"n_samples": 200}
    base.update(kw)
    return config.parse({"data": base}).data


@pytest.mark.parametrize("kinds", [["moons"], ["moons", "circles"],
                                   ["circles", "digits", "moons"], ["moons", "circles"] * 4])
def test_columns_and_shapes(kinds):
    cfg = data_cfg(tasks=kinds)
    arrays, meta = build(cfg)
    infos = task_infos(kinds)
    n_in = sum(config.task_shape(k)[0] for k in kinds)
    n_out = sum(config.task_outputs(k) for k in kinds)
    assert meta["n_inputs"] == n_in and meta["n_outputs"] == n_out
    # every input and output column belongs to exactly one task, in order
    assert sorted(c for t in infos for c in t.inputs) == list(range(n_in))
    assert sorted(c for t in infos for c in t.outputs) == list(range(n_out))
    assert len({t.name for t in infos}) == len(kinds)
    total = 0
    for split, a in arrays.items():
        assert a["x"].dtype == np.float32 and a["x"].shape[1] == n_in
        assert a["y"].dtype == np.int64 and a["y"].shape == (len(a["x"]), len(kinds))
        total += len(a["x"])
    assert total == 200
    assert abs(len(arrays["test"]["x"]) - 40) <= 1 and abs(len(arrays["val"]["x"]) - 40) <= 1
    for t in meta["tasks"]:
        assert t["loss"] == ("bce" if t["classes"] == 2 else "ce")


def test_standardised_on_train_only():
    arrays, _ = build(data_cfg())
    x = arrays["train"]["x"]
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0), 1, atol=1e-4)
    assert not np.allclose(arrays["test"]["x"].mean(axis=0), 0, atol=1e-6)


def test_tasks_are_independent():
    """Each task's labels depend on its own columns only: the joint set equals the tasks made
    alone, and two copies of one task kind draw different samples."""
    cfg = data_cfg(tasks=["moons", "moons"], standardize=False)
    arrays, meta = build(cfg)
    x, y = arrays["train"]["x"], arrays["train"]["y"]
    first, second = meta["tasks"]
    # a classifier on task 0's columns predicts task 0 labels; labels of the two tasks differ
    assert not np.array_equal(x[:, first["inputs"]], x[:, second["inputs"]])
    assert 0.3 < (y[:, 0] == y[:, 1]).mean() < 0.7
    from sklearn.neighbors import KNeighborsClassifier
    own = KNeighborsClassifier(5).fit(x[:, first["inputs"]], y[:, 0]).score(
        arrays["test"]["x"][:, first["inputs"]], arrays["test"]["y"][:, 0])
    other = KNeighborsClassifier(5).fit(x[:, second["inputs"]], y[:, 0]).score(
        arrays["test"]["x"][:, second["inputs"]], arrays["test"]["y"][:, 0])
    assert own > 0.9 and other < 0.7


def test_deterministic_for_a_seed_and_different_for_another():
    a, _ = build(data_cfg(seed=3))
    b, _ = build(data_cfg(seed=3))
    c, _ = build(data_cfg(seed=4))
    for split in a:
        np.testing.assert_array_equal(a[split]["x"], b[split]["x"])
        np.testing.assert_array_equal(a[split]["y"], b[split]["y"])
    assert not np.array_equal(a["train"]["x"], c["train"]["x"])


def test_digits_loads_offline():
    arrays, meta = build(data_cfg(tasks=["digits"], n_samples=300))
    assert meta["n_inputs"] == 64 and meta["n_outputs"] == 10
    assert set(np.unique(arrays["train"]["y"])) <= set(range(10))


def write_idx(path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def make_idx_folder(folder, n_train=30, n_test=10, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), gz)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader(tmp_path, gz):
    make_idx_folder(tmp_path, gz=gz)
    x, y = load_idx_dataset(tmp_path)
    assert x.shape == (40, 784) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (40,)
    suffix = ".gz" if gz else ""
    raw = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert raw.shape == (30, 28, 28) and raw.dtype == np.uint8
    np.testing.assert_allclose(x[:30], raw.reshape(30, -1) / 255.0)


def test_mnist_and_fashion_side_by_side(tmp_path):
    make_idx_folder(tmp_path / "mnist", seed=1)
    make_idx_folder(tmp_path / "fashion", gz=False, seed=2)
    cfg = data_cfg(tasks=["mnist", "fashion_mnist"], n_samples=40,
                   mnist_dir=str(tmp_path / "mnist"), fashion_mnist_dir=str(tmp_path / "fashion"))
    arrays, meta = build(cfg)
    assert meta["n_inputs"] == 1568 and meta["n_outputs"] == 20


def test_missing_idx_file_is_named(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_idx_dataset(tmp_path)


def test_bad_idx_magic(tmp_path):
    (tmp_path / "f").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "f")


def test_area_resize_averages_areas():
    from pipeline.data import area_resize
    rng = np.random.default_rng(0)
    x = rng.random((5, 28 * 28)).astype(np.float32)
    half = area_resize(x, 28, 14).reshape(5, 14, 14)
    blocks = x.reshape(5, 14, 2, 14, 2).mean(axis=(2, 4))  # 2 × 2 blocks: exact area means
    np.testing.assert_allclose(half, blocks, rtol=1e-5, atol=1e-6)
    for new in (12, 7, 5):  # fractional overlaps: the mean intensity is kept, constants stay
        small = area_resize(x, 28, new)
        assert small.shape == (5, new * new)
        np.testing.assert_allclose(small.mean(axis=1), x.mean(axis=1), rtol=1e-5)
        np.testing.assert_allclose(area_resize(np.full((1, 784), 0.3, np.float32), 28, new),
                                   0.3, rtol=1e-5)


def test_classes_keep_the_first_c_classes_balanced():
    for classes, outputs in ((3, 3), (2, 1)):
        arrays, meta = build(data_cfg(tasks=["digits", "moons"], n_samples=91, classes=classes))
        y = np.concatenate([a["y"][:, 0] for a in arrays.values()])
        counts = np.bincount(y, minlength=classes)
        assert len(counts) == classes and counts.max() - counts.min() <= 1  # 91 = 31 + 30 + 30
        assert meta["tasks"][0]["classes"] == classes
        assert len(meta["tasks"][0]["outputs"]) == outputs  # 2 classes: one logit with BCE
        assert meta["tasks"][1]["classes"] == 2  # moons is not an image task


def test_image_size_of_idx_tasks(tmp_path):
    make_idx_folder(tmp_path / "fashion", n_train=150, n_test=50, seed=3)
    cfg = data_cfg(tasks=["digits", "fashion_mnist"], n_samples=24, image_size=7, classes=4,
                   fashion_mnist_dir=str(tmp_path / "fashion"), standardize=False)
    arrays, meta = build(cfg)
    assert meta["n_inputs"] == 64 + 49 and meta["n_outputs"] == 4 + 4
    x = np.concatenate([a["x"] for a in arrays.values()])
    raw, labels = load_idx_dataset(tmp_path / "fashion")
    # every fashion row is the 7 × 7 area average of one of the first 4 classes' images
    from pipeline.data import area_resize
    small = area_resize(raw[labels < 4], 28, 7)
    dist = np.abs(x[:, 64:, None] - small.T[None]).max(axis=1)
    assert (dist.min(axis=1) < 1e-6).all()
    p = config.parse({"data": {"tasks": ["digits", "fashion_mnist"], "image_size": 7, "classes": 4,
                               "fashion_mnist_dir": str(tmp_path / "fashion")}})
    assert p.base_layers[0] == 113 and p.base_layers[-1] == 8
