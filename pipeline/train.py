"""Training of a population of masked MLPs, every network with its own early stopping.

The optimizer is written out on the flat [K, P] parameter matrix (a handful of tensor ops per
step for the whole population). Pruned entries have zero gradient, so their Adam moments stay
zero and their value stays exactly zero. A network that stops is taken out of the batch: the
rest go on with smaller tensors and stopped networks cost nothing.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import TrainConfig
from pipeline.data import TaskInfo
from pipeline.model import Layout, compaction, forward

STOP_REASONS = ("patience", "cutoff", "max_epochs", "diverged")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def per_network_rows(t: torch.Tensor) -> torch.Tensor:
    """t [K, ...] with every network's entries in a row of its own that cannot merge with the
    next (a padded buffer, unless t's layout already keeps them apart).

    Elementwise kernels cut a contiguous run into vector chunks plus a scalar tail, and exp,
    log and sigmoid round differently in the two. On a packed [K, ...] tensor the tail sits at
    the end of the whole batch, so a network's bits would depend on how many networks share
    its batch; row by row, every network is cut the same way whatever K is.
    """
    k, m = t.shape[0], t[0].numel()
    if k == 1 or (t.stride(0) != m and t[0].is_contiguous()):
        return t
    rows = t.new_empty(k, m + 1)[:, :m].view(t.shape)
    return rows.copy_(t)


@dataclass
class Labels:
    """Integer labels [N, T] (or [K, N, T]) with the binary tasks' float targets and 1 − target
    [N, T_binary] (None without binary tasks)."""

    y: torch.Tensor
    target: torch.Tensor | None
    one_minus: torch.Tensor | None

    def rows(self, start: int, stop: int) -> Labels:
        """Samples start:stop (the second-last axis) of every form, as views."""
        part = lambda t: None if t is None else t[..., start:stop, :]  # noqa: E731
        return Labels(part(self.y), part(self.target), part(self.one_minus))


class TaskLoss:
    """Per-network loss (sum of per-task mean losses) and per-task accuracy."""

    def __init__(self, tasks: list[TaskInfo]):
        self.bce_tasks = [i for i, t in enumerate(tasks) if t.loss == "bce"]
        self.bce_cols = [tasks[i].outputs[0] for i in self.bce_tasks]
        self.ce = [(i, t.outputs) for i, t in enumerate(tasks) if t.loss == "ce"]
        self.n_tasks = len(tasks)

    def prepare(self, y: torch.Tensor) -> Labels:
        """The labels of one split with the binary tasks' float targets and 1 − target made
        once, not on every step."""
        if not self.bce_tasks:
            return Labels(y, None, None)
        target = y[..., self.bce_tasks].to(torch.get_default_dtype())
        return Labels(y, target, 1 - target)

    def __call__(self, logits: torch.Tensor, y: torch.Tensor | Labels) -> torch.Tensor:
        """logits [K, N, O]; y [N, T] or [K, N, T] integer labels (or prepared) → loss [K]."""
        return self.value_and_grad(logits, y, need_grad=False)[0]

    def value_and_grad(self, logits: torch.Tensor, y: torch.Tensor | Labels,
                       need_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Loss [K] and, with need_grad, its gradient wrt the logits [K, N, O], written out
        analytically (BCE: (σ(z) − y)/N; CE: (softmax(z) − onehot(y))/N)."""
        k, n = logits.shape[:2]
        labels = y if isinstance(y, Labels) else self.prepare(y)
        total = None  # a sum starting from the first term (0 + x is x: same bits, one op less)
        # every output is a binary task's logit, in task order: no gathering needed
        all_bce = not self.ce and len(self.bce_cols) == logits.shape[2]
        grad = torch.zeros_like(logits) if need_grad and not all_bce else None
        if self.bce_tasks:
            z = per_network_rows(logits if all_bce else logits[..., self.bce_cols])
            shape = (k, n, len(self.bce_tasks))
            target, one_minus = labels.target.expand(shape), labels.one_minus.expand(shape)
            # BCE with logits as torch computes it, (1 − y)·z − log σ(z), with 1 − y made once
            bce = one_minus.mul(z).sub_(F.logsigmoid(z))
            total = bce.mean(dim=1).sum(dim=1)
            if need_grad:
                g = torch.sigmoid(z).sub_(target).div_(n)
                if all_bce:
                    grad = g
                else:
                    grad[..., self.bce_cols] = g
        y = labels.y.expand(k, n, self.n_tasks) if self.ce else None
        for i, cols in self.ce:
            z = logits[..., cols[0]:cols[-1] + 1]
            logp = per_network_rows(torch.log_softmax(z, dim=-1))
            label = y[..., i].unsqueeze(-1)
            nll = logp.gather(-1, label).squeeze(-1).mean(dim=1)
            total = torch.rsub(nll, 0.0) if total is None else total - nll  # 0 − nll, as a sum
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


def step_views(layout: Layout, theta: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Per layer (weight [K, out, in], its transpose, bias [K, 1, out]): views into theta,
    made once and kept while theta's storage stays the same."""
    return [(w, w.transpose(1, 2), b.unsqueeze(1)) for w, b in layout.views(theta)]


def forward_acts(layout: Layout, theta: torch.Tensor, x: torch.Tensor,
                 views: list | None = None) -> list[torch.Tensor]:
    """Input and every layer's output (post-ReLU for hidden layers, logits last) for the batched
    ReLU MLP: bias fused into the matmul, ReLU in place. x: [N, in] shared or [K, N, in];
    `views`: step_views(layout, theta), when the caller keeps them across steps."""
    views = step_views(layout, theta) if views is None else views
    if x.dim() == 2:  # shared full-batch input
        x = x.expand(theta.shape[0], *x.shape)
    acts = [x]
    for i, (_, w_t, b) in enumerate(views):
        z = torch.baddbmm(b, acts[-1], w_t)
        if i < len(views) - 1:
            z.clamp_min_(0)
        acts.append(z)
    return acts


def backward(layout: Layout, theta: torch.Tensor, acts: list[torch.Tensor], dz: torch.Tensor,
             grad: torch.Tensor, views: list | None = None, grads: list | None = None) -> None:
    """Writes d loss_k / d theta_k into grad [K, P], given the logits' gradient dz [K, N, O].
    acts may hold more rows than dz (validation rows appended): only the first N are used."""
    n = dz.shape[1]
    views = step_views(layout, theta) if views is None else views
    grads = layout.views(grad) if grads is None else grads
    for i in range(len(views) - 1, -1, -1):
        gw, gb = grads[i]
        a = acts[i][:, :n]
        # through a fresh (aligned) result: bmm writing straight into gw, whose address
        # depends on the layer's offset, can round differently
        gw.copy_(torch.bmm(dz.transpose(1, 2), a))
        torch.sum(dz, dim=1, out=gb)
        if i > 0:
            # ReLU'(z) = 1 where the output was > 0: one fused op, no bool mask materialised
            dz = torch.ops.aten.threshold_backward(torch.bmm(dz, views[i][0]), a, 0.0)


def loss_and_grad(layout: Layout, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  loss_fn: TaskLoss, grad: torch.Tensor) -> torch.Tensor:
    """Loss [K]; writes d loss_k / d theta_k into grad [K, P]. Backpropagation written out for
    the batched ReLU MLP: no autograd graph (the per-step overhead, not the arithmetic,
    dominates these small networks)."""
    acts = forward_acts(layout, theta, x)
    loss, dz = loss_fn.value_and_grad(acts[-1], y)
    backward(layout, theta, acts, dz, grad)
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
                     rewind_epoch: int = 0,
                     widths: tuple[int, ...] | None = None) -> TrainResult:
    """Train K networks from theta0 [K, P] under mask [K, P] with per-network early stopping.

    Each network: Adam/SGD on the summed task losses, full batch or mini-batches (shuffled by
    its own generator, seeded from shuffle_seeds), validation loss after every epoch, stop at
    `patience` epochs without an improvement of more than min_delta, at training loss below
    loss_cutoff, at max_epochs, or at a non-finite loss; keeps the best validation weights.

    Per-step overhead dominates these small networks, so an epoch is kept to few tensor ops:
    with full batches the validation rows ride along in the training forward pass (the
    validation loss after epoch e and the gradient of epoch e + 1 need the same weights), and
    the per-network stopping bookkeeping runs in numpy on [K] vectors. Every value is the same,
    bit for bit, as with a separate validation pass (tests compare both against the plain path).
    With cfg.compact, hidden neurons that cannot affect training are left out of the matmuls
    (model.compaction; `widths` pads the hidden layers to a caller's common widths).
    """
    plan = compaction(layout, mask, widths) if cfg.compact else None
    if plan is not None:  # sparse levels: train only the neurons that matter (see compaction)
        part = train_population(plan.layout, plan.gather(theta0), plan.gather(mask), train, val,
                                loss_fn, dataclasses.replace(cfg, compact=False),
                                shuffle_seeds, rewind_epoch)
        start = theta0 * mask.to(theta0.dtype)  # what training leaves the dropped entries at
        return dataclasses.replace(
            part, theta=plan.scatter(part.theta, start),
            rewind_theta=None if part.rewind_theta is None
            else plan.scatter(part.rewind_theta, start))
    with torch.inference_mode():  # no autograd bookkeeping on any of the ~60 ops per epoch
        result = _train(layout, theta0, mask, train, val, loss_fn, cfg, shuffle_seeds,
                        rewind_epoch)
    # inference tensors cannot be changed in place outside inference mode: hand out plain ones
    return TrainResult(*(None if t is None else t.clone()
                         for t in (getattr(result, f.name) for f in dataclasses.fields(result))))


def _train(layout: Layout, theta0: torch.Tensor, mask: torch.Tensor, train: Split, val: Split,
           loss_fn: TaskLoss, cfg: TrainConfig, shuffle_seeds: list[int] | None,
           rewind_epoch: int) -> TrainResult:
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
    n_train = train.x.shape[0]
    full_batch = cfg.batch_size is None
    train_t, val_t = loss_fn.prepare(train.y), loss_fn.prepare(val.y)
    if full_batch:  # one pass over [train; val] rows: the start's validation loss and the
        x_all = torch.cat([train.x, val.x]).expand(k_total, -1, -1)  # first epoch's training
        acts = forward_acts(layout, theta, x_all)  # activations
        val_loss0 = loss_fn(acts[-1][:, n_train:], val_t)
    else:
        val_loss0 = loss_fn(forward_acts(layout, theta, val.x)[-1], val_t)
    best_val = val_loss0.cpu().numpy()
    best_val = np.where(np.isfinite(best_val), best_val, np.float32(np.inf))
    best_epoch = np.zeros(k_total, dtype=np.int64)
    bad = np.zeros(k_total, dtype=np.int64)
    active = np.arange(k_total)
    gens = None
    if not full_batch:
        seeds = shuffle_seeds if shuffle_seeds is not None else list(range(k_total))
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    # float32 thresholds: the comparisons below must round like the float32 tensors they test
    min_delta, cutoff = np.float32(cfg.min_delta), np.float32(cfg.loss_cutoff)
    code_patience, code_cutoff, code_max, code_diverged = (
        STOP_REASONS.index(r) for r in ("patience", "cutoff", "max_epochs", "diverged"))

    out_theta = torch.empty_like(theta0)
    out_epochs = np.zeros(k_total, dtype=np.int64)
    out_best_epoch = np.zeros(k_total, dtype=np.int64)
    out_stop = np.zeros(k_total, dtype=np.int64)
    rewind_theta = theta0.clone() * maskf_all if rewind_epoch > 0 else None
    curves_train, curves_val, curves_idx = [], [], []
    b1, b2 = ADAM_BETAS
    # per-layer views into theta and grad, made again only when stopped networks leave the batch
    views, grads = step_views(layout, theta), layout.views(grad)
    denom = torch.empty_like(theta)  # Adam's denominator, reused every step

    for epoch in range(1, cfg.max_epochs + 1):
        # ---- one epoch of updates --------------------------------------------------------
        if full_batch:
            batches = [None]
        else:
            perm = torch.stack([torch.randperm(n_train, generator=g) for g in gens]).to(device)
            # every network's samples in its own order, gathered once; the batches are views
            x_epoch, labels = train.x[perm], loss_fn.prepare(train.y[perm])
            batches = [(x_epoch[:, i:i + cfg.batch_size], labels.rows(i, i + cfg.batch_size))
                       for i in range(0, n_train, cfg.batch_size)]
            epoch_loss = theta.new_zeros(len(active))
        for step, batch in enumerate(batches):
            if full_batch:  # acts of the current weights, from the last validation pass
                epoch_loss, dz = loss_fn.value_and_grad(acts[-1][:, :n_train], train_t)
                backward(layout, theta, acts, dz, grad, views, grads)
            else:
                xb, yb = batch
                acts = forward_acts(layout, theta, xb, views)
                loss, dz = loss_fn.value_and_grad(acts[-1], yb)
                backward(layout, theta, acts, dz, grad, views, grads)
                epoch_loss += loss * (xb.shape[-2] / n_train)
            grad.mul_(maskf)
            t = (epoch - 1) * len(batches) + step + 1
            if cfg.optimizer == "adam":
                state1.mul_(b1).add_(grad, alpha=1 - b1)
                state2.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                denom = torch.sqrt(state2, out=denom).div_(math.sqrt(1 - b2**t)).add_(ADAM_EPS)
                theta.addcdiv_(state1, denom, value=-cfg.lr / (1 - b1**t))
            else:
                step_dir = grad
                if cfg.momentum > 0:
                    state1.mul_(cfg.momentum).add_(grad)
                    step_dir = state1
                theta.add_(step_dir, alpha=-cfg.lr)
        # ---- validation and per-network stopping -----------------------------------------
        if full_batch:
            acts = forward_acts(layout, theta, x_all, views)
            val_loss = loss_fn(acts[-1][:, n_train:], val_t)
        else:
            val_loss = loss_fn(forward_acts(layout, theta, val.x, views)[-1], val_t)
        train_np, val_np = epoch_loss.cpu().numpy(), val_loss.cpu().numpy()
        curves_train.append(train_np)
        curves_val.append(val_np)
        curves_idx.append(active)
        improved = val_np < best_val - min_delta
        if improved.all():
            best.copy_(theta)
        elif improved.any():
            sel = torch.from_numpy(np.flatnonzero(improved)).to(device)
            best[sel] = theta[sel]
        best_val = np.where(improved, val_np, best_val)
        best_epoch = np.where(improved, epoch, best_epoch)
        bad = np.where(improved, 0, bad + 1)
        if rewind_theta is not None and epoch == rewind_epoch:
            rewind_theta[torch.from_numpy(active).to(device)] = theta
        # a NaN compares False everywhere: this sum is finite iff both losses are
        finite = np.isfinite(train_np + val_np)
        if (epoch < cfg.max_epochs and bad.max() < cfg.patience and train_np.min() >= cutoff
                and finite.all()):
            continue  # the usual epoch: nobody stops
        code = np.full(len(active), code_max if epoch >= cfg.max_epochs else -1)
        code[bad >= cfg.patience] = code_patience
        code[train_np < cutoff] = code_cutoff
        code[~np.isfinite(train_np) | ~np.isfinite(val_np)] = code_diverged
        stop = code >= 0
        if not stop.any():
            continue
        done = active[stop]
        stop_t = torch.from_numpy(stop).to(device)
        out_theta[torch.from_numpy(done).to(device)] = best[stop_t]
        out_epochs[done] = epoch
        out_best_epoch[done] = best_epoch[stop]
        out_stop[done] = code[stop]
        if rewind_theta is not None and epoch < rewind_epoch:
            rewind_theta[torch.from_numpy(done).to(device)] = theta[stop_t]  # stopped before it
        keep = ~stop
        if not keep.any():
            break
        keep_t = ~stop_t
        active = active[keep]
        theta, grad = theta[keep_t].clone(), grad[keep_t].clone()
        maskf, state1, state2, best = maskf[keep_t], state1[keep_t], state2[keep_t], best[keep_t]
        best_val, best_epoch, bad = best_val[keep], best_epoch[keep], bad[keep]
        views, grads = step_views(layout, theta), layout.views(grad)
        denom = torch.empty_like(theta)
        if full_batch:
            x_all = x_all[:len(active)]  # the same rows for every network: any K of them
            acts = [x_all] + [a[keep_t] for a in acts[1:]]
        else:
            gens = [g for g, kp in zip(gens, keep.tolist()) if kp]

    n_epochs = len(curves_train)
    train_curve = np.full((k_total, n_epochs), np.nan, dtype=np.float32)
    val_curve = np.full((k_total, n_epochs), np.nan, dtype=np.float32)
    for e, (tl, vl, idx) in enumerate(zip(curves_train, curves_val, curves_idx)):
        train_curve[idx, e] = tl
        val_curve[idx, e] = vl
    return TrainResult(theta=(out_theta * maskf_all).cpu(), epochs=torch.from_numpy(out_epochs),
                       best_epoch=torch.from_numpy(out_best_epoch),
                       stop_code=torch.from_numpy(out_stop),
                       train_curve=torch.from_numpy(train_curve),
                       val_curve=torch.from_numpy(val_curve),
                       rewind_theta=None if rewind_theta is None else rewind_theta.cpu())
