"""What dies during IMP (pipeline.dying, pipeline.dying_answers; docs/science.md §8) against slow,
obviously correct references: per-neuron loops over the level masks, plain sorts, plain
forward passes, bit-equal values of nets trained by the real engine, and scipy."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from pipeline import dying
from pipeline import dying_answers as da
from pipeline.analysis import wilson
from pipeline.config import ModelConfig, TrainConfig
from pipeline.data import TaskInfo
from pipeline.engine import Split, TaskLoss, train_population
from pipeline.graph import ALIVE, analyze
from pipeline.imp import Context, level_state, prune_global, train_level
from pipeline.model import Layout, init_population


# ---- random nested masks and plain per-neuron references ------------------------------------------
def nested_masks(rng, layout: Layout, k: int, levels: int, biases: bool = True,
                 dead_inputs: int = 0, empty_layer: int | None = None) -> list[torch.Tensor]:
    """levels + 1 masks [K, P], each a random subset of the one before (level 0 dense but for
    `dead_inputs` input features with no weight); biases stay when not prunable; weight matrix
    `empty_layer` loses every weight at the middle level."""
    is_bias = layout.is_bias()
    mask = torch.ones(k, layout.size, dtype=torch.bool)
    if dead_inputs:
        w, b, _ = layout.offsets[0]
        first = mask[:, w:b].view(k, layout.layers[1], layout.layers[0])
        first[:, :, :dead_inputs] = False
    out = [mask.clone()]
    for level in range(1, levels + 1):
        keep = torch.from_numpy(rng.random((k, layout.size)) < rng.uniform(0.55, 0.95))
        mask = mask & (keep | (is_bias if not biases else torch.zeros_like(is_bias)))
        if empty_layer is not None and level == levels // 2 + 1:
            w, b, _ = layout.offsets[empty_layer]
            mask[:, w:b] = False
        out.append(mask.clone())
    return out


def plain_flags(layout: Layout, mask: torch.Tensor, net: int, h: int):
    """Per neuron of hidden node layer h of network `net`: (has_in, has_out, bias unpruned),
    by loops over the weight masks."""
    w_in, b_in = layout.views(mask)[h - 1]
    w_out = layout.views(mask)[h][0]
    rows = []
    for n in range(layout.layers[h]):
        has_in = any(bool(w_in[net, n, u]) for u in range(layout.layers[h - 1]))
        has_out = any(bool(w_out[net, v, n]) for v in range(layout.layers[h + 1]))
        rows.append((has_in, has_out, bool(b_in[net, n])))
    return rows


def plain_episodes(layout, masks, biases, init, seeds):
    """Episodes and zombies without bias by a per-neuron state machine over the levels."""
    rows, without = [], [0] * len(seeds)
    last = len(masks) - 1
    for kind in ("zombie", "comatose"):
        for h in range(1, layout.depth):
            for net, seed in enumerate(seeds):
                flags = [plain_flags(layout, m, net, h) for m in masks]
                for n in range(layout.layers[h]):
                    f = [x[n] for x in flags]
                    zombie = [not i and o for i, o, _ in f]
                    if kind == "zombie":
                        for lv in range(len(f)):
                            if zombie[lv] and (lv == 0 or not zombie[lv - 1]) and not f[lv][2]:
                                without[net] += 1
                    on = [(zombie[lv] and f[lv][2]) if kind == "zombie" else (f[lv][0] and not f[lv][1])
                          for lv in range(len(f))]
                    bias_gone = next((lv for lv in range(len(f)) if not f[lv][2]), None)
                    lv = 0
                    while lv <= last:
                        if not on[lv]:
                            lv += 1
                            continue
                        start = lv
                        while lv + 1 <= last and on[lv + 1]:
                            lv += 1
                        if lv == last:
                            end = "censored"
                        elif kind == "comatose":
                            end = "detached"
                        else:
                            lost, gone = not f[lv + 1][1], not f[lv + 1][2]
                            end = ("outgoing_lost_and_bias_pruned" if lost and gone
                                   else "outgoing_lost" if lost else "bias_pruned")
                        rows.append({"kind": kind, "seed": seed, "layer": h - 1, "neuron": n,
                                     "first_level": start, "last_level": lv,
                                     "lifetime": lv - start + 1, "end": end,
                                     "censored": lv == last,
                                     "bias_trained": float(biases[start][h - 1][net, n]),
                                     "bias_init": float(init[h - 1][net, n]),
                                     "bias_pruned": not f[start][2],
                                     "bias_pruned_level": bias_gone})
                        lv += 1
    return pd.DataFrame(rows), without


CASES = [  # (layers, tasks, levels, biases prunable, dead inputs, empty layer, K)
    ((4, 5, 5, 2), 2, 6, True, 0, None, 3),
    ((3, 4, 2), 1, 5, True, 0, None, 2),                 # one task
    ((8, 6, 4, 3, 4), 4, 7, True, 0, None, 2),           # 4 tasks, 3 hidden layers
    ((4, 5, 5, 2), 2, 6, False, 0, None, 3),             # biases not prunable
    ((5, 6, 6, 3), 2, 5, True, 5, None, 2),              # every input dead
    ((4, 6, 6, 2), 2, 6, True, 0, 1, 2),                 # a fully pruned layer
    ((4, 3), 2, 4, True, 0, None, 2),                    # no hidden layer: no neuron at all
]


def random_run(case, seed):
    layers, n_tasks, levels, biases, dead, empty, k = case
    rng = np.random.default_rng(seed)
    layout = Layout(layers)
    tasks = [TaskInfo(f"t{i}", "moons", list(range(i, layers[0], n_tasks)),
                      list(range(i, layers[-1], n_tasks)), 2, "bce") for i in range(n_tasks)]
    tasks = [t for t in tasks if t.inputs and t.outputs]
    masks = nested_masks(rng, layout, k, levels, biases, dead, empty)
    thetas = [torch.from_numpy(rng.normal(size=(k, layout.size)).astype(np.float32)) * m
              for m in masks]
    return layout, tasks, masks, thetas


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_episodes_and_bias_survival_match_a_plain_loop(case, seed):
    layout, tasks, masks, thetas = random_run(case, seed)
    k = masks[0].shape[0]
    seeds = [10 + i for i in range(k)]
    init = torch.from_numpy(np.random.default_rng(seed + 7).normal(size=(k, layout.size))
                            .astype(np.float32))
    levels = [dying.neuron_level(layout, m, th, analyze(layout, m, th, tasks), None)
              for m, th in zip(masks, thetas)]
    init_bias = [b.numpy() for _, b in layout.views(init)]
    episodes, without = dying.neuron_episodes(levels, init_bias[:-1], seeds)
    biases = [[b.numpy() for _, b in layout.views(th)] for th in thetas]
    ref, ref_without = plain_episodes(layout, masks, biases, init_bias, seeds)
    assert list(without) == ref_without
    assert len(episodes) == len(ref)
    if len(ref):
        key = ["kind", "layer", "seed", "neuron", "first_level"]
        got = episodes.sort_values(key).reset_index(drop=True)
        ref = ref.sort_values(key).reset_index(drop=True)
        for col in ["kind", "seed", "layer", "neuron", "first_level", "last_level", "lifetime",
                    "end", "censored", "bias_pruned"]:
            assert got[col].tolist() == ref[col].tolist(), col
        assert np.allclose(got["bias_trained"], ref["bias_trained"])
        assert np.allclose(got["bias_init"], ref["bias_init"])
        as_levels = lambda col: [None if pd.isna(v) else int(v) for v in col]  # noqa: E731
        assert as_levels(got["bias_pruned_level"]) == as_levels(ref["bias_pruned_level"])
        assert got["frozen"].isna().all()  # frozen not measured here
    # events.csv: one row per comatose episode, detached right after its last level
    events = dying.comatose_events(episodes)
    coma = episodes[episodes["kind"] == "comatose"]
    assert len(events) == len(coma)
    assert (events["detached_level"].isna() == coma["censored"].to_numpy()).all()

    is_bias = layout.is_bias()
    bias_masks = [m[:, is_bias] for m in masks]
    survival = dying.bias_survival(bias_masks, thetas[0][:, is_bias], init[:, is_bias], layout,
                                   seeds, case[3])
    if not case[3]:
        assert len(survival) == 0 and list(survival.columns) == dying.SURVIVAL_COLUMNS
        return
    rows = []
    for net, seed_ in enumerate(seeds):
        for j in range(int(is_bias.sum())):
            gone = next((lv for lv, m in enumerate(bias_masks) if not bool(m[net, j])), None)
            rows.append((seed_, gone, len(masks) if gone is None else gone, gone is None))
    assert list(zip(survival["seed"], [None if pd.isna(v) else int(v)
                                       for v in survival["pruned_level"]],
                    survival["survival"], survival["censored"])) == rows
    dense = thetas[0][:, is_bias].numpy().ravel()
    assert (survival["sign"] == np.where(dense > 0, "positive",
                                         np.where(dense < 0, "negative", "zero"))).all()


# ---- τ_k, the budget spent on the dead ----------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_prune_threshold_is_the_smallest_kept_value_of_a_plain_sort(seed):
    rng = np.random.default_rng(seed)
    layout = Layout((5, 7, 4, 2))
    k, biases = 3, bool(seed % 2)
    prunable = layout.prunable(biases)
    prev = nested_masks(rng, layout, k, 2, biases)[2]
    ranked = torch.from_numpy(rng.normal(size=(k, layout.size)).astype(np.float32)) * prev
    if seed == 4:  # ties: equal magnitudes straddling the cut
        ranked = torch.round(ranked * 2) / 2
    keep = int((prev & prunable).sum(dim=1).min()) // 2
    mask = prune_global(ranked, prev, prunable, keep)
    tau = dying.prune_threshold(ranked, mask, prunable)
    for net in range(k):
        kept = sorted(abs(float(ranked[net, p])) for p in range(layout.size)
                      if mask[net, p] and prunable[p])
        assert tau[net] == kept[0]
        dropped = [abs(float(ranked[net, p])) for p in range(layout.size)
                   if prev[net, p] and not mask[net, p] and prunable[p]]
        assert all(v <= tau[net] for v in dropped)
    none = dying.prune_threshold(ranked, torch.zeros_like(mask), prunable)
    assert np.isnan(none).all()


@pytest.mark.parametrize("seed", range(4))
def test_budget_on_the_dead_matches_a_loop_over_states(seed):
    layout, tasks, masks, thetas = random_run(CASES[seed], seed)
    prunable = layout.prunable(CASES[seed][3])
    for lv in range(1, len(masks)):
        prev_state = analyze(layout, masks[lv - 1], thetas[lv - 1], tasks).state
        pruned, dead = dying.pruning_budget(masks[lv - 1], prev_state, masks[lv], prunable)
        for net in range(masks[0].shape[0]):
            gone = [p for p in range(layout.size) if masks[lv - 1][net, p]
                    and not masks[lv][net, p] and prunable[p]]
            assert pruned[net] == len(gone)
            assert dead[net] == sum(int(prev_state[net, p]) != ALIVE for p in gone)


# ---- folding: against a plain per-neuron fold and a plain forward ---------------------------------
def plain_fold(layout: Layout, mask: torch.Tensor, theta: torch.Tensor, net: int):
    """(folded weights and biases per layer as float64 numpy, added biases) of one network:
    I and O by loops, constants of the unreached neurons, b' of the kept ones."""
    ws = [w[net].double().numpy() * wm[net].numpy() for (w, _), (wm, _) in
          zip(layout.views(theta), layout.views(mask))]
    bs = [b[net].double().numpy() * bm[net].numpy() for (_, b), (_, bm) in
          zip(layout.views(theta), layout.views(mask))]
    wms = [wm[net].numpy() for wm, _ in layout.views(mask)]
    bms = [bm[net].numpy() for _, bm in layout.views(mask)]
    depth = layout.depth
    reach = [[True] * layout.layers[0]]
    for i in range(depth):
        reach.append([any(wms[i][v, u] and reach[i][u] for u in range(layout.layers[i]))
                      for v in range(layout.layers[i + 1])])
    out = [None] * (depth + 1)
    out[depth] = [True] * layout.layers[-1]
    for i in range(depth - 1, -1, -1):
        out[i] = [any(wms[i][v, u] and out[i + 1][v] for v in range(layout.layers[i + 1]))
                  for u in range(layout.layers[i])]
    const = [0.0] * layout.layers[0]
    fw, fb, added = [], [], 0
    for i in range(depth):
        last = i == depth - 1
        w_new = np.zeros_like(ws[i])
        b_new = np.zeros_like(bs[i])
        nxt = []
        for v in range(layout.layers[i + 1]):
            z = bs[i][v] + sum(ws[i][v, u] * const[u] for u in range(layout.layers[i])
                               if not reach[i][u])
            kept = last or (reach[i + 1][v] and out[i + 1][v])
            for u in range(layout.layers[i]):
                if wms[i][v, u] and reach[i][u] and out[i + 1][v]:
                    w_new[v, u] = ws[i][v, u]
            if kept:
                b_new[v] = z
                bias_alive = bms[i][v] and reach[i + 1][v] and out[i + 1][v]
                added += int(not bias_alive and z != 0)
            nxt.append(0.0 if reach[i + 1][v] else (z if last else max(z, 0.0)))
        fw.append(w_new)
        fb.append(b_new)
        const = nxt
    return fw, fb, added


