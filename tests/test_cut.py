"""Split distance (docs/science.md §6: minimum cuts d and d_w, isolating-cut bounds for T > 2) and the
output split against slow, obviously correct references: networkx minimum_cut with unit and
float capacities, brute-force enumeration of edge subsets and of multiway partitions, networkx
components; and the functional split by the cut against a plain torch forward."""
from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import torch
from random_nets import plain_accuracy, random_tasks

from pipeline.analysis import frozen_inputs, level_frames
from pipeline.cut import min_cut, seed_cut, split_distance
from pipeline.data import TaskInfo
from pipeline.functional import functional_split
from pipeline.graph import analyze
from pipeline.model import Layout


# ---- the reference: alive edges read off the definition, one networkx graph per network ---------
def alive_edges(layers, wmasks, weights):
    """{((l, u), (l+1, v)): |w|} of the unpruned weights on a directed input → output path."""
    g = nx.DiGraph()
    g.add_nodes_from((l, n) for l, size in enumerate(layers) for n in range(size))
    for i, m in enumerate(wmasks):
        for v, u in zip(*np.nonzero(m)):
            g.add_edge((i, u), (i + 1, v), w=abs(float(weights[i][v, u])))
    last = len(layers) - 1
    from_in = set().union(*[nx.descendants(g, (0, i)) | {(0, i)} for i in range(layers[0])])
    to_out = set().union(*[nx.ancestors(g, (last, o)) | {(last, o)} for o in range(layers[-1])])
    return {(a, b): d["w"] for a, b, d in g.edges(data=True) if a in from_in and b in to_out}


def terminals(layers, tasks):
    last = len(layers) - 1
    return [{(0, i) for i in t.inputs} | {(last, o) for o in t.outputs} for t in tasks]


def nx_cut(edges, side_a, side_b, weighted):
    """networkx minimum_cut value between two terminal sets (super-source/sink, infinite
    capacity: no capacity attribute)."""
    g = nx.Graph()
    g.add_nodes_from(["S", "T"])
    for (a, b), w in edges.items():
        g.add_edge(a, b, capacity=w if weighted else 1.0)
    for x in side_a:
        g.add_edge("S", x)
    for x in side_b:
        g.add_edge("T", x)
    return nx.minimum_cut(g, "S", "T")[0]


def joined(edges, removed, term):
    """Does a path of the alive edges minus `removed` join two different terminal sets?"""
    g = nx.Graph([e for e in edges if e not in removed])
    for comp in nx.connected_components(g):
        if sum(bool(comp & t) for t in term) > 1:
            return True
    return False


def cut_edges(layout, flat_cut):
    """The flat [P] bool selection of a cut as a set of ((l, u), (l+1, v)) edges."""
    out = set()
    for i, (cw, _) in enumerate(layout.views(flat_cut.unsqueeze(0))):
        for v, u in zip(*np.nonzero(cw[0].numpy())):
            out.add(((i, u), (i + 1, v)))
    return out


def random_net(rng, layers, k, density):
    layout = Layout(layers)
    mask = torch.from_numpy(rng.uniform(size=(k, layout.size)) < density)
    theta = torch.from_numpy(rng.uniform(0.05, 1.0, size=(k, layout.size))
                             * rng.choice([-1, 1], size=(k, layout.size))).float() * mask
    return layout, mask, theta


def check_two_tasks(layout, mask, theta, tasks):
    """d, d_w and the cuts of every network against networkx; the cut nets are pure."""
    res = analyze(layout, mask, theta, tasks)
    dist = split_distance(layout, res.state, theta, tasks)
    term = terminals(layout.layers, tasks)
    for k in range(mask.shape[0]):
        wm = [w[k].numpy() for w, _ in layout.views(mask)]
        wv = [w[k].numpy() for w, _ in layout.views(theta)]
        edges = alive_edges(layout.layers, wm, wv)
        d_ref = nx_cut(edges, term[0], term[1], weighted=False)
        dw_ref = nx_cut(edges, term[0], term[1], weighted=True)
        assert dist.d[k].item() == d_ref == dist.d_low[k].item()
        assert dist.d_w[k].item() == pytest.approx(dw_ref, rel=1e-9, abs=1e-12)
        assert bool(dist.exact[k]) and bool(dist.exact_w[k])
        c, cw = cut_edges(layout, dist.cut[k]), cut_edges(layout, dist.cut_w[k])
        assert c <= set(edges) and cw <= set(edges)             # alive weights only
        assert len(c) == d_ref
        assert sum(edges[e] for e in cw) == pytest.approx(dw_ref, rel=1e-9, abs=1e-12)
        assert not joined(edges, c, term) and not joined(edges, cw, term)
        assert dist.mass[k].item() == pytest.approx(sum(edges.values()), rel=1e-12)
        assert (d_ref == 0) == bool(res.pure[k])                  # d = 0 ⇔ purity
        for cut in (dist.cut, dist.cut_w):                        # the cut net is pure
            assert not cut[k, ~mask[k]].any()
            after = analyze(layout, mask[k:k + 1] & ~cut[k], theta[k:k + 1] * ~cut[k], tasks)
            assert bool(after.pure[0])
    return res, dist


