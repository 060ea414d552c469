"""Every malformed IDX folder stops the generate stage before anything is written, with one line
that names the file and says what is wrong (exit code 2; docs/running.md "Image tasks")."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import default_params, run_stage, write_params

from pipeline.data import DataError, load_idx_dataset, read_idx
from pipeline.stages import StageError, generate

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
T_IMAGES, T_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
N_TRAIN, N_TEST = 30, 10


def idx_bytes(array: np.ndarray, code: int = 0x08, dims=None) -> bytes:
    """An IDX file's bytes: magic (0, 0, type code, ndim), big-endian dimensions, the body."""
    dims = array.shape if dims is None else dims
    header = struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    return header + array.tobytes()


def make_folder(folder: Path, gz: bool, size: int = 28, seed: int = 0) -> Path:
    """A valid MNIST-format folder: 30 + 10 random images with labels 0–9."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for images, labels, n in ((IMAGES, LABELS, N_TRAIN), (T_IMAGES, T_LABELS, N_TEST)):
        for stem, array in ((images, rng.integers(0, 256, (n, size, size), dtype=np.uint8)),
                            (labels, rng.integers(0, 10, n, dtype=np.uint8))):
            write(folder, stem, idx_bytes(array), gz)
    return folder


def write(folder: Path, stem: str, raw: bytes, gz: bool) -> None:
    (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw, mtime=0) if gz else raw)


def path_of(folder: Path, stem: str) -> Path:
    raw, gz = folder / stem, folder / (stem + ".gz")
    return gz if gz.exists() and not raw.exists() else raw


def raw_of(folder: Path, stem: str) -> bytes:
    p = path_of(folder, stem)
    data = p.read_bytes()
    return gzip.decompress(data) if p.suffix == ".gz" else data


def replace(folder: Path, stem: str, raw: bytes) -> None:
    """Replace a file's decompressed bytes, keeping its name (and gzip where it was)."""
    p = path_of(folder, stem)
    p.write_bytes(gzip.compress(raw, mtime=0) if p.suffix == ".gz" else raw)


