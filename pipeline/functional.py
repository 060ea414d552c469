"""Functional split (docs/science.md §6): is the remaining cross-talk between tasks still used?

Zero the |w|-weighted minimum cut C_w (pipeline.cut.split_distance: the cheapest set of alive
weights whose removal leaves no path between two tasks' inputs and outputs), keep every other
weight and every bias, and evaluate each task's test accuracy. A net is functionally split at
tolerance δ when liveness holds on the cut net (every output still reached by some input) and
no task's test accuracy drops by more than δ below the unmodified net's. The cut net is pure
(an effective split, where live): no alive path joins two tasks once C_w is gone. A
structurally (effectively) split net has C_w = ∅, so it is functionally split, with a drop of
exactly 0.

The earlier criterion's ablation is kept as a column only: zeroing E_× (every alive weight on
a directed path from an input of a task s to an output of a task t ≠ s; graph.cross_task_weights)
removes the largest separating set, shared neurons' own-task weights included.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data import TaskInfo
from pipeline.graph import effective_split_parts, task_indicators, task_reach
from pipeline.model import Layout


@dataclass
class Functional:
    """One level of K networks."""

    correct: torch.Tensor         # [K, T] int64: correct test predictions per task, unmodified
    correct_zeroed: torch.Tensor  # [K, T] int64: the same with E_× zeroed (a column only)
    correct_cut: torch.Tensor     # [K, T] int64: the same with C_w zeroed (the criterion)
    n: int                        # test rows
    live_cut: torch.Tensor        # [K] bool: liveness of the cut net
    split: torch.Tensor           # [K] bool: functionally split at the tolerance

    @property
    def acc(self) -> torch.Tensor:
        """[K, T] float64 test accuracy of the unmodified nets."""
        return self.correct.to(torch.float64) / max(self.n, 1)

    @property
    def acc_zeroed(self) -> torch.Tensor:
        """[K, T] float64 test accuracy with E_× zeroed."""
        return self.correct_zeroed.to(torch.float64) / max(self.n, 1)

    @property
    def acc_cut(self) -> torch.Tensor:
        """[K, T] float64 test accuracy with C_w zeroed."""
        return self.correct_cut.to(torch.float64) / max(self.n, 1)


def task_correct(logits: torch.Tensor, y: torch.Tensor, tasks: list[TaskInfo]) -> torch.Tensor:
    """[K, T] int64 number of correct predictions per task: logits [K, N, n_out], y [N, T]
    (a one-logit task predicts class 1 where its logit > 0, a C-logit task its argmax)."""
    out = []
    for j, t in enumerate(tasks):
        cols = logits[..., t.outputs[0]:t.outputs[-1] + 1]
        pred = (cols[..., 0] > 0).long() if len(t.outputs) == 1 else cols.argmax(dim=-1)
        out.append((pred == y[:, j]).sum(dim=1))
    return torch.stack(out, dim=1)


# Below this weight density a layer's product runs as scipy CSR × dense: measured at
# [2000 × 1568] · [1568 × 784] on 2 cores (benchmarks/README.md), 10× faster than dense at
# 0.5 %, ~4× at 2–5 %, ~2× at 10 %; torch's own CSR product was no faster than dense there.
SPARSE_BELOW = 0.1


@torch.no_grad()
def network_logits(layout: Layout, theta: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """Logits [N, n_out] of ONE network theta [P] (pruned entries exactly zero) for the inputs
    transposed, x_t [n_in, N] float32 contiguous: ReLU hidden layers, linear output, as
    pipeline.model.forward.

    Exact shortcuts: input features and hidden neurons without a nonzero outgoing weight
    are left out (they add nothing to any sum), and each layer's product is dense (torch) or,
    below SPARSE_BELOW density, scipy CSR. The network is computed alone, so its bits do not
    depend on which networks are analysed beside it."""
    from scipy.sparse import csr_matrix

    views = layout.views(theta.unsqueeze(0))
    ws = [w[0].numpy() for w, _ in views]
    bs = [b[0].numpy() for _, b in views]
    cs = [csr_matrix(w) for w in ws]
    used = [np.flatnonzero(np.bincount(c.indices, minlength=c.shape[1])) for c in cs]
    cols = used[0]
    h = x_t.numpy()[cols]
    for i, (w, b, c) in enumerate(zip(ws, bs, cs)):
        last = i == len(ws) - 1
        rows = np.arange(w.shape[0]) if last else used[i + 1]
        if c.nnz < SPARSE_BELOW * w.size:
            z = c[rows][:, cols] @ h
        else:
            z = (torch.from_numpy(w[np.ix_(rows, cols)]) @ torch.from_numpy(h)).numpy()
        z += b[rows, None]
        h = z if last else np.maximum(z, 0, out=z)
        cols = rows
    return torch.from_numpy(np.ascontiguousarray(h.T))


def correct_counts(layout: Layout, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                   tasks: list[TaskInfo]) -> torch.Tensor:
    """[K, T] int64 correct test predictions of K networks theta [K, P] on x [N, n_in],
    y [N, T], one network at a time (network_logits)."""
    x_t = x.T.contiguous()
    out = torch.zeros(theta.shape[0], len(tasks), dtype=torch.int64)
    for k in range(theta.shape[0]):
        out[k] = task_correct(network_logits(layout, theta[k], x_t).unsqueeze(0), y, tasks)[0]
    return out


def functional_split(layout: Layout, mask: torch.Tensor, theta: torch.Tensor,
                     cross: torch.Tensor, cut: torch.Tensor, tasks: list[TaskInfo],
                     x: torch.Tensor, y: torch.Tensor, tolerance: float,
                     live: torch.Tensor | None = None) -> Functional:
    """Functional split of K networks by the minimum cut (docs/science.md §6).

    mask, theta [K, P] (pruned entries of theta exactly zero); cross [K, P] bool: E_×
    (Analysis.cross), cut [K, P] bool: C_w (cut.Distance.cut_w), both flat selections of
    weights; x [N, n_in] float32 and y [N, T] int64: the test split. One forward pass per
    network and distinct non-empty zeroed set (a set that is empty changes nothing: its drop
    is exactly 0). A task drops when its correct count falls by more than tolerance · N.
    `live` [K] (Analysis.live), when given, is taken as the liveness of the networks whose
    C_w is empty instead of recomputing it.
    """
    k = mask.shape[0]
    has_cut = cut.any(dim=1)
    ein, eout = task_indicators(tasks, layout.layers[0], layout.layers[-1])
    live_cut = torch.zeros(k, dtype=torch.bool)
    parts = [(has_cut.nonzero().squeeze(1), mask & ~cut)]
    if live is not None:  # C_w = ∅: the cut net is the net itself
        live_cut[~has_cut] = live[~has_cut]
    else:
        parts.append(((~has_cut).nonzero().squeeze(1), mask))
    for rows, m in parts:
        if len(rows):
            fwd, _ = task_reach([wm for wm, _ in layout.views(m[rows])], ein, eout)
            live_cut[rows] = effective_split_parts(fwd[-1], eout)[0]

    n = int(x.shape[0])
    x_t = x.T.contiguous()
    correct = torch.zeros(k, len(tasks), dtype=torch.int64)
    correct_zeroed, correct_cut = torch.zeros_like(correct), torch.zeros_like(correct)

    def count(th: torch.Tensor) -> torch.Tensor:
        return task_correct(network_logits(layout, th, x_t).unsqueeze(0), y, tasks)[0]

    for net in range(k):  # one network at a time: [P] copies, never [3K, P]
        correct[net] = count(theta[net])
        has_cross = bool(cross[net].any())
        correct_zeroed[net] = count(theta[net] * ~cross[net]) if has_cross else correct[net]
        if not bool(has_cut[net]):
            correct_cut[net] = correct[net]
        elif has_cross and torch.equal(cut[net], cross[net]):
            correct_cut[net] = correct_zeroed[net]
        else:
            correct_cut[net] = count(theta[net] * ~cut[net])
    drop = (correct - correct_cut).to(torch.float64)
    ok = (drop <= tolerance * n).all(dim=1)
    return Functional(correct=correct, correct_zeroed=correct_zeroed, correct_cut=correct_cut,
                      n=n, live_cut=live_cut, split=live_cut & ok)
