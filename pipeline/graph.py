"""Graph view of a masked MLP population (docs/science.md §5–6), vectorised over K networks.

Nodes are input features (layer 0), hidden neurons and output neurons; edges are unpruned
weights. Reachability is boolean propagation layer by layer, as batched matrix products:
  I(n): forward from the inputs;  O(n): backward from the outputs;  has_in(n): any unpruned
  incoming weight. Per-output reachability of every input feature (backward propagation of an
  identity over the outputs, the small side) gives the task matrix in one pass.

The split criteria of docs/science.md §6 propagate one column per task instead of one per node:
`task_reach` says, per node, which tasks' inputs reach it (forward) and which tasks' outputs it
reaches (backward). From these follow the effective split (liveness and purity), coverage and
the cross-task weights E_×; `leakage` propagates path counts (or |W|-products) in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data import TaskInfo
from pipeline.model import Layout

STATES = ("alive", "audience", "zombie", "unproductive", "pruned")
ALIVE, AUDIENCE, ZOMBIE, UNPRODUCTIVE, PRUNED = range(5)


@dataclass
class Analysis:
    """One level of K networks."""

    state: torch.Tensor          # [K, P] uint8 state code of every parameter (flat layout)
    reach_in: list[torch.Tensor]   # I per node layer, [K, n_l] bool
    reach_out: list[torch.Tensor]  # O per node layer
    has_in: list[torch.Tensor]     # has_in per node layer (False for inputs)
    has_out: list[torch.Tensor]    # any unpruned outgoing weight (False for outputs)
    zombie: list[torch.Tensor]     # per hidden layer [K, n] bool
    comatose: list[torch.Tensor]
    frozen: list[torch.Tensor]
    task_matrix: torch.Tensor    # [K, T, T] float64: A[i][j] = fraction of (in of i, out of j) pairs
    potential: torch.Tensor      # [K] float64
    groups: torch.Tensor         # [K] number of task groups G
    split_metric: torch.Tensor   # [K] float64
    task_distance: torch.Tensor  # [K] ‖A − I‖_F
    components: torch.Tensor     # [K] weakly connected components of the alive subgraph
    # docs/science.md §6, second part (T = 1: the flags are computed but "not applicable"; the
    # tables turn them into null — see `applicable`)
    n_tasks: int = 0
    live: torch.Tensor | None = None         # [K] bool: every output reached by some input
    pure: torch.Tensor | None = None         # [K] bool: every output reached only by its task
    input_used: torch.Tensor | None = None   # [K, n_in] bool: input reaches an output of its task
    coverage: torch.Tensor | None = None     # [K, T] float64: c_t
    leakage: torch.Tensor | None = None      # [K] float64: λ (path counts), NaN without paths
    leakage_w: torch.Tensor | None = None    # [K] float64: λ_w (|W ⊙ M| products)
    cross: torch.Tensor | None = None        # [K, P] bool: the cross-task weights E_× (flat)
    outputs_apart: torch.Tensor | None = None  # [K] bool: no alive component holds two tasks' outputs

    @property
    def applicable(self) -> bool:
        """A split needs T ≥ 2 tasks (docs/science.md §6): with one task every split quantity is
        "not applicable"."""
        return self.n_tasks >= 2

    @property
    def split(self) -> torch.Tensor:
        """[K] bool: complete split (potential = 1 and G = T)."""
        return self.split_metric == 0

    @property
    def split_complete(self) -> torch.Tensor:
        return self.split

    @property
    def split_effective(self) -> torch.Tensor:
        """[K] bool: effective split = liveness and purity on the alive subgraph."""
        return effective_split(self.live, self.pure)

    @property
    def split_output(self) -> torch.Tensor:
        """[K] bool: the thesis' output split (docs/science.md §6) = liveness and no alive component
        holding outputs of two tasks (input purity not required; effective ⇒ output split)."""
        return self.live & self.outputs_apart


def _propagate(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Boolean 'any' product: m [K, a, b] bool (or 0/1 float32), v [K, b, c] bool (or 0/1
    float32) → [K, a, c] bool. Exact whatever the rounding: a sum of nonnegative terms is > 0
    exactly when one of them is."""
    return torch.bmm(m.to(torch.float32), v.to(torch.float32)) > 0


def task_indicators(tasks: list[TaskInfo], n_in: int, n_out: int):
    """[n_in, T] and [n_out, T] 0/1 matrices saying which task owns each input / output."""
    ein = torch.zeros(n_in, len(tasks), dtype=torch.float64)
    eout = torch.zeros(n_out, len(tasks), dtype=torch.float64)
    for j, t in enumerate(tasks):
        ein[t.inputs, j] = 1
        eout[t.outputs, j] = 1
    return ein, eout


