"""Figures of a run: one function per figure, each reading the stage reports (pandas frames).

Per-level curves show the median over seeds with the interquartile range (quantiles 0.25/0.75,
which stay within the data's range) where there are several seeds; level axes have integer ticks.
Every colour comes from pipeline.palette: a task has the same Okabe–Ito colour in every figure,
vermillion means cross-task, and series that are not tasks are greys told apart by line style,
marker or hatch. Every figure is titled and labelled with units.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from pipeline import io, palette  # noqa: E402
from pipeline.graph import STATES  # noqa: E402

STATE_COLORS = {s: palette.STATE_COLORS[s] for s in STATES}


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette=list(palette.NEUTRALS))
    plt.rcParams.update({"figure.autolayout": False, "axes.titleweight": "bold",
                         "savefig.bbox": "tight"})


BAND = "median, IQR over seeds"  # what _band draws, for legends and axis labels


def _band(ax, frame: pd.DataFrame, x: str, y: str, label: str, color=None, logx=False,
          **line):
    """Draw column `y` of `frame` (one row per seed and `x` value) against `x`: the median over
    seeds as a line labelled `label` and, when `frame` holds several seeds, the interquartile
    range (quantiles 0.25 and 0.75, linear interpolation) as an unlabelled band. Both lie within
    [min, max] of each `x` value's data (a mean ± sd band leaves it: accuracies above 1, counts
    below 0). NaN values are ignored. Returns the median's Line2D; callers say `BAND` in their
    legend or axis label."""
    g = frame.groupby(x)[y]
    med, q1, q3 = g.median(), g.quantile(0.25), g.quantile(0.75)
    line, = ax.plot(med.index, med.values, **{"marker": "o", "ms": 3, **line}, label=label,
                    color=color)
    if frame["seed"].nunique() > 1:
        ax.fill_between(med.index, q1.values, q3.values, alpha=0.2, color=line.get_color(),
                        lw=0)
    if logx:
        ax.set_xscale("log")
    return line


def _integer_ticks(axis) -> None:
    """Integer tick positions only (IMP levels), whatever the axis' span."""
    axis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


def accuracy_vs_params(imp: pd.DataFrame, seeds: pd.DataFrame, tasks: list[str], threshold: float):
    """accuracy.png: one panel per task (its palette colour and marker, palette.task_style):
    test accuracy against remaining prunable parameters (imp/levels.csv; median, IQR over seeds), the task's dense median
    (dotted), dense − `threshold` (dashed, the degradation bound of docs/science.md §6) and each
    seed's first split (seeds.csv `params_at_split`, black). One panel per task, so no task's
    reference lines hide another's; the legend sits below the panels, clear of every line."""
    cols = min(len(tasks), 3)
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 0.6, 3.9 * rows), sharex=True,
                             sharey=True, squeeze=False, layout="constrained")
    split = seeds["params_at_split"].dropna()
    for i, t in enumerate(tasks):
        _accuracy_panel(axes.flat[i], imp, t, *palette.task_style(i), threshold, split)
    for ax in axes.flat[len(tasks):]:
        ax.set_axis_off()
    axes.flat[0].invert_xaxis()  # shared: pruning runs left to right in every panel
    handles = [matplotlib.lines.Line2D([], [], color="0.3", marker=palette.task_style(0)[1], ms=3,
                                       label=f"test accuracy ({BAND})"),
               matplotlib.lines.Line2D([], [], color="0.3", ls=":", label="dense median"),
               matplotlib.lines.Line2D([], [], color="0.3", ls="--",
                                       label=f"degradation bound (dense − {threshold:g})")]
    if len(split):
        handles.append(matplotlib.lines.Line2D([], [], color=palette.REFERENCE, alpha=0.5,
                                               label="first split (one line per seed)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
               frameon=False)
    fig.suptitle("Accuracy per task while pruning", fontweight="bold")
    return fig


def _accuracy_panel(ax, imp: pd.DataFrame, task: str, color, marker: str, threshold: float,
                    split: pd.Series) -> None:
    """One task's panel of accuracy.png."""
    _band(ax, imp, "params", f"test_acc_{task}", task, color=color, logx=True, marker=marker)
    dense = imp.loc[imp["level"] == 0, f"test_acc_{task}"].median()
    ax.axhline(dense, color=color, ls=":", lw=1.2)
    ax.axhline(dense - threshold, color=color, ls="--", lw=1)
    for p in split:
        ax.axvline(p, color=palette.REFERENCE, lw=0.8, alpha=0.35, zorder=0)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))  # 100, 200, 500, …
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded labels
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set(xlabel="remaining prunable parameters\n(log scale, pruning →)",
           ylabel="test accuracy", title=task)
    ax.title.set_color(color)


