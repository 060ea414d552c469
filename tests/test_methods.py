"""The peers' methods (docs/science.md §4): prune.method finetune | rewind and train.weight_decay, on
both engine paths. Fine-tuning starts a level from the previous level's trained survivors,
rewinding from θ_k; weight decay shrinks a weight without gradient by (1 − lr·λ) per SGD step,
keeps pruned entries exactly 0, moves the entries the engine leaves out of training exactly as
the full loop would, and leaves every network's bits independent of its batch."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from conftest import tiny_params

from pipeline import config, imp
from pipeline.data import build, task_infos
from pipeline.engine import Optimizer, Split, TaskLoss, live, train_population
from pipeline.engine.dense import DensePopulation
from pipeline.engine.loop import trained_entries
from pipeline.model import Layout, init_population

WD = 0.01


@pytest.fixture(scope="module")
def problem():
    """moons beside circles with a third, constant-zero input column (as a standardised MNIST
    border pixel): the weights reading it get no gradient."""
    params = config.parse({"data": {"n_samples": 150, "tasks": ["moons", "circles"]},
                           "model": {"hidden": [24, 20], "seeds": [0, 1, 2, 3]},
                           "train": {"max_epochs": 12, "patience": 1000, "lr": 0.05,
                                     "loss_cutoff": 0.0}})
    arrays, _ = build(params.data)
    splits = {}
    for s, a in arrays.items():
        x = torch.from_numpy(a["x"]).clone()
        x[:, 2] = 0.0  # circles' first feature: constant zero
        splits[s] = Split(x, torch.from_numpy(a["y"]))
    layout = Layout((4, 24, 20, 2))
    theta0 = init_population(layout, params.model, params.model.seeds)
    return params, TaskLoss(task_infos(params.data.tasks)), splits, layout, theta0


def masks_with_detached_neurons(layout, k, seed=3, density=0.35):
    """Random masks plus, per network, a comatose first-layer neuron 0 (inputs, no outgoing
    weight) and a second-layer neuron 1 fed only by it: their entries get no loss gradient."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(k, layout.size, generator=g) < density
    (w0, b0, e0), (w1, b1, e1), (w2, b2, _) = layout.offsets
    views = layout.views(mask)
    views[0][0][:, 0, :] = True                 # neuron 0 of layer 1 reads every input …
    views[1][0][:, :, 0] = False                # … and feeds nobody but neuron 1 of layer 2
    views[1][0][:, 1, :] = False
    views[1][0][:, 1, 0] = True
    views[2][0][:, :, 1] = False                # neuron 1 of layer 2 reaches no output
    views[0][0][:, 3, 2] = True                 # a kept neuron reading the constant input
    return mask


def train(problem, mask, rows=None, engine=None, **overrides):
    params, loss_fn, splits, layout, theta0 = problem
    rows = list(range(theta0.shape[0])) if rows is None else rows
    cfg = dataclasses.replace(params.train, **overrides)
    return train_population(layout, theta0[rows], mask[rows], splits["train"], splits["val"],
                            loss_fn, cfg, shuffle_seeds=[100 + r for r in rows], engine=engine)


@pytest.fixture(autouse=True)
def small_sparse_blocks(monkeypatch):
    """Let the small layers take the live path's sparse kernels too."""
    monkeypatch.setattr(live, "SPARSE_MIN_BLOCK", 64)


# ---- weight decay -----------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer,momentum", [("adam", 0.0), ("sgd", 0.0), ("sgd", 0.9)])
def test_zero_weight_decay_is_the_optimizer_without_it_bit_for_bit(optimizer, momentum):
    """train.weight_decay 0 runs exactly the steps of the optimizer before the key existed
    (its formulas written out here), so every existing result stays as it is."""
    from pipeline.engine import ADAM_BETAS, ADAM_EPS
    from pipeline.engine.optim import FLOAT_MIN
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 50, generator=g)
    cfg = config.TrainConfig(optimizer=optimizer, momentum=momentum, lr=0.01, weight_decay=0.0)
    opt, mine = Optimizer(cfg, theta), theta.clone()
    m, v, ref = torch.zeros_like(theta), torch.zeros_like(theta), theta.clone()
    b1, b2 = ADAM_BETAS
    for t in range(1, 6):
        grad = torch.randn(3, 50, generator=g)
        opt.step(mine, grad.clone())
        if optimizer == "adam":
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = torch.clamp(v, min=FLOAT_MIN).sqrt_().div_(math.sqrt(1 - b2**t))
            ref.addcdiv_(m, denom.add_(ADAM_EPS), value=-cfg.lr / (1 - b1**t))
        elif momentum > 0:
            m.mul_(momentum).add_(grad)
            ref.add_(m, alpha=-cfg.lr)
        else:
            ref.add_(grad, alpha=-cfg.lr)
        assert torch.equal(mine, ref)


