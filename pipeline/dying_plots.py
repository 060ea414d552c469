"""Figures of what dies during IMP (docs/science.md §8): `dying.png` of a run (the plot stage) and of
a study (the aggregate stage).

Colours from pipeline.palette: nothing here is a task, so every series is a grey told apart by
line style and marker; black marks references (τ_k, the median peak). Per-level curves are the
median over seeds with the interquartile range (plots._band). A panel whose data the run lacks
says so inside the panel, with the reason.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from pipeline import io, palette, plots
from pipeline.plots import BAND, _band, _integer_ticks, plt

IMP, RANDOM = palette.neutral(0), palette.neutral(1)   # (colour, line style, marker)
NOTE = {"ha": "center", "va": "center", "fontsize": 9, "color": "0.25", "wrap": True,
        "bbox": {"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round"}}
MAX_POINTS = 400  # frozen parameters drawn per level (a deterministic sample beyond that)


def note(ax, text: str, y: float = 0.5, x: float = 0.5) -> None:
    """A note inside the panel (what it lacks and why), centred at (x, y) in axes fractions."""
    ax.text(x, y, text, transform=ax.transAxes, **NOTE)


def empty(ax, title: str, text: str) -> None:
    """A panel without data: its title and the reason, no axes."""
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    note(ax, text)


def _reason(block: dict | None, key: str) -> str | None:
    """The "not testable: …" reason of dying.json's `key`, None when testable or absent."""
    if not block or key not in block or block[key]["testable"]:
        return None
    return block[key]["reason"]


# ---- the run's figure ----------------------------------------------------------------------
def run_figure(levels: pd.DataFrame, random: pd.DataFrame | None, episodes: pd.DataFrame,
               survival: pd.DataFrame, deaths: pd.DataFrame, block: dict | None):
    """reports/figures/dying.png: levels / random: analysis levels.csv and random_masks.csv
    (None or empty without the control); episodes, bias_survival and frozen_deaths tables;
    block: the answers, reports/analysis/dying.json (for the reasons and the numbers quoted in
    panels)."""
    random = random if random is not None and len(random) else None
    fig = plt.figure(figsize=(16, 14.5), layout="constrained")
    grid = fig.add_gridspec(3, 3, height_ratios=[1, 1, 1.05])
    axes = [fig.add_subplot(grid[r, c]) for r in range(2) for c in range(3)]
    zombie_lifetime_panel(axes[0], episodes, block)
    bias_survival_panel(axes[1], survival, block)
    comatose_panel(axes[2], levels, block)
    zombie_count_panel(axes[3], levels, random)
    budget_panel(axes[4], levels)
    alive_panel(axes[5], levels, random)
    threshold_panel(fig.add_subplot(grid[2, :]), levels, deaths, block)
    fig.suptitle("What dies during IMP (docs/science.md §8)", fontweight="bold")
    return fig


