"""Training that follows the live weights: each network on what is alive in it, nothing else.

For wide layers (see `uses_live`) a dense matmul per layer wastes almost all its work at the
late IMP levels. Here every network gets, once per level (its mask is fixed within a level), a
plan (`NetPlan`) of its own:

- the hidden neurons that can affect training (model.compaction's definition) and, for the
  first layer, the input columns some live weight reads — dead pixels are dropped exactly
  (they only ever added zero terms);
- per layer, a kernel chosen by its measured cost (`use_sparse`, benchmarks/README.md):
  dense (`addmm` on the compact block, the gradient masked) or sparse: torch CSR for the
  forward, a CSR of Wᵀ for the input gradient and `torch.sparse.sampled_addmm` for the weight
  gradient on the live entries only;
- its parameters packed in one row of theta [K, L]: per layer the compact block (dense
  kernel) or just the live values in CSR order (sparse kernel), then the kept neurons' biases,
  every segment starting on a 64-byte boundary.

Adam runs on the packed rows: pruned entries of a dense block get a masked (zero) gradient, so
they stay exactly 0 in weights, gradients and moments; pruned entries of a sparse layer do not
exist in the packed row at all. Entries outside the plan (dropped neurons) keep their start
values, as with compaction. Activations are kept transposed ([features, N]), which is the
layout both CSR products want.

Every network is computed on its own tensors (a Python loop over the K networks of a
population, cheap next to the matmuls of a wide layer); only the loss (engine.loss, laid out
per network) and the elementwise, exactly rounded Adam run on the whole population. So a
network's bits depend on its own mask, data order and seed alone, never on which networks share
its batch (tested). The arithmetic is the dense path's without the zero terms, in another order:
equal to it within float tolerance, not bit for bit (tested).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import TrainConfig
from pipeline.engine.device import resolve_device
from pipeline.engine.loss import TaskLoss
from pipeline.engine.optim import Optimizer, keep_best
from pipeline.model import Layout, kept_neurons

# The live path is taken for layouts with a layer of at least this many weights (the
# thesis' [1568, 784, 392, 20] has 1.23 M and 307 k); narrower nets (the default [4, 40, 40, 2],
# the size and images studies, up to 33 k) keep the batched dense path and its exact bits.
LIVE_MIN_WEIGHTS = 2 ** 18
# A layer runs on the sparse kernels when its compact block has at least SPARSE_MIN_BLOCK
# entries and a live density below SPARSE_MAX_DENSITY. Measured here (benchmarks/README.md,
# `bench_live.py kernels` and `epochs`, one thread, 128 rows): the three dense products cost
# ≈ 8 ns per block entry, the three sparse ones ≈ 25 ns per live entry on a quiet machine
# (break-even at density ≈ 0.3), but on a loaded one the sparse kernels lost more (break-even
# ≈ 0.17-0.2). At 0.2 the sparse kernels won or tied in every measurement; on the real level
# masks, a 784 × 1568 first layer at density 0.16 trains 1.6× faster sparse.
SPARSE_MAX_DENSITY = 0.2
SPARSE_MIN_BLOCK = 16384
ALIGN = 16  # floats: every packed segment starts on a 64-byte boundary
# A network joins the block of small networks computed together (engine.blockdiag: one sparse
# product per layer for all of them) when it has at most BLOCK_MAX_LIVE live parameters; wider
# ones keep the per-network loop, where their own matmuls dominate the per-call overhead.
BLOCK_MAX_LIVE = 2 ** 11

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


def uses_live(layout: Layout, cfg: TrainConfig) -> bool:
    """Whether train_population takes the live path: train.compact on, on the CPU (on CUDA
    the batched dense path runs), and some layer with at least LIVE_MIN_WEIGHTS weights. A
    property of the layout and the params, never of the masks, so every network of a
    population (and of every batch) takes it."""
    widest = max(a * b for a, b in zip(layout.layers[:-1], layout.layers[1:]))
    return (cfg.compact and widest >= LIVE_MIN_WEIGHTS
            and resolve_device(cfg.device).type == "cpu")


def use_sparse(rows: int, cols: int, live: int) -> bool:
    """The kernel decision for one layer of one network: sparse iff its compact block is big
    enough and its live density low enough (measured cost, see SPARSE_MAX_DENSITY)."""
    block = rows * cols
    return block >= SPARSE_MIN_BLOCK and 0 < live < SPARSE_MAX_DENSITY * block


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass
class LayerPlan:
    """One layer of one network: its `rows` (kept neurons of the next node layer) and `cols`
    (kept inputs), its packed segments, and for a sparse layer the CSR structure of the live
    entries of the compact block (crow, col) and of its transpose (t_crow, t_col, with t_perm:
    the packed positions in Wᵀ's order)."""

    rows: torch.Tensor
    cols: torch.Tensor
    sparse: bool
    w_off: int
    w_len: int
    b_off: int
    crow: torch.Tensor | None = None
    col: torch.Tensor | None = None
    t_crow: torch.Tensor | None = None
    t_col: torch.Tensor | None = None
    t_perm: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    def weight(self, theta_k: torch.Tensor) -> torch.Tensor:
        """The layer's weight [rows, cols], dense or CSR, as a view of the packed row."""
        seg = theta_k[self.w_off:self.w_off + self.w_len]
        if self.sparse:
            return torch.sparse_csr_tensor(self.crow, self.col, seg, self.shape,
                                           check_invariants=False)
        return seg.view(self.shape)

    def weight_t(self, theta_k: torch.Tensor) -> torch.Tensor:
        """Wᵀ [cols, rows] as a CSR (sparse layers; its values gathered once per step)."""
        seg = theta_k[self.w_off:self.w_off + self.w_len]
        return torch.sparse_csr_tensor(self.t_crow, self.t_col, seg[self.t_perm],
                                       self.shape[::-1], check_invariants=False)


@dataclass
class NetPlan:
    """One network's plan: per layer a LayerPlan; `index` [L] the full flat position of each
    packed entry (0 on padding), `live` [L] bool whether it is a live parameter (False on
    padding and on pruned entries of dense blocks), `real` [L] False on padding only."""

    layers: list[LayerPlan]
    index: torch.Tensor
    live: torch.Tensor
    real: torch.Tensor


def _crow(r_idx: torch.Tensor, n_rows: int) -> torch.Tensor:
    """CSR row pointers [n_rows + 1] of entries with (sorted) row indices r_idx."""
    counts = torch.bincount(r_idx, minlength=n_rows)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def plan_network(layout: Layout, mask: torch.Tensor) -> NetPlan:
    """The live plan of one network from its mask [P] (see the module docstring)."""
    keep = [k[0] for k in kept_neurons(layout, mask.unsqueeze(0))]
    views = layout.views(mask.unsqueeze(0))
    depth = layout.depth
    rows_of = [torch.arange(layout.layers[-1]) if i == depth - 1
               else torch.nonzero(keep[i]).squeeze(1) for i in range(depth)]
    w0 = views[0][0][0]  # [width1, n_in]
    inputs = torch.nonzero(w0[rows_of[0]].any(dim=0)).squeeze(1)  # columns some live weight reads
    index, live, real, plans, pos = [], [], [], [], 0

    def segment(idx: torch.Tensor, is_live: torch.Tensor) -> int:
        nonlocal pos
        n = len(idx)
        pad = _aligned(n) - n
        index.append(torch.cat([idx, idx.new_zeros(pad)]))
        live.append(torch.cat([is_live, is_live.new_zeros(pad)]))
        real.append(torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(pad, dtype=torch.bool)]))
        start, pos = pos, pos + n + pad
        return start

    for i, ((w_start, b_start, _), (wm, bm)) in enumerate(zip(layout.offsets, views)):
        n_in = layout.layers[i]
        rows, cols = rows_of[i], inputs if i == 0 else rows_of[i - 1]
        block = wm[0][rows][:, cols]  # [r, c] live entries of the compact block
        flat = w_start + rows.unsqueeze(1) * n_in + cols.unsqueeze(0)
        sparse = use_sparse(len(rows), len(cols), int(block.sum()))
        if sparse:
            r_idx, c_idx = torch.nonzero(block, as_tuple=True)  # row-major: CSR order
            w_off = segment(flat[r_idx, c_idx], torch.ones(len(r_idx), dtype=torch.bool))
            t_perm = torch.argsort(c_idx * len(rows) + r_idx)
            plan = LayerPlan(rows, cols, True, w_off, len(r_idx), 0,
                             crow=_crow(r_idx, len(rows)), col=c_idx,
                             t_crow=_crow(c_idx[t_perm], len(cols)),
                             t_col=r_idx[t_perm], t_perm=t_perm)
        else:
            w_off = segment(flat.reshape(-1), block.reshape(-1))
            plan = LayerPlan(rows, cols, False, w_off, block.numel(), 0)
        plan.b_off = segment(b_start + rows, bm[0][rows])
        plans.append(plan)
    return NetPlan(plans, torch.cat(index), torch.cat(live), torch.cat(real))


