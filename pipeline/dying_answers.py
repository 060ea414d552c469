"""The answers to docs/science.md §8 across seeds: hypotheses H1–H6 and the death prediction, from
the tables of pipeline.dying → metrics.json's `dying` section.

Every key holds `testable` (bool) and `reason` (null, or "not testable: …"); a hypothesis the
run cannot test carries no number. Tests are scipy's (Spearman, two-sided Mann–Whitney,
Wilcoxon signed-rank, Kruskal–Wallis); every fraction k/n comes as {k, n, fraction, low, high}
with its 95 % Wilson interval (pipeline.analysis.wilson). Censored episodes and survivals
(still running at the last level) are counted with the levels they reached, which is a lower
bound; each statistic is given again on the uncensored ones alone.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from pipeline.analysis import wilson
from pipeline.data import TaskInfo
from pipeline.dying import NOT_MEASURED

ALPHA = 0.05            # "IMP above / below chance at p < 0.05" (H4)
RESAMPLES = 2000        # seed bootstrap of H1's ρ
BOOTSTRAP_SEED = 0


# ---- building blocks ---------------------------------------------------------------------------
def number(x) -> float | None:
    """A JSON number: None for None, NaN and ±∞."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def proportion(k: int, n: int) -> dict:
    """{k, n, fraction, low, high}: k/n with its 95 % Wilson interval (null where n = 0)."""
    low, high = wilson(int(k), int(n))
    return {"k": int(k), "n": int(n), "fraction": k / n if n else None, "low": number(low),
            "high": number(high)}


def not_testable(reason: str, **extra) -> dict:
    return {"testable": False, "reason": f"not testable: {reason}", **extra}


def quartiles(values) -> dict:
    """{n, median, q25, q75} of the finite values (null where none; linear interpolation, as
    pandas' quantile)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"n": 0, "median": None, "q25": None, "q75": None}
    q25, median, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    return {"n": int(len(v)), "median": float(median), "q25": float(q25), "q75": float(q75)}


def spearman(x, y) -> tuple[float | None, float | None]:
    """(ρ, p) of scipy.stats.spearmanr; (None, None) with fewer than 3 pairs or a constant side."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = spearmanr(x, y)
    return number(r.statistic), number(r.pvalue)


