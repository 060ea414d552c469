"""What the command-line tools share: an argument parser whose errors are one line naming the
argument, exit code 2 (argparse prints its whole usage first), a one-line stop, and the `dvc`
command to run. Used by pipeline.study and pipeline.compare (the same API as robust36's
pipeline.cli for pipeline.sweep, pipeline.baseline and docs/runs/*.py, which also makes the
streams safe for any locale).
"""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser with one-line errors: `error: argument --temp: not allowed with
    argument --queue (python -m pipeline.study run --help shows every argument)`, exit code 2.
    Its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} ({self.prog} --help shows every argument)\n")


def parser(prog: str, description: str | None = None, **kwargs) -> Parser:
    """The parser of a command-line tool; call it first in its main()."""
    return Parser(prog=prog, description=description, **kwargs)


def stop(message: str) -> NoReturn:
    """End a tool with one line on stderr, `error: <message>`, and exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def dvc_command() -> list[str]:
    """`dvc` as the user's shell finds it, else this interpreter's DVC module (installed with the
    project but not on PATH, e.g. a virtual environment used without activating it)."""
    import shutil

    return ["dvc"] if shutil.which("dvc") else [sys.executable, "-m", "dvc"]
