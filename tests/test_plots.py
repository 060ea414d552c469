"""Figures that need no pipeline run: the network drawing draws one line per unpruned weight."""
from __future__ import annotations

import numpy as np

from pipeline import plots
from pipeline.graph import PRUNED


def test_network_drawing_draws_every_unpruned_weight(tmp_path):
    rng = np.random.default_rng(0)
    layers = [4, 7, 5, 2]
    weights, states = [], []
    for a, b in zip(layers[:-1], layers[1:]):
        w = rng.normal(size=(b, a))
        st = rng.integers(0, 5, size=(b, a))
        w[st == PRUNED] = 0
        weights.append(w)
        states.append(st)
    plots.style()
    ax = plots.network_drawing(layers, weights, states, [0, 0, 1, 1], [0, 1], "test")
    expected = sum(int((st != PRUNED).sum()) for st in states)
    assert ax.n_edges == expected
    assert len(ax.collections[0].get_segments()) == expected
    plots.save(ax.figure, tmp_path / "net.png", 80)
    assert (tmp_path / "net.png").read_bytes()[:4] == b"\x89PNG"


def test_network_drawing_with_hundreds_of_inputs_draws_one_node_per_task(tmp_path):
    """A 64 + 196-input net (digits beside 14 × 14 images) is drawn with one input node per
    task: an edge per (task, neuron) with some unpruned weight between them."""
    rng = np.random.default_rng(1)
    layers = [260, 12, 13]
    input_task = [0] * 64 + [1] * 196
    st0 = np.where(rng.random((12, 260)) < 0.1, rng.integers(0, 4, (12, 260)), PRUNED)
    st0[3] = PRUNED  # neuron 3 has no input weight left
    st0[4, 64:] = PRUNED  # neuron 4 only hears task 0
    st1 = rng.integers(0, 5, (13, 12))
    weights = [rng.normal(size=(12, 260)) * (st0 != PRUNED), rng.normal(size=(13, 12))]
    plots.style()
    ax = plots.network_drawing(layers, weights, [st0, st1], input_task, [0] * 10 + [1] * 3, "t")
    per_task = np.stack([(st0[:, :64] != PRUNED).any(axis=1), (st0[:, 64:] != PRUNED).any(axis=1)],
                        axis=1)
    assert not per_task[3].any() and per_task[4].tolist() == [True, False]
    assert ax.n_edges == int(per_task.sum()) + int((st1 != PRUNED).sum())
    assert len(ax.collections[1].get_offsets()) == 2  # two input nodes, not 260
    plots.save(ax.figure, tmp_path / "net.png", 80)


def test_study_figures_for_every_axis(tmp_path):
    """One figure per varied study axis (numeric, log-width and categorical axes alike)."""
    import pandas as pd

    from pipeline.config import STUDY_AXES
    values = {"extensions": [0, 2], "iterations": [5, 10], "tasks": ["moons+circles+moons",
                                                                  "moons+circles"],
              "hidden": ["40", "40x40"], "init": ["normal", "torch_default"], "noise": [0.1, 0.2]}
    base = {"extensions": 0, "iterations": 5, "tasks": "moons+circles", "hidden": "40x40",
            "init": "torch_default", "noise": 0.1}
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
