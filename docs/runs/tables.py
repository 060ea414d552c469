"""The markdown tables of docs/results.md's real-MNIST section from study result folders
(reports/study/runs/<config>/ as `dvc repro studies/dvc.yaml` or the sweep writes them).

    python docs/runs/tables.py docs/runs/real-mnist/<config> [<config> ...]
    python docs/runs/tables.py --baselines docs/runs/images-data/baseline_*.csv
    python docs/runs/tables.py --help

Per configuration: every split criterion's fraction of seeds with its 95% Wilson interval, at
any level and before degradation (docs/science.md §6–7); the split distance d per level, median and
interquartile range over seeds, beside the random masks' d (random_levels.csv, where the
control ran); each task's test accuracy with and without the minimum cut C_w zeroed; λ and
coverage; the first cut-functional split. With several folders, one summary row per
configuration, Fisher's exact test between every pair on each criterion and Mann–Whitney's test
on the last level's d; two folders of one configuration with seeds in both (a pooled folder and
one of its runs) are not tested against each other (the same nets, no independent samples), a
line says so. Folders are named by their configuration, or by their folder where two share a
configuration name; one folder given twice is refused. With --baselines (pipeline.baseline --out files), the dense nets against
each task alone, one row per file and task. Reads only the result files; prints markdown on
stdout.
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline import cli, io
from pipeline.analysis import fisher_p, fraction_text

CRITERIA = ("effective", "complete", "output", "functional")
LEVELS = (0, 5, 10, 13, 14, 16, 18, 19, 20)


def flag(col: pd.Series) -> pd.Series:
    return col.map(lambda v: v is True or v == 1 or v == "True")


@dataclass
class Result:
    """One configuration's result files (docs/running.md, "Studies"), read once. `name` is
    the label it is printed under: its configuration name, or where several folders given
    share one (a pooled folder and one of its runs), its folder (see labelled)."""
    name: str
    levels: pd.DataFrame
    seeds: pd.DataFrame
    controls: pd.DataFrame
    accuracy: pd.DataFrame
    random: pd.DataFrame  # random_levels.csv; empty where the control did not run
    folder: Path = Path()
    info: dict = field(default_factory=dict)  # config.json


# the result files a configuration needs (random_levels.csv is optional) and columns each must
# have: a folder of another kind, or a damaged file, is one line naming it
FILES = {"levels": ("seed", "level", "params", "split_distance"),
         "seeds": ("seed", "degradation_level", "first_level_distance_0"),
         "controls": ("seed",),
         "accuracy": ("seed", "level", "task", "test_acc")}


FOLDER_ALLOWED = ("allowed: a study result folder (config.json, " + ", ".join(f"{n}.csv" for n in FILES)
                  + "; random_levels.csv if the random-mask control ran)")


def config_json(path: Path) -> dict:
    info = io.read_json(path)
    if not isinstance(info, dict) or not isinstance(info.get("name"), str):
        raise io.read_error(path, "no configuration name")
    return info


def load(folder: Path) -> Result:
    """One result folder's files; a missing, unreadable or damaged one ends the script with one
    line naming it and what is allowed, exit code 2 (cli.read_input)."""
    def read(name: str, required: tuple[str, ...] = ("seed",)) -> pd.DataFrame:
        return cli.read_input(folder / name, lambda p: io.read_csv(p, required), FOLDER_ALLOWED)

    random_path = folder / "random_levels.csv"
    info = cli.read_input(folder / "config.json", config_json, FOLDER_ALLOWED)
    has_random = random_path.exists() or random_path.is_symlink()  # a broken link: one line
    return Result(info["name"], *(read(f"{n}.csv", required) for n, required in FILES.items()),
                  read(random_path.name) if has_random else pd.DataFrame(), folder, info)


def labelled(results: list[Result]) -> list[Result]:
    """Each result named by its configuration, or where folders given share a configuration
    name (a pooled folder and one of its runs), by its folder's name, else by its path as
    given: no two headings, table rows or tests read `X vs X`."""
    def unique(names: list[str]) -> bool:
        return len(set(names)) == len(names)

    labels = []
    for r in results:
        same = [q.folder.resolve().name for q in results if q.name == r.name]
        labels.append(r.name if len(same) == 1 else r.folder.resolve().name if unique(same)
                      else str(r.folder))
    for r, label in zip(results, labels):
        r.name = label
    return results


def load_all(folders: list[Path]) -> list[Result]:
    """Every folder's files, read before anything is printed; a problem (not a folder, a folder
    given twice, a missing or damaged file) ends the script with one line naming the folder or
    file, exit code 2."""
    seen: dict[Path, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            cli.stop(f"FOLDER {str(folder)!r} is not allowed; allowed: a study result folder "
                     "(reports/study/runs/<configuration>/, docs/runs/real-mnist/<configuration>/)")
        cli.refuse_twice(folder, seen, "FOLDER", "allowed: distinct study result folders, each once")
    return labelled([load(folder) for folder in folders])


def not_comparable(a: Result, b: Result) -> str | None:
    """Why two folders' seeds are no independent samples (the same configuration, seeds in
    both: a pooled folder and one of its runs), else None. Fisher's and Mann–Whitney's tests
    assume independent samples; the same seed of one configuration is the same net."""
    from pipeline import pool

    shared = sorted(set(a.seeds["seed"]) & set(b.seeds["seed"]))
    if not shared:
        return None
    same = a.info.get("name") == b.info.get("name")
    if not same and isinstance(a.info.get("params"), dict) and isinstance(b.info.get("params"), dict):
        try:
            same = pool.configuration_difference(a.info, b.info) is None
        except (AttributeError, TypeError, ValueError, KeyError):  # a config.json of another age
            same = False
    if not same:
        return None
    seeds = (f"{shared[0]}–{shared[-1]}" if shared == list(range(shared[0], shared[-1] + 1))
             else ", ".join(map(str, shared)))
    return (f"{a.name} vs {b.name}: not compared, one configuration with seeds {seeds} in both "
            "(the same nets: no independent samples)")


def pairs(results: list[Result]) -> tuple[list[tuple[Result, Result]], list[str]]:
    """Every pair of results to test, and a line per pair left out (not_comparable)."""
    tested, left_out = [], []
    for a, b in itertools.combinations(results, 2):
        why = not_comparable(a, b)
        (left_out.append(why) if why else tested.append((a, b)))
    return tested, left_out


def split_counts(seeds: pd.DataFrame, criterion: str) -> tuple[int, int]:
    """(seeds split at some level, seeds split before degradation) by one criterion."""
    return (int(seeds[f"first_split_level_{criterion}"].notna().sum()),
            int(flag(seeds[f"split_before_degradation_{criterion}"]).sum()))


def iqr(values: pd.Series) -> str:
    v = values.dropna().astype(float)
    if not len(v):
        return "–"
    q1, q2, q3 = v.quantile([0.25, 0.5, 0.75])
    digits = 1 if q2 < 100 else 0
    fmt = f"{{:,.{digits}f}}"
    return f"{fmt.format(q2)} [{fmt.format(q1)}–{fmt.format(q3)}]"


def criteria_table(seeds: pd.DataFrame, controls: pd.DataFrame, random: pd.DataFrame) -> str:
    n = len(seeds)
    rows = ["| criterion | seeds split (95% CI) | before degradation | first level, median (range) "
            "| weights there (median) |", "|---|---|---|---|---|"]
    for c in CRITERIA:
        first = seeds[f"first_split_level_{c}"]
        k, before = split_counts(seeds, c)
        where = (f"{first.median():g} ({first.min():g}–{first.max():g})" if k else "–")
        weights = (f"{seeds[f'params_at_split_{c}'].median():,.0f}" if k else "–")
        name = "functional (cut C_w zeroed)" if c == "functional" else c
        rows.append(f"| {name} | {fraction_text(k, n)} | {fraction_text(before, n)} | {where} "
                    f"| {weights} |")
    d0 = seeds["first_level_distance_0"]
    rows.append(f"| d = 0 at some level | {fraction_text(int(d0.notna().sum()), n)} | | "
                f"{d0.median():g} |  |" if d0.notna().any() else
                f"| d = 0 at some level | {fraction_text(0, n)} | | – | |")
    if "random_mask_split" in controls:
        k = int(flag(controls["random_mask_split"]).sum())
        rows.append(f"| random masks (headline) | {fraction_text(k, len(controls))} | | | |")
    if len(random) and "split_distance" in random:
        k = int((random[random["level"] > 0]["split_distance"] == 0).groupby(
            random[random["level"] > 0]["seed"]).any().sum())
        rows.append(f"| random masks, d = 0 at some level | "
                    f"{fraction_text(k, random['seed'].nunique())} | | | |")
    deg = seeds["degradation_level"].dropna()  # NaN: the seed never degraded
    rows.append(f"\nSeeds that degrade (a task > 0.05 below dense) at some level: "
                f"{fraction_text(len(deg), n)}" + (
                    f"; at level {deg.median():g} (median; {deg.min():g}–{deg.max():g})."
                    if len(deg) else "."))
    return "\n".join(rows)


def level_table(levels: pd.DataFrame, random: pd.DataFrame, accuracy: pd.DataFrame,
                tasks: list[str]) -> str:
    head = ("| level | weights (alive) | d, IMP | d, random masks | d_w share | λ | coverage "
            + "".join(f"| {t} acc | {t} with C_w zeroed " for t in tasks) + "|")
    rows = [head, "|" + "---|" * (7 + 2 * len(tasks))]
    acc = accuracy.pivot_table(index=["seed", "level"], columns="task", values="test_acc")
    for level in LEVELS:
        here = levels[levels["level"] == level]
        if not len(here):
            continue
        rnd = random[random["level"] == level] if len(random) else random
        cov = here[[f"coverage_{t}" for t in tasks]].mean(axis=1)
        cells = [str(level), f"{here['params'].median():,.0f} ({here['alive_w'].median():,.0f})",
                 iqr(here["split_distance"]),
                 iqr(rnd["split_distance"]) if len(rnd) else "–",
                 f"{here['split_distance_w_share'].median():.3f}",
                 f"{here['leakage'].median():.3f}", f"{cov.median():.2f}"]
        for t in tasks:
            a = acc.xs(level, level="level")[t]
            cells += [f"{a.median():.3f}", f"{here[f'test_acc_cut_{t}'].median():.3f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def functional_table(levels: pd.DataFrame, seeds: pd.DataFrame, tasks: list[str]) -> str:
    first = seeds.set_index("seed")["first_split_level_functional"].dropna()
    if not len(first):
        return "No seed has a cut-functional split."
    at = levels.set_index(["seed", "level"]).loc[list(zip(first.index, first.astype(int)))]
    parts = [f"first cut-functional split: level {first.median():g} (median; {first.min():g}–"
             f"{first.max():g}), {at['params'].median():,.0f} weights "
             f"({at['alive_w'].median():,.0f} alive), d there "
             f"{iqr(at['split_distance'])}, d_w share {at['split_distance_w_share'].median():.3f}"]
    for t in tasks:
        parts.append(f"{t}: with C_w zeroed {at[f'test_acc_cut_{t}'].median():.3f}")
    return "; ".join(parts) + "."


def fisher_table(results: list[Result]) -> str:
    rows = ["| configurations | " + " | ".join(CRITERIA) + " | functional before degradation |",
            "|---|" + "---|" * (len(CRITERIA) + 1)]
    for a, b in pairs(results)[0]:
        na, nb = len(a.seeds), len(b.seeds)
        counts = [(split_counts(a.seeds, c)[0], split_counts(b.seeds, c)[0]) for c in CRITERIA]
        counts.append((split_counts(a.seeds, "functional")[1],
                       split_counts(b.seeds, "functional")[1]))
        cells = [f"{ka}/{na} vs {kb}/{nb}: p = {fisher_p(ka, na, kb, nb):.3g}"
                 for ka, kb in counts]
        rows.append(f"| {a.name} vs {b.name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def last_level(frame: pd.DataFrame, last: int) -> pd.DataFrame:
    return frame[frame["level"] == last] if len(frame) else frame


def summary_table(results: list[Result]) -> str:
    """One row per configuration: the split fractions (any level / before degradation), the
    split distance, λ and accuracy at the last level, the first functional split level."""
    rows = ["| configuration | effective | output (before degr.) | functional (before degr.) "
            "| d at the last level | d, random masks | λ there | accuracy there | first functional "
            "level |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        n, last = len(r.seeds), r.levels["level"].max()
        k = {c: split_counts(r.seeds, c) for c in CRITERIA}
        here, random = last_level(r.levels, last), last_level(r.random, last)
        acc = last_level(r.accuracy, last).groupby("task", sort=False)["test_acc"].median()
        first = r.seeds["first_split_level_functional"]
        rows.append(
            f"| {r.name} | {k['effective'][0]}/{n} | {k['output'][0]}/{n} ({k['output'][1]}/{n}) "
            f"| {k['functional'][0]}/{n} ({k['functional'][1]}/{n}) "
            f"| {iqr(here['split_distance'])} "
            f"| {iqr(random['split_distance']) if len(random) else '–'} "
            f"| {here['leakage'].median():.3f} | " + " / ".join(f"{a:.3f}" for a in acc)
            + f" | {first.median():g} ({first.min():g}–{first.max():g}) |")
    return "\n".join(rows)


def distance_test(results: list[Result]) -> str:
    """Mann–Whitney U between every pair of configurations on d at the last level (per seed):
    a distribution, not a fraction, so not Fisher's test."""
    from scipy.stats import mannwhitneyu

    def last(r: Result) -> pd.Series:
        return last_level(r.levels, r.levels["level"].max())["split_distance"]

    return "\n".join(f"- d at the last level, {a.name} vs {b.name}: Mann–Whitney p = "
                     f"{mannwhitneyu(last(a), last(b)).pvalue:.2g}" for a, b in pairs(results)[0])


