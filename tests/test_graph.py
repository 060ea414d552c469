"""Graph analysis against a slow, obviously-correct networkx reference of docs/science.md §5–6."""
from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import torch

from pipeline.data import TaskInfo
from pipeline.graph import ALIVE, AUDIENCE, PRUNED, STATES, UNPRODUCTIVE, ZOMBIE, analyze
from pipeline.model import Layout


# ---- the reference: one networkx DiGraph per network, each definition read off literally ----
def reference(layers, wmasks, bmasks, biases, tasks):
    g = nx.DiGraph()
    nodes = [[(l, n) for n in range(size)] for l, size in enumerate(layers)]
    g.add_nodes_from(itertools.chain.from_iterable(nodes))
    for i, m in enumerate(wmasks):
        for v, u in zip(*np.nonzero(m)):
            g.add_edge((i, u), (i + 1, v))
    inputs, outputs = set(nodes[0]), set(nodes[-1])
    I = {n: n in inputs or any(nx.has_path(g, s, n) for s in inputs) for n in g}
    O = {n: n in outputs or any(nx.has_path(g, n, t) for t in outputs) for n in g}
    has_in = {n: g.in_degree(n) > 0 for n in g}

    def state(unpruned, src, dst):
        if not unpruned:
            return PRUNED
        if not O[dst]:
            return UNPRODUCTIVE
        if I[src]:
            return ALIVE
        return AUDIENCE if has_in[src] else ZOMBIE

    wstates = [np.array([[state(m[v, u], (i, u), (i + 1, v)) for u in range(m.shape[1])]
                         for v in range(m.shape[0])]) for i, m in enumerate(wmasks)]
    bstates = [np.array([state(m[v], (i + 1, v), (i + 1, v)) for v in range(len(m))])
               for i, m in enumerate(bmasks)]
    zombie, comatose, frozen = [], [], []
    for l in range(1, len(layers) - 1):
        z = [g.in_degree((l, n)) == 0 and g.out_degree((l, n)) > 0 for n in range(layers[l])]
        c = [g.in_degree((l, n)) > 0 and g.out_degree((l, n)) == 0 for n in range(layers[l])]
        f = [z[n] and (not bmasks[l - 1][n] or biases[l - 1][n] <= 0) for n in range(layers[l])]
        zombie.append(z), comatose.append(c), frozen.append(f)
    t = len(tasks)
    A = np.zeros((t, t))
    for i, j in itertools.product(range(t), range(t)):
        pairs = [(a, o) for a in tasks[i].inputs for o in tasks[j].outputs]
        A[i, j] = np.mean([nx.has_path(g, (0, a), (len(layers) - 1, o)) for a, o in pairs])
    own = [(a, o) for tk in tasks for a in tk.inputs for o in tk.outputs]
    connected = sum(nx.has_path(g, (0, a), (len(layers) - 1, o)) for a, o in own)
    potential = connected / len(own)
    tg = nx.Graph()
    tg.add_nodes_from(range(t))
    tg.add_edges_from((i, j) for i in range(t) for j in range(t) if i != j and A[i, j] > 0)
    groups = nx.number_connected_components(tg)
    metric = potential - 1 if connected < len(own) else t - groups
    alive = nx.Graph()
    for i, ws in enumerate(wstates):
        for v, u in zip(*np.nonzero(ws == ALIVE)):
            alive.add_edge((i, u), (i + 1, v))
    components = sum(1 for c in nx.connected_components(alive) if c & inputs)
    return dict(wstates=wstates, bstates=bstates, zombie=zombie, comatose=comatose, frozen=frozen,
                A=A, potential=potential, groups=groups, metric=metric, components=components)


def random_tasks(rng, n_tasks):
    infos, col, out = [], 0, 0
    for i in range(n_tasks):
        n_in, n_out = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        infos.append(TaskInfo(f"t{i}", "moons", list(range(col, col + n_in)),
                              list(range(out, out + n_out)), 2, "bce"))
        col, out = col + n_in, out + n_out
    return infos, col, out


def check_against_reference(layout, mask, theta, tasks):
    res = analyze(layout, mask, theta, tasks)
    for k in range(mask.shape[0]):
        wm = [w[k].numpy() for w, _ in layout.views(mask)]
        bm = [b[k].numpy() for _, b in layout.views(mask)]
        bv = [b[k].numpy() for _, b in layout.views(theta)]
        ref = reference(layout.layers, wm, bm, bv, tasks)
        for i, (ws, bs) in enumerate(layout.views(res.state)):
            ws, bs = ws[k], bs[k]
            np.testing.assert_array_equal(ws.numpy(), ref["wstates"][i], err_msg=f"w{i} net {k}")
            np.testing.assert_array_equal(bs.numpy(), ref["bstates"][i], err_msg=f"b{i} net {k}")
        for name in ("zombie", "comatose", "frozen"):
            got = [x[k].tolist() for x in getattr(res, name)]
            assert got == [list(map(bool, r)) for r in ref[name]], name
        np.testing.assert_allclose(res.task_matrix[k].numpy(), ref["A"], atol=1e-12)
        assert res.potential[k].item() == pytest.approx(ref["potential"])
        assert res.groups[k].item() == ref["groups"]
        assert res.split_metric[k].item() == pytest.approx(ref["metric"])
        assert res.components[k].item() == ref["components"]
        t = len(tasks)
        assert res.task_distance[k].item() == pytest.approx(np.linalg.norm(ref["A"] - np.eye(t)))
    return res


