"""Stage entry points: `python -m pipeline.stages.<stage>`, each run by one dvc.yaml stage.

Each stage module exposes `run(params, root) -> list[Path]` (the plain function: read the run's
inputs under `root`, write its outputs there, return them; paths from pipeline.paths) and a thin
`main()` that loads params.yaml and runs it in the current folder. Entry points may call each other
(the study runner calls the stages' `run`); library modules never import this package.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.config import ConfigError, changed_params, read_yaml
from pipeline.io import ReadError, WriteError, safe_streams


class StageError(Exception):
    """A problem with the stage's inputs (missing file, bad data) shown as one line, exit 2."""


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) received: the stage stops where it is (BaseException, like
    KeyboardInterrupt, so that no `except Exception` swallows it)."""


# What the running stage has finished, for the interruption line: "after level 3".
PROGRESS = {"done": None}
_SIGNAL = {"received": None}


def report_progress(done: str) -> None:
    """Record what the stage has finished so far (named if it is interrupted)."""
    PROGRESS["done"] = done


def _raise_interrupted(signum, frame) -> None:
    _SIGNAL["received"] = signum
    raise Interrupted(signum)


def _interrupt_line(name: str) -> str:
    done = PROGRESS["done"]
    return (f"{name}: interrupted{' ' + done if done else ''}; `dvc repro` resumes "
            "(no output is half-written)")


def _quiet_exit_during_import(signum, frame) -> None:
    """Ctrl+C or SIGTERM while a stage is still importing torch: nothing was written yet."""
    name = sys.argv[0] if sys.argv and sys.argv[0] != "-m" else "stage"
    print(f"{os.path.basename(name)}: interrupted before it started; `dvc repro` reruns it",
          file=sys.stderr)
    os._exit(128 + signum)


if sys.argv[:1] == ["-m"]:  # `python -m pipeline.stages.X` locating X: the import has begun
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, _quiet_exit_during_import)


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
    safe_streams()  # a print of `→` under a Latin-1 locale must not end a finished stage
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
    spec = getattr(module, "__spec__", None)
    stage = (spec.name if spec is not None else main.__module__).rsplit(".", 1)[-1]
    for sig in (signal.SIGINT, signal.SIGTERM):  # both end the stage the same way
        signal.signal(sig, _raise_interrupted)
    try:
        started = _params_document()
        outputs = main()
        _refuse_changed_params(stage, started, outputs)
    except (ConfigError, StageError, ReadError, WriteError) as exc:
        if _SIGNAL["received"] is None:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        _exit_interrupted(stage)
    except FileNotFoundError as exc:
        if _SIGNAL["received"] is None:
            print(f"error: {exc.filename or exc} is missing; run the stages before this one "
                  "first (dvc repro)", file=sys.stderr)
            sys.exit(2)
        _exit_interrupted(stage)
    except (MemoryError, RuntimeError) as exc:
        if _SIGNAL["received"] is not None:
            _exit_interrupted(stage)
        reason = out_of_memory(exc)
        if reason is None:  # a bug: the traceback is wanted
            raise
        print(f"error: {stage}: out of memory ({reason}); the run does not fit in this machine: "
              "fewer model.seeds, narrower model.hidden, fewer prune.extensions or data.n_samples, "
              "or a train.batch_size", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, Interrupted):
        _SIGNAL["received"] = _SIGNAL["received"] or signal.SIGINT
        _exit_interrupted(stage)
    except BaseException:
        if _SIGNAL["received"] is None:  # a bug: the traceback is wanted
            raise
        _exit_interrupted(stage)  # e.g. the worker pool broken by the same signal
    # The stage's outputs are written: a signal from here on has nothing left to stop. Ignored,
    # not left to the handler: Python's shutdown (unloading torch takes tenths of a second)
    # restores the default action for handlers, which would end a finished stage with -15.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def out_of_memory(exc: BaseException) -> str | None:
    """The library's own words when `exc` is a failed allocation (numpy's MemoryError, torch's
    CPU allocator or CUDA out of memory), else None. Params within what the libraries accept can
    still ask for more memory than the machine has (pipeline.config bounds what they accept)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MemoryError):
        return text
    for mark in ("DefaultCPUAllocator: ", "CUDA out of memory"):
        if mark in text:
            return text[text.index(mark):].removeprefix("DefaultCPUAllocator: ")
    return None


# ---- params.yaml edited while the stage ran ----------------------------------------------------
# DVC records params.yaml as it is when a stage *ends* (treeverse/dvc#11058): a value edited
# while the stage ran would be recorded as the one it used. The stage compares the sections it
# declares with those it started with and refuses, leaving its outputs for DVC to rerun.
DVC_STAGES = {"study_run": ("studies/dvc.yaml", "run"), "aggregate": ("studies/dvc.yaml", "aggregate")}
CODE_ROOT = Path(__file__).resolve().parents[2]


def _params_document():
    """params.yaml as DVC reads it, or None when it cannot be read (the stage says so itself)."""
    try:
        return read_yaml("params.yaml")
    except ConfigError:
        return None


def declaration(stage: str) -> dict | None:
    """The dvc.yaml entry of the stage run by module `stage` (the current folder's file, as DVC
    runs it, else the one beside the code), or None when neither names it."""
    file, name = DVC_STAGES.get(stage, ("dvc.yaml", stage))
    for folder in (Path.cwd(), CODE_ROOT):
        try:
            stages = (read_yaml(folder / file, "pipeline file") or {}).get("stages") or {}
        except (ConfigError, AttributeError):  # missing, or not a mapping
            continue
        if isinstance(stages, dict) and isinstance(stages.get(name), dict):
            return stages[name]
    return None


def declared_params(entry: dict | None) -> list[str] | None:
    """The params.yaml entries ('section' or 'section.key') a dvc.yaml stage declares; None
    (every section) without a declaration."""
    if entry is None:
        return None
    out = []
    for item in entry.get("params") or []:
        if isinstance(item, dict):  # {file: [keys]}
            out += [k for file, keys in item.items() if file == "params.yaml" for k in keys]
        else:
            out.append(str(item))
    return out


def persistent_outputs(entry: dict | None) -> set[Path]:
    """The outputs a dvc.yaml stage declares `persist: true` (kept for resuming)."""
    outs = (entry or {}).get("outs") or []
    return {Path(name) for item in outs if isinstance(item, dict)
            for name, options in item.items() if isinstance(options, dict)
            and options.get("persist")}


def _refuse_changed_params(stage: str, started, outputs) -> None:
    """Raise StageError when a params key the stage declares changed since it started (or
    params.yaml no longer reads), after removing the outputs it returned but those it keeps
    for resuming (persist: true): DVC reruns the stage rather than record params it did not
    use. Nothing to compare when params.yaml could not be read at the start."""
    if started is None:
        return
    entry = declaration(stage)
    try:
        changed = changed_params(started, read_yaml("params.yaml"), declared_params(entry))
    except ConfigError as exc:
        changed = [str(exc)]
    if not changed:
        return
    keep = persistent_outputs(entry)
    for path in map(Path, outputs or []):
        if path in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    raise StageError(f"params.yaml changed while {stage} ran ({shown}); run dvc repro again")


def _exit_interrupted(stage: str) -> None:
    """One line, exit 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl+C does not print a traceback
        signal.signal(sig, signal.SIG_IGN)
    print(_interrupt_line(stage), file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(128 + int(_SIGNAL["received"]))
