"""Training of a population of masked MLPs, every network with its own early stopping
(docs/science.md §4): the entry point `train_population` and the epoch loop.

The loop is the same for both paths; a population object (engine.dense: batched dense matmuls;
engine.live: per-network kernels that follow the live weights) does the arithmetic. A network
that stops is taken out of the batch: the rest go on with smaller tensors.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import TrainConfig
from pipeline.data import TaskInfo
from pipeline.engine.device import resolve_device  # noqa: F401  (re-exported)
from pipeline.engine.loss import TaskLoss
from pipeline.engine.optim import STOP_REASONS, CurveLog, Stopper, decay_only
from pipeline.model import Layout, compaction, forward, kept_neurons


@dataclass
class Split:
    x: torch.Tensor  # [N, n_in] float32
    y: torch.Tensor  # [N, T] int64


def load_splits(folder: str = "data") -> tuple[list[TaskInfo], dict[str, Split]]:
    """Tasks and train/val/test tensors as written by the generate stage."""
    from pipeline import data

    tasks, arrays = data.load(folder)
    return tasks, {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"]))
                   for s, a in arrays.items()}


@dataclass
class Evaluation:
    loss: torch.Tensor      # [K]
    accuracy: torch.Tensor  # [K, T]


@torch.no_grad()
def evaluate(layout: Layout, theta: torch.Tensor, split: Split, loss_fn: TaskLoss,
             cfg: TrainConfig | None = None) -> Evaluation:
    """Loss [K] and per-task accuracy [K, T] of K networks on a split. With `cfg` whose
    training takes the live path (engine.live.uses_live), each network is evaluated on its
    live weights only (engine.live.live_logits) instead of the dense shape."""
    from pipeline.engine.live import live_logits, uses_live

    if cfg is not None and uses_live(layout, cfg) and theta.device.type == "cpu":
        logits = live_logits(layout, theta, split.x)
    else:
        logits = forward(layout, theta, split.x)
    return Evaluation(loss_fn(logits, split.y), loss_fn.accuracy(logits, split.y))


@dataclass
class TrainResult:
    theta: torch.Tensor          # [K, P] kept weights (best validation epoch, or the last)
    epochs: torch.Tensor         # [K] epochs run
    best_epoch: torch.Tensor     # [K] epoch whose weights were kept (0 = the start)
    stop_code: torch.Tensor      # [K] index into STOP_REASONS
    train_curve: torch.Tensor    # [K, E] training loss per epoch (NaN after stopping)
    val_curve: torch.Tensor      # [K, E] validation loss per epoch
    rewind_theta: torch.Tensor | None  # [K, P] weights after `rewind_epoch` epochs
    # [K, P] bool: unpruned entries whose loss gradient was exactly 0 at every step (frozen,
    # docs/science.md §8); weight decay is not part of the loss gradient
    frozen: torch.Tensor | None = None

    @property
    def stop_reasons(self) -> list[str]:
        return [STOP_REASONS[int(c)] for c in self.stop_code]

    def health_frame(self, seeds: list[int], test_acc: torch.Tensor, task_names: list[str],
                     test_loss: torch.Tensor | None = None):
        """The networks as level-0 rows of reports/imp/levels.csv's columns that
        pipeline.health reads (seed, level, epochs, best_epoch, stop_reason, test_acc_<task>,
        and test_loss when given) → pandas.DataFrame; test_acc [K, T], test_loss [K]."""
        import pandas as pd

        frame = pd.DataFrame({"seed": seeds, "level": 0, "epochs": self.epochs.numpy(),
                              "best_epoch": self.best_epoch.numpy(),
                              "stop_reason": self.stop_reasons})
        if test_loss is not None:
            frame["test_loss"] = test_loss.numpy()
        for i, name in enumerate(task_names):
            frame[f"test_acc_{name}"] = test_acc[:, i].numpy()
        return frame


def train_population(layout: Layout, theta0: torch.Tensor, mask: torch.Tensor,
                     train: Split, val: Split, loss_fn: TaskLoss, cfg: TrainConfig,
                     shuffle_seeds: list[int] | None = None,
                     rewind_epoch: int = 0, engine: str | None = None) -> TrainResult:
    """Train K networks from theta0 [K, P] under mask [K, P] with per-network early stopping.

    Each network: Adam/SGD on the summed task losses, full batch or mini-batches (shuffled by
    its own generator, seeded from shuffle_seeds), validation loss after every epoch, stop at
    `patience` epochs without an improvement (Stopper: of the summed or of any task's own
    validation loss, train.monitor), at training loss below loss_cutoff, at max_epochs, or at
    a non-finite loss; keeps the weights of the last improvement (train.restore_best) or of the
    last epoch.

    `engine`: None chooses by the layout (engine.live.uses_live: wide layers with
    train.compact on), or "dense" / "live" to force one path (tests, benchmarks).
    - dense: with cfg.compact, every network is trained in its canonical compact layout
      (model.compaction), so a network's bits depend on its own mask and seed alone; every value
      equals the plain textbook loop bit for bit (tests).
    - live: every network on its own live weights only (engine.live): exact arithmetic, other
      rounding; equal to the dense path within float tolerance (tests).
    """
    from pipeline.engine.live import uses_live

    if engine is None:
        engine = "live" if uses_live(layout, cfg) else "dense"
    with torch.inference_mode():  # no autograd bookkeeping on any of the ops per epoch
        if engine == "live":
            result = _train_live(layout, theta0, mask, train, val, loss_fn, cfg, shuffle_seeds,
                                 rewind_epoch)
        else:
            result = _train_dense(layout, theta0, mask, train, val, loss_fn, cfg, shuffle_seeds,
                                  rewind_epoch)
        if cfg.weight_decay and cfg.compact:
            result = _decay_detached(layout, result, theta0, mask, cfg, train.x.shape[0],
                                     rewind_epoch)
    # inference tensors cannot be changed in place outside inference mode: hand out plain ones
    return TrainResult(*(None if t is None else t.clone()
                         for t in (getattr(result, f.name) for f in dataclasses.fields(result))))


def trained_entries(layout: Layout, mask: torch.Tensor) -> torch.Tensor:
    """Bool [K, P]: the entries both paths train, those of the kept neurons (model.kept_neurons)
    and the inputs: weights between two kept nodes and kept neurons' biases. Every other entry
    has an exactly-zero loss gradient; compaction and the live plans leave it out."""
    nodes = [torch.ones(mask.shape[0], layout.layers[0], dtype=torch.bool),
             *kept_neurons(layout, mask),
             torch.ones(mask.shape[0], layout.layers[-1], dtype=torch.bool)]
    out = torch.zeros_like(mask, dtype=torch.bool)
    for i, (w, b) in enumerate(layout.views(out)):
        w.copy_(nodes[i + 1].unsqueeze(2) & nodes[i].unsqueeze(1))
        b.copy_(nodes[i + 1])
    return out


def _decay_detached(layout, result, theta0, mask, cfg, n_train, rewind_epoch):
    """With weight decay, the live entries outside the trained ones (trained_entries: neurons
    with no path to an output, or whose output is exactly 0) still move: their gradient is λ·θ
    alone. Both paths leave them at their start values while training; here each gets the
    values of as many decay-only steps (optim.decay_only) as its network took up to the
    weights it keeps, so the result equals the full loop's (tested against train.compact
    false)."""
    detached = mask & ~trained_entries(layout, mask)
    if not bool(detached.any()):
        return result
    per_epoch = 1 if cfg.batch_size is None else -(-n_train // cfg.batch_size)
    rows = torch.nonzero(detached)[:, 0]
    start = (theta0 * mask.to(theta0.dtype)).cpu()[detached]
    theta = result.theta.clone()
    theta[detached] = decay_only(cfg, start, result.best_epoch[rows] * per_epoch)
    rewind = result.rewind_theta
    if rewind is not None:
        rewind = rewind.clone()
        steps = torch.clamp(result.epochs[rows], max=rewind_epoch) * per_epoch
        rewind[detached] = decay_only(cfg, start, steps)
    return dataclasses.replace(result, theta=theta, rewind_theta=rewind)


def _on_device(cfg: TrainConfig, *tensors_and_splits):
    device = resolve_device(cfg.device)
    if device.type == "cpu":  # train there, return CPU tensors like the CPU path
        return tensors_and_splits
    return tuple(Split(t.x.to(device), t.y.to(device)) if isinstance(t, Split) else t.to(device)
                 for t in tensors_and_splits)


def _train_dense(layout, theta0, mask, train, val, loss_fn, cfg, shuffle_seeds, rewind_epoch):
    from pipeline.engine.dense import DensePopulation

    plan = compaction(layout, mask) if cfg.compact else None
    if plan is None:
        theta0, mask, train, val = _on_device(cfg, theta0, mask, train, val)
        pop = DensePopulation(layout, layout, theta0, mask, train, val, loss_fn, cfg,
                              shuffle_seeds, None)
        return epoch_loop(pop, theta0, mask, cfg, rewind_epoch)
    # train only the neurons that matter (see compaction), in canonical compact layouts
    part0, part_mask, train, val = _on_device(cfg, plan.gather(theta0), plan.gather(mask),
                                              train, val)
    pop = DensePopulation(plan.layout, plan.layout, part0, part_mask, train, val, loss_fn, cfg,
                          shuffle_seeds, plan.kept)
    part = epoch_loop(pop, part0, part_mask, cfg, rewind_epoch)
    start = theta0 * mask.to(theta0.dtype)  # what training leaves the dropped entries at
    return dataclasses.replace(
        part, theta=plan.scatter(part.theta, start),
        rewind_theta=None if part.rewind_theta is None
        else plan.scatter(part.rewind_theta, start),
        frozen=plan.scatter(part.frozen, mask))  # dropped entries get no gradient: frozen


def _train_live(layout, theta0, mask, train, val, loss_fn, cfg, shuffle_seeds, rewind_epoch):
    from pipeline.engine.live import live_population

    theta0, mask, train, val = _on_device(cfg, theta0, mask, train, val)
    pop = live_population(layout, theta0, mask, train, val, loss_fn, cfg, shuffle_seeds)
    return epoch_loop(pop, theta0, mask, cfg, rewind_epoch)


def epoch_loop(pop, theta0: torch.Tensor, mask: torch.Tensor, cfg: TrainConfig,
               rewind_epoch: int) -> TrainResult:
    """The epoch loop around a population `pop` (DensePopulation or LivePopulation) that
    started from theta0 [K, P] under mask [K, P] (in the layout pop hands weights out in)."""
    k_total, device = theta0.shape[0], theta0.device
    maskf = mask.to(theta0.dtype)
    stopper = Stopper(cfg, pop.val_monitor0.cpu().numpy())
    curves = CurveLog(k_total, min(cfg.max_epochs, 1024))
    active = np.arange(k_total)
    out_theta = torch.zeros_like(theta0)
    out_frozen = torch.zeros_like(mask)
    out_epochs, out_best_epoch, out_stop = (np.zeros(k_total, dtype=np.int64) for _ in range(3))
    rewind_theta = theta0.clone() * maskf if rewind_epoch > 0 else None
    at = lambda rows: torch.from_numpy(rows).to(device)  # noqa: E731

    for epoch in range(1, cfg.max_epochs + 1):
        train_loss, train_mon = pop.train_epoch()
        val_loss, val_mon = pop.validate()
        curves.record(epoch, active, train_loss.cpu().numpy(), val_loss.cpu().numpy())
        improved, code = stopper.update(epoch, train_mon.cpu().numpy(), val_mon.cpu().numpy())
        pop.remember(improved)
        if rewind_theta is not None and epoch == rewind_epoch:
            rewind_theta[at(active)] = pop.weights()
        if code is None or not (code >= 0).any():
            continue
        stop = code >= 0
        done = active[stop]
        out_theta[at(done)] = pop.weights(stop, best=True)
        out_frozen[at(done)] = pop.frozen(stop)
        out_epochs[done] = epoch
        out_best_epoch[done] = stopper.best_epoch[stop] if cfg.restore_best else epoch
        out_stop[done] = code[stop]
        if rewind_theta is not None and epoch < rewind_epoch:  # stopped before it
            rewind_theta[at(done)] = pop.weights(stop)
        keep = ~stop
        if not keep.any():
            break
        active = active[keep]
        stopper.keep(keep)
        pop.keep(keep)

    train_curve, val_curve = curves.tensors()
    return TrainResult(theta=(out_theta * maskf).cpu(), epochs=torch.from_numpy(out_epochs),
                       best_epoch=torch.from_numpy(out_best_epoch),
                       stop_code=torch.from_numpy(out_stop),
                       train_curve=train_curve, val_curve=val_curve,
                       rewind_theta=None if rewind_theta is None else rewind_theta.cpu(),
                       frozen=out_frozen.cpu())