def split_over_levels(analysis: pd.DataFrame):
    """split.png (docs/science.md §6): per IMP level the split metric and ‖A − I‖_F (median, IQR
    over seeds) and the fraction of seeds whose ticket is split (95% Wilson intervals). A
    one-task run (every split column NaN, `analysis.split_applicable` false) gets a single
    "not applicable" panel instead: a split needs T ≥ 2 tasks."""
    from pipeline.analysis import split_applicable, wilson

    if not split_applicable(analysis):
        fig, ax = plt.subplots(figsize=(9, 2.4), layout="constrained")
        ax.set_axis_off()
        ax.text(0.5, 0.62, "Split not applicable: one task (docs/science.md §6)", ha="center",
                va="center", transform=ax.transAxes, fontsize=13, fontweight="bold")
        ax.text(0.5, 0.3, "A split needs at least two tasks: the split metric and the split\n"
                "fractions are not defined, and ‖A − I‖_F of a 1×1 task matrix says nothing\n"
                "about a split.", ha="center", va="center", transform=ax.transAxes, fontsize=10)
        return fig
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained")
    _split_metric_panel(axes[0], analysis)
    _band(axes[1], analysis, "level", "task_distance", "‖A − I‖_F", color=palette.NEUTRALS[0],
          drawstyle="steps-mid")
    axes[1].set(xlabel="IMP level", ylabel=f"‖A − I‖_F ({BAND})",
                title="Task matrix distance to I")
    g = analysis.groupby("level")["split"]
    k, n = g.sum().astype(int), g.size()
    lo_hi = np.array([wilson(int(a), int(b)) for a, b in zip(k, n)]).reshape(-1, 2)
    frac = k / n
    axes[2].bar(frac.index, frac.values, color=palette.NEUTRALS[1],
                yerr=np.abs(lo_hi.T - frac.values), capsize=2, ecolor="black",
                error_kw={"lw": 0.8})
    axes[2].set(xlabel="IMP level", ylabel="fraction of seeds (95% Wilson interval)",
                ylim=(0, 1), title=f"Seeds whose ticket is split (n = {int(n.max())})")
    if k.sum() == 0:  # say so: all-zero bars look like an empty panel
        axes[2].text(0.5, 0.85, f"no seed split at any level (0/{int(n.max())});\n"
                     "whiskers: 95% Wilson upper bounds", ha="center", va="center",
                     transform=axes[2].transAxes, fontsize=10, color="0.2",
                     bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round"})
    for ax in axes:
        _integer_ticks(ax.xaxis)
    return fig


def _split_metric_panel(ax, analysis: pd.DataFrame) -> None:
    """The split metric per level as steps (it is defined at levels only: a line between two
    levels would cross "0 = split" where no level is split), levels whose median is exactly 0
    marked."""
    line = _band(ax, analysis, "level", "split_metric", "split metric",
                 color=palette.NEUTRALS[0], drawstyle="steps-mid")
    med = analysis.groupby("level")["split_metric"].median()
    zero = med[med == 0]
    ax.axhline(0, color=palette.REFERENCE, lw=0.8, ls=":")
    if len(zero):
        ax.plot(zero.index, zero.values, "D", ms=7, mfc="none", mec=palette.REFERENCE,
                label="median at 0: split")
    ax.set(xlabel="IMP level",
           ylabel=f"split metric ({BAND})\n0 = split; < 0: a pair is lost",
           title="Split metric")
    ax.legend(handles=[line] + ([ax.lines[-1]] if len(zero) else []), fontsize=8,
              loc="lower left")


def state_composition(analysis: pd.DataFrame):
    """Share of the unpruned parameters in each state (pruned ones would dwarf the rest)."""
    live = STATES[:-1]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    for ax, (kind, suffix) in zip(axes, (("weights", "_w"), ("biases", "_b"))):
        counts = analysis.groupby("level")[[f"{s}{suffix}" for s in live]].mean()
        share = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
        stacks = ax.stackplot(share.index, share.T.values, labels=live,
                              colors=[STATE_COLORS[s] for s in live], edgecolor="white", lw=0.5)
        for poly, state in zip(stacks, live):
            poly.set_hatch(palette.STATE_HATCHES[state])
        ax.set(xlabel="IMP level", ylabel=f"share of unpruned {kind}", ylim=(0, 1),
               xlim=(share.index.min(), share.index.max()),
               title=f"State of the unpruned {kind} (mean over seeds)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1].legend(loc="lower left", fontsize=8)
    return fig


# One layer naming in every figure and table (docs/criteria.md, "Layer numbering"): `layer` i is
# the i-th linear map counted from 0 — its weights, its biases and the neurons it feeds; figures
# add the node column it feeds, as the network drawings name the columns.
LAYER_NOTE = ("layer i = the i-th linear map from 0 (its weights, its biases and the neurons it "
              "feeds), as in every table")
NONE_OCCURRED = "none occurred"


def layer_name(layer: int, last: int | None = None, sep: str = " ") -> str:
    """Figure label of the tables' `layer` i: "layer 0 (→ hidden 1)", the last linear map
    (`last`) "(→ outputs)"; `sep` between the two parts."""
    return f"layer {layer}{sep}(→ {'outputs' if layer == last else f'hidden {layer + 1}'})"


def none_occurred(ax, what: str) -> None:
    """Say inside an empty panel that nothing of its kind occurred (an empty-looking panel reads
    as a failed figure)."""
    ax.text(0.5, 0.5, f"{NONE_OCCURRED}:\n{what}", ha="center", va="center",
            transform=ax.transAxes, fontsize=10, color="0.2",
            bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round"})


def neuron_classes(layers: pd.DataFrame):
    """neurons.png: zombie, comatose and frozen-zombie neuron counts per layer (of hidden
    neurons) and IMP level (analysis/layers.csv rows of kind "neuron"; median, IQR over seeds);
    a class that never occurs says so in its panel."""
    neurons = layers[layers["kind"] == "neuron"]
    classes = ["zombie", "comatose", "frozen_zombie"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharey=True, layout="constrained")
    for ax, cls in zip(axes, classes):
        part = neurons[neurons["state"] == cls]
        for li, layer in enumerate(sorted(part["layer"].unique())):
            color, ls, _ = palette.neutral(li)
            _band(ax, part[part["layer"] == layer], "level", "count", layer_name(int(layer)),
                  color=color, ls=ls)
        name = cls.replace("_", " ")
        ax.set(xlabel="IMP level", ylabel=f"neurons ({BAND})", title=f"{name} neurons")
        _integer_ticks(ax.xaxis)
        if not part["count"].gt(0).any():
            none_occurred(ax, f"no {name} neuron at any level,\nin any layer or seed")
        if ax.get_lines():
            ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Zombie and comatose neurons per layer ({LAYER_NOTE})", fontsize=10)
    return fig


def lifetimes_figure(life: pd.DataFrame):
    """lifetimes.png: levels each layer's weights and biases stay alive (analysis/lifetimes.csv)."""
    alive = life[(life["state"] == "alive") & (life["params"] > 0)].copy()
    last = int(life["layer"].max()) if len(life) else None
    alive["group"] = alive["kind"].map({"weight": "weights", "bias": "biases"}) + "\n" \
        + alive["layer"].map(lambda i: layer_name(int(i), last, "\n"))  # short lines: no overlap
    fig, ax = plt.subplots(figsize=(max(8.0, 1.3 * alive["group"].nunique()), 4.8),
                           layout="constrained")
    sns.barplot(alive, x="group", y="mean_levels", ax=ax, errorbar="sd",
                color=STATE_COLORS["alive"])
    ax.set(xlabel=LAYER_NOTE, ylabel="levels alive (mean over parameters, ±sd over seeds)",
           title="How long parameters stay alive")
    ax.xaxis.label.set_fontsize(8)
    return fig


def comatose_events_figure(events: pd.DataFrame):
    """comatose_events.png: comatose neurons of all seeds per hidden layer (analysis/events.csv),
    split by whether the bias was pruned before the neuron was detached; the legend sits below
    the axes, clear of the bars. A note where the run has none."""
    fig, ax = plt.subplots(figsize=(7, 4.6), layout="constrained")
    if events.empty:
        none_occurred(ax, "no comatose neuron in this run")
        ax.set(xticks=[], yticks=[])
    else:
        ev = events.copy()
        ev["order"] = np.where(ev["bias_pruned_before_detached"].astype(bool),
                               "bias pruned before detachment", "bias pruned at/after detachment")
        sns.countplot(ev, x="layer", hue="order", ax=ax, palette=list(palette.NEUTRALS[:2]),
                      hue_order=["bias pruned before detachment",
                                 "bias pruned at/after detachment"])
        ax.set_xticks(ax.get_xticks())
        ax.set_xticklabels([layer_name(int(t.get_text())) for t in ax.get_xticklabels()])
        ax.set_xlabel(LAYER_NOTE, fontsize=8)
        # below the axes, clear of the bars and the tick labels
        sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, title=None,
                        fontsize=9, frameon=False)
    ax.set(ylabel="comatose neurons (all seeds)",
           title="Comatose neurons:\nis the bias pruned before the neuron is detached?")
    return fig


def validation_curves(curves: pd.DataFrame, seed: int):
    part = curves[curves["seed"] == seed]
    fig, ax = plt.subplots(figsize=(8, 5))
    levels = sorted(part["level"].unique())
    # greys, light (dense) to dark (last level): the level is no task
    cmap = matplotlib.colors.ListedColormap(
        plt.get_cmap("Greys")(np.linspace(0.3, 1.0, max(len(levels), 2))))
    for i, level in enumerate(levels):
        c = part[part["level"] == level]
        ax.plot(c["epoch"], c["val_loss"], color=cmap(i), lw=1)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(min(levels), max(levels)))
    bar = fig.colorbar(sm, ax=ax, label="IMP level")
    bar.locator = matplotlib.ticker.MaxNLocator(integer=True)
    bar.update_ticks()
    ax.set(xlabel="epoch", ylabel="validation loss (sum over tasks)", yscale="log",
           title=f"Validation loss per level (seed {seed})")
    return fig


def task_matrices(tm: pd.DataFrame, seed: int, levels: list[tuple[str, int]]):
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 3.8),
                             layout="constrained")  # the suptitle clear of the panel titles
    axes = np.atleast_1d(axes)
    for ax, (name, level) in zip(axes, levels):
        part = tm[(tm["seed"] == seed) & (tm["level"] == level)]
        mat = part.pivot(index="from_task", columns="to_task", values="value")
        order = list(dict.fromkeys(part["from_task"]))
        mat = mat.loc[order, order]
        sns.heatmap(mat, vmin=0, vmax=1, annot=True, fmt=".2f", cmap="Greys", ax=ax, cbar=False,
                    square=True)
        ax.set(title=f"{name} (level {level})", xlabel="to task (outputs)",
               ylabel="from task (inputs)")
    fig.suptitle(f"Task matrix A, seed {seed}: fraction of input→output pairs connected")
    return fig


