"""Split criteria of docs/science.md §6 (effective split, coverage, λ, λ_w, E_×, functional split)
against slow, obviously-correct references: networkx reachability, brute-force path enumeration,
exact integer path counts and a plain per-network torch forward with E_× zeroed."""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch
from random_nets import plain_accuracy, random_tasks

from pipeline import graph
from pipeline.analysis import level_frames, per_seed, summarize
from pipeline.cut import split_distance
from pipeline.data import TaskInfo
from pipeline.functional import functional_split
from pipeline.graph import analyze, leakage, task_indicators
from pipeline.model import Layout


# ---- the reference: one networkx DiGraph per network, every definition read off literally ------
def graph_of(layers, wmasks):
    g = nx.DiGraph()
    g.add_nodes_from((l, n) for l, size in enumerate(layers) for n in range(size))
    for i, m in enumerate(wmasks):
        for v, u in zip(*np.nonzero(m)):
            g.add_edge((i, u), (i + 1, v))
    return g


def reference(layers, wmasks, weights, tasks):
    """liveness, purity, the component form of the effective split, coverage, λ, λ_w and E_×
    of one network, by networkx reachability and brute-force path enumeration."""
    g = graph_of(layers, wmasks)
    last = len(layers) - 1
    in_task = {(0, i): j for j, t in enumerate(tasks) for i in t.inputs}
    out_task = {(last, o): j for j, t in enumerate(tasks) for o in t.outputs}
    reach = {y: {x for x in in_task if nx.has_path(g, x, y)} for y in out_task}
    live = all(reach[y] for y in out_task)
    pure = all(in_task[x] == out_task[y] for y in out_task for x in reach[y])
    cov = []
    for j, t in enumerate(tasks):
        used = set().union(*[reach[y] for y in out_task if out_task[y] == j]) if t.outputs else set()
        cov.append(len({x for x in used if in_task[x] == j}) / len(t.inputs))
    # every directed input → output path, enumerated
    t_n = len(tasks)
    count, mag = np.zeros((t_n, t_n)), np.zeros((t_n, t_n))
    cross, alive = set(), set()
    for x, y in itertools.product(in_task, out_task):
        for path in nx.all_simple_paths(g, x, y) if x != y else []:
            edges = list(zip(path[:-1], path[1:]))
            count[in_task[x], out_task[y]] += 1
            mag[in_task[x], out_task[y]] += math.prod(
                abs(float(weights[a[0]][b[1], a[1]])) for a, b in edges)
            alive.update(edges)
            if in_task[x] != out_task[y]:
                cross.update(edges)
    lam = [(s.sum() - np.trace(s)) / s.sum() if s.sum() > 0 else math.nan for s in (count, mag)]
    # component form: every weakly connected component of the alive subgraph holds the inputs
    # and outputs of one task only, and every output is reached
    ag = nx.Graph(list(alive))
    one_task = all(len({in_task.get(n, out_task.get(n)) for n in c
                        if n in in_task or n in out_task}) <= 1
                   for c in nx.connected_components(ag))
    return dict(live=live, pure=pure, components_split=one_task and live, coverage=cov,
                leakage=lam[0], leakage_w=lam[1], cross=cross)


def check(layout, mask, theta, tasks):
    res = analyze(layout, mask, theta, tasks)
    for k in range(mask.shape[0]):
        wm = [w[k].numpy() for w, _ in layout.views(mask)]
        wv = [w[k].numpy() for w, _ in layout.views(theta)]
        ref = reference(layout.layers, wm, wv, tasks)
        assert bool(res.live[k]) == ref["live"], k
        assert bool(res.pure[k]) == ref["pure"], k
        assert bool(res.split_effective[k]) == (ref["live"] and ref["pure"])
        assert bool(res.split_effective[k]) == ref["components_split"]
        np.testing.assert_allclose(res.coverage[k].numpy(), ref["coverage"], rtol=0, atol=1e-15)
        for got, want in ((res.leakage[k].item(), ref["leakage"]),
                          (res.leakage_w[k].item(), ref["leakage_w"])):
            if math.isnan(want):
                assert math.isnan(got)
            else:
                assert got == pytest.approx(want, rel=1e-12, abs=1e-15)
        assert (res.leakage[k].item() == 0) == ref["pure"] or math.isnan(ref["leakage"])
        got_cross = set()
        for i, (cw, _) in enumerate(layout.views(res.cross)):
            for v, u in zip(*np.nonzero(cw[k].numpy())):
                got_cross.add(((i, u), (i + 1, v)))
        assert got_cross == ref["cross"], k
        assert not any(b[k].any() for _, b in layout.views(res.cross))  # biases are not edges
        if res.split_complete[k]:  # a complete split is an effective split with full coverage
            assert res.split_effective[k] and bool((res.coverage[k] == 1).all())
    return res


