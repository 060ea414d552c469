"""Stage `analyze`: graph states of every IMP level → reports/analysis/*, reports/metrics.json."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline import config, io
from pipeline.analysis import (InvariantError, check_monotone, comatose_events, level_frames,
                               lifetime_summary, lifetimes, per_seed, plot_table,
                               random_mask_splits, summarize, fraction_text)
from pipeline.data import load as load_data
from pipeline.graph import STATES, analyze
from pipeline.imp import level_path
from pipeline.model import Layout, layers_from_state
from pipeline.stages import StageError, run

OUT = Path("reports/analysis")
FOLDER = Path("models/imp")


def main() -> None:
    params = config.load()
    torch.set_num_threads(params.train.threads)
    start = time.perf_counter()
    tasks, _ = load_data("data")
    paths = sorted(FOLDER.glob("level_*.pt"))
    if not paths or paths != [level_path(FOLDER, i) for i in range(len(paths))]:
        raise StageError("models/imp holds no complete run of level files; run dvc repro")
    imp_levels = pd.read_csv("reports/imp/levels.csv")

    frames: dict[str, list[pd.DataFrame]] = {}
    states, masks, has_in, has_out, bias_masks = [], [], [], [], []
    for i, path in enumerate(paths):
        state = torch.load(path, weights_only=True)
        layout = Layout(layers_from_state(state))
        prunable = layout.prunable(params.prune.biases)
        seeds = state["seeds"].tolist()
        for prefix in ("", "random."):
            if f"{prefix}layers.0.weight_mask" not in state:
                continue
            mask = layout.from_state(state, prefix, masks=True)
            theta = layout.from_state(state, prefix)
            res = analyze(layout, mask, theta, tasks)
            tables = level_frames(layout, res, mask, theta, prunable, tasks, seeds, i)
            if prefix:  # the random-mask null model: split statistics only
                frames.setdefault("random", []).append(tables["levels"])
                continue
            for name, frame in tables.items():
                frames.setdefault(name, []).append(frame)
            states.append(res.state)
            masks.append(mask)
            has_in.append(res.has_in[1:-1])
            has_out.append(res.has_out[1:-1])
            bias_masks.append([b for _, b in layout.views(mask)[:-1]])
    try:
        check_monotone(states, masks)
    except InvariantError as exc:
        raise StageError(f"invariant violated in models/imp: {exc}") from None

    tables = {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}
    seeds_table = per_seed(tables["levels"], imp_levels, tasks,
                           params.analysis.degradation_threshold)
    life = lifetimes(states)
    with io.atomic_dir(OUT) as out:
        for name in ("levels", "layers", "task_matrix", "zombies"):
            io.write_csv(out / f"{name}.csv", tables[name])
        io.write_csv(out / "random_masks.csv",
                     tables.get("random", pd.DataFrame(columns=tables["levels"].columns)))
        io.write_csv(out / "seeds.csv", seeds_table)
        np.savez_compressed(out / "lifetimes.npz", lifetimes=life.numpy(), seeds=np.array(seeds),
                            layer=layout.layer_index().numpy(), is_bias=layout.is_bias().numpy(),
                            states=np.array(STATES))
        io.write_csv(out / "lifetimes.csv", lifetime_summary(life, layout, seeds))
        io.write_csv(out / "events.csv", comatose_events(has_in, has_out, bias_masks, seeds))
    io.write_csv("reports/plots/levels.csv", plot_table(tables["levels"], imp_levels, tasks))
    random = tables.get("random")
    metrics = summarize(seeds_table, tasks, params.analysis.degradation_threshold,
                        None if random is None else random_mask_splits(random))
    io.write_json("reports/metrics.json", metrics)
    s = metrics["split"]
    print(f"analyze: {len(paths)} levels × {len(seeds)} seeds in "
          f"{time.perf_counter() - start:.2f}s; seeds split "
          f"{fraction_text(s['seeds_split'], len(seeds))}, before any task degraded "
          f"{fraction_text(s['seeds_split_before_degradation'], len(seeds))}")


if __name__ == "__main__":
    run(main)