# ---- split criteria (docs/science.md §6) -------------------------------------------------------------
CRITERIA = ("complete", "effective", "output", "functional")
CRITERION_COLORS = dict(zip(CRITERIA, palette.NEUTRALS))  # not task colours: greys and hatches
CRITERION_HATCHES = dict(zip(CRITERIA, palette.HATCHES))


def _flags(col: pd.Series) -> pd.Series:
    return col.map(lambda v: v is True or v == 1 or v == "True")


def split_criteria_over_levels(analysis: pd.DataFrame):
    """Per level, the fraction of seeds split by each criterion (complete, effective, output,
    functional) with 95% Wilson intervals. None where the run has one task (not applicable)."""
    from pipeline.analysis import CRITERIA, wilson

    cols = [c for c in CRITERIA if f"split_{c}" in analysis]
    if not cols or analysis[f"split_{cols[0]}"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(9, 4.8))
    levels = sorted(analysis["level"].unique())
    width = 0.8 / len(cols)
    n_max = 0
    for j, c in enumerate(cols):
        part = analysis.dropna(subset=[f"split_{c}"])
        g = _flags(part[f"split_{c}"]).groupby(part["level"])
        k, n = g.sum().reindex(levels, fill_value=0), g.size().reindex(levels, fill_value=0)
        n_max = max(n_max, int(n.max()) if len(n) else 0)
        ci = np.array([wilson(int(a), int(b)) for a, b in zip(k, n)]).reshape(-1, 2)
        frac = (k / n.where(n > 0)).to_numpy(dtype=float)
        x = np.array(levels) + (j - (len(cols) - 1) / 2) * width
        ax.bar(x, frac, width=width, color=CRITERION_COLORS[c], label=c, edgecolor="white",
               hatch=CRITERION_HATCHES[c],
               yerr=np.abs(ci.T - frac), capsize=1.5, ecolor="black", error_kw={"lw": 0.7})
    ax.set(xlabel="IMP level", ylabel="fraction of seeds split (95% Wilson interval)",
           ylim=(0, 1.02), title=f"Split criteria per level (n = {n_max} seeds)")
    ax.set_xticks(levels)
    ax.legend(title="criterion", loc="upper left", fontsize=8, title_fontsize=8)
    return fig


