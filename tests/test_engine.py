"""IMP engine: exact masks, global pruning, rewinding, batched = separate, per-net stopping."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline import config, imp
from pipeline.data import build, task_infos
from pipeline.model import Layout, forward, init_population
from pipeline.train import STOP_REASONS, Split, TaskLoss, loss_and_grad, train_population


@pytest.fixture(scope="module")
def problem():
    params = config.parse({"data": {"n_samples": 150, "tasks": ["moons", "circles"]},
                           "model": {"hidden": [8, 8], "seeds": [0, 1, 2]},
                           "train": {"max_epochs": 80, "patience": 1000, "lr": 0.01,
                                     "loss_cutoff": 0.0}})
    arrays, meta = build(params.data)
    splits = {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
              for s, a in arrays.items()}
    layout = Layout(tuple(params.base_layers))
    return params, task_infos(params.data.tasks), splits, layout


def run(problem, theta0, mask, **train_overrides):
    params, tasks, splits, layout = problem
    cfg = dataclasses.replace(params.train, **train_overrides)
    return train_population(layout, theta0, mask, splits["train"], splits["val"], TaskLoss(tasks),
                            cfg, shuffle_seeds=[10 + i for i in range(len(theta0))])


def test_pruned_entries_stay_exactly_zero(problem):
    params, tasks, splits, layout = problem
    theta0 = init_population(layout, params.model, params.model.seeds)
    mask = torch.rand(theta0.shape, generator=torch.Generator().manual_seed(0)) < 0.4
    for opt in ("adam", "sgd"):
        res = run(problem, theta0, mask, optimizer=opt, momentum=0.9)
        assert res.epochs.min() == 80
        assert torch.all(res.theta[~mask] == 0)
        improved = res.best_epoch > 0  # else the start weights are the best ones, kept as they are
        assert improved.any()
        # every survivor with a gradient at the start has moved (others sit behind dead ReLUs)
        start = (theta0 * mask).requires_grad_(True)
        (grad,) = torch.autograd.grad(TaskLoss(tasks)(forward(layout, start, splits["train"].x),
                                                      splits["train"].y).sum(), start)
        moving = (grad != 0) & mask & improved.unsqueeze(1)
        assert int(moving.sum()) > 20
        assert bool((res.theta[moving] != theta0[moving]).all())


def test_adam_matches_torch_optim(problem):
    params, tasks, splits, layout = problem
    theta0 = init_population(layout, params.model, [5])
    mask = torch.ones_like(theta0, dtype=torch.bool)
    res = run(problem, theta0, mask, max_epochs=30)
    # reference: torch.optim.Adam on the same flat parameters, full batch
    theta = theta0.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=params.train.lr)
    loss_fn = TaskLoss(tasks)
    best, best_val = theta0.clone(), float("inf")
    for _ in range(30):
        opt.zero_grad()
        loss_fn(forward(layout, theta, splits["train"].x), splits["train"].y).sum().backward()
        opt.step()
        with torch.no_grad():
            val = loss_fn(forward(layout, theta, splits["val"].x), splits["val"].y).item()
        if val < best_val:
            best_val, best = val, theta.detach().clone()
    torch.testing.assert_close(res.theta, best, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size", [None, 32])
def test_batched_equals_separate(problem, batch_size):
    params, tasks, splits, layout = problem
    theta0 = init_population(layout, params.model, params.model.seeds)
    mask = torch.rand(theta0.shape, generator=torch.Generator().manual_seed(1)) < 0.7
    together = run(problem, theta0, mask, batch_size=batch_size, max_epochs=40)
    for k in range(len(theta0)):
        params_k, tasks_k, splits_k, _ = problem
        cfg = dataclasses.replace(params.train, batch_size=batch_size, max_epochs=40)
        alone = train_population(layout, theta0[k:k + 1], mask[k:k + 1], splits["train"],
                                 splits["val"], TaskLoss(tasks), cfg, shuffle_seeds=[10 + k])
        torch.testing.assert_close(together.theta[k:k + 1], alone.theta, rtol=1e-4, atol=1e-5)
        assert together.epochs[k] == alone.epochs[0]


def test_init_does_not_depend_on_population():
    layout = Layout((4, 6, 2))
    cfg = config.ModelConfig()
    assert torch.equal(init_population(layout, cfg, [3, 7])[1], init_population(layout, cfg, [7])[0])
    for init in config.INITS:
        for bias in config.BIAS_INITS:
            t = init_population(layout, dataclasses.replace(cfg, init=init, bias_init=bias), [0])
            assert torch.isfinite(t).all()
            b = layout.views(t)[0][1]
            assert (b == 0).all() == (bias == "zero")


def test_per_network_early_stopping(problem):
    params, tasks, splits, layout = problem
    theta0 = init_population(layout, params.model, params.model.seeds)
    mask = torch.ones_like(theta0, dtype=torch.bool)
    mask[1] = False  # network 1 cannot learn: its validation loss never improves
    res = run(problem, theta0, mask, patience=5, max_epochs=60)
    assert res.stop_reasons[1] == "patience" and res.epochs[1] == 5 and res.best_epoch[1] == 0
    assert res.epochs[0] > 5 and res.epochs[2] > 5
    # curves stop where the network stopped
    assert torch.isnan(res.val_curve[1, 5:]).all() and torch.isfinite(res.val_curve[0, :6]).all()
    # the kept weights are those of the best validation epoch
    best = int(res.best_epoch[0])
    curve = res.val_curve[0]
    assert curve[best - 1] == curve[torch.isfinite(curve)].min()


def test_loss_cutoff_and_max_epochs(problem):
    params, tasks, splits, layout = problem
    theta0 = init_population(layout, params.model, params.model.seeds)
    mask = torch.ones_like(theta0, dtype=torch.bool)
    res = run(problem, theta0, mask, loss_cutoff=100.0)
    assert res.stop_reasons == ["cutoff"] * 3 and res.epochs.tolist() == [1, 1, 1]
    res = run(problem, theta0, mask, max_epochs=7)
    assert res.stop_reasons == ["max_epochs"] * 3 and res.epochs.tolist() == [7, 7, 7]


def test_divergence_is_reported(problem):
    params, tasks, splits, layout = problem
    theta0 = init_population(layout, params.model, params.model.seeds)
    mask = torch.ones_like(theta0, dtype=torch.bool)
    res = run(problem, theta0 * 1e3, mask, optimizer="sgd", lr=1e12, max_epochs=50)
    assert "diverged" in res.stop_reasons
    assert STOP_REASONS.index("diverged") in res.stop_code.tolist()


def test_global_pruning_keeps_exactly_p_with_ties():
    layout = Layout((2, 3, 1))
    prunable = layout.prunable(biases=True)
    theta = torch.tensor([[0.5, -0.5, 0.1, 0.9, 0.5, 0.2, 0.3, 0.3, 0.3, 0.4, 0.4, 0.4, 0.05]])
    mask = torch.ones_like(theta, dtype=torch.bool)
    new = imp.prune_global(theta, mask, prunable, 6)
    assert int(new.sum()) == 6
    # |θ| sorted: .9 | .5 .5 .5 | .4 .4 .4 | ...; keep .9, the three .5 and the first two .4s
    kept = new[0].nonzero().reshape(-1).tolist()
    assert kept == [0, 1, 3, 4, 9, 10]
    # a pruned parameter is never brought back, whatever its value
    theta2 = theta.clone()
    theta2[0, 2] = 100.0
    newer = imp.prune_global(theta2, new, prunable, 4)
    assert not newer[0, 2] and int(newer.sum()) == 4 and bool((newer <= new).all())


def test_biases_not_prunable_are_kept():
    layout = Layout((2, 3, 1))
    prunable = layout.prunable(biases=False)
    theta = torch.randn(2, layout.size, generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(theta, dtype=torch.bool)
    new = imp.prune_global(theta, mask, prunable, 3)
    assert (new[:, layout.is_bias()]).all()
    assert (new[:, ~layout.is_bias()].sum(dim=1) == 3).all()


def test_random_masks_keep_per_layer_counts():
    layout = Layout((4, 6, 5, 2))
    mask = torch.rand(3, layout.size, generator=torch.Generator().manual_seed(0)) < 0.3
    rand = imp.random_masks(mask, layout, [1, 2, 3])
    for (w, b, e) in layout.offsets:
        for lo, hi in ((w, b), (b, e)):
            assert torch.equal(mask[:, lo:hi].sum(1), rand[:, lo:hi].sum(1))
    assert not torch.equal(mask, rand)


def test_level_starts_from_rewound_weights(problem, monkeypatch):
    params, tasks, splits, layout = problem
    theta0 = init_population(layout, params.model, params.model.seeds)
    trained = theta0 + 0.1
    mask = imp.prune_global(trained, torch.ones_like(theta0, dtype=torch.bool),
                            layout.prunable(True), 50)
    seen = {}
    real = imp.train_population

    def spy(layout_, start, mask_, *a, **kw):
        seen["start"], seen["mask"] = start.clone(), mask_.clone()
        return real(layout_, start, mask_, *a, **kw)

    monkeypatch.setattr(imp, "train_population", spy)
    ctx = imp.Context(layout, tasks, splits, dataclasses.replace(params.train, max_epochs=3),
                      params.model, list(params.model.seeds), layout.prunable(True), theta0,
                      reinit_control=True, random_mask_control=True)
    state = imp.train_level(ctx, mask, 1)
    k = len(params.model.seeds)
    assert torch.equal(seen["start"][:k], theta0 * mask)          # survivors rewound to θ₀
    assert torch.equal(seen["mask"][:k], mask)
    assert torch.equal(seen["mask"][k:2 * k], mask)                # re-init control: same mask
    assert not torch.equal(seen["start"][k:2 * k], theta0 * mask)  # … fresh weights
    assert torch.equal(state["layers.0.weight_mask"], layout.views(mask)[0][0])
    assert "reinit.metrics.test_loss" in state and "random.layers.0.weight_mask" in state


@pytest.mark.parametrize("kinds,per_net_batch", [(["moons", "circles"], False),
                                                 (["moons", "digits", "circles"], True)])
def test_hand_written_gradient_equals_autograd(kinds, per_net_batch):
    params = config.parse({"data": {"n_samples": 60, "tasks": kinds},
                           "model": {"hidden": [7, 5, 6], "seeds": [0, 1]}})
    arrays, _ = build(params.data)
    tasks = task_infos(kinds)
    layout = Layout(tuple(params.base_layers))
    theta = init_population(layout, params.model, [0, 1])
    x, y = torch.from_numpy(arrays["train"]["x"]), torch.from_numpy(arrays["train"]["y"])
    if per_net_batch:  # mini-batches: every network sees its own samples
        perm = torch.stack([torch.randperm(len(x), generator=torch.Generator().manual_seed(s))
                            for s in (0, 1)])[:, :16]
        x, y = x[perm], y[perm]
    loss_fn = TaskLoss(tasks)
    grad = torch.empty_like(theta)
    loss = loss_and_grad(layout, theta, x, y, loss_fn, grad)
    t = theta.clone().requires_grad_(True)
    ref_loss = loss_fn(forward(layout, t, x), y)
    (ref_grad,) = torch.autograd.grad(ref_loss.sum(), t)
    torch.testing.assert_close(loss, ref_loss.detach())
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_ten_class_task_learns_side_by_side_with_a_binary_one():
    params = config.parse({"data": {"n_samples": 400, "tasks": ["digits", "moons"]},
                           "model": {"hidden": [32], "seeds": [0, 1]},
                           "train": {"max_epochs": 150, "lr": 0.01, "patience": 20}})
    arrays, _ = build(params.data)
    tasks = task_infos(params.data.tasks)
    splits = {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
              for s, a in arrays.items()}
    layout = Layout(tuple(params.base_layers))
    theta0 = init_population(layout, params.model, [0, 1])
    res = train_population(layout, theta0, torch.ones_like(theta0, dtype=torch.bool),
                           splits["train"], splits["val"], TaskLoss(tasks), params.train)
    from pipeline.train import evaluate
    acc = evaluate(layout, res.theta, splits["test"], TaskLoss(tasks)).accuracy
    assert (acc[:, 0] > 0.8).all(), acc   # digits: chance is 0.1
    assert (acc[:, 1] > 0.7).all(), acc   # moons: chance is 0.5


def test_device_auto_falls_back_to_cpu_and_missing_cuda_is_one_clear_error():
    from pipeline.config import ConfigError
    from pipeline.train import resolve_device
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
        return
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="train.device: 'cuda' is not allowed"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("batch_size", [None, 32])
def test_training_on_cuda_matches_cpu(problem, batch_size):
    """train.device: cuda trains the compacted population on the GPU and hands back CPU tensors
    that agree with the CPU run to float tolerance (cuBLAS rounds differently)."""
    params, tasks, splits, layout = problem
    theta0 = init_population(layout, params.model, params.model.seeds)
    mask = torch.rand(theta0.shape, generator=torch.Generator().manual_seed(2)) < 0.5
    cpu = run(problem, theta0, mask, batch_size=batch_size, max_epochs=30)
    gpu = run(problem, theta0, mask, batch_size=batch_size, max_epochs=30, device="cuda")
    assert gpu.theta.device.type == "cpu" and torch.all(gpu.theta[~mask] == 0)
    torch.testing.assert_close(gpu.theta, cpu.theta, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(gpu.val_curve, cpu.val_curve, rtol=1e-3, atol=1e-4)


def sparse_masks(layout, k, seed, density):
    """Random sparse masks with the awkward cases in them: network 0 has its first hidden layer
    fully pruned except one bias (a zombie neuron), network 1 has no path at all."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(k, layout.size, generator=g) < density
    w0, b0, e0 = layout.offsets[0]
    mask[0, w0:b0] = False
    mask[0, b0:e0] = False
    mask[0, b0 + 2] = True
    w1, b1, _ = layout.offsets[1]
    mask[1, w1:b1] = False
    return mask


