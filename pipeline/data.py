"""Multi-task datasets placed side by side (SCIENCE.md §2).

Sample i of the combined set is (x¹ᵢ, …, xᵀᵢ) → (y¹ᵢ, …, yᵀᵢ): every task draws its own samples
with its own seed, keeps its own input columns and its own output columns.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.config import IDX_KINDS, IDX_SIZE, DataConfig, task_outputs, task_shape

SPLITS = ("train", "val", "test")
IDX_FILES = {  # same names for MNIST and Fashion-MNIST
    "images": ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"),
    "labels": ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(Exception):
    """Missing or malformed input data; the message is one line for the user."""


@dataclass(frozen=True)
class TaskInfo:
    name: str              # unique, e.g. moons_0
    kind: str
    inputs: list[int]      # column indices in x
    outputs: list[int]     # logit indices of the network output
    classes: int
    loss: str              # bce (one logit) or ce (C logits)


def task_infos(kinds: list[str] | tuple[str, ...], cfg: DataConfig | None = None) -> list[TaskInfo]:
    """Column bookkeeping for tasks side by side, in order (image size and classes from cfg)."""
    infos, col, out = [], 0, 0
    for i, kind in enumerate(kinds):
        n_in, classes = task_shape(kind, cfg)
        n_out = task_outputs(kind, cfg)
        infos.append(TaskInfo(name=f"{kind}_{i}", kind=kind, inputs=list(range(col, col + n_in)),
                              outputs=list(range(out, out + n_out)), classes=classes,
                              loss="bce" if n_out == 1 else "ce"))
        col, out = col + n_in, out + n_out
    return infos


def task_seed(seed: int, index: int) -> int:
    """Independent per-task seed derived from the data seed and the task's position."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


# ---- IDX files (MNIST, Fashion-MNIST) --------------------------------------------------------
def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or raw, detected from its first bytes)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise DataError(f"{path}: IDX body has {len(body)} bytes, header promises {expected}")
    return np.frombuffer(body, dtype=dtype).reshape(tuple(dims))


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"missing IDX file {folder / stem} (or {stem}.gz)")