def leakage_over_levels(analysis: pd.DataFrame):
    """λ (path counts) and λ_w (|W|-products) per level: median and interquartile range over
    seeds, log scale. λ = 0 (a pure net) cannot be drawn on a log axis: the share of seeds at
    exactly 0 is given per level in the lower panel. None where not applicable."""
    if "leakage" not in analysis or analysis["leakage"].isna().all():
        return None
    fig, (ax, ax0) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    for col, label, color, ls in (("leakage", "λ (path counts)", palette.NEUTRALS[0], "-"),
                                  ("leakage_w", "λ_w (|W| products)", palette.NEUTRALS[1], "--")):
        g = analysis.groupby("level")[col]
        med, q1, q3 = g.median(), g.quantile(0.25), g.quantile(0.75)
        pos = med.where(med > 0)
        ax.plot(pos.index, pos.values, marker="o", ms=3, color=color, ls=ls,
                label=f"{label}, median")
        ax.fill_between(med.index, q1.where(q1 > 0, np.nan), q3.where(q3 > 0, np.nan),
                        color=color, alpha=0.2, label=f"{label}, IQR")
        zero = g.apply(lambda v: float((v.dropna() == 0).mean()) if v.notna().any() else np.nan)
        ax0.plot(zero.index, zero.values, marker="o", ms=3, color=color, ls=ls, label=label)
    ax.set_yscale("log")
    ax.set(ylabel="leakage (log scale)",
           title="Cross-task leakage per level (median, IQR over seeds; 0 = pure, not drawn)")
    ax.legend(fontsize=8, loc="lower left")
    ax0.set(xlabel="IMP level", ylabel="seeds at 0", ylim=(-0.05, 1.05))
    ax0.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return fig


