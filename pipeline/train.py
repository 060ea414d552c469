"""Training of a population of masked MLPs, every network with its own early stopping.

The optimizer is written out on the flat [K, P] parameter matrix (a handful of tensor ops per
step for the whole population). Pruned entries have zero gradient, so their Adam moments stay
zero and their value stays exactly zero. A network that stops is taken out of the batch: the
rest go on with smaller tensors and stopped networks cost nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.config import TrainConfig
from pipeline.data import TaskInfo
from pipeline.model import Layout, forward

STOP_REASONS = ("patience", "cutoff", "max_epochs", "diverged")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


class TaskLoss:
    """Per-network loss (sum of per-task mean losses) and per-task accuracy."""

    def __init__(self, tasks: list[TaskInfo]):
        self.bce_tasks = [i for i, t in enumerate(tasks) if t.loss == "bce"]
        self.bce_cols = [tasks[i].outputs[0] for i in self.bce_tasks]
        self.ce = [(i, t.outputs) for i, t in enumerate(tasks) if t.loss == "ce"]
        self.n_tasks = len(tasks)

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """logits [K, N, O]; y [N, T] or [K, N, T] integer labels → loss [K]."""
        return self.value_and_grad(logits, y, need_grad=False)[0]

    def value_and_grad(self, logits: torch.Tensor, y: torch.Tensor, need_grad: bool = True
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Loss [K] and, with need_grad, its gradient wrt the logits [K, N, O], written out
        analytically (BCE: (σ(z) − y)/N; CE: (softmax(z) − onehot(y))/N)."""
        k, n = logits.shape[:2]
        y = y.expand(k, n, self.n_tasks)
        total = logits.new_zeros(k)
        # every output is a binary task's logit, in task order: no gathering needed
        all_bce = not self.ce and len(self.bce_cols) == logits.shape[2]
        grad = torch.zeros_like(logits) if need_grad and not all_bce else None
        if self.bce_tasks:
            z = logits if all_bce else logits[..., self.bce_cols]
            target = (y if all_bce else y[..., self.bce_tasks]).to(z.dtype)
            total = total + F.binary_cross_entropy_with_logits(
                z, target, reduction="none").mean(dim=1).sum(dim=1)
            if need_grad:
                g = torch.sigmoid(z).sub_(target).div_(n)
                if all_bce:
                    grad = g
                else:
                    grad[..., self.bce_cols] = g
        for i, cols in self.ce:
            z = logits[..., cols[0]:cols[-1] + 1]
            logp = torch.log_softmax(z, dim=-1)
            label = y[..., i].unsqueeze(-1)
            total = total - logp.gather(-1, label).squeeze(-1).mean(dim=1)
            if need_grad:
                g = logp.exp_()
                g.scatter_add_(-1, label, torch.full_like(label, -1, dtype=g.dtype))
                grad[..., cols[0]:cols[-1] + 1] = g.div_(n)
        return total, grad

    def accuracy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-task accuracy [K, T]."""
        k, n = logits.shape[:2]
        y = y.expand(k, n, self.n_tasks)
        acc = logits.new_zeros(k, self.n_tasks)
        if self.bce_tasks:
            pred = (logits[..., self.bce_cols] > 0).long()
            acc[:, self.bce_tasks] = (pred == y[..., self.bce_tasks]).float().mean(dim=1)
        for i, cols in self.ce:
            pred = logits[..., cols[0]:cols[-1] + 1].argmax(dim=-1)
            acc[:, i] = (pred == y[..., i]).float().mean(dim=1)
        return acc


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
def evaluate(layout: Layout, theta: torch.Tensor, split: Split, loss_fn: TaskLoss) -> Evaluation:
    logits = forward(layout, theta, split.x)
    return Evaluation(loss_fn(logits, split.y), loss_fn.accuracy(logits, split.y))


def loss_and_grad(layout: Layout, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  loss_fn: TaskLoss, grad: torch.Tensor) -> torch.Tensor:
    """Loss [K]; writes d loss_k / d theta_k into grad [K, P]. Backpropagation written out for
    the batched ReLU MLP: no autograd graph, bias fused into the matmul, ReLU in place (the
    per-step overhead, not the arithmetic, dominates these small networks)."""
    views = layout.views(theta)
    acts = [x]
    for i, (w, b) in enumerate(views):
        h = acts[-1]
        if h.dim() == 2:  # shared full-batch input
            z = torch.matmul(h, w.transpose(1, 2)).add_(b.unsqueeze(1))
        else:
            z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if i < len(views) - 1:
            z.clamp_min_(0)
        acts.append(z)
    loss, dz = loss_fn.value_and_grad(acts[-1], y)
    grads = layout.views(grad)
    for i in range(len(views) - 1, -1, -1):
        gw, gb = grads[i]
        a = acts[i]
        gw.copy_(torch.matmul(dz.transpose(1, 2), a))
        gb.copy_(dz.sum(dim=1))
        if i > 0:
            # ReLU'(z) = 1 where the output was > 0: one fused op, no bool mask materialised
            dz = torch.ops.aten.threshold_backward(torch.bmm(dz, views[i][0]), a, 0.0)
    return loss


@dataclass
class TrainResult:
    theta: torch.Tensor          # [K, P] weights of the best validation epoch
    epochs: torch.Tensor         # [K] epochs run
    best_epoch: torch.Tensor     # [K] epoch whose weights were kept (0 = the start)
    stop_code: torch.Tensor      # [K] index into STOP_REASONS
    train_curve: torch.Tensor    # [K, E] training loss per epoch (NaN after stopping)
    val_curve: torch.Tensor      # [K, E] validation loss per epoch
    rewind_theta: torch.Tensor | None  # [K, P] weights after `rewind_epoch` epochs

    @property
    def stop_reasons(self) -> list[str]:
        return [STOP_REASONS[int(c)] for c in self.stop_code]


def resolve_device(name: str) -> torch.device:
    """train.device → a torch device: `auto` is CUDA when one is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from pipeline.config import ConfigError
        raise ConfigError("train.device: 'cuda' is not allowed here; allowed: cpu or auto "
                          "(no CUDA device is available)")
    return torch.device(name)