def load_idx_dataset(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All 70k images (train + t10k) as float32 in [0, 1], flattened, and their labels."""
    folder = Path(folder)
    images = [read_idx(_find_idx(folder, s)) for s in IDX_FILES["images"]]
    labels = [read_idx(_find_idx(folder, s)) for s in IDX_FILES["labels"]]
    x = np.concatenate([im.reshape(len(im), -1) for im in images]).astype(np.float32) / 255.0
    y = np.concatenate(labels).astype(np.int64)
    if len(x) != len(y):
        raise DataError(f"{folder}: {len(x)} images but {len(y)} labels")
    return x, y


# ---- one task ---------------------------------------------------------------------------------
def make_task(kind: str, n: int, seed: int, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """n samples of one task drawn with its own seed: x [n, features] float32, y [n] int64."""
    from sklearn import datasets

    if kind == "moons":
        x, y = datasets.make_moons(n_samples=n, noise=cfg.noise, random_state=seed)
    elif kind == "circles":
        x, y = datasets.make_circles(n_samples=n, noise=cfg.noise, factor=cfg.circles_factor,
                                     random_state=seed)
    else:
        if kind == "digits":
            bunch = datasets.load_digits()
            pool_x, pool_y = bunch.data.astype(np.float32) / 16.0, bunch.target
        else:
            pool_x, pool_y = load_idx_dataset(getattr(cfg, f"{kind}_dir"))
        pick = _sample(pool_y, n, seed, cfg.classes, kind)
        x, y = pool_x[pick], pool_y[pick]
        if kind in IDX_KINDS and cfg.image_size != IDX_SIZE:
            x = area_resize(x, IDX_SIZE, cfg.image_size)
    expected = task_shape(kind, cfg)[0]
    if x.shape[1] != expected:
        raise DataError(f"{kind}: samples have {x.shape[1]} features, expected {expected}")
    return x.astype(np.float32), y.astype(np.int64)


def _sample(labels: np.ndarray, n: int, seed: int, classes: int | None, kind: str) -> np.ndarray:
    """Indices of n samples: uniformly from the whole pool, or, with `classes` = C, balanced
    over the first C classes (n // C each, one more for the first n % C), in random order."""
    rng = np.random.default_rng(seed)
    if classes is None:
        if n > len(labels):
            raise DataError(f"data.n_samples: {n} is more than the {len(labels)} {kind} "
                            "samples available")
        return rng.choice(len(labels), size=n, replace=False)
    picks = []
    for c in range(classes):
        want = n // classes + (c < n % classes)
        pool = np.flatnonzero(labels == c)
        if want > len(pool):
            raise DataError(f"data.n_samples: {n} needs {want} samples of {kind} class {c}, "
                            f"which has {len(pool)}")
        picks.append(rng.choice(pool, size=want, replace=False))
    return rng.permutation(np.concatenate(picks))


def area_resize(x: np.ndarray, size: int, new: int) -> np.ndarray:
    """Flattened size × size images [N, size²] → new × new by area averaging: every output
    pixel is the mean of the input area it covers (fractional overlaps weighted), as image
    libraries' 'area'/'box' filters do."""
    edges = np.arange(new + 1) * size / new
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = np.arange(size)[None, :]
    # overlap of output cell [lo, hi) with input pixel [p, p + 1), divided by the cell's width
    weights = (np.clip(np.minimum(hi, pixels + 1) - np.maximum(lo, pixels), 0, None)
               / (hi - lo)).astype(np.float32)  # [new, size], rows sum to 1
    images = x.reshape(len(x), size, size)
    return np.einsum("ai,nij,bj->nab", weights, images, weights).reshape(len(x), new * new)


# ---- the combined dataset ---------------------------------------------------------------------
def _stratify_labels(y: np.ndarray, n_test: int, n_rest: int) -> tuple[np.ndarray | None, str]:
    """Stratify on the joint label tuple, else the first task's label, else not at all.

    train_test_split needs every class at least twice and at least one sample per class in
    each part; joint labels of many 10-class tasks quickly break that.
    """
    candidates = [("joint", np.unique(y, axis=0, return_inverse=True)[1].reshape(-1)),
                  ("first_task", y[:, 0])]
    for name, labels in candidates:
        counts = np.bincount(labels)
        counts = counts[counts > 0]
        if counts.min() >= 2 and min(n_test, n_rest) >= len(counts):
            return labels, name
    return None, "none"


def build(cfg: DataConfig) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Generate all tasks, split, standardise. Returns arrays per split and the tasks.json dict."""
    from sklearn.model_selection import train_test_split

    infos = task_infos(cfg.tasks, cfg)
    parts = [make_task(t.kind, cfg.n_samples, task_seed(cfg.seed, i), cfg)
             for i, t in enumerate(infos)]
    x = np.concatenate([p[0] for p in parts], axis=1)
    y = np.stack([p[1] for p in parts], axis=1)

    n = len(x)
    n_test = int(round(n * cfg.test_fraction))
    idx = np.arange(n)
    strat, strat_name = _stratify_labels(y, n_test, n - n_test)
    rest, test = train_test_split(idx, test_size=n_test, random_state=cfg.seed, stratify=strat)
    n_val = int(round(n * cfg.val_fraction))
    strat_rest, _ = (None, "none") if strat is None else _stratify_labels(
        y[rest], n_val, len(rest) - n_val)
    train, val = train_test_split(rest, test_size=n_val, random_state=cfg.seed,
                                  stratify=strat_rest)
    index = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

    mean = np.zeros(x.shape[1], dtype=np.float32)
    std = np.ones(x.shape[1], dtype=np.float32)
    if cfg.standardize:
        mean = x[index["train"]].mean(axis=0)
        std = x[index["train"]].std(axis=0)
        std[std == 0] = 1.0  # constant pixels stay constant instead of dividing by zero
    arrays = {s: {"x": ((x[i] - mean) / std).astype(np.float32), "y": y[i]}
              for s, i in index.items()}
    meta = {
        "tasks": [asdict(t) for t in infos],
        "n_inputs": int(x.shape[1]),
        "n_outputs": sum(len(t.outputs) for t in infos),
        "sizes": {s: int(len(i)) for s, i in index.items()},
        "stratified_on": strat_name,
        "standardized": cfg.standardize,
    }
    return arrays, meta


def load(folder: str | Path = "data") -> tuple[list[TaskInfo], dict[str, dict[str, np.ndarray]]]:
    """Tasks and arrays as written by the generate stage (no pickle)."""
    folder = Path(folder)
    meta = json.loads((folder / "tasks.json").read_text())
    tasks = [TaskInfo(**t) for t in meta["tasks"]]
    arrays = {}
    for split in SPLITS:
        with np.load(folder / f"{split}.npz", allow_pickle=False) as f:
            arrays[split] = {"x": f["x"], "y": f["y"]}
    return tasks, arrays
