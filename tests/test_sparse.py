"""The live path (engine.live): training that follows the live weights — dead inputs dropped,
sparse kernels where a layer's density says so — must equal the dense path within float
tolerance, rerun bit for bit, keep a network's bits independent of its batch, and keep pruned
entries exactly zero in weights, gradients and optimizer state."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import digits_beside_moons

from pipeline import config
from pipeline.engine import live, train_population
from pipeline.model import Layout, forward, kept_neurons


@pytest.fixture(scope="module")
def problem():
    """digits (64 pixels, a 10-class task) beside moons: 66 inputs, 11 outputs."""
    return digits_beside_moons(6, [0.9, 0.25, 0.1, 0.05, 0.03, 0.015], 15)


@pytest.fixture(autouse=True)
def small_sparse_blocks(monkeypatch):
    """Let the test's small layers take the sparse kernels (the real threshold is for wide ones)."""
    monkeypatch.setattr(live, "SPARSE_MIN_BLOCK", 64)


def train(problem, rows, engine, rewind_epoch=0, **overrides):
    params, loss_fn, splits, layout, theta0, mask = problem
    cfg = dataclasses.replace(params.train, **overrides)
    return train_population(layout, theta0[rows], mask[rows], splits["train"], splits["val"],
                            loss_fn, cfg, shuffle_seeds=[100 + r for r in rows], engine=engine,
                            rewind_epoch=rewind_epoch)


def test_the_plans_use_both_kernels_and_drop_dead_inputs(problem):
    _, _, _, layout, _, mask = problem
    kinds = set()
    for k in range(mask.shape[0]):
        plan = live.plan_network(layout, mask[k])
        kinds |= {lp.sparse for lp in plan.layers}
        # the first layer reads exactly the inputs with a live weight into a kept neuron
        kept = kept_neurons(layout, mask[k:k + 1])[0][0]
        w0 = layout.views(mask[k:k + 1])[0][0][0]
        reads = [i for i in range(layout.layers[0]) if bool((w0[:, i] & kept).any())]
        assert plan.layers[0].cols.tolist() == reads
        assert plan.layers[-1].rows.tolist() == list(range(layout.layers[-1]))
        for lp in plan.layers:
            r, c = lp.shape
            assert lp.sparse == live.use_sparse(r, c, int(
                mask[k][plan.index[lp.w_off:lp.w_off + (lp.w_len)]].sum()))
    assert kinds == {True, False}
    assert len(live.plan_network(layout, mask[5]).layers[0].cols) < layout.layers[0]


@pytest.mark.parametrize("batch_size", [32, None])
def test_live_path_equals_dense_path_within_float_tolerance(problem, batch_size):
    """A few epochs: Adam divides by √v, so entries with a near-zero gradient amplify any
    rounding difference to a step of lr (the same holds for train.compact on and off)."""
    rows = list(range(6))
    dense = train(problem, rows, "dense", 2, batch_size=batch_size, patience=1000, max_epochs=4)
    sparse = train(problem, rows, "live", 2, batch_size=batch_size, patience=1000, max_epochs=4)
    assert torch.equal(dense.epochs, sparse.epochs)
    torch.testing.assert_close(sparse.theta, dense.theta, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sparse.rewind_theta, dense.rewind_theta, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sparse.train_curve, dense.train_curve, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse.val_curve, dense.val_curve, rtol=1e-5, atol=1e-6)


def test_live_backward_equals_autograd(problem):
    """The hand-written per-network backward (dense and CSR kernels) against autograd on the
    full masked network."""
    params, loss_fn, splits, layout, theta0, mask = problem
    x, y = splits["train"].x[:50], splits["train"].y[:50]
    for k in range(mask.shape[0]):
        plan = live.plan_network(layout, mask[k])
        packed = (theta0[k] * mask[k])[plan.index] * plan.live
        acts = live.forward_net(plan.layers, packed, x[:, plan.layers[0].cols].T.contiguous())
        logits = acts[-1].T.unsqueeze(0)
        loss, dz = loss_fn.value_and_grad(logits, y)
        grad = torch.zeros_like(packed)
        live.backward_net(plan.layers, packed, acts, dz[0].T.contiguous(), grad)
        grad *= plan.live
        full = (theta0[k:k + 1] * mask[k:k + 1]).requires_grad_(True)
        ref_loss = loss_fn(forward(layout, full, x), y)
        (ref,) = torch.autograd.grad(ref_loss.sum(), full)
        torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad[plan.real], (ref[0] * mask[k])[plan.index[plan.real]],
                                   rtol=1e-4, atol=1e-6)


def test_a_network_computes_the_same_bits_alone_in_any_batch_and_on_reruns(problem):
    together = train(problem, list(range(6)), "live")
    assert len(set(together.epochs.tolist())) > 1  # networks leave the batch at other epochs
    again = train(problem, list(range(6)), "live")
    assert torch.equal(again.theta, together.theta)
    assert torch.equal(again.val_curve.nan_to_num(-1), together.val_curve.nan_to_num(-1))
    for rows in ([4], [5, 1], [3, 0, 2], [2, 5, 4, 3]):
        part = train(problem, rows, "live")
        assert torch.equal(part.theta, together.theta[rows])
        assert torch.equal(part.epochs, together.epochs[rows])
        e = part.val_curve.shape[1]
        assert torch.equal(part.val_curve.nan_to_num(-1),
                           together.val_curve[rows, :e].nan_to_num(-1))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_pruned_entries_stay_exactly_zero_in_weights_gradients_and_optimizer_state(problem,
                                                                                   optimizer):
    params, loss_fn, splits, layout, theta0, mask = problem
    cfg = dataclasses.replace(params.train, optimizer=optimizer, momentum=0.9)
    with torch.inference_mode():
        pop = live.LivePopulation(layout, theta0, mask, splits["train"], splits["val"],
                                  loss_fn, cfg, [1, 2, 3, 4, 5, 6])
        for _ in range(3):
            pop.train_epoch()
        net = torch.arange(mask.shape[0]).unsqueeze(1).expand_as(pop.index)[pop.real]

        def full(packed):  # a packed [K, L] tensor in the full layout [K, P], zeros elsewhere
            out = torch.zeros(mask.shape)
            out[net, pop.index[pop.real]] = packed[pop.real]
            return out
        moved = False
        buffers = [("weights", pop.theta), ("gradient", pop.grad), ("first moment", pop.opt.m)]
        if pop.opt.v is not None:
            buffers.append(("second moment", pop.opt.v))
        for name, packed in buffers:
            assert bool((full(packed)[~mask] == 0).all()), name
            assert bool((packed[~pop.real] == 0).all()), name  # padding too
            moved |= bool((full(packed)[mask] != 0).any())
        assert moved
        weights = pop.weights()
        assert bool((weights[~mask] == 0).all())
    result = train(problem, list(range(6)), "live", optimizer=optimizer, momentum=0.9)
    assert bool((result.theta[~mask] == 0).all())


def test_the_default_shape_keeps_the_dense_path():
    """The live path never applies to the default run's shape or the narrow studies (their
    committed results are reproduced bit for bit), only to wide layers."""
    params = config.parse({})
    assert not live.uses_live(Layout((4, 40, 40, 2)), params.train)
    assert not live.uses_live(Layout((260, 128, 64, 20)), params.train)
    assert live.uses_live(Layout((1568, 784, 392, 20)), params.train)
    assert not live.uses_live(Layout((1568, 784, 392, 20)),
                              dataclasses.replace(params.train, compact=False))
