"""Tables and summaries built from graph analyses of IMP levels (what the analyze stage writes).

Layer numbering in every table: layer i is the i-th linear map (0 = input → first hidden); its
weights, its biases and its output neurons all carry layer i.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from pipeline.data import TaskInfo
from pipeline.graph import ALIVE, STATES, Analysis, state_counts
from pipeline.model import Layout

# docs/science.md §6: the criteria reported side by side; `analysis.split` picks the headline one
# among the structural ones (the functional split is always reported beside them)
CRITERIA = ("complete", "effective", "output", "functional")
STRUCTURAL = ("complete", "effective", "output")


class InvariantError(Exception):
    """A level-over-level invariant (masks shrink, states only move down) is violated."""


def _flags(values: torch.Tensor, applicable: bool) -> np.ndarray:
    """[K] bool as a table column, or NaN ("not applicable", null in files) where T = 1."""
    v = values.numpy()
    return v if applicable else np.full(len(v), np.nan)


def frozen_inputs(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Constant inputs (docs/science.md §5) from the training rows x_train [N, n_in]: (constant
    [n_in] bool: the same value in every row, frozen [n_in] bool: constant and 0 — a weight
    reading one gets no gradient and keeps its rewound value: a frozen input weight). With
    standardised inputs every constant input is 0. No rows: nothing is constant."""
    if not len(x_train):
        none = np.zeros(x_train.shape[1], dtype=bool)
        return none, none
    constant = (x_train == x_train[0]).all(axis=0)
    return constant, constant & (x_train[0] == 0)


def _distance_columns(levels: pd.DataFrame, layout: Layout, res: Analysis, distance,
                      frozen: np.ndarray | None) -> None:
    """The split distance columns of level_frames (docs/science.md §5–6), NaN where not computed
    or not applicable."""
    ok = res.applicable and distance is not None
    nan = np.full(len(levels), np.nan)
    d = distance
    levels["split_distance"] = d.d.numpy() if ok else nan
    levels["split_distance_low"] = d.d_low.numpy() if ok else nan
    levels["split_distance_high"] = d.d.numpy() if ok else nan
    levels["split_distance_exact"] = d.exact.numpy() if ok else nan
    levels["split_distance_w"] = d.d_w.numpy() if ok else nan
    levels["split_distance_w_low"] = d.d_w_low.numpy() if ok else nan
    levels["split_distance_w_share"] = d.share_w.numpy() if ok else nan
    for i, (w, b, _) in enumerate(layout.offsets):
        levels[f"split_cut_layer_{i}"] = d.cut[:, w:b].sum(dim=1).numpy() if ok else nan
    levels["split_cut_w_weights"] = d.cut_w.sum(dim=1).numpy() if ok else nan
    w, b, _ = layout.offsets[0]
    if frozen is None:
        levels["alive_w_frozen_input"] = nan
        levels["split_cut_frozen_input"] = levels["split_cut_w_frozen_input"] = nan
        return
    reads = torch.from_numpy(np.asarray(frozen, dtype=bool)).expand(layout.layers[1], -1).reshape(-1)
    levels["alive_w_frozen_input"] = ((res.state[:, w:b] == ALIVE) & reads).sum(dim=1).numpy()
    levels["split_cut_frozen_input"] = (d.cut[:, w:b] & reads).sum(dim=1).numpy() if ok else nan
    levels["split_cut_w_frozen_input"] = ((d.cut_w[:, w:b] & reads).sum(dim=1).numpy()
                                          if ok else nan)