def plain_forward(ws, bs, x):
    h = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w.T + b
        if i < len(ws) - 1:
            h = np.maximum(h, 0)
    return h


@pytest.fixture(params=["dense", "wide"])
def fold_path(request, monkeypatch):
    """The fold check's two paths: small layouts (one product per layer and network) and wide
    ones (sparse-aware, the first layer's product shared), forced here on small nets."""
    if request.param == "wide":
        monkeypatch.setattr(dying, "DENSE_BELOW", 0)
    return request.param


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_fold_matches_a_plain_fold_and_keeps_the_outputs(case, seed, fold_path):
    layout, tasks, masks, thetas = random_run(case, seed)
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(30, layout.layers[0]))
                         .astype(np.float32))
    for mask, theta in zip(masks, thetas):
        res = analyze(layout, mask, theta, tasks)
        folded = dying.fold(layout, res, theta)
        diff = dying.fold_difference(layout, theta, folded, x)
        assert (diff <= 1e-10).all()
        for net in range(mask.shape[0]):
            fw, fb, added = plain_fold(layout, mask, theta, net)
            assert folded.added[net] == added
            for i, b in enumerate(folded.biases):
                assert np.allclose(b[net].numpy(), fb[i], rtol=0, atol=1e-12)
            mine = layout.views(folded.network(layout, theta, net).unsqueeze(0))
            for i, (w, _) in enumerate(mine):
                assert np.array_equal(w[0].numpy(), fw[i])
            ws = [w[net].double().numpy() for w, _ in layout.views(theta)]
            bs = [b[net].double().numpy() for _, b in layout.views(theta)]
            assert np.abs(plain_forward(ws, bs, x.double().numpy())
                          - plain_forward(fw, fb, x.double().numpy())).max() < 1e-10
            alive = int((res.state[net] == ALIVE).sum())
            unchanged = bool((res.state[net][mask[net]] == ALIVE).all()) and \
                all(np.array_equal(fb[i], bs[i]) for i in range(layout.depth))
            assert bool(folded.changed[net]) != unchanged
            assert alive + added <= int(mask[net].sum()) + layout.layers[-1]