def zombie_lifetime_panel(ax, episodes: pd.DataFrame, block: dict | None) -> None:
    """H1: each zombie episode's lifetime against its trained bias at its first level; censored
    episodes (still zombies at the last level: lifetime is a lower bound) hollow."""
    title = "H1: zombie lifetime vs trained bias"
    z = episodes[episodes["kind"] == "zombie"] if len(episodes) else episodes
    if not len(z):
        empty(ax, title, _reason(block, "h1_zombie_lifetime_vs_bias")
              or "not testable: no zombie episode")
        return
    rng = np.random.default_rng(0)  # vertical jitter: lifetimes are whole levels
    censored = z["censored"].astype(bool).to_numpy()
    y = z["lifetime"].to_numpy(dtype=float) + rng.uniform(-0.18, 0.18, len(z))
    x = z["bias_trained"].to_numpy(dtype=float)
    color, _, _ = IMP
    ax.scatter(x[~censored], y[~censored], s=12, color=color, alpha=0.55, lw=0,
               label=f"ended ({int((~censored).sum())})")
    ax.scatter(x[censored], y[censored], s=14, facecolors="none", edgecolors=RANDOM[0],
               lw=0.8, label=f"censored at the last level ({int(censored.sum())})")
    ax.axvline(0, color=palette.REFERENCE, lw=0.7, ls=":")
    reason = _reason(block, "h1_zombie_lifetime_vs_bias")
    h1 = (block or {}).get("h1_zombie_lifetime_vs_bias")
    if reason:
        title += "\n" + reason
    elif h1 and h1.get("all"):
        a = h1["all"]
        low, high = a["rho_ci95"]
        title += ("\nρ not defined (fewer than 3 episodes or a constant side)" if a["rho"] is None
                  else f"\nρ = {plots.fmt(a['rho'], 2)} (95% seed-bootstrap interval "
                       f"{plots.fmt(low, 2)} to {plots.fmt(high, 2)})")
    ax.set(xlabel="trained bias at the episode's first level",
           ylabel="episode lifetime (levels; jittered)",
           ylim=(0.5, max(float(z["lifetime"].max()), 1) + 0.5))
    ax.set_title(title, fontsize=10)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def bias_survival_panel(ax, survival: pd.DataFrame, block: dict | None) -> None:
    """H2: levels each prunable bias stays unpruned, by the sign of its dense trained value (box
    per sign; never pruned: T + 1, counted in the tick label)."""
    title = "H2: bias survival by sign of the dense bias"
    if not len(survival):
        empty(ax, title, _reason(block, "h2_negative_biases_pruned_early")
              or "not testable: biases are not prunable")
        return
    signs = [s for s in ("negative", "zero", "positive") if (survival["sign"] == s).any()]
    data = [survival.loc[survival["sign"] == s, "survival"].to_numpy(dtype=float) for s in signs]
    box = ax.boxplot(data, widths=0.55, patch_artist=True, showfliers=False,
                     medianprops={"color": palette.REFERENCE, "lw": 1.5})
    for patch, hatch in zip(box["boxes"], palette.HATCHES):
        patch.set(facecolor=palette.NEUTRALS[2], hatch=hatch, edgecolor="0.3")
    labels = []
    for s in signs:
        part = survival[survival["sign"] == s]
        labels.append(f"{s}\n{len(part)} biases,\n{int(part['censored'].astype(bool).sum())} "
                      "never pruned (T + 1)")
    ax.set_xticks(range(1, len(signs) + 1), labels, fontsize=8)
    reason = _reason(block, "h2_negative_biases_pruned_early")
    h2 = (block or {}).get("h2_negative_biases_pruned_early")
    if reason:
        title += "\n" + reason
    elif h2:
        k = h2["seeds_negative_lower"]
        title += (f"\nMann–Whitney p = {plots.p_text(h2['mannwhitney_p'])}; negative median\nlower "
                  f"in {k['k']}/{k['n']} seeds")
    ax.set(ylabel="survival (levels unpruned)")
    ax.set_title(title, fontsize=10)
    _integer_ticks(ax.yaxis)


def comatose_panel(ax, levels: pd.DataFrame, block: dict | None) -> None:
    """H3: comatose neurons per level / T (median, IQR over seeds), the median first peak."""
    title = "H3: comatose neurons over the run"
    last = int(levels["level"].max())
    if not (levels["comatose_neurons"] > 0).any() or last < 1:
        empty(ax, title, _reason(block, "h3_comatose_peak") or "not testable: no comatose neuron")
        return
    frame = levels.assign(fraction=levels["level"] / last)
    color, ls, _ = IMP
    _band(ax, frame, "fraction", "comatose_neurons", "comatose neurons", color=color, ls=ls)
    h3 = (block or {}).get("h3_comatose_peak") or {}
    peak = (h3.get("peak_fraction") or {}).get("median")
    if peak is not None:
        q = h3["peak_fraction"]
        ax.axvline(peak, color=palette.REFERENCE, ls="--", lw=1,
                   label=f"each seed's first maximum, level / T: median {plots.fmt(peak, 2)} "
                         f"(IQR {plots.fmt(q['q25'], 2)}–{plots.fmt(q['q75'], 2)})")
    ax.set(xlabel=f"level / T (T = {last})", ylabel=f"comatose neurons ({BAND})", title=title,
           xlim=(0, 1))
    ax.title.set_fontsize(10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)


