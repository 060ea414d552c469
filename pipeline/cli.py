"""Command lines that refuse a wrong argument the project's way: one line naming it and what is
allowed, exit code 2, no usage block and no traceback (argparse's own errors print the usage
first, a block that buries the one line that matters)."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are one line on stderr, `error: <prog>: <what>;
    see <prog> --help`, and exit code 2 (argparse's own code for a usage error). Subcommand
    parsers made by add_subparsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def fail(message: str) -> int:
    """Print `error: <message>` (one line) on stderr; the exit code of a refused argument."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def dvc_command() -> list[str]:
    """`dvc` as the user's shell finds it, else this interpreter's DVC module (installed with the
    project but not on PATH, e.g. a virtual environment used without activating it)."""
    import shutil

    return ["dvc"] if shutil.which("dvc") else [sys.executable, "-m", "dvc"]