def split_distance_over_levels(analysis: pd.DataFrame, random: pd.DataFrame | None = None,
                               base_level: int | None = None, base_params: int | None = None):
    """split_distance.png (docs/science.md §6): per IMP level the split distance d (weights that
    must go before no path joins two tasks; symmetric log scale, so d = 0, a split, sits on
    the axis) and d_w's share of the alive |w| mass (log scale; 0 not drawn), median and IQR
    over seeds, for IMP and, where the control ran (`random`: random_masks.csv), the random
    masks of the same per-layer sparsity. `base_level` marks the level at the base net's
    parameter count `base_params` (docs/science.md §3; level 0 without extensions). None where
    not applicable (one task) or not computed."""
    if "split_distance" not in analysis or analysis["split_distance"].isna().all():
        return None
    fig, (ax, ax_w) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    runs = [("IMP", analysis, palette.NEUTRALS[0])]  # not tasks: greys (pipeline.palette)
    if random is not None and "split_distance" in random and random["split_distance"].notna().any():
        runs.append(("random masks", random, palette.NEUTRALS[2]))
    for name, frame, color in runs:
        _band(ax, frame, "level", "split_distance", name, color=color)
        share = frame.assign(split_distance_w_share=frame["split_distance_w_share"].where(
            frame["split_distance_w_share"] > 0))
        if share["split_distance_w_share"].notna().any():
            _band(ax_w, share, "level", "split_distance_w_share", name, color=color)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.axhline(1, color="black", lw=0.6, ls=":")
    exact = bool(analysis["split_distance_exact"].dropna().astype(bool).all())
    ax.set(xlabel="IMP level", ylabel="d (weights; symlog, 0 = split)",
           title="Split distance d" + ("" if exact else " (T > 2: isolating-cut upper bound)"))
    ax_w.set_yscale("log")
    ax_w.set(xlabel="IMP level", ylabel="d_w / alive |w| mass (log; 0 not drawn)",
             title="Magnitude split distance: d_w's share of the alive |w|")
    for a in (ax, ax_w):
        if base_level is not None:
            a.axvline(base_level, color="black", lw=1, ls="--",
                      label=f"base count ({base_params} params)" if base_params else "base count")
        _integer_ticks(a.xaxis)
        a.legend(title=BAND, fontsize=8, title_fontsize=8, loc="best")
    fig.suptitle("How far is the ticket from a split? Minimum cut of the alive subgraph")
    return fig


