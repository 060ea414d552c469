"""Pruning trajectory and extension (docs/science.md §3)."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.trajectory import base_trajectory, extended_width, param_count, plan


def test_param_count_by_hand():
    assert param_count([4, 40, 40, 2]) == 4 * 40 + 40 * 40 + 40 * 2 + 40 + 40 + 2 == 1922
    assert param_count([4, 40, 40, 2], biases=False) == 1840
    assert param_count([4, 8, 8, 2]) == 32 + 64 + 16 + 18 == 130
    assert param_count([1568, 784, 392, 20]) == (1568 * 784 + 784 * 392 + 392 * 20
                                                 + 784 + 392 + 20)
    assert param_count([3, 1]) == 4


def test_default_trajectory():
    counts = base_trajectory(1922, 20, target=50)
    assert counts[0] == 1922 and counts[-1] == 50 and len(counts) == 21
    q = (50 / 1922) ** (1 / 20)
    assert all(c == math.floor(1922 * q**k + 0.5) for k, c in enumerate(counts[:-1]))
    assert abs((1 - q) - 0.1667) < 1e-3


def test_extension_lands_on_base_count():
    tr = plan(4, 2, [8, 8], 10, None, 0.32, 3, True)
    assert tr.levels == list(range(-3, 11))
    i0 = tr.levels.index(0)
    assert tr.params[i0] == 130
    assert tr.layers[0] == 4 and tr.layers[-1] == 2 and len(tr.layers) == 4
    width = tr.layers[1]
    # S_{-3} count within one hidden unit's worth of P_{-3} = P_0 / q^3
    target = 130 / 0.68**3
    one_unit = param_count([4, width + 1, width + 1, 2]) - param_count(tr.layers)
    assert abs(tr.params[0] - target) <= one_unit
    assert all(a >= b for a, b in zip(tr.params[:-1], tr.params[1:]))


@settings(max_examples=200, deadline=None)
@given(n_in=st.integers(1, 50), n_out=st.integers(1, 12),
       hidden=st.lists(st.integers(1, 60), min_size=1, max_size=4),
       iterations=st.integers(1, 30), frac=st.floats(0.001, 0.95), biases=st.booleans())
def test_trajectory_properties(n_in, n_out, hidden, iterations, frac, biases):
    p0 = param_count([n_in, *hidden, n_out], biases)
    target = max(1, min(p0 - 1, int(p0 * frac)))
    if p0 < 2:
        return
    counts = base_trajectory(p0, iterations, target=target)
    assert counts[0] == p0 and counts[-1] == target and len(counts) == iterations + 1
    assert all(a >= b for a, b in zip(counts[:-1], counts[1:]))
    # realised per-level counts follow the closed form within rounding
    q = (target / p0) ** (1 / iterations)
    assert all(abs(c - p0 * q**k) <= 0.5 + 1e-9 for k, c in enumerate(counts[:-1]))


@settings(max_examples=200, deadline=None)
@given(n_in=st.integers(1, 40), n_out=st.integers(1, 10), depth=st.integers(1, 4),
       params=st.integers(50, 200000), biases=st.booleans())
def test_extended_width_solves_the_count(n_in, n_out, depth, params, biases):
    h = extended_width(n_in, n_out, depth, params, biases)
    count = lambda w: param_count([n_in, *([w] * depth), n_out], biases)  # noqa: E731
    if h > 1:
        assert count(h - 1) <= params + (count(h) - count(h - 1))
    # h is the integer closest to the real root, so its count is within one unit's worth
    assert abs(count(h) - params) <= max(count(h + 1) - count(h), count(h) - count(max(h - 1, 0)))