def _imp_and_random(ax, levels: pd.DataFrame, random: pd.DataFrame | None, column: str,
                    label: str, ls: str | None = None) -> None:
    """IMP's (darkest grey, circles) and, where the control ran, the random masks' (mid grey,
    squares) `column` per level; `ls` the line style of both (default: solid / dashed)."""
    color, own, _ = palette.neutral(0)
    _band(ax, levels, "level", column, f"{label}IMP", color=color, ls=ls or own)
    if random is not None and column in random:
        color, own, _ = palette.neutral(1)
        _band(ax, random, "level", column, f"{label}random masks", color=color, ls=ls or own,
              marker="s")


def zombie_count_panel(ax, levels: pd.DataFrame, random: pd.DataFrame | None) -> None:
    """H4: zombie neurons per level, IMP against the random masks of equal per-layer sparsity."""
    _imp_and_random(ax, levels, random, "zombie_neurons", "")
    counts = [levels["zombie_neurons"]] + ([random["zombie_neurons"]] if random is not None
                                           and "zombie_neurons" in random else [])
    top = max(1.0, max(float(c.max()) for c in counts) * 1.08)  # no ±0.04 axis at all-zero counts
    ax.set(xlabel="IMP level", ylabel=f"zombie neurons ({BAND})", ylim=(-0.04 * top, top),
           title="H4: zombie neurons, IMP vs random masks")
    ax.title.set_fontsize(10)
    _integer_ticks(ax.xaxis)
    _integer_ticks(ax.yaxis)
    if random is None:
        note(ax, "no random masks: prune.random_mask_control is off", y=0.85)
    if not any(c.gt(0).any() for c in counts):
        note(ax, f"{plots.NONE_OCCURRED}: no zombie neuron at any level", y=0.5)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def budget_panel(ax, levels: pd.DataFrame) -> None:
    """The share of each level's pruned parameters that were not alive before it."""
    title = "Pruning budget spent on the dead"
    part = levels[levels["level"] > 0].dropna(subset=["pruned_dead_share"])
    if not len(part):
        empty(ax, title, "nothing was pruned")
        return
    color, ls, _ = IMP
    _band(ax, part, "level", "pruned_dead_share", "share", color=color, ls=ls)
    ax.set(xlabel="IMP level", ylabel=f"pruned parameters not alive before\n(share; {BAND})",
           title=title, ylim=(-0.02, 1.02))
    ax.title.set_fontsize(10)
    _integer_ticks(ax.xaxis)