IMAGE_KINDS = ("digits", "mnist", "fashion_mnist")


def coverage_maps(used: np.ndarray, levels: np.ndarray, task_of_input: np.ndarray,
                  tasks: list, seeds_table: pd.DataFrame, seeds: np.ndarray):
    """Per image task, which pixels the ticket still uses: the fraction of seeds whose input
    reaches an output of its own task, shown as an image, at the dense level, at each seed's
    first effective split (seeds that split) and at the last level.

    used [L, K, n_in] bool (reports/analysis/coverage.npz), task_of_input [n_in] task index,
    tasks the TaskInfo list (square images assumed: side √inputs). None without image tasks.
    """
    image = [j for j, t in enumerate(tasks) if t.kind in IMAGE_KINDS
             and round(math.sqrt(len(t.inputs))) ** 2 == len(t.inputs)]
    if not image:
        return None
    cols = [("dense", used[0])]
    first = {}
    if "first_split_level_effective" in seeds_table:
        first = {int(s): int(v) for s, v in zip(seeds_table["seed"],
                                               seeds_table["first_split_level_effective"])
                 if not pd.isna(v)}
    if first:
        rows = [used[int(np.searchsorted(levels, lv)), list(seeds).index(s)]
                for s, lv in first.items()]
        cols.append((f"first effective split ({len(first)}/{len(seeds)} seeds)",
                     np.stack(rows)))
    cols.append((f"last (level {int(levels[-1])})", used[-1]))
    fig, axes = plt.subplots(len(image), len(cols), figsize=(3.6 * len(cols), 3.4 * len(image)),
                             squeeze=False, layout="constrained")
    for r, j in enumerate(image):
        t = tasks[j]
        side = round(math.sqrt(len(t.inputs)))
        for c, (name, u) in enumerate(cols):
            frac = u[:, t.inputs].mean(axis=0).reshape(side, side)
            im = axes[r, c].imshow(frac, vmin=0, vmax=1, cmap=palette.task_colormap(j))
            axes[r, c].set(title=f"{t.name}: {name}\ncoverage {frac.mean():.2f}",
                           xticks=[], yticks=[])
        fig.colorbar(im, ax=axes[r, :], shrink=0.8, label=f"{t.name}: fraction of seeds\n"
                     "using the pixel")
    fig.suptitle("Coverage maps: pixels still reaching an output of their own task")
    return fig


def save(fig, path, dpi: int) -> None:
    """Write a figure atomically (pipeline.io; the format from path's suffix) and close it.
    Raises io.WriteError, naming path, when the write fails; the previous file stays."""
    try:
        io.write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=Path(path).suffix[1:]))
    finally:
        plt.close(fig)


def p_text(p) -> str:
    """A p-value in two significant digits, "–" where there is none (None or NaN)."""
    return fmt(p) if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.2g}"


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


# ---- study figures (aggregate stage) ----------------------------------------------------------
STUDY_AXIS_LABELS = {
    "extensions": "hidden width of the extended net (extensions)",
    "iterations": "levels T to the target (per-level rate p)",
    "tasks": "tasks side by side",
    "hidden": "hidden layers",
    "init": "weight initialisation",
    "noise": "data noise",
    "method": "pruning method (prune.method)",
    "weight_decay": "weight decay (train.weight_decay)",
    "bias_init": "bias initialisation (model.bias_init)",
    "n_samples": "samples per task (data.n_samples)",
}


