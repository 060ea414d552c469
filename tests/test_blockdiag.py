"""The block of small networks (engine.blockdiag, issue 33): one block-diagonal sparse product per
layer for every small network of a population. It must keep every promise of the engine: a
network's bits do not depend on which networks share its block (nor on the per-network
networks beside it), reruns are bit-identical, pruned entries stay exactly zero in weights,
gradients and optimizer state, and it equals the per-network loop within float tolerance. The
record of frozen entries (no loss gradient at any step, docs/science.md §8) is the same on every
path and, without weight decay, is exactly the set of entries whose value did not move."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import digits_beside_moons

from pipeline import config
from pipeline.data import build, task_infos
from pipeline.engine import Split, TaskLoss, blockdiag, live, train_population
from pipeline.engine.optim import decay_only
from pipeline.model import Layout, init_population


@pytest.fixture(scope="module")
def problem():
    """digits (64 pixels, 10 classes) beside moons on [66, 48, 24, 11]; networks from 90 % to
    1.5 % density, so some have empty or nearly empty layers."""
    return digits_beside_moons(8, [0.9, 0.25, 0.1, 0.05, 0.03, 0.015, 0.6, 0.002], 12)


def train(problem, rows, block_max, **overrides):
    """train_population on the live path with networks of at most `block_max` live parameters
    in the block (0: every network in the per-network loop; None: every network in the block)."""
    params, loss_fn, splits, layout, theta0, mask = problem
    cfg = dataclasses.replace(params.train, **overrides)
    old = live.BLOCK_MAX_LIVE
    live.BLOCK_MAX_LIVE = 10 ** 9 if block_max is None else block_max
    try:
        return train_population(layout, theta0[rows], mask[rows], splits["train"], splits["val"],
                                loss_fn, cfg, shuffle_seeds=[100 + r for r in rows], engine="live")
    finally:
        live.BLOCK_MAX_LIVE = old


@pytest.fixture(scope="module")
def binary_problem():
    """moons beside circles (two single-logit tasks) on [4, 24, 20, 2] at 35 % density."""
    params = config.parse({"data": {"n_samples": 150, "tasks": ["moons", "circles"]},
                           "model": {"hidden": [24, 20], "seeds": list(range(8))}})
    arrays, _ = build(params.data)
    splits = {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
              for s, a in arrays.items()}
    layout = Layout(tuple(params.base_layers))
    theta0 = init_population(layout, params.model, params.model.seeds)
    mask = torch.rand(theta0.shape, generator=torch.Generator().manual_seed(3)) < 0.35
    return params, TaskLoss(task_infos(params.data.tasks)), splits, layout, theta0, mask


@pytest.fixture(autouse=True)
def small_sparse_blocks(monkeypatch):
    """Let the per-network loop take its sparse kernels on these small layers too."""
    monkeypatch.setattr(live, "SPARSE_MIN_BLOCK", 64)


@pytest.mark.parametrize("batch_size", [32, None])
def test_the_block_equals_the_per_network_loop_within_float_tolerance(problem, batch_size):
    rows = list(range(8))
    loop = train(problem, rows, 0, batch_size=batch_size, patience=1000, max_epochs=4)
    block = train(problem, rows, None, batch_size=batch_size, patience=1000, max_epochs=4)
    torch.testing.assert_close(block.theta, loop.theta, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(block.train_curve, loop.train_curve, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(block.val_curve, loop.val_curve, rtol=1e-5, atol=1e-6)
    assert torch.equal(block.frozen, loop.frozen)


@pytest.mark.parametrize("batch_size", [32, None])
def test_a_network_computes_the_same_bits_alone_in_any_block_and_on_reruns(problem, batch_size):
    together = train(problem, list(range(8)), None, batch_size=batch_size)
    assert len(set(together.epochs.tolist())) > 1  # networks leave the block at other epochs
    again = train(problem, list(range(8)), None, batch_size=batch_size)
    assert torch.equal(again.theta, together.theta)
    # every network alone (a block of one network is laid out as no other), and in company
    for rows in [[j] for j in range(8)] + [[5, 1], [3, 0, 7], [2, 6, 4, 3]]:
        part = train(problem, rows, None, batch_size=batch_size)
        assert torch.equal(part.theta, together.theta[rows])
        assert torch.equal(part.epochs, together.epochs[rows])
        assert torch.equal(part.frozen, together.frozen[rows])
        e = part.val_curve.shape[1]
        assert torch.equal(part.val_curve.nan_to_num(-1),
                           together.val_curve[rows, :e].nan_to_num(-1))


@pytest.mark.parametrize("which", ["problem", "binary_problem"])
@pytest.mark.parametrize("rows", [13, 26, 32, 90])
def test_one_steps_gradient_is_the_same_bits_alone_and_in_any_block(request, which, rows):
    """The direct check of the block's promise, on the step itself: from random weights, a
    network's loss gradient (every layer, weights and biases) is bit-identical alone, first,
    last and in the middle of a block — whatever its company and the number of rows (a block
    of one network lays its output gradient out as no other block does)."""
    params, loss_fn, splits, layout, theta0, mask = request.getfixturevalue(which)
    theta = theta0 + 0.3 * torch.randn(theta0.shape, generator=torch.Generator().manual_seed(5))
    perm = torch.stack([torch.randperm(splits["train"].x.shape[0],
                                       generator=torch.Generator().manual_seed(7 + j))
                        for j in range(8)])[:, :rows]

    def grads(nets):
        plans = [live.plan_network(layout, mask[j]) for j in nets]
        with torch.inference_mode():
            pop = blockdiag.BlockPopulation(layout, theta[nets], mask[nets], splits["train"],
                                            splits["val"], loss_fn, params.train, nets, plans)
            acts = pop._forward(pop._inputs(perm[nets]))
            labels = loss_fn.prepare(splits["train"].y[perm[nets]])
            out = loss_fn.value_and_grad(pop._logits(acts[-1]), labels)
            pop._backward(acts, out[1], first=True)
            return pop._scatter(pop.grad, torch.zeros(len(nets), layout.size), None)

    together = grads(list(range(8)))
    for nets in [[j] for j in range(8)] + [[3, 0], [7, 2, 5], [1, 6, 4, 0, 2]]:
        part = grads(nets)
        for i, j in enumerate(nets):
            assert torch.equal(part[i], together[j]), (nets, j)


def test_block_and_loop_networks_side_by_side_compute_what_they_compute_alone(problem):
    """With the threshold between them, the large networks run the loop and the small ones the
    block, each exactly as in a population of its own kind."""
    _, _, _, layout, _, mask = problem
    live_params = [int(live.plan_network(layout, mask[j]).live.sum()) for j in range(8)]
    cut = sorted(live_params)[4]
    mixed = train(problem, list(range(8)), cut)
    loop, block = train(problem, list(range(8)), 0), train(problem, list(range(8)), None)
    for j, n in enumerate(live_params):
        ref = block if n <= cut else loop
        assert torch.equal(mixed.theta[j], ref.theta[j]), j
        assert torch.equal(mixed.epochs[j], ref.epochs[j]), j


@pytest.mark.parametrize("batch_size", [64, None])
def test_micro_batches_sum_to_the_step_and_keep_a_network_independent_of_its_block(
        problem, monkeypatch, batch_size):
    """With inputs too wide for the cache budget a step runs in micro-batches (blockdiag.
    micro_rows): the same training within float tolerance, networks of different micro-batch
    sizes in blocks of their own, and still the same bits alone as in any block."""
    monkeypatch.setattr(blockdiag, "MICRO_BYTES", 2 ** 12)
    monkeypatch.setattr(blockdiag, "MICRO_MIN", 16)
    _, _, splits, layout, _, mask = problem
    rows = splits["train"].x.shape[0] if batch_size is None else batch_size
    micro = {blockdiag.micro_rows(len(live.plan_network(layout, mask[j]).layers[0].cols), rows)
             for j in range(8)}
    assert len(micro) > 1 and min(micro) < rows  # micro-batches, of more than one size
    loop = train(problem, list(range(8)), 0, batch_size=batch_size, patience=1000, max_epochs=3)
    block = train(problem, list(range(8)), None, batch_size=batch_size, patience=1000,
                  max_epochs=3)
    torch.testing.assert_close(block.theta, loop.theta, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(block.train_curve, loop.train_curve, rtol=1e-5, atol=1e-6)
    together = train(problem, list(range(8)), None, batch_size=batch_size)
    for part_rows in ([6], [1, 5], [7, 0, 3]):
        part = train(problem, part_rows, None, batch_size=batch_size)
        assert torch.equal(part.theta, together.theta[part_rows])
        assert torch.equal(part.epochs, together.epochs[part_rows])


@pytest.mark.parametrize("cols,rows,expected", [
    (20, 512, 512), (205, 512, 512), (400, 512, 256), (1250, 512, 64), (1568, 512, 64),
    (1568, 3000, 64), (20, 440, 440), (205, 3000, 512), (100000, 512, 32), (1568, 20, 20)])
def test_micro_batch_sizes_follow_the_cache_budget(cols, rows, expected):
    """All rows when a step's inputs fit in MICRO_BYTES (512 KB), else the largest power of two
    of rows that fits, at least MICRO_MIN (32), never more than the step."""
    assert blockdiag.micro_rows(cols, rows) == expected


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_pruned_entries_stay_exactly_zero_in_the_block(problem, optimizer):
    params, loss_fn, splits, layout, theta0, mask = problem
    cfg = dataclasses.replace(params.train, optimizer=optimizer, momentum=0.9)
    plans = [live.plan_network(layout, mask[j]) for j in range(8)]
    with torch.inference_mode():
        pop = blockdiag.BlockPopulation(layout, theta0, mask, splits["train"], splits["val"],
                                        loss_fn, cfg, list(range(8)), plans)
        for _ in range(3):
            pop.train_epoch()
        b = pop.block
        pruned = (b.net >= 0) & ~b.live   # pruned biases of kept neurons
        padding = b.net < 0
        buffers = {"weights": pop.theta, "gradient": pop.grad, "first moment": pop.opt.m}
        if pop.opt.v is not None:
            buffers["second moment"] = pop.opt.v
        for name, flat in buffers.items():
            assert bool((flat[pruned | padding] == 0).all()), name
        assert bool((pop.theta[b.live] != theta0[b.net[b.live], b.index[b.live]]).any())
        assert bool((pop.weights()[~mask] == 0).all())
        pop.keep(np.array([True, False, True, True, False, True, True, False]))
        assert bool((pop.weights()[~mask[[0, 2, 3, 5, 6]]] == 0).all())


def test_the_flat_vector_holds_each_live_parameter_once_on_aligned_segments(problem):
    params, loss_fn, splits, layout, theta0, mask = problem
    plans = [live.plan_network(layout, mask[j]) for j in range(8)]
    block = blockdiag.build_block(layout, mask, plans)
    assert len(block.net) % blockdiag.ALIGN == 0
    for bl in block.layers:
        assert bl.w_off % blockdiag.ALIGN == 0 and bl.b_off % blockdiag.ALIGN == 0
    for j, plan in enumerate(plans):  # the same live parameters as the network's own plan
        mine = (block.net == j) & block.live
        assert sorted(block.index[mine].tolist()) == sorted(plan.index[plan.live].tolist())
    with torch.inference_mode():
        pop = blockdiag.BlockPopulation(layout, theta0, mask, splits["train"], splits["val"],
                                        loss_fn, params.train, None, plans)
        assert torch.equal(pop.weights(), theta0 * mask)  # nothing trained yet: the start


@pytest.mark.parametrize("path", ["dense", "loop", "block"])
def test_frozen_is_exactly_the_entries_that_did_not_move_without_weight_decay(problem, path):
    params, loss_fn, splits, layout, theta0, mask = problem
    if path == "dense":
        cfg = params.train
        result = train_population(layout, theta0, mask, splits["train"], splits["val"], loss_fn,
                                  cfg, shuffle_seeds=[100 + r for r in range(8)], engine="dense")
    else:
        result = train(problem, list(range(8)), 0 if path == "loop" else None)
    start = theta0 * mask
    moved = result.theta != start
    assert torch.equal(result.frozen, mask & ~moved)
    assert 0 < int(result.frozen.sum()) < int(mask.sum())


@pytest.mark.parametrize("path", ["dense", "block"])
def test_frozen_entries_follow_weight_decay_alone(problem, path):
    """With weight decay nothing stays put, but a frozen entry (no loss gradient) moves by the
    decay alone: exactly the decay-only trajectory of its start value, step for step."""
    params, loss_fn, splits, layout, theta0, mask = problem
    cfg = dataclasses.replace(params.train, weight_decay=1e-3, batch_size=None, max_epochs=6,
                              patience=1000, restore_best=False)
    if path == "dense":
        result = train_population(layout, theta0, mask, splits["train"], splits["val"], loss_fn,
                                  cfg, engine="dense")
    else:
        result = train(problem, list(range(8)), None, weight_decay=1e-3, batch_size=None,
                       max_epochs=6, patience=1000, restore_best=False)
    frozen = result.frozen
    assert int(frozen.sum()) > 0
    start = (theta0 * mask)[frozen]
    steps = result.epochs.unsqueeze(1).expand_as(frozen)[frozen]
    assert torch.equal(result.theta[frozen], decay_only(cfg, start, steps))
    assert bool((result.theta[frozen] != start).any())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_the_block_runs_on_cuda_as_on_the_cpu(problem):
    cpu = train(problem, list(range(8)), None, patience=1000, max_epochs=3)
    gpu = train(problem, list(range(8)), None, patience=1000, max_epochs=3, device="cuda")
    torch.testing.assert_close(gpu.theta, cpu.theta, rtol=1e-4, atol=1e-5)
    assert torch.equal(gpu.frozen, cpu.frozen)