@pytest.fixture(params=["dense", "edge list"])
def products(request, monkeypatch):
    """Run a test with every layer's λ / E_× products dense, then as edge lists."""
    monkeypatch.setattr(graph, "SPARSE_DENSITY", 0.0 if request.param == "dense" else 1.1)
    return request.param


@pytest.mark.parametrize("case", range(80))
def test_random_masks_match_the_reference(case, products):
    rng = np.random.default_rng(1000 + case)
    n_tasks = [2, 3, 4][case % 3] if case % 10 else 1
    tasks, n_in, n_out = random_tasks(rng, n_tasks)
    hidden = [int(rng.integers(1, 7)) for _ in range(int(rng.integers(1, 4)))]
    layout = Layout((n_in, *hidden, n_out))
    k = 3
    density = rng.uniform(0.1, 0.9, size=(k, 1))
    mask = torch.from_numpy(rng.uniform(size=(k, layout.size)) < density)
    if case % 5 == 0:  # a fully pruned layer in one network
        w, b, _ = layout.offsets[int(rng.integers(layout.depth))]
        mask[0, w:b] = False
    if case % 7 == 0:  # an empty network
        mask[1] = False
    theta = torch.from_numpy(rng.normal(size=(k, layout.size))).float() * mask
    check(layout, mask, theta, tasks)


@pytest.mark.parametrize("case", range(6))
def test_image_like_masks(case, products):
    """Hundreds of inputs, most of them dead (IMP removes uninformative pixels first)."""
    rng = np.random.default_rng(2000 + case)
    per_task = [150, 150] if case % 2 else [100, 100, 100, 100]
    tasks, col, out = [], 0, 0
    for j, n in enumerate(per_task):
        tasks.append(TaskInfo(f"img{j}", "digits", list(range(col, col + n)),
                              list(range(out, out + 3)), 3, "ce"))
        col, out = col + n, out + 3
    layout = Layout((col, 12, 8, out))
    k = 2
    mask = torch.zeros(k, layout.size, dtype=torch.bool)
    for kk in range(k):
        for (w, b, e), n_in in zip(layout.offsets, layout.layers[:-1]):
            mask[kk, w:b] = torch.from_numpy(rng.uniform(size=b - w) < (0.01 if n_in > 100 else 0.35))
            mask[kk, b:e] = True
    if case == 0:  # make network 0 pure: task j's inputs feed only hidden neurons of task j
        w0 = layout.views(mask)[0][0][0]
        owner = torch.arange(12) % len(tasks)
        for j, t in enumerate(tasks):
            w0[owner != j, t.inputs[0]:t.inputs[-1] + 1] = False
    theta = torch.from_numpy(rng.normal(size=(k, layout.size))).float() * mask
    res = check(layout, mask, theta, tasks)
    assert (res.coverage < 0.2).all()  # most pixels are dead


def hand_net(impure=False, cut_input=False, zombie=False):
    """[4, 5, 4]: task a = inputs 0,1 → hidden 0,1 → outputs 0,1; task b = inputs 2,3 →
    hidden 2,3 → outputs 2,3; hidden 4 is a zombie (no incoming weight, bias 1) feeding one
    output of each task when `zombie`. `impure`: input 0 (task a) → hidden 3 (→ output 3 of
    task b). `cut_input`: input 1 has no weights left."""
    layout = Layout((4, 5, 4))
    w0 = torch.zeros(5, 4, dtype=torch.bool)
    w0[0:2, 0:2] = True
    w0[2:4, 2:4] = True
    w1 = torch.zeros(4, 5, dtype=torch.bool)
    w1[0:2, 0:2] = True
    w1[2:4, 2:4] = True
    if impure:
        w0[3, 0] = True
    if cut_input:
        w0[:, 1] = False
    if zombie:
        w1[1, 4] = w1[2, 4] = True
    mask = torch.cat([w0.reshape(-1), torch.ones(5, dtype=torch.bool), w1.reshape(-1),
                      torch.ones(4, dtype=torch.bool)]).unsqueeze(0)
    theta = torch.full(mask.shape, 0.5) * mask
    tasks = [TaskInfo("a", "digits", [0, 1], [0, 1], 2, "ce"),
             TaskInfo("b", "digits", [2, 3], [2, 3], 2, "ce")]
    return layout, mask, theta, tasks