@pytest.mark.parametrize("seed,density", [(0, 0.15), (1, 0.08), (2, 0.2)])
def test_compaction_keeps_exactly_the_neurons_on_a_source_to_output_path(seed, density):
    import networkx as nx

    from pipeline.model import compaction
    layout = Layout((4, 20, 17, 12, 2))
    mask = sparse_masks(layout, 4, seed, density)
    plan = compaction(layout, mask)
    assert plan is not None and plan.layout.layers[1:-1] != (20, 17, 12)
    for k in range(4):
        graph = nx.DiGraph()
        graph.add_nodes_from(["source", "sink"])
        for i, (w, b) in enumerate(layout.views(mask[k:k + 1])):
            for o, j in w[0].nonzero().tolist():
                graph.add_edge((i, j), (i + 1, o))
            for o in b[0].nonzero().flatten().tolist():
                graph.add_edge("source", (i + 1, o))  # an unpruned bias drives the neuron
        graph.add_edges_from(("source", (0, j)) for j in range(4))
        graph.add_edges_from(((layout.depth, o), "sink") for o in range(2))
        for layer in range(1, layout.depth):
            start = layout.offsets[layer - 1][1]  # the layer's biases: one entry per neuron
            lo, hi = layout.offsets[layer - 1][1], layout.offsets[layer - 1][2]
            slots = (plan.index[k] >= lo) & (plan.index[k] < hi) & plan.valid[k]
            kept = sorted((plan.index[k][slots] - start).tolist())
            expected = [j for j in range(layout.layers[layer]) if (layer, j) in graph
                        and nx.has_path(graph, "source", (layer, j))
                        and nx.has_path(graph, (layer, j), "sink")]
            assert kept == expected


