"""Figures of a run: one function per figure, each reading the stage reports (pandas frames).

Every figure shows the mean over seeds with a ±1 standard deviation band where there are several
seeds, uses the colour-blind-safe seaborn palette and is titled and labelled with units.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from pipeline.graph import STATES  # noqa: E402

STATE_COLORS = dict(zip(STATES, sns.color_palette("colorblind", 5)))
STATE_COLORS["pruned"] = (0.85, 0.85, 0.85)


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.autolayout": False, "axes.titleweight": "bold",
                         "savefig.bbox": "tight"})


def _band(ax, frame: pd.DataFrame, x: str, y: str, label: str, color=None, logx=False):
    g = frame.groupby(x)[y]
    mean, std = g.mean(), g.std().fillna(0)
    line, = ax.plot(mean.index, mean.values, marker="o", ms=3, label=label, color=color)
    if frame["seed"].nunique() > 1:
        ax.fill_between(mean.index, mean - std, mean + std, alpha=0.2, color=line.get_color())
    if logx:
        ax.set_xscale("log")
    return line


def accuracy_vs_params(imp: pd.DataFrame, seeds: pd.DataFrame, tasks: list[str], threshold: float):
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, t in enumerate(tasks):
        color = sns.color_palette("colorblind")[i % 10]
        _band(ax, imp, "params", f"test_acc_{t}", t, color=color, logx=True)
        dense = imp.loc[imp["level"] == 0, f"test_acc_{t}"].mean()
        ax.axhline(dense, color=color, ls=":", lw=1)
        ax.axhline(dense - threshold, color=color, ls="--", lw=0.8, alpha=0.6)
    split = seeds["params_at_split"].dropna()
    for j, p in enumerate(split):
        ax.axvline(p, color="black", lw=1, alpha=0.5, label="first split (per seed)" if j == 0 else None)
    ax.invert_xaxis()
    ax.set(xlabel="remaining prunable parameters (log scale, pruning →)", ylabel="test accuracy",
           title="Accuracy per task while pruning")
    ax.legend(title="task (dotted: dense, dashed: degradation bound)", fontsize=8,
              title_fontsize=8, loc="lower left")
    return fig


def split_over_levels(analysis: pd.DataFrame):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    _band(axes[0], analysis, "level", "split_metric", "split metric")
    axes[0].axhline(0, color="black", lw=1)
    axes[0].set(xlabel="IMP level", ylabel="split metric (0 = split; < 0: a pair is lost)",
                title="Split metric")
    _band(axes[1], analysis, "level", "task_distance", "‖A − I‖_F")
    axes[1].set(xlabel="IMP level", ylabel="‖A − I‖_F", title="Task matrix distance to I")
    from pipeline.analysis import wilson
    g = analysis.groupby("level")["split"]
    k, n = g.sum().astype(int), g.size()
    lo_hi = np.array([wilson(int(a), int(b)) for a, b in zip(k, n)]).reshape(-1, 2)
    frac = k / n
    axes[2].bar(frac.index, frac.values, color=sns.color_palette("colorblind")[2],
                yerr=np.abs(lo_hi.T - frac.values), capsize=2, ecolor="black",
                error_kw={"lw": 0.8})
    axes[2].set(xlabel="IMP level", ylabel="fraction of seeds (95% Wilson interval)",
                ylim=(0, 1), title=f"Seeds whose ticket is split (n = {int(n.max())})")
    return fig


def state_composition(analysis: pd.DataFrame):
    """Share of the unpruned parameters in each state (pruned ones would dwarf the rest)."""
    live = STATES[:-1]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    for ax, (kind, suffix) in zip(axes, (("weights", "_w"), ("biases", "_b"))):
        counts = analysis.groupby("level")[[f"{s}{suffix}" for s in live]].mean()
        share = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
        ax.stackplot(share.index, share.T.values, labels=live,
                     colors=[STATE_COLORS[s] for s in live])
        ax.set(xlabel="IMP level", ylabel=f"share of unpruned {kind}", ylim=(0, 1),
               xlim=(share.index.min(), share.index.max()),
               title=f"State of the unpruned {kind} (mean over seeds)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1].legend(loc="lower left", fontsize=8)
    return fig


def neuron_classes(layers: pd.DataFrame):
    neurons = layers[layers["kind"] == "neuron"]
    classes = ["zombie", "comatose", "frozen_zombie"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for ax, cls in zip(axes, classes):
        part = neurons[neurons["state"] == cls]
        for layer in sorted(part["layer"].unique()):
            _band(ax, part[part["layer"] == layer], "level", "count", f"hidden layer {layer + 1}")
        ax.set(xlabel="IMP level", ylabel="neurons (mean over seeds)", title=f"{cls} neurons")
        ax.legend(fontsize=8)
    return fig


def lifetimes_figure(life: pd.DataFrame):
    alive = life[(life["state"] == "alive") & (life["params"] > 0)].copy()
    alive["group"] = alive["kind"].map({"weight": "weights", "bias": "biases"}) \
        + " of layer " + alive["layer"].astype(str)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.barplot(alive, x="group", y="mean_levels", ax=ax, errorbar="sd",
                color=STATE_COLORS["alive"])
    ax.set(xlabel="", ylabel="levels alive (mean over parameters, ±sd over seeds)",
           title="How long parameters stay alive")
    ax.tick_params(axis="x", rotation=30)
    return fig


def comatose_events_figure(events: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if events.empty:
        ax.text(0.5, 0.5, "no comatose neurons in this run", ha="center", va="center",
                transform=ax.transAxes)
    else:
        ev = events.copy()
        ev["order"] = np.where(ev["bias_pruned_before_detached"].astype(bool),
                               "bias pruned before detachment", "bias pruned at/after detachment")
        sns.countplot(ev, x="layer", hue="order", ax=ax, palette="colorblind")
        ax.set_xticks(ax.get_xticks())
        ax.set_xticklabels([f"hidden layer {int(t.get_text()) + 1}" for t in ax.get_xticklabels()])
    ax.set(xlabel="", ylabel="comatose neurons (all seeds)",
           title="Comatose neurons: is the bias pruned before the neuron is detached?")
    return fig


def validation_curves(curves: pd.DataFrame, seed: int):
    part = curves[curves["seed"] == seed]
    fig, ax = plt.subplots(figsize=(8, 5))
    levels = sorted(part["level"].unique())
    cmap = plt.get_cmap("viridis", max(len(levels), 2))
    for i, level in enumerate(levels):
        c = part[part["level"] == level]
        ax.plot(c["epoch"], c["val_loss"], color=cmap(i), lw=1)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(min(levels), max(levels)))
    fig.colorbar(sm, ax=ax, label="IMP level")
    ax.set(xlabel="epoch", ylabel="validation loss (sum over tasks)", yscale="log",
           title=f"Validation loss per level (seed {seed})")
    return fig


def task_matrices(tm: pd.DataFrame, seed: int, levels: list[tuple[str, int]]):
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 3.8))
    axes = np.atleast_1d(axes)
    for ax, (name, level) in zip(axes, levels):
        part = tm[(tm["seed"] == seed) & (tm["level"] == level)]
        mat = part.pivot(index="from_task", columns="to_task", values="value")
        order = list(dict.fromkeys(part["from_task"]))
        mat = mat.loc[order, order]
        sns.heatmap(mat, vmin=0, vmax=1, annot=True, fmt=".2f", cmap="mako", ax=ax, cbar=False,
                    square=True)
        ax.set(title=f"{name} (level {level})", xlabel="to task (outputs)",
               ylabel="from task (inputs)")
    fig.suptitle(f"Task matrix A, seed {seed}: fraction of input→output pairs connected")
    return fig


def network_drawing(layers: list[int], weights: list[np.ndarray], wstates: list[np.ndarray],
                    input_task: list[int], output_task: list[int], title: str, ax=None):
    """Every unpruned weight as a line between neuron positions, width ∝ |w|, colour = state.

    Returns the axes; the number of drawn edges equals the number of unpruned weights.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 6))
    input_label = "inputs"
    if layers[0] > MAX_DRAWN_INPUTS:  # hundreds of pixels: one node per task's inputs
        layers, weights, wstates, input_task = _inputs_per_task(layers, weights, wstates,
                                                                input_task)
        input_label = "inputs (per task)"
    pos = []
    for l, n in enumerate(layers):
        ys = np.linspace(0, 1, n) if n > 1 else np.array([0.5])
        pos.append(np.stack([np.full(n, float(l)), ys], axis=1))
    biggest = max((np.abs(w).max() for w in weights if w.size), default=1.0) or 1.0
    fade = 1.0 if max(layers) <= 300 else 0.4  # dense drawings of huge layers get translucent
    segments, colors, widths = [], [], []
    for i, (w, st) in enumerate(zip(weights, wstates)):
        v, u = np.nonzero(st != STATES.index("pruned"))
        for a, b in zip(u, v):
            segments.append([pos[i][a], pos[i + 1][b]])
        colors += [(*STATE_COLORS[STATES[s]], fade) for s in st[v, u]]
        widths += list(0.3 + 3.0 * np.abs(w[v, u]) / biggest)
    ax.add_collection(LineCollection(segments, colors=colors, linewidths=widths, zorder=1))
    task_colors = sns.color_palette("Set2", max(max(input_task + output_task) + 1, 1))
    for l, p in enumerate(pos):
        if l == 0:
            c = [task_colors[t] for t in input_task]
        elif l == len(pos) - 1:
            c = [task_colors[t] for t in output_task]
        else:
            c = "white"
        ax.scatter(p[:, 0], p[:, 1], s=max(4, 60 - max(layers) // 4), c=c, edgecolors="black",
                   linewidths=0.5, zorder=2)
    ax.set_xlim(-0.2, len(layers) - 0.8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(range(len(layers)), [input_label] + [f"hidden {i}" for i in range(1, len(layers) - 1)]
                  + ["outputs"])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title(title)
    ax.n_edges = len(segments)  # for the tests: one line per unpruned weight
    return ax


MAX_DRAWN_INPUTS = 64


def _inputs_per_task(layers, weights, wstates, input_task):
    """The first layer with one input node per task: an edge from task t to neuron j stands for
    all unpruned weights from t's inputs to j, its |w| their summed magnitude and its state the
    most alive of theirs (so a drawn edge exists iff some such weight is unpruned)."""
    tasks = sorted(set(input_task))
    owner = np.array(input_task)
    pruned = STATES.index("pruned")
    w, st = weights[0], wstates[0]
    agg_w = np.zeros((w.shape[0], len(tasks)), dtype=w.dtype)
    agg_s = np.full((w.shape[0], len(tasks)), pruned, dtype=st.dtype)
    for j, t in enumerate(tasks):
        cols = owner == t
        live = st[:, cols] != pruned
        agg_w[:, j] = np.where(live, np.abs(w[:, cols]), 0).sum(axis=1)
        agg_s[:, j] = np.where(live, st[:, cols], pruned).min(axis=1)
    return [len(tasks), *layers[1:]], [agg_w, *weights[1:]], [agg_s, *wstates[1:]], tasks


def state_legend(fig) -> None:
    handles = [plt.Line2D([], [], color=STATE_COLORS[s], lw=3, label=s) for s in STATES[:-1]]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, frameon=False)


def save(fig, path, dpi: int) -> None:
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


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
    return summary[axis].map(pos).astype(float), list(range(len(order))), order


def study_axis_figure(summary: pd.DataFrame, seeds: pd.DataFrame, axis: str, varied: list[str]):
    """Split probability (95% Wilson interval), parameters at the first split, and accuracy at the
    split vs dense, along one study axis; one line per combination of the other varied axes."""
    others = [a for a in varied if a != axis]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    x_all, ticks, labels = _axis_positions(summary, axis)
    summary = summary.assign(_x=x_all)
    log_x = axis == "extensions"  # widths grow geometrically with k
    span = (max(ticks) - min(ticks)) if len(ticks) > 1 else 1.0
    dodge = 0.012 * span
    seeds = seeds.merge(summary[["config", "_x"]], on="config")
    groups = summary.groupby(others, sort=False) if others else [((), summary)]
    palette = sns.color_palette("colorblind", 10)
    single = not others
    for gi, (key, g) in enumerate(groups):
        g = g.sort_values("_x")
        key = key if isinstance(key, tuple) else (key,)
        glabel = ", ".join(f"{a}={v}" for a, v in zip(others, key))
        series = [("split", "split at any level", "o-")]
        if single:
            series.append(("split_before_degradation", "split before any task degraded", "s--"))
            if axis == "extensions":
                series.append(("split_at_base_params", "split at the base net's parameter count",
                               "^:"))
            if "p_random_mask_split" in g:
                series.append(("random_mask_split", "random mask of equal sparsity (null)", "x-."))
        for si, (name, label, style_) in enumerate(series):
            color = palette[si if single else gi % 10]
            p, lo, hi = g[f"p_{name}"], g[f"p_{name}_low"], g[f"p_{name}_high"]
            shift = si - (len(series) - 1) / 2  # side by side, so the intervals stay readable
            x = g["_x"] * 1.025**shift if log_x else g["_x"] + shift * dodge
            axes[0].errorbar(x, p, yerr=[p - lo, hi - p], fmt=style_, color=color,
                             capsize=3, ms=5, label=label if single else glabel)
        sg = seeds[seeds["config"].isin(g["config"])]
        color = palette[gi % 10]  # the group's colour; palette[0] when only one group
        axes[1].scatter(sg["_x"], sg["params_at_split"], s=14, alpha=0.5, color=color,
                        label="each seed" if single else None)
        axes[1].plot(g["_x"], g["params_at_split"], "o-", color=color,
                     label="median" if single else glabel)
        if single:
            axes[1].plot(g["_x"], g["alive_weights_at_split"], "s--", color=palette[1],
                         label="median alive weights at split")
        axes[2].plot(g["_x"], g["dense_test_acc"], "o--", color=color,
                     label="dense" if single else f"dense, {glabel}")
        axes[2].plot(g["_x"], g["test_acc_at_split"], "s-",
                     color=palette[1] if single else color,
                     label="ticket at first split" if single else f"at split, {glabel}")
        if single and "reinit_test_acc_at_split" in g:
            axes[2].plot(g["_x"], g["reinit_test_acc_at_split"], "x-.", color=palette[3],
                         label="same mask, re-initialised")
    n = int(summary["seeds"].max())
    axes[0].set(ylim=(-0.03, 1.03), ylabel=f"fraction of seeds (n = {n}), 95% CI",
                title="Does the ticket split?")
    axes[1].set(ylabel="prunable parameters (median over split seeds)",
                title="Parameters left at the first split")
    if summary["params_at_split"].isna().all():  # say so instead of an empty panel
        axes[1].text(0.5, 0.5, "no seed split in any configuration", ha="center",
                     va="center", transform=axes[1].transAxes, fontsize=10, color="0.3")
    axes[2].set(ylabel="mean test accuracy over tasks", title="Accuracy: dense vs at split")
    categorical = axis in ("tasks", "hidden", "init")
    for ax in axes:
        if log_x:
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
    return fig


def study_overview(summary: pd.DataFrame):
    """Split probability of every configuration (95% Wilson interval), as horizontal bars."""
    height = max(2.5, 0.35 * len(summary) + 1.2)
    fig, ax = plt.subplots(figsize=(9, height))
    y = np.arange(len(summary))
    palette = sns.color_palette("colorblind", 3)
    for off, name, label, color in ((-0.18, "split", "split at any level", palette[0]),
                                    (0.18, "split_before_degradation",
                                     "split before any task degraded", palette[1])):
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