def test_hand_built_impure_net_does_not_split():
    layout, mask, theta, tasks = hand_net(impure=True)
    res = check(layout, mask, theta, tasks)
    assert bool(res.live[0]) and not bool(res.pure[0])
    assert not bool(res.split_effective[0]) and not bool(res.split_complete[0])
    assert res.leakage[0].item() > 0
    (c0, _), (c1, _) = layout.views(res.cross)
    assert c0[0].nonzero().tolist() == [[3, 0]] and c1[0].nonzero().tolist() == [[2, 3], [3, 3]]


def test_dead_input_splits_effectively_not_completely():
    layout, mask, theta, tasks = hand_net(cut_input=True)
    res = check(layout, mask, theta, tasks)
    assert bool(res.split_effective[0]) and not bool(res.split_complete[0])
    assert res.coverage[0].tolist() == [0.5, 1.0]
    assert res.leakage[0].item() == 0 and not res.cross.any()


def test_zombie_feeding_both_tasks_is_not_a_cross_task_edge():
    """A bias is not an edge: a zombie's constant carries no information across tasks."""
    layout, mask, theta, tasks = hand_net(zombie=True)
    res = check(layout, mask, theta, tasks)
    assert bool(res.split_effective[0]) and bool(res.split_complete[0])
    assert not res.cross.any() and res.leakage[0].item() == 0


def test_fully_pruned_layer_and_empty_net():
    layout, mask, theta, tasks = hand_net()
    mask = mask.repeat(2, 1)
    w, b, _ = layout.offsets[1]
    mask[0, w:b] = False
    mask[1] = False
    res = check(layout, mask, theta.repeat(2, 1) * mask, tasks)
    assert not res.live.any() and not res.split_effective.any()
    assert torch.isnan(res.leakage).all() and (res.coverage == 0).all() and not res.cross.any()


# ---- path counts: float64 with power-of-two rescaling against exact integers -------------------
def exact_leakage(masks, tasks):
    """λ from exact Python-integer path counts, one input at a time."""
    s = [[0] * len(tasks) for _ in tasks]
    for j, t in enumerate(tasks):
        for i in t.inputs:
            v = [0] * masks[0].shape[1]
            v[i] = 1
            for m in masks:
                v = [sum(v[u] for u in np.nonzero(m[r])[0]) for r in range(m.shape[0])]
            for jj, tt in enumerate(tasks):
                s[j][jj] += sum(v[o] for o in tt.outputs)
    total = sum(map(sum, s))
    return Fraction(total - sum(s[j][j] for j in range(len(tasks))), total), total


def test_deep_wide_path_counts_do_not_overflow(products):
    """Width 200, depth 20, nearly dense: ~1e45 paths, beyond float32's range (3.4e38)."""
    rng = np.random.default_rng(5)
    tasks = [TaskInfo("a", "moons", [0, 1], [0], 2, "bce"), TaskInfo("b", "moons", [2, 3], [1], 2, "bce")]
    layers = (4, *[200] * 19, 2)
    masks = [rng.uniform(size=(o, i)) < 0.9 for i, o in zip(layers[:-1], layers[1:])]
    masks[0][:, 2:] = rng.uniform(size=(200, 2)) < 0.05  # task b reaches few neurons: λ ≠ ½
    want, total = exact_leakage(masks, tasks)
    assert total > 1e40  # the case is meaningful: float32 overflows
    ein, eout = task_indicators(tasks, 4, 2)
    b = [torch.from_numpy(m).unsqueeze(0) for m in masks]
    assert leakage(b, ein, eout).item() == pytest.approx(float(want), rel=1e-12)
    # and the float32 product of the masks really does overflow
    x = ein.float()
    for m in b:
        x = m[0].float() @ x
    assert not torch.isfinite(x).all()


