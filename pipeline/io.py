"""Atomic file output: a stage never leaves a half-written artifact behind.

Every output goes to a temporary file (or folder) beside its final path, named
`.<name>.<random>.tmp[<suffix>]`, and is renamed into place once complete. A write that fails
(file size limit, full disk, read-only folder) removes its temporary file and raises WriteError,
whose one-line message names the output (not the temporary file); the previous version, or
nothing, stays. What a killed process left (a temporary file it could not remove) is removed by
`remove_stale` before a stage publishes a folder output.

Text is UTF-8 whatever the locale: every text file is written and read with encoding="utf-8"
(tests/test_locale.py checks every call), and entry points call `safe_streams` first, so a print
of `→` or `×` under a Latin-1 locale cannot end a stage after its outputs are written.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# tempfile creates 0600 files and 0700 folders; artifacts get the usual umask-based modes.
_UMASK = os.umask(0)
os.umask(_UMASK)


# a temporary name of _atomic / atomic_dir: `.NAME.<8 random>.tmp`, optionally + NAME's suffix
_TEMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


def safe_streams() -> None:
    """Make stdout and stderr print any text in any locale: a character the locale's encoding
    lacks (`→` under Latin-1 or ASCII) is written as its escape (`\\u2192`), as Python already
    does on stderr, instead of raising UnicodeEncodeError. Every entry point calls it first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a TextIOWrapper, or closed
            pass


class WriteError(Exception):
    """An output could not be written (the message names it); nothing half-written remains."""


class ReadError(Exception):
    """An input file exists but cannot be read (truncated, overwritten, not what its name says):
    the message names it (`path`) and how to make it again."""

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 why: str | None = None) -> None:
        super().__init__(message)
        self.path, self.why = path, why


def remake_hint(path: str | os.PathLike) -> str:
    """How to make `path` again: the main pipeline's stage that writes it (pipeline.paths), forced
    alone, or for any other file (a study's work folder, a file of no stage) its removal."""
    from pipeline.paths import made_by

    stage = made_by(public_path(path))
    if stage is None:
        return "remove it and run `dvc repro` again to remake it"
    return f"the {stage} stage writes it: run `dvc repro -f -s {stage}`, then `dvc repro`"


def read_error(path: str | os.PathLike, why: str,
               what: str = "is damaged and cannot be read") -> ReadError:
    """`path` `what` (`why`); how to make it again. what="is another run's file": a readable
    file whose content is not this run's (other seeds, other shapes)."""
    return ReadError(f"{public_path(path)} {what} ({why}); {remake_hint(path)}", path, why)


@contextlib.contextmanager
def reading(path: str | os.PathLike, damage: tuple[type[BaseException], ...] = (Exception,)
            ) -> Iterator[None]:
    """Read `path` inside: an exception of the kinds in `damage` becomes a ReadError naming the
    file; a missing file stays FileNotFoundError (the stages' one line for it says which stage
    makes it)."""
    try:
        yield
    except (FileNotFoundError, ReadError):
        raise
    except damage as exc:
        raise read_error(path, type(exc).__name__) from exc


def require_keys(path: str | os.PathLike, found, required: tuple[str, ...]) -> None:
    """ReadError unless `found` (a file's keys) holds every key in `required` (a file of
    another kind, or another version, under this name)."""
    missing = [k for k in required if k not in found]
    if missing:
        raise read_error(path, f"no key {', '.join(missing)}")