def run_info(layout, theta0, x, method="rewind", wd=0.0, seeds=None, biases=True):
    k = theta0.shape[0]
    return dying.RunInfo(layout, layout.prunable(biases), theta0, theta0, method,
                         dying.train_config("adam", 1e-3, 0.0, wd, None, True), 100, x,
                         seeds or list(range(k)))


def test_a_wrong_state_fails_the_fold_check_naming_seed_and_level(fold_path):
    layout, tasks, masks, thetas = random_run(CASES[0], 0)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32))
    tracker = dying.Tracker(run_info(layout, thetas[0], x, seeds=[5, 6, 7]))
    res = analyze(layout, masks[0], thetas[0], tasks)
    tracker.level(0, "", {}, masks[0], thetas[0], res, None)  # correct states pass
    res = analyze(layout, masks[1], thetas[1], tasks)
    bias = layout.views(masks[1])[0][1]
    hidden = res.reach_in[1][1] & res.reach_out[1][1] & bias[1]
    n = int(hidden.nonzero()[0])
    res.reach_in[1][1, n] = False  # a reached neuron called unreached: its inputs are folded away
    with pytest.raises(dying.FoldError, match="seed 6 level 1: folding"):
        tracker.level(1, "", {}, masks[1], thetas[1], res, None)