# ---- functional split against a plain per-network torch forward --------------------------------
@pytest.mark.parametrize("case", range(12))
def test_functional_split_matches_a_plain_forward(case):
    rng = np.random.default_rng(3000 + case)
    tasks, n_in, n_out = random_tasks(rng, [2, 3, 4][case % 3], max_in=5, max_out=4)
    layout = Layout((n_in, 8, 6, n_out))
    k = 4
    mask = torch.from_numpy(rng.uniform(size=(k, layout.size)) < rng.uniform(0.2, 0.7, (k, 1)))
    theta = torch.from_numpy(rng.normal(size=(k, layout.size))).float() * mask
    n = 300
    x = torch.from_numpy(rng.normal(size=(n, n_in))).float()
    y = torch.from_numpy(rng.integers(0, 2, size=(n, len(tasks))))
    res = analyze(layout, mask, theta, tasks)
    cut = split_distance(layout, res.state, theta, tasks).cut_w
    tol = [0.0, 0.01, 0.05][case % 3]
    f = functional_split(layout, mask, theta, res.cross, cut, tasks, x, y, tol)
    f_live = functional_split(layout, mask, theta, res.cross, cut, tasks, x, y, tol, res.live)
    assert torch.equal(f.live_cut, f_live.live_cut) and torch.equal(f.split, f_live.split)
    for kk in range(k):
        ws = [w[kk].clone() for w, _ in layout.views(theta)]
        bs = [b[kk].clone() for _, b in layout.views(theta)]
        before = plain_accuracy(layout.layers, ws, bs, x, y, tasks)
        wm = [w[kk].numpy() for w, _ in layout.views(mask)]
        cross = reference(layout.layers, wm, [w.numpy() for w in ws], tasks)["cross"]
        for (i, u), (_, v) in cross:
            ws[i][v, u] = 0
        after = plain_accuracy(layout.layers, ws, bs, x, y, tasks)
        np.testing.assert_allclose(f.acc[kk].numpy(), before, atol=1e-12)
        np.testing.assert_allclose(f.acc_zeroed[kk].numpy(), after, atol=1e-12)
        # the criterion: the minimum cut C_w zeroed (tests/test_cut.py checks C_w itself)
        ws_cut = [w[kk] * ~c[kk] for (w, _), (c, _) in zip(layout.views(theta), layout.views(cut))]
        after_cut = plain_accuracy(layout.layers, ws_cut, bs, x, y, tasks)
        np.testing.assert_allclose(f.acc_cut[kk].numpy(), after_cut, atol=1e-12)
        zeroed = [m & ~c[kk].numpy() for m, (c, _) in zip(wm, layout.views(cut))]
        g = graph_of(layout.layers, zeroed)
        last = len(layout.layers) - 1
        live = all(any(nx.has_path(g, (0, i), (last, o)) for i in range(n_in))
                   for o in range(n_out))
        assert bool(f.live_cut[kk]) == live
        drops = [b - a for b, a in zip(before, after_cut)]
        assert bool(f.split[kk]) == (live and max(drops) <= tol + 1e-12)
        if res.split_effective[kk]:
            assert bool(f.split[kk]) and after_cut == before


def leaky_net():
    """hand_net plus a leak input 0 (task a) → hidden 4 → output 3 (task b), hidden 4's bias 0."""
    layout, mask, theta, tasks = hand_net()
    (w0, b0), (w1, _) = layout.views(mask)
    w0[0, 4, 0] = w1[0, 3, 4] = True
    theta = torch.full(mask.shape, 0.5) * mask
    layout.views(theta)[0][1][0, 4] = 0.0
    return layout, mask, theta, tasks


def test_an_unused_leak_is_a_functional_split_and_a_used_one_is_not():
    layout, mask, theta, tasks = leaky_net()
    res = analyze(layout, mask, theta, tasks)
    cut = split_distance(layout, res.state, theta, tasks).cut_w
    assert int(cut.sum()) == 1  # one of the two leak weights (0 → 4 or 4 → 3)
    assert not bool(res.split_effective[0]) and bool(res.live[0])
    (c0, _), (c1, _) = layout.views(res.cross)
    assert c0[0].nonzero().tolist() == [[4, 0]] and c1[0].nonzero().tolist() == [[3, 4]]
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(size=(400, 4))).float()
    # labels = the unmodified net's predictions: any prediction the leak changes costs accuracy
    logits = torch.relu(x @ layout.views(theta)[0][0][0].T + layout.views(theta)[0][1][0])
    logits = logits @ layout.views(theta)[1][0][0].T + layout.views(theta)[1][1][0]
    y = torch.stack([logits[:, 0:2].argmax(1), logits[:, 2:4].argmax(1)], dim=1)
    used = functional_split(layout, mask, theta, res.cross, cut, tasks, x, y, 0.01)
    assert bool(used.live_cut[0]) and used.acc[0].tolist() == [1.0, 1.0]
    assert used.acc_cut[0, 1] < 0.99 and not bool(used.split[0])
    x_unused = x.clone()
    x_unused[:, 0] = 0  # hidden 4 stays at ReLU(0) = 0: the leak carries nothing
    unused = functional_split(layout, mask, theta, res.cross, cut, tasks, x_unused, y, 0.0)
    assert torch.equal(unused.correct, unused.correct_cut) and bool(unused.split[0])


