"""Stage `analyze`: graph states and split criteria of every IMP level → reports/analysis/*,
reports/metrics.json.

Per level: states and neuron classes (SCIENCE.md §5), the complete, effective and output split,
coverage, λ, λ_w, the split distance (minimum cuts d, d_w) and the functional split (§6;
forward passes on data/test.npz with the minimum cut C_w zeroed, and with E_× zeroed as a
column), frozen input weights (§5; constant inputs of data/train.npz). Re-running it on an
existing work folder recomputes every column from the level files (no training).
reports/analysis/coverage.npz holds, per level, seed and input feature, whether the input
still reaches an output of its own task (the coverage maps).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline import config, health, io
from pipeline.analysis import (
    CRITERIA,
    InvariantError,
    check_monotone,
    comatose_events,
    distance_summary,
    fraction_text,
    frozen_inputs,
    level_frames,
    lifetime_summary,
    lifetimes,
    per_seed,
    plot_table,
    random_mask_splits,
    summarize,
)
from pipeline.cut import split_distance
from pipeline.data import load as load_data
from pipeline.functional import functional_split
from pipeline.graph import STATES, analyze
from pipeline.imp import level_path, load_level
from pipeline.model import Layout, layers_from_state
from pipeline.paths import RunPaths
from pipeline.stages import StageError, cli


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """Analyse every IMP level under root/models/imp (SCIENCE.md §5–6) → root/reports/analysis,
    root/reports/plots/levels.csv and root/reports/metrics.json (returned).

    Raises StageError for a missing or incomplete run of level files or a violated invariant,
    before anything is written."""
    rp = RunPaths(root)
    torch.set_num_threads(params.train.threads)
    start = time.perf_counter()
    tasks, arrays = load_data(rp.data)
    test_x = torch.from_numpy(arrays["test"]["x"])
    test_y = torch.from_numpy(arrays["test"]["y"])
    headline = params.analysis.split
    constant, frozen = frozen_inputs(arrays["train"]["x"])
    paths = sorted(rp.imp.glob("level_*.pt"))
    if not paths or paths != [level_path(rp.imp, i) for i in range(len(paths))]:
        raise StageError(f"{rp.imp} holds no complete run of level files; run dvc repro")
    imp_levels = pd.read_csv(rp.imp_levels_csv)

    frames: dict[str, list[pd.DataFrame]] = {}
    states, masks, has_in, has_out, bias_masks, used = [], [], [], [], [], []
    for i, path in enumerate(paths):
        state = load_level(path)
        layout = Layout(layers_from_state(state))
        prunable = layout.prunable(params.prune.biases)
        seeds = state["seeds"].tolist()
        for prefix in ("", "random."):
            if f"{prefix}layers.0.weight_mask" not in state:
                continue
            mask = layout.from_state(state, prefix, masks=True)
            theta = layout.from_state(state, prefix)
            res = analyze(layout, mask, theta, tasks)
            dist = (split_distance(layout, res.state, theta, tasks, params.train.workers)
                    if res.applicable else None)
            if prefix:  # the random-mask null model: structural split statistics only
                tables = level_frames(layout, res, mask, theta, prunable, tasks, seeds, i,
                                      headline=headline, distance=dist, frozen=frozen)
                frames.setdefault("random", []).append(tables["levels"])
                continue
            func = (functional_split(layout, mask, theta, res.cross, dist.cut_w, tasks, test_x,
                                     test_y, params.analysis.functional_tolerance, res.live)
                    if res.applicable else None)
            tables = level_frames(layout, res, mask, theta, prunable, tasks, seeds, i,
                                  functional=func, headline=headline, distance=dist,
                                  frozen=frozen)
            used.append(res.input_used.numpy())
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
    with io.atomic_dir(rp.analysis) as out:
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
        np.savez_compressed(out / "coverage.npz", used=np.stack(used), seeds=np.array(seeds),
                            levels=np.arange(len(used)),
                            task=np.array([j for j, t in enumerate(tasks) for _ in t.inputs]),
                            task_names=np.array([t.name for t in tasks]))
    io.write_csv(rp.plots_levels_csv, plot_table(tables["levels"], imp_levels, tasks))
    random = tables.get("random")
    metrics = summarize(seeds_table, tasks, params.analysis.degradation_threshold,
                        None if random is None else random_mask_splits(random), headline)
    metrics["functional_tolerance"] = params.analysis.functional_tolerance
    metrics["split_distance"] = distance_summary(tables["levels"], seeds_table, random)
    metrics["constant_inputs"] = {t.name: int(constant[t.inputs].sum()) for t in tasks}
    metrics["frozen_inputs"] = {t.name: int(frozen[t.inputs].sum()) for t in tasks}
    metrics["health"] = health.section(imp_levels, rp.data)  # networks not trained as asked
    add_learned(metrics, rp)  # every task learned? (stage `learned`)
    io.write_json(rp.metrics_json, metrics)
    took = f"analyze: {len(paths)} levels × {len(seeds)} seeds in {time.perf_counter() - start:.2f}s"
    outputs = [rp.analysis, rp.plots_levels_csv, rp.metrics_json]
    if not metrics["split_applicable"]:
        print(f"{took}; one task: split not applicable")
        return outputs
    s = metrics["split"]
    parts = [f"{c} {metrics[f'split_{c}']['seeds_split']}/{len(seeds)}" for c in CRITERIA]
    print(f"{took}; seeds split ({headline}) {fraction_text(s['seeds_split'], len(seeds))}, "
          f"before any task degraded {fraction_text(s['seeds_split_before_degradation'], len(seeds))}"
          f"; by criterion: {', '.join(parts)}")
    return outputs


def add_learned(metrics: dict, rp: RunPaths) -> None:
    """metrics.json's `learned` (reports/learned.json, stage `learned`: each task against the
    task trained alone) and `degradation.unlearned_reference`: the tasks not learned, whose
    degradation is measured from a dense accuracy that is not a learned reference."""
    import json

    if not rp.learned_json.exists():  # runs made before the stage existed
        return
    metrics["learned"] = json.loads(rp.learned_json.read_text())
    metrics["degradation"]["unlearned_reference"] = metrics["learned"]["not_learned"]


def main() -> None:
    run(config.load())


if __name__ == "__main__":
    cli(main)