def level_frames(layout: Layout, res: Analysis, mask: torch.Tensor, theta: torch.Tensor,
                 prunable: torch.Tensor, tasks: list[TaskInfo], seeds: list[int],
                 level: int, functional=None, headline: str = "complete", distance=None,
                 frozen: np.ndarray | None = None) -> dict[str, pd.DataFrame]:
    """levels / layers / task_matrix / zombies rows of one level.

    The levels rows carry the split criteria of docs/science.md §6: split_complete, split_effective,
    split_output, coverage_<task>, leakage (λ), leakage_w (λ_w); with `functional`
    (pipeline.functional.Functional) split_functional (by the minimum cut C_w),
    test_acc_cut_<task> and test_acc_cross_zeroed_<task> (E_× zeroed; a column only); with
    `distance` (pipeline.cut.Distance) the split distance columns split_distance (d: size of
    the cut found, the minimum for T = 2, the isolating-cut upper bound for T > 2),
    split_distance_low / _high (bounds), split_distance_exact, split_distance_w (d_w),
    split_distance_w_low, split_distance_w_share (d_w / alive |w| mass), split_cut_layer_<i>
    (weights of C per layer), split_cut_w_weights (|C_w|); with `frozen` ([n_in] bool,
    frozen_inputs) alive_w_frozen_input and split_cut_frozen_input / split_cut_w_frozen_input
    (alive / cut weights reading a constant-zero input, docs/science.md §5). NaN where an argument
    is missing. `split` is the `headline` criterion's column (complete, effective or output).
    With one task every split quantity (split*, split_metric, groups, task_distance,
    leakage*, test_acc_cross_zeroed_*, test_acc_cut_*, split_distance*) is NaN: "not
    applicable", null in the files.
    """
    k = len(seeds)
    # per layer and kind, over contiguous slices of the flat layout (no copies)
    per_layer = [(state_counts(res.state, slice(w, b)).numpy(),
                  state_counts(res.state, slice(b, e)).numpy()) for w, b, e in layout.offsets]
    counts_w = sum(c for c, _ in per_layer)
    counts_b = sum(c for _, c in per_layer)
    counts = counts_w + counts_b
    levels = pd.DataFrame({"seed": seeds, "level": level,
                           "params": (mask & prunable).sum(dim=1).numpy()})
    for j, name in enumerate(STATES):
        levels[name] = counts[:, j]
    for j, name in enumerate(STATES):
        levels[f"{name}_w"] = counts_w[:, j]
        levels[f"{name}_b"] = counts_b[:, j]
    levels["zombie_neurons"] = sum(z.sum(dim=1) for z in res.zombie).numpy() if res.zombie else 0
    levels["comatose_neurons"] = (sum(c.sum(dim=1) for c in res.comatose).numpy()
                                  if res.comatose else 0)
    levels["frozen_zombies"] = sum(f.sum(dim=1) for f in res.frozen).numpy() if res.frozen else 0
    levels["components"] = res.components.numpy()
    ok = res.applicable
    # with one task there are no task groups or cross-task paths: G and ‖A − I‖_F are split
    # quantities too (null); the potential still says how many in-out pairs are connected
    levels["groups"] = res.groups.numpy() if ok else np.nan
    levels["potential"] = res.potential.numpy()
    levels["split_metric"] = res.split_metric.numpy() if ok else np.nan
    levels["task_distance"] = res.task_distance.numpy() if ok else np.nan
    by_name = {"complete": res.split_complete, "effective": res.split_effective,
               "output": res.split_output}
    levels["split"] = _flags(by_name[headline], ok)
    levels["split_complete"] = _flags(res.split_complete, ok)
    levels["split_effective"] = _flags(res.split_effective, ok)
    levels["split_output"] = _flags(res.split_output, ok)
    for j, t in enumerate(tasks):
        levels[f"coverage_{t.name}"] = res.coverage[:, j].numpy()
    levels["leakage"] = res.leakage.numpy() if ok else np.nan
    levels["leakage_w"] = res.leakage_w.numpy() if ok else np.nan
    if functional is not None and ok:
        levels["split_functional"] = functional.split.numpy()
        acc0, acc_cut = functional.acc_zeroed.numpy(), functional.acc_cut.numpy()
        for j, t in enumerate(tasks):
            levels[f"test_acc_cut_{t.name}"] = acc_cut[:, j]
        for j, t in enumerate(tasks):
            levels[f"test_acc_cross_zeroed_{t.name}"] = acc0[:, j]
    else:
        levels["split_functional"] = np.nan
        for t in tasks:
            levels[f"test_acc_cut_{t.name}"] = np.nan
        for t in tasks:
            levels[f"test_acc_cross_zeroed_{t.name}"] = np.nan
    _distance_columns(levels, layout, res, distance, frozen)
    levels["density"] = mask.sum(dim=1).numpy() / layout.size
    levels["effective_density"] = counts[:, 0] / layout.size

    rows = []
    for i in range(layout.depth):
        for kind, c in zip(("weight", "bias"), per_layer[i]):
            for j, name in enumerate(STATES):
                rows.append(pd.DataFrame({"seed": seeds, "level": level, "layer": i,
                                          "kind": kind, "state": name, "count": c[:, j]}))
    for i, (z, c, f) in enumerate(zip(res.zombie, res.comatose, res.frozen)):
        for name, flags in (("zombie", z), ("comatose", c), ("frozen_zombie", f)):
            rows.append(pd.DataFrame({"seed": seeds, "level": level, "layer": i, "kind": "neuron",
                                      "state": name, "count": flags.sum(dim=1).numpy()}))
    layers = pd.concat(rows, ignore_index=True)

    t = len(tasks)
    names = [x.name for x in tasks]
    task_matrix = pd.DataFrame({
        "seed": np.repeat(seeds, t * t), "level": level,
        "from_task": np.tile(np.repeat(names, t), k), "to_task": np.tile(names * t, k),
        "value": res.task_matrix.reshape(-1).numpy()})

    zrows = []
    views = layout.views(theta)
    for i, (z, f) in enumerate(zip(res.zombie, res.frozen)):
        kk, nn = z.nonzero(as_tuple=True)
        zrows.append(pd.DataFrame({"seed": np.array(seeds)[kk.numpy()], "level": level,
                                   "layer": i, "neuron": nn.numpy(),
                                   "bias": views[i][1][kk, nn].numpy(),
                                   "frozen": f[kk, nn].numpy()}))
    zombies = (pd.concat(zrows, ignore_index=True) if zrows else
               pd.DataFrame(columns=["seed", "level", "layer", "neuron", "bias", "frozen"]))
    return {"levels": levels, "layers": layers, "task_matrix": task_matrix, "zombies": zombies}