# ---- tables: one task is "not applicable", never 1.0 -------------------------------------------
def _tables(tasks, layout, mask, theta, func=None, headline="complete"):
    res = analyze(layout, mask, theta, tasks)
    prunable = layout.prunable(True)
    return res, level_frames(layout, res, mask, theta, prunable, tasks, [0], 0,
                             functional=func, headline=headline)["levels"]


def test_one_task_is_not_applicable_everywhere():
    layout = Layout((2, 3, 1))
    tasks = [TaskInfo("moons_0", "moons", [0, 1], [0], 2, "bce")]
    mask = torch.ones(1, layout.size, dtype=torch.bool)
    theta = torch.ones(1, layout.size)
    _, lv = _tables(tasks, layout, mask, theta)
    for c in ("split", "split_complete", "split_effective", "split_functional", "split_metric",
              "leakage", "leakage_w", "test_acc_cross_zeroed_moons_0", "split_output",
              "test_acc_cut_moons_0", "split_distance"):
        assert lv[c].isna().all(), c
    assert lv["coverage_moons_0"].tolist() == [1.0]  # a covariate, not a split quantity
    levels = pd.concat([lv.assign(level=i) for i in range(3)], ignore_index=True)
    imp = pd.DataFrame({"seed": 0, "level": range(3), "test_acc_moons_0": [0.9, 0.9, 0.5]})
    seeds = per_seed(levels, imp, tasks, 0.05)
    assert seeds["first_split_level"].isna().all()
    assert seeds["split_before_degradation"].isna().all()
    m = summarize(seeds, tasks, 0.05)
    assert m["split_applicable"] is False
    for block in ("split", "split_complete", "split_effective", "split_functional"):
        assert m[block]["fraction_split"] is None and m[block]["seeds_split"] is None
    import json
    json.dumps(m, allow_nan=False)  # `dvc exp show` reads it: no NaN


def test_headline_criterion_and_per_criterion_first_split():
    """Seed 0: effective split at level 1, complete at 2; per-seed and summary follow each."""
    layout, mask, theta, tasks = hand_net(impure=True)
    cut = hand_net(cut_input=True)[1]
    full = hand_net()[1]
    frames = []
    for level, m in enumerate([mask, cut, full]):  # (the masks need not shrink here)
        res, lv = _tables(tasks, layout, m, theta * m, headline="effective")
        x = torch.rand(50, 4)
        y = torch.randint(0, 2, (50, 2))
        cut = split_distance(layout, res.state, theta * m, tasks).cut_w
        func = functional_split(layout, m, theta * m, res.cross, cut, tasks, x, y, 0.01)
        frames.append(level_frames(layout, res, m, theta * m, layout.prunable(True), tasks, [0],
                                   level, functional=func, headline="effective")["levels"])
    levels = pd.concat(frames, ignore_index=True)
    assert levels["split"].tolist() == [False, True, True]
    assert levels["split_complete"].tolist() == [False, False, True]
    imp = pd.DataFrame({"seed": 0, "level": range(3), "test_acc_a": 0.9, "test_acc_b": 0.9})
    seeds = per_seed(levels, imp, tasks, 0.05)
    row = seeds.iloc[0]
    assert row["first_split_level"] == 1 and row["first_split_level_effective"] == 1
    assert row["first_split_level_complete"] == 2
    assert row["first_split_level_functional"] <= 1
    assert row["functional_gap_levels"] == 1 - row["first_split_level_functional"]
    m = summarize(seeds, tasks, 0.05, headline="effective")
    assert m["split_criterion"] == "effective"
    assert m["split"]["first_split_level"]["median"] == 1
    assert m["split_complete"]["first_split_level"]["median"] == 2
    assert m["split_effective"]["fraction_split_low"] == m["split"]["fraction_split_low"]


