"""The dense batched kernels: forward and hand-written backward of K ReLU MLPs of one layout,
their weights as views of the flat parameters theta [K, P] (one `bmm` per layer for all K)."""
from __future__ import annotations

import torch

from pipeline.engine.loss import TaskLoss
from pipeline.model import Layout, output_layer


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
    # two columns of ones, not one: with one, bmm is a batched gemv, which this MKL runs
    # differently for K = 1 (the reduction split across threads) than for K > 1, so a
    # network's bias gradient changed with the batch size; a two-column gemm does not
    ones = dz.new_ones(k, n, 2)
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
        gb.copy_(torch.bmm(dz.transpose(1, 2), ones)[..., 0])
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