@pytest.mark.parametrize("case", range(120))
def test_random_masks_match_networkx(case):
    rng = np.random.default_rng(case)
    tasks, n_in, n_out = random_tasks(rng, int(rng.integers(1, 6)))
    hidden = [int(rng.integers(1, 8)) for _ in range(int(rng.integers(1, 5)))]
    layout = Layout((n_in, *hidden, n_out))
    k = 3
    density = rng.uniform(0, 1, size=(k, 1))
    mask = torch.from_numpy(rng.uniform(size=(k, layout.size)) < density)
    if case % 5 == 0:  # a fully pruned layer in one network
        w, b, e = layout.offsets[int(rng.integers(layout.depth))]
        mask[0, w:b] = False
    if case % 7 == 0:  # an empty network
        mask[1] = False
    if case % 11 == 0:  # a dense network
        mask[2] = True
    theta = torch.from_numpy(rng.normal(size=(k, layout.size))).float() * mask
    check_against_reference(layout, mask, theta, tasks)


def two_task_net(cross_edge=False, lose_pair=False):
    """[4, 4, 2]: task 0 = inputs 0,1 → hidden 0,1 → output 0; task 1 = inputs 2,3 → 2,3 → 1."""
    layout = Layout((4, 4, 2))
    w0 = torch.zeros(4, 4, dtype=torch.bool)
    w0[0:2, 0:2] = True
    w0[2:4, 2:4] = True
    w1 = torch.zeros(2, 4, dtype=torch.bool)
    w1[0, 0:2] = True
    w1[1, 2:4] = True
    if cross_edge:
        w0[2, 1] = True  # input 1 (task 0) → hidden 2 (task 1's path)
    if lose_pair:
        w0[0:2, 0] = False  # input 0 of task 0 is cut off
    mask = torch.cat([w0.reshape(-1), torch.ones(4, dtype=torch.bool), w1.reshape(-1),
                      torch.ones(2, dtype=torch.bool)]).unsqueeze(0)
    tasks = [TaskInfo("a", "moons", [0, 1], [0], 2, "bce"), TaskInfo("b", "moons", [2, 3], [1], 2, "bce")]
    return layout, mask, torch.ones(mask.shape) * mask, tasks


def test_perfect_split():
    res = check_against_reference(*two_task_net())
    assert res.split_metric.item() == 0 and bool(res.split.item())
    torch.testing.assert_close(res.task_matrix[0], torch.eye(2, dtype=torch.float64))
    assert res.components.item() == 2 and res.task_distance.item() == 0


def test_one_cross_edge():
    res = check_against_reference(*two_task_net(cross_edge=True))
    assert res.split_metric.item() == 1 and res.task_matrix[0, 0, 1] == 0.5
    assert res.components.item() == 1


def test_lost_pair_is_negative():
    res = check_against_reference(*two_task_net(lose_pair=True))
    assert res.potential.item() == pytest.approx(3 / 4)
    assert res.split_metric.item() == pytest.approx(-0.25)


def test_zombie_chain_and_comatose_and_frozen():
    """[1, 2, 2, 1]: hidden1[0] has no inputs (zombie) → hidden2[0] → output (audience);
    hidden1[1] gets the input but has no outputs (comatose)."""
    layout = Layout((1, 2, 2, 1))
    mask = torch.zeros(1, layout.size, dtype=torch.bool)
    (w0, b0, e0), (w1, b1, e1), (w2, b2, e2) = layout.offsets
    mask[0, w0 + 1] = True          # input → hidden1[1]
    mask[0, b0:e0] = True           # both hidden1 biases
    mask[0, w1 + 0] = True          # hidden1[0] → hidden2[0]
    mask[0, b1:e1] = True
    mask[0, w2 + 0] = True          # hidden2[0] → output
    mask[0, b2:e2] = True
    theta = torch.ones(1, layout.size) * mask
    res = check_against_reference(layout, mask, theta, [TaskInfo("a", "moons", [0], [0], 2, "bce")])
    state = layout.views(res.state)
    assert state[1][0][0, 0, 0].item() == ZOMBIE      # weight out of the zombie neuron
    assert state[2][0][0, 0, 0].item() == AUDIENCE    # weight out of a neuron fed only by zombies
    assert state[0][1][0, 1].item() == UNPRODUCTIVE   # comatose neuron's bias
    assert res.zombie[0][0].tolist() == [True, False]
    assert res.comatose[0][0].tolist() == [False, True]
    assert res.frozen[0][0].tolist() == [False, False]  # positive bias: not frozen
    theta[0, b0] = -1.0
    res = check_against_reference(layout, mask, theta, [TaskInfo("a", "moons", [0], [0], 2, "bce")])
    assert res.frozen[0][0].tolist() == [True, False]
    assert res.split_metric.item() == -1  # the input no longer reaches the output


def test_states_are_all_named():
    assert STATES == ("alive", "audience", "zombie", "unproductive", "pruned")