def forward_net(plans: list[LayerPlan], theta_k: torch.Tensor,
                x_t: torch.Tensor) -> list[torch.Tensor]:
    """Input [cols0, N] and every layer's output [rows, N] (post-ReLU, logits last)."""
    acts = [x_t]
    for i, lp in enumerate(plans):
        b = theta_k[lp.b_off:lp.b_off + lp.shape[0]].unsqueeze(1)
        w = lp.weight(theta_k)
        z = torch.sparse.mm(w, acts[-1]).add_(b) if lp.sparse else torch.addmm(b, w, acts[-1])
        acts.append(z.clamp_min_(0) if i < len(plans) - 1 else z)
    return acts


def backward_net(plans: list[LayerPlan], theta_k: torch.Tensor, acts: list[torch.Tensor],
                 dz_t: torch.Tensor, grad_k: torch.Tensor) -> None:
    """Writes the gradient of one network's packed row into grad_k [L], given the logits'
    gradient dz_t [n_out, N]. Sparse layers: the weight gradient on the live entries only."""
    for i in range(len(plans) - 1, -1, -1):
        lp, a = plans[i], acts[i]
        w = lp.weight(theta_k)
        gw = grad_k[lp.w_off:lp.w_off + lp.w_len]
        if lp.sparse:
            gw.copy_(torch.sparse.sampled_addmm(w, dz_t, a.T, beta=0.0).values())
        else:
            gw.copy_(torch.mm(dz_t, a.T).view(-1))
        grad_k[lp.b_off:lp.b_off + lp.shape[0]].copy_(dz_t.sum(dim=1))
        if i > 0:
            da = torch.sparse.mm(lp.weight_t(theta_k), dz_t) if lp.sparse else torch.mm(w.T, dz_t)
            dz_t = torch.ops.aten.threshold_backward(da, a, 0.0)


