"""Split distance by minimum cut (docs/science.md §6): how many alive weights (d), and how much |w|
(d_w), must go before no path joins two tasks.

The alive subgraph (alive weights only; biases are not edges) is viewed as undirected, each
alive weight an edge of capacity 1 (d) or |w| (d_w). X_t = the input features and output
neurons of task t. The terminals of each side are contracted into one node (a super-source
joined to X_s and a super-sink joined to X_t with infinite capacity, without the infinite
edges), parallel edges are merged by summing their capacities (exact for every cut: 784 pixel
weights into one hidden neuron become one edge), and the minimum cut comes from a well-kept
max-flow implementation:
  d:   scipy.sparse.csgraph.maximum_flow (Dinic; integer capacities, exact),
  d_w: python-igraph's Graph.mincut (push-relabel; float capacities, which scipy does not take).
The cut edges are the alive weights crossing the source-side / sink-side partition, so the cut
can be zeroed (the functional split zeroes C_w) and drawn. benchmarks/README.md has the speed.

T = 2: one s–t cut, exact. T > 2 (multiway cut, NP-hard): the isolating cuts C_t (X_t against
every other task's terminals); the cut reported is ∪ of all C_t but the largest (a valid
multiway cut, ≤ 2(1 − 1/T)·OPT), its size the upper bound, and max(max_t |C_t|, ½ Σ_t |C_t|)
the lower bound; exact where they meet. T = 1: not applicable (NaN).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data import TaskInfo
from pipeline.graph import ALIVE, analyze
from pipeline.model import Layout, layers_from_state


@dataclass
class Distance:
    """Split distance of K networks at one level (docs/science.md §6). With T = 1 every value is NaN
    and the cuts are empty.

    d / d_w: size (weights) / total |w| of the cut found, C / C_w — the minimum for T = 2; for
    T > 2 the isolating-cut upper bound (d_high, d_w_high), exact where `exact` / `exact_w`.
    """

    d: torch.Tensor          # [K] float64: |C|
    d_low: torch.Tensor      # [K] float64: lower bound (= d for T = 2)
    d_w: torch.Tensor        # [K] float64: Σ |w| over C_w
    d_w_low: torch.Tensor    # [K] float64
    mass: torch.Tensor       # [K] float64: Σ |w| over the alive weights
    cut: torch.Tensor        # [K, P] bool: C, a minimum unit-capacity cut (flat layout)
    cut_w: torch.Tensor      # [K, P] bool: C_w, a minimum |w| cut

    @property
    def exact(self) -> torch.Tensor:
        """[K] bool: d is the minimum (always for T = 2; where the bounds meet for T > 2)."""
        return self.d_low == self.d

    @property
    def exact_w(self) -> torch.Tensor:
        """[K] bool: d_w is the minimum, up to float rounding of the two sums (relative 1e-9)."""
        return torch.isclose(self.d_w_low, self.d_w, rtol=1e-9, atol=0.0)

    @property
    def share_w(self) -> torch.Tensor:
        """[K] float64: d_w / alive |w| mass (0 where nothing is alive)."""
        return torch.where(self.mass > 0, self.d_w / self.mass.clamp_min(1e-300),
                           torch.zeros_like(self.mass))


def node_tasks(layout: Layout, tasks: list[TaskInfo]) -> np.ndarray:
    """[n_nodes] int: the task owning each input feature and output neuron, −1 for hidden
    neurons. Node ids: layer by layer, as graph.alive_components numbers them."""
    off = np.concatenate([[0], np.cumsum(layout.layers)])
    owner = np.full(int(off[-1]), -1, dtype=np.int64)
    for j, t in enumerate(tasks):
        owner[np.asarray(t.inputs, dtype=np.int64)] = j
        owner[off[-2] + np.asarray(t.outputs, dtype=np.int64)] = j
    return owner


def alive_edges(layout: Layout, state: torch.Tensor, theta: torch.Tensor, net: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The alive weights of network `net` as undirected edges: (u, v) node ids, the weight's
    index in the flat layout and |w| (float64). state [K, P] (graph.STATES codes), theta
    [K, P]. One pass over the network's own weights (no sort over the population)."""
    off = np.concatenate([[0], np.cumsum(layout.layers)])
    us, vs, flats = [], [], []
    for i, (w, b, _) in enumerate(layout.offsets):
        local = (state[net, w:b] == ALIVE).nonzero().squeeze(1).numpy()
        n_in = layout.layers[i]
        us.append(off[i] + local % n_in)
        vs.append(off[i + 1] + local // n_in)
        flats.append(w + local)
    flat = np.concatenate(flats)
    absw = np.abs(theta[net].numpy()[flat].astype(np.float64))
    return np.concatenate(us), np.concatenate(vs), flat, absw


def min_cut(u: np.ndarray, v: np.ndarray, cap: np.ndarray | None, side: np.ndarray
            ) -> np.ndarray:
    """A minimum edge cut between two node sets of an undirected multigraph.

    u, v [E] node ids of the edges, cap [E] float64 capacities (None: 1 each, solved exactly
    with scipy's integer max-flow; else with igraph), side [n_nodes] int: 0 = source terminal,
    1 = sink terminal, −1 = other. Returns [E] bool: the edges joining the source side of a
    minimum cut to the sink side (their capacities sum to the max-flow value). Edges within
    one terminal set are never cut; an edge joining the two sets always is."""
    if not len(u):
        return np.zeros(0, dtype=bool)
    # contract: node 0 = all source terminals, 1 = all sink terminals, 2… = the others; the
    # edges between a terminal set and one other node are merged (capacities summed, by
    # bincount: no sort), the others are left as they are (both solvers take multigraphs)
    free = side < 0
    ids = np.where(side == 0, 0, 1)
    ids[free] = 2 + np.arange(int(free.sum()))
    n = 2 + int(free.sum())
    a, b = ids[u], ids[v]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    weight = np.ones(len(u)) if cap is None else cap
    at_terminal = (lo < 2) & (hi >= 2)
    inner = (lo >= 2) & (lo != hi)                    # (a self-loop carries no flow)
    merged = np.bincount(lo[at_terminal] * n + hi[at_terminal], weights=weight[at_terminal],
                         minlength=2 * n).reshape(2, n)
    t_side, t_node = np.nonzero(merged)
    ea = np.concatenate([t_side, lo[inner]])
    eb = np.concatenate([t_node, hi[inner]])
    ew = np.concatenate([merged[t_side, t_node], weight[inner]])
    source_side = np.zeros(n, dtype=bool)
    source_side[0] = True
    if len(ea) and cap is None:
        source_side = _scipy_source_side(ea, eb, ew.astype(np.int32), n)
    elif len(ea):
        source_side = _igraph_source_side(ea, eb, ew, n)
    return source_side[a] != source_side[b]


def _scipy_source_side(a, b, cap, n) -> np.ndarray:
    """Source side (nodes reachable from 0 in the residual graph) of a maximum 0 → 1 flow."""
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    graph = csr_array((np.concatenate([cap, cap]), (np.concatenate([a, b]),
                                                    np.concatenate([b, a]))), shape=(n, n))
    graph.sum_duplicates()                            # parallel edges: one arc, summed
    flow = maximum_flow(graph, 0, 1, method="dinic").flow
    residual = (graph - flow).tocsr()
    residual.data = (residual.data > 0).astype(np.int8)
    residual.eliminate_zeros()
    reach = breadth_first_order(residual, 0, directed=True, return_predecessors=False)
    out = np.zeros(n, dtype=bool)
    out[reach] = True
    return out


def _igraph_source_side(a, b, cap, n) -> np.ndarray:
    """Source side of igraph's minimum 0 → 1 cut (push-relabel, float capacities)."""
    import igraph

    g = igraph.Graph(n=n, edges=np.stack([a, b], axis=1), directed=False)
    membership = np.asarray(g.mincut(0, 1, capacity=cap.tolist()).membership)
    return membership == membership[0]


def _multiway(u, v, cap, owner: np.ndarray, t: int) -> tuple[np.ndarray, float, float]:
    """(cut [E] bool, its size, lower bound) separating the terminals of t tasks: the one s–t
    cut for t = 2, the isolating-cut bounds of docs/science.md §6 for t > 2 (cut = ∪ of all
    isolating cuts but the largest). Size and bound in edges (cap None) or Σ cap."""
    def size(sel):
        return float(sel.sum()) if cap is None else float(cap[sel].sum())

    if t == 2:
        cut = min_cut(u, v, cap, owner)
        return cut, size(cut), size(cut)
    iso = [min_cut(u, v, cap, np.where(owner < 0, -1, np.where(owner == j, 0, 1)))
           for j in range(t)]
    sizes = [size(c) for c in iso]
    largest = int(np.argmax(sizes))
    cut = np.zeros(len(u), dtype=bool)
    for j, c in enumerate(iso):
        if j != largest:
            cut |= c
    return cut, size(cut), max(max(sizes), 0.5 * sum(sizes))


def _network_cut(u, v, flat, absw, owner, t):
    """One network's (mass, d, d_low, d_w, d_w_low, flat indices of C, of C_w)."""
    mass = float(absw.sum())
    if t < 2:
        return mass, np.nan, np.nan, np.nan, np.nan, flat[:0], flat[:0]
    cut, d, d_low = _multiway(u, v, None, owner, t)
    cut_w, d_w, d_w_low = _multiway(u, v, absw, owner, t)
    return mass, d, d_low, d_w, d_w_low, flat[cut], flat[cut_w]


_JOBS: list = []  # the level's per-network edge lists, inherited by forked workers (no pickling)


def _job(net: int):
    return _network_cut(*_JOBS[net])


# Levels with fewer alive weights (all networks together) are cut in this process: a worker
# pool costs more than it saves there (benchmarks/README.md)
POOL_ABOVE = 200_000


def split_distance(layout: Layout, state: torch.Tensor, theta: torch.Tensor,
                   tasks: list[TaskInfo], workers: int = 1) -> Distance:
    """Split distance d, d_w and the cuts C, C_w of K networks (docs/science.md §6).

    state [K, P] parameter states (graph.analyze), theta [K, P] values (|w| capacities).
    One network at a time: its result does not depend on the networks beside it, so it is
    the same for any `workers` (processes sharing the networks of a level with more than
    POOL_ABOVE alive weights)."""
    k, p = state.shape
    t = len(tasks)
    owner = node_tasks(layout, tasks)
    jobs = [(*alive_edges(layout, state, theta, net), owner, t) for net in range(k)]
    if workers > 1 and k > 1 and sum(len(j[0]) for j in jobs) > POOL_ABOVE:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _JOBS[:] = jobs
        try:
            with ProcessPoolExecutor(min(workers, k),
                                     mp_context=multiprocessing.get_context("fork")) as pool:
                results = list(pool.map(_job, range(k)))
        finally:
            _JOBS.clear()
    else:
        results = [_network_cut(*j) for j in jobs]
    column = lambda i: torch.tensor([r[i] for r in results], dtype=torch.float64)  # noqa: E731
    out = Distance(d=column(1), d_low=column(2), d_w=column(3), d_w_low=column(4),
                   mass=column(0), cut=torch.zeros(k, p, dtype=torch.bool),
                   cut_w=torch.zeros(k, p, dtype=torch.bool))
    for net, r in enumerate(results):
        out.cut[net, torch.from_numpy(r[5])] = True
        out.cut_w[net, torch.from_numpy(r[6])] = True
    return out


def seed_cut(state: dict[str, torch.Tensor], seed: int, tasks: list[TaskInfo]
             ) -> list[np.ndarray] | None:
    """C_w of one seed of a level checkpoint dict (models/imp/level_XX.pt) as, per weight
    matrix, [n_{i+1}, n_i] bool (what drawing.mark_cut marks); None with one task."""
    if len(tasks) < 2:
        return None
    k = state["seeds"].tolist().index(seed)
    layout = Layout(layers_from_state(state))
    mask = layout.from_state(state, masks=True)[k:k + 1]
    theta = layout.from_state(state)[k:k + 1]
    dist = split_distance(layout, analyze(layout, mask, theta, tasks).state, theta, tasks)
    return [c[0].numpy() for c, _ in layout.views(dist.cut_w)]