# ---- frozen parameters: a net trained by the real engine --------------------------------------------
def frozen_net():
    """[3, 4, 3, 2] with known gradient-free parameters: hidden neuron 0 of layer 1 is comatose
    (its outgoing weights pruned: its incoming weights and bias get no gradient), hidden neuron
    0 of layer 2 a frozen zombie (no incoming weight, bias −0.5: ReLU 0, so its outgoing
    weights and its bias get none), and input 2 is 0 in every training row (the weights reading
    it get none). Returns layout, θ₀, mask, the expected frozen set, tasks, splits."""
    layout = Layout((3, 4, 3, 2))
    theta0 = init_population(layout, ModelConfig(), [3])
    mask = torch.ones(1, layout.size, dtype=torch.bool)
    expected = torch.zeros(1, layout.size, dtype=torch.bool)
    (w1, b1), (w2, b2), (w3, _) = layout.views(mask)
    (e1, eb1), (e2, eb2), (e3, _) = layout.views(expected)
    (t1, tb1), (t2, tb2), _ = layout.views(theta0)
    w2[0, :, 0] = False                      # comatose: neuron 0 of layer 1 feeds nobody
    e1[0, 0, :] = True                        # its incoming weights and bias
    eb1[0, 0] = True
    w2[0, 0, :] = False                       # zombie: neuron 0 of layer 2 has no input
    tb2[0, 0] = -0.5                          # ... and a negative bias: frozen
    e3[0, :, 0] = True                        # its outgoing weights
    eb2[0, 0] = True
    e1[0, :, 2] = True                        # the weights reading the constant-zero input
    tb1[0, 1:] = 0.2                          # the other neurons active on some rows
    tb2[0, 1:] = 0.5
    theta0 = theta0 * mask
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    x[:, 2] = 0
    y = np.stack([(x[:, 0] > 0), (x[:, 1] > 0)], axis=1).astype(np.int64)
    split = Split(torch.from_numpy(x), torch.from_numpy(y))
    tasks = [TaskInfo("a", "moons", [0, 2], [0], 2, "bce"), TaskInfo("b", "moons", [1], [1], 2, "bce")]
    return layout, theta0, mask, expected & mask, tasks, split


@pytest.mark.parametrize("compact", [True, False])
def test_frozen_is_exactly_the_parameters_without_gradient(compact):
    layout, theta0, mask, expected, tasks, split = frozen_net()
    cfg = TrainConfig(max_epochs=15, patience=100, loss_cutoff=0.0, restore_best=False, lr=0.01,
                      compact=compact)
    result = train_population(layout, theta0, mask, split, split, TaskLoss(tasks), cfg,
                              engine="dense")
    state = layout.to_state(result.theta, mask)
    frozen = dying.frozen_params(state, "", theta0, 0.0)
    assert torch.equal(frozen, expected)
    assert int(expected.sum()) == 3 + 1 + 2 + 1 + 3  # comatose in + bias, zombie out + bias, input 2
    # the engine's record wins over the comparison; weight decay without it: not measured
    record = torch.zeros_like(mask)
    record[0, 0] = True
    assert torch.equal(dying.frozen_params({**state, "metrics.frozen": record}, "", theta0, 0.1),
                       record & mask)
    assert dying.frozen_params(state, "", theta0, 1e-4) is None


# ---- the death of frozen parameters: a tiny net trained by hand through IMP levels ---------------
def tiny_imp(method: str, levels: int = 4, biases: bool = True):
    """Level files (as dicts) of 3 seeds of [4, 6, 6, 2] trained by pipeline.imp's own functions
    on two tasks; input 3 is 0 in every training row (its weights are frozen from level 0)."""
    layout = Layout((4, 6, 6, 2))
    tasks = [TaskInfo("a", "moons", [0, 1], [0], 2, "bce"), TaskInfo("b", "moons", [2, 3], [1], 2, "bce")]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 4)).astype(np.float32)
    x[:, 3] = 0
    y = np.stack([x[:, 0] + x[:, 1] > 0, x[:, 2] > 0.3], axis=1).astype(np.int64)
    split = Split(torch.from_numpy(x), torch.from_numpy(y))
    seeds = [0, 1, 2]
    theta0 = init_population(layout, ModelConfig(), seeds)
    prunable = layout.prunable(biases)
    cfg = TrainConfig(max_epochs=25, patience=5, loss_cutoff=0.0, lr=0.02)
    ctx = Context(layout, tasks, {"train": split, "val": split, "test": split}, cfg,
                  ModelConfig(), seeds, prunable, theta0, method=method)
    mask = torch.ones(3, layout.size, dtype=torch.bool)
    result = train_population(layout, theta0, mask, split, split, TaskLoss(tasks), cfg)
    states = [level_state(ctx, result.theta, mask, result)]
    keep = int(prunable.sum())
    for level in range(1, levels + 1):
        prev = layout.from_state(states[-1])
        keep = int(keep * 0.6)
        mask = prune_global(prev, mask, prunable, keep)
        states.append({"seeds": torch.tensor(seeds), **train_level(ctx, mask, level, prev)})
    return layout, tasks, theta0, states, x


