"""Figures that need no pipeline run: network drawings (modules, cross-task weights, pixel maps,
one layout for every level, no overlapping text, the GIF) and the study figures."""
from __future__ import annotations

import itertools

import matplotlib.colors as mcolors
import networkx as nx
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import drawing, plots
from pipeline.data import TaskInfo
from pipeline.graph import ALIVE, PRUNED, ZOMBIE

MOONS_CIRCLES = [TaskInfo("moons_0", "moons", [0, 1], [0], 2, "bce"),
                 TaskInfo("circles_1", "circles", [2, 3], [1], 2, "bce")]


def checkpoint(masks: list[np.ndarray], seed: int = 0, rng_seed: int = 0) -> dict:
    """A one-network level checkpoint (models/imp/level_XX.pt layout) with these weight masks
    ([out, in] bool per layer), random values where unpruned, every bias unpruned."""
    rng = np.random.default_rng(rng_seed)
    state = {"seeds": torch.tensor([seed])}
    for i, m in enumerate(masks):
        w = rng.normal(size=m.shape) * m
        state[f"layers.{i}.weight"] = torch.tensor(w[None], dtype=torch.float32)
        state[f"layers.{i}.weight_mask"] = torch.tensor(m[None])
        state[f"layers.{i}.bias"] = torch.tensor(rng.normal(size=(1, m.shape[0])),
                                                 dtype=torch.float32)
        state[f"layers.{i}.bias_mask"] = torch.ones(1, m.shape[0], dtype=torch.bool)
    return state


def split_masks(layers: list[int], owner: list[np.ndarray]) -> list[np.ndarray]:
    """Masks connecting node pairs of the same task only; owner[l][n] = task (-1: no task)."""
    return [(owner[i + 1][:, None] == owner[i][None, :]) & (owner[i + 1][:, None] >= 0)
            for i in range(len(layers) - 1)]


def reference_classes(masks: list[np.ndarray], tasks: list[TaskInfo]):
    """networkx reference: per weight (layer, v, u) of an alive... unpruned weight, the set of
    (s, t) task pairs it lies on a path between (input of s → output of t)."""
    g = nx.DiGraph()
    for i, m in enumerate(masks):
        for v, u in zip(*np.nonzero(m)):
            g.add_edge((i, int(u)), (i + 1, int(v)))
    depth = len(masks)
    out = {}
    for i, m in enumerate(masks):
        for v, u in zip(*np.nonzero(m)):
            src, dst = (i, int(u)), (i + 1, int(v))
            pairs = set()
            for s, t in itertools.product(range(len(tasks)), repeat=2):
                from_s = any((0, x) == src or ((0, x) in g and nx.has_path(g, (0, x), src))
                             for x in tasks[s].inputs)
                to_t = any((depth, y) == dst or ((depth, y) in g and nx.has_path(g, dst, (depth, y)))
                           for y in tasks[t].outputs)
                if from_s and to_t:
                    pairs.add((s, t))
            out[(i, int(v), int(u))] = pairs
    return out


def drawn_edges(ax, view: drawing.NetView, order) -> dict[tuple[int, int, int], tuple]:
    """(layer, v, u) → RGB of every drawn edge, read back from the axes' line collections."""
    where = {}
    for layer, o in enumerate(order):
        ys = np.linspace(1, 0, len(o)) if len(o) > 1 else np.array([0.5])
        for slot, node in enumerate(o):
            where[(float(layer), round(float(ys[slot]), 6))] = int(node)
    edges = {}
    for lc in ax.edge_collections:
        colors = lc.get_colors()
        for k, seg in enumerate(lc.get_segments()):
            (x0, y0), (x1, y1) = seg
            u, v = where[(x0, round(y0, 6))], where[(x1, round(y1, 6))]
            rgb = tuple(np.round(colors[k if len(colors) > 1 else 0][:3], 4))
            edges[(int(x0), v, u)] = rgb
    return edges


def rgb(color) -> tuple:
    return tuple(np.round(mcolors.to_rgb(color), 4))