def alive_panel(ax, levels: pd.DataFrame, random: pd.DataFrame | None) -> None:
    """Alive share (alive / unpruned) and effective density (alive / all parameters) per
    level, IMP and the random masks; log scale."""
    # colour and marker: IMP or random masks; line style: the quantity
    _imp_and_random(ax, levels, random, "alive_share", "alive share, ", ls="-")
    _imp_and_random(ax, levels, random, "effective_density", "effective density, ", ls=":")
    ax.set(xlabel="IMP level", ylabel=f"share ({BAND}; log scale)", yscale="log",
           title="Alive share and effective density")
    ax.title.set_fontsize(10)
    _integer_ticks(ax.xaxis)
    if random is None:  # lower left: both curves fall from the top left to the bottom right
        note(ax, "no random masks: prune.random_mask_control is off", y=0.1, x=0.38)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def threshold_panel(ax, levels: pd.DataFrame, deaths: pd.DataFrame, block: dict | None) -> None:
    """The mechanism: τ_k per level (all seeds: median and IQR; one seed: its own steps) and
    that seed's frozen parameters at the level they died, at the |value| they were ranked with:
    a parameter ranked at |v| dies at the first level with τ_k > |v|."""
    title = "Why frozen parameters die: the pruning threshold τ_k passes the value they are ranked with"
    tau = levels[levels["level"] > 0].dropna(subset=["prune_threshold"])
    if not len(tau):
        empty(ax, title, "no pruned level: τ_k is not defined")
        return
    color, ls, _ = palette.neutral(2)
    _band(ax, tau, "level", "prune_threshold", "τ_k, all seeds", color=color, ls=ls)
    reason = _reason(block, "death_predicted")
    died = deaths.dropna(subset=["actual_death"]) if len(deaths) else deaths
    if not len(died):
        note(ax, reason or "no frozen parameter dies in this run", y=0.2)
    else:
        seed = int(died["seed"].value_counts().sort_index().idxmax())  # most deaths, lowest seed
        _frozen_points(ax, died[died["seed"] == seed], tau[tau["seed"] == seed], seed)
        d = (block or {}).get("death_predicted") or {}
        if d.get("testable"):
            e = d["exact"]
            ax.text(0.01, 0.03, f"all seeds: {e['k']}/{e['n']} frozen parameters die exactly at "
                    f"the predicted level ({d['method']}, weight decay {d['weight_decay']:g})",
                    transform=ax.transAxes, fontsize=8, color="0.2",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    ax.set(xlabel="IMP level", yscale="log", title=title,
           ylabel="|value| (log scale)")
    ax.title.set_fontsize(10)
    _integer_ticks(ax.xaxis)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)


def _frozen_points(ax, died: pd.DataFrame, tau: pd.DataFrame, seed: int) -> None:
    """One seed's τ_k steps and each of its frozen parameters as a segment at the |value| it is
    ranked with, from the level it first froze to the level it died (a dot there: exactly
    predicted; a cross: not); at most MAX_POINTS per death level (a fixed random sample)."""
    from matplotlib.collections import LineCollection

    t = tau.sort_values("level")
    ax.step(t["level"], t["prune_threshold"], where="mid", color=palette.REFERENCE, lw=1.4,
            label=f"τ_k of seed {seed} (holds from level k − ½ to k + ½)")
    rng = np.random.default_rng(0)
    keep = []
    for _, g in died.groupby("actual_death", sort=True):
        keep.append(g if len(g) <= MAX_POINTS else g.iloc[np.sort(rng.choice(len(g), MAX_POINTS,
                                                                              replace=False))])
    pts = pd.concat(keep)
    exact = pts["exact"].astype(bool).to_numpy()
    x0 = pts["first_frozen_level"].to_numpy(dtype=float)
    x1 = pts["actual_death"].to_numpy(dtype=float)
    y = pts["ranked_value"].abs().to_numpy(dtype=float)
    color, _, _ = IMP
    ax.add_collection(LineCollection([[(a, v), (b, v)] for a, b, v in zip(x0, x1, y)],
                                     colors=color, alpha=0.25, lw=0.7,
                                     label=f"frozen parameter of seed {seed}: from the level it "
                                           "froze to its death, at its ranked |value|"))
    ax.scatter(x1[exact], y[exact], s=10, color=color, alpha=0.6, lw=0,
               label=f"death exactly predicted ({int(exact.sum())} drawn)")
    if (~exact).any():
        ax.scatter(x1[~exact], y[~exact], s=24, marker="x", color=palette.REFERENCE, lw=0.9,
                   label=f"death not predicted ({int((~exact).sum())})")