def _axis_positions(summary: pd.DataFrame, axis: str) -> tuple[pd.Series, list, list[str]]:
    """x position of each configuration along a study axis, with tick positions and labels."""
    if axis == "extensions":
        ticks = summary.drop_duplicates("extensions").sort_values("extensions")
        return (summary["width"].astype(float), list(ticks["width"]),
                [f"{w}\n(k={k})" for w, k in zip(ticks["width"], ticks["extensions"])])
    if axis == "iterations":
        ticks = summary.drop_duplicates("iterations").sort_values("iterations")
        return (summary["iterations"].astype(float), list(ticks["iterations"]),
                [f"{t}\n(p={r:.3f})" for r, t in zip(ticks["rate"], ticks["iterations"])])
    if axis == "noise":
        values = sorted(summary["noise"].unique())
        return summary["noise"].astype(float), values, [f"{v:g}" for v in values]
    order = list(dict.fromkeys(summary[axis]))  # study order
    if axis == "tasks":  # by number of tasks, then study order
        first = {t: i for i, t in enumerate(order)}
        order = sorted(order, key=lambda t: (t.count("+"), first[t]))
    pos = {v: i for i, v in enumerate(order)}
    labels = [f"{v:g}" for v in order] if axis == "weight_decay" else order
    return summary[axis].map(pos).astype(float), list(range(len(order))), labels


def study_axis_figure(summary: pd.DataFrame, seeds: pd.DataFrame, axis: str, varied: list[str]):
    """Split probability (95% Wilson interval), parameters at the first split, and accuracy at the
    split vs dense, along one study axis; one line per combination of the other varied axes.
    Series and groups are greys told apart by marker and line style (palette.neutral): no
    colour of a study figure is a task's."""
    others = [a for a in varied if a != axis]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    x_all, ticks, labels = _axis_positions(summary, axis)
    summary = summary.assign(_x=x_all)
    seeds = seeds.merge(summary[["config", "_x"]], on="config")
    groups = summary.groupby(others, sort=False) if others else [((), summary)]
    for gi, (key, g) in enumerate(groups):
        g = g.sort_values("_x")
        key = key if isinstance(key, tuple) else (key,)
        glabel = ", ".join(f"{a}={v}" for a, v in zip(others, key))
        _study_split_panel(axes[0], g, axis, ticks, gi, glabel if others else None)
        sg = seeds[seeds["config"].isin(g["config"])]
        _study_params_panel(axes[1], g, sg, gi, glabel if others else None)
        _study_accuracy_panel(axes[2], g, gi, glabel if others else None)
    _study_axes(fig, axes, summary, axis, ticks, labels)
    return fig


def _study_series(g: pd.DataFrame, axis: str, single: bool) -> list[tuple[str, str]]:
    """(summary column stem, label) of the split fractions drawn for one group."""
    series = [("split", "split at any level")]
    if single:
        series.append(("split_before_degradation", "split before any task degraded"))
        if axis == "extensions":
            series.append(("split_at_base_params", "split at the base net's parameter count"))
        if "p_random_mask_split" in g:
            series.append(("random_mask_split", "random mask of equal sparsity (null)"))
    return series


def _study_split_panel(ax, g: pd.DataFrame, axis: str, ticks: list, gi: int,
                       glabel: str | None) -> None:
    """Split fractions with their Wilson intervals, series side by side (dodged) so the
    intervals stay readable."""
    single = glabel is None
    series = _study_series(g, axis, single)
    log_x = axis == "extensions"  # widths grow geometrically with k
    span = (max(ticks) - min(ticks)) if len(ticks) > 1 else 1.0
    for si, (name, label) in enumerate(series):
        color, ls, marker = palette.neutral(si if single else gi)
        p, lo, hi = g[f"p_{name}"], g[f"p_{name}_low"], g[f"p_{name}_high"]
        shift = si - (len(series) - 1) / 2
        x = g["_x"] * 1.025**shift if log_x else g["_x"] + shift * 0.012 * span
        ax.errorbar(x, p, yerr=[p - lo, hi - p], fmt=marker, ls=ls, color=color, capsize=3,
                    ms=5, label=label if single else glabel)