@pytest.mark.parametrize("case", range(40))
def test_two_task_distance_matches_networkx(case):
    rng = np.random.default_rng(4000 + case)
    tasks, n_in, n_out = random_tasks(rng, 2)
    hidden = [int(rng.integers(1, 7)) for _ in range(int(rng.integers(0, 3)))]
    layout, mask, theta = random_net(rng, (n_in, *hidden, n_out), 3,
                                     rng.uniform(0.15, 0.9, size=(3, 1)))
    if case % 5 == 0:  # a fully pruned layer
        w, b, _ = layout.offsets[int(rng.integers(layout.depth))]
        mask[0, w:b] = False
    if case % 7 == 0:  # an empty network
        mask[1] = False
    check_two_tasks(layout, mask, theta * mask, tasks)


@pytest.mark.parametrize("case", range(4))
def test_image_like_masks_match_networkx(case):
    """Hundreds of inputs, most of them dead, as on images at the thesis' width."""
    rng = np.random.default_rng(4100 + case)
    tasks = [TaskInfo("img0", "digits", list(range(200)), list(range(4)), 4, "ce"),
             TaskInfo("img1", "digits", list(range(200, 400)), list(range(4, 8)), 4, "ce")]
    layout = Layout((400, 16, 10, 8))
    mask = torch.zeros(2, layout.size, dtype=torch.bool)
    for kk in range(2):
        for (w, b, e), n_in in zip(layout.offsets, layout.layers[:-1]):
            mask[kk, w:b] = torch.from_numpy(rng.uniform(size=b - w) < (0.02 if n_in > 100 else 0.3))
            mask[kk, b:e] = True
    theta = torch.from_numpy(rng.normal(size=(2, layout.size))).float() * mask
    res, dist = check_two_tasks(layout, mask, theta, tasks)
    assert (res.coverage < 0.5).all() and (dist.d > 0).any()


def brute_force_cut(edges, term, weighted):
    """The minimum over every subset of alive edges that leaves no path between terminals."""
    items = list(edges)
    best = np.inf
    for r in range(len(items) + 1):
        for sub in itertools.combinations(items, r):
            cost = sum(edges[e] for e in sub) if weighted else r
            if cost < best and not joined(edges, set(sub), term):
                best = cost
        if not weighted and best < np.inf:
            return best
    return best


@pytest.mark.parametrize("case", range(12))
def test_tiny_nets_match_brute_force_subsets(case):
    rng = np.random.default_rng(4200 + case)
    tasks, n_in, n_out = random_tasks(rng, 2, max_in=3, max_out=3)
    layout, mask, theta = random_net(rng, (n_in, 3, n_out), 1, 0.6)
    res = analyze(layout, mask, theta, tasks)
    dist = split_distance(layout, res.state, theta, tasks)
    edges = alive_edges(layout.layers, [w[0].numpy() for w, _ in layout.views(mask)],
                        [w[0].numpy() for w, _ in layout.views(theta)])
    assert len(edges) <= 14
    term = terminals(layout.layers, tasks)
    assert dist.d[0].item() == brute_force_cut(edges, term, weighted=False)
    assert dist.d_w[0].item() == pytest.approx(brute_force_cut(edges, term, weighted=True),
                                               rel=1e-9, abs=1e-12)


def optimal_multiway(edges, term):
    """Brute force: the minimum number of edges between parts over every assignment of the
    non-terminal nodes to one of the tasks' parts (terminals stay in their own)."""
    owner = {x: j for j, t in enumerate(term) for x in t}
    free = sorted({n for e in edges for n in e if n not in owner})
    best = np.inf
    for labels in itertools.product(range(len(term)), repeat=len(free)):
        part = {**owner, **dict(zip(free, labels))}
        best = min(best, sum(part[a] != part[b] for a, b in edges))
    return best