def run_figure_from(analysis: Path, levels: pd.DataFrame, random: pd.DataFrame | None,
                    answers: dict | None):
    """run_figure from the analyze stage's tables in `analysis` (reports/analysis) beside the
    ones the plot stage has read already: levels.csv, random_masks.csv and the answers
    (dying.json)."""
    deaths = io.read_csv(analysis / "frozen_deaths.csv.gz",
                         usecols=["seed", "first_frozen_level", "ranked_value", "actual_death",
                                  "exact"])
    return run_figure(levels, random, io.read_csv(analysis / "episodes.csv"),
                      io.read_csv(analysis / "bias_survival.csv"), deaths, answers)


# ---- the study's figure ------------------------------------------------------------------------
def short_label(row: dict, varied: list[str]) -> str:
    """A configuration named by the study axes that vary (all of them if none varies)."""
    from pipeline.config import STUDY_AXES

    names = {"iterations": "T = {}", "hidden": "{}", "bias_init": "bias {}", "extensions": "ext {}",
             "method": "{}", "weight_decay": "wd {}", "init": "{}", "noise": "noise {}",
             "tasks": "{}", "n_samples": "n {}"}
    axes = varied or [a for a in STUDY_AXES if a in row]
    return ", ".join(names[a].format(row[a]) for a in axes)


def study_figure(summary: pd.DataFrame, tidy: pd.DataFrame):
    """reports/study/figures/dying.png: the comatose count against level / T, one line per T
    (one panel per group of the other varied axes), and below each configuration's answers with
    their intervals, one panel per answer (ANSWER_PANELS): H3's peak fraction and the budget on
    the dead (median, IQR over seeds), H1's ρ (seed-bootstrap 95 % interval) and the k/n
    answers (95 % Wilson intervals). Result files without dying answers: "not available"."""
    from pipeline.config import STUDY_AXES

    varied = [a for a in STUDY_AXES if a in summary and summary[a].nunique() > 1]
    others = [a for a in varied if a != "iterations"]
    groups = (list(summary.groupby(others, sort=False)) if others else [((), summary)])
    cols = min(len(groups), 4)
    rows = -(-len(groups) // cols)
    answer_height = max(3.4, 0.4 * len(summary) + 2.2)
    fig = plt.figure(figsize=(max(18, 4.5 * cols), 3.9 * rows + answer_height),
                     layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.9 * rows, answer_height])
    axes = top.subplots(rows, cols, squeeze=False)
    for ax, (key, g) in zip(axes.flat, groups):
        label = short_label(g.iloc[0].to_dict(), others) if others else "every configuration"
        _comatose_by_t(ax, g, tidy, label)
    for ax in axes.flat[len(groups):]:
        ax.set_axis_off()
    top.suptitle("H3: comatose neurons against level / T, one line per T (median, IQR over "
                 "seeds)", fontsize=11)
    answers = bottom.subplots(1, len(ANSWER_PANELS), sharey=True)
    labels = [short_label(r, varied) for r in summary.to_dict("records")]
    for i, (ax, panel) in enumerate(zip(answers, ANSWER_PANELS)):
        _answer_panel(ax, summary, *panel, marker=palette.MARKERS[i])
    answers[0].set_yticks(range(len(summary)), labels, fontsize=8)
    bottom.suptitle("Each configuration's answers (in italics where it has none: not testable, "
                    "or not available in result files collected before issue 32)", fontsize=11)
    fig.suptitle("What dies during IMP across the study (docs/science.md §8)", fontweight="bold")
    return fig


def _comatose_by_t(ax, group: pd.DataFrame, tidy: pd.DataFrame, label: str) -> None:
    for i, row in enumerate(group.sort_values("iterations").to_dict("records")):
        part = tidy[tidy["config"] == row["config"]]
        if not len(part) or "comatose_neurons" not in part:
            continue
        last = int(part["level"].max()) or 1
        color, ls, marker = palette.neutral(i)
        _band(ax, part.assign(fraction=part["level"] / last), "fraction", "comatose_neurons",
              f"T = {row['iterations']}", color=color, ls=ls, marker=marker)
    ax.set(xlabel="level / T", ylabel="comatose neurons", title=label, xlim=(0, 1))
    ax.title.set_fontsize(10)
    if ax.lines:
        ax.legend(fontsize=8, loc="upper left")
    else:
        note(ax, "no levels in the result files")


