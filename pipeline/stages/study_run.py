"""Stage `run@…` of studies/dvc.yaml: one study configuration, all its levels and seeds.

    python -m pipeline.stages.study_run --work-root models/study --out reports/study/runs/NAME \\
        --extensions 0 --iterations 20 --tasks moons+circles --hidden 40x40 --init ... --noise 0.1 \\
        --method rewind --weight-decay 0 --bias-init default --n-samples 1000

`run_configuration` calls the main pipeline's stage functions (`run(params, root)`) with the
configuration's work folder as root: no change of directory, so several configurations can run
in one process at once (Dask threads).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline import config, io, study_dying
from pipeline.stages import (
    StageError,
    analyze,
    cli,
    generate,
    imp,
    learned,
    train,
    trajectory,
    tune_malloc,
)
from pipeline.study import RESULT_FILES, collect, configuration_params

STAGES = (generate, trajectory, train, learned, imp, analyze)  # what `dvc repro` runs before `plot`


def run_configuration(raw: dict, combo: dict, work: Path, log=print) -> None:
    """Run generate, trajectory, train, learned, imp and analyze for one configuration in `work`.

    `work` keeps its finished IMP levels between calls (the imp stage's manifest discards them if
    the configuration's params or inputs changed), so an interrupted configuration resumes.
    """
    work.mkdir(parents=True, exist_ok=True)
    document = configuration_params(raw, combo)
    io.write_text(work / "params.yaml", yaml.safe_dump(document, sort_keys=False))
    log(f"study: configuration {config.configuration_name(combo)}")
    params = config.parse(document)  # validated again as a plain run
    for stage in STAGES:
        stage.run(params, work)


def collect_results(combo: dict, work: Path, out: Path) -> None:
    """The configuration's result files (pipeline.study.RESULT_FILES) into `out`, what dies
    during IMP (pipeline.study_dying) among them."""
    collect(combo, work, out, extra=lambda folder: study_dying.collect(work, folder))


def run_remote(raw: dict, combo: dict) -> tuple[dict[str, bytes], float]:
    """On a Dask worker (pipeline.sweep): one configuration → ({result file: bytes}, seconds)."""
    tune_malloc()  # as every stage process does (a Dask worker is not one)
    with tempfile.TemporaryDirectory(prefix="ticketsplit-") as tmp:
        start = time.perf_counter()
        work, out = Path(tmp) / "work", Path(tmp) / "out"
        run_configuration(raw, combo, work, log=lambda *_: None)
        collect_results(combo, work, out)
        files = {name: (out / name).read_bytes() for name in RESULT_FILES}
        return files, time.perf_counter() - start


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages.study_run")
    work = parser.add_mutually_exclusive_group(required=True)
    work.add_argument("--work", type=Path, help="work folder (kept for resume)")
    # studies/dvc.yaml: the work folder is <root>/<configuration name>, the name it had before
    # the method / weight-decay / bias-init / n-samples axes existed when they have their
    # defaults (DVC's templates cannot leave a value out of a name), so interrupted
    # configurations resume there
    work.add_argument("--work-root", type=Path, help="folder of the work folders, each named "
                                                     "after its configuration")
    parser.add_argument("--out", required=True, type=Path, help="result folder")
    parser.add_argument("--extensions", required=True, type=int)
    parser.add_argument("--iterations", required=True, type=int)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--hidden", required=True)
    parser.add_argument("--init", required=True)
    parser.add_argument("--noise", required=True, type=float)
    # axes added later: their defaults are the values of the studies made before them
    parser.add_argument("--method", default=config.STUDY_AXIS_DEFAULTS["method"])
    parser.add_argument("--weight-decay", dest="weight_decay", type=float,
                        default=config.STUDY_AXIS_DEFAULTS["weight_decay"])
    parser.add_argument("--bias-init", dest="bias_init",
                        default=config.STUDY_AXIS_DEFAULTS["bias_init"])
    # (before the n_samples axis, a configuration had the base's data.n_samples)
    parser.add_argument("--n-samples", dest="n_samples", type=int, default=None)
    return parser.parse_args(argv)


def main() -> list[Path]:
    """Returns the result folder (the work folder is kept for resuming)."""
    args = parse_args(sys.argv[1:])
    params = config.load(study=True)  # every configuration checked, errors name it
    combo = {axis: getattr(args, axis) for axis in config.STUDY_AXES}
    if combo["n_samples"] is None:
        combo["n_samples"] = params.data.n_samples
    if combo not in config.configurations(params.study):
        raise StageError(f"configuration {config.configuration_name(combo)} is not in the "
                         "study section of params.yaml")
    raw = config.read_yaml("params.yaml")
    work = args.work if args.work is not None else \
        args.work_root / config.configuration_name(combo)
    run_configuration(raw, combo, work)
    collect_results(combo, work, args.out)
    return [args.out]


if __name__ == "__main__":
    cli(main)
