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
from pipeline.model import Layout, compaction, forward, output_layer, population_widths, resize

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
    if t[0].is_contiguous() and (k == 1 or t.stride(0) != m):
        return t
    # rows padded to a multiple of 16 floats: every network's block starts 64-byte aligned, as
    # in a freshly allocated tensor (the matmuls that read the gradient round by alignment)
    rows = t.new_empty(k, (m // 16 + 1) * 16)[:, :m].view(t.shape)
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
                       need_grad: bool = True, per_task: bool = False):
        """Loss [K] and, with need_grad, its gradient wrt the logits [K, N, O], written out
        analytically (BCE: (σ(z) − y)/N; CE: (softmax(z) − onehot(y))/N). With per_task, a third
        value: every task's own loss [K, T] (the loss [K] is their sum, computed as without)."""
        k, n = logits.shape[:2]
        labels = y if isinstance(y, Labels) else self.prepare(y)
        total = None  # a sum starting from the first term (0 + x is x: same bits, one op less)
        tasks = logits.new_empty(k, self.n_tasks) if per_task else None
        # every output is a binary task's logit, in task order: no gathering needed
        all_bce = not self.ce and len(self.bce_cols) == logits.shape[2]
        grad = torch.zeros_like(logits) if need_grad and not all_bce else None
        if self.bce_tasks:
            z = per_network_rows(logits if all_bce else logits[..., self.bce_cols])
            shape = (k, n, len(self.bce_tasks))
            target, one_minus = labels.target.expand(shape), labels.one_minus.expand(shape)
            # BCE with logits as torch computes it, (1 − y)·z − log σ(z), with 1 − y made once
            bce = one_minus.mul(z).sub_(F.logsigmoid(z))
            means = bce.mean(dim=1)
            total = means.sum(dim=1)
            if per_task:
                tasks[:, self.bce_tasks] = means
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
            if per_task:
                tasks[:, i] = -nll
            if need_grad:
                g = logp.exp_()
                g.scatter_add_(-1, label, torch.full_like(label, -1, dtype=g.dtype))
                grad[..., cols[0]:cols[-1] + 1] = g.div_(n)
        return (total, grad, tasks) if per_task else (total, grad)

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
    """Per layer (weight [K, out, in], its transpose, bias [K, 1, out]; the last layer's bias
    [K, out] as model.output_layer takes it): views into theta, made once and kept while
    theta's storage stays the same."""
    views = layout.views(theta)
    return [(w, w.transpose(1, 2), b if i == len(views) - 1 else b.unsqueeze(1))
            for i, (w, b) in enumerate(views)]


def forward_acts(layout: Layout, theta: torch.Tensor, x: torch.Tensor,
                 views: list | None = None) -> list[torch.Tensor]:
    """Input and every layer's output (post-ReLU for hidden layers, logits last) for the batched
    ReLU MLP: bias fused into the matmul, ReLU in place. x: [N, in] shared or [K, N, in];
    `views`: step_views(layout, theta), when the caller keeps them across steps."""
    views = step_views(layout, theta) if views is None else views
    if x.dim() == 2:  # shared full-batch input
        x = x.expand(theta.shape[0], *x.shape)
    acts = [x]
    for _, w_t, b in views[:-1]:
        acts.append(torch.baddbmm(b, acts[-1], w_t).clamp_min_(0))
    acts.append(output_layer(acts[-1], views[-1][0], views[-1][2]))
    return acts


def backward(layout: Layout, theta: torch.Tensor, acts: list[torch.Tensor], dz: torch.Tensor,
             grad: torch.Tensor, views: list | None = None, grads: list | None = None) -> None:
    """Writes d loss_k / d theta_k into grad [K, P], given the logits' gradient dz [K, N, O].
    acts may hold more rows than dz (validation rows appended): only the first N are used."""
    k, n = dz.shape[:2]
    views = step_views(layout, theta) if views is None else views
    grads = layout.views(grad) if grads is None else grads
    ones = dz.new_ones(k, 1, n)
    for i in range(len(views) - 1, -1, -1):
        gw, gb = grads[i]
        a = acts[i][:, :n]
        # through a fresh (aligned) result: bmm writing straight into gw, whose address
        # depends on the layer's offset, can round differently. The first layer has few inputs:
        # (aᵀ·dz)ᵀ, few rows of many columns, runs 3–6× faster than dzᵀ·a with this BLAS
        gw.copy_(torch.bmm(a.transpose(1, 2), dz).transpose(1, 2) if i == 0
                 else torch.bmm(dz.transpose(1, 2), a))
        # the bias gradient as a matmul with ones, not torch.sum over the rows: the sum's
        # reduction order depends on the layer's width, the matmul's does not (a network then
        # rounds alike in its own canonical width and padded in a wider batch)
        gb.copy_(torch.bmm(ones, dz).squeeze(1))
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
    theta: torch.Tensor          # [K, P] kept weights (best validation epoch, or the last)
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


# ---- the three parts of training: optimizer step, per-network stopper, loss curves -------------
class Optimizer:
    """Adam (β = 0.9, 0.999, ε = 1e-8) or SGD with momentum on the flat [K, P] parameters of a
    population: a handful of tensor ops per step for all networks. Pruned entries get zero
    gradient, so their moments stay zero and their value stays exactly zero."""

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
        if self.adam:
            b1, b2 = ADAM_BETAS
            self.m.mul_(b1).add_(grad, alpha=1 - b1)
            self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = torch.sqrt(self.v, out=self.denom).div_(math.sqrt(1 - b2**self.t))
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


class Stopper:
    """Per-network early stopping on numpy vectors (cheap, and rounded like the float32 tensors:
    the thresholds are float32 too).

    monitor `total`: the patience counter restarts when the summed validation loss improves by
    more than min_delta; the loss cutoff applies to the summed training loss.
    monitor `per_task` (SCIENCE.md §4): it restarts whenever *any* task reaches a new best of its
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


def train_population(layout: Layout, theta0: torch.Tensor, mask: torch.Tensor,
                     train: Split, val: Split, loss_fn: TaskLoss, cfg: TrainConfig,
                     shuffle_seeds: list[int] | None = None,
                     rewind_epoch: int = 0, _kept: torch.Tensor | None = None) -> TrainResult:
    """Train K networks from theta0 [K, P] under mask [K, P] with per-network early stopping.

    Each network: Adam/SGD on the summed task losses, full batch or mini-batches (shuffled by
    its own generator, seeded from shuffle_seeds), validation loss after every epoch, stop at
    `patience` epochs without an improvement (Stopper: of the summed or of any task's own
    validation loss, train.monitor), at training loss below loss_cutoff, at max_epochs, or at
    a non-finite loss; keeps the weights of the last improvement (train.restore_best) or of the
    last epoch.

    Per-step overhead dominates these small networks, so an epoch is kept to few tensor ops:
    with full batches the validation rows ride along in the training forward pass (the
    validation loss after epoch e and the gradient of epoch e + 1 need the same weights), and
    the per-network stopping bookkeeping runs in numpy on [K] vectors. Every value is the same,
    bit for bit, as with a separate validation pass (tests compare both against the plain path).
    With cfg.compact (the default), every network is trained in its canonical compact layout
    (model.compaction): a network's bits then depend on its own mask and seed alone.
    """
    plan = compaction(layout, mask) if cfg.compact else None
    if plan is not None:  # train only the neurons that matter (see compaction)
        part = train_population(plan.layout, plan.gather(theta0), plan.gather(mask), train, val,
                                loss_fn, dataclasses.replace(cfg, compact=False),
                                shuffle_seeds, rewind_epoch, _kept=plan.kept)
        start = theta0 * mask.to(theta0.dtype)  # what training leaves the dropped entries at
        return dataclasses.replace(
            part, theta=plan.scatter(part.theta, start),
            rewind_theta=None if part.rewind_theta is None
            else plan.scatter(part.rewind_theta, start))
    with torch.inference_mode():  # no autograd bookkeeping on any of the ~60 ops per epoch
        result = _train(layout, theta0, mask, train, val, loss_fn, cfg, shuffle_seeds,
                        rewind_epoch, _kept)
    # inference tensors cannot be changed in place outside inference mode: hand out plain ones
    return TrainResult(*(None if t is None else t.clone()
                         for t in (getattr(result, f.name) for f in dataclasses.fields(result))))


def _train(layout: Layout, theta0: torch.Tensor, mask: torch.Tensor, train: Split, val: Split,
           loss_fn: TaskLoss, cfg: TrainConfig, shuffle_seeds: list[int] | None,
           rewind_epoch: int, kept: torch.Tensor | None) -> TrainResult:
    """The epoch loop. `kept` [K, H]: kept neurons per hidden layer when `layout` is a
    canonical compact one; the batch then narrows to the remaining networks' widths whenever
    networks stop (dropping trailing zero neurons changes no bit)."""
    device = resolve_device(cfg.device)
    if device.type != "cpu":  # train there, return CPU tensors like the CPU path
        theta0, mask = theta0.to(device), mask.to(device)
        train, val = Split(train.x.to(device), train.y.to(device)), \
            Split(val.x.to(device), val.y.to(device))
    home = layout  # the layout of the inputs and outputs; `layout` may narrow on the way
    k_total = theta0.shape[0]
    maskf_all = mask.to(theta0.dtype)
    theta = (theta0 * maskf_all).clone()
    grad = torch.empty_like(theta)
    maskf = maskf_all.clone()
    opt = Optimizer(cfg, theta)
    best = theta.clone() if cfg.restore_best else None
    n_train = train.x.shape[0]
    full_batch = cfg.batch_size is None
    per_task = cfg.monitor == "per_task"
    train_t, val_t = loss_fn.prepare(train.y), loss_fn.prepare(val.y)

    def val_losses(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss [K], monitored loss: the same, or per task [K, T])."""
        out = loss_fn.value_and_grad(logits, val_t, need_grad=False, per_task=per_task)
        return out[0], out[2] if per_task else out[0]

    if full_batch:  # one pass over [train; val] rows: the start's validation loss and the
        x_all = torch.cat([train.x, val.x]).expand(k_total, -1, -1)  # first epoch's training
        acts = forward_acts(layout, theta, x_all)  # activations
        _, val_mon = val_losses(acts[-1][:, n_train:])
    else:
        _, val_mon = val_losses(forward_acts(layout, theta, val.x)[-1])
    stopper = Stopper(cfg, val_mon.cpu().numpy())
    curves = CurveLog(k_total, min(cfg.max_epochs, 1024))
    active = np.arange(k_total)
    gens = None
    if not full_batch:
        seeds = shuffle_seeds if shuffle_seeds is not None else list(range(k_total))
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

    out_theta = torch.zeros_like(theta0)
    out_epochs = np.zeros(k_total, dtype=np.int64)
    out_best_epoch = np.zeros(k_total, dtype=np.int64)
    out_stop = np.zeros(k_total, dtype=np.int64)
    rewind_theta = theta0.clone() * maskf_all if rewind_epoch > 0 else None
    # per-layer views into theta and grad, made again only when the batch changes
    views, grads = step_views(layout, theta), layout.views(grad)

    for epoch in range(1, cfg.max_epochs + 1):
        # ---- one epoch of updates --------------------------------------------------------
        if full_batch:  # acts of the current weights, from the last validation pass
            out = loss_fn.value_and_grad(acts[-1][:, :n_train], train_t, per_task=per_task)
            epoch_loss, dz = out[0], out[1]
            train_mon = out[2] if per_task else epoch_loss
            backward(layout, theta, acts, dz, grad, views, grads)
            grad.mul_(maskf)
            opt.step(theta, grad)
        else:
            perm = torch.stack([torch.randperm(n_train, generator=g) for g in gens]).to(device)
            # every network's samples in its own order, gathered once; the batches are views
            x_epoch, labels = train.x[perm], loss_fn.prepare(train.y[perm])
            epoch_loss = theta.new_zeros(len(active))
            train_mon = theta.new_zeros(len(active), loss_fn.n_tasks) if per_task else epoch_loss
            for i in range(0, n_train, cfg.batch_size):
                xb, yb = x_epoch[:, i:i + cfg.batch_size], labels.rows(i, i + cfg.batch_size)
                acts = forward_acts(layout, theta, xb, views)
                out = loss_fn.value_and_grad(acts[-1], yb, per_task=per_task)
                backward(layout, theta, acts, out[1], grad, views, grads)
                epoch_loss += out[0] * (xb.shape[-2] / n_train)
                if per_task:
                    train_mon += out[2] * (xb.shape[-2] / n_train)
                grad.mul_(maskf)
                opt.step(theta, grad)
        # ---- validation and per-network stopping -----------------------------------------
        if full_batch:
            acts = forward_acts(layout, theta, x_all, views)
            val_loss, val_mon = val_losses(acts[-1][:, n_train:])
        else:
            val_loss, val_mon = val_losses(forward_acts(layout, theta, val.x, views)[-1])
        curves.record(epoch, active, epoch_loss.cpu().numpy(), val_loss.cpu().numpy())
        improved, code = stopper.update(epoch, train_mon.cpu().numpy(), val_mon.cpu().numpy())
        if best is not None:
            if improved.all():
                best.copy_(theta)
            elif improved.any():
                best[torch.from_numpy(np.flatnonzero(improved)).to(device)] = \
                    theta[torch.from_numpy(improved).to(device)]
        if rewind_theta is not None and epoch == rewind_epoch:
            rewind_theta[torch.from_numpy(active).to(device)] = resize(layout, home, theta)
        if code is None:
            continue
        stop = code >= 0
        if not stop.any():
            continue
        done = active[stop]
        stop_t = torch.from_numpy(stop).to(device)
        kept_weights = (best if best is not None else theta)[stop_t]
        out_theta[torch.from_numpy(done).to(device)] = resize(layout, home, kept_weights)
        out_epochs[done] = epoch
        out_best_epoch[done] = stopper.best_epoch[stop] if best is not None else epoch
        out_stop[done] = code[stop]
        if rewind_theta is not None and epoch < rewind_epoch:  # stopped before it
            rewind_theta[torch.from_numpy(done).to(device)] = resize(layout, home, theta[stop_t])
        keep = ~stop
        if not keep.any():
            break
        keep_t = ~stop_t
        active = active[keep]
        stopper.keep(keep)
        narrow = layout
        if kept is not None:  # the remaining networks may fit in narrower layers
            narrow = Layout((home.layers[0], *population_widths(kept[active]), home.layers[-1]))
        fit = (lambda t: t[keep_t]) if narrow == layout else \
            (lambda t: resize(layout, narrow, t[keep_t]))  # noqa: E731
        theta, grad, maskf = fit(theta), fit(grad), fit(maskf)
        best = None if best is None else fit(best)
        opt.map(fit)
        if full_batch:
            x_all = x_all[:len(active)]  # the same rows for every network: any K of them
            if narrow == layout:
                acts = [x_all] + [a[keep_t] for a in acts[1:]]
            else:  # the remaining networks' activations, without the dropped zero neurons
                acts = [x_all] + [a[keep_t][..., :n].contiguous()
                                  for a, n in zip(acts[1:], narrow.layers[1:])]
        else:
            gens = [g for g, kp in zip(gens, keep.tolist()) if kp]
        layout = narrow
        views, grads = step_views(layout, theta), layout.views(grad)

    train_curve, val_curve = curves.tensors()
    return TrainResult(theta=(out_theta * maskf_all).cpu(), epochs=torch.from_numpy(out_epochs),
                       best_epoch=torch.from_numpy(out_best_epoch),
                       stop_code=torch.from_numpy(out_stop),
                       train_curve=train_curve, val_curve=val_curve,
                       rewind_theta=None if rewind_theta is None else rewind_theta.cpu())
