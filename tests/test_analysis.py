"""Tables built from analyses: invariants, comatose events, split vs degradation per seed."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from pipeline.analysis import (InvariantError, check_monotone, comatose_events, lifetimes,
                               per_seed, summarize)
from pipeline.data import TaskInfo

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
    has_in = [[torch.tensor([[True, True]])], [torch.tensor([[True, True]])],
              [torch.tensor([[True, True]])], [torch.tensor([[False, True]])]]
    has_out = [[torch.tensor([[True, True]])], [torch.tensor([[False, True]])],
               [torch.tensor([[False, True]])], [torch.tensor([[False, True]])]]
    bias = [[torch.tensor([[True, True]])], [torch.tensor([[True, True]])],
            [torch.tensor([[False, True]])], [torch.tensor([[False, True]])]]
    ev = comatose_events(has_in, has_out, bias, seeds=[7])
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
