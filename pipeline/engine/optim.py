"""The three parts of training around the kernels: the optimizer step on the flat parameters,
the per-network early stopper (docs/science.md §4) and the loss-curve log."""
from __future__ import annotations

import math

import numpy as np
import torch

from pipeline.config import TrainConfig

STOP_REASONS = ("patience", "cutoff", "max_epochs", "diverged")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
FLOAT_MIN = float(torch.finfo(torch.float32).tiny)  # the smallest normal float32, 2⁻¹²⁶


class Optimizer:
    """Adam (β = 0.9, 0.999, ε = 1e-8) or SGD with momentum on the flat [K, P] parameters of a
    population: a handful of tensor ops per step for all networks. Pruned entries get zero
    gradient, so their moments stay zero and their value stays exactly zero.

    train.weight_decay λ > 0 adds λ·θ to the gradient before the update, as torch.optim.Adam
    and SGD do with `weight_decay` (L2, not AdamW's decoupled decay; docs/science.md §4). A pruned
    entry is exactly 0, so λ·θ adds exactly 0 there: it stays 0 in weights, gradients and
    moments. λ = 0 runs exactly the ops (and bits) of the optimizer without weight decay."""

    def __init__(self, cfg: TrainConfig, theta: torch.Tensor):
        self.cfg = cfg
        self.adam = cfg.optimizer == "adam"
        self.m = torch.zeros_like(theta)  # Adam's first moment, or SGD's momentum buffer
        self.v = torch.zeros_like(theta) if self.adam else None
        self.denom = torch.empty_like(theta) if self.adam else None  # reused every step
        self.t = 0  # steps taken (every network of a population starts together)

    def step(self, theta: torch.Tensor, grad: torch.Tensor) -> None:
        self.t += 1
        lr = self.cfg.lr
        if self.cfg.weight_decay:
            grad.add_(theta, alpha=self.cfg.weight_decay)
        if self.adam:
            b1, b2 = ADAM_BETAS
            self.m.mul_(b1).add_(grad, alpha=1 - b1)
            self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            # v is raised to the smallest normal float before the square root: sqrt of a
            # subnormal takes a slow microcode path (14 ms of a 1.5 M-entry step here, a fifth
            # of an epoch), and either way the result vanishes in the + ε below (√v / √(1 − β₂ᵗ)
            # < 4e-18, under half an ulp of ε): the same bits, fast
            denom = torch.clamp(self.v, min=FLOAT_MIN, out=self.denom).sqrt_() \
                .div_(math.sqrt(1 - b2**self.t))
            theta.addcdiv_(self.m, denom.add_(ADAM_EPS), value=-lr / (1 - b1**self.t))
        elif self.cfg.momentum > 0:
            self.m.mul_(self.cfg.momentum).add_(grad)
            theta.add_(self.m, alpha=-lr)
        else:
            theta.add_(grad, alpha=-lr)

    def map(self, fn) -> None:
        """Apply fn to every per-parameter buffer (networks leaving, layers narrowing)."""
        self.m = fn(self.m)
        if self.adam:
            self.v = fn(self.v)
            self.denom = torch.empty_like(self.v)


