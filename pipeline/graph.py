"""Graph view of a masked MLP population (SCIENCE.md §5–6), vectorised over K networks.

Nodes are input features (layer 0), hidden neurons and output neurons; edges are unpruned
weights. Reachability is boolean propagation layer by layer, as batched matrix products:
  I(n): forward from the inputs;  O(n): backward from the outputs;  has_in(n): any unpruned
  incoming weight. Per-output reachability of every input feature (backward propagation of an
  identity over the outputs, the small side) gives the task matrix in one pass.
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

    @property
    def split(self) -> torch.Tensor:
        return self.split_metric == 0


def _propagate(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Boolean 'any' product: m [K, a, b] bool, v [K, b, c] bool → [K, a, c] bool."""
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


def alive_components(layout: Layout, state: torch.Tensor) -> torch.Tensor:
    """Per network, weakly connected components of the alive subgraph holding an input feature.

    The alive subgraph is edge-induced: its nodes are the endpoints of alive weights, so an
    isolated input feature is not a component. One scipy call for the whole population.
    """
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
    inputs = (np.arange(k)[:, None] * n_nodes + np.arange(sizes[0])[None, :]).reshape(-1)
    inputs = inputs[touched[inputs]]
    net = inputs // n_nodes
    pairs = np.unique(np.stack([net, labels[inputs]], axis=1), axis=0)
    return torch.from_numpy(np.bincount(pairs[:, 0], minlength=k) if len(pairs)
                            else np.zeros(k, dtype=np.int64))


def analyze(layout: Layout, mask: torch.Tensor, theta: torch.Tensor,
            tasks: list[TaskInfo]) -> Analysis:
    """States, neuron classes, task matrix and split metric of K networks (mask, theta [K, P])."""
    k = mask.shape[0]
    sizes = layout.layers
    depth = layout.depth
    masks = layout.views(mask)
    values = layout.views(theta)

    reach_in = [torch.ones(k, sizes[0], dtype=torch.bool)]
    has_in = [torch.zeros(k, sizes[0], dtype=torch.bool)]
    for wm, _ in masks:
        reach_in.append(_propagate(wm, reach_in[-1].unsqueeze(2)).squeeze(2))
        has_in.append(wm.any(dim=2))
    reach_out = [torch.ones(k, sizes[-1], dtype=torch.bool)]
    has_out = [torch.zeros(k, sizes[-1], dtype=torch.bool)]
    for wm, _ in reversed(masks):
        reach_out.insert(0, _propagate(wm.transpose(1, 2), reach_out[0].unsqueeze(2)).squeeze(2))
        has_out.insert(0, wm.any(dim=1))

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

    # task matrix: which inputs reach each output (backward from the outputs, the small side)
    reach = torch.eye(sizes[-1], dtype=torch.bool).expand(k, -1, -1)
    for wm, _ in reversed(masks):
        reach = _propagate(reach, wm)            # [K, n_out, n_layer]
    ein, eout = task_indicators(tasks, sizes[0], sizes[-1])
    pairs = eout.T @ reach.to(torch.float64) @ ein   # [K, T_out, T_in] connected pair counts
    total = eout.sum(0)[:, None] * ein.sum(0)[None, :]
    task_matrix = (pairs / total).transpose(1, 2)    # A[i][j]: task i's inputs → task j's outputs
    diag_pairs = torch.diagonal(pairs, dim1=1, dim2=2).sum(dim=1)
    diag_total = torch.diagonal(total).sum()
    potential = diag_pairs / diag_total
    t = len(tasks)
    off_diag = (task_matrix > 0) & ~torch.eye(t, dtype=torch.bool)
    groups = count_groups(off_diag)
    complete = diag_pairs == diag_total  # exact integer counts, no float comparison
    split_metric = torch.where(complete, (t - groups).to(torch.float64), potential - 1)
    distance = torch.linalg.matrix_norm(task_matrix - torch.eye(t, dtype=torch.float64))
    return Analysis(state=state, reach_in=reach_in, reach_out=reach_out, has_in=has_in,
                    has_out=has_out, zombie=zombie, comatose=comatose, frozen=frozen,
                    task_matrix=task_matrix, potential=potential, groups=groups,
                    split_metric=split_metric, task_distance=distance,
                    components=alive_components(layout, state))


def _classify(m: torch.Tensor, i_src: torch.Tensor, h_src: torch.Tensor,
              o_dst: torch.Tensor) -> torch.Tensor:
    """State codes from the table in SCIENCE.md §5 (broadcasting src/dst node flags)."""
    code = torch.where(h_src, AUDIENCE, ZOMBIE)
    code = torch.where(i_src, ALIVE, code)
    code = torch.where(o_dst, code, UNPRODUCTIVE)
    return torch.where(m, code, PRUNED).to(torch.uint8)


def state_counts(state: torch.Tensor, select: torch.Tensor | None = None) -> torch.Tensor:
    """[K, 5] number of parameters in each state (optionally among `select` [P] entries)."""
    s = state if select is None else state[:, select]
    return torch.stack([(s == c).sum(dim=1) for c in range(len(STATES))], dim=1)