def train_population(layout: Layout, theta0: torch.Tensor, mask: torch.Tensor,
                     train: Split, val: Split, loss_fn: TaskLoss, cfg: TrainConfig,
                     shuffle_seeds: list[int] | None = None,
                     rewind_epoch: int = 0) -> TrainResult:
    """Train K networks from theta0 [K, P] under mask [K, P] with per-network early stopping.

    Each network: Adam/SGD on the summed task losses, full batch or mini-batches (shuffled by
    its own generator, seeded from shuffle_seeds), validation loss after every epoch, stop at
    `patience` epochs without an improvement of more than min_delta, at training loss below
    loss_cutoff, at max_epochs, or at a non-finite loss; keeps the best validation weights.
    """
    device = resolve_device(cfg.device)
    if device.type != "cpu":  # train there, return CPU tensors like the CPU path
        theta0, mask = theta0.to(device), mask.to(device)
        train, val = Split(train.x.to(device), train.y.to(device)), \
            Split(val.x.to(device), val.y.to(device))
    k_total, p = theta0.shape
    maskf_all = mask.to(theta0.dtype)
    theta = (theta0 * maskf_all).clone()
    grad = torch.empty_like(theta)
    maskf = maskf_all.clone()
    state1 = torch.zeros_like(theta0)  # Adam m or SGD momentum buffer
    state2 = torch.zeros_like(theta0)  # Adam v
    best = theta.clone()
    with torch.no_grad():
        best_val = evaluate(layout, theta, val, loss_fn).loss
    best_val = torch.where(torch.isfinite(best_val), best_val, torch.full_like(best_val, math.inf))
    best_epoch = torch.zeros(k_total, dtype=torch.long, device=device)
    bad = torch.zeros(k_total, dtype=torch.long, device=device)
    active = torch.arange(k_total, device=device)
    gens = None
    if cfg.batch_size is not None:
        seeds = shuffle_seeds if shuffle_seeds is not None else list(range(k_total))
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

    out_theta = torch.empty_like(theta0)
    out_epochs = torch.zeros(k_total, dtype=torch.long, device=device)
    out_best_epoch = torch.zeros(k_total, dtype=torch.long, device=device)
    out_stop = torch.zeros(k_total, dtype=torch.long, device=device)
    rewind_theta = theta0.clone() * maskf_all if rewind_epoch > 0 else None
    curves_train, curves_val, curves_idx = [], [], []
    n_train = train.x.shape[0]
    b1, b2 = ADAM_BETAS

    for epoch in range(1, cfg.max_epochs + 1):
        # ---- one epoch of updates --------------------------------------------------------
        if gens is None:
            batches = [(train.x, train.y)]
        else:
            perm = torch.stack([torch.randperm(n_train, generator=g) for g in gens]).to(device)
            batches = [(train.x[perm[:, i:i + cfg.batch_size]],
                        train.y[perm[:, i:i + cfg.batch_size]])
                       for i in range(0, n_train, cfg.batch_size)]
        epoch_loss = theta.new_zeros(len(active))
        for step, (xb, yb) in enumerate(batches):
            loss = loss_and_grad(layout, theta, xb, yb, loss_fn, grad)
            with torch.no_grad():
                epoch_loss += loss * (xb.shape[-2] / n_train)
                grad.mul_(maskf)
                t = (epoch - 1) * len(batches) + step + 1
                if cfg.optimizer == "adam":
                    state1.mul_(b1).add_(grad, alpha=1 - b1)
                    state2.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                    denom = (state2.sqrt() / math.sqrt(1 - b2**t)).add_(ADAM_EPS)
                    theta.addcdiv_(state1, denom, value=-cfg.lr / (1 - b1**t))
                else:
                    step_dir = grad
                    if cfg.momentum > 0:
                        state1.mul_(cfg.momentum).add_(grad)
                        step_dir = state1
                    theta.add_(step_dir, alpha=-cfg.lr)
        # ---- validation and per-network stopping -----------------------------------------
        with torch.no_grad():
            val_loss = evaluate(layout, theta, val, loss_fn).loss
            curves_train.append(epoch_loss)
            curves_val.append(val_loss)
            curves_idx.append(active)
            improved = val_loss < best_val - cfg.min_delta
            best_val = torch.where(improved, val_loss, best_val)
            best = torch.where(improved.unsqueeze(1), theta, best)
            best_epoch = torch.where(improved, epoch, best_epoch)
            bad = torch.where(improved, 0, bad + 1)
            if rewind_theta is not None and epoch == rewind_epoch:
                rewind_theta[active] = theta
            diverged = ~torch.isfinite(epoch_loss) | ~torch.isfinite(val_loss)
            code = torch.full_like(bad, STOP_REASONS.index("max_epochs")
                                   if epoch >= cfg.max_epochs else -1)
            code = torch.where(bad >= cfg.patience, STOP_REASONS.index("patience"), code)
            code = torch.where(epoch_loss < cfg.loss_cutoff, STOP_REASONS.index("cutoff"), code)
            code = torch.where(diverged, STOP_REASONS.index("diverged"), code)
            stop = code >= 0
            if not bool(stop.any()):
                continue
            done = active[stop]
            out_theta[done] = best[stop]
            out_epochs[done] = epoch
            out_best_epoch[done] = best_epoch[stop]
            out_stop[done] = code[stop]
            if rewind_theta is not None and epoch < rewind_epoch:
                rewind_theta[done] = theta[stop]  # stopped before the rewind point
            keep = ~stop
            if not bool(keep.any()):
                break
            active = active[keep]
            theta, grad = theta[keep].clone(), grad[keep].clone()
            maskf, state1, state2 = maskf[keep], state1[keep], state2[keep]
            best, best_val, best_epoch, bad = best[keep], best_val[keep], best_epoch[keep], bad[keep]
            if gens is not None:
                gens = [g for g, kp in zip(gens, keep.tolist()) if kp]

    n_epochs = len(curves_train)
    train_curve = torch.full((k_total, n_epochs), math.nan)
    val_curve = torch.full((k_total, n_epochs), math.nan)
    for e, (tl, vl, idx) in enumerate(zip(curves_train, curves_val, curves_idx)):
        train_curve[idx.cpu(), e] = tl.cpu()
        val_curve[idx.cpu(), e] = vl.cpu()
    return TrainResult(theta=(out_theta * maskf_all).cpu(), epochs=out_epochs.cpu(),
                       best_epoch=out_best_epoch.cpu(), stop_code=out_stop.cpu(),
                       train_curve=train_curve, val_curve=val_curve,
                       rewind_theta=None if rewind_theta is None else rewind_theta.cpu())