# (title, value column or k/n name, low column, high column, x range, x label); a k/n name
# `x` reads x_k / x_n with x_low, x_high
ANSWER_PANELS = (
    ("H3: first comatose peak / T", "h3_peak_fraction", "h3_peak_fraction_q25",
     "h3_peak_fraction_q75", (-0.03, 1.03), "median, IQR over seeds"),
    ("H1: ρ(zombie lifetime,\ntrained bias)", "h1_rho", "h1_rho_low", "h1_rho_high",
     (-1.05, 1.05), "Spearman ρ, 95% seed-\nbootstrap interval"),
    ("H2: seeds whose negative\nbiases die earlier", "h2_seeds_negative_lower", None, None,
     (-0.03, 1.03), "k/n seeds, 95% Wilson"),
    ("H4: seeds whose zombie\ncount rises (ρ > 0)", "h4_seeds_rho_positive", None, None,
     (-0.03, 1.03), "k/n seeds, 95% Wilson"),
    ("H5: comatose biases pruned\nbefore detachment", "h5_bias_first", None, None,
     (-0.03, 1.03), "k/n comatose neurons,\n95% Wilson"),
    ("Budget spent on the dead", "budget_on_dead_share", "budget_on_dead_share_q25",
     "budget_on_dead_share_q75", (-0.03, 1.03), "share of pruned parameters,\n"
     "median, IQR over seeds"),
    ("Frozen deaths exactly\npredicted by τ_k", "death_predicted", None, None, (-0.03, 1.03),
     "k/n frozen parameters,\n95% Wilson"))


def _answer_values(summary: pd.DataFrame, name: str, low: str | None, high: str | None):
    """(value, low, high) per configuration as float arrays (NaN: no value)."""
    if low is None:  # a k/n answer
        k, n = (pd.to_numeric(summary.get(f"{name}_{p}"), errors="coerce").astype(float)
                for p in ("k", "n"))
        value = k / n.where(n > 0)
        low, high = f"{name}_low", f"{name}_high"
    else:
        value = summary[name].astype(float)
    return (value.to_numpy(dtype=float), summary[low].to_numpy(dtype=float),
            summary[high].to_numpy(dtype=float))


def _answer_panel(ax, summary: pd.DataFrame, title: str, name: str, low: str | None,
                  high: str | None, xlim: tuple, xlabel: str, marker: str) -> None:
    """One answer per configuration (a row each) with its interval; rows without one say why:
    "not available" (no dying answers in the result files) or "not testable"."""
    value, lo, hi = _answer_values(summary, name, low, high)
    y = np.arange(len(summary))
    ok = np.isfinite(value)
    ax.errorbar(value[ok], y[ok], xerr=[value[ok] - lo[ok], hi[ok] - value[ok]], fmt=marker,
                color=palette.NEUTRALS[0], capsize=3, ms=5, ls="none")
    if name == "h1_rho":
        ax.axvline(0, color=palette.REFERENCE, lw=0.7, ls=":")
    for row, where in zip(summary.to_dict("records"), y):
        if np.isfinite(value[where]):
            continue
        # study_dying.summary_columns: the whole text is one reason only without answers
        text = ("not available" if str(row.get("dying_not_testable")).startswith("not testable: ")
                else "not testable")
        ax.text(xlim[0] + 0.03 * (xlim[1] - xlim[0]), where, text, va="center", ha="left",
                fontsize=7, color="0.35", style="italic")
    ax.set(xlim=xlim, xlabel=xlabel, ylim=(len(summary) - 0.5, -0.5))
    ax.set_title(title, fontsize=9)
    ax.xaxis.label.set_fontsize(8)
    ax.tick_params(axis="x", labelsize=8)