def configuration(r: Result) -> str:
    tasks = list(dict.fromkeys(r.accuracy["task"]))
    dense = r.accuracy[r.accuracy["level"] == 0].groupby("task")["test_acc"].mean()
    return "\n\n".join([
        f"### {r.name}",
        "dense test accuracy (mean over seeds): "
        + ", ".join(f"{t} {dense[t]:.3f}" for t in tasks),
        criteria_table(r.seeds, r.controls, r.random),
        level_table(r.levels, r.random, r.accuracy, tasks),
        functional_table(r.levels, r.seeds, tasks)])


BASELINE_ALLOWED = "allowed: files written by python -m pipeline.baseline --out"


def read_baseline(path: Path, name: str = "--baselines") -> pd.DataFrame:
    """A pipeline.baseline --out file; a missing, unreadable or damaged one (or a folder) ends the
    script with one line naming it (cli.read_input)."""
    return cli.read_input(path, lambda p: io.read_csv(p, required=("seed", "task", "gap",
                                                                    "side_test_acc")),
                          BASELINE_ALLOWED, name)


# the baseline writes accuracies with %.6g, the study's accuracy.csv with more digits
SIDE_TOLERANCE = 1e-5


def dense_mismatch(accuracy: pd.DataFrame, baseline: pd.DataFrame) -> str | None:
    """Why a baseline (pipeline.baseline --out) is not of a result folder's configuration, or
    None. Its side_test_acc per (seed, task) is the test accuracy of the same side-by-side dense
    net the study trained, so it must be the folder's level-0 test_acc for every seed and task
    of the folder (a seed the baseline lacks counts as a mismatch)."""
    side = baseline.set_index(["seed", "task"])["side_test_acc"].astype(float)
    dense = accuracy[accuracy["level"] == 0].set_index(["seed", "task"])["test_acc"].astype(float)
    off = (dense - side.reindex(dense.index)).abs().fillna(float("inf"))
    if (off <= SIDE_TOLERANCE).all():
        return None
    seed, task = off.idxmax()
    worst = "no row" if off.max() == float("inf") else f"{off.max():.3g} off"
    return (f"its side-by-side dense net's test accuracy is not the folder's level 0 (seed {seed}, "
            f"{task}: {worst}, tolerance {SIDE_TOLERANCE:g})")


