"""What the command-line tools share (pipeline.sweep, pipeline.baseline, pipeline.study,
pipeline.compare, docs/runs/*.py): an argument parser whose errors are one line naming the
argument, exit code 2 (argparse prints its whole usage first), streams that print in any locale
(io.safe_streams), a one-line stop, and the `dvc` command to run. The stages have their own
runner, pipeline.stages.cli, which takes no arguments.
"""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from pipeline import io


class Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser with one-line errors: `error: argument --workers: invalid int
    value: 'x' (python -m pipeline.sweep --help shows every argument)`, exit code 2. Its
    subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} ({self.prog} --help shows every argument)\n")


def parser(prog: str, description: str | None = None, **kwargs) -> Parser:
    """The parser of a command-line tool; call it first in its main(): it also makes stdout and
    stderr safe for any text in any locale (io.safe_streams), so that --help and every later
    print work under a Latin-1 locale too."""
    io.safe_streams()
    return Parser(prog=prog, description=description, **kwargs)


def stop(message: str) -> NoReturn:
    """End a tool with one line on stderr, `error: <message>`, and exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def read_input(path, read, allowed: str, name: str = ""):
    """read(path) of a tool's input file, or the tool ends with one line naming the file and
    what is allowed (`allowed`, e.g. "allowed: files written by python -m pipeline.baseline
    --out"), exit code 2: a path that is missing, a broken symbolic link, a folder, unreadable
    (no permission, an I/O error) or damaged (io.ReadError: binary, cut short, of another kind).
    `name`: the argument it came from (e.g. "--baselines"), put first."""
    from pathlib import Path

    path, head = Path(path), f"{name}: " if name else ""
    if path.is_symlink() and not path.exists():
        stop(f"{head}{path} is a broken symbolic link; {allowed}")
    if path.is_dir():
        stop(f"{head}{path} is a folder; {allowed}")
    try:
        return read(path)
    except FileNotFoundError:
        stop(f"{head}{path} is missing; {allowed}")
    except io.ReadError as exc:  # its first clause: `<file> is damaged … (<why>)`; the rest is
        stop(f"{head}{str(exc).split('; ')[0]}; {allowed}")  # about remaking pipeline outputs
    except OSError as exc:  # no permission, an I/O error: the file is there but unreadable
        stop(f"{head}{path} cannot be read ({exc.strerror or type(exc).__name__}); {allowed}")


def refuse_twice(path, seen: dict, name: str, allowed: str) -> None:
    """Record `path` in `seen` ({resolved path: the path as given}), or end the tool with one
    line if it was given before under any spelling (`./x`, a symbolic link): name (e.g. FOLDER,
    --baselines) and what is allowed, exit code 2."""
    from pathlib import Path

    key = Path(path).resolve()
    if key in seen:
        stop(f"{name} {str(path)!r} is given twice (as {str(seen[key])!r}); {allowed}")
    seen[key] = path


def pipe_safe(main, *args) -> int:
    """main(*args)'s exit code, 0 when the reader of stdout went away (`… | head`: it has what
    it wanted) instead of a BrokenPipeError traceback."""
    import os

    try:
        code = main(*args)
        sys.stdout.flush()
        return code or 0
    except BrokenPipeError:  # fd 1 to /dev/null: no second error when Python flushes at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
        return 0


def dvc_command() -> list[str]:
    """`dvc` as the user's shell finds it, else this interpreter's DVC module (installed with the
    project but not on PATH, e.g. a virtual environment used without activating it)."""
    import shutil

    return ["dvc"] if shutil.which("dvc") else [sys.executable, "-m", "dvc"]
