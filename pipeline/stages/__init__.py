"""Thin stage entry points: `python -m pipeline.stages.<stage>`, each run by one dvc.yaml stage."""
from __future__ import annotations

import sys
from typing import Callable

from pipeline.config import ConfigError


class StageError(Exception):
    """A problem with the stage's inputs (missing file, bad data) shown as one line, exit 2."""


def run(main: Callable[[], None]) -> None:
    """Run a stage's main(); user errors become one line on stderr and exit code 2."""
    try:
        main()
    except (ConfigError, StageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