def in_block(plan: NetPlan) -> bool:
    """Whether a network trains in the block of small networks (BLOCK_MAX_LIVE): a property
    of its own plan, so of its own mask, never of the networks beside it."""
    return int(plan.live.sum()) <= BLOCK_MAX_LIVE


def live_population(layout: Layout, theta0: torch.Tensor, mask: torch.Tensor, train, val,
                    loss_fn: TaskLoss, cfg: TrainConfig, shuffle_seeds: list[int] | None):
    """The population of the live path: every network planned (plan_network), the small ones
    (in_block; on a GPU all of them) computed together in one BlockPopulation, the others one
    by one in a LivePopulation; engine.groups.Groups makes them one population for the epoch
    loop."""
    from pipeline.engine.blockdiag import BlockPopulation, micro_rows
    from pipeline.engine.groups import Groups

    k = theta0.shape[0]
    mask_cpu = mask.cpu()
    plans = [plan_network(layout, mask_cpu[j]) for j in range(k)]
    seeds = shuffle_seeds if shuffle_seeds is not None else list(range(k))
    # on a GPU every network goes into the block: the loop exists for the CPU's per-call costs
    small = np.array([in_block(p) or theta0.device.type != "cpu" for p in plans], dtype=bool)
    step = cfg.batch_size or train.x.shape[0]
    # a block per micro-batch size (blockdiag.micro_rows of the network's own first layer)
    micro = np.array([micro_rows(len(p.layers[0].cols), step) if s else 0
                      for p, s in zip(plans, small)])
    members, pops = [], []
    for m in sorted(set(micro.tolist())):
        rows = np.flatnonzero(micro == m)
        at = torch.from_numpy(rows).to(theta0.device)
        args = (layout, theta0[at], mask[at], train, val, loss_fn, cfg, [seeds[j] for j in rows],
                [plans[j] for j in rows])
        pops.append(BlockPopulation(*args, micro=m) if m else LivePopulation(*args))
        members.append(rows)
    return Groups(members, pops)


