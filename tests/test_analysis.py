"""Tables built from analyses: invariants, comatose events, split vs degradation per seed."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.analysis import (
    InvariantError,
    check_monotone,
    fisher_p,
    fraction_text,
    lifetimes,
    per_seed,
    summarize,
    wilson,
)
from pipeline.data import TaskInfo
from pipeline.dying import NeuronLevel, comatose_events, neuron_episodes

TASKS = [TaskInfo("a", "moons", [0, 1], [0], 2, "bce"), TaskInfo("b", "moons", [2, 3], [1], 2, "bce")]


def test_monotone_states_pass_and_violations_are_named():
    s0 = torch.tensor([[0, 1, 3]], dtype=torch.uint8)
    s1 = torch.tensor([[2, 1, 4]], dtype=torch.uint8)
    m0 = torch.tensor([[True, True, True]])
    m1 = torch.tensor([[True, True, False]])
    check_monotone([s0, s1], [m0, m1])
    with pytest.raises(InvariantError, match="parameter 0 of network 0 moved from state zombie"):
        check_monotone([s1, s0], [m1, m1])
    with pytest.raises(InvariantError, match="was pruned"):
        check_monotone([s0, s0], [m1, m0])


def test_lifetimes_count_levels_per_state():
    states = [torch.tensor([[0, 0]], dtype=torch.uint8), torch.tensor([[2, 0]], dtype=torch.uint8),
              torch.tensor([[4, 3]], dtype=torch.uint8)]
    life = lifetimes(states)
    assert life[0, 0].tolist() == [1, 0, 1, 0, 1] and life[0, 1].tolist() == [2, 0, 0, 1, 0]


def test_comatose_events():
    # one hidden layer, 2 neurons, 4 levels; neuron 0: outputs lost at level 1 (comatose),
    # bias pruned at level 2, last incoming weight pruned at level 3. Neuron 1 never comatose.
    # events.csv comes from the comatose episodes (pipeline.dying).
    t, f = True, False
    has_in = [[t, t], [t, t], [t, t], [f, t]]
    has_out = [[t, t], [f, t], [f, t], [f, t]]
    bias = [[t, t], [t, t], [f, t], [f, t]]
    levels = [NeuronLevel([np.array([i])], [np.array([o])], [np.array([b])],
                          [np.zeros((1, 2), dtype=np.float32)], None, None)
              for i, o, b in zip(has_in, has_out, bias)]
    episodes, _ = neuron_episodes(levels, [np.zeros((1, 2), dtype=np.float32)], seeds=[7])
    ev = comatose_events(episodes)
    assert len(ev) == 1
    row = ev.iloc[0]
    assert (row["seed"], row["neuron"], row["first_comatose_level"], row["last_comatose_level"],
            row["bias_pruned_level"], row["detached_level"]) == (7, 0, 1, 2, 2, 3)
    assert bool(row["bias_pruned_before_detached"])


def test_split_before_degradation_per_seed_and_summary():
    analysis = pd.DataFrame({"seed": [0] * 4 + [1] * 4, "level": list(range(4)) * 2,
                             "params": [100, 50, 25, 12] * 2, "alive": [100, 40, 20, 10] * 2,
                             "split": [False, False, True, True, False, False, False, True]})
    imp = pd.DataFrame({"seed": [0] * 4 + [1] * 4, "level": list(range(4)) * 2,
                        "test_acc_a": [1.0, 0.99, 0.97, 0.8, 1.0, 0.9, 0.9, 0.9],
                        "test_acc_b": [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]})
    seeds = per_seed(analysis, imp, TASKS, threshold=0.05)
    s0, s1 = seeds.iloc[0], seeds.iloc[1]
    assert s0["first_split_level"] == 2 and s0["degradation_level"] == 3
    assert bool(s0["split_before_degradation"]) and s0["params_at_split"] == 25
    assert s1["first_split_level"] == 3 and s1["degradation_level"] == 1
    assert not bool(s1["split_before_degradation"])
    m = summarize(seeds, TASKS, 0.05)
    assert m["split"]["seeds_split"] == 2 and m["split"]["seeds_split_before_degradation"] == 1
    assert m["split"]["first_split_level"] == {"median": 2.5, "min": 2.0, "max": 3.0}
    assert m["test_acc_at_split"]["a"] == pytest.approx((0.97 + 0.9) / 2)
    lo, hi = m["split"]["fraction_split_before_degradation_ci95"]
    assert (lo, hi) == pytest.approx(wilson(1, 2)) and lo < 0.5 < hi
    assert "random_mask" not in m  # no null model without the control


def test_fisher_p_matches_the_hypergeometric_sum():
    """Two-sided Fisher: the probability, under equal split rates and fixed margins, of every
    2×2 table at most as likely as the observed one."""
    from math import comb
    for k1, n1, k2, n2 in [(27, 32, 10, 32), (5, 8, 5, 8), (0, 10, 10, 10), (3, 32, 1, 16)]:
        total, n = k1 + k2, n1 + n2
        pmf = {a: comb(n1, a) * comb(n2, total - a) / comb(n, total)
               for a in range(max(0, total - n2), min(total, n1) + 1)}
        expected = sum(p for p in pmf.values() if p <= pmf[k1] * (1 + 1e-7))
        assert fisher_p(k1, n1, k2, n2) == pytest.approx(min(1.0, expected), rel=1e-6)
    assert fisher_p(5, 8, 5, 8) == pytest.approx(1.0)
    assert fisher_p(32, 32, 0, 32) < 1e-15


def test_summary_compares_imp_with_random_masks():
    seeds = pd.DataFrame({"seed": range(10), "first_split_level": [3.0] * 9 + [None],
                          "split_before_degradation": [True] * 6 + [False] * 4,
                          "degradation_level": [None] * 10, "params_at_split": [10.0] * 10,
                          "alive_at_split": [8.0] * 10, "test_acc_a_dense": 1.0,
                          "test_acc_b_dense": 1.0, "test_acc_a_at_split": 1.0,
                          "test_acc_b_at_split": 1.0})
    random_split = pd.Series([True] + [False] * 9, index=range(10))
    m = summarize(seeds, TASKS, 0.05, random_split)
    r = m["random_mask"]
    assert r["seeds_split"] == 1 and r["fraction_split"] == 0.1
    assert r["fraction_split_ci95"] == pytest.approx(list(wilson(1, 10)))
    assert r["fisher_p_imp_vs_random"] == pytest.approx(fisher_p(9, 10, 1, 10))
    assert r["fisher_p_imp_vs_random"] < 0.01
    assert fraction_text(9, 10) == "9/10 (0.90, 95% CI 0.60–0.98)"


def test_coverage_and_leakage_summaries_follow_the_first_split_and_the_last_level():
    """metrics.json's coverage (at the headline first split, at the last level) and leakage
    (last level) are medians over seeds of exactly those rows of levels.csv (docs/science.md §6)."""
    from pipeline.analysis import per_seed, summarize

    tasks = [TaskInfo("moons_0", "moons", [0, 1], [0], 2, "bce"),
             TaskInfo("circles_1", "circles", [2, 3], [1], 2, "bce")]
    rows = []
    # seed 0 splits at level 1; seed 1 never splits; seed 2 splits at level 2
    for seed, first in ((0, 1), (1, None), (2, 2)):
        for level in range(3):
            split = first is not None and level >= first
            rows.append({"seed": seed, "level": level, "params": 100 - 10 * level, "alive": 50,
                         "split": split, "split_complete": split, "split_effective": split,
                         "coverage_moons_0": 1.0 - 0.1 * level - 0.01 * seed,
                         "coverage_circles_1": 1.0 - 0.2 * level,
                         "leakage": 0.5 - 0.2 * level + 0.01 * seed,
                         "leakage_w": 0.4 - 0.2 * level})
    analysis = pd.DataFrame(rows)
    imp = analysis[["seed", "level"]].assign(test_acc_moons_0=1.0, test_acc_circles_1=1.0)
    seeds = per_seed(analysis, imp, tasks, 0.05)
    assert seeds["coverage_moons_0_at_split"].tolist()[0] == pytest.approx(0.9)
    assert pd.isna(seeds["coverage_moons_0_at_split"].tolist()[1])
    assert seeds["coverage_moons_0_at_split"].tolist()[2] == pytest.approx(0.78)
    assert seeds["leakage_last"].tolist() == pytest.approx([0.1, 0.11, 0.12])
    m = summarize(seeds, tasks, 0.05)
    assert m["coverage"]["at_split"]["moons_0"] == pytest.approx((0.9 + 0.78) / 2)
    assert m["coverage"]["last_level"]["circles_1"] == pytest.approx(0.6)
    assert m["leakage"]["last_level"]["median"] == pytest.approx(0.11)
    assert m["leakage_w"]["last_level"]["q25"] == pytest.approx(0.0)