def count_groups(linked: torch.Tensor) -> torch.Tensor:
    """Connected components of K small undirected graphs given as [K, T, T] bool adjacency."""
    k, t, _ = linked.shape
    closure = linked | linked.transpose(1, 2) | torch.eye(t, dtype=torch.bool)
    for _ in range(max(1, int(np.ceil(np.log2(max(t, 2)))))):
        closure = _propagate(closure, closure)
    first = closure.to(torch.uint8).argmax(dim=2)  # lowest index in each node's component
    return (first == torch.arange(t)).sum(dim=1)


def alive_labels(layout: Layout, state: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Weakly connected components of the alive subgraph of K networks, one scipy call for the
    whole population: (labels [K · n_nodes] component of each node, touched [K · n_nodes] bool:
    the node is an endpoint of an alive weight). Node k · n_nodes + j is node j of network k,
    nodes numbered layer by layer (inputs first)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    k = state.shape[0]
    sizes = layout.layers
    node_off = np.concatenate([[0], np.cumsum(sizes)])
    n_nodes = int(node_off[-1])
    rows, cols = [], []
    for i, (w, b, _) in enumerate(layout.offsets):
        alive = (state[:, w:b] == ALIVE).view(k, sizes[i + 1], sizes[i]).nonzero().numpy()
        rows.append(alive[:, 0] * n_nodes + node_off[i] + alive[:, 2])      # u in layer i
        cols.append(alive[:, 0] * n_nodes + node_off[i + 1] + alive[:, 1])  # v in layer i+1
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    total = k * n_nodes
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(total, total))
    _, labels = connected_components(graph, directed=False)
    touched = np.zeros(total, dtype=bool)
    touched[rows] = True
    touched[cols] = True
    return labels, touched


