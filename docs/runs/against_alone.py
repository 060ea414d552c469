"""Accuracy against each task trained alone (pipeline.baseline's per-seed rows) rather than
against the side-by-side dense net, which in docs/results.md (f) is itself about 5 points below
its tasks alone: per level, the median gap (alone − ticket) per task; per criterion, how many
seeds' first split comes with every task within `threshold` of the same task alone. The
baseline must be of the folder's configuration: its side_test_acc (the same side-by-side dense
net) must be the folder's level-0 test_acc, else one line, exit 2.

    python docs/runs/against_alone.py <result folder> <baseline csv> [threshold]
    python docs/runs/against_alone.py --help
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402  (docs/runs/tables.py: the check that a baseline is the folder's)

from pipeline import cli, io  # noqa: E402
from pipeline.analysis import fraction_text  # noqa: E402

CRITERIA = ("effective", "complete", "output", "functional")


def threshold_value(text: str) -> float:
    """THRESHOLD as a number in [0, 1] (accuracy units), else argparse's one-line error."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: a number in [0, 1] "
                                         "(accuracy units, e.g. 0.05)")
    return value + 0.0


FOLDER_ALLOWED = "allowed: a study result folder (accuracy.csv, seeds.csv)"
BASELINE_ALLOWED = "allowed: a file written by python -m pipeline.baseline --out"


def read(path: Path, required: tuple[str, ...], allowed: str, name: str = ""):
    """A table with the `required` columns; a missing, unreadable or damaged file, a folder or a
    broken link ends in one line naming it and what is allowed, exit 2 (cli.read_input)."""
    return cli.read_input(path, lambda p: io.read_csv(p, required), allowed, name)


def main(argv: list[str]) -> int:
    parser = cli.parser("python docs/runs/against_alone.py", __doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, metavar="FOLDER",
                        help="a study result folder (accuracy.csv, seeds.csv)")
    parser.add_argument("baseline", type=Path, metavar="BASELINE_CSV",
                        help="pipeline.baseline's per-seed rows (--out) for the same seeds and tasks")
    parser.add_argument("threshold", type=threshold_value, nargs="?", default=0.05,
                        metavar="THRESHOLD", help="largest gap to the task alone, accuracy units "
                                                  "(default 0.05)")
    args = parser.parse_args(argv)
    folder, threshold = args.folder, args.threshold
    if not folder.is_dir():
        cli.stop(f"FOLDER {str(folder)!r} is not allowed; allowed: a study result folder")
    acc = read(folder / "accuracy.csv", ("seed", "level", "task", "test_acc"), FOLDER_ALLOWED)
    seeds = read(folder / "seeds.csv", ("seed", *(f"first_split_level_{c}" for c in CRITERIA)),
                 FOLDER_ALLOWED).set_index("seed")
    baseline = read(args.baseline, ("seed", "task", "side_test_acc", "alone_test_acc"),
                    BASELINE_ALLOWED, "BASELINE_CSV")
    alone = baseline.set_index(["seed", "task"])["alone_test_acc"]
    if not set(acc.set_index(["seed", "task"]).index) <= set(alone.index):
        cli.stop(f"BASELINE_CSV {str(args.baseline)!r} lacks some of the study's seeds or tasks; "
                 f"allowed: the baseline of the same seeds and tasks as {folder}")
    mismatch = tables.dense_mismatch(acc, baseline)
    if mismatch:
        cli.stop(f"BASELINE_CSV {str(args.baseline)!r} is not of {folder}'s configuration: "
                 f"{mismatch}; allowed: pipeline.baseline --out of the same configuration and seeds")
    acc["gap"] = acc.set_index(["seed", "task"]).index.map(alone) - acc["test_acc"]
    gaps = acc.groupby(["level", "task"], sort=False)["gap"].median().unstack()
    print("median gap to the task alone (accuracy units), per level:")
    print(gaps.round(3).to_string())
    within = (acc.assign(ok=acc["gap"] <= threshold)
              .groupby(["seed", "level"])["ok"].all())
    n = len(seeds)
    for c in CRITERIA:
        first = seeds[f"first_split_level_{c}"].dropna()
        k = sum(bool(within[(s, int(lv))]) for s, lv in first.items())
        print(f"{c}: first split with every task within {threshold} of alone: "
              f"{fraction_text(k, n)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.pipe_safe(main, sys.argv[1:]))