def test_split_net_is_drawn_as_one_band_per_task_without_cross_task_weights():
    """Two disjoint subnetworks whose neurons are interleaved by index are drawn as two bands
    (task 0 on top), each edge in its task's colour, no alarm colour; neurons of no task sit
    between the bands, and a zombie neuron that feeds task 0 only sits in task 0's half (by
    membership: with no input weight, its mean input position says nothing)."""
    rng = np.random.default_rng(3)
    layers = [4, 10, 9, 2]
    owner = [np.array([0, 0, 1, 1])] + [rng.permutation(np.resize([0, 1, -1], n))
                                        for n in layers[1:-1]] + [np.array([0, 1])]
    masks = split_masks(layers, owner)
    zombie = int(np.flatnonzero(owner[2] == 0)[-1])
    masks[1][zombie] = False  # no input weight left, still feeds task 0's output
    view = drawing.net_view(checkpoint(masks), 0, MOONS_CIRCLES)
    order = drawing.neuron_order(view)
    for layer in (1, 2):
        assert sorted(order[layer]) == list(range(layers[layer]))
        drawn = owner[layer][order[layer]]  # task of the neuron in each slot, top to bottom
        last0, first1 = np.flatnonzero(drawn == 0)[-1], np.flatnonzero(drawn == 1)[0]
        assert last0 < first1, drawn  # band of task 0 entirely above band of task 1
        between = drawn[last0 + 1:first1]
        assert (between == -1).all() and len(between) == (owner[layer] == -1).sum()
    plots.style()
    fig = drawing.figure_levels({0: view}, MOONS_CIRCLES, order, [(0, "split")], "t")
    edges = drawn_edges(fig.axes[0], view, order)
    assert len(edges) == sum(int(m.sum()) for m in masks)
    for (i, v, u), color in edges.items():
        if view.states[i][v, u] == ALIVE:
            assert color == rgb(drawing.task_color(int(owner[i][u])))
    assert rgb(drawing.CROSS_COLOR) not in edges.values()
    assert rgb(drawing.STATE_STYLES[ZOMBIE][0]) in edges.values()
    plots.plt.close(fig)


@pytest.mark.parametrize("density,seed", [(0.3, 2), (0.35, 2), (0.5, 2), (0.3, 3)])
def test_edge_colours_follow_tasks_and_cross_task_paths(density, seed):
    """Every unpruned weight is drawn once; an alive weight on a path from task s's inputs to
    task t ≠ s's outputs is in the alarm colour, any other alive weight in the colour of the
    one task whose path it lies on, non-alive weights in the greys of their state (cross-checked
    against networkx path queries)."""
    rng = np.random.default_rng(seed)
    layers = [4, 7, 6, 2]
    masks = [rng.random((b, a)) < density for a, b in zip(layers[:-1], layers[1:])]
    view = drawing.net_view(checkpoint(masks), 0, MOONS_CIRCLES)
    order = drawing.neuron_order(view)
    plots.style()
    fig = drawing.figure_levels({0: view}, MOONS_CIRCLES, order, [(0, "random")], "t")
    edges = drawn_edges(fig.axes[0], view, order)
    ref = reference_classes(masks, MOONS_CIRCLES)
    assert set(edges) == set(ref)
    colors = set(edges.values())
    assert rgb(drawing.CROSS_COLOR) in colors and len(colors & {rgb(drawing.task_color(0)),
                                                                rgb(drawing.task_color(1))})
    for (i, v, u), pairs in ref.items():
        state = view.states[i][v, u]
        if state == ALIVE:
            assert pairs, "an alive weight lies on some input → output path"
            tasks = {s for s, _ in pairs} | {t for _, t in pairs}
            cross = any(s != t for s, t in pairs)
            expected = drawing.CROSS_COLOR if cross else drawing.task_color(tasks.pop())
        else:
            assert not any(s != t for s, t in pairs) and state != PRUNED
            expected = drawing.STATE_STYLES[int(state)][0]
        assert edges[(i, v, u)] == rgb(expected), (i, v, u, pairs)
    plots.plt.close(fig)


