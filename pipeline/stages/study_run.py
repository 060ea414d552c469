"""Stage `run@…` of studies/dvc.yaml: one study configuration, all its levels and seeds.

    python -m pipeline.stages.study_run --work models/study/NAME --out reports/study/runs/NAME \\
        --extensions 0 --iterations 20 --tasks moons+circles --hidden 40x40 --init ... --noise 0.1
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pipeline import config
from pipeline.stages import StageError, run
from pipeline.study import collect, run_configuration


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages.study_run")
    parser.add_argument("--work", required=True, type=Path, help="work folder (kept for resume)")
    parser.add_argument("--out", required=True, type=Path, help="result folder")
    parser.add_argument("--extensions", required=True, type=int)
    parser.add_argument("--iterations", required=True, type=int)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--hidden", required=True)
    parser.add_argument("--init", required=True)
    parser.add_argument("--noise", required=True, type=float)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args(sys.argv[1:])
    params = config.load()
    combo = {axis: getattr(args, axis) for axis in config.STUDY_AXES}
    if combo not in config.configurations(params.study):
        raise StageError(f"configuration {config.configuration_name(combo)} is not in the "
                         "study section of params.yaml")
    raw = yaml.safe_load(Path("params.yaml").read_text())
    run_configuration(raw, combo, args.work)
    collect(combo, args.work, args.out)


if __name__ == "__main__":
    run(main)