@pytest.mark.parametrize("case", range(16))
def test_three_and_four_tasks_bounds_bracket_the_optimal_multiway_cut(case):
    rng = np.random.default_rng(4300 + case)
    n_tasks = 3 if case % 2 else 4
    tasks, n_in, n_out = random_tasks(rng, n_tasks, max_in=3, max_out=2)
    layout, mask, theta = random_net(rng, (n_in, 4, 3, n_out), 2, 0.55)
    res = analyze(layout, mask, theta, tasks)
    dist = split_distance(layout, res.state, theta, tasks)
    term = terminals(layout.layers, tasks)
    for k in range(2):
        edges = alive_edges(layout.layers, [w[k].numpy() for w, _ in layout.views(mask)],
                            [w[k].numpy() for w, _ in layout.views(theta)])
        opt = optimal_multiway(edges, term)
        low, high = dist.d_low[k].item(), dist.d[k].item()
        assert low <= opt <= high <= 2 * (1 - 1 / n_tasks) * opt + 1e-9
        iso = [nx_cut(edges, t, set().union(*(u for u in term if u is not t)), False) for t in term]
        assert low == max(max(iso), sum(iso) / 2)
        c = cut_edges(layout, dist.cut[k])
        assert len(c) == high and c <= set(edges) and not joined(edges, c, term)
        assert bool(dist.exact[k]) == (low == high)
        assert (opt == 0) == bool(res.pure[k]) == (high == 0)
        wsum = sum(edges[e] for e in cut_edges(layout, dist.cut_w[k]))
        assert dist.d_w[k].item() == pytest.approx(wsum, rel=1e-9, abs=1e-12)
        assert dist.d_w_low[k].item() <= dist.d_w[k].item() * (1 + 1e-12)
        assert not joined(edges, cut_edges(layout, dist.cut_w[k]), term)


def hand_net(cross=0, zombie=False, pixel_feeds_other=False):
    """[4, 5, 4]: task a = inputs 0,1 → hidden 0,1 → outputs 0,1; task b = inputs 2,3 →
    hidden 2,3 → outputs 2,3. `cross`: that many weights input 0 (task a) → hidden 2, 3 (task
    b). `zombie`: hidden 4 without incoming weight (bias only) feeding one output of each task.
    `pixel_feeds_other`: input 0 (task a) feeds hidden 2 (task b) only: it is part of task b's
    component, which holds task b's outputs only (an output split, not an effective one)."""
    layout = Layout((4, 5, 4))
    w0 = torch.zeros(5, 4, dtype=torch.bool)
    w0[0:2, 0:2] = True
    w0[2:4, 2:4] = True
    w1 = torch.zeros(4, 5, dtype=torch.bool)
    w1[0:2, 0:2] = True
    w1[2:4, 2:4] = True
    for h in range(cross):
        w0[2 + h, 0] = True
    if zombie:
        w1[1, 4] = w1[2, 4] = True
    if pixel_feeds_other:
        w0[:, 0] = False
        w0[2, 0] = True
    mask = torch.cat([w0.reshape(-1), torch.ones(5, dtype=torch.bool), w1.reshape(-1),
                      torch.ones(4, dtype=torch.bool)]).unsqueeze(0)
    theta = torch.full(mask.shape, 0.5) * mask
    tasks = [TaskInfo("a", "digits", [0, 1], [0, 1], 2, "ce"),
             TaskInfo("b", "digits", [2, 3], [2, 3], 2, "ce")]
    return layout, mask, theta, tasks


@pytest.mark.parametrize("crossing", [0, 1, 2])
def test_split_net_and_crossing_weights(crossing):
    """A split net is 0 weights from a split; with `crossing` weights from input 0 (task a)
    into task b's hidden neurons, exactly those must go (input 0 is a terminal of task a)."""
    layout, mask, theta, tasks = hand_net(cross=crossing)
    res, dist = check_two_tasks(layout, mask, theta, tasks)
    assert dist.d[0].item() == crossing and dist.d_w[0].item() == pytest.approx(0.5 * crossing)
    assert cut_edges(layout, dist.cut[0]) == {((0, 0), (1, 2 + h)) for h in range(crossing)}
    assert bool(res.split_effective[0]) == (crossing == 0)


