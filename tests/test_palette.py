"""One palette: a task has one colour in every figure, cross-task is never a task's colour, the
colours stay apart for colour-blind readers, figures without tasks use no task colour; and the
figure faults of issue 24 (lone panels, an empty-looking split panel, a split-metric line that
crosses 0 between levels, a legend over the reference lines) stay fixed."""
from __future__ import annotations

import itertools

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from test_plots import MOONS_CIRCLES, checkpoint, run_tables, split_masks

from pipeline import drawing, palette, plots
from pipeline.data import TaskInfo

OKABE_ITO = {"#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
             "#CC79A7"}
# Machado, Oliveira & Fernandes (2009) full-severity simulation matrices (linear RGB)
CVD = {"protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                      [-0.003882, -0.048116, 1.051998]],
       "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                        [-0.011820, 0.042940, 0.968881]],
       "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                      [0.004733, 0.691367, 0.303900]]}
THREE = [TaskInfo("moons_0", "moons", [0, 1], [0], 2, "bce"),
         TaskInfo("circles_1", "circles", [2, 3], [1], 2, "bce"),
         TaskInfo("moons_2", "moons", [4, 5], [2], 2, "bce")]


def simulate(color, matrix) -> np.ndarray:
    c = np.array(mcolors.to_rgb(color))
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    out = np.clip(np.array(matrix) @ lin, 0, 1)
    return np.where(out <= 0.0031308, 12.92 * out, 1.055 * out ** (1 / 2.4) - 0.055)


def is_task_colour(rgb) -> bool:
    """Near one of the task colours or the cross-task colour (not a grey)."""
    marks = [*palette.TASK_COLORS, palette.CROSS_TASK]
    return any(np.abs(np.array(rgb[:3]) - np.array(mcolors.to_rgb(m))).max() < 0.03 for m in marks)


def figure_colours(fig) -> list[tuple]:
    """Every RGB a figure's lines, patches and collections are drawn with."""
    out = []
    for ax in fig.axes:
        out += [mcolors.to_rgb(ln.get_color()) for ln in ax.get_lines()]
        out += [p.get_facecolor()[:3] for p in ax.patches]
        for c in ax.collections:
            out += [tuple(f[:3]) for f in c.get_facecolors()]
            out += [tuple(e[:3]) for e in c.get_edgecolors()]
    return out


def test_task_colours_are_okabe_ito_and_cross_task_is_reserved():
    assert set(palette.TASK_COLORS) <= OKABE_ITO and palette.CROSS_TASK in OKABE_ITO
    assert len(set(palette.task_colors(6))) == 6
    assert palette.CROSS_TASK not in palette.task_colors(24)  # never a task's, however many
    assert drawing.CROSS_COLOR == palette.CROSS_TASK
    assert [drawing.task_color(t) for t in range(8)] == palette.task_colors(8)


@pytest.mark.parametrize("kind", CVD)
def test_colours_stay_apart_for_colour_blind_readers(kind):
    """Under a full-severity simulated colour-vision deficiency every two task colours, and every
    task colour and the cross-task colour, still differ clearly (sRGB distance ≥ 0.1; the task
    colours of a two-task run vs cross-task ≥ 0.25)."""
    marks = [*palette.TASK_COLORS, palette.CROSS_TASK]
    sim = {c: simulate(c, CVD[kind]) for c in marks}
    for a, b in itertools.combinations(marks, 2):
        assert np.linalg.norm(sim[a] - sim[b]) >= 0.1, (kind, a, b)
    for t in palette.task_colors(2):
        assert np.linalg.norm(sim[t] - sim[palette.CROSS_TASK]) >= 0.25, (kind, t)


def test_a_task_has_one_colour_in_accuracy_drawing_and_coverage_map():
    """Task t is palette.task_color(t) in accuracy.png (its panel's line and reference lines),
    in the network drawing (its inputs, outputs and alive weights) and in its coverage map."""
    _, imp, _, seeds = run_tables(n_seeds=3, n_levels=4)
    imp["test_acc_moons_2"] = imp["test_acc_moons_0"]
    plots.style()
    fig = plots.accuracy_vs_params(imp, seeds, [t.name for t in THREE], 0.05)
    for t, ax in enumerate(fig.axes[:3]):
        task_lines = {mcolors.to_hex(ln.get_color()) for ln in ax.get_lines()
                      if is_task_colour(mcolors.to_rgb(ln.get_color()))}
        assert task_lines == {mcolors.to_hex(palette.task_color(t))}
    plots.plt.close(fig)

    layers = [6, 6, 3]
    owner = [np.repeat([0, 1, 2], 2), np.repeat([0, 1, 2], 2), np.arange(3)]
    view = drawing.net_view(checkpoint(split_masks(layers, owner)), 0, THREE)
    fig, ax = plots.plt.subplots()
    drawing.draw(view, THREE, drawing.neuron_order(view), ax)
    edge_colours = {mcolors.to_hex(c[:3]) for lc in ax.edge_collections for c in lc.get_colors()}
    assert edge_colours == {mcolors.to_hex(c) for c in palette.task_colors(3)}  # split: no cross-task colour
    faces = [mcolors.to_hex(f[:3]) for f in ax.collections[-1].get_facecolors()]
    assert faces == [mcolors.to_hex(palette.task_color(t)) for t in range(3)]  # the output nodes
    plots.plt.close(fig)

    image = [TaskInfo("moons_0", "moons", [0, 1], [0], 2, "bce"),
             TaskInfo("digits_1", "digits", list(range(2, 66)), list(range(1, 11)), 10, "ce")]
    used = np.ones((2, 2, 66), dtype=bool)
    fig = plots.coverage_maps(used, np.arange(2), np.array([0, 0] + [1] * 64), image,
                              pd.DataFrame({"seed": [0, 1]}), np.array([0, 1]))
    shown = fig.axes[0].images[0]
    assert mcolors.to_hex(shown.cmap(1.0)[:3]) == mcolors.to_hex(palette.task_color(1))
    plots.plt.close(fig)


def test_figures_without_tasks_use_no_task_colour():
    """States, split, split criteria, leakage and neuron figures draw no task colour (nor the
    cross-task one): their colours could only be misread as tasks."""
    analysis, _, layers, _ = run_tables(n_seeds=3, n_levels=5)
    for state in ("alive", "audience", "zombie", "unproductive"):
        for suffix in ("_w", "_b"):
            analysis[f"{state}{suffix}"] = 5
    analysis["split_functional"] = analysis["split"]
    plots.style()
    for make in (plots.state_composition, plots.split_over_levels,
                 plots.split_criteria_over_levels, plots.leakage_over_levels):
        fig = make(analysis)
        assert not [c for c in figure_colours(fig) if is_task_colour(c)], make.__name__
        plots.plt.close(fig)
    fig = plots.neuron_classes(layers)
    assert not [c for c in figure_colours(fig) if is_task_colour(c)]
    plots.plt.close(fig)


def test_accuracy_legend_covers_no_panel():
    """accuracy.png: the legend lies outside every panel (it covered the reference lines), and
    every task's dense median and degradation bound are in its own panel (they hid another
    task's lines in one shared panel)."""
    _, imp, _, seeds = run_tables(n_seeds=3, n_levels=4)
    plots.style()
    fig = plots.accuracy_vs_params(imp, seeds, ["moons_0", "circles_1"], 0.05)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert all(not legend.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    for t, ax in enumerate(fig.axes):
        dense = imp.loc[imp["level"] == 0, f"test_acc_{MOONS_CIRCLES[t].name}"].median()
        flat = sorted(ln.get_ydata()[0] for ln in ax.get_lines()
                      if list(ln.get_xdata()) == [0, 1] and is_task_colour(
                          mcolors.to_rgb(ln.get_color())))
        assert flat == pytest.approx([dense - 0.05, dense])
    plots.plt.close(fig)


def test_split_panel_without_a_split_says_so_and_metric_is_drawn_per_level():
    """split.png: with no seed split at any level the fraction panel says so (it looked empty);
    the split metric is drawn in steps, so it touches 0 only at a level whose median is 0."""
    analysis, _, _, _ = run_tables(n_seeds=3, n_levels=5)
    analysis["split"] = False
    plots.style()
    fig = plots.split_over_levels(analysis)
    assert any("no seed split" in t.get_text() for t in fig.axes[2].texts)
    metric = fig.axes[0].get_lines()[0]
    assert metric.get_drawstyle() == "steps-mid"
    plots.plt.close(fig)
    analysis["split"] = True
    fig = plots.split_over_levels(analysis)
    assert not fig.axes[2].texts
    plots.plt.close(fig)


@pytest.mark.parametrize("n", range(1, 61))
def test_level_grid_never_leaves_one_panel_alone(n):
    cols = drawing.grid_columns(n, 5)
    assert 1 <= cols <= 7
    assert n <= cols or n % cols != 1, (n, cols)  # the last row holds more than one panel
