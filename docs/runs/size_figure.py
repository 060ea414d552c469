"""docs/results.md (k)'s figure: the split and the dense gap against the training-set size.

    python docs/runs/size_figure.py docs/runs/images-data/ext0-*-n* \
        --baselines docs/runs/images-data/baseline_n*.csv --out docs/figures/images_data_by_n_samples.png
    python docs/runs/size_figure.py --help

Left: per split criterion (effective, output, cut-functional), the fraction of seeds split at
some level and before degradation, with its 95% Wilson interval (docs/science.md §7), against
the samples per task of each study result folder (config.json's n_samples). Right: each task's
dense gap to the task trained alone on its own pixels (pipeline.baseline --out files, named
…_n<samples>.csv), the mean over seeds in points with the range of the seeds, beside the
product's tolerance (a task counts as learned within 2 points). Reads only result files. The
folders must be of one configuration apart from n_samples, each size once, and a baseline of a
folder's size must be of its configuration (its side-by-side accuracy the folder's level 0).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402  (docs/runs/tables.py: the same reading and counting)

from pipeline import cli, io, palette, study  # noqa: E402
from pipeline.analysis import wilson  # noqa: E402

SHOWN = ("effective", "output", "functional")


def one_configuration(results: list[tables.Result]) -> None:
    """Ends the script with one line unless every folder is of the first one's configuration
    apart from n_samples (pool.configuration_difference) and no two have the same n_samples."""
    from pipeline import pool

    allowed = ("allowed: study result folders of one configuration at different n_samples, "
               "each once")
    first, sizes = results[0], {}
    for r in results:
        try:
            why = pool.configuration_difference(r.info, first.info, str(first.folder),
                                                ("n_samples", "data.n_samples"))
        except (AttributeError, KeyError, TypeError, ValueError):  # no params: not comparable
            why = "its config.json has no params to compare"
        if why:
            cli.stop(f"FOLDER {str(r.folder)!r}: {why}; {allowed}")
        n = samples(r)
        if n in sizes:
            cli.stop(f"FOLDER {str(r.folder)!r} has n_samples {n}, as {str(sizes[n])!r} has; "
                     f"{allowed}")
        sizes[n] = r.folder


def samples(result: tables.Result) -> int:
    return int(study.axis_value(result.info, "n_samples"))


def split_rows(results: list[tables.Result]) -> pd.DataFrame:
    """One row per folder and criterion: samples per task, k split at some level and before
    degradation, n seeds."""
    rows = []
    for result in results:
        for criterion in SHOWN:
            k, before = tables.split_counts(result.seeds, criterion)
            rows.append({"n_samples": samples(result), "criterion": criterion, "k": k,
                         "before": before, "n": len(result.seeds)})
    return pd.DataFrame(rows).sort_values(["criterion", "n_samples"])


def gap_rows(paths: list[Path], results: list[tables.Result]) -> pd.DataFrame:
    """One row per baseline file and task: samples per task (from the file name), the mean,
    lowest and highest gap over seeds in points. A baseline of the samples of a result folder
    must be of its configuration (tables.dense_mismatch), else one line, exit 2."""
    rows, by_size, seen = [], {samples(r): r for r in results}, {}
    for path in paths:
        found = re.search(r"_n(\d+)$", path.stem)
        if not found:
            cli.stop(f"--baselines {str(path)!r} is not allowed; allowed: a pipeline.baseline "
                     "--out file named …_n<samples per task>.csv")
        if int(found.group(1)) in seen:
            cli.stop(f"--baselines {str(path)!r} is for n_samples {found.group(1)}, as "
                     f"{str(seen[int(found.group(1))])!r} is; allowed: one file per n_samples")
        seen[int(found.group(1))] = path
        frame = tables.read_baseline(path)
        result = by_size.get(int(found.group(1)))
        mismatch = result and tables.dense_mismatch(result.accuracy, frame)
        if mismatch:
            cli.stop(f"--baselines {str(path)!r} is not of {result.folder}'s configuration: "
                     f"{mismatch}; allowed: pipeline.baseline --out of each folder's "
                     "configuration and seeds, named …_n<its n_samples>.csv")
        for task, g in frame.groupby("task"):
            points = 100 * g["gap"].astype(float)
            rows.append({"n_samples": int(found.group(1)), "task": task, "gap": points.mean(),
                         "low": points.min(), "high": points.max(), "seeds": len(g)})
    return pd.DataFrame(rows).sort_values(["task", "n_samples"])


def figure(splits: pd.DataFrame, gaps: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (criterion, g) in enumerate(splits.groupby("criterion", sort=False)):
        color, ls, marker = palette.neutral(i)
        for key, style, label, shift, fill in (("k", ls, "at some level", 1.0, "full"),
                                               ("before", ":", "before degradation", 1.08, "none")):
            bounds = [wilson(k, n) for k, n in zip(g[key], g["n"])]
            p = (g[key] / g["n"]).to_numpy()
            low, high = (np.array([b[j] for b in bounds]) for j in (0, 1))
            left.errorbar(g["n_samples"] * shift, p, yerr=[p - low, high - p], fillstyle=fill,
                          color=color, ls=style, marker=marker, capsize=3,
                          label=f"{criterion}, {label}")
    left.set(xscale="log", ylim=(-0.03, 1.03), xlabel="samples per task",
             ylabel="fraction of seeds split (95% Wilson CI)",
             title="Split (" + (f"{splits['n'].min()}" if splits["n"].nunique() == 1 else
                                f"{splits['n'].min()}–{splits['n'].max()}") + " seeds per size)")
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    for i, (task, g) in enumerate(gaps.groupby("task", sort=False)):
        color, marker = palette.task_style(i)
        right.errorbar(g["n_samples"], g["gap"], yerr=[g["gap"] - g["low"], g["high"] - g["gap"]],
                       color=color, marker=marker, capsize=3,
                       label=f"{task} ({', '.join(str(s) for s in g['seeds'])} seeds)")
    right.axhline(2, color="0.4", ls="--", lw=1, label="tolerance: learned within 2 points")
    right.set(xscale="log", ylim=(0, None), xlabel="samples per task",
              ylabel="dense gap to the task alone, points",
              title="Dense nets against each task alone (mean, seed range)")
    right.legend(fontsize=7)
    ticks = sorted(set(splits["n_samples"]) | set(gaps["n_samples"]))
    for ax in (left, right):  # one x axis for both: the sizes of either
        ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
        ax.minorticks_off()
    return fig


def main(argv: list[str]) -> int:
    parser = cli.parser("python docs/runs/size_figure.py", __doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, metavar="FOLDER",
                        help="study result folders of one configuration at several n_samples")
    parser.add_argument("--baselines", nargs="+", type=Path, required=True, metavar="CSV",
                        help="pipeline.baseline --out files named …_n<samples per task>.csv")
    parser.add_argument("--out", type=Path, required=True, help="the figure to write (.png)")
    args = parser.parse_args(argv)
    if args.out.suffix != ".png":
        cli.stop(f"--out {str(args.out)!r} is not allowed; allowed: a .png file")
    results = tables.load_all(args.folders)  # a folder given twice: one line
    one_configuration(results)
    splits, gaps = split_rows(results), gap_rows(args.baselines, results)
    from pipeline.plots import save, style

    style()
    try:
        save(figure(splits, gaps), args.out, dpi=150)
    except io.WriteError as exc:
        cli.stop(str(exc))
    print(f"size_figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.pipe_safe(main, sys.argv[1:]))