def test_zombie_sources_are_not_edges():
    """A zombie feeding both tasks' outputs joins them by a bias only: d = 0."""
    layout, mask, theta, tasks = hand_net(zombie=True)
    res, dist = check_two_tasks(layout, mask, theta, tasks)
    assert dist.d[0].item() == 0 and dist.d_w[0].item() == 0 and not dist.cut_w.any()
    assert bool(res.split_output[0]) and bool(res.split_effective[0])


def test_one_task_is_not_applicable():
    layout = Layout((2, 3, 1))
    tasks = [TaskInfo("moons_0", "moons", [0, 1], [0], 2, "bce")]
    mask = torch.ones(1, layout.size, dtype=torch.bool)
    res = analyze(layout, mask, torch.ones(1, layout.size), tasks)
    dist = split_distance(layout, res.state, torch.ones(1, layout.size), tasks)
    assert torch.isnan(dist.d).all() and torch.isnan(dist.d_w).all() and not dist.cut.any()
    lv = level_frames(layout, res, mask, torch.ones(1, layout.size), layout.prunable(True), tasks,
                      [0], 0, distance=dist, frozen=np.zeros(2, dtype=bool))["levels"]
    for c in ("split_output", "split_distance", "split_distance_w_share", "split_cut_layer_0",
              "split_cut_frozen_input"):
        assert lv[c].isna().all(), c


def test_min_cut_merges_parallel_edges_and_cuts_terminal_to_terminal_edges():
    """Edges inside one terminal set are never cut, an edge joining the two always is."""
    u = np.array([0, 0, 1, 2, 2, 4])
    v = np.array([1, 2, 3, 3, 3, 5])
    side = np.array([0, 0, -1, 1, 1, 0])          # 0, 1, 4 source; 3, 5 sink; 2 free
    for cap in (None, np.array([5.0, 0.5, 0.25, 1.0, 1.0, 3.0])):
        cut = min_cut(u, v, cap, side)
        # 0–1 inside the source set, 1–3 and 4–5 across; node 2 hangs on the source by one
        # edge (capacity 1 / 0.5) and on the sink by two parallel ones (2 / 2.0): 0–2 goes
        assert cut.tolist() == [False, True, True, False, False, True]


# ---- output split against networkx components ---------------------------------------------------
def output_split_reference(layers, wmasks, weights, tasks):
    edges = alive_edges(layers, wmasks, weights)
    last = len(layers) - 1
    g = nx.Graph(list(edges))
    out_task = {(last, o): j for j, t in enumerate(tasks) for o in t.outputs}
    apart = all(len({out_task[n] for n in comp if n in out_task}) <= 1
                for comp in nx.connected_components(g))
    d = nx.DiGraph(list(edges))
    live = all(o in d and any(nx.has_path(d, (0, i), o) for i in range(layers[0]) if (0, i) in d)
               for o in out_task)
    return apart and live


@pytest.mark.parametrize("case", range(30))
def test_output_split_matches_networkx_components(case):
    rng = np.random.default_rng(4400 + case)
    tasks, n_in, n_out = random_tasks(rng, [2, 3, 4][case % 3])
    hidden = [int(rng.integers(1, 6)) for _ in range(int(rng.integers(1, 3)))]
    layout, mask, theta = random_net(rng, (n_in, *hidden, n_out), 4,
                                     rng.uniform(0.1, 0.6, size=(4, 1)))
    res = analyze(layout, mask, theta, tasks)
    for k in range(4):
        ref = output_split_reference(layout.layers, [w[k].numpy() for w, _ in layout.views(mask)],
                                     [w[k].numpy() for w, _ in layout.views(theta)], tasks)
        assert bool(res.split_output[k]) == ref, k
        if res.split_effective[k]:
            assert bool(res.split_output[k])  # effective ⇒ output split


def test_task_a_pixel_feeding_task_b_is_an_output_split_not_an_effective_split():
    layout, mask, theta, tasks = hand_net(pixel_feeds_other=True)
    res, dist = check_two_tasks(layout, mask, theta, tasks)
    assert bool(res.split_output[0]) and not bool(res.split_effective[0])
    assert dist.d[0].item() == 1                      # the one weight input 0 → hidden 2


