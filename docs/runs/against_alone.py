"""Accuracy against each task trained alone (pipeline.baseline's per-seed rows) rather than
against the side-by-side dense net, which in docs/results.md (f) is itself about 5 points below
its tasks alone: per level, the median gap (alone − ticket) per task; per criterion, how many
seeds' first split comes with every task within `threshold` of the same task alone.

    python docs/runs/against_alone.py <result folder> <baseline csv> [threshold]
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from pipeline.analysis import fraction_text


def main(argv: list[str]) -> int:
    folder, baseline = Path(argv[0]), pd.read_csv(argv[1])
    threshold = float(argv[2]) if len(argv) > 2 else 0.05
    acc = pd.read_csv(folder / "accuracy.csv")
    seeds = pd.read_csv(folder / "seeds.csv").set_index("seed")
    alone = baseline.set_index(["seed", "task"])["alone_test_acc"]
    if not set(acc.set_index(["seed", "task"]).index) <= set(alone.index):
        raise SystemExit("the baseline lacks some of the study's seeds or tasks")
    acc["gap"] = acc.set_index(["seed", "task"]).index.map(alone) - acc["test_acc"]
    gaps = acc.groupby(["level", "task"], sort=False)["gap"].median().unstack()
    print("median gap to the task alone (accuracy units), per level:")
    print(gaps.round(3).to_string())
    within = (acc.assign(ok=acc["gap"] <= threshold)
              .groupby(["seed", "level"])["ok"].all())
    n = len(seeds)
    for c in ("effective", "complete", "output", "functional"):
        first = seeds[f"first_split_level_{c}"].dropna()
        k = sum(bool(within[(s, int(lv))]) for s, lv in first.items())
        print(f"{c}: first split with every task within {threshold} of alone: "
              f"{fraction_text(k, n)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
