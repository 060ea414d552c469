"""The markdown tables of docs/results.md's real-MNIST section from study result folders
(reports/study/runs/<config>/ as `dvc repro studies/dvc.yaml` or the sweep writes them).

    python docs/runs/tables.py docs/runs/real-mnist/<config> [<config> ...]

Per configuration: every split criterion's fraction of seeds with its 95% Wilson interval, at
any level and before degradation (SCIENCE.md §6–7); the split distance d per level, median and
interquartile range over seeds, beside the random masks' d (random_levels.csv, where the
control ran); each task's test accuracy with and without the minimum cut C_w zeroed; λ and
coverage; the first cut-functional split. With several folders, one summary row per
configuration, Fisher's exact test between every pair on each criterion and Mann–Whitney's test
on the last level's d. Reads only the result files; prints markdown on stdout.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pandas as pd

from pipeline.analysis import fisher_p, fraction_text

CRITERIA = ("effective", "complete", "output", "functional")
LEVELS = (0, 5, 10, 13, 14, 16, 18, 19, 20)


def flag(col: pd.Series) -> pd.Series:
    return col.map(lambda v: v is True or v == 1 or v == "True")


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
        k = int(first.notna().sum())
        before = int(flag(seeds[f"split_before_degradation_{c}"]).sum())
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
    deg = seeds["degradation_level"]
    rows.append(f"\nDegradation level (median, range): {deg.median():g} ({deg.min():g}–"
                f"{deg.max():g}); seeds {n}.")
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


def fisher_table(folders: list[Path]) -> str:
    seeds = {f.name: pd.read_csv(f / "seeds.csv") for f in folders}
    rows = ["| configurations | " + " | ".join(CRITERIA) + " | functional before degradation |",
            "|---|" + "---|" * (len(CRITERIA) + 1)]
    for a, b in itertools.combinations(seeds, 2):
        cells = []
        for col in [f"first_split_level_{c}" for c in CRITERIA] + [
                "split_before_degradation_functional"]:
            ka = int(seeds[a][col].notna().sum() if col.startswith("first")
                     else flag(seeds[a][col]).sum())
            kb = int(seeds[b][col].notna().sum() if col.startswith("first")
                     else flag(seeds[b][col]).sum())
            cells.append(f"{ka}/{len(seeds[a])} vs {kb}/{len(seeds[b])}: p = "
                         f"{fisher_p(ka, len(seeds[a]), kb, len(seeds[b])):.3g}")
        rows.append(f"| {a} vs {b} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def summary_table(folders: list[Path]) -> str:
    """One row per configuration: the split fractions (any level / before degradation), the
    split distance, λ and accuracy at the last level, the first functional split level."""
    rows = ["| configuration | effective | output (before degr.) | functional (before degr.) "
            "| d at the last level | d, random masks | λ there | accuracy there | first functional "
            "level |", "|---|---|---|---|---|---|---|---|---|"]
    for folder in folders:
        info = json.loads((folder / "config.json").read_text())
        levels, seeds = pd.read_csv(folder / "levels.csv"), pd.read_csv(folder / "seeds.csv")
        accuracy = pd.read_csv(folder / "accuracy.csv")
        random_path = folder / "random_levels.csv"
        random = pd.read_csv(random_path) if random_path.exists() else pd.DataFrame()
        n, last = len(seeds), levels["level"].max()
        k = {c: int(seeds[f"first_split_level_{c}"].notna().sum()) for c in CRITERIA}
        b = {c: int(flag(seeds[f"split_before_degradation_{c}"]).sum()) for c in CRITERIA}
        here = levels[levels["level"] == last]
        acc = accuracy[accuracy["level"] == last].groupby("task", sort=False)["test_acc"].median()
        first = seeds["first_split_level_functional"]
        rows.append(
            f"| {info['name']} | {k['effective']}/{n} | {k['output']}/{n} ({b['output']}/{n}) "
            f"| {k['functional']}/{n} ({b['functional']}/{n}) | {iqr(here['split_distance'])} "
            f"| {iqr(random[random['level'] == last]['split_distance']) if len(random) else '–'} "
            f"| {here['leakage'].median():.3f} | " + " / ".join(f"{a:.3f}" for a in acc)
            + f" | {first.median():g} ({first.min():g}–{first.max():g}) |")
    return "\n".join(rows)


def distance_test(folders: list[Path]) -> str:
    """Mann–Whitney U between every pair of configurations on d at the last level (per seed):
    a distribution, not a fraction, so not Fisher's test."""
    from scipy.stats import mannwhitneyu

    last = {}
    for f in folders:
        levels = pd.read_csv(f / "levels.csv")
        last[f.name] = levels[levels["level"] == levels["level"].max()]["split_distance"]
    return "\n".join(f"- d at the last level, {a} vs {b}: Mann–Whitney p = "
                     f"{mannwhitneyu(last[a], last[b]).pvalue:.2g}"
                     for a, b in itertools.combinations(last, 2))


def configuration(folder: Path) -> str:
    info = json.loads((folder / "config.json").read_text())
    levels = pd.read_csv(folder / "levels.csv")
    seeds = pd.read_csv(folder / "seeds.csv")
    controls = pd.read_csv(folder / "controls.csv")
    accuracy = pd.read_csv(folder / "accuracy.csv")
    random_path = folder / "random_levels.csv"
    random = pd.read_csv(random_path) if random_path.exists() else pd.DataFrame()
    tasks = list(dict.fromkeys(accuracy["task"]))
    dense = accuracy[accuracy["level"] == 0].groupby("task")["test_acc"].mean()
    return "\n\n".join([
        f"### {info['name']}",
        "dense test accuracy (mean over seeds): "
        + ", ".join(f"{t} {dense[t]:.3f}" for t in tasks),
        criteria_table(seeds, controls, random),
        level_table(levels, random, accuracy, tasks),
        functional_table(levels, seeds, tasks)])


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv]
    print("\n\n".join(configuration(f) for f in folders))
    if len(folders) > 1:
        print("\n### Configurations side by side\n")
        print(summary_table(folders))
        print("\n### Fisher's exact test between configurations\n")
        print(fisher_table(folders))
        print()
        print(distance_test(folders))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