def test_one_layout_for_every_level_and_no_overlapping_text(tmp_path):
    """Panels of different levels put each neuron at the same place; the 21-panel grid and the
    3-panel figure have no two texts (titles, layer labels, legend, suptitle) overlapping at the
    committed dpi."""
    rng = np.random.default_rng(5)
    layers = [4, 40, 40, 2]
    owner = [np.array([0, 0, 1, 1])] + [rng.permutation(np.resize([0, 1, -1, -1], n))
                                        for n in layers[1:-1]] + [np.array([0, 1])]
    split = split_masks(layers, owner)
    views = {}
    for level in range(21):  # from dense to the split, pruning random extra weights away
        keep = 1 - level / 20
        masks = [s | (rng.random(s.shape) < keep * 0.6) for s in split]
        views[level] = drawing.net_view(checkpoint(masks, rng_seed=level), 0, MOONS_CIRCLES)
    order = drawing.neuron_order(views[20], [views[lv] for lv in range(19, -1, -1)])
    plots.style()
    titles = [(lv, f"level {lv}: {1922 - 90 * lv} params" + (", split" if lv == 20 else ""))
              for lv in range(21)]
    grid = drawing.figure_levels(views, MOONS_CIRCLES, order, titles, "Every IMP level of seed 0 "
                                 "(layout of level 20 (first split))", cols=5, compact=True)
    three = drawing.figure_levels(views, MOONS_CIRCLES, order,
                                  [(0, "dense (level 0): 1922 params"),
                                   (16, "first split (level 16): 104 params, split"),
                                   (20, "last (level 20): 50 params, split")],
                                  "Network of seed 0: one band per task, layout of level 16 "
                                  "(first split); width ∝ |w|")
    for fig in (grid, three):
        fig.set_dpi(110)
        fig.canvas.draw()
        hidden = [[tuple(c.get_offsets()[:, 1]) for c in ax.collections if hasattr(c, "get_sizes")
                   and len(c.get_offsets()) in (40,)] for ax in fig.axes if ax.get_visible()
                  and ax.has_data()]
        assert all(h == hidden[0] for h in hidden) and len(hidden[0]) == 2
        assert not overlapping_texts(fig)
    plots.save(grid, tmp_path / "grid.png", 110)
    plots.save(three, tmp_path / "three.png", 110)


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of a drawn figure whose boxes intersect."""
    renderer = fig.canvas.get_renderer()
    undrawn = set()  # tick labels outside the view limits exist but are not drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            drawn = ({id(lab) for t in axis._update_ticks() for lab in (t.label1, t.label2)}
                     if ax.axison else set())
            undrawn |= {id(lab) for t in axis.get_major_ticks() + axis.get_minor_ticks()
                        for lab in (t.label1, t.label2) if id(lab) not in drawn}
    texts = [t for t in fig.findobj(plots.plt.Text) if t.get_visible() and t.get_text().strip()
             and id(t) not in undrawn and t.get_window_extent(renderer).width > 0]
    boxes = [t.get_window_extent(renderer) for t in texts]
    return [(texts[i].get_text(), texts[j].get_text())
            for i, j in itertools.combinations(range(len(texts)), 2)
            if boxes[i].overlaps(boxes[j])]


def test_overlap_check_sees_overlaps():
    fig, ax = plots.plt.subplots()
    ax.text(0.5, 0.5, "hidden 1")
    ax.text(0.51, 0.5, "hidden 2")
    fig.canvas.draw()
    assert overlapping_texts(fig) == [("hidden 1", "hidden 2")]
    plots.plt.close(fig)


def test_image_tasks_are_drawn_as_pixel_maps():
    """A 64-pixel and a 16-pixel image task: the input column is one node per task, edges one
    per (task, hidden neuron) with some unpruned weight between them, and each task's map
    colours a pixel with its task where it reaches only its own task's outputs, the alarm colour
    where it reaches another task's output, grey where it reaches none (networkx reference)."""
    tasks = [TaskInfo("digits_0", "digits", list(range(64)), [0, 1], 3, "ce"),
             TaskInfo("fashion_mnist_1", "fashion_mnist", list(range(64, 80)), [2, 3], 3, "ce")]
    rng = np.random.default_rng(7)
    layers = [80, 6, 5, 4]
    masks = [rng.random((b, a)) < p for (a, b), p in zip(zip(layers[:-1], layers[1:]),
                                                       (0.05, 0.4, 0.5))]
    masks[0][2] = False  # hidden neuron 2 hears no pixel
    view = drawing.net_view(checkpoint(masks), 0, tasks)
    order = drawing.neuron_order(view)
    plots.style()
    fig = drawing.figure_levels({0: view}, tasks, order, [(0, "pixels")], "t")
    ax = fig.axes[0]
    per_task = np.stack([masks[0][:, :64].any(axis=1), masks[0][:, 64:].any(axis=1)], axis=1)
    n_first = sum(1 for lc in ax.edge_collections for seg in lc.get_segments() if seg[0][0] == 0)
    assert n_first == int(per_task.sum())
    assert ax.n_edges == int(per_task.sum()) + int(masks[1].sum()) + int(masks[2].sum())
    maps = [child for child in ax.child_axes if child.images]
    assert len(maps) == 2
    g = nx.DiGraph()
    for i, m in enumerate(masks):
        g.add_edges_from(((i, int(u)), (i + 1, int(v))) for v, u in zip(*np.nonzero(m)))
    grey = (0.93, 0.93, 0.93)
    for ti, (task, inset) in enumerate(zip(tasks, maps)):
        image = inset.images[0].get_array()
        side = int(len(task.inputs) ** 0.5)
        assert image.shape[:2] == (side, side)
        for k, x in enumerate(task.inputs):
            reach = {t for t, other in enumerate(tasks) for y in other.outputs
                     if (0, x) in g and nx.has_path(g, (0, x), (3, y))}
            expected = (grey if not reach else drawing.CROSS_COLOR if reach - {ti}
                        else drawing.task_color(ti))
            assert tuple(np.round(image[k // side, k % side], 4)) == rgb(expected), (ti, x)
    plots.plt.close(fig)


def test_animation_has_one_frame_per_level(tmp_path):
    rng = np.random.default_rng(2)
    layers = [4, 6, 6, 2]
    views = {lv: drawing.net_view(checkpoint([rng.random((b, a)) < 0.9 - 0.2 * lv for a, b in
                                              zip(layers[:-1], layers[1:])]), 0, MOONS_CIRCLES)
             for lv in range(4)}
    order = drawing.neuron_order(views[3])
    plots.style()
    n = drawing.animate(views, MOONS_CIRCLES, order, {lv: f"level {lv}" for lv in views}, "t",
                        tmp_path / "a.gif", dpi=40)
    with Image.open(tmp_path / "a.gif") as im:
        assert n == im.n_frames == 4 and im.format == "GIF"


def test_study_figures_for_every_axis(tmp_path):
    """One figure per varied study axis (numeric, log-width and categorical axes alike)."""
    import pandas as pd

    from pipeline.config import STUDY_AXES
    values = {"extensions": [0, 2], "iterations": [5, 10], "tasks": ["moons+circles+moons",
                                                                  "moons+circles"],
              "hidden": ["40", "40x40"], "init": ["normal", "torch_default"], "noise": [0.1, 0.2],
              "method": ["rewind", "finetune"], "weight_decay": [0.0, 0.0001],
              "bias_init": ["default", "zero"], "n_samples": [1000, 15000]}
    base = {"extensions": 0, "iterations": 5, "tasks": "moons+circles", "hidden": "40x40",
            "init": "torch_default", "noise": 0.1, "method": "rewind", "weight_decay": 0.0,
            "bias_init": "default", "n_samples": 1000}
    rows, seeds = [], []
    for axis in STUDY_AXES:
        for i, v in enumerate(values[axis]):
            row = {**base, axis: v, "config": f"{axis}{i}", "width": 8 * (i + 1), "rate": 0.2 + i / 10,
                   "seeds": 4, "params_at_split": 50.0 + i, "alive_weights_at_split": 40.0,
                   "dense_test_acc": 0.99, "test_acc_at_split": 0.97}
            for name in ("split", "split_before_degradation", "split_at_base_params"):
                row.update({f"p_{name}": 0.5, f"p_{name}_low": 0.2, f"p_{name}_high": 0.8})
            rows.append(row)
            seeds += [{"config": row["config"], "params_at_split": 50.0 + s} for s in range(4)]
    summary, seeds = pd.DataFrame(rows), pd.DataFrame(seeds)
    plots.style()
    for axis in STUDY_AXES:
        mine = summary[summary["config"].str.startswith(axis)]
        names = []
        for name, fig in plots.study_figures(mine, seeds):
            names.append(name)
            plots.save(fig, tmp_path / f"{name}.png", 60)
        assert names == ["overview", f"by_{axis}"]
        assert (tmp_path / f"by_{axis}.png").stat().st_size > 5_000


def test_bias_init_is_drawn_as_a_categorical_axis():
    """Issue 32's bias_init axis: its values as tick labels, its params key in the x label, and
    no line joining the two unordered categories (as for method and weight decay)."""
    import pandas as pd

    rows = []
    for i, bias in enumerate(["default", "zero"]):
        row = {"bias_init": bias, "config": f"c{i}", "width": 40, "rate": 0.2, "seeds": 4,
               "params_at_split": 50.0 + i, "alive_weights_at_split": 40.0,
               "dense_test_acc": 0.99, "test_acc_at_split": 0.97}
        for name in ("split", "split_before_degradation", "split_at_base_params"):
            row.update({f"p_{name}": 0.5, f"p_{name}_low": 0.2, f"p_{name}_high": 0.8})
        rows.append(row)
    summary = pd.DataFrame(rows)
    seeds = pd.DataFrame({"config": ["c0", "c1"], "params_at_split": [50.0, 51.0]})
    fig = plots.study_axis_figure(summary, seeds, "bias_init", ["bias_init"])
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["default", "zero"]
        assert ax.get_xlabel() == "bias initialisation (model.bias_init)"
        assert ax.lines and all(line.get_linestyle() == "None" for line in ax.lines)
    plots.plt.close(fig)


# ---- per-run figures: median/IQR bands, integer level ticks, layout, one task ------------------
def run_tables(n_seeds: int = 7, n_levels: int = 13, rng_seed: int = 3):
    """Synthetic analyze/imp tables of a two-task run whose values crowd their bounds
    (accuracies at 1, counts at 0, split metric at its maximum 1 and ‖A − I‖_F at 0), so that a
    mean ± sd band would leave the data's range."""
    import pandas as pd
    rng = np.random.default_rng(rng_seed)
    rows, imp, layers = [], [], []
    for seed in range(n_seeds):
        for level in range(n_levels):
            top = rng.random() < 0.8  # most seeds at the bound, a few far below
            rows.append({"seed": seed, "level": level,
                         "split_metric": 1.0 if top else float(rng.integers(-1, 1)),
                         "task_distance": 0.0 if top else float(rng.uniform(0, 1.4)),
                         "split": bool(rng.random() < level / n_levels)})
            rows[-1]["split_complete"] = rows[-1]["split_effective"] = rows[-1]["split"]
            rows[-1]["leakage"] = rows[-1]["leakage_w"] = float(rng.uniform(0, 0.5))
            imp.append({"seed": seed, "level": level, "params": 2000 // (level + 1),
                        "test_acc_moons_0": 1.0 if top else float(rng.uniform(0.5, 1)),
                        "test_acc_circles_1": 1.0 if rng.random() < 0.7 else 0.9})
            for layer in range(2):
                for state in ("zombie", "comatose", "frozen_zombie"):
                    layers.append({"seed": seed, "level": level, "layer": layer,
                                   "kind": "neuron", "state": state,
                                   "count": 0 if rng.random() < 0.8 else int(rng.integers(1, 9))})
    seeds = pd.DataFrame({"seed": range(n_seeds), "params_at_split": [100.0] + [np.nan] *
                          (n_seeds - 1)})
    return pd.DataFrame(rows), pd.DataFrame(imp), pd.DataFrame(layers), seeds


def check_bands(ax, parts: list, x: str) -> None:
    """The axes' median lines and bands, in drawing order, against `parts` [(frame, column)]:
    each line is the per-x median over seeds, each band's outline holds exactly the per-x
    quartiles 0.25/0.75 (numpy reference) and so lies inside [min, max] of the data."""
    lines = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    polys = [c for c in ax.collections
             if isinstance(c, plots.matplotlib.collections.PolyCollection)]
    assert len(lines) == len(polys) == len(parts)
    for line, poly, (frame, y) in zip(lines, polys, parts):
        for xv, ym in zip(line.get_xdata(), line.get_ydata()):
            vals = frame.loc[frame[x] == xv, y].to_numpy(dtype=float)
            assert ym == pytest.approx(np.median(vals))
        verts = {}
        for xv, yv in poly.get_paths()[0].vertices:
            verts.setdefault(round(float(xv), 9), set()).add(round(float(yv), 9))
        for xv, ys in verts.items():
            vals = frame.loc[np.isclose(frame[x], xv), y].to_numpy(dtype=float)
            q = {round(float(v), 9) for v in np.quantile(vals, [0.25, 0.75])}
            assert ys == q, (xv, ys, q)
            assert vals.min() - 1e-9 <= min(ys) and max(ys) <= vals.max() + 1e-9


def test_bands_are_median_and_iqr_within_the_data_range():
    """accuracy, split and neuron figures: median lines and interquartile bands, never outside
    [min, max] of the seeds' values (mean ± sd of these tables leaves it), said in the labels."""
    analysis, imp, layers, seeds = run_tables()
    acc = imp.groupby("level")["test_acc_moons_0"]
    assert ((acc.mean() + acc.std()) > 1).any()  # the tables do push a mean ± sd band out
    plots.style()
    fig = plots.accuracy_vs_params(imp, seeds, ["moons_0", "circles_1"], 0.05)
    for ax, task in zip(fig.axes, ("moons_0", "circles_1")):  # one panel per task
        check_bands(ax, [(imp, f"test_acc_{task}")], "params")
    assert any("median, IQR over seeds" in t.get_text() for t in fig.legends[0].get_texts())
    plots.plt.close(fig)

    fig = plots.split_over_levels(analysis)
    for ax, col in zip(fig.axes[:2], ("split_metric", "task_distance")):
        check_bands(ax, [(analysis, col)], "level")
        assert "median, IQR over seeds" in ax.get_ylabel()
    plots.plt.close(fig)

    fig = plots.neuron_classes(layers)
    for ax, cls in zip(fig.axes, ("zombie", "comatose", "frozen_zombie")):
        part = layers[layers["state"] == cls]
        check_bands(ax, [(part[part["layer"] == k], "count") for k in (0, 1)], "level")
        assert "median, IQR over seeds" in ax.get_ylabel()
    plots.plt.close(fig)


def test_level_axes_have_integer_ticks():
    """split.png and neurons.png: every tick of an IMP-level axis is a whole level (21 levels
    gave 2.5, 7.5, … before)."""
    analysis, _, layers, _ = run_tables(n_seeds=3, n_levels=21)
    plots.style()
    for fig in (plots.split_over_levels(analysis), plots.neuron_classes(layers)):
        fig.canvas.draw()
        for ax in fig.axes:
            assert ax.get_xlabel() == "IMP level"
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks), ticks
        plots.plt.close(fig)


def test_comatose_legend_clear_of_bars_and_title_inside_figure(tmp_path):
    """The legend covers no bar, no text overlaps another, the title lies inside the figure."""
    import pandas as pd
    events = pd.DataFrame({"seed": 0, "layer": [0] * 40 + [1] * 38 + [0] * 3 + [1] * 3,
                           "bias_pruned_before_detached": [True] * 78 + [False] * 6})
    plots.style()
    fig = plots.comatose_events_figure(events)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    bars = [p.get_window_extent(renderer) for p in ax.patches if p.get_height() > 0]
    assert len(bars) == 4
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(legend.overlaps(b) for b in bars)
    assert not overlapping_texts(fig)
    title = ax.title.get_window_extent(renderer)
    assert fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1 and title.y1 <= fig.bbox.y1
    plots.save(fig, tmp_path / "comatose.png", 60)


def test_one_task_split_figure_says_not_applicable():
    """T = 1 (every split column NaN, as analyze writes it, read back from CSV): split.png is a
    note naming docs/science.md §6, with no bars, lines or bands; the split-criteria and leakage
    figures are not drawn. The same table with split columns filled draws bars (control)."""
    import io

    import pandas as pd
    analysis, _, _, _ = run_tables(n_seeds=4, n_levels=6)
    one = analysis.copy()
    one[["split_metric", "split", "split_complete", "split_effective", "leakage",
         "leakage_w"]] = np.nan
    buf = io.StringIO()
    one.to_csv(buf, index=False)
    one = pd.read_csv(io.StringIO(buf.getvalue()))
    plots.style()
    fig = plots.split_over_levels(one)
    texts = " ".join(t.get_text() for t in fig.findobj(plots.plt.Text))
    assert "not applicable" in texts and "one task" in texts and "docs/science.md §6" in texts
    for ax in fig.axes:
        assert not ax.containers and not ax.patches and not ax.get_lines() \
            and not ax.collections
    plots.plt.close(fig)
    assert plots.split_criteria_over_levels(one) is None
    assert plots.leakage_over_levels(one) is None

    fig = plots.split_over_levels(analysis)
    assert len(fig.axes) == 3 and fig.axes[2].containers
    assert "not applicable" not in " ".join(t.get_text() for t in fig.findobj(plots.plt.Text))
    plots.plt.close(fig)
