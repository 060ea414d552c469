"""Atomic file output: a stage never leaves a half-written artifact behind."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# tempfile creates 0600 files and 0700 folders; artifacts get the usual umask-based modes.
_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    _atomic(path, lambda p: p.write_text(text))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | os.PathLike, frame) -> None:
    """A pandas DataFrame as CSV with a fixed float format, so reruns give identical bytes."""
    _atomic(path, lambda p: frame.to_csv(p, index=False, float_format="%.6g", lineterminator="\n"))


def save_tensors(path: str | os.PathLike, tensors: dict) -> None:
    """A flat dict of tensors, loadable with torch.load(path, weights_only=True)."""
    import io as _io

    import torch

    # torch.save names the archive after the file it writes to; saving into a buffer keeps the
    # random temp-file name out of the bytes, so identical tensors give identical files.
    buffer = _io.BytesIO()
    torch.save(tensors, buffer)
    _atomic(path, lambda p: p.write_bytes(buffer.getvalue()))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a temporary sibling folder, then swap it in place of `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