def mann_whitney(a, b) -> float | None:
    """Two-sided p of scipy.stats.mannwhitneyu; None where a group is empty."""
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return None
    return number(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def wilcoxon_p(d) -> float | None:
    """p of scipy.stats.wilcoxon (signed-rank, two-sided) on the paired differences d; None
    where every difference is 0 (nothing to rank) or none is given."""
    from scipy.stats import wilcoxon

    d = np.asarray(d, dtype=float)
    if not len(d) or not np.any(d != 0):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return number(wilcoxon(d).pvalue)


def kruskal_p(groups: list) -> float | None:
    """p of scipy.stats.kruskal across groups (H3's peak fraction across configurations, e.g.
    T = 10, 20, 30); None with fewer than two non-empty groups or all values equal."""
    from scipy.stats import kruskal

    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if len(groups) < 2 or len(np.unique(np.concatenate(groups))) < 2:
        return None
    return number(kruskal(*groups).pvalue)


def seed_draws(n_seeds: int, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """[resamples, n_seeds] indices of the seeds each bootstrap resample draws (with
    replacement; numpy's default_rng(seed))."""
    return np.random.default_rng(seed).integers(0, n_seeds, size=(resamples, n_seeds))


def row_spearman(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Spearman's ρ of x [L] against every row of ys [S, L] (what spearmanr gives row by row:
    Pearson's r of the average ranks); NaN where a row is constant."""
    from scipy.stats import rankdata

    rx = rankdata(x) - (len(x) + 1) / 2
    ry = rankdata(ys, axis=1)
    ry = ry - ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ry @ rx) / np.sqrt((ry * ry).sum(axis=1) * (rx * rx).sum())
    return np.where((ry != 0).any(axis=1), rho, np.nan)


def _resample_ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Average ranks [R, n] of n values in R resamples that hold row i counts[r, i] times
    (ties share their mean rank, as scipy.stats.rankdata)."""
    from scipy.sparse import csr_matrix

    uniq, inv = np.unique(values, return_inverse=True)
    onehot = csr_matrix((np.ones(len(values)), (np.arange(len(values)), inv)),
                        shape=(len(values), len(uniq)))
    per_value = np.asarray((onehot.T @ counts.T).T)            # [R, U] copies of each value
    rank = np.cumsum(per_value, axis=1) - per_value + (per_value + 1) / 2
    return rank[:, inv]


def resampled_spearman(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Spearman's ρ [R] of the pooled rows of each resample (row i held counts[r, i] times):
    the Pearson correlation of the average ranks of the expanded rows, computed without
    expanding them. NaN where undefined (fewer than two rows, or a constant side)."""
    w = counts.astype(float)
    total = w.sum(axis=1, keepdims=True)
    rx, ry = _resample_ranks(x, w), _resample_ranks(y, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = rx - (w * rx).sum(axis=1, keepdims=True) / total
        dy = ry - (w * ry).sum(axis=1, keepdims=True) / total
        sxy, sxx, syy = ((w * a * b).sum(axis=1) for a, b in ((dx, dy), (dx, dx), (dy, dy)))
        rho = sxy / np.sqrt(sxx * syy)
    return np.where((total[:, 0] >= 2) & (sxx > 0) & (syy > 0), rho, np.nan)


def seed_bootstrap(x, y, row_seeds, seeds: list[int], resamples: int = RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> dict:
    """95 % percentile interval of Spearman's ρ(x, y) over a bootstrap of seeds: each resample
    draws len(seeds) seeds with replacement (seed_draws) and pools the rows (x, y of
    row_seeds) of the drawn seeds, with multiplicity. {low, high, defined: resamples with a
    defined ρ}. Resamples are computed in chunks of at most 2 M (resample, row) cells."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    chunk = max(1, min(resamples, 2_000_000 // max(len(x), 1)))
    position = {s: i for i, s in enumerate(seeds)}
    row_seed = np.array([position[s] for s in np.asarray(row_seeds).tolist()], dtype=np.int64)
    draws = seed_draws(len(seeds), resamples, seed)
    values = []
    for start in range(0, resamples, chunk):
        part = draws[start:start + chunk]
        times = np.stack([np.bincount(d, minlength=len(seeds)) for d in part])   # [r, S]
        values.append(resampled_spearman(x, y, times[:, row_seed]))
    rho = np.concatenate(values) if values else np.zeros(0)
    rho = rho[np.isfinite(rho)]
    if not len(rho):
        return {"low": None, "high": None, "defined": 0}
    low, high = np.percentile(rho, [2.5, 97.5])
    return {"low": float(low), "high": float(high), "defined": int(len(rho))}


def _groups(values: pd.Series, positive: pd.Series) -> dict:
    """Median of `values` for the rows with `positive` and the others, and Mann–Whitney's p."""
    a, b = values[positive], values[~positive]
    return {"positive": {"n": int(len(a)), "median": number(a.median()) if len(a) else None},
            "nonpositive": {"n": int(len(b)), "median": number(b.median()) if len(b) else None},
            "mannwhitney_p": mann_whitney(a, b)}


# ---- H1–H6 ---------------------------------------------------------------------------------------
def _h1_block(z: pd.DataFrame, seeds: list[int]) -> dict:
    rho, p = spearman(z["lifetime"], z["bias_trained"])
    boot = (seed_bootstrap(z["lifetime"], z["bias_trained"], z["seed"], seeds)
            if rho is not None else {"low": None, "high": None, "defined": 0})
    return {"episodes": int(len(z)), "rho": rho, "rho_p": p,
            "rho_ci95": [boot["low"], boot["high"]], "bootstrap_defined": boot["defined"],
            "lifetime_by_bias": _groups(z["lifetime"].astype(float), z["bias_trained"] > 0)}


def h1_zombie_lifetime_vs_bias(episodes: pd.DataFrame, seeds: list[int]) -> dict:
    """H1: zombie episode lifetime against the trained bias at the episode's first level —
    Spearman ρ with a seed-bootstrap 95 % interval, median lifetime for bias > 0 vs ≤ 0
    (Mann–Whitney); pooled (`all`, censored episodes counted with the levels they reached) and
    on the uncensored episodes alone (`uncensored`)."""
    z = episodes[episodes["kind"] == "zombie"]
    if not len(z):
        return not_testable("no zombie episode")
    if (z["bias_trained"].astype(float) == 0).all():
        return not_testable("zero biases (every zombie's trained bias is 0 at its first level)")
    return {"testable": True, "reason": None, "censored": int(z["censored"].astype(bool).sum()),
            "all": _h1_block(z, seeds),
            "uncensored": _h1_block(z[~z["censored"].astype(bool)], seeds)}


def h2_negative_biases_pruned_early(survival: pd.DataFrame) -> dict:
    """H2: survival (levels unpruned; never pruned: T + 1, censored) of every prunable bias by
    the sign of its dense trained value: median per sign, Mann–Whitney negative vs positive,
    and k/n seeds (with both signs) whose negative median is below the positive one."""
    if not len(survival):
        return not_testable("biases are not prunable")
    neg, pos = (survival[survival["sign"] == s] for s in ("negative", "positive"))
    if not len(neg) or not len(pos):
        return not_testable("zero biases" if (survival["sign"] == "zero").all()
                            else "no negative or no positive dense bias")
    sign = {s: {"n": int(len(g)), "median_survival": float(g["survival"].median()),
                "censored": int(g["censored"].astype(bool).sum())}
            for s, g in survival.groupby("sign", sort=True)}
    medians = survival.pivot_table(index="seed", columns="sign", values="survival",
                                   aggfunc="median")
    both = medians[["negative", "positive"]].dropna()
    lower = int((both["negative"] < both["positive"]).sum())
    return {"testable": True, "reason": None, "by_sign": sign,
            "mannwhitney_p": mann_whitney(neg["survival"], pos["survival"]),
            "seeds_negative_lower": proportion(lower, len(both))}


def _peak_fractions(levels: pd.DataFrame, last: int) -> pd.Series:
    """Per seed with a comatose neuron: level of the comatose count's first maximum / T."""
    out = {}
    for seed, g in levels.sort_values("level").groupby("seed", sort=True):
        c = g["comatose_neurons"].to_numpy()
        if c.max() > 0:
            out[seed] = int(g["level"].to_numpy()[c.argmax()]) / last
    return pd.Series(out, dtype=float)


def _lifetimes(c: pd.DataFrame) -> dict:
    life = c["lifetime"].astype(float)
    return {"episodes": int(len(c)), "median": number(life.median()) if len(c) else None,
            "at_most_2": proportion(int((life <= 2).sum()), len(c))}


def h3_comatose_peak(levels: pd.DataFrame, episodes: pd.DataFrame, last: int) -> dict:
    """H3: per seed the level of the comatose count's first maximum divided by T (median, IQR);
    comatose episode lifetimes (median, share ≤ 2 levels), all and uncensored."""
    c = episodes[episodes["kind"] == "comatose"]
    if not len(c) or last < 1:
        return not_testable("no comatose neuron" if last >= 1 else "no IMP level")
    unc = c[~c["censored"].astype(bool)]
    return {"testable": True, "reason": None, "levels": int(last),
            "peak_fraction": quartiles(_peak_fractions(levels, last)),
            "lifetime": _lifetimes(c), "lifetime_uncensored": _lifetimes(unc),
            "censored": int(len(c) - len(unc))}


def _imp_vs_random(levels: pd.DataFrame, random: pd.DataFrame | None) -> dict:
    """Per level, IMP's zombie-neuron count against the random masks' (same seeds): median
    difference and Wilcoxon's p; how many levels show IMP above / below chance at p < ALPHA."""
    if random is None or not len(random):
        return not_testable("no random-mask control (prune.random_mask_control)")
    cols = ["seed", "level", "zombie_neurons"]
    both = levels[cols].merge(random[cols], on=["seed", "level"], suffixes=("", "_random"))
    per_level, above, below = [], 0, 0
    for level, g in both.groupby("level", sort=True):
        d = (g["zombie_neurons"] - g["zombie_neurons_random"]).astype(float)
        p, med = wilcoxon_p(d), float(d.median())
        per_level.append({"level": int(level), "seeds": int(len(d)), "median_difference": med,
                          "wilcoxon_p": p})
        above += int(p is not None and p < ALPHA and med > 0)
        below += int(p is not None and p < ALPHA and med < 0)
    return {"testable": True, "reason": None, "levels_tested": len(per_level),
            "levels_above": above, "levels_below": below, "per_level": per_level}


def h4_zombies_at_high_sparsity(levels: pd.DataFrame, random: pd.DataFrame | None) -> dict:
    """H4: per seed Spearman ρ of the zombie-neuron count against the level, k/n seeds with
    ρ > 0 (seeds with a constant count have no ρ: `constant_seeds`), and IMP against the
    random masks per level (Wilcoxon signed-rank over seeds)."""
    if not (levels["zombie_neurons"] > 0).any():
        return not_testable("no zombie neuron at any level")
    counts = levels.pivot(index="seed", columns="level", values="zombie_neurons")
    rhos = row_spearman(counts.columns.to_numpy(dtype=float), counts.to_numpy(dtype=float))
    defined = [float(r) for r in rhos if np.isfinite(r)]
    return {"testable": True, "reason": None,
            "seeds_rho_positive": proportion(sum(r > 0 for r in defined), len(defined)),
            "constant_seeds": len(rhos) - len(defined), "rho": quartiles(defined),
            "imp_vs_random": _imp_vs_random(levels, random)}


def budget_on_dead(levels: pd.DataFrame) -> dict:
    """The pruning budget spent on the dead (docs/science.md §8): per seed Σ pruned_dead /
    Σ newly_pruned over the levels (median, IQR over seeds), and per level the median over seeds of
    pruned_dead_share."""
    lv = levels[levels["level"] > 0]
    if not len(lv) or not (lv["newly_pruned"] > 0).any():
        return not_testable("nothing was pruned")
    sums = lv.groupby("seed", sort=True)[["pruned_dead", "newly_pruned"]].sum()
    per_level = [{"level": int(level), **quartiles(g["pruned_dead_share"])}
                 for level, g in lv.groupby("level", sort=True)]
    return {"testable": True, "reason": None,
            "share": quartiles(sums["pruned_dead"]
                               / sums["newly_pruned"].where(sums["newly_pruned"] > 0)),
            "per_level": per_level}


def h5_comatose_bias_before_detach(episodes: pd.DataFrame, levels: pd.DataFrame,
                                   biases_prunable: bool) -> dict:
    """H5: k/n comatose neurons whose bias is pruned at an earlier level than their last
    incoming weight (never detached in the run: a bias pruned at all counts), pooled, per
    layer and as the per-seed fraction's median; and the budget spent on the dead."""
    budget = budget_on_dead(levels)
    c = episodes[episodes["kind"] == "comatose"].drop_duplicates(["seed", "layer", "neuron"])
    if not biases_prunable:
        return not_testable("biases are not prunable", budget_on_dead=budget)
    if not len(c):
        return not_testable("no comatose neuron", budget_on_dead=budget)
    detached = (c["last_level"].astype(float) + 1).where(c["end"] == "detached")
    bias = c["bias_pruned_level"].astype(float)
    before = bias.notna() & (detached.isna() | (bias < detached))
    per_seed = before.groupby(c["seed"]).mean()
    return {"testable": True, "reason": None,
            "bias_first": proportion(int(before.sum()), len(c)),
            "per_seed_fraction": quartiles(per_seed),
            "per_layer": {str(layer): proportion(int(b.sum()), len(b))
                          for layer, b in before.groupby(c["layer"], sort=True)},
            "budget_on_dead": budget}


def _accuracy_groups(imp_levels: pd.DataFrame, level: int, split: pd.Series, cols: list[str]
                     ) -> dict:
    """Per accuracy column at `level`: medians of the seeds that split and that never do, and
    Mann–Whitney's p."""
    at = imp_levels[imp_levels["level"] == level].set_index("seed")
    out = {"level": int(level)}
    for col in cols:
        a, b = at.loc[split[split].index, col], at.loc[split[~split].index, col]
        out[col] = {"split_median": number(a.median()), "never_median": number(b.median()),
                    "mannwhitney_p": mann_whitney(a, b)}
    return out


def h6_split_vs_unsplit_accuracy(seeds_table: pd.DataFrame, imp_levels: pd.DataFrame,
                                 tasks: list[TaskInfo], last: int) -> dict:
    """H6: seeds that split (headline criterion) against seeds that never do: test accuracy
    (mean over tasks and each task) at the level where the first seed splits and at the last
    level, and the degradation level (never degraded: T + 1), medians and Mann–Whitney."""
    if len(tasks) < 2:
        return not_testable("one task (a split needs two)")
    split = seeds_table.set_index("seed")["first_split_level"].notna()
    if split.all() or not split.any():
        return not_testable("every seed splits" if split.all() else "no seed splits")
    cols = ["test_acc", *[f"test_acc_{t.name}" for t in tasks]]
    first = int(seeds_table["first_split_level"].min())
    degradation = seeds_table.set_index("seed")["degradation_level"].astype(float).fillna(last + 1)
    return {"testable": True, "reason": None, "seeds_split": int(split.sum()),
            "seeds_never": int((~split).sum()),
            "at_first_split_level": _accuracy_groups(imp_levels, first, split, cols),
            "at_last_level": _accuracy_groups(imp_levels, last, split, cols),
            "degradation_level": {"split_median": float(degradation[split].median()),
                                  "never_median": float(degradation[~split].median()),
                                  "mannwhitney_p": mann_whitney(degradation[split],
                                                                degradation[~split])}}


def death_predicted(deaths: pd.DataFrame, measured: bool, method: str, weight_decay: float
                    ) -> dict:
    """The death prediction: k/n frozen parameters whose death level is exactly predicted by
    the threshold, per kind, and the misses by reason."""
    if not measured:
        return not_testable(NOT_MEASURED.removeprefix("not testable: "))
    if not len(deaths):
        return not_testable("no frozen parameter")
    exact = deaths["exact"].astype(bool)
    miss = deaths.loc[~exact, "reason"].fillna("")
    return {"testable": True, "reason": None, "method": method, "weight_decay": weight_decay,
            "exact": proportion(int(exact.sum()), len(deaths)),
            "by_kind": {kind: proportion(int(exact[g.index].sum()), len(g))
                        for kind, g in deaths.groupby("kind", sort=True)},
            "misses": {"unfroze": int((miss == "unfroze").sum()), "tie": int((miss == "tie").sum()),
                       "unexplained": int((miss == "").sum())}}


def answers(tables: dict[str, pd.DataFrame], levels: pd.DataFrame, random: pd.DataFrame | None,
            seeds_table: pd.DataFrame, imp_levels: pd.DataFrame, tasks: list[TaskInfo],
            seeds: list[int], biases_prunable: bool, measured: bool, method: str,
            weight_decay: float, without_bias: np.ndarray) -> dict:
    """metrics.json's `dying` section: every hypothesis of docs/science.md §8 and the death
    prediction. tables: pipeline.dying.Tracker.tables' frames; levels / random: the tickets' and
    the random masks' rows of levels.csv / random_masks.csv."""
    episodes, last = tables["episodes"], int(levels["level"].max())
    return {
        "h1_zombie_lifetime_vs_bias": h1_zombie_lifetime_vs_bias(episodes, seeds),
        "h2_negative_biases_pruned_early": h2_negative_biases_pruned_early(tables["bias_survival"]),
        "h3_comatose_peak": h3_comatose_peak(levels, episodes, last),
        "h4_zombies_at_high_sparsity": h4_zombies_at_high_sparsity(levels, random),
        "h5_comatose_bias_before_detach": h5_comatose_bias_before_detach(episodes, levels,
                                                                          biases_prunable),
        "h6_split_vs_unsplit_accuracy": h6_split_vs_unsplit_accuracy(seeds_table, imp_levels,
                                                                     tasks, last),
        "death_predicted": death_predicted(tables["frozen_deaths"], measured, method, weight_decay),
        "zombies_without_bias": {"total": int(without_bias.sum()),
                                 "per_seed": {str(s): int(c) for s, c in zip(seeds, without_bias)}},
    }


def _pick(block: dict, *path: str):
    for key in path:
        block = (block or {}).get(key)
    return block


def _interval(block: dict | None) -> list:
    """[low, high] of a proportion block, for metrics.json (a list: `dvc exp show` skips it)."""
    return [None, None] if not block else [block["low"], block["high"]]


HEADLINES = {  # metrics.json `dying`: per question its headline numbers (full: dying.json)
    "h1_zombie_lifetime_vs_bias": lambda b: {
        "rho": _pick(b, "all", "rho"), "rho_ci95": _pick(b, "all", "rho_ci95") or [None, None],
        "lifetime_mannwhitney_p": _pick(b, "all", "lifetime_by_bias", "mannwhitney_p")},
    "h2_negative_biases_pruned_early": lambda b: {
        "mannwhitney_p": b.get("mannwhitney_p"),
        "seeds_negative_lower": _pick(b, "seeds_negative_lower", "fraction"),
        "seeds_negative_lower_ci95": _interval(b.get("seeds_negative_lower"))},
    "h3_comatose_peak": lambda b: {
        "peak_fraction": _pick(b, "peak_fraction", "median"),
        "peak_fraction_iqr": [_pick(b, "peak_fraction", "q25"), _pick(b, "peak_fraction", "q75")]},
    "h4_zombies_at_high_sparsity": lambda b: {
        "seeds_rho_positive": _pick(b, "seeds_rho_positive", "fraction"),
        "seeds_rho_positive_ci95": _interval(b.get("seeds_rho_positive"))},
    "h5_comatose_bias_before_detach": lambda b: {
        "bias_first": _pick(b, "bias_first", "fraction"),
        "bias_first_ci95": _interval(b.get("bias_first")),
        "budget_on_dead": _pick(b, "budget_on_dead", "share", "median")},
    "h6_split_vs_unsplit_accuracy": lambda b: {
        "last_level_mannwhitney_p": _pick(b, "at_last_level", "test_acc", "mannwhitney_p")},
    "death_predicted": lambda b: {
        "exact": _pick(b, "exact", "fraction"), "exact_ci95": _interval(b.get("exact"))},
}


def headlines(full: dict) -> dict:
    """metrics.json's `dying`: per question `testable`, `reason` and its headline numbers (null
    where not testable; intervals as [low, high] lists), and the zombies without bias. Few
    scalars on purpose: `dvc exp show` tabulates every scalar of metrics.json, and the full
    answers (reports/analysis/dying.json) would make its table unreadable."""
    out = {}
    for key, pick in HEADLINES.items():
        block = full[key]
        numbers = pick(block if block["testable"] else {})
        if key == "h5_comatose_bias_before_detach":  # the budget is measured either way
            numbers["budget_on_dead"] = _pick(block, "budget_on_dead", "share", "median")
        out[key] = {"testable": block["testable"], "reason": block["reason"], **numbers}
    out["zombies_without_bias"] = full["zombies_without_bias"]["total"]
    return out