def plain_deaths(layout, theta0, states, method, biases=True):
    """{(net, param): (first frozen, predicted, actual, frozen levels)} by loops: frozen = bit-equal
    start and trained values, τ by a plain sort, v_j = θ₀ (rewind) or the frozen value; only
    parameters the pruning ranks (prunable) are followed."""
    masks = [layout.from_state(s, masks=True) for s in states]
    thetas = [layout.from_state(s) for s in states]
    prunable = layout.prunable(biases)
    k, p_all = masks[0].shape
    tau = [None] + [[min(abs(float(thetas[j - 1][n, p])) for p in range(p_all)
                         if masks[j][n, p] and prunable[p]) for n in range(k)]
                    for j in range(1, len(states))]
    out = {}
    for n in range(k):
        for p in range(p_all):
            if not prunable[p]:
                continue
            frozen = []
            for j, (m, th) in enumerate(zip(masks, thetas)):
                start = (theta0[n, p] if j == 0 or method == "rewind" else thetas[j - 1][n, p])
                frozen.append(bool(m[n, p]) and th[n, p].view(torch.int32) ==
                              start.view(torch.int32))
            if not any(frozen):
                continue
            f = frozen.index(True)
            pred = None
            for j in range(f + 1, len(states)):
                v = thetas[f][n, p] if j == f + 1 or method == "finetune" else theta0[n, p]
                if tau[j][n] > abs(float(v)):
                    pred = j
                    break
            actual = next((j for j in range(len(states)) if not masks[j][n, p]), None)
            out[(n, p)] = (f, pred, actual, sum(frozen))
    return out


@pytest.mark.parametrize("biases", [True, False], ids=["biases-pruned", "weights-only"])
@pytest.mark.parametrize("method", ["rewind", "finetune"])
def test_death_prediction_matches_a_plain_loop_on_a_net_trained_by_hand(method, biases):
    """Weights-only pruning never ranks a bias: frozen biases are counted (frozen_b) but not
    followed, so no bias gets a predicted death it cannot have (found at real MNIST: 12,584 frozen
    biases read as unexplained misses)."""
    layout, tasks, theta0, states, x = tiny_imp(method, biases=biases)
    tracker = dying.Tracker(run_info(layout, theta0, torch.from_numpy(x), method, biases=biases))
    for level, state in enumerate(states):
        mask, theta = layout.from_state(state, masks=True), layout.from_state(state)
        tracker.level(level, "", state, mask, theta, analyze(layout, mask, theta, tasks), None)
    frame = tracker.deaths.frame()
    ref = plain_deaths(layout, theta0, states, method, biases)
    assert len(frame) == len(ref) > 0
    assert (frame["kind"] == "bias").any() == biases
    got = {(int(r.seed), int(r.param)): (int(r.first_frozen_level),
                                         None if pd.isna(r.predicted_death) else int(r.predicted_death),
                                         None if pd.isna(r.actual_death) else int(r.actual_death),
                                         int(r.frozen_levels))
           for r in frame.itertuples()}
    assert got == ref
    assert (frame["exact"] == [g[1] == g[2] for g in got.values()]).all()
    # the constant-zero input's weights: frozen from level 0, and their deaths are predicted
    reads = frame[(frame["layer"] == 0) & (frame["param"] % 4 == 3) & (frame["kind"] == "weight")]
    assert len(reads) == 18 and (reads["first_frozen_level"] == 0).all()
    assert reads["exact"].all()
    # a miss is explained where it can be: the parameter unfroze before its death
    for r in frame[~frame["exact"]].itertuples():
        assert r.reason in ("unfroze", "tie", "")


def test_weight_decay_values_follow_the_decay_only_trajectory():
    """With weight decay (and the engine's record) a frozen parameter is ranked at the value a
    plain Adam loop with zero loss gradient reaches from θ_rewind in the seed's steps."""
    from pipeline.engine import Optimizer

    layout = Layout((2, 2, 1))
    theta0 = torch.tensor([[0.5, -0.3, 0.2, 0.9, 0.1, -0.1, 0.05, 0.4, 0.02]])
    run = run_info(layout, theta0, torch.zeros(1, 2), wd=0.05)
    deaths = dying.Deaths(run)
    mask = torch.ones(1, layout.size, dtype=torch.bool)
    frozen = torch.zeros_like(mask)
    frozen[0, 1] = True
    steps = [np.array([3]), np.array([5]), np.array([2])]
    deaths.add(0, mask, theta0, frozen, np.array([np.nan]), steps[0])
    deaths.add(1, mask, theta0, frozen, np.array([0.0]), steps[1])

    def plain(start: float, n: int) -> float:
        theta = torch.tensor([start])
        opt = Optimizer(run.train, theta)
        for _ in range(n):
            opt.step(theta, torch.zeros(1))
        return float(theta[0])

    assert deaths.value[0] == np.float32(plain(-0.3, 5))   # v_2: θ_rewind decayed over level 1
    tau = np.array([abs(plain(-0.3, 5)) * 1.01])
    deaths.add(2, mask, theta0, frozen, tau, steps[2])
    assert deaths.pred[0] == 2


