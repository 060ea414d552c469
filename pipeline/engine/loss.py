"""The training loss (docs/science.md §4: the sum over tasks of each task's mean loss) and its gradient
wrt the logits, written out analytically for a batch of K networks."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.data import TaskInfo


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


