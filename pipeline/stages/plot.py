"""Stage `plot`: reports → reports/figures/*.png and reports/report.md."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline import config, io, plots
from pipeline.analysis import fraction_text
from pipeline.data import load as load_data
from pipeline.graph import analyze
from pipeline.imp import level_path
from pipeline.model import Layout, layers_from_state
from pipeline.stages import run

FIGURES = Path("reports/figures")


def drawing_levels(seeds: pd.DataFrame, seed: int, last: int) -> list[tuple[str, int]]:
    """Dense, first split (if the seed splits) and last level."""
    chosen = [("dense", 0)]
    row = seeds[seeds["seed"] == seed]
    if len(row) and not pd.isna(row["first_split_level"].iloc[0]):
        chosen.append(("first split", int(row["first_split_level"].iloc[0])))
    if last not in [lv for _, lv in chosen]:
        chosen.append(("last", last))
    return chosen


def draw_networks(tasks, seed: int, levels: list[tuple[str, int]], n_levels: int, dpi: int) -> None:
    input_task = [i for i, t in enumerate(tasks) for _ in t.inputs]
    output_task = [i for i, t in enumerate(tasks) for _ in t.outputs]

    drawn: dict[int, tuple] = {}  # level → what the drawing needs; each level is read once

    def panel(level: int, title: str, ax):
        if level not in drawn:
            state = torch.load(level_path(Path("models/imp"), level), weights_only=True)
            k = state["seeds"].tolist().index(seed)
            layout = Layout(layers_from_state(state))
            mask = layout.from_state(state, masks=True)[k:k + 1]
            theta = layout.from_state(state)[k:k + 1]
            res = analyze(layout, mask, theta, tasks)
            drawn[level] = (list(layout.layers), [w[0].numpy() for w, _ in layout.views(theta)],
                            [st[0].numpy() for st, _ in layout.views(res.state)])
        plots.network_drawing(*drawn[level], input_task, output_task, title, ax=ax)

    fig, axes = plots.plt.subplots(1, len(levels), figsize=(6 * len(levels), 5.5))
    for ax, (name, level) in zip(axes if len(levels) > 1 else [axes], levels):
        panel(level, f"{name} (level {level})", ax)
    fig.suptitle(f"Network of seed {seed}: unpruned weights, width ∝ |w|, colour = state; "
                 "inputs/outputs coloured by task")
    plots.state_legend(fig)
    plots.save(fig, FIGURES / "network.png", dpi)

    cols = 5
    rows = math.ceil(n_levels / cols)
    fig, axes = plots.plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows))
    for i, ax in enumerate(axes.reshape(-1)):
        if i < n_levels:
            panel(i, f"level {i}", ax)
        else:
            ax.axis("off")
    fig.suptitle(f"Every IMP level of seed {seed}")
    plots.state_legend(fig)
    plots.save(fig, FIGURES / "network_levels.png", dpi)


def report(params: config.Params, metrics: dict, seeds: pd.DataFrame, tasks,
           figures: list[str]) -> str:
    s, d = metrics["split"], metrics["degradation"]
    tr = params.trajectory()
    lines = [
        "# ticketsplit report", "",
        f"Tasks **{', '.join(t.name for t in tasks)}**; shape {tr.layers} "
        f"(base {tr.base_layers}, {tr.extensions} extensions); init {params.model.init} "
        f"(bias {params.model.bias_init}); {params.train.optimizer} lr {params.train.lr}, "
        f"{'full batch' if params.train.batch_size is None else f'batch {params.train.batch_size}'}; "
        f"{len(tr.params) - 1} levels from {tr.params[0]} to {tr.params[-1]} prunable parameters "
        f"(biases {'' if params.prune.biases else 'not '}prunable); {metrics['seeds']} seeds.", "",
        "## Does the ticket split?", "",
        f"- Seeds split: **{fraction_text(s['seeds_split'], metrics['seeds'])}**; before any "
        f"task degraded by more than {d['threshold']:.0%}: "
        f"**{fraction_text(s['seeds_split_before_degradation'], metrics['seeds'])}**.",
        f"- First split level: median {plots.fmt(s['first_split_level']['median'], 1)} "
        f"(min {plots.fmt(s['first_split_level']['min'], 0)}, "
        f"max {plots.fmt(s['first_split_level']['max'], 0)}); parameters at the split: median "
        f"{plots.fmt(s['params_at_split']['median'], 0)}, alive "
        f"{plots.fmt(s['alive_at_split']['median'], 0)}.",
        f"- First degradation level: median "
        f"{plots.fmt(d['first_degradation_level']['median'], 1)} "
        f"({d['seeds_degraded']} seeds degrade within the run).",
        *random_mask_lines(metrics), "",
        "| task | dense test acc | test acc at first split |",
        "|---|---|---|",
    ]
    for t in tasks:
        lines.append(f"| {t.name} | {plots.fmt(metrics['dense_test_acc'][t.name])} | "
                     f"{plots.fmt(metrics['test_acc_at_split'][t.name])} |")
    lines += ["", "## Per seed", "", "| seed | first split level | params at split | alive at split "
              "| degradation level | split before degradation |", "|---|---|---|---|---|---|"]
    counts = ("seed", "first_split_level", "params_at_split", "alive_at_split",
              "degradation_level")
    for _, r in seeds.iterrows():
        cells = [plots.fmt(None if pd.isna(r[c]) else r[c], 0) for c in counts]
        cells.append(str(bool(r["split_before_degradation"])))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Figures", ""]
    lines += [f"![{f}](figures/{f})" for f in figures]
    return "\n".join(lines) + "\n"


def random_mask_lines(metrics: dict) -> list[str]:
    """The null model, where prune.random_mask_control ran: chance splits and Fisher's test."""
    r = metrics.get("random_mask")
    if r is None:
        return []
    return [f"- Random masks of the same per-layer sparsity split (at some level) in "
            f"**{fraction_text(r['seeds_split'], metrics['seeds'])}** of the seeds; IMP vs "
            f"random masks, Fisher's exact test: p = {r['fisher_p_imp_vs_random']:.3g}."]


