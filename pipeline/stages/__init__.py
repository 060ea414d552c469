"""Stage entry points: `python -m pipeline.stages.<stage>`, each run by one dvc.yaml stage.

Each stage module exposes `run(params, root) -> list[Path]` (the plain function: read the run's
inputs under `root`, write its outputs there, return them; paths from pipeline.paths) and a thin
`main()` that loads params.yaml and runs it in the current folder. Entry points may call each other
(the study runner calls the stages' `run`); library modules never import this package.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

from pipeline.config import ConfigError


class StageError(Exception):
    """A problem with the stage's inputs (missing file, bad data) shown as one line, exit 2."""


def tune_malloc() -> None:
    """Keep freed memory of this process (and of the workers it forks) for reuse.

    Training allocates the same few multi-MB activation buffers every epoch. glibc's default
    gives large blocks back to the kernel (mmap/munmap, heap trimming) and takes them again
    the next epoch: page faults on every epoch, measured 20–40 % of an IMP level's time
    (benchmarks/README.md). With blocks up to 32 MB served from the heap and no trimming, they
    are reused; the peak stays bounded because nothing small and long-lived sits between them
    (train.CurveLog). No-op where glibc's mallopt is missing.
    """
    import ctypes
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's maximum on 64-bit
    mallopt(m_trim_threshold, 1024 * 1024 * 1024)
    mallopt(m_top_pad, 64 * 1024 * 1024)


def cli(main: Callable[[], None]) -> None:
    """Run a stage's main(); user errors become one line on stderr and exit code 2.

    A missing input file (a stage run before the stages that make its inputs) is such an error:
    the line names the file. Stages write their outputs atomically, so nothing is half-written.
    A stage without its own argument parser (every one but study_run) takes no arguments: -h /
    --help prints its docstring and exits 0 without running it; anything else is an error."""
    module = sys.modules.get(main.__module__)
    args = sys.argv[1:]
    if args and not hasattr(module, "parse_args"):
        spec = getattr(module, "__spec__", None)  # run as -m, the module is __main__
        name = f"python -m {spec.name if spec is not None else main.__module__}"
        if args[0] in ("-h", "--help"):
            print(f"usage: {name}  (no arguments: it reads params.yaml in the current folder)\n")
            print((getattr(module, "__doc__", None) or "").strip())
            sys.exit(0)
        print(f"error: {name} takes no arguments (it reads params.yaml); got {' '.join(args)!r}",
              file=sys.stderr)
        sys.exit(2)
    tune_malloc()
    try:
        main()
    except (ConfigError, StageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as exc:
        print(f"error: {exc.filename or exc} is missing; run the stages before this one first "
              "(dvc repro)", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