def decay_only(cfg: TrainConfig, start: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Values [D] that entries starting at `start` [D] reach after `steps` [D] (int) optimizer
    steps in which their loss gradient is exactly 0: weight decay alone moves them (docs/science.md
    §4: it pulls weights that get no gradient toward 0). Every entry runs the elementwise ops of
    Optimizer.step, so it ends with the bits it would have in the full loop. Without weight
    decay such entries never move: `start` is returned."""
    out = start.clone()
    if not cfg.weight_decay or not len(start) or int(steps.max()) == 0:
        return out
    theta = start.clone()
    opt = Optimizer(cfg, theta)
    zero = torch.zeros_like(theta)
    for t in range(1, int(steps.max()) + 1):
        opt.step(theta, zero.zero_())
        done = steps == t
        if bool(done.any()):
            out[done] = theta[done]
    return out


def keep_best(best: torch.Tensor | None, theta: torch.Tensor, improved: np.ndarray) -> None:
    """Copy the rows of theta [K, P] whose network improved this epoch (improved [K] bool) into
    best (train.restore_best; None: nothing kept)."""
    if best is None:
        return
    if improved.all():
        best.copy_(theta)
    elif improved.any():
        best[torch.from_numpy(np.flatnonzero(improved)).to(theta.device)] = \
            theta[torch.from_numpy(improved).to(theta.device)]


class Stopper:
    """Per-network early stopping on numpy vectors (cheap, and rounded like the float32 tensors:
    the thresholds are float32 too).

    monitor `total`: the patience counter restarts when the summed validation loss improves by
    more than min_delta; the loss cutoff applies to the summed training loss.
    monitor `per_task` (docs/science.md §4): it restarts whenever *any* task reaches a new best of its
    own validation loss, and the cutoff must hold for every task's own training loss, so one
    task that still learns keeps its network training.
    An epoch is an *improvement* when it restarts the counter. With restore_best the weights of
    the last improvement are kept: in `total` mode the epoch of the lowest summed validation
    loss; in `per_task` mode the last epoch at which some task was still getting better —
    the summed loss's minimum can come before a slow task has learned (the failure this mode
    exists for), so restoring it would throw that task's learning away.
    """

    def __init__(self, cfg: TrainConfig, val0: np.ndarray):
        self.cfg = cfg
        self.per_task = cfg.monitor == "per_task"
        self.best_val = np.where(np.isfinite(val0), val0, np.float32(np.inf))
        k = val0.shape[0]
        self.best_epoch = np.zeros(k, dtype=np.int64)
        self.bad = np.zeros(k, dtype=np.int64)
        self.min_delta, self.cutoff = np.float32(cfg.min_delta), np.float32(cfg.loss_cutoff)

    def update(self, epoch: int, train: np.ndarray, val: np.ndarray):
        """train/val losses of the active networks ([K], or [K, T] per task) → (improved [K],
        stop codes [K] with -1 for "go on", or None when no network stops this epoch)."""
        better = val < self.best_val - self.min_delta
        self.best_val = np.where(better, val, self.best_val)
        if self.per_task:
            improved = better.any(axis=1)
            below = (train < self.cutoff).all(axis=1)
            # a NaN compares False everywhere: these sums are finite iff every loss is
            finite = np.isfinite(train.sum(axis=1) + val.sum(axis=1))
        else:
            improved, below, finite = better, train < self.cutoff, np.isfinite(train + val)
        self.best_epoch = np.where(improved, epoch, self.best_epoch)
        self.bad = np.where(improved, 0, self.bad + 1)
        last = epoch >= self.cfg.max_epochs
        if not last and self.bad.max() < self.cfg.patience and not below.any() and finite.all():
            return improved, None  # the usual epoch: nobody stops
        code = np.full(len(improved), STOP_REASONS.index("max_epochs") if last else -1)
        code[self.bad >= self.cfg.patience] = STOP_REASONS.index("patience")
        code[below] = STOP_REASONS.index("cutoff")
        code[~finite] = STOP_REASONS.index("diverged")
        return improved, code

    def keep(self, rows: np.ndarray) -> None:
        self.best_val, self.best_epoch, self.bad = (
            self.best_val[rows], self.best_epoch[rows], self.bad[rows])


class CurveLog:
    """Training and validation loss per network and epoch, copied into preallocated arrays.

    Copied, not kept as per-epoch objects: thousands of small long-lived tensors between the
    large per-epoch buffers pinned glibc's heap, whose size then grew with seeds × epochs
    (3.9 GB for 64 dense networks × 1000 epochs; benchmarks/README.md)."""

    def __init__(self, k: int, capacity: int = 1024):
        self.train = np.full((k, capacity), np.nan, dtype=np.float32)
        self.val = np.full((k, capacity), np.nan, dtype=np.float32)
        self.epochs = 0

    def record(self, epoch: int, rows: np.ndarray, train: np.ndarray, val: np.ndarray) -> None:
        if epoch > self.train.shape[1]:
            grow = np.full_like(self.train, np.nan)
            self.train = np.concatenate([self.train, grow], axis=1)
            self.val = np.concatenate([self.val, grow], axis=1)
        self.train[rows, epoch - 1] = train
        self.val[rows, epoch - 1] = val
        self.epochs = epoch

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(self.train[:, :self.epochs].copy()),
                torch.from_numpy(self.val[:, :self.epochs].copy()))