def check_monotone(states: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
    """Masks only shrink and every parameter's state index never decreases across levels."""
    for i in range(1, len(states)):
        if bool((masks[i] & ~masks[i - 1]).any()):
            k = int((masks[i] & ~masks[i - 1]).any(dim=1).nonzero()[0])
            raise InvariantError(f"level {i}: network {k} has an unpruned parameter that was "
                                 f"pruned at level {i - 1}")
        back = states[i] < states[i - 1]
        if bool(back.any()):
            k, p = (int(v) for v in back.nonzero()[0])
            raise InvariantError(f"level {i}: parameter {p} of network {k} moved from state "
                                 f"{STATES[states[i - 1][k, p]]} back to {STATES[states[i][k, p]]}")


def lifetimes(states: list[torch.Tensor]) -> torch.Tensor:
    """[K, P, 5] number of levels each parameter spent in each state."""
    out = torch.zeros(*states[0].shape, len(STATES), dtype=torch.int16)
    for s in states:
        out.scatter_add_(2, s.long().unsqueeze(2), torch.ones(*s.shape, 1, dtype=torch.int16))
    return out


def lifetime_summary(life: torch.Tensor, layout: Layout, seeds: list[int]) -> pd.DataFrame:
    """Per seed, layer, weight/bias and state: how many parameters ever were in the state and
    for how many levels (mean, median, max over those parameters)."""
    rows = []
    layer_idx, is_bias = layout.layer_index(), layout.is_bias()
    life = life.numpy()
    for i in range(layout.depth):
        for kind, sel in (("weight", ~is_bias), ("bias", is_bias)):
            part = life[:, (sel & (layer_idx == i)).numpy(), :]
            for k, seed in enumerate(seeds):
                for j, name in enumerate(STATES):
                    v = part[k, :, j]
                    v = v[v > 0]
                    rows.append({"seed": seed, "layer": i, "kind": kind, "state": name,
                                 "params": len(v),
                                 "mean_levels": float(v.mean()) if len(v) else math.nan,
                                 "median_levels": float(np.median(v)) if len(v) else math.nan,
                                 "max_levels": int(v.max()) if len(v) else 0})
    return pd.DataFrame(rows)


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k/n (docs/science.md §7)."""
    from scipy.stats import binomtest

    if n == 0:
        return math.nan, math.nan
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def fisher_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test on the 2×2 table (split / not split) × (group
    1 / group 2): is the split probability the same in both?"""
    from scipy.stats import fisher_exact

    if n1 == 0 or n2 == 0:
        return math.nan
    return float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


def fraction_text(k: int, n: int) -> str:
    """'25/32 (0.78, 95% CI 0.61–0.89)': a fraction with its Wilson interval."""
    if n == 0:
        return "0/0"
    lo, hi = wilson(k, n)
    return f"{k}/{n} ({k / n:.2f}, 95% CI {lo:.2f}–{hi:.2f})"


def random_mask_splits(random_levels: pd.DataFrame) -> pd.Series:
    """Per seed: did the random mask of some pruned level (level ≥ 1) split? (null model;
    the headline criterion's `split` column; "not applicable" rows count as not split)"""
    part = random_levels[random_levels["level"] > 0]
    return part.groupby("seed")["split"].apply(lambda s: bool(_as_flags(s).any()))


def _as_flags(col: pd.Series) -> pd.Series:
    """A split column (bool, or NaN where not applicable / not computed) as plain bools."""
    return col.map(lambda v: v is True or v == 1 or (isinstance(v, str) and v == "True"))


def _stats(values: pd.Series) -> dict:
    v = values.dropna()
    if v.empty:
        return {"median": None, "min": None, "max": None}
    return {"median": float(v.median()), "min": float(v.min()), "max": float(v.max())}


def split_applicable(analysis: pd.DataFrame) -> bool:
    """False for one-task runs, whose split columns are all NaN (docs/science.md §6)."""
    return bool(analysis["split_complete"].notna().any()) if "split_complete" in analysis \
        else bool(analysis["split"].notna().any())


def per_seed(analysis: pd.DataFrame, imp_levels: pd.DataFrame, tasks: list[TaskInfo],
             threshold: float) -> pd.DataFrame:
    """One row per seed: first split, degradation, accuracies at split vs dense.

    The unsuffixed columns (first_split_level, params_at_split, alive_at_split,
    test_acc_<task>_at_split, split_before_degradation) follow the headline `split` column;
    first_split_level_<c>, params_at_split_<c>, alive_at_split_<c> and
    split_before_degradation_<c> follow each criterion c of CRITERIA present in `analysis`
    (split_<c> columns), and functional_gap_levels = first structural (headline) − first
    functional split level. One-task runs: every split column is null (not applicable).
    """
    acc_cols = [f"test_acc_{t.name}" for t in tasks]
    table = analysis.merge(imp_levels[["seed", "level", *acc_cols]], on=["seed", "level"])
    applicable = split_applicable(analysis)
    criteria = [("", "split")] + [(f"_{c}", f"split_{c}") for c in CRITERIA
                                  if f"split_{c}" in analysis]
    rows = []
    for seed, g in table.groupby("seed", sort=True):
        g = g.sort_values("level")
        dense = g.iloc[0]
        degraded = np.zeros(len(g), dtype=bool)
        for c in acc_cols:
            degraded |= (g[c] < dense[c] - threshold).to_numpy()
        dl = int(g["level"].to_numpy()[degraded.argmax()]) if degraded.any() else None
        row = {"seed": seed, "degradation_level": dl}
        for suffix, col in criteria:
            split_rows = g[_as_flags(g[col]).to_numpy()] if applicable else g.iloc[:0]
            s = split_rows.iloc[0] if len(split_rows) else None
            fs = None if s is None else int(s["level"])
            row[f"first_split_level{suffix}"] = fs
            row[f"params_at_split{suffix}"] = None if s is None else int(s["params"])
            row[f"alive_at_split{suffix}"] = None if s is None else int(s["alive"])
            if not suffix:
                for c in acc_cols:
                    row[f"{c}_at_split"] = None if s is None else float(s[c])
                for c in acc_cols:
                    row[f"{c}_dense"] = float(dense[c])
            row[f"split_before_degradation{suffix}"] = (
                (fs is not None and (dl is None or fs < dl)) if applicable else None)
        if "split_functional" in analysis:
            fs, ff = row["first_split_level"], row["first_split_level_functional"]
            row["functional_gap_levels"] = None if fs is None or ff is None else fs - ff
        # coverage (how much of each task's input the ticket still uses) and leakage, at the
        # headline first split and at the last level (docs/science.md §6: covariates, not conditions)
        last = g.iloc[-1]
        at = (g[g["level"] == row["first_split_level"]].iloc[0]
              if row["first_split_level"] is not None else None)
        for t in tasks:
            c = f"coverage_{t.name}"
            if c in g:
                row[f"{c}_at_split"] = None if at is None else float(at[c])
                row[f"{c}_last"] = float(last[c])
        for c in ("leakage", "leakage_w"):
            if c in g:
                row[f"{c}_last"] = None if pd.isna(last[c]) else float(last[c])
        if "split_distance" in g:
            row.update(_distance_per_seed(g, row.get("first_split_level_functional")))
        rows.append(row)
    return pd.DataFrame(rows)


def _value(v) -> float | None:
    return None if pd.isna(v) else float(v)


def _distance_per_seed(g: pd.DataFrame, functional_level) -> dict:
    """Split distance of one seed's levels g (sorted): at the last level, at the first
    functional split, and the first levels with d ≤ 1 and d = 0 (None where never)."""
    d = g["split_distance"].astype(float)
    at = g[g["level"] == functional_level] if functional_level is not None else g.iloc[:0]
    out = {"split_distance_last": _value(d.iloc[-1]),
           "split_distance_w_share_last": _value(g["split_distance_w_share"].iloc[-1]),
           "split_distance_at_functional_split": _value(at["split_distance"].iloc[0])
           if len(at) else None,
           "split_distance_w_share_at_functional_split":
               _value(at["split_distance_w_share"].iloc[0]) if len(at) else None}
    for name, hit in (("first_level_distance_at_most_1", d <= 1), ("first_level_distance_0", d == 0)):
        levels = g["level"][hit.to_numpy()]
        out[name] = int(levels.iloc[0]) if len(levels) else None
    return out


def _distance_levels(levels: pd.DataFrame) -> list[dict]:
    """Per level: median parameters, and median / IQR over seeds of d and of d_w's share."""
    out = []
    for level, g in levels.groupby("level", sort=True):
        out.append({"level": int(level), "params": _median(g["params"]),
                    "d": _quartiles(g["split_distance"]),
                    "d_w_share": _quartiles(g["split_distance_w_share"])})
    return out


def _first_levels(per: pd.DataFrame) -> dict:
    """First level with d ≤ 1 and with d = 0 over seeds (median, min, max; seeds reaching it)."""
    out = {}
    for name in ("first_level_distance_at_most_1", "first_level_distance_0"):
        col = per[name].astype(float)
        out[name] = {**_stats(col), "seeds": int(col.notna().sum())}
    return out


def distance_summary(levels: pd.DataFrame, seeds_table: pd.DataFrame,
                     random_levels: pd.DataFrame | None = None) -> dict | None:
    """metrics.json `split_distance` (docs/science.md §6): how far the tickets are from a split.

    `exact` (false where a T > 2 value is an isolating-cut upper bound), per level the median
    and IQR over seeds of d and d_w's share of the alive |w| mass (`per_level`), the first
    level with d ≤ 1 and with d = 0 (median, min, max over the seeds reaching it; `seeds`),
    d and the share at the first functional split and at the last level; the same under
    `random_mask` for the random-mask control where it ran. None without the columns or with
    one task (not applicable)."""
    if "split_distance" not in levels or levels["split_distance"].isna().all():
        return None
    out = {"exact": bool(_as_flags(levels["split_distance_exact"].dropna()).all()),
           "per_level": _distance_levels(levels), **_first_levels(seeds_table)}
    for when in ("at_functional_split", "last"):
        out["last_level" if when == "last" else when] = {
            "d": _quartiles(seeds_table[f"split_distance_{when}"]),
            "d_w_share": _quartiles(seeds_table[f"split_distance_w_share_{when}"])}
    if random_levels is not None and "split_distance" in random_levels \
            and random_levels["split_distance"].notna().any():
        per = pd.DataFrame([{"seed": seed, **_distance_per_seed(g.sort_values("level"), None)}
                            for seed, g in random_levels.groupby("seed", sort=True)])
        out["random_mask"] = {"per_level": _distance_levels(random_levels), **_first_levels(per),
                              "last_level": {"d": _quartiles(per["split_distance_last"]),
                                             "d_w_share": _quartiles(
                                                 per["split_distance_w_share_last"])}}
    return out


def _median(values: pd.Series) -> float | None:
    """Median over seeds, None (null) where no seed has a value."""
    v = values.astype(float).dropna()
    return float(v.median()) if len(v) else None


def _quartiles(values: pd.Series) -> dict:
    """{median, q25, q75} over seeds (null where no seed has a value)."""
    v = values.astype(float).dropna()
    if not len(v):
        return {"median": None, "q25": None, "q75": None}
    return {"median": float(v.median()), "q25": float(v.quantile(0.25)),
            "q75": float(v.quantile(0.75))}


def _split_block(seeds_table: pd.DataFrame, suffix: str, applicable: bool) -> dict:
    """The metrics.json block of one criterion (see summarize)."""
    first = seeds_table[f"first_split_level{suffix}"]
    if not applicable:
        ci = [None, None]
        return {"seeds_split": None, "fraction_split": None, "fraction_split_ci95": ci,
                "fraction_split_low": None, "fraction_split_high": None,
                "seeds_split_before_degradation": None,
                "fraction_split_before_degradation": None,
                "fraction_split_before_degradation_ci95": ci,
                "fraction_split_before_degradation_low": None,
                "fraction_split_before_degradation_high": None,
                "first_split_level": _stats(pd.Series([], dtype=float)),
                "params_at_split": _stats(pd.Series([], dtype=float)),
                "alive_at_split": _stats(pd.Series([], dtype=float))}
    split = first.notna()
    before = _as_flags(seeds_table[f"split_before_degradation{suffix}"])
    ci = lambda flags: list(wilson(int(flags.sum()), len(flags)))  # noqa: E731
    split_ci, before_ci = ci(split), ci(before)
    return {
        "seeds_split": int(split.sum()),
        "fraction_split": float(split.mean()),
        "fraction_split_ci95": split_ci,
        # the same bounds as scalars: `dvc exp show` / `dvc metrics show` skip lists
        "fraction_split_low": split_ci[0], "fraction_split_high": split_ci[1],
        "seeds_split_before_degradation": int(before.sum()),
        "fraction_split_before_degradation": float(before.mean()),
        "fraction_split_before_degradation_ci95": before_ci,
        "fraction_split_before_degradation_low": before_ci[0],
        "fraction_split_before_degradation_high": before_ci[1],
        "first_split_level": _stats(first.astype(float)),
        "params_at_split": _stats(seeds_table[f"params_at_split{suffix}"].astype(float)),
        "alive_at_split": _stats(seeds_table[f"alive_at_split{suffix}"].astype(float)),
    }


def summarize(seeds_table: pd.DataFrame, tasks: list[TaskInfo], threshold: float,
              random_split: pd.Series | None = None, headline: str = "complete") -> dict:
    """reports/metrics.json: the answers across seeds (no NaN: missing values are null).
    Every fraction comes with its 95% Wilson interval (`…_ci95`: [low, high]); with the
    random-mask control (`random_split`: per seed, did a random mask split), its split fraction
    and Fisher's exact test of IMP against it.

    `split` is the headline criterion (`headline`, analysis.split); `split_complete`,
    `split_effective`, `split_output` and `split_functional` hold the same keys per criterion (where the seeds
    table has them), `functional_gap_levels` the first structural minus the first functional
    split level over seeds. With one task (`split_applicable`: false) every split number is
    null (docs/science.md §6).
    """
    n = len(seeds_table)
    applicable = len(tasks) >= 2
    split = seeds_table["first_split_level"].notna() & applicable
    out = {
        "seeds": n,
        "split_applicable": applicable,
        "split_criterion": headline,
        "dense_test_acc": {t.name: float(seeds_table[f"test_acc_{t.name}_dense"].mean())
                           for t in tasks},
        "split": _split_block(seeds_table, "", applicable),
    }
    for c in CRITERIA:
        if f"first_split_level_{c}" in seeds_table:
            out[f"split_{c}"] = _split_block(seeds_table, f"_{c}", applicable)
    if "functional_gap_levels" in seeds_table:
        out["functional_gap_levels"] = _stats(seeds_table["functional_gap_levels"].astype(float))
    cov = [t.name for t in tasks if f"coverage_{t.name}_last" in seeds_table]
    if cov:
        out["coverage"] = {
            "at_split": {name: _median(seeds_table[f"coverage_{name}_at_split"]) for name in cov},
            "last_level": {name: _median(seeds_table[f"coverage_{name}_last"]) for name in cov}}
    for c in ("leakage", "leakage_w"):
        if f"{c}_last" in seeds_table:
            out[c] = {"last_level": _quartiles(seeds_table[f"{c}_last"])}
    out["test_acc_at_split"] = {
        t.name: (float(seeds_table.loc[split, f"test_acc_{t.name}_at_split"].mean())
                 if split.any() else None) for t in tasks}
    out["degradation"] = {
        "threshold": threshold,
        "seeds_degraded": int(seeds_table["degradation_level"].notna().sum()),
        "first_degradation_level": _stats(seeds_table["degradation_level"].astype(float)),
    }
    if random_split is not None and len(random_split) and applicable:
        ci = lambda flags: list(wilson(int(flags.sum()), len(flags)))  # noqa: E731
        k = int(random_split.sum())
        out["random_mask"] = {
            "seeds_split": k, "fraction_split": k / len(random_split),
            "fraction_split_ci95": ci(random_split),
            "fisher_p_imp_vs_random": fisher_p(int(split.sum()), n, k, len(random_split))}
    return out


def plot_table(analysis: pd.DataFrame, imp_levels: pd.DataFrame, tasks: list[TaskInfo]) -> pd.DataFrame:
    """One row per level, means over seeds: the small git-tracked file behind `dvc plots`."""
    acc = [f"test_acc_{t.name}" for t in tasks]
    merged = analysis.merge(imp_levels[["seed", "level", "test_acc", *acc]], on=["seed", "level"])
    cols = ["params", "split_metric", "task_distance", "alive", "audience", "zombie",
            "unproductive", "zombie_neurons", "comatose_neurons", "frozen_zombies", "test_acc",
            *acc]
    cols += [c for c in ("leakage", "leakage_w", "split_distance", "split_distance_w_share")
             if c in merged]
    cols += [c for c in merged if c.startswith("coverage_")]
    table = merged.groupby("level", sort=True)[cols].mean()
    by_level = merged.groupby("level", sort=True)
    table.insert(1, "fraction_split", by_level["split"].apply(_fraction))
    for j, c in enumerate(c for c in CRITERIA if f"split_{c}" in merged):
        table.insert(2 + j, f"fraction_split_{c}", by_level[f"split_{c}"].apply(_fraction))
    return table.reset_index()


def _fraction(col: pd.Series) -> float:
    """Fraction of True among applicable (non-null) entries; NaN when none is applicable."""
    col = col.dropna()
    return float(_as_flags(col).mean()) if len(col) else math.nan