def read_torch(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict:
    """torch.load(path, weights_only=True) of a file of this project: a flat dict of tensors
    holding the keys in `required`. Raises ReadError naming the file when it is damaged (cut
    short, overwritten, empty) or not such a file; never loads anything but tensors."""
    import pickle
    import warnings

    import torch

    with reading(path), warnings.catch_warnings():
        # torch warns about pickle protocols it may not support: the one line below says it all
        warnings.simplefilter("ignore")
        try:
            state = torch.load(path, weights_only=True)
        except pickle.UnpicklingError:  # random bytes too: not a zip, read as a legacy pickle
            raise read_error(path, "torch.load(weights_only=True) refuses it: not a file of "
                             "tensors, damaged or foreign") from None
        except (RuntimeError, EOFError, OSError) as exc:  # the zip reader's errors
            if isinstance(exc, OSError) and type(exc) is not OSError:
                raise  # missing (the stage's line), no permission, a folder: not damage
            raise read_error(path, f"cut short or overwritten: {type(exc).__name__}") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise read_error(path, "not a dict of tensors")
    require_keys(path, state, required)
    return state


def read_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict:
    """Every array of an .npz file (no pickle), read at once, holding the arrays in `required`;
    a damaged or foreign file raises ReadError."""
    import numpy as np

    with reading(path):  # BadZipFile, ValueError, EOFError, OSError, ...
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    require_keys(path, arrays, required)
    return arrays


def read_json(path: str | os.PathLike, required: tuple[str, ...] = ()):
    """json of a UTF-8 file; with `required`, an object holding those keys. A damaged or
    foreign file raises ReadError naming it."""
    with reading(path, (ValueError, OSError)):  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    if required and not isinstance(data, dict):
        raise read_error(path, f"not a JSON object with keys {', '.join(required)}")
    require_keys(path, data if required else {}, required)
    return data


def read_csv(path: str | os.PathLike, required: tuple[str, ...] = ("seed",), **kwargs):
    """A table this project wrote (write_csv: a header, then rows, every line ending in a
    newline; `.gz`: gzip of that) as a pandas DataFrame (kwargs: pandas.read_csv's). A damaged
    file raises ReadError naming it: cut short (no final newline; pandas would read the last
    row's missing fields as NaN), not gzip, not UTF-8, empty, ragged, or without the `required`
    columns (a file overwritten by something else)."""
    import gzip
    import io as bytes_io

    import pandas as pd

    raw = Path(path).read_bytes()  # a missing file: FileNotFoundError, as open gives
    # UnicodeDecodeError and BadGzipFile are among ValueError and OSError
    with reading(path, (ValueError, OSError, EOFError, pd.errors.ParserError,
                        pd.errors.EmptyDataError)):
        if str(path).endswith(".gz"):
            raw = gzip.decompress(raw)
        if not raw.endswith(b"\n"):
            raise ValueError("cut short: no newline at its end")
        frame = pd.read_csv(bytes_io.BytesIO(raw), **kwargs)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise read_error(path, f"no column {', '.join(missing)}")
    return frame


def public_path(path: str | os.PathLike) -> Path:
    """`path` with every temporary component (`.NAME.xxxxxxxx.tmp`, `.NAME.old`) replaced by
    NAME: the output a failed write was making."""
    parts = []
    for part in Path(path).parts:
        m = _TEMP.match(part)
        parts.append(m.group("name") if m else part)
    return Path(*parts)


def write_error(path: str | os.PathLike, exc: OSError) -> WriteError:
    """WriteError naming the output at `path` (temporary components resolved) and the cause."""
    reason = exc.strerror or str(exc)
    return WriteError(f"cannot write {public_path(path)}: {reason}; the previous version (if "
                      "any) is kept, nothing half-written")


def _atomic(path: str | os.PathLike, write: Callable[[Path], None],
            keep_suffix: bool = False) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # keep_suffix: writers that pick the format from the name (PIL) see the real suffix
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.",
                                   suffix=".tmp" + (path.suffix if keep_suffix else ""),
                                   dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise


def write_with(path: str | os.PathLike, write: Callable[[Path], None],
               keep_suffix: bool = False) -> None:
    """Atomically write `path` with write(temporary path) (a figure's savefig, a GIF writer).
    keep_suffix: the temporary name ends in path's suffix too. Raises WriteError."""
    _atomic(path, write, keep_suffix)


def copy_file(src: str | os.PathLike, dest: str | os.PathLike) -> None:
    """dest := src's bytes, atomically (raises WriteError on a failed write)."""
    data = Path(src).read_bytes()
    _atomic(dest, lambda p: p.write_bytes(data))


def remove_stale(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove what killed writes left in `folder` (temporary files and folders of this module,
    `.NAME.old` folders of atomic_dir), only those of output `name` when given; returns them.
    Call it before a folder becomes an output so that no leftover is published inside it."""
    folder = Path(folder)
    gone = []
    for entry in (sorted(folder.iterdir()) if folder.is_dir() else []):
        m = _TEMP.match(entry.name)
        old = entry.name.startswith(".") and entry.name.endswith(".old") and entry.is_dir()
        owner = m.group("name") if m else entry.name[1:-len(".old")] if old else None
        if owner is not None and name in (None, owner):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            gone.append(entry)
    return gone


def write_text(path: str | os.PathLike, text: str) -> None:
    _atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | os.PathLike, frame) -> None:
    """A pandas DataFrame as CSV with a fixed float format, so reruns give identical bytes."""
    _atomic(path, lambda p: frame.to_csv(p, index=False, float_format="%.6g",
                                             lineterminator="\n", encoding="utf-8"))


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path.parent, path.name)  # earlier killed fills of this folder
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_UMASK)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            # a write inside the folder (np.savez) names its temporary path: name the output
            raise write_error(getattr(exc, "filename", None) or path, exc) from exc
        raise