# ---- frozen inputs and the functional split by the cut -----------------------------------------
def test_frozen_inputs_are_the_constant_zero_training_columns():
    x = np.array([[0.0, 1.0, 2.0, 0.0], [0.0, 1.0, 3.0, 1.0], [0.0, 1.0, 4.0, 0.0]])
    constant, frozen = frozen_inputs(x)
    assert constant.tolist() == [True, True, False, False]
    assert frozen.tolist() == [True, False, False, False]


def cut_accuracy(layout, theta_k, x, y, tasks):
    """Per task accuracy of one network [P] by a plain forward (random_nets.plain_accuracy)."""
    views = layout.views(theta_k.unsqueeze(0))
    return plain_accuracy(layout.layers, [w[0] for w, _ in views], [b[0] for _, b in views],
                          x, y, tasks)


@pytest.mark.parametrize("case", range(8))
def test_cut_accuracy_equals_a_plain_forward_with_the_cut_zeroed(case):
    rng = np.random.default_rng(4500 + case)
    tasks, n_in, n_out = random_tasks(rng, [2, 3][case % 2], max_in=5, max_out=4)
    layout, mask, theta = random_net(rng, (n_in, 8, 6, n_out), 3, rng.uniform(0.2, 0.7, (3, 1)))
    x = torch.from_numpy(rng.normal(size=(200, n_in))).float()
    y = torch.from_numpy(rng.integers(0, 2, size=(200, len(tasks))))
    res = analyze(layout, mask, theta, tasks)
    dist = split_distance(layout, res.state, theta, tasks)
    tol = [0.0, 0.02][case % 2]
    f = functional_split(layout, mask, theta, res.cross, dist.cut_w, tasks, x, y, tol, res.live)
    g = functional_split(layout, mask, theta, res.cross, dist.cut_w, tasks, x, y, tol)
    assert torch.equal(f.split, g.split) and torch.equal(f.live_cut, g.live_cut)
    for k in range(3):
        before = cut_accuracy(layout, theta[k], x, y, tasks)
        after = cut_accuracy(layout, theta[k] * ~dist.cut_w[k], x, y, tasks)
        crossed = cut_accuracy(layout, theta[k] * ~res.cross[k], x, y, tasks)
        np.testing.assert_allclose(f.acc[k].numpy(), before, atol=1e-12)
        np.testing.assert_allclose(f.acc_cut[k].numpy(), after, atol=1e-12)
        np.testing.assert_allclose(f.acc_zeroed[k].numpy(), crossed, atol=1e-12)
        cut_net = analyze(layout, mask[k:k + 1] & ~dist.cut_w[k], theta[k:k + 1], tasks)
        assert bool(f.live_cut[k]) == bool(cut_net.live[0])
        assert bool(cut_net.pure[0])
        drops = [b - a for b, a in zip(before, after)]
        assert bool(f.split[k]) == (bool(cut_net.live[0]) and max(drops) <= tol + 1e-12)
        if res.split_effective[k]:
            assert bool(f.split[k]) and not dist.cut_w[k].any()


# ---- tables, metrics.json and the study summary -------------------------------------------------
def test_distance_per_seed_metrics_and_study_summary():
    """Seed 0 goes 2 → 1 → 0 crossing weights over levels 0–2, seed 1 stays at 2: the first
    levels with d ≤ 1 and d = 0, the last-level medians and the study columns follow."""
    import pandas as pd

    from pipeline.analysis import distance_summary, per_seed
    from pipeline.study import summary_row

    frames = []
    for level in range(3):
        for seed, crossing in ((0, 2 - level), (1, 2)):
            layout, mask, theta, tasks = hand_net(cross=crossing)
            res = analyze(layout, mask, theta, tasks)
            dist = split_distance(layout, res.state, theta, tasks)
            frozen = np.array([True, False, False, False])
            lv = level_frames(layout, res, mask, theta, layout.prunable(True), tasks, [seed],
                              level, distance=dist, frozen=frozen)["levels"]
            assert lv["split_cut_layer_0"].item() == crossing == lv["split_distance"].item()
            assert lv["split_cut_frozen_input"].item() == crossing  # all read input 0
            assert lv["alive_w_frozen_input"].item() == 2 + crossing
            frames.append(lv)
    levels = pd.concat(frames, ignore_index=True)
    imp = pd.DataFrame({"seed": np.repeat([0, 1], 3), "level": np.tile(range(3), 2),
                        "test_acc_a": 0.9, "test_acc_b": 0.9})
    seeds = per_seed(levels, imp, tasks, 0.05).set_index("seed")
    assert seeds.loc[0, "first_level_distance_at_most_1"] == 1
    assert seeds.loc[0, "first_level_distance_0"] == 2 and seeds.loc[0, "split_distance_last"] == 0
    assert pd.isna(seeds.loc[1, "first_level_distance_0"]) and seeds.loc[1, "split_distance_last"] == 2
    m = distance_summary(levels, seeds.reset_index())
    assert m["exact"] and m["last_level"]["d"] == {"median": 1.0, "q25": 0.5, "q75": 1.5}
    assert m["first_level_distance_0"] == {"median": 2.0, "min": 2.0, "max": 2.0, "seeds": 1}
    assert [b["d"]["median"] for b in m["per_level"]] == [2.0, 1.5, 1.0]
    table = seeds.reset_index().assign(
        dense_test_acc=0.9, test_acc_at_split=np.nan, alive_weights_at_split=np.nan,
        split_at_base_params=False, first_split_base_level=np.nan)
    row = summary_row(table, pd.DataFrame({"seed": [0, 1]}), n_tasks=2)
    assert row["split_distance_last"] == 1.0 and row["split_distance_w_share_last"] > 0
    assert 0 <= row["p_split_functional_before_degradation"] <= 1


