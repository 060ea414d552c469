"""Stage `params`: every key of params.yaml checked before any other stage runs.

DVC removes a stage's outputs just before it runs the stage. Every stage checks params.yaml as
it starts, but by then DVC has removed that stage's outputs, so a wrong value given with
`dvc exp run -S key=value` used to leave the run without them. This stage comes first in the DAG
(`generate` depends on its output) and depends on every section of the run, so DVC runs it
first and stops at a wrong value with one line, before any other stage is touched. Its output
only says that the check passed: the same bytes for every valid params.yaml, so no later stage
reruns because of it.
"""
from __future__ import annotations

from pathlib import Path

from pipeline import config, io
from pipeline.stages import cli

CHECKED_PATH = Path("reports/params_checked.txt")
CHECKED = "params.yaml checked: every key of the run is valid (pipeline.config)\n"


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """Write reports/params_checked.txt under root (params were checked by config.load)."""
    path = root / CHECKED_PATH
    io.write_text(path, CHECKED)
    return [path]


def main() -> list[Path]:
    return run(config.load())


if __name__ == "__main__":
    cli(main)