def cut_gzip_in_half(folder):
    p = path_of(folder, IMAGES)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def bad_crc(folder):
    p = path_of(folder, LABELS)
    data = bytearray(p.read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 of the gzip trailer
    p.write_bytes(bytes(data))


def labels_of_6_bytes(folder):
    replace(folder, LABELS, raw_of(folder, LABELS)[:6])


def images(n, size=28, code=0x08, dtype=np.uint8, dims=None) -> bytes:
    return idx_bytes(np.zeros((n, size, size), dtype=dtype), code, dims)


def labels(values) -> bytes:
    return idx_bytes(np.asarray(values, dtype=np.uint8))


# (case, gzipped?, mutation of a valid folder, stem of the file the line must name, text in the
# line, extra data params). Each is a kind of damage, on gzipped and raw files alike.
CASES = [
    ("gzip cut in half", True, cut_gzip_in_half, IMAGES, "gzip stream ends early", {}),
    ("gzip CRC damaged", True, bad_crc, LABELS, "damaged gzip stream", {}),
    ("raw labels cut to 6 bytes", False, labels_of_6_bytes, LABELS, "IDX header cut short", {}),
    ("file of 2 bytes", False, lambda f: replace(f, T_LABELS, b"\x00\x00"), T_LABELS,
     "too short for an IDX header", {}),
    ("empty file", True, lambda f: replace(f, T_LABELS, b""), T_LABELS,
     "too short for an IDX header", {}),
    ("wrong magic", False, lambda f: replace(f, IMAGES, b"\x01\x02" + raw_of(f, IMAGES)[2:]),
     IMAGES, "bad magic number", {}),
    ("unknown type code", True, lambda f: replace(f, IMAGES, images(N_TRAIN, code=0x07)),
     IMAGES, "unknown data type code 0x07", {}),
    ("float images", False, lambda f: replace(f, T_IMAGES, images(N_TEST, code=0x0D,
                                                                  dtype=">f4")),
     T_IMAGES, "IDX data type 0x0D", {}),
    ("images flattened to 2 dimensions", True,
     lambda f: replace(f, IMAGES, idx_bytes(np.zeros((N_TRAIN, 784), np.uint8))), IMAGES,
     "2 dimensions in the IDX header", {}),
    ("labels with 2 dimensions", False,
     lambda f: replace(f, LABELS, idx_bytes(np.zeros((N_TRAIN, 1), np.uint8))), LABELS,
     "2 dimensions in the IDX header", {}),
    ("body shorter than the header", False, lambda f: replace(f, IMAGES, raw_of(f, IMAGES)[:-100]),
     IMAGES, "the file is truncated", {}),
    ("body longer than the header", True, lambda f: replace(f, T_IMAGES, raw_of(f, T_IMAGES)
                                                            + b"\x00" * 7),
     T_IMAGES, "longer than its header says", {}),
    ("header promises more than the file", False,
     lambda f: replace(f, LABELS, labels(range(10))[:4] + struct.pack(">I", 2**32 - 1)
                       + bytes(10)), LABELS, "the file is truncated", {}),
    ("images and labels disagree in count", True,
     lambda f: replace(f, LABELS, labels(np.arange(N_TRAIN - 1) % 10)), LABELS,
     f"holds {N_TRAIN} images but", {}),
    ("images of 20 × 20", False, lambda f: (replace(f, IMAGES, images(N_TRAIN, 20)),
                                            replace(f, T_IMAGES, images(N_TEST, 20))),
     IMAGES, "images are 20 × 20 pixels", {}),
    ("images of 20 × 20 with image_size 14 (the issue)", True,
     lambda f: (replace(f, IMAGES, images(N_TRAIN, 20)), replace(f, T_IMAGES, images(N_TEST, 20))),
     IMAGES, "images are 20 × 20 pixels", {"image_size": 14}),
    ("label out of range", False, lambda f: replace(f, T_LABELS, labels([12] + [0] * 9)),
     T_LABELS, "label(s) out of range (largest 12)", {}),
    ("no images", True, lambda f: (replace(f, IMAGES, images(0)), replace(f, LABELS, labels([]))),
     IMAGES, "holds no images", {}),
    ("missing file", True, lambda f: path_of(f, T_LABELS).unlink(), T_LABELS,
     "missing IDX file", {}),
    ("a folder under the file's name", False,
     lambda f: (path_of(f, T_IMAGES).unlink(), (f / T_IMAGES).mkdir()), T_IMAGES,
     "is a folder, not an IDX file", {}),
    ("an HTML page under the name", False,
     lambda f: replace(f, IMAGES, b"<!DOCTYPE html>\n<html><body>Not found</body></html>\n"),
     IMAGES, "HTML", {}),
    ("a gzipped HTML page", True,
     lambda f: replace(f, LABELS, b"\n<html><body>rate limited</body></html>"), LABELS, "HTML", {}),
]
IDS = [c[0] for c in CASES]


def broken_folder(tmp_path: Path, case) -> tuple[Path, Path]:
    """(folder, the file the error must name) of one case."""
    _, gz, mutate, stem, _, _ = case
    folder = make_folder(tmp_path / "fashion", gz)
    mutate(folder)
    return folder, path_of(folder, stem)


def stage_params(folder: Path, **data) -> dict:
    params = default_params()
    params["data"].update(tasks=["moons", "fashion_mnist"], n_samples=20,
                          fashion_mnist_dir=str(folder), **data)
    params["model"]["hidden"] = [8]
    params["prune"]["target"] = 100
    return params


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reader_names_the_file_and_the_damage(tmp_path, case):
    folder, named = broken_folder(tmp_path, case)
    with pytest.raises(DataError) as info:
        load_idx_dataset(folder)
    message = str(info.value)
    assert str(named) in message and case[4] in message, message
    assert "\n" not in message


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_generate_stage_stops_before_writing(tmp_path, monkeypatch, case):
    """The stage's own entry (in process): StageError with the reader's line, no data/."""
    folder, named = broken_folder(tmp_path, case)
    work = tmp_path / "work"
    work.mkdir()
    write_params(work, stage_params(folder, **case[5]))
    monkeypatch.chdir(work)
    with pytest.raises(StageError) as info:
        generate.main()
    assert str(named) in str(info.value) and case[4] in str(info.value)
    assert sorted(p.name for p in work.iterdir()) == ["params.yaml"]


SUBPROCESS = ["gzip cut in half", "raw labels cut to 6 bytes",
              "images of 20 × 20 with image_size 14 (the issue)",
              "images and labels disagree in count", "an HTML page under the name"]


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in SUBPROCESS], ids=SUBPROCESS)
def test_generate_process_exits_2_with_one_line(tmp_path, case):
    """The issue's cases as a user meets them: `python -m pipeline.stages.generate` exits 2 with
    one `error:` line naming the file, no traceback; an existing data/ is left as it was."""
    folder, named = broken_folder(tmp_path, case)
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "tasks.json").write_text("old")
    write_params(work, stage_params(folder, **case[5]))
    proc = run_stage("generate", work, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert str(named) in lines[0] and case[4] in lines[0]
    assert sorted(p.name for p in (work / "data").iterdir()) == ["tasks.json"]
    assert (work / "data" / "tasks.json").read_text() == "old"


@pytest.mark.parametrize("gz", [True, False])
def test_valid_folder_still_reads_exactly(tmp_path, gz):
    """The checks refuse nothing valid: the pixels and labels come back as written."""
    folder = make_folder(tmp_path / "f", gz, seed=4)
    x, y = load_idx_dataset(folder)
    rng = np.random.default_rng(4)
    want_x, want_y = [], []
    for n in (N_TRAIN, N_TEST):
        want_x.append(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8).reshape(n, -1))
        want_y.append(rng.integers(0, 10, n, dtype=np.uint8))
    np.testing.assert_array_equal(x, np.concatenate(want_x).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(y, np.concatenate(want_y))
    assert read_idx(path_of(folder, IMAGES), "images").shape == (N_TRAIN, 28, 28)
