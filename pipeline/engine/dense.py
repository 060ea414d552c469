"""The dense batched path: K networks of one layout as one flat theta [K, P], one `bmm` per layer.

A population object holds everything the epoch loop (engine.loop) does not: weights, gradient,
mask, optimizer, the best weights so far, the data in the form its kernels want, and the cached
activations. The loop only asks it for an epoch of updates, a validation pass, to remember the
improved networks, for weights, and to drop stopped networks.
"""
from __future__ import annotations

import numpy as np
import torch

from pipeline.config import TrainConfig
from pipeline.engine.kernels import backward, forward_acts, step_views
from pipeline.engine.loss import TaskLoss
from pipeline.engine.optim import Optimizer, keep_best
from pipeline.model import Layout, population_widths, resize


class DensePopulation:
    """K networks in `layout` (the full one, or a canonical compact one with `kept` [K, H] kept
    neurons per hidden layer: the batch then narrows to the remaining networks' widths whenever
    networks stop; dropping trailing zero neurons changes no bit). `home` is the layout the
    weights are handed out in. Data (train/val: model-ready x [N, in] and y) live on `device`.

    Full batch: one pass over [train; val] rows serves the validation loss after epoch e and the
    gradient of epoch e + 1 (they need the same weights), so an epoch is one forward pass.
    """

    def __init__(self, layout: Layout, home: Layout, theta0: torch.Tensor, mask: torch.Tensor,
                 train, val, loss_fn: TaskLoss, cfg: TrainConfig,
                 shuffle_seeds: list[int] | None, kept: torch.Tensor | None):
        self.layout, self.home, self.kept = layout, home, kept
        self.loss_fn, self.cfg, self.train, self.val = loss_fn, cfg, train, val
        self.device = theta0.device
        k = theta0.shape[0]
        maskf = mask.to(theta0.dtype)
        self.theta = (theta0 * maskf).clone()
        self.grad = torch.empty_like(self.theta)
        self.maskf = maskf.clone()
        self.touched = torch.zeros_like(mask, dtype=torch.bool)  # a nonzero loss gradient
        self.opt = Optimizer(cfg, self.theta)
        self.best = self.theta.clone() if cfg.restore_best else None
        self.n_train = train.x.shape[0]
        self.full_batch = cfg.batch_size is None
        self.per_task = cfg.monitor == "per_task"
        self.train_t, self.val_t = loss_fn.prepare(train.y), loss_fn.prepare(val.y)
        self.views, self.grads = step_views(layout, self.theta), layout.views(self.grad)
        self.gens = None
        if self.full_batch:  # the start's validation loss and the first epoch's activations
            self.x_all = torch.cat([train.x, val.x]).expand(k, -1, -1)
            self.acts = forward_acts(layout, self.theta, self.x_all)
            _, self.val_monitor0 = self._val_losses(self.acts[-1][:, self.n_train:])
        else:
            _, self.val_monitor0 = self._val_losses(forward_acts(layout, self.theta, val.x)[-1])
            seeds = shuffle_seeds if shuffle_seeds is not None else list(range(k))
            self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def _val_losses(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss [K], monitored loss: the same, or per task [K, T])."""
        out = self.loss_fn.value_and_grad(logits, self.val_t, need_grad=False,
                                          per_task=self.per_task)
        return out[0], out[2] if self.per_task else out[0]

    def train_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One epoch of updates → (training loss [K], monitored training loss [K] or [K, T])."""
        layout, theta, grad, views, grads = self.layout, self.theta, self.grad, self.views, self.grads
        if self.full_batch:  # acts of the current weights, from the last validation pass
            out = self.loss_fn.value_and_grad(self.acts[-1][:, :self.n_train], self.train_t,
                                              per_task=self.per_task)
            backward(layout, theta, self.acts, out[1], grad, views, grads)
            grad.mul_(self.maskf)
            self.touched |= grad != 0
            self.opt.step(theta, grad)
            return out[0], out[2] if self.per_task else out[0]
        n, bs = self.n_train, self.cfg.batch_size
        perm = torch.stack([torch.randperm(n, generator=g) for g in self.gens]).to(self.device)
        # every network's samples in its own order, gathered once; the batches are views
        x_epoch, labels = self.train.x[perm], self.loss_fn.prepare(self.train.y[perm])
        epoch_loss = theta.new_zeros(theta.shape[0])
        train_mon = theta.new_zeros(theta.shape[0], self.loss_fn.n_tasks) if self.per_task \
            else epoch_loss
        for i in range(0, n, bs):
            xb, yb = x_epoch[:, i:i + bs], labels.rows(i, i + bs)
            acts = forward_acts(layout, theta, xb, views)
            out = self.loss_fn.value_and_grad(acts[-1], yb, per_task=self.per_task)
            backward(layout, theta, acts, out[1], grad, views, grads)
            epoch_loss += out[0] * (xb.shape[-2] / n)
            if self.per_task:
                train_mon += out[2] * (xb.shape[-2] / n)
            grad.mul_(self.maskf)
            self.touched |= grad != 0
            self.opt.step(theta, grad)
        return epoch_loss, train_mon

    def validate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(validation loss [K], monitored validation loss) of the current weights."""
        if self.full_batch:
            self.acts = forward_acts(self.layout, self.theta, self.x_all, self.views)
            return self._val_losses(self.acts[-1][:, self.n_train:])
        return self._val_losses(forward_acts(self.layout, self.theta, self.val.x, self.views)[-1])

    def remember(self, improved: np.ndarray) -> None:
        """Keep the weights of the networks that improved this epoch (train.restore_best)."""
        keep_best(self.best, self.theta, improved)

    def weights(self, rows: np.ndarray | None = None, best: bool = False) -> torch.Tensor:
        """The current (or kept best) weights of the networks `rows` (bool [K]; all: None) in
        the home layout [n, P_home]."""
        theta = self.best if best and self.best is not None else self.theta
        if rows is not None:
            theta = theta[torch.from_numpy(rows).to(self.device)]
        return resize(self.layout, self.home, theta)

    def frozen(self, rows: np.ndarray | None = None) -> torch.Tensor:
        """Bool [n, P_home]: the unpruned entries of the networks `rows` (all: None) whose loss
        gradient was exactly 0 at every step so far."""
        frozen = (self.maskf != 0) & ~self.touched
        if rows is not None:
            frozen = frozen[torch.from_numpy(rows).to(self.device)]
        return resize(self.layout, self.home, frozen)

    def keep(self, keep: np.ndarray) -> None:
        """Go on with the networks `keep` (bool [K]) only, in narrower layers when they fit."""
        keep_t = torch.from_numpy(keep).to(self.device)
        layout = self.layout
        narrow = layout
        if self.kept is not None:  # the remaining networks may fit in narrower layers
            self.kept = self.kept[keep_t.cpu()]
            narrow = Layout((self.home.layers[0], *population_widths(self.kept),
                             self.home.layers[-1]))
        fit = (lambda t: t[keep_t]) if narrow == layout else \
            (lambda t: resize(layout, narrow, t[keep_t]))  # noqa: E731
        self.theta, self.grad, self.maskf = fit(self.theta), fit(self.grad), fit(self.maskf)
        self.touched = fit(self.touched)
        self.best = None if self.best is None else fit(self.best)
        self.opt.map(fit)
        if self.full_batch:
            self.x_all = self.x_all[:int(keep.sum())]  # the same rows for every network
            if narrow == layout:
                self.acts = [self.x_all] + [a[keep_t] for a in self.acts[1:]]
            else:  # the remaining networks' activations, without the dropped zero neurons
                self.acts = [self.x_all] + [a[keep_t][..., :n].contiguous()
                                            for a, n in zip(self.acts[1:], narrow.layers[1:])]
        else:
            self.gens = [g for g, kp in zip(self.gens, keep.tolist()) if kp]
        self.layout = narrow
        self.views, self.grads = step_views(narrow, self.theta), narrow.views(self.grad)