def test_worker_processes_give_identical_cuts(monkeypatch):
    """The cuts are computed per network: two worker processes give the same result."""
    from pipeline import cut

    monkeypatch.setattr(cut, "POOL_ABOVE", 0)
    rng = np.random.default_rng(4600)
    tasks, n_in, n_out = random_tasks(rng, 3)
    layout, mask, theta = random_net(rng, (n_in, 6, 5, n_out), 5, 0.5)
    res = analyze(layout, mask, theta, tasks)
    one = split_distance(layout, res.state, theta, tasks, workers=1)
    two = split_distance(layout, res.state, theta, tasks, workers=2)
    for name in ("d", "d_low", "d_w", "d_w_low", "mass", "cut", "cut_w"):
        assert torch.equal(getattr(one, name), getattr(two, name)), name


def test_drawings_mark_every_cut_weight_once(monkeypatch):
    """mark_cut draws one black dashed line per weight of C_w (per pixel map and neuron for
    image tasks) and only counts a cut too large to draw."""
    import matplotlib.pyplot as plt

    from pipeline import drawing

    layout, mask, theta, tasks = hand_net(cross=2)
    state = {"seeds": torch.tensor([0])}
    for i, (w, b) in enumerate(layout.views(theta)):
        state[f"layers.{i}.weight"], state[f"layers.{i}.bias"] = w.clone(), b.clone()
    for i, (w, b) in enumerate(layout.views(mask)):
        state[f"layers.{i}.weight_mask"], state[f"layers.{i}.bias_mask"] = w.clone(), b.clone()
    cut = seed_cut(state, 0, tasks)
    assert [c.sum() for c in cut] == [2, 0]
    view = drawing.net_view(state, 0, tasks)
    order = drawing.neuron_order(view)
    fig, ax = plt.subplots()
    drawing.draw(view, tasks, order, ax, "t")
    assert drawing.mark_cut(ax, cut) == 2
    segs = ax.collections[-1].get_segments()
    pos = ax.node_positions
    want = {(tuple(pos[0][0]), tuple(pos[1][h])) for h in (2, 3)}
    assert {tuple(map(tuple, s)) for s in segs} == want
    monkeypatch.setattr(drawing, "MAX_MARKED", 10)
    big = [np.ones_like(c) for c in cut]
    assert drawing.mark_cut(ax, big) == 0 and "too many to mark" in ax.get_title()
    monkeypatch.setattr(drawing, "MAX_MARKED", 400)
    # hand_net's tasks are image tasks (one node per pixel map): a map's cut weights into one
    # neuron are one line; as moons-like tasks (one node per input) every weight is its own
    fig2, ax2 = plt.subplots()
    drawing.draw(view, tasks, order, ax2, "")
    both = [c.copy() for c in cut]
    both[0][2, 1] = True                         # a second pixel of map a into hidden 2
    assert drawing.mark_cut(ax2, both) == 2
    plain = [TaskInfo(t.name, "moons", t.inputs, t.outputs, 2, "ce") for t in tasks]
    fig3, ax3 = plt.subplots()
    drawing.draw(view, plain, order, ax3, "")
    assert drawing.mark_cut(ax3, both) == 3
    plt.close("all")
