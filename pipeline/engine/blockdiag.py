"""Small live networks computed together: one block-diagonal sparse product per layer for all.

At the late IMP levels of a wide net every network has a few hundred to a few thousand live
weights. Computed one by one (engine.live's per-network loop), a training step costs about 25
small tensor ops per network whatever its size, ≈ 30× the arithmetic (benchmarks/README.md).
Here the networks of a population that are small enough (`batched`, decided per network from
its own plan) are laid out side by side:

- per layer, the live weights of every network form one block-diagonal CSR matrix (network
  after network, each block its compact rows × columns, engine.live.plan_network), so the
  forward, the input gradient (a CSR of the transpose) and the weight gradient
  (`torch.sparse.sampled_addmm` on the live entries) are one call each for all networks;
- activations are stacked the same way: [Σ rows, batch], column b of a network's rows being its
  own b-th sample of the step (every network keeps its own sample order);
- the parameters live in one flat vector, layer after layer (weights, then biases), every
  network's segment in order, each layer's weights contiguous (they are the CSR's values), each
  segment starting on a 64-byte boundary; Adam runs on it elementwise.

A network's arithmetic depends on its own rows only: every output row of a CSR product sums its
own row's entries in order, sampled_addmm computes every live entry on its own, the bias
gradient sums every row on its own, and the elementwise ops round every element alike (the
flat vector's length is a multiple of 16, so no element falls into a scalar tail). So the bits
of a network do not depend on which networks share its block (tested), as on the other paths.
The arithmetic is the per-network path's in another order: equal to it within float tolerance.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import TrainConfig
from pipeline.engine.loss import TaskLoss
from pipeline.engine.optim import Optimizer
from pipeline.model import Layout

ALIGN = 16  # floats: every segment of the flat vector starts on a 64-byte boundary
# Micro-batches (micro_rows): a step's inputs of one network are gathered and read by the sparse
# products in pieces of at most MICRO_BYTES (a share of the 1 MB per-core L2 cache of this
# project's machines), at least MICRO_MIN rows. Measured on the thesis' level-13 masks (16
# networks, ~1260 input columns each, benchmarks/README.md): the first layer's product over a
# whole step of 512 rows read its 41 MB of inputs from memory (1.8 GFLOP/s); in micro-batches of
# 64 rows ~10× faster.
MICRO_BYTES = 2 ** 19
MICRO_MIN = 32


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _crow(r_idx: torch.Tensor, n_rows: int) -> torch.Tensor:
    counts = torch.bincount(r_idx, minlength=n_rows)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


@dataclass
class BlockLayer:
    """One layer of the block: CSR structure of the live weights of every network (crow, col
    over [rows, cols]) and of the transpose (t_crow, t_col; t_perm: the CSR positions in the
    transpose's order), where the weights and biases start in the flat vector."""

    rows: int
    cols: int
    crow: torch.Tensor
    col: torch.Tensor
    t_crow: torch.Tensor
    t_col: torch.Tensor
    t_perm: torch.Tensor
    w_off: int
    nnz: int
    b_off: int

    def weight(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(self.crow, self.col, flat[self.w_off:self.w_off + self.nnz],
                                       (self.rows, self.cols), check_invariants=False)

    def weight_t(self, flat: torch.Tensor) -> torch.Tensor:
        values = flat[self.w_off:self.w_off + self.nnz][self.t_perm]
        return torch.sparse_csr_tensor(self.t_crow, self.t_col, values, (self.cols, self.rows),
                                       check_invariants=False)

    def bias(self, flat: torch.Tensor) -> torch.Tensor:
        return flat[self.b_off:self.b_off + self.rows]

    def to(self, device: torch.device) -> BlockLayer:
        move = {f: getattr(self, f).to(device) for f in ("crow", "col", "t_crow", "t_col", "t_perm")}
        return dataclasses.replace(self, **move)


@dataclass
class Block:
    """The block of networks: per layer a BlockLayer; per entry of the flat vector [L] the
    network it belongs to (`net`, -1 on padding), its position in that network's full layout
    (`index`), whether it is a live parameter (`live`); per network and layer its first row
    (`row_start` [n_layers + 1][n]: node layer l's rows of network j start at row_start[l][j])."""

    layers: list[BlockLayer]
    net: torch.Tensor
    index: torch.Tensor
    live: torch.Tensor
    row_start: list[torch.Tensor]

    def to(self, device: torch.device) -> Block:
        return Block([bl.to(device) for bl in self.layers], self.net.to(device),
                     self.index.to(device), self.live.to(device), self.row_start)


def build_block(layout: Layout, mask: torch.Tensor, plans) -> Block:
    """The block of the networks with masks `mask` [n, P] and live plans `plans`
    (engine.live.plan_network), on the CPU: every layer of every network as CSR of its live
    entries."""
    net, index, live = [], [], []
    pos = 0

    def segment(nets: torch.Tensor, idx: torch.Tensor, is_live: torch.Tensor) -> int:
        nonlocal pos
        pad = _aligned(len(idx)) - len(idx)
        net.append(torch.cat([nets, nets.new_full((pad,), -1)]))
        index.append(torch.cat([idx, idx.new_zeros(pad)]))
        live.append(torch.cat([is_live, is_live.new_zeros(pad)]))
        start, pos = pos, pos + len(idx) + pad
        return start

    layers = []
    row_start = [torch.tensor([0] + [len(p.layers[0].cols) for p in plans]).cumsum(0)]
    for i, (w_start, b_start, _) in enumerate(layout.offsets):
        n_in = layout.layers[i]
        row_start.append(torch.tensor([0] + [len(p.layers[i].rows) for p in plans]).cumsum(0))
        r_all, c_all, flat, nets, b_idx, b_live, b_nets = [], [], [], [], [], [], []
        for j, p in enumerate(plans):
            lp = p.layers[i]
            block = layout.views(mask[j:j + 1])[i][0][0][lp.rows][:, lp.cols]
            r_idx, c_idx = torch.nonzero(block, as_tuple=True)  # row-major: CSR order
            r_all.append(r_idx + row_start[i + 1][j])
            c_all.append(c_idx + row_start[i][j])
            flat.append(w_start + lp.rows[r_idx] * n_in + lp.cols[c_idx])
            nets.append(torch.full((len(r_idx),), j, dtype=torch.long))
            b_idx.append(b_start + lp.rows)
            b_live.append(layout.views(mask[j:j + 1])[i][1][0][lp.rows])
            b_nets.append(torch.full((len(lp.rows),), j, dtype=torch.long))
        r_idx, c_idx = torch.cat(r_all), torch.cat(c_all)
        rows, cols = int(row_start[i + 1][-1]), int(row_start[i][-1])
        w_off = segment(torch.cat(nets), torch.cat(flat), torch.ones(len(r_idx), dtype=torch.bool))
        b_off = segment(torch.cat(b_nets), torch.cat(b_idx), torch.cat(b_live))
        t_perm = torch.argsort(c_idx * rows + r_idx)
        layers.append(BlockLayer(rows, cols, _crow(r_idx, rows), c_idx, _crow(c_idx[t_perm], cols),
                                 r_idx[t_perm], t_perm, w_off, len(r_idx), b_off))
    return Block(layers, torch.cat(net), torch.cat(index), torch.cat(live), row_start)


def _remap(old: Block, new: Block, keep: torch.Tensor):
    """A function taking a flat buffer of `old` to the same values laid out in `new` (the
    block of the networks `keep` [n] bool of old): real entries keep their order."""
    old_sel = (old.net >= 0) & keep[old.net.clamp(min=0)]
    new_sel = new.net >= 0

    def fn(t: torch.Tensor) -> torch.Tensor:
        out = t.new_zeros(new_sel.shape)
        out[new_sel] = t[old_sel]
        return out
    return fn


def micro_rows(cols: int, rows: int) -> int:
    """The micro-batch of a network whose first layer reads `cols` inputs, in steps of `rows`
    rows: all of them when their inputs fit in MICRO_BYTES, else the most rows, a power of two
    from MICRO_MIN up, that fit — so that the inputs of a step stay in the core's cache while the
    sparse products read them, entry after entry. A property of the network's own plan and of
    the batch size: the networks of one block share it."""
    if cols * rows * 4 <= MICRO_BYTES:
        return rows
    m = MICRO_MIN
    while 2 * m <= rows and 2 * m * cols * 4 <= MICRO_BYTES:
        m *= 2
    return min(m, rows)


class BlockPopulation:
    """Networks of `layout` computed together as one block (see the module docstring), for
    engine.loop's epoch loop (the interface of engine.dense.DensePopulation). Every step is
    computed in micro-batches of `micro` rows (micro_rows of the networks' first layers), the
    gradients summed over them."""

    def __init__(self, layout: Layout, theta0: torch.Tensor, mask: torch.Tensor, train, val,
                 loss_fn: TaskLoss, cfg: TrainConfig, shuffle_seeds: list[int] | None, plans,
                 micro: int | None = None):
        self.layout, self.loss_fn, self.cfg = layout, loss_fn, cfg
        self.device = theta0.device
        self.mask, self.plans = mask, list(plans)
        self.start = theta0 * mask.to(theta0.dtype)  # what the entries outside the block keep
        self.block = build_block(layout, mask.cpu(), self.plans).to(self.device)
        self.livef = self.block.live.to(theta0.dtype)
        self.theta = self._gather(self.start)
        self.grad = torch.zeros_like(self.theta)
        self.touched = torch.zeros_like(self.theta, dtype=torch.bool)
        self.opt = Optimizer(cfg, self.theta)
        self.best = self.theta.clone() if cfg.restore_best else None
        self.per_task = cfg.monitor == "per_task"
        self.n_train = train.x.shape[0]
        self.bs = cfg.batch_size or self.n_train
        self.micro = micro or self.bs
        self.train_x, self.val_x = train.x, val.x  # sample-major, shared by every network
        self.train_y, self.val_t = train.y, loss_fn.prepare(val.y)
        self._columns()
        seeds = shuffle_seeds if shuffle_seeds is not None else list(range(len(self.plans)))
        self.gens = None if cfg.batch_size is None else \
            [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.val_monitor0 = self.validate()[1]

    def _columns(self) -> None:
        """Every network's training inputs restricted to the columns its first layer reads
        (sample-major [N, cols], made once per level: a step gathers whole rows of them), and
        the block's stacked validation inputs [Σ cols, m] per micro-batch of validation rows."""
        cols = [p.layers[0].cols.to(self.device) for p in self.plans]
        self.x_cols = [self.train_x.index_select(1, c) for c in cols]
        self.x_val = []
        for j in range(0, self.val_x.shape[0], self.micro):
            part = self.val_x[j:j + self.micro].T
            self.x_val.append(torch.cat([part.index_select(0, c) for c in cols]) if cols
                              else part[:0].contiguous())

    def _inputs(self, rows: torch.Tensor) -> torch.Tensor:
        """The block's stacked first-layer inputs [Σ cols, m] for the sample rows [n, m] of
        every network: each network's rows of its own columns, transposed into its place."""
        return torch.cat([x.index_select(0, r).T for x, r in zip(self.x_cols, rows)])

    def _gather(self, full: torch.Tensor) -> torch.Tensor:
        """The flat vector of a full-layout [n, P] tensor (0 on padding, pruned entries as
        they are in `full`)."""
        b = self.block
        real = b.net >= 0
        out = full.new_zeros(b.net.shape)
        out[real] = full[b.net[real], b.index[real]]
        return out * self.livef

    @property
    def n(self) -> int:
        return len(self.plans)

    def _forward(self, x0: torch.Tensor) -> list[torch.Tensor]:
        """Inputs [Σ cols, m] and every layer's output [Σ rows, m] of the block."""
        acts, last = [x0], len(self.block.layers) - 1
        for i, bl in enumerate(self.block.layers):
            z = torch.sparse.mm(bl.weight(self.theta), acts[-1]).add_(bl.bias(self.theta).unsqueeze(1))
            acts.append(z.clamp_min_(0) if i < last else z)
        return acts

    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        """[n, m, O] as a transposed view of the stacked output rows [n·O, m] (a contiguous
        copy would make the loss's log_softmax round a network by its place in the block)."""
        return z.view(self.n, -1, z.shape[1]).transpose(1, 2)

    def _backward(self, acts: list[torch.Tensor], dz: torch.Tensor, first: bool) -> None:
        """The gradient of the flat vector, given the logits' gradient dz [n, m, O]: written
        into self.grad (`first` micro-batch of a step) or added to it."""
        grad, theta = self.grad, self.theta
        # contiguous always: for a block of one network the reshape would be a column-major
        # view, whose row sums round otherwise than a copy's (a network's bits would depend on
        # having company)
        dz_t = dz.transpose(1, 2).reshape(-1, dz.shape[1]).contiguous()
        for i in range(len(self.block.layers) - 1, -1, -1):
            bl, a = self.block.layers[i], acts[i]
            w = bl.weight(theta)
            gw = torch.sparse.sampled_addmm(w, dz_t, a.T, beta=0.0).values()
            gb = dz_t.sum(dim=1)
            if first:
                grad[bl.w_off:bl.w_off + bl.nnz] = gw
                grad[bl.b_off:bl.b_off + bl.rows] = gb
            else:
                grad[bl.w_off:bl.w_off + bl.nnz] += gw
                grad[bl.b_off:bl.b_off + bl.rows] += gb
            if i > 0:
                da = torch.sparse.mm(bl.weight_t(theta), dz_t)
                dz_t = torch.ops.aten.threshold_backward(da, a, 0.0)

    def _step(self, rows: torch.Tensor, labels, start: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimizer step on the sample rows [n, b] (labels of the epoch, from `start`):
        micro-batches of self.micro rows, each loss and gradient weighted by its share of b."""
        b = rows.shape[1]
        loss = tasks = None
        for j in range(0, b, self.micro):
            part = rows[:, j:j + self.micro]
            acts = self._forward(self._inputs(part))
            out = self.loss_fn.value_and_grad(self._logits(acts[-1]),
                                              labels.rows(start + j, start + j + part.shape[1]),
                                              per_task=self.per_task)
            share = part.shape[1] / b
            dz = out[1] if share == 1 else out[1].mul_(share)
            self._backward(acts, dz, first=j == 0)
            loss = out[0] * share if loss is None else loss + out[0] * share
            if self.per_task:
                tasks = out[2] * share if tasks is None else tasks + out[2] * share
        self.grad.mul_(self.livef)
        self.touched |= self.grad != 0
        self.opt.step(self.theta, self.grad)
        return loss, tasks

    def train_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One epoch of updates → (training loss [n], monitored training loss [n] or [n, T])."""
        n_rows, k = self.n_train, self.n
        if self.gens is None:  # full batch: every network's rows in the data's order
            perm = torch.arange(n_rows, device=self.device).expand(k, n_rows)
        else:
            perm = torch.stack([torch.randperm(n_rows, generator=g) for g in self.gens]).to(self.device)
        labels = self.loss_fn.prepare(self.train_y[perm])
        epoch_loss = self.theta.new_zeros(k)
        train_mon = self.theta.new_zeros(k, self.loss_fn.n_tasks) if self.per_task else epoch_loss
        for i in range(0, n_rows, self.bs):
            rows = perm[:, i:i + self.bs]
            loss, tasks = self._step(rows, labels, i)
            share = rows.shape[1] / n_rows
            epoch_loss += loss * share
            if self.per_task:
                train_mon += tasks * share
        return epoch_loss, train_mon

    def validate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(validation loss [n], monitored validation loss) of the current weights, the
        validation rows taken in micro-batches too."""
        parts = [self._logits(self._forward(x0)[-1]) for x0 in self.x_val]
        logits = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        out = self.loss_fn.value_and_grad(logits, self.val_t, need_grad=False, per_task=self.per_task)
        return out[0], out[2] if self.per_task else out[0]

    def remember(self, improved: np.ndarray) -> None:
        """Keep the values of the networks that improved this epoch (train.restore_best)."""
        if self.best is None or not improved.any():
            return
        if improved.all():
            self.best.copy_(self.theta)
            return
        improved_t = torch.from_numpy(improved).to(self.device)
        sel = improved_t[self.block.net.clamp(min=0)] & (self.block.net >= 0)
        self.best[sel] = self.theta[sel]

    def _scatter(self, flat: torch.Tensor, full: torch.Tensor, rows: np.ndarray | None,
                 fill=None) -> torch.Tensor:
        """`full` [n', P] (the networks `rows` of the block, all: None) with the block's
        entries of those networks written over it from `flat`."""
        b = self.block
        real = b.net >= 0
        if rows is not None:
            keep_t = torch.from_numpy(rows).to(self.device)
            real &= keep_t[b.net.clamp(min=0)]
            new_row = torch.cumsum(keep_t.long(), 0) - 1
            net = new_row[b.net[real]]
        else:
            net = b.net[real]
        out = full.clone()
        out[net, b.index[real]] = flat[real]
        return out

    def weights(self, rows: np.ndarray | None = None, best: bool = False) -> torch.Tensor:
        """The current (or kept best) weights of the networks `rows` (bool [n]; all: None) in
        the full layout: the start values with the block's entries written over them."""
        flat = self.best if best and self.best is not None else self.theta
        start = self.start if rows is None else self.start[torch.from_numpy(rows).to(self.device)]
        return self._scatter(flat, start, rows)

    def frozen(self, rows: np.ndarray | None = None) -> torch.Tensor:
        """Bool [n', P]: unpruned entries whose loss gradient was exactly 0 at every step so
        far (entries outside the block never get one)."""
        mask = self.mask if rows is None else self.mask[torch.from_numpy(rows).to(self.device)]
        return mask & ~self._scatter(self.touched, torch.zeros_like(mask), rows)

    def keep(self, keep: np.ndarray) -> None:
        """Go on with the networks `keep` (bool [n]) only: the block is rebuilt from their
        plans, every flat buffer mapped into it."""
        keep_t = torch.from_numpy(keep).to(self.device)
        chosen = np.flatnonzero(keep).tolist()
        old = self.block
        self.plans = [self.plans[j] for j in chosen]
        self.mask, self.start = self.mask[keep_t], self.start[keep_t]
        self.block = build_block(self.layout, self.mask.cpu(), self.plans).to(self.device)
        self.livef = self.block.live.to(self.theta.dtype)
        fn = _remap(old, self.block, keep_t)
        self.theta, self.grad, self.touched = fn(self.theta), fn(self.grad), fn(self.touched)
        self.best = None if self.best is None else fn(self.best)
        self.opt.map(fn)
        self._columns()
        if self.gens is not None:
            self.gens = [self.gens[j] for j in chosen]
