"""Peak memory of one training process vs seeds, width, rows and epochs.

Run by hand (not a test):  python benchmarks/bench_memory.py [--old-malloc] [--cases K,W,N,E;…]

Each case runs in a fresh process (ru_maxrss is a high-water mark): K dense networks of the
default shape family [4, W, W, 2] on moons + circles (n_samples per task, 60 % training rows),
a fixed number of full-batch epochs (no early stop). Reports the peak resident set in MB and the
seconds per epoch. The peak should not grow with the number of epochs (benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import dataclasses, json, resource, sys, time
import torch
from pipeline import config
from pipeline.data import build, task_infos
from pipeline.model import Layout, init_population
from pipeline.train import Split, TaskLoss, train_population
torch.set_num_threads(1)
if "--old-malloc" not in sys.argv:
    from pipeline.stages import tune_malloc
    tune_malloc()
k, width, n, epochs = (int(v) for v in sys.argv[1:5])
p = config.parse({"data": {"n_samples": n}, "model": {"hidden": [width, width]}})
arrays, _ = build(p.data)
splits = {s: Split(torch.from_numpy(a["x"]), torch.from_numpy(a["y"])) for s, a in arrays.items()}
layout = Layout(tuple(p.base_layers))
theta0 = init_population(layout, p.model, range(k))
cfg = dataclasses.replace(p.train, max_epochs=epochs, patience=10**9, loss_cutoff=0.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
train_population(layout, theta0, torch.ones_like(theta0, dtype=torch.bool), splits["train"],
                 splits["val"], TaskLoss(task_infos(p.data.tasks)), cfg)
dt = time.perf_counter() - t
print(json.dumps({"baseline_mb": before, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "ms_per_epoch": dt / epochs * 1e3}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="8,40,1000,1000;32,40,1000,300;32,40,1000,1000;"
                    "32,40,1000,3000;64,40,1000,1000;64,40,1000,2000;32,100,1000,1000;"
                    "32,40,4000,1000")
    ap.add_argument("--old-malloc", action="store_true",
                    help="glibc's default malloc settings (without stages.tune_malloc)")
    args = ap.parse_args()
    print("| seeds K | width | rows (train + val) | epochs | peak MB | of which before training | ms / epoch |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases.split(";"):
        k, width, n, epochs = (int(v) for v in case.split(","))
        cmd = [sys.executable, "-c", CHILD, str(k), str(width), str(n), str(epochs)]
        out = subprocess.run(cmd + (["--old-malloc"] if args.old_malloc else []),
                             cwd=ROOT, capture_output=True, text=True, encoding="utf-8", check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows = n * 8 // 10  # train + validation rows (the tasks sit side by side in one row)
        print(f"| {k} | {width} | {rows} | {epochs} | {r['peak_mb']:.0f} | {r['baseline_mb']:.0f} | "
              f"{r['ms_per_epoch']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
