"""Stage `params`: every key of params.yaml checked before any other stage runs.

DVC removes a stage's outputs just before it runs the stage. Every stage checks params.yaml as
it starts, but by then DVC has removed that stage's outputs, so a wrong value given with
`dvc exp run -S key=value` used to leave the run without them. This stage comes first in the DAG
(`generate` depends on its output) and depends on every section of the run, so DVC runs it
first and stops at a wrong value with one line, before any other stage is touched. Its output
only says that the check passed: the same bytes for every valid params.yaml, so no later stage
reruns because of it.

It declares the `study` section too, which no other stage of dvc.yaml reads: a study key changed
on the main pipeline (`dvc exp run -S 'study.noise=[0.2]'`, or `dvc repro` after editing it)
would otherwise skip every stage and record an experiment that shows the main run's metrics.
When a study key is the only change since dvc.yaml's last run (dvc.lock) and the study pipeline
has not run these study values either (studies/dvc.lock), the stage stops with one line saying
that study keys are read by `studies/dvc.yaml`; with other changes too it only says so on
stderr. After `dvc exp run studies/dvc.yaml -S study.…` (which runs the study pipeline only),
the next `dvc repro` reruns this stage alone: the study values are the ones the study ran, the
output is the same, and nothing after it reruns.
"""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline import config, io
from pipeline.stages import StageError, cli

CHECKED_PATH = Path("reports/params_checked.txt")
CHECKED = "params.yaml checked: every key of the run is valid (pipeline.config)\n"
MAIN_SECTIONS = tuple(s for s in config.SECTIONS if s != "study")


def recorded(lock: Path, stage: str) -> dict | None:
    """The params.yaml values a stage last ran with, as its lock file records them
    ({section or section.key: value}); None when the file or the stage is not there."""
    try:
        stages = (config.read_yaml(lock, "lock file") or {}).get("stages") or {}
        return dict(((stages.get(stage) or {}).get("params") or {})["params.yaml"])
    except (config.ConfigError, AttributeError, KeyError, TypeError, ValueError):
        return None


def changed_keys(now, before) -> list[str]:
    """The keys of two study sections whose values differ (every key if one is not a mapping)."""
    if not isinstance(now, dict) or not isinstance(before, dict):
        return ["study"]
    return [f"study.{k}" for k in sorted(now.keys() | before.keys(), key=str)
            if now.get(k) != before.get(k)]


def study_problem(raw: dict, root: Path) -> tuple[str, bool] | None:
    """(the line, whether to stop) when params.yaml's study section changed since dvc.yaml's
    last run and is not what studies/dvc.yaml last ran; None otherwise."""
    main = recorded(root / "dvc.lock", "params")
    study_ran = recorded(root / "studies" / "dvc.lock", "aggregate")
    study = raw.get("study")
    before = (main or {}).get("study", (study_ran or {}).get("study"))
    if before is None or study == before:
        return None
    if study_ran is not None and study == study_ran.get("study"):
        return None  # the study pipeline ran exactly these values
    keys = ", ".join(changed_keys(study, before))
    only = main is not None and all(raw.get(s) == main.get(s) for s in MAIN_SECTIONS)
    where = ("study keys are read only by the study pipeline: `dvc exp run studies/dvc.yaml "
             "-S 'study.…'` or `dvc repro studies/dvc.yaml` (docs/running.md, \"Studies\")")
    if only:
        return (f"params.yaml: {keys} changed and nothing that dvc.yaml's stages read; {where}; "
                "dvc.yaml would skip every stage", True)
    return f"note: params.yaml: {keys} changed too; dvc.yaml's stages do not read it: {where}", False


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """Write reports/params_checked.txt under root (params were checked by config.load)."""
    path = root / CHECKED_PATH
    io.write_text(path, CHECKED)
    return [path]


def main() -> list[Path]:
    raw = config.read_yaml("params.yaml")
    params = config.parse(raw)  # every key of the run checked (as config.load does)
    problem = study_problem(raw or {}, Path("."))
    if problem is not None:
        line, stop = problem
        if stop:
            raise StageError(line)
        print(line, file=sys.stderr)
    return run(params)


if __name__ == "__main__":
    cli(main)
