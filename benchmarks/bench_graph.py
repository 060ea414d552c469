"""Graph analysis speed: the vectorised pipeline.graph.analyze against a networkx implementation
of the same definitions (reachability by descendants/ancestors from a super source/sink).

Run by hand (not a test):  python benchmarks/bench_graph.py [--widths 40,300,1000,4000]
Record results in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import time

import networkx as nx
import numpy as np
import torch

from pipeline.data import TaskInfo
from pipeline.graph import analyze
from pipeline.model import Layout


def networkx_states(layers, wmasks):
    """I, O and has_in per node plus the weight states, one network, with networkx."""
    g = nx.DiGraph()
    for i, m in enumerate(wmasks):
        v, u = np.nonzero(m)
        g.add_edges_from(zip(((i, a) for a in u), ((i + 1, b) for b in v)))
    g.add_nodes_from((l, n) for l, size in enumerate(layers) for n in range(size))
    g.add_edges_from(("src", (0, n)) for n in range(layers[0]))
    g.add_edges_from(((len(layers) - 1, n), "sink") for n in range(layers[-1]))
    reach_in = nx.descendants(g, "src")
    reach_out = nx.ancestors(g, "sink")
    states = []
    for i, m in enumerate(wmasks):
        s = np.full(m.shape, 4)
        for v, u in zip(*np.nonzero(m)):
            src, dst = (i, u), (i + 1, v)
            if dst not in reach_out:
                s[v, u] = 3
            elif src in reach_in:
                s[v, u] = 0
            else:
                s[v, u] = 1 if g.in_degree(src) > 0 else 2
        states.append(s)
    return states


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="40,100,300,1000,2000,4000")
    ap.add_argument("--density", type=float, default=0.01)
    ap.add_argument("--networkx-max-width", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tasks = [TaskInfo("a", "moons", [0, 1], [0], 2, "bce"), TaskInfo("b", "moons", [2, 3], [1], 2, "bce")]
    cases = [(w, (4, w, w, 2)) for w in map(int, args.widths.split(","))]
    mnist_tasks = [TaskInfo("m", "mnist", list(range(784)), list(range(10)), 10, "ce"),
                   TaskInfo("f", "fashion_mnist", list(range(784, 1568)), list(range(10, 20)), 10, "ce")]
    cases.append(("mnist", (1568, 784, 392, 20)))
    for name, layers in cases:
        layout = Layout(layers)
        tk = mnist_tasks if name == "mnist" else tasks
        for k in (1, 8):
            g = torch.Generator().manual_seed(0)
            mask = torch.rand(k, layout.size, generator=g) < args.density
            theta = torch.randn(k, layout.size, generator=g) * mask
            analyze(layout, mask[:1], theta[:1], tk)  # warm-up
            t = time.perf_counter()
            analyze(layout, mask, theta, tk)
            ours = time.perf_counter() - t
            line = f"{str(name):>6} {str(layers):>24} K={k}: {ours * 1e3:8.1f} ms ({ours / k * 1e3:.1f} ms/net)"
            if k == 1 and (name == "mnist" or name <= args.networkx_max_width):
                wm = [w[0].numpy() for w, _ in layout.views(mask)]
                t = time.perf_counter()
                networkx_states(layers, wm)
                ref = time.perf_counter() - t
                line += f"; networkx {ref * 1e3:9.1f} ms; ratio {ref / ours:6.0f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