def baseline_table(paths: list[Path]) -> str:
    """Per baseline file (pipeline.baseline --out) and task: the mean test accuracies side by
    side and alone, the mean gap and the worst seed's in points, and whether the task counts as
    learned (pipeline.baseline.summary: mean gap within 0.02, no net failed)."""
    from pipeline.baseline import summary

    rows = ["| baseline | task | seeds | side by side | alone | gap, points (worst seed) | "
            "learned |", "|---|---|---|---|---|---|---|"]
    for path in paths:
        frame = read_baseline(path)
        for col in ("side_problems", "alone_problems"):  # empty cells: no problem, not NaN
            frame[col] = frame[col].astype(object).where(frame[col].notna(), "")
        table, seeds = summary(frame), frame["seed"].nunique()
        for task, r in table.iterrows():
            rows.append(f"| {path.stem} | {task} | {seeds} | {r['side_test_acc']:.3f} | "
                        f"{r['alone_test_acc']:.3f} | {100 * r['gap']:.1f} "
                        f"({100 * r['max_gap']:.1f}) | {'yes' if r['learned'] else 'no'} |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    parser = cli.parser("python docs/runs/tables.py", __doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, metavar="FOLDER",
                        help="a study result folder: config.json, levels.csv, seeds.csv, "
                             "controls.csv, accuracy.csv (random_levels.csv if the random-mask "
                             "control ran); with several, the tables that compare them too")
    parser.add_argument("--baselines", nargs="+", type=Path, default=[], metavar="CSV",
                        help="per-seed rows of python -m pipeline.baseline --out: the dense "
                             "nets against each task alone, a row per file and task")
    args = parser.parse_args(argv)
    if not args.folders and not args.baselines:
        cli.stop("FOLDER: none given; allowed: one or more study result folders, and/or "
                 "--baselines CSV …")
    seen: dict[Path, Path] = {}
    for path in args.baselines:  # one file twice: its rows twice, read as two baselines
        cli.refuse_twice(path, seen, "--baselines",
                         "allowed: distinct pipeline.baseline --out files, each once")
    results = load_all(args.folders)  # every folder checked before anything is printed
    if args.baselines:
        print(baseline_table(args.baselines))
    if not results:
        return 0
    print("\n\n".join(configuration(r) for r in results))
    if len(results) > 1:
        print("\n### Configurations side by side\n")
        print(summary_table(results))
        print("\n### Fisher's exact test between configurations\n")
        print(fisher_table(results))
        print()
        print(distance_test(results))
        left_out = pairs(results)[1]
        if left_out:
            print("\n" + "\n".join(f"- {line}" for line in left_out))
    return 0


if __name__ == "__main__":
    sys.exit(cli.pipe_safe(main, sys.argv[1:]))
