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


# ---- more tasks than colours: never one colour for two tasks -----------------------------------
def test_every_task_has_its_own_colour_and_marker_pair():
    """Past six tasks a colour comes round again, so a task is its (colour, marker) pair: 7 tasks
    give 7 distinct pairs, 48 give 48, none uses the cross-task colour; a 49th task has no pair
    of its own and is refused, not given a repeated one."""
    for n in (6, 7, 13, palette.MAX_STYLED_TASKS):
        pairs = [palette.task_style(t) for t in range(n)]
        assert len(set(pairs)) == n
        assert all(c != palette.CROSS_TASK for c, _ in pairs)
    assert palette.task_style(6)[0] == palette.task_style(0)[0]  # the colour alone repeats …
    assert palette.task_style(6) != palette.task_style(0)         # … the pair does not
    with pytest.raises(ValueError, match="48 tasks"):
        palette.task_style(palette.MAX_STYLED_TASKS)


def test_accuracy_figure_of_seven_tasks_tells_every_task_apart():
    """accuracy.png with 7 tasks: each panel's test-accuracy curve is drawn with its task's
    (colour, marker) pair, and the 7 pairs differ (the seventh reused the first task's colour
    alone before)."""
    _, imp, _, seeds = run_tables(n_seeds=3, n_levels=4)
    names = [f"moons_{t}" for t in range(7)]
    for name in names:
        imp[f"test_acc_{name}"] = imp["test_acc_moons_0"]
    plots.style()
    fig = plots.accuracy_vs_params(imp, seeds, names, 0.05)
    drawn = []
    for t in range(7):
        curve = next(ln for ln in fig.axes[t].get_lines() if ln.get_marker() not in ("None", ""))
        drawn.append((mcolors.to_hex(curve.get_color()), curve.get_marker()))
        assert drawn[-1] == (mcolors.to_hex(palette.task_style(t)[0]), palette.task_style(t)[1])
    assert len(set(drawn)) == 7
    plots.plt.close(fig)


def test_colour_only_figures_are_refused_in_one_line_past_six_tasks():
    """The drawings and the coverage maps tell tasks apart by colour alone: for 7 tasks the plot
    stage draws neither and the report's figure section says why in one line each; up to 6 it
    refuses nothing; past 48 accuracy.png is refused too."""
    from pipeline.stages import plot

    assert plot.task_figure_refusals(6) == []
    lines = plot.task_figure_refusals(7)
    assert len(lines) == 2 and all("7 tasks but 6 task colours" in line for line in lines)
    assert "network drawings" in lines[0] and "coverage_maps.png" in lines[1]
    assert plot.task_figure_refusals(49)[0].startswith("accuracy.png not drawn")
    section = plot.figure_lines(["split.png"], lines, drawn_seed=0)
    assert section[-2:] == [f"- {line}." for line in lines]
    assert not any("every_level" in line for line in section)  # no drawing, none named


# ---- one layer naming; empty panels say so -----------------------------------------------------
def test_figures_name_layers_as_the_tables_number_them():
    """neurons.png, lifetimes.png and comatose_events.png label the tables' `layer` i as
    "layer i (→ hidden i+1)" (the last linear map "→ outputs"): the same number as every CSV,
    with the drawing's name of the neurons it feeds."""
    _, _, layers, _ = run_tables(n_seeds=3, n_levels=4)
    plots.style()
    fig = plots.neuron_classes(layers)
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_legend().get_texts()] == \
            ["layer 0 (→ hidden 1)", "layer 1 (→ hidden 2)"]
    plots.plt.close(fig)
    life = pd.DataFrame([{"seed": s, "layer": i, "kind": k, "state": "alive", "params": 4,
                          "mean_levels": 2.0} for s in (0, 1) for i in range(3)
                         for k in ("weight", "bias")])
    fig = plots.lifetimes_figure(life)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[0] == "weights\nlayer 0\n(→ hidden 1)" and ticks[-1] == "biases\nlayer 2\n(→ outputs)"
    plots.plt.close(fig)
    events = pd.DataFrame({"seed": [0, 0], "layer": [0, 1], "neuron": [3, 4],
                           "bias_pruned_before_detached": [True, False]})
    fig = plots.comatose_events_figure(events)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == \
        ["layer 0 (→ hidden 1)", "layer 1 (→ hidden 2)"]
    plots.plt.close(fig)


def panel_texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def test_an_empty_panel_says_none_occurred():
    """A neuron class that never occurs (an image run's zombies and comatose neurons) says "none
    occurred" in its panel, and only there; so do comatose_events.png without comatose neurons
    and dying.png's zombie panel without zombies."""
    from pipeline import dying_plots

    _, _, layers, _ = run_tables(n_seeds=3, n_levels=4)
    layers.loc[layers["state"] != "zombie", "count"] = 0
    layers.loc[layers["state"] == "zombie", "count"] = 2
    plots.style()
    fig = plots.neuron_classes(layers)
    said = ["none occurred" in panel_texts(ax) for ax in fig.axes]
    assert said == [False, True, True]  # zombie, comatose, frozen zombie
    assert "no comatose neuron" in panel_texts(fig.axes[1])
    plots.plt.close(fig)
    fig = plots.comatose_events_figure(pd.DataFrame(columns=["seed", "layer", "neuron",
                                                             "bias_pruned_before_detached"]))
    assert "none occurred" in panel_texts(fig.axes[0])
    plots.plt.close(fig)
    levels = pd.DataFrame({"seed": [0, 0, 1, 1], "level": [0, 1, 0, 1], "zombie_neurons": 0})
    for zombies, said in ((0, True), (3, False)):
        levels["zombie_neurons"] = zombies
        fig, ax = plots.plt.subplots()
        dying_plots.zombie_count_panel(ax, levels, None)
        assert ("none occurred" in panel_texts(ax)) == said
        plots.plt.close(fig)