def test_compacted_training_equals_full_training(problem):
    params, tasks, splits, layout = problem
    layout = Layout((4, 24, 20, 2))
    theta0 = init_population(layout, params.model, [0, 1, 2, 3])
    mask = sparse_masks(layout, 4, 3, 0.3)
    cfg = dataclasses.replace(params.train, max_epochs=60)
    from pipeline.model import compaction
    plan = compaction(layout, mask)
    assert plan is not None and plan.layout.layers[1:3] != (24, 20)
    out = {}
    for compact in (False, True):
        out[compact] = train_population(layout, theta0, mask, splits["train"], splits["val"],
                                        TaskLoss(tasks), dataclasses.replace(cfg, compact=compact))
    full, small = out[False], out[True]
    torch.testing.assert_close(small.theta, full.theta, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(small.val_curve, full.val_curve, rtol=1e-4, atol=1e-6)
    assert torch.equal(small.epochs, full.epochs)
    # entries of dropped neurons are exactly where training leaves them: the start
    dropped = torch.ones_like(mask)
    rows = torch.arange(4).unsqueeze(1).expand_as(plan.index)
    dropped[rows[plan.valid], plan.index[plan.valid]] = False
    assert dropped.any()
    assert torch.equal(small.theta[dropped], full.theta[dropped])
    assert torch.equal(small.theta[dropped], (theta0 * mask)[dropped])
    assert torch.all(small.theta[~mask] == 0)


def test_canonical_widths_are_multiples_of_eight_and_at_least_sixteen():
    from pipeline.model import canonical_width, compaction
    assert [canonical_width(n) for n in (0, 1, 9, 16, 17, 35, 40, 57)] == \
        [16, 16, 16, 16, 24, 40, 40, 64]
    layout = Layout((4, 40, 12, 2))
    mask = torch.zeros(2, layout.size, dtype=torch.bool)
    w0, b0, e0 = layout.offsets[0]
    w1, b1, e1 = layout.offsets[1]
    w2, b2, _ = layout.offsets[2]
    # network 0: inputs → hidden-1 neurons 0..9 → hidden-2 neuron 0 → output 0
    for j in range(10):
        mask[0, w0 + j * 4] = True
        mask[0, w1 + j] = True
    mask[0, w2] = True
    plan = compaction(layout, mask[:1])
    assert plan.kept.tolist() == [[10, 1]] and plan.layout.layers == (4, 16, 16, 2)
    mask[1, b0:e0] = True                               # network 1: 35 biased neurons …
    mask[1, w1:w1 + 35] = True                          # … feeding hidden-2 neuron 0 …
    mask[1, w2] = True                                  # … which feeds output 0
    plan = compaction(layout, mask)
    assert plan.kept.tolist() == [[10, 1], [35, 1]]
    assert plan.layout.layers == (4, 40, 16, 2)         # the widest network's canonical widths
    dense = torch.ones(1, layout.size, dtype=torch.bool)
    assert compaction(layout, dense).layout.layers == (4, 40, 16, 2)  # 12 is not canonical
    assert compaction(Layout((4, 40, 16, 2)), torch.ones(1, Layout((4, 40, 16, 2)).size,
                                                         dtype=torch.bool)) is None


@pytest.mark.parametrize("hidden,batch_size", [((40, 40), None), ((13, 7), None), ((24, 9), 32)])
def test_a_network_computes_the_same_bits_alone_and_in_any_batch(problem, hidden, batch_size):
    """Canonical compact layouts make a network's arithmetic a function of its own mask: the
    same bits alone, in a batch with wider networks, in any order (the basis of identical
    results for any train.workers and any set of seeds). Odd widths on purpose: without
    compaction the batched matmul rounds them by position."""
    params, tasks, splits, _ = problem
    layout = Layout((4, *hidden, 2))
    seeds = list(range(32))  # "a seed alone vs inside 32"
    theta0 = init_population(layout, params.model, seeds)
    g = torch.Generator().manual_seed(7)
    density = torch.tensor([0.9, 0.15, 0.5, 0.3, 1.0, 0.08, 0.6, 0.2] * 4).unsqueeze(1)
    mask = torch.rand(theta0.shape, generator=g) < density   # very different kept widths
    cfg = dataclasses.replace(params.train, batch_size=batch_size, max_epochs=60, patience=3,
                              compact=True)
    shuffle = [100 + s for s in seeds]

    def train(rows):
        return train_population(layout, theta0[rows], mask[rows], splits["train"], splits["val"],
                                TaskLoss(tasks), cfg, shuffle_seeds=[shuffle[r] for r in rows])
    together = train(list(range(32)))
    assert len(set(together.epochs.tolist())) > 1  # networks leave the batch at other epochs
    for rows in ([1], [3, 1], [5, 0, 2], [31, 17, 4, 9]):
        part = train(rows)
        assert torch.equal(part.theta, together.theta[rows])
        assert torch.equal(part.epochs, together.epochs[rows])
        e = part.val_curve.shape[1]
        assert torch.equal(part.val_curve.nan_to_num(-1), together.val_curve[rows, :e].nan_to_num(-1))


def plain_training(layout, theta0, mask, splits, loss_fn, cfg):
    """The textbook loop the trainer must equal bit for bit: per epoch one gradient step on the
    training rows, then a separate validation pass, stopping bookkeeping in torch, one network
    at a time (full batch, Adam)."""
    import math

    from pipeline.train import ADAM_BETAS, ADAM_EPS
    b1, b2 = ADAM_BETAS
    out = []
    for k in range(theta0.shape[0]):
        maskf = mask[k:k + 1].float()
        theta = theta0[k:k + 1] * maskf
        m, v, grad = torch.zeros_like(theta), torch.zeros_like(theta), torch.empty_like(theta)
        val = lambda: loss_fn(forward(layout, theta, splits["val"].x), splits["val"].y)  # noqa: E731
        best, best_val, best_epoch, bad = theta.clone(), val(), 0, 0
        curve = []
        for epoch in range(1, cfg.max_epochs + 1):
            loss = loss_and_grad(layout, theta, splits["train"].x, splits["train"].y, loss_fn, grad)
            grad.mul_(maskf)
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (v.sqrt() / math.sqrt(1 - b2**epoch)).add_(ADAM_EPS)
            theta.addcdiv_(m, denom, value=-cfg.lr / (1 - b1**epoch))
            val_loss = val()
            curve.append((loss.item(), val_loss.item()))
            if bool(val_loss < best_val - cfg.min_delta):
                best, best_val, best_epoch, bad = theta.clone(), val_loss, epoch, 0
            else:
                bad += 1
            if bad >= cfg.patience or bool(loss < cfg.loss_cutoff):
                break
        if not cfg.restore_best:  # train.restore_best false: the last epoch's weights are kept
            best, best_epoch = theta.clone(), epoch
        out.append((best * maskf, epoch, best_epoch, curve))
    return out


@pytest.mark.parametrize("n_samples,hidden,restore_best",
                         [(150, [8, 8], True), (233, [16, 8, 8], True), (150, [8, 8], False)])
def test_fast_epoch_loop_equals_the_plain_loop_bit_for_bit(n_samples, hidden, restore_best):
    """Validation rows riding along in the training pass, cached views, numpy bookkeeping and
    the other shortcuts of train_population change no bit (odd row counts on purpose: vectorised
    exp/log round differently on a slice's scalar tail)."""
    params = config.parse({"data": {"n_samples": n_samples, "tasks": ["moons", "circles"]},
                           "model": {"hidden": hidden, "seeds": [0, 1, 2]},
                           "train": {"max_epochs": 150, "patience": 8, "lr": 0.02,
                                     "min_delta": 1e-4, "loss_cutoff": 0.05,
                                     "compact": False, "restore_best": restore_best}})
    arrays, _ = build(params.data)
    splits = {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
              for s, a in arrays.items()}
    layout = Layout(tuple(params.base_layers))
    loss_fn = TaskLoss(task_infos(params.data.tasks))
    theta0 = init_population(layout, params.model, params.model.seeds)
    mask = torch.rand(theta0.shape, generator=torch.Generator().manual_seed(4)) < 0.6
    fast = train_population(layout, theta0, mask, splits["train"], splits["val"], loss_fn,
                            params.train)
    plain = plain_training(layout, theta0, mask, splits, loss_fn, params.train)
    assert len(set(fast.epochs.tolist())) > 1  # networks stop at different epochs
    for k, (theta, epochs, best_epoch, curve) in enumerate(plain):
        assert torch.equal(fast.theta[k], theta[0])
        assert int(fast.epochs[k]) == epochs and int(fast.best_epoch[k]) == best_epoch
        assert fast.train_curve[k, :epochs].tolist() == [c[0] for c in curve]
        assert fast.val_curve[k, :epochs].tolist() == [c[1] for c in curve]


@pytest.mark.parametrize("kinds", [["moons", "circles"], ["digits", "moons"]])
def test_loss_of_a_network_does_not_depend_on_its_batch(kinds):
    """Vectorised exp/log/sigmoid round differently on a kernel's scalar tail; the loss keeps
    every network's entries in a row of their own, so a network's loss and gradient are the
    same bits alone or in a batch (the basis of 'identical for any number of workers')."""
    tasks = task_infos(kinds)
    loss_fn = TaskLoss(tasks)
    n_out = sum(len(t.outputs) for t in tasks)
    g = torch.Generator().manual_seed(0)
    for n in (90, 139, 233, 600):
        logits = torch.randn(5, n, n_out, generator=g) * 4
        y = torch.stack([torch.randint(0, 10 if t.loss == "ce" else 2, (n,), generator=g)
                         for t in tasks], dim=1)
        loss, grad = loss_fn.value_and_grad(logits, y)
        for k in range(5):
            alone_loss, alone_grad = loss_fn.value_and_grad(logits[k:k + 1].clone(), y)
            assert torch.equal(loss[k:k + 1], alone_loss)
            assert torch.equal(grad[k:k + 1], alone_grad)


def stopper(**overrides):
    from pipeline.train import Stopper
    cfg = dataclasses.replace(config.TrainConfig(), **{"patience": 3, "max_epochs": 100,
                                                       **overrides})
    return cfg, Stopper


def test_per_task_monitor_keeps_training_while_any_task_still_learns():
    """Task 0 has converged and slowly overfits, task 1 still learns: the summed validation loss
    rises (the `total` monitor stops after `patience` epochs), but task 1's own loss keeps
    reaching new bests, so the `per_task` monitor goes on."""
    import numpy as np
    epochs = np.arange(1, 21, dtype=np.float32)
    val = np.stack([1.0 + 0.05 * epochs, 1.0 - 0.01 * epochs], axis=1)[:, None, :]  # [E, K=1, T]
    train = np.full_like(val, 0.5)
    stops = {}
    for monitor in ("total", "per_task"):
        cfg, Stopper = stopper(monitor=monitor)
        s = Stopper(cfg, np.array([[1.0, 1.0]], dtype=np.float32).sum(axis=1)
                    if monitor == "total" else np.array([[1.0, 1.0]], dtype=np.float32))
        for e in range(20):
            mon_train = train[e].sum(axis=1) if monitor == "total" else train[e]
            mon_val = val[e].sum(axis=1) if monitor == "total" else val[e]
            improved, code = s.update(e + 1, mon_train, mon_val)
            if code is not None and code[0] >= 0:
                stops[monitor] = (e + 1, STOP_REASONS[code[0]], int(s.best_epoch[0]))
                break
    assert stops["total"] == (3, "patience", 0)  # never improved on the start: keeps θ at epoch 0
    assert "per_task" not in stops  # task 1 improved every epoch
    # once task 1 stalls too, per_task stops `patience` epochs after the last improvement
    cfg, Stopper = stopper(monitor="per_task")
    s = Stopper(cfg, np.array([[1.0, 1.0]], dtype=np.float32))
    losses = [[0.9, 0.99], [0.95, 0.98], [0.96, 0.985], [0.97, 0.99], [0.98, 0.99]]
    codes = [s.update(e + 1, np.array([[0.5, 0.5]], dtype=np.float32),
                      np.array([v], dtype=np.float32))[1] for e, v in enumerate(losses)]
    assert codes[:4] == [None] * 4 and STOP_REASONS[codes[4][0]] == "patience"
    assert s.best_epoch.tolist() == [2]  # the last epoch at which some task reached a new best


def test_per_task_cutoff_needs_every_task_below_it():
    import numpy as np
    cfg, Stopper = stopper(monitor="per_task", loss_cutoff=0.01, patience=100)
    s = Stopper(cfg, np.ones((2, 2), dtype=np.float32))
    val = np.full((2, 2), 0.5, dtype=np.float32)
    # network 0: both tasks below the cutoff; network 1: task 1 is not (its sum would be)
    _, code = s.update(1, np.array([[0.004, 0.005], [0.001, 0.011]], dtype=np.float32), val)
    assert [STOP_REASONS[c] if c >= 0 else None for c in code] == ["cutoff", None]
    cfg, Stopper = stopper(monitor="total", loss_cutoff=0.01, patience=100)
    s = Stopper(cfg, np.ones(2, dtype=np.float32))
    _, code = s.update(1, np.array([0.009, 0.012], dtype=np.float32), val.sum(axis=1))
    assert [STOP_REASONS[c] if c >= 0 else None for c in code] == ["cutoff", None]


def test_per_task_monitor_trains_a_slow_task_longer(problem):
    """End to end: with several tasks the per-task monitor never stops earlier than the summed
    one on the same networks without a cutoff, and it reports its best epoch consistently."""
    params, tasks, splits, layout = problem
    theta0 = init_population(layout, params.model, params.model.seeds)
    mask = torch.ones_like(theta0, dtype=torch.bool)
    total = run(problem, theta0, mask, patience=4, max_epochs=300, monitor="total")
    per_task = run(problem, theta0, mask, patience=4, max_epochs=300, monitor="per_task")
    assert (per_task.epochs >= total.epochs).all() and (per_task.epochs > total.epochs).any()
    assert (per_task.best_epoch == per_task.epochs - 4)[per_task.epochs < 300].all()


@pytest.mark.parametrize("width", [2, 16, 40])
def test_the_bias_gradient_of_a_network_is_the_same_alone_and_in_a_batch(width):
    """The bias gradient (a reduction over the N rows of dz) must not depend on how many
    networks share the bmm: with a ones *vector*, MKL's batched gemv split the reduction
    across threads for K = 1 only, so a network alone got other bits than inside a batch."""
    from pipeline.engine.kernels import backward, forward_acts
    layout = Layout((4, width, 2))
    g = torch.Generator().manual_seed(3)
    k, n = 8, 300
    theta = torch.randn(k, layout.size, generator=g)
    x = torch.randn(n, 4, generator=g)
    dz = torch.randn(k, n, 2, generator=g)
    acts = forward_acts(layout, theta, x)
    together = torch.empty_like(theta)
    backward(layout, theta, acts, dz, together)
    for r in range(k):
        alone = torch.empty(1, layout.size)
        backward(layout, theta[r:r + 1].clone(), forward_acts(layout, theta[r:r + 1].clone(), x),
                 dz[r:r + 1].clone(), alone)
        assert torch.equal(alone, together[r:r + 1])