# ---- figures: drawn where the criteria apply, absent where they do not --------------------------
def test_split_figures_apply_only_where_a_split_can_exist():
    from pipeline import plots

    rng = np.random.default_rng(7)
    levels = pd.DataFrame({"seed": np.repeat(range(4), 3), "level": np.tile(range(3), 4)})
    for c in ("complete", "effective", "functional"):
        levels[f"split_{c}"] = rng.uniform(size=len(levels)) < 0.5
    levels["leakage"] = rng.uniform(0, 0.5, len(levels))
    levels["leakage_w"] = levels["leakage"] / 2
    levels.loc[levels["level"] == 2, ["leakage", "leakage_w"]] = 0.0  # pure: not on a log axis
    fig = plots.split_criteria_over_levels(levels)
    heights = [p.get_height() for p in fig.axes[0].patches]
    want = [levels[levels["level"] == lv][f"split_{c}"].mean()
            for c in ("complete", "effective", "functional") for lv in range(3)]
    assert heights == pytest.approx(want)
    assert plots.leakage_over_levels(levels) is not None
    one = levels.assign(**{c: np.nan for c in ("split_complete", "split_effective",
                                               "split_functional", "leakage", "leakage_w")})
    assert plots.split_criteria_over_levels(one) is None
    assert plots.leakage_over_levels(one) is None
    plots.plt.close("all")


def test_coverage_map_is_the_fraction_of_seeds_using_each_pixel():
    from pipeline import plots

    tasks = [TaskInfo("digits_0", "digits", list(range(64)), list(range(10)), 10, "ce"),
             TaskInfo("moons_1", "moons", [64, 65], [10], 2, "bce")]
    rng = np.random.default_rng(3)
    used = rng.uniform(size=(4, 3, 66)) < 0.6          # [levels, seeds, inputs]
    seeds = pd.DataFrame({"seed": [10, 11, 12], "first_split_level_effective": [2, np.nan, 1]})
    fig = plots.coverage_maps(used, np.arange(4), np.array([0] * 64 + [1] * 2), tasks, seeds,
                              np.array([10, 11, 12]))
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(images) == 3  # one image task: dense, first effective split, last level
    np.testing.assert_allclose(images[0], used[0, :, :64].mean(0).reshape(8, 8))
    first = np.stack([used[2, 0, :64], used[1, 2, :64]]).mean(0).reshape(8, 8)
    np.testing.assert_allclose(images[1], first)
    np.testing.assert_allclose(images[2], used[3, :, :64].mean(0).reshape(8, 8))
    assert plots.coverage_maps(used[:, :, 64:], np.arange(4), np.array([1, 1]), tasks[1:],
                               seeds, np.array([10, 11, 12])) is None
    plots.plt.close("all")


def test_study_summary_has_every_criterion_and_nulls_for_one_task():
    import json

    from pipeline.study import study_metrics, summary_row

    seeds = pd.DataFrame({
        "seed": range(4), "first_split_level": [3, None, 5, 4],
        "first_split_level_complete": [3, None, 5, 4],
        "first_split_level_effective": [2, 6, 5, 4],
        "first_split_level_functional": [2, 5, 4, 4], "functional_gap_levels": [1, None, 1, 0],
        "split_before_degradation": [True, False, True, False],
        "split_at_base_params": [False] * 4, "first_split_base_level": [3, None, 5, 4],
        "params_at_split": [50, None, 30, 40], "alive_at_split": [20, None, 10, 15],
        "alive_weights_at_split": [18, None, 9, 14], "dense_test_acc": 0.9,
        "test_acc_at_split": [0.9, None, 0.8, 0.85], "degradation_level": [5, 4, None, 3]})
    row = summary_row(seeds, pd.DataFrame({"seed": range(4)}), n_tasks=2)
    assert row["p_split"] == row["p_split_complete"] == 0.75 and row["p_split_effective"] == 1.0
    assert row["first_split_level_functional"] == 4 and row["functional_gap_levels"] == 1
    one = summary_row(seeds.assign(first_split_level=None), pd.DataFrame({"seed": range(4)}),
                      n_tasks=1)
    for key in ("p_split", "p_split_low", "p_split_effective", "p_split_functional_high",
                "p_split_before_degradation", "alive_weights_at_split"):
        assert math.isnan(one[key]), key
    summary = pd.DataFrame([{"config": "two", **row}, {"config": "one", **one}])
    m = study_metrics(summary)
    json.dumps(m, allow_nan=False)
    assert m["one"]["p_split_effective"] is None and m["two"]["p_split_effective"] == 1.0
