"""Small random multi-task nets and a plain per-network forward, shared by the graph tests
(test_split, test_cut): the slow, obviously correct references they compare against."""
from __future__ import annotations

import torch

from pipeline.data import TaskInfo


def random_tasks(rng, n_tasks, max_in=4, max_out=3):
    infos, col, out = [], 0, 0
    for i in range(n_tasks):
        n_in, n_out = int(rng.integers(1, max_in)), int(rng.integers(1, max_out))
        infos.append(TaskInfo(f"t{i}", "moons", list(range(col, col + n_in)),
                              list(range(out, out + n_out)), 2 if n_out == 1 else n_out,
                              "bce" if n_out == 1 else "ce"))
        col, out = col + n_in, out + n_out
    return infos, col, out


def plain_accuracy(layers, weights, biases, x, y, tasks):
    """Per task accuracy of one network with nn.Linear-style layers."""
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w.T + b
        if i < len(weights) - 1:
            h = torch.relu(h)
    out = []
    for j, t in enumerate(tasks):
        cols = h[:, t.outputs]
        pred = (cols[:, 0] > 0).long() if len(t.outputs) == 1 else cols.argmax(dim=1)
        out.append((pred == y[:, j]).double().mean().item())
    return out
