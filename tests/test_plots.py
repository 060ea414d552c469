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