# ---- statistics against scipy and plain loops ------------------------------------------------------
def test_statistics_match_scipy_on_fixed_inputs():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=25), rng.normal(size=18) + 0.5
    assert da.mann_whitney(a, b) == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert da.mann_whitney(a, []) is None
    x, y = rng.integers(0, 5, 40).astype(float), rng.normal(size=40)
    rho, p = da.spearman(x, y)
    ref = stats.spearmanr(x, y)
    assert (rho, p) == pytest.approx((ref.statistic, ref.pvalue))
    assert da.spearman([1, 1, 1], [1, 2, 3]) == (None, None)
    d = rng.normal(size=20)
    assert da.wilcoxon_p(d) == pytest.approx(stats.wilcoxon(d).pvalue)
    assert da.wilcoxon_p(np.zeros(5)) is None
    ys = rng.integers(0, 4, size=(6, 9)).astype(float)
    ys[2] = 1.0
    rows = da.row_spearman(np.arange(9.0), ys)
    for r, row in zip(rows, ys):
        ref = stats.spearmanr(np.arange(9.0), row).statistic if len(set(row)) > 1 else math.nan
        assert (math.isnan(r) and math.isnan(ref)) or r == pytest.approx(ref)
    groups = [rng.normal(size=10), rng.normal(size=12) + 1, rng.normal(size=8)]
    assert da.kruskal_p(groups) == pytest.approx(stats.kruskal(*groups).pvalue)
    assert da.kruskal_p([[1.0, 1.0], [1.0]]) is None
    block = da.proportion(7, 9)
    assert (block["k"], block["n"], block["fraction"]) == (7, 9, 7 / 9)
    assert (block["low"], block["high"]) == pytest.approx(wilson(7, 9))
    assert da.proportion(0, 0) == {"k": 0, "n": 0, "fraction": None, "low": None, "high": None}
    q = da.quartiles([3.0, 1.0, np.nan, 2.0, 10.0])
    s = pd.Series([3.0, 1.0, 2.0, 10.0])
    assert (q["median"], q["q25"], q["q75"], q["n"]) == (s.median(), s.quantile(0.25),
                                                         s.quantile(0.75), 4)


@pytest.mark.parametrize("seed", range(3))
def test_resampled_spearman_is_spearman_of_the_expanded_rows(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 6, 30).astype(float), rng.integers(0, 4, 30).astype(float)
    counts = rng.integers(0, 3, size=(20, 30))
    counts[0] = 0
    counts[0, :2] = 1
    got = da.resampled_spearman(x, y, counts)
    for r, c in zip(got, counts):
        idx = np.repeat(np.arange(30), c)
        ref = (stats.spearmanr(x[idx], y[idx]).statistic if len(idx) > 1
               and len(set(x[idx])) > 1 and len(set(y[idx])) > 1 else math.nan)
        assert (math.isnan(r) and math.isnan(ref)) or r == pytest.approx(ref)


def test_seed_bootstrap_matches_a_plain_loop():
    rng = np.random.default_rng(5)
    seeds = list(range(12))
    row_seeds = rng.integers(0, 12, 90)
    x, y = rng.integers(1, 15, 90).astype(float), rng.normal(size=90) + 0.1 * row_seeds
    got = da.seed_bootstrap(x, y, row_seeds, seeds, resamples=300, seed=4)
    values = []
    for draw in da.seed_draws(12, 300, 4):
        idx = np.concatenate([np.flatnonzero(row_seeds == seeds[d]) for d in draw])
        r = stats.spearmanr(x[idx], y[idx]).statistic
        if np.isfinite(r):
            values.append(r)
    low, high = np.percentile(values, [2.5, 97.5])
    assert (got["low"], got["high"], got["defined"]) == (pytest.approx(low), pytest.approx(high),
                                                          len(values))


# ---- the answers on hand-made tables ---------------------------------------------------------------
def episode(kind, seed, neuron, first, last, bias, censored=False, end=None, bias_level=None,
            layer=0):
    return {"kind": kind, "seed": seed, "layer": layer, "neuron": neuron, "first_level": first,
            "last_level": last, "lifetime": last - first + 1,
            "end": end or ("censored" if censored else "outgoing_lost" if kind == "zombie"
                           else "detached"),
            "censored": censored, "bias_trained": bias, "bias_init": 0.1, "bias_pruned": False,
            "frozen": None, "bias_pruned_level": bias_level}


def levels_table(counts: dict[int, list[int]], column: str = "comatose_neurons") -> pd.DataFrame:
    rows = [{"seed": s, "level": lv, column: c} for s, cs in counts.items() for lv, c in enumerate(cs)]
    return pd.DataFrame(rows)