def curve_table(curves: pd.DataFrame, seed: int, points: int = 120) -> pd.DataFrame:
    """The drawn seed's loss curves at about `points` log-spaced epochs per level: the small
    git-tracked file behind the `dvc plots` view of validation curves coloured by level."""
    c = curves[curves["seed"] == seed]
    keep = []
    for _, g in c.groupby("level", sort=True):
        n = len(g)
        idx = np.unique(np.round(np.geomspace(1, n, min(points, n))).astype(int) - 1)
        keep.append(g.iloc[idx])
    out = pd.concat(keep, ignore_index=True)[["level", "epoch", "train_loss", "val_loss"]]
    return out


def main() -> None:
    params = config.load()
    tasks, _ = load_data("data")
    names = [t.name for t in tasks]
    imp = pd.read_csv("reports/imp/levels.csv")
    curves = pd.read_csv("reports/imp/curves.csv")
    analysis = pd.read_csv("reports/analysis/levels.csv")
    layers = pd.read_csv("reports/analysis/layers.csv")
    seeds = pd.read_csv("reports/analysis/seeds.csv")
    life = pd.read_csv("reports/analysis/lifetimes.csv")
    events = pd.read_csv("reports/analysis/events.csv")
    tm = pd.read_csv("reports/analysis/task_matrix.csv")
    metrics = json.loads(Path("reports/metrics.json").read_text())
    seed, dpi = params.plot.draw_seed, params.plot.dpi
    last = int(imp["level"].max())
    chosen = drawing_levels(seeds, seed, last)

    plots.style()
    FIGURES.mkdir(parents=True, exist_ok=True)
    figs = {
        "accuracy.png": plots.accuracy_vs_params(imp, seeds, names,
                                                 params.analysis.degradation_threshold),
        "split.png": plots.split_over_levels(analysis),
        "states.png": plots.state_composition(analysis),
        "neurons.png": plots.neuron_classes(layers),
        "lifetimes.png": plots.lifetimes_figure(life),
        "comatose_events.png": plots.comatose_events_figure(events),
        "val_curves.png": plots.validation_curves(curves, seed),
        "task_matrix.png": plots.task_matrices(tm, seed, chosen),
    }
    for name, fig in figs.items():
        plots.save(fig, FIGURES / name, dpi)
    draw_networks(tasks, seed, chosen, last + 1, dpi)
    names_out = [*figs, "network.png", "network_levels.png"]
    io.write_csv("reports/plots/curves.csv", curve_table(curves, seed))
    io.write_text("reports/report.md", report(params, metrics, seeds, tasks, names_out))
    print(f"plot: {len(names_out)} figures in {FIGURES}, report in reports/report.md")


if __name__ == "__main__":
    run(main)