def alive_components(layout: Layout, state: torch.Tensor,
                     labels: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """Per network, weakly connected components of the alive subgraph holding an input feature.

    The alive subgraph is edge-induced: its nodes are the endpoints of alive weights, so an
    isolated input feature is not a component. `labels`: alive_labels(layout, state) when
    already computed.
    """
    k = state.shape[0]
    n_nodes = sum(layout.layers)
    labels, touched = alive_labels(layout, state) if labels is None else labels
    inputs = (np.arange(k)[:, None] * n_nodes + np.arange(layout.layers[0])[None, :]).reshape(-1)
    inputs = inputs[touched[inputs]]
    net = inputs // n_nodes
    pairs = np.unique(np.stack([net, labels[inputs]], axis=1), axis=0)
    return torch.from_numpy(np.bincount(pairs[:, 0], minlength=k) if len(pairs)
                            else np.zeros(k, dtype=np.int64))


def outputs_apart(layout: Layout, tasks: list[TaskInfo], labels: np.ndarray, k: int
                  ) -> torch.Tensor:
    """[K] bool: no weakly connected component of the alive subgraph holds output neurons of
    two tasks (the output split's condition, docs/science.md §6; input purity is not required).
    labels: alive_labels(...)[0] of the K networks. An output on no alive weight is a
    component of its own (liveness, checked apart, fails for it)."""
    n_nodes = sum(layout.layers)
    first_out = n_nodes - layout.layers[-1]
    owner = np.concatenate([np.full(len(t.outputs), j) for j, t in enumerate(tasks)]
                           + [np.zeros(0, dtype=np.int64)]).astype(np.int64)
    outs = np.concatenate([np.asarray(t.outputs, dtype=np.int64) for t in tasks]
                          + [np.zeros(0, dtype=np.int64)])
    lab = labels.reshape(k, n_nodes)[:, first_out + outs]         # [K, n_out]
    out = np.ones(k, dtype=bool)
    for net in range(k):
        pairs = np.unique(np.stack([lab[net], owner], axis=1), axis=0)
        out[net] = len(np.unique(pairs[:, 0])) == len(pairs)      # one task per component
    return torch.from_numpy(out)


def task_matrix(reach: torch.Tensor, ein: torch.Tensor, eout: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The task matrix A of docs/science.md §6 from per-output reachability.

    reach [K, n_out, n_in] bool: output y is reached from input x by a directed path of unpruned
    weights; ein [n_in, T], eout [n_out, T] task indicators. Returns (A [K, T, T] float64 with
    A[i][j] = fraction of (input of task i, output of task j) pairs connected, pairs
    [K, T_out, T_in] float64 connected pair counts (exact integers), total [T_out, T_in] pair
    counts)."""
    pairs = eout.T @ reach.to(torch.float64) @ ein
    total = eout.sum(0)[:, None] * ein.sum(0)[None, :]
    return (pairs / total).transpose(1, 2), pairs, total


def complete_split(task_mat: torch.Tensor, pairs: torch.Tensor, total: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Potential, task groups G and split metric of docs/science.md §6 (the complete split).

    task_mat, pairs, total from task_matrix. Potential = fraction of all tasks' in-out pairs
    still connected [K] float64; G [K] = groups of tasks linked by cross-task paths (A[i][j] > 0,
    i ≠ j, symmetric and transitive); split metric [K] float64 = potential − 1 ∈ [−1, 0) while
    some task lost a pair, else T − G ≥ 0. Complete split ⇔ metric = 0 (Analysis.split).
    """
    t = task_mat.shape[1]
    diag_pairs = torch.diagonal(pairs, dim1=1, dim2=2).sum(dim=1)
    diag_total = torch.diagonal(total).sum()
    potential = diag_pairs / diag_total
    groups = count_groups((task_mat > 0) & ~torch.eye(t, dtype=torch.bool))
    complete = diag_pairs == diag_total  # exact integer counts, no float comparison
    return potential, groups, torch.where(complete, (t - groups).to(torch.float64), potential - 1)


def effective_split(live: torch.Tensor, pure: torch.Tensor) -> torch.Tensor:
    """[K] bool: the effective split of docs/science.md §6, liveness and purity
    (effective_split_parts)."""
    return live & pure


def task_reach(masks: list[torch.Tensor], ein: torch.Tensor, eout: torch.Tensor
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Which tasks' inputs reach each node and which tasks' outputs each node reaches.

    masks: per weight matrix, [K, out, in] bool (unpruned weights; biases are not edges).
    ein [n_in, T], eout [n_out, T]: 0/1 task indicators (task_indicators).
    Returns (fwd, bwd), per node layer [K, n_l, T] bool: fwd[l][k, n, s] ⇔ some input of task
    s reaches node n by a directed path of unpruned weights; bwd[l][k, n, t] ⇔ n reaches some
    output of task t. Every edge on such a path is alive (docs/science.md §5), so these are the
    same on the effective subgraph as on the whole mask.
    """
    k = masks[0].shape[0] if masks else 0
    fwd = [(ein > 0).expand(k, -1, -1)]
    for wm in masks:
        fwd.append(_propagate(wm, fwd[-1]))
    bwd = [(eout > 0).expand(k, -1, -1)]
    for wm in reversed(masks):
        bwd.insert(0, _propagate(wm.transpose(1, 2), bwd[0]))
    return fwd, bwd


def effective_split_parts(fwd_out: torch.Tensor, eout: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(live, pure) [K] bool from the tasks reaching each output, fwd_out [K, n_out, T].

    liveness: every output y has R(y) ≠ ∅; purity: R(y) ⊆ inputs of y's task (docs/science.md §6).
    A net with no outputs is trivially live and pure.
    """
    own = (eout > 0).expand_as(fwd_out)
    live = fwd_out.any(dim=2).all(dim=1)
    pure = ~(fwd_out & ~own).any(dim=(1, 2))
    return live, pure


def coverage(bwd_in: torch.Tensor, ein: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input feature and per task, the inputs the ticket still uses (docs/science.md §6).

    bwd_in [K, n_in, T] (task_reach's bwd[0]), ein [n_in, T]. Returns (used [K, n_in] bool:
    the input reaches some output of its own task, coverage [K, T] float64:
    c_t = |∪_{y of t} R(y) ∩ inputs of t| / number of inputs of t — the fraction of task t's
    inputs the ticket still uses; an input of another task reaching t's outputs (impurity) is
    counted by λ, not here, so c_t ≤ 1).
    """
    used = (bwd_in & (ein > 0)).any(dim=2)
    cov = (used.to(torch.float64) @ ein) / ein.sum(dim=0)
    return used, cov


# Below this weight density a layer's products for λ, λ_w and E_× run over its list of unpruned
# weights (O(nnz)) instead of the dense [K, out, in] matrix (O(size)); benchmarks/README.md.
SPARSE_DENSITY = 0.05


def _edges(wm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(network, out, in) indices of the unpruned weights of wm [K, out, in] when the layer is
    sparse enough for edge-list products, else None."""
    if wm.numel() == 0 or wm.sum() >= SPARSE_DENSITY * wm.numel():
        return None
    return wm.nonzero(as_tuple=True)


def leakage(masks: list[torch.Tensor], ein: torch.Tensor, eout: torch.Tensor,
            weights: list[torch.Tensor] | None = None) -> torch.Tensor:
    """λ: the share of input → output path weight that runs between different tasks.

    masks: per weight matrix [K, out, in] bool, the unpruned weights B_i; with `weights`
    (per weight matrix [K, out, in]) the magnitude leakage λ_w uses |W_i ⊙ M_i| instead of B_i
    (docs/science.md §6). With P = B_L ⋯ B_1 (output × input), S[s, t] = Σ P over inputs of s and
    outputs of t, and λ = Σ_{s≠t} S[s, t] / Σ S ∈ [0, 1]; λ = 0 ⇔ purity. Returns [K] float64,
    NaN where no input reaches any output (Σ S = 0).

    Precision: P is never formed; the T task columns of the inputs are propagated forward
    (X_l = B_l X_{l-1}, X_0 = ein) in float64 — path counts exceed float32's range (3.4e38) on
    deep wide nets (width 200, depth 20, dense: 200^20 ≈ 1e46 paths) and its 24-bit mantissa
    long before. After each layer every network's X is divided by a power of two (its largest
    entry's exponent), which is exact and leaves the ratio λ unchanged, so counts never
    overflow float64 either, whatever the depth. Layers below SPARSE_DENSITY are multiplied
    edge by edge (index_add over the unpruned weights), the others as dense float64 bmm.
    """
    k = masks[0].shape[0] if masks else 0
    x = ein.to(torch.float64).expand(k, -1, -1)
    for i, wm in enumerate(masks):
        n_out, n_in = wm.shape[1:]
        edges = _edges(wm)
        if edges is None:
            w = wm.to(torch.float64) if weights is None else \
                (weights[i].abs() * wm).to(torch.float64)
            x = torch.bmm(w, x)
        else:
            kk, v, u = edges
            src = x.reshape(k * n_in, -1)[kk * n_in + u]
            if weights is not None:
                src = src * weights[i][kk, v, u].abs().to(torch.float64).unsqueeze(1)
            x = torch.zeros(k * n_out, x.shape[2], dtype=torch.float64).index_add_(
                0, kk * n_out + v, src).view(k, n_out, -1)
        _, exp = torch.frexp(x.amax(dim=(1, 2)))
        x = torch.ldexp(x, -exp.to(torch.float64).view(k, 1, 1))
    s = eout.T.to(torch.float64) @ x                     # [K, T_out, T_in]
    total = s.sum(dim=(1, 2))
    own = torch.diagonal(s, dim1=1, dim2=2).sum(dim=1)
    return torch.where(total > 0, (total - own) / total, torch.nan)


def cross_task_weights(masks: list[torch.Tensor], fwd: list[torch.Tensor],
                       bwd: list[torch.Tensor]) -> list[torch.Tensor]:
    """E_×: per weight matrix [K, out, in] bool, the unpruned weights u → v on some directed
    path from an input of a task s to an output of a task t ≠ s (docs/science.md §6): some s reaches
    u and v reaches some t ≠ s. Such weights are alive. fwd/bwd from task_reach."""
    out = []
    t = fwd[0].shape[2]
    other = torch.ones(t, t) - torch.eye(t)              # (J − I): pairs s ≠ t
    for i, wm in enumerate(masks):
        src = fwd[i].to(torch.float32) @ other            # [K, n_in, T]: #t ≠ some s reaching u
        edges = _edges(wm)
        if edges is None:
            pairs = torch.bmm(bwd[i + 1].to(torch.float32), src.transpose(1, 2))  # [K, out, in]
            out.append(wm & (pairs > 0))
        else:
            kk, v, u = edges
            hit = (src[kk, u] * bwd[i + 1][kk, v].to(torch.float32)).sum(dim=1) > 0
            c = torch.zeros_like(wm)
            c[kk[hit], v[hit], u[hit]] = True
            out.append(c)
    return out


def analyze(layout: Layout, mask: torch.Tensor, theta: torch.Tensor,
            tasks: list[TaskInfo]) -> Analysis:
    """States, neuron classes, task matrix, split metric and the split criteria of docs/science.md
    §6 (effective and output split, coverage, λ, λ_w, E_×) of K networks (mask, theta [K, P]).
    The split distance (minimum cuts) is pipeline.cut.split_distance of the returned state."""
    k = mask.shape[0]
    sizes = layout.layers
    depth = layout.depth
    masks = layout.views(mask)
    values = layout.views(theta)

    wf = [wm.to(torch.float32) for wm, _ in masks]   # converted once, used by every product
    ein, eout = task_indicators(tasks, sizes[0], sizes[-1])
    # forward: which tasks' inputs reach each node, plus a column "any input" (I)
    fwd_all = [torch.cat([ein > 0, torch.ones(sizes[0], 1, dtype=torch.bool)], 1).expand(k, -1, -1)]
    for w in wf:
        fwd_all.append(_propagate(w, fwd_all[-1]))
    reach_in = [f[..., -1] for f in fwd_all]
    fwd = [f[..., :-1] for f in fwd_all]
    has_in = [torch.zeros(k, sizes[0], dtype=torch.bool)] + [wm.any(dim=2) for wm, _ in masks]
    # backward: which outputs each node reaches, [K, n_out, n_l] (also gives the task matrix)
    per_output = [torch.eye(sizes[-1], dtype=torch.bool).expand(k, -1, -1)]
    for w in reversed(wf):
        per_output.insert(0, _propagate(per_output[0], w))
    reach_out = [r.any(dim=1) for r in per_output]
    bwd = [(r.transpose(1, 2).to(torch.float64) @ eout) > 0 for r in per_output]
    has_out = [wm.any(dim=1) for wm, _ in masks] + [torch.zeros(k, sizes[-1], dtype=torch.bool)]

    state = torch.empty(mask.shape, dtype=torch.uint8)
    for i, ((w, b, e), (wm, bm)) in enumerate(zip(layout.offsets, masks)):
        i_u, h_u = reach_in[i].unsqueeze(1), has_in[i].unsqueeze(1)
        o_v = reach_out[i + 1].unsqueeze(2)
        ws = _classify(wm, i_u, h_u, o_v)
        bs = _classify(bm, reach_in[i + 1], has_in[i + 1], reach_out[i + 1])
        state[:, w:b] = ws.reshape(k, -1)
        state[:, b:e] = bs

    zombie, comatose, frozen = [], [], []
    for layer in range(1, depth):
        z = ~has_in[layer] & has_out[layer]
        zombie.append(z)
        comatose.append(has_in[layer] & ~has_out[layer])
        bias, bias_mask = values[layer - 1][1], masks[layer - 1][1]
        frozen.append(z & (~bias_mask | (bias <= 0)))  # ReLU(bias) = 0: no gradient flows

    t = len(tasks)
    task_mat, pairs, total = task_matrix(per_output[0], ein, eout)
    potential, groups, split_metric = complete_split(task_mat, pairs, total)
    distance = torch.linalg.matrix_norm(task_mat - torch.eye(t, dtype=torch.float64))

    wmasks = [wm for wm, _ in masks]
    live, pure = effective_split_parts(fwd[-1], eout)
    used, cov = coverage(bwd[0], ein)
    lam = leakage(wmasks, ein, eout)
    lam_w = leakage(wmasks, ein, eout, weights=[w for w, _ in values])
    cross = torch.zeros(mask.shape, dtype=torch.bool)
    for (w, b, _), c in zip(layout.offsets, cross_task_weights(wmasks, fwd, bwd)):
        cross[:, w:b] = c.reshape(k, -1)
    labels = alive_labels(layout, state)
    return Analysis(state=state, reach_in=reach_in, reach_out=reach_out, has_in=has_in,
                    has_out=has_out, zombie=zombie, comatose=comatose, frozen=frozen,
                    task_matrix=task_mat, potential=potential, groups=groups,
                    split_metric=split_metric, task_distance=distance,
                    components=alive_components(layout, state, labels), n_tasks=t, live=live,
                    pure=pure, input_used=used, coverage=cov, leakage=lam, leakage_w=lam_w,
                    cross=cross, outputs_apart=outputs_apart(layout, tasks, labels[0], k))


def _classify(m: torch.Tensor, i_src: torch.Tensor, h_src: torch.Tensor,
              o_dst: torch.Tensor) -> torch.Tensor:
    """State codes from the table in docs/science.md §5 (broadcasting src/dst node flags)."""
    code = torch.where(h_src, AUDIENCE, ZOMBIE)
    code = torch.where(i_src, ALIVE, code)
    code = torch.where(o_dst, code, UNPRODUCTIVE)
    return torch.where(m, code, PRUNED).to(torch.uint8)


def state_counts(state: torch.Tensor, select: torch.Tensor | slice | None = None) -> torch.Tensor:
    """[K, 5] int64 number of parameters in each state (optionally among `select`: a [P] bool
    selection or a slice of the flat layout — a slice is read in place, without a copy).
    One counting pass per network (numpy bincount) instead of one comparison per state."""
    s = state if select is None else state[:, select]
    a = s.numpy()
    n = len(STATES)
    out = np.zeros((a.shape[0], n), dtype=np.int64)
    for k, row in enumerate(a):
        out[k] = np.bincount(row, minlength=n)[:n]
    return torch.from_numpy(out)