def test_h1_rho_medians_and_censoring():
    rows = [episode("zombie", s, n, 1, 1 + life, bias, censored=(n == 0))
            for s in range(4) for n, (life, bias) in enumerate([(5, 0.9), (3, 0.4), (1, -0.2), (0, 0.0)])]
    eps = pd.DataFrame(rows)
    h1 = da.h1_zombie_lifetime_vs_bias(eps, [0, 1, 2, 3])
    assert h1["testable"] and h1["censored"] == 4
    ref = stats.spearmanr(eps["lifetime"], eps["bias_trained"])
    assert h1["all"]["rho"] == pytest.approx(ref.statistic)
    by = h1["all"]["lifetime_by_bias"]
    assert (by["positive"]["n"], by["nonpositive"]["n"]) == (8, 8)
    assert (by["positive"]["median"], by["nonpositive"]["median"]) == (5.0, 1.5)
    assert by["mannwhitney_p"] == pytest.approx(stats.mannwhitneyu(
        eps["lifetime"][eps["bias_trained"] > 0], eps["lifetime"][eps["bias_trained"] <= 0],
        alternative="two-sided").pvalue)
    assert h1["uncensored"]["episodes"] == 12
    low, high = h1["all"]["rho_ci95"]
    assert low - 1e-9 <= h1["all"]["rho"] <= high + 1e-9  # identical seeds: a point interval


def test_h2_to_h6_on_hand_tables():
    surv = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "sign": ["negative", "positive", "positive",
                                                             "negative", "negative", "positive"],
                         "survival": [2, 5, 7, 6, 3, 4], "censored": [False] * 6})
    h2 = da.h2_negative_biases_pruned_early(surv)
    assert h2["by_sign"]["negative"]["median_survival"] == 3.0
    assert h2["seeds_negative_lower"]["k"] == 1 and h2["seeds_negative_lower"]["n"] == 2
    # H3: seed 0 peaks first at level 2 of 4, seed 1 at level 1, seed 2 has none
    levels = levels_table({0: [0, 1, 3, 3, 1], 1: [0, 2, 1, 0, 0], 2: [0] * 5})
    eps = pd.DataFrame([episode("comatose", 0, 1, 1, 2, 0.1), episode("comatose", 1, 1, 1, 4, 0.1,
                                                                      censored=True)])
    h3 = da.h3_comatose_peak(levels, eps, 4)
    assert h3["peak_fraction"]["n"] == 2 and h3["peak_fraction"]["median"] == (0.5 + 0.25) / 2
    assert h3["lifetime"]["at_most_2"]["k"] == 1 and h3["censored"] == 1
    # H4: zombies rise in seed 0, fall in seed 1, are constant in seed 2; random masks below
    zl = levels_table({0: [0, 1, 2], 1: [3, 2, 1], 2: [1, 1, 1]}, "zombie_neurons")
    rnd = zl.assign(zombie_neurons=0)
    h4 = da.h4_zombies_at_high_sparsity(zl, rnd)
    assert h4["seeds_rho_positive"]["k"] == 1 and h4["seeds_rho_positive"]["n"] == 2
    assert h4["constant_seeds"] == 1 and h4["imp_vs_random"]["levels_tested"] == 3
    assert h4["imp_vs_random"]["per_level"][0]["wilcoxon_p"] == pytest.approx(
        stats.wilcoxon([0, 3, 1]).pvalue)
    # H5: bias first in 2 of 3 comatose neurons (one never detached), the budget per seed
    eps = pd.DataFrame([episode("comatose", 0, 0, 1, 2, 0.1, bias_level=2),
                        episode("comatose", 0, 1, 1, 2, 0.1, bias_level=3),
                        episode("comatose", 1, 0, 2, 4, 0.1, censored=True, bias_level=3)])
    budget = pd.DataFrame({"seed": [0, 0, 1, 1], "level": [1, 2, 1, 2],
                           "newly_pruned": [10, 10, 4, 0], "pruned_dead": [1, 3, 2, 0],
                           "pruned_dead_share": [0.1, 0.3, 0.5, np.nan]})
    h5 = da.h5_comatose_bias_before_detach(eps, budget, True)
    assert h5["bias_first"]["k"] == 2 and h5["bias_first"]["n"] == 3
    assert h5["per_layer"]["0"]["n"] == 3
    assert h5["budget_on_dead"]["share"]["median"] == pytest.approx((0.2 + 0.5) / 2)
    # H6: seeds 0, 1 split, seeds 2, 3 never
    seeds = pd.DataFrame({"seed": [0, 1, 2, 3], "first_split_level": [1, 2, None, None],
                          "degradation_level": [None, 2, 1, 1]})
    imp = pd.DataFrame({"seed": np.repeat([0, 1, 2, 3], 3), "level": [0, 1, 2] * 4,
                        "test_acc": [1, .9, .9, 1, .95, .9, 1, .7, .6, 1, .8, .5],
                        "test_acc_a": [1, .9, .9, 1, .95, .9, 1, .7, .6, 1, .8, .5],
                        "test_acc_b": [1] * 12})
    tasks = [TaskInfo("a", "moons", [0], [0], 2, "bce"), TaskInfo("b", "moons", [1], [1], 2, "bce")]
    h6 = da.h6_split_vs_unsplit_accuracy(seeds, imp, tasks, 2)
    at = h6["at_first_split_level"]
    assert at["level"] == 1 and at["test_acc"]["split_median"] == pytest.approx(0.925)
    assert at["test_acc"]["never_median"] == pytest.approx(0.75)
    assert h6["degradation_level"]["split_median"] == 2.5  # never degraded: T + 1 = 3