def live_logits(layout: Layout, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits [K, N, n_out] of K networks (theta [K, P]) for the inputs x [N, n_in], each
    network computed on its nonzero weights only, with the live path's kernels (a zero weight
    adds nothing, so this is the forward of the full network up to rounding): the evaluation of
    every level at a wide layout costs what its live weights cost, not the dense shape."""
    out = []
    for j in range(theta.shape[0]):
        plan = plan_network(layout, theta[j] != 0)
        packed = theta[j][plan.index] * plan.real  # padding slots point at entry 0: zero them
        x_t = _columns(x, plan.layers[0].cols).T.contiguous()
        out.append(forward_net(plan.layers, packed, x_t)[-1].T)
    return torch.stack(out)


def _columns(x: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """x [N, n_in] restricted to the columns `cols` (x itself when that is all of them)."""
    return x if len(cols) == x.shape[1] else x.index_select(1, cols)


class LivePopulation:
    """K networks of `layout` on the live path (see the module docstring), for engine.loop."""

    def __init__(self, layout: Layout, theta0: torch.Tensor, mask: torch.Tensor, train, val,
                 loss_fn: TaskLoss, cfg: TrainConfig, shuffle_seeds: list[int] | None,
                 plans: list[NetPlan] | None = None):
        self.layout, self.loss_fn, self.cfg = layout, loss_fn, cfg
        k = theta0.shape[0]
        self.mask = mask
        self.start = theta0 * mask.to(theta0.dtype)  # what the entries outside the plans keep
        self.plans = plans if plans is not None else [plan_network(layout, mask[j]) for j in range(k)]
        width = max(len(p.index) for p in self.plans)
        pad = lambda t, v: torch.cat([t, t.new_full((width - len(t),), v)])  # noqa: E731
        self.index = torch.stack([pad(p.index, 0) for p in self.plans])
        self.real = torch.stack([pad(p.real, False) for p in self.plans])
        self.livef = torch.stack([pad(p.live, False) for p in self.plans]).to(theta0.dtype)
        self.theta = self.start.gather(1, self.index) * self.livef
        self.grad = torch.zeros_like(self.theta)  # padding entries are never written: stay 0
        self.touched = torch.zeros_like(self.theta, dtype=torch.bool)  # a nonzero loss gradient
        self.opt = Optimizer(cfg, self.theta)
        self.best = self.theta.clone() if cfg.restore_best else None
        self.per_task = cfg.monitor == "per_task"
        self.n_train = train.x.shape[0]
        # every network's training inputs without its dead columns, and its validation inputs
        # transposed, made once per level
        self.x_train = [_columns(train.x, p.layers[0].cols) for p in self.plans]
        self.x_val = [_columns(val.x, p.layers[0].cols).T.contiguous() for p in self.plans]
        self.train_y, self.val_t = train.y, loss_fn.prepare(val.y)
        seeds = shuffle_seeds if shuffle_seeds is not None else list(range(k))
        self.gens = None if cfg.batch_size is None else \
            [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.val_monitor0 = self.validate()[1]

    def _logits(self, acts: list[list[torch.Tensor]]) -> torch.Tensor:
        """[K, N, O] as a transposed view of [K, O, N], the dense path's layout of the logits.
        (Not made contiguous: the loss's log_softmax would then round a network by its place
        in the batch.)"""
        return torch.stack([a[-1] for a in acts]).transpose(1, 2)

    def train_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One epoch of updates → (training loss [K], monitored training loss [K] or [K, T])."""
        n, k = self.n_train, self.theta.shape[0]
        if self.gens is None:  # full batch: every network's rows in the data's order
            perm, bs = torch.arange(n).expand(k, n), n
        else:
            perm = torch.stack([torch.randperm(n, generator=g) for g in self.gens])
            bs = self.cfg.batch_size
        labels = self.loss_fn.prepare(self.train_y[perm])
        epoch_loss = self.theta.new_zeros(k)
        train_mon = self.theta.new_zeros(k, self.loss_fn.n_tasks) if self.per_task else epoch_loss
        for i in range(0, n, bs):
            rows = perm[:, i:i + bs]
            acts = [forward_net(p.layers, self.theta[j],
                                self.x_train[j].index_select(0, rows[j]).T.contiguous())
                    for j, p in enumerate(self.plans)]
            out = self.loss_fn.value_and_grad(self._logits(acts), labels.rows(i, i + bs),
                                              per_task=self.per_task)
            for j, p in enumerate(self.plans):
                backward_net(p.layers, self.theta[j], acts[j], out[1][j].T.contiguous(),
                             self.grad[j])
            share = rows.shape[1] / n
            epoch_loss += out[0] * share
            if self.per_task:
                train_mon += out[2] * share
            self.grad.mul_(self.livef)
            self.touched |= self.grad != 0
            self.opt.step(self.theta, self.grad)
        return epoch_loss, train_mon

    def validate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(validation loss [K], monitored validation loss) of the current weights."""
        acts = [forward_net(p.layers, self.theta[j], self.x_val[j])
                for j, p in enumerate(self.plans)]
        out = self.loss_fn.value_and_grad(self._logits(acts), self.val_t, need_grad=False,
                                          per_task=self.per_task)
        return out[0], out[2] if self.per_task else out[0]

    def remember(self, improved: np.ndarray) -> None:
        """Keep the packed rows of the networks that improved this epoch (train.restore_best)."""
        keep_best(self.best, self.theta, improved)

    def weights(self, rows: np.ndarray | None = None, best: bool = False) -> torch.Tensor:
        """The current (or kept best) weights of the networks `rows` (bool [K]; all: None) in
        the full layout: the start values with the packed entries written over them."""
        packed = self.best if best and self.best is not None else self.theta
        return self._scatter(packed, self.start, rows)

    def _scatter(self, packed: torch.Tensor, full: torch.Tensor,
                 rows: np.ndarray | None) -> torch.Tensor:
        sel = slice(None) if rows is None else torch.from_numpy(rows)
        out, index, real = full[sel].clone(), self.index[sel], self.real[sel]
        net = torch.arange(out.shape[0]).unsqueeze(1).expand_as(index)
        out[net[real], index[real]] = packed[sel][real]
        return out

    def frozen(self, rows: np.ndarray | None = None) -> torch.Tensor:
        """Bool [n, P]: the unpruned entries of the networks `rows` (all: None) whose loss
        gradient was exactly 0 at every step so far (entries outside the plans never get one)."""
        mask = self.mask if rows is None else self.mask[torch.from_numpy(rows)]
        return mask & ~self._scatter(self.touched, torch.zeros_like(self.mask), rows)

    def keep(self, keep: np.ndarray) -> None:
        """Go on with the networks `keep` (bool [K]) only."""
        keep_t = torch.from_numpy(keep)
        fit = lambda t: t[keep_t]  # noqa: E731
        self.theta, self.grad, self.livef = fit(self.theta), fit(self.grad), fit(self.livef)
        self.index, self.real, self.start = fit(self.index), fit(self.real), fit(self.start)
        self.touched, self.mask = fit(self.touched), fit(self.mask)
        self.best = None if self.best is None else fit(self.best)
        self.opt.map(fit)
        chosen = np.flatnonzero(keep).tolist()
        self.plans = [self.plans[j] for j in chosen]
        self.x_train = [self.x_train[j] for j in chosen]
        self.x_val = [self.x_val[j] for j in chosen]
        if self.gens is not None:
            self.gens = [self.gens[j] for j in chosen]