def _study_params_panel(ax, g: pd.DataFrame, sg: pd.DataFrame, gi: int,
                        glabel: str | None) -> None:
    """Parameters at the first split: each seed, and the median per configuration."""
    single = glabel is None
    color, ls, marker = palette.neutral(gi)
    ax.scatter(sg["_x"], sg["params_at_split"], s=14, alpha=0.5, color=color, marker=marker,
               label="each seed" if single else None)
    ax.plot(g["_x"], g["params_at_split"], marker=marker, ls=ls, color=color,
            label="median" if single else glabel)
    if single:
        color, ls, marker = palette.neutral(1)
        ax.plot(g["_x"], g["alive_weights_at_split"], marker=marker, ls=ls, color=color,
                label="median alive weights at split")


def _study_accuracy_panel(ax, g: pd.DataFrame, gi: int, glabel: str | None) -> None:
    """Mean test accuracy of the dense nets and of the tickets at the first split."""
    single = glabel is None
    color, _, marker = palette.neutral(gi)
    ax.plot(g["_x"], g["dense_test_acc"], marker=marker, ls="--", color=color,
            label="dense" if single else f"dense, {glabel}")
    at_split = palette.neutral(1)[0] if single else color
    ax.plot(g["_x"], g["test_acc_at_split"], marker="s" if single else marker, ls="-",
            color=at_split, label="ticket at first split" if single else f"at split, {glabel}")
    if single and "reinit_test_acc_at_split" in g:
        color, ls, marker = palette.neutral(2)
        ax.plot(g["_x"], g["reinit_test_acc_at_split"], marker="x", ls="-.", color=color,
                label="same mask, re-initialised")


def _study_axes(fig, axes, summary: pd.DataFrame, axis: str, ticks: list, labels: list) -> None:
    """Titles, labels, the study axis' ticks (log for widths, no lines between categories) and
    legends of study_axis_figure."""
    n = int(summary["seeds"].max())
    axes[0].set(ylim=(-0.03, 1.03), ylabel=f"fraction of seeds (n = {n}), 95% CI",
                title="Does the ticket split?")
    axes[1].set(ylabel="prunable parameters (median over split seeds)",
                title="Parameters left at the first split")
    if summary["params_at_split"].isna().all():  # say so instead of an empty panel
        axes[1].text(0.5, 0.5, "no seed split in any configuration", ha="center",
                     va="center", transform=axes[1].transAxes, fontsize=10, color="0.3")
    axes[2].set(ylabel="mean test accuracy over tasks", title="Accuracy: dense vs at split")
    categorical = axis in ("tasks", "hidden", "init", "method", "weight_decay", "bias_init")
    for ax in axes:
        if axis == "extensions":
            ax.set_xscale("log")
            ax.minorticks_off()
        if categorical:  # no lines between unordered categories
            for line in ax.lines:
                line.set_linestyle("none")
        ax.set_xticks(ticks, labels, fontsize=8, rotation=15 if categorical else 0)
        ax.set_xlabel(STUDY_AXIS_LABELS[axis])
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Study along {axis}", fontweight="bold")
    fig.tight_layout()


def study_overview(summary: pd.DataFrame):
    """Split probability of every configuration (95% Wilson interval), as horizontal bars."""
    height = max(2.5, 0.35 * len(summary) + 1.2)
    fig, ax = plt.subplots(figsize=(9, height))
    y = np.arange(len(summary))
    for off, name, label, color in ((-0.18, "split", "split at any level", palette.NEUTRALS[0]),
                                    (0.18, "split_before_degradation",
                                     "split before any task degraded", palette.NEUTRALS[2])):
        p = summary[f"p_{name}"]
        ax.barh(y + off, p, height=0.34, color=color, label=label,
                xerr=[p - summary[f"p_{name}_low"], summary[f"p_{name}_high"] - p],
                error_kw={"capsize": 2, "lw": 1})
    ax.set_yticks(y, summary["config"], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.02), xlabel=f"fraction of seeds (n = {int(summary['seeds'].max())}), 95% CI",
           title="Split probability per configuration")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def study_figures(summary: pd.DataFrame, seeds: pd.DataFrame):
    """(name, figure) pairs: the overview and one figure per study axis with several values."""
    from pipeline.config import STUDY_AXES

    yield "overview", study_overview(summary)
    varied = [a for a in STUDY_AXES if summary[a].nunique() > 1]
    for axis in varied:
        yield f"by_{axis}", study_axis_figure(summary, seeds, axis, varied)