def test_not_testable_paths_carry_no_number():
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in dying.EPISODE_COLUMNS})
    plain = {"testable", "reason"}
    h1 = da.h1_zombie_lifetime_vs_bias(empty, [0])
    assert set(h1) == plain and h1["reason"] == "not testable: no zombie episode"
    zero = pd.DataFrame([episode("zombie", 0, n, 1, 2, 0.0) for n in range(3)])
    assert da.h1_zombie_lifetime_vs_bias(zero, [0])["reason"].startswith("not testable: zero biases")
    none = dying.bias_survival([], None, None, Layout((2, 2)), [0], False)
    h2 = da.h2_negative_biases_pruned_early(none)
    assert set(h2) == plain and h2["reason"] == "not testable: biases are not prunable"
    levels = levels_table({0: [0, 0, 0]})
    assert set(da.h3_comatose_peak(levels, empty, 2)) == plain
    zl = levels_table({0: [0, 0, 0]}, "zombie_neurons")
    assert set(da.h4_zombies_at_high_sparsity(zl, None)) == plain
    rising = levels_table({0: [0, 1, 2]}, "zombie_neurons")
    r = da.h4_zombies_at_high_sparsity(rising, None)["imp_vs_random"]
    assert set(r) == plain and "random-mask control" in r["reason"]
    budget = pd.DataFrame({"seed": [0], "level": [1], "newly_pruned": [3], "pruned_dead": [1],
                           "pruned_dead_share": [1 / 3]})
    h5 = da.h5_comatose_bias_before_detach(empty, budget, False)
    assert set(h5) == plain | {"budget_on_dead"} and "not prunable" in h5["reason"]
    assert h5["budget_on_dead"]["testable"]
    one = [TaskInfo("a", "moons", [0], [0], 2, "bce")]
    seeds = pd.DataFrame({"seed": [0, 1], "first_split_level": [None, None],
                          "degradation_level": [None, None]})
    assert set(da.h6_split_vs_unsplit_accuracy(seeds, None, one, 2)) == plain
    assert da.h6_split_vs_unsplit_accuracy(seeds, None, one * 2, 2)["reason"] == \
        "not testable: no seed splits"
    d = da.death_predicted(pd.DataFrame(), False, "rewind", 1e-4)
    assert set(d) == plain and d["reason"] == dying.NOT_MEASURED


# ---- the analyze stage on the paths the default run does not take ----------------------------------
@pytest.mark.parametrize("overrides", [
    {"prune.method": "finetune", "train.weight_decay": 1e-3},
    {"prune.rewind": 2},
], ids=["finetune-weight-decay", "rewind-point"])
def test_stage_on_other_methods_with_random_masks(tmp_path, overrides):
    """Stages run in process on a tiny run with the random-mask control: fine-tuning with weight
    decay and rewinding to the weights after 2 epochs (start values from models/init.pt's rewind
    weights). Both measure frozen parameters from the engine's record; with weight decay, level
    files without that record (written before it) leave frozen "not measured": NaN columns, no
    frozen deaths, the death prediction not testable. The random masks get the structural
    columns (no τ, no budget), the fold check passes everywhere and H4 compares IMP with them."""
    import json

    from conftest import tiny_params

    from pipeline import config
    from pipeline.stages import analyze, generate, imp, train, trajectory

    params = tiny_params(**{"prune.iterations": 3, "prune.random_mask_control": True,
                            "train.workers": 1, **overrides})
    run = config.parse(params)
    for stage in (generate, trajectory, train, imp, analyze):
        stage.run(run, tmp_path)
    folder = tmp_path / "reports/analysis"
    recorded = pd.read_csv(folder / "levels.csv")
    assert recorded["frozen_params"].notna().all()  # the engine's record, whatever the method
    measured = "train.weight_decay" not in overrides
    if not measured:  # level files from before the record: weight decay leaves frozen unknown
        for path in sorted((tmp_path / "models/imp").glob("level_*.pt")):
            state = torch.load(path, weights_only=True)  # metrics.frozen or live.frozen_bits
            torch.save({k: v for k, v in state.items() if "frozen" not in k}, path)
        # such files come with an older manifest, which analyze does not check them against
        (tmp_path / "models/imp/manifest.json").unlink()
        analyze.run(run, tmp_path)
    levels, random = pd.read_csv(folder / "levels.csv"), pd.read_csv(folder / "random_masks.csv")
    for table in (levels, random):
        assert table["frozen_params"].notna().all() == measured
        assert table["frozen_params"].isna().all() != measured
    assert levels.loc[levels["level"] > 0, "prune_threshold"].notna().all()
    assert random["prune_threshold"].isna().all() and random["pruned_dead_share"].isna().all()
    assert len(random) and random["alive_share"].notna().all()
    assert (pd.concat([levels, random])["fold_max_abs_diff"] <= 1e-5).all()
    deaths = pd.read_csv(folder / "frozen_deaths.csv.gz")
    assert list(deaths.columns) == dying.DEATH_COLUMNS and (len(deaths) > 0) == measured
    full = json.loads((folder / "dying.json").read_text())
    if not measured:
        assert full["death_predicted"] == {"testable": False, "reason": dying.NOT_MEASURED}
    h4 = full["h4_zombies_at_high_sparsity"]
    assert not h4["testable"] or h4["imp_vs_random"]["testable"]
    # metrics.json: the headlines of the same answers, null where not testable
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())["dying"]
    assert metrics == da.headlines(full)
    for key, block in metrics.items():
        if isinstance(block, dict) and not block["testable"]:
            assert block["reason"] == full[key]["reason"]
            assert all(v is None or v == [None, None] for k, v in block.items()
                       if k not in ("testable", "reason", "budget_on_dead"))