def test_adam_weight_decay_matches_torch_optim_adam():
    """L2 added to the gradient as torch.optim.Adam(weight_decay=λ) does (not AdamW)."""
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(2, 40, generator=g)
    cfg = config.TrainConfig(lr=0.01, weight_decay=0.05)
    opt, mine = Optimizer(cfg, theta), theta.clone()
    ref = theta.clone().requires_grad_(True)
    torch_opt = torch.optim.Adam([ref], lr=0.01, weight_decay=0.05, eps=1e-8)
    for _ in range(20):
        grad = torch.randn(2, 40, generator=g)
        opt.step(mine, grad.clone())
        ref.grad = grad.clone()
        torch_opt.step()
    torch.testing.assert_close(mine, ref.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("engine", ["dense", "live"])
def test_weight_decay_shrinks_a_weight_without_gradient_by_one_minus_lr_lambda_per_sgd_step(
        problem, engine):
    """Plain SGD, full batch: a weight reading the constant-zero input (trained, but its loss
    gradient is exactly 0) and the entries of the comatose neuron (left out of training) are
    multiplied by (1 − lr·λ) at every step, on both paths."""
    params, _, _, layout, theta0 = problem
    mask = masks_with_detached_neurons(layout, 4)
    lr = params.train.lr
    views0 = layout.views(theta0 * mask)
    for epochs in (1, 7):
        res = train(problem, mask, engine=engine, optimizer="sgd", weight_decay=WD,
                    max_epochs=epochs, restore_best=False)
        assert res.epochs.tolist() == [epochs] * 4
        views = layout.views(res.theta)
        factor = (1 - lr * WD) ** epochs
        frozen_input = views[0][0][:, 3, 2]   # kept neuron 3 ← constant input 2
        comatose_in = views[0][0][:, 0, :]    # comatose neuron 0's incoming weights
        comatose_out = views[1][0][:, 1, 0]   # its only outgoing weight (to a dead end)
        for now, start in ((frozen_input, views0[0][0][:, 3, 2]),
                           (comatose_in, views0[0][0][:, 0, :]),
                           (comatose_out, views0[1][0][:, 1, 0])):
            assert bool((start != 0).all())
            torch.testing.assert_close(now, start * factor, rtol=3e-7 * epochs, atol=0)
        if epochs == 1:  # one step: θ − lr·(λ·θ), exactly
            start = views0[0][0][:, 3, 2]
            assert torch.equal(frozen_input, start - lr * (WD * start))


@pytest.mark.parametrize("engine", ["dense", "live"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_pruned_entries_stay_exactly_zero_under_weight_decay(problem, engine, optimizer):
    params, loss_fn, splits, layout, theta0 = problem
    mask = masks_with_detached_neurons(layout, 4)
    cfg = dataclasses.replace(params.train, optimizer=optimizer, momentum=0.9,
                              weight_decay=WD, batch_size=32)
    with torch.inference_mode():
        if engine == "live":
            pop = live.LivePopulation(layout, theta0, mask, splits["train"], splits["val"],
                                      loss_fn, cfg, [1, 2, 3, 4])
            net = torch.arange(4).unsqueeze(1).expand_as(pop.index)[pop.real]

            def full(packed):
                out = torch.zeros(mask.shape)
                out[net, pop.index[pop.real]] = packed[pop.real]
                return out
        else:
            pop = DensePopulation(layout, layout, theta0, mask, splits["train"], splits["val"],
                                  loss_fn, cfg, [1, 2, 3, 4], None)
            full = lambda t: t  # noqa: E731
        for _ in range(3):
            pop.train_epoch()
        buffers = [("weights", pop.theta), ("gradient", pop.grad), ("first moment", pop.opt.m)]
        if pop.opt.v is not None:
            buffers.append(("second moment", pop.opt.v))
        for name, buf in buffers:
            assert bool((full(buf)[~mask] == 0).all()), name
            assert bool((full(buf)[mask] != 0).any()), name
    res = train(problem, mask, engine=engine, optimizer=optimizer, weight_decay=WD)
    assert bool((res.theta[~mask] == 0).all())


@pytest.mark.parametrize("batch_size,restore_best", [(None, True), (32, False)])
def test_entries_left_out_of_training_decay_as_in_the_full_loop(problem, batch_size,
                                                                 restore_best):
    """Compaction and the live plans leave out the neurons without a path to an output; under
    weight decay their entries still move (gradient λ·θ). Both paths give them exactly the
    values of the full loop (train.compact false), the rest within float tolerance."""
    params, _, _, layout, theta0 = problem
    mask = masks_with_detached_neurons(layout, 4)
    detached = mask & ~trained_entries(layout, mask)
    assert int(detached.sum()) > 8
    opts = dict(weight_decay=WD, batch_size=batch_size, restore_best=restore_best, patience=4,
                max_epochs=30)
    full = train(problem, mask, engine="dense", compact=False, **opts)
    assert bool((full.theta[detached] != (theta0 * mask)[detached]).all())  # they moved
    for engine in ("dense", "live"):
        res = train(problem, mask, engine=engine, **opts)
        assert torch.equal(res.epochs, full.epochs) and torch.equal(res.best_epoch, full.best_epoch)
        assert torch.equal(res.theta[detached], full.theta[detached]), engine
        torch.testing.assert_close(res.theta, full.theta, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("engine", ["dense", "live"])
def test_a_network_with_weight_decay_has_the_same_bits_alone_and_in_any_batch(problem, engine):
    _, _, _, layout, theta0 = problem
    mask = masks_with_detached_neurons(layout, 4)
    opts = dict(weight_decay=WD, batch_size=32, patience=2, max_epochs=30)
    together = train(problem, mask, engine=engine, **opts)
    assert len(set(together.epochs.tolist())) > 1
    for rows in ([2], [3, 0], [1, 3, 2]):
        part = train(problem, mask, rows=rows, engine=engine, **opts)
        assert torch.equal(part.theta, together.theta[rows])
        assert torch.equal(part.epochs, together.epochs[rows])


# ---- fine-tuning and rewinding through the imp stage ------------------------------------------
def run_pipeline(tmp_path, monkeypatch, **overrides):
    """generate → trajectory → train → imp in process on tiny params; returns the params, the
    start weights and masks train_population received at each level, and the level files."""
    from pipeline.stages import generate, trajectory
    from pipeline.stages import imp as imp_stage
    from pipeline.stages import train as train_stage

    params = config.parse(tiny_params(**{"train.workers": 1, **overrides}))
    for stage in (generate, trajectory, train_stage):
        stage.run(params, tmp_path)
    starts = []
    real = imp.train_population

    def spy(layout, start, mask, *args, **kwargs):
        starts.append((start.clone(), mask.clone()))
        return real(layout, start, mask, *args, **kwargs)

    monkeypatch.setattr(imp, "train_population", spy)
    imp_stage.run(params, tmp_path)
    levels = [imp.load_level(imp.level_path(tmp_path / "models/imp", i))
              for i in range(params.prune.iterations + 1)]
    return params, starts, levels


def test_finetune_starts_each_level_from_the_previous_levels_trained_survivors(tmp_path,
                                                                               monkeypatch):
    params, starts, levels = run_pipeline(tmp_path, monkeypatch, **{
        "prune.method": "finetune", "train.weight_decay": 1e-3, "prune.reinit_control": True})
    k = len(params.model.seeds)
    layout = Layout(tuple(json.loads((tmp_path / "models/shape.json").read_text())["layers"]))
    init = torch.load(tmp_path / "models/init.pt", weights_only=True)
    theta0 = layout.from_state(init)
    assert len(starts) == params.prune.iterations
    for i, (start, mask) in enumerate(starts, start=1):
        trained = layout.from_state(levels[i - 1])
        new_mask = layout.from_state(levels[i], masks=True)
        assert torch.equal(mask[:k], new_mask)
        assert torch.equal(start[:k], trained * new_mask)       # the trained survivors, exactly
        assert not torch.equal(start[:k], theta0 * new_mask)    # … not θ₀
        assert torch.equal(mask[k:], new_mask)                  # re-init control: same mask …
        assert not torch.equal(start[k:], trained * new_mask)   # … fresh weights


def test_rewind_starts_each_level_from_theta_k(tmp_path, monkeypatch):
    params, starts, levels = run_pipeline(tmp_path, monkeypatch, **{
        "prune.method": "rewind", "prune.rewind": 2, "train.weight_decay": 1e-3})
    layout = Layout(tuple(json.loads((tmp_path / "models/shape.json").read_text())["layers"]))
    init = torch.load(tmp_path / "models/init.pt", weights_only=True)
    theta_k = layout.from_state(init, "rewind.")
    assert not torch.equal(theta_k, layout.from_state(init))
    for i, (start, _) in enumerate(starts, start=1):
        new_mask = layout.from_state(levels[i], masks=True)
        assert torch.equal(start, theta_k * new_mask)


def test_default_method_and_weight_decay_leave_level_files_and_fingerprint_unchanged(
        tmp_path, monkeypatch):
    """prune.method rewind and train.weight_decay 0 written out give the level files (bytes)
    and the resume fingerprint of params without the keys: finished levels made before the
    keys existed are kept."""
    from pipeline.stages import generate, trajectory
    from pipeline.stages import imp as imp_stage
    from pipeline.stages import train as train_stage
    out = {}
    for name, overrides in (("written", {"prune.method": "rewind", "train.weight_decay": 0.0}),
                            ("absent", {})):
        folder = tmp_path / name
        folder.mkdir()
        raw = tiny_params(**{"train.workers": 1, **overrides})
        if name == "absent":
            raw["prune"].pop("method", None)
            raw["train"].pop("weight_decay", None)
        params = config.parse(raw)
        for stage in (generate, trajectory, train_stage, imp_stage):
            stage.run(params, folder)
        out[name] = folder
    for rel in ("models/imp/level_01.pt", "models/imp/level_03.pt", "models/dense.pt"):
        assert (out["written"] / rel).read_bytes() == (out["absent"] / rel).read_bytes(), rel
    manifests = [json.loads((out[n] / "models/imp/manifest.json").read_text()) for n in out]
    assert manifests[0] == manifests[1]


def test_fine_tuned_levels_are_the_same_for_any_seed_batch(problem):
    """train_level with prune.method finetune and weight decay: a seed's level is the same
    bits trained with all seeds, with some, or alone (train.workers changes nothing)."""
    params, loss_fn, splits, layout, theta0 = problem
    tasks = task_infos(params.data.tasks)
    seeds = list(params.model.seeds)
    cfg = dataclasses.replace(params.train, weight_decay=WD, batch_size=32, patience=3,
                              max_epochs=25)
    trained = theta0 + 0.05 * torch.randn(theta0.shape, generator=torch.Generator().manual_seed(2))
    mask = masks_with_detached_neurons(layout, 4)
    ctx = imp.Context(layout, tasks, splits, cfg, params.model, seeds, layout.prunable(True),
                      theta0, random_mask_control=True, method="finetune")
    together = imp.train_level(ctx, mask, 2, trained)
    for rows in ([1], [3, 0]):
        sub = dataclasses.replace(ctx, seeds=[seeds[r] for r in rows], rewind_theta=theta0[rows])
        part = imp.train_level(sub, mask[rows], 2, trained[rows])
        for key, value in part.items():
            if ".curves." in f".{key}":  # [K, E]: padded to the batch's longest training
                value, whole = value.nan_to_num(-1), together[key][rows, :value.shape[1]]
                assert torch.equal(value, whole.nan_to_num(-1)), key
            elif key != "seeds":
                assert torch.equal(value, together[key][rows]), key
