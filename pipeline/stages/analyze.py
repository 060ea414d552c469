"""Stage `analyze`: graph states and split criteria of every IMP level → reports/analysis/*,
reports/metrics.json.

Per level: states and neuron classes (docs/science.md §5), the complete, effective and output split,
coverage, λ, λ_w, the split distance (minimum cuts d, d_w) and the functional split (§6;
forward passes on data/test.npz with the minimum cut C_w zeroed, and with E_× zeroed as a
column), frozen input weights (§5; constant inputs of data/train.npz), and what dies during IMP (§8,
pipeline.dying: τ_k, the budget spent on the dead, frozen parameters, the folded size checked
on data/test.npz; episodes.csv, bias_survival.csv, frozen_deaths.csv.gz; the answers in
reports/analysis/dying.json and their headlines in metrics.json `dying`, pipeline.dying_answers).
Re-running it on an existing work folder recomputes every column from the level files and
models/init.pt (no training).
reports/analysis/coverage.npz holds, per level, seed and input feature, whether the input
still reaches an output of its own task (the coverage maps).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline import config, dying, health, io
from pipeline.analysis import (
    CRITERIA,
    InvariantError,
    check_monotone,
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
from pipeline.dying_answers import answers, headlines
from pipeline.functional import functional_split
from pipeline.graph import STATES, analyze
from pipeline.imp import LEVELS_COLUMNS, check_networks, check_written, level_path, load_level
from pipeline.model import Layout, layers_from_state
from pipeline.paths import RunPaths
from pipeline.stages import StageError, cli


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """Analyse every IMP level under root/models/imp (docs/science.md §5–6) → root/reports/analysis,
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
    check_written(rp.imp, params.prune.biases)  # each level file is the one the imp stage wrote
    imp_levels = io.read_csv(rp.imp_levels_csv, required=LEVELS_COLUMNS)

    frames: dict[str, list[pd.DataFrame]] = {}
    states, masks, used = [], [], []
    tracker = None
    for i, path in enumerate(paths):
        state = load_level(path)
        layout = Layout(layers_from_state(state))
        prunable = layout.prunable(params.prune.biases)
        seeds = state["seeds"].tolist()
        if tracker is None:  # what dies during IMP (docs/science.md §8)
            tracker = dying.Tracker(run_info(params, rp, layout, prunable, seeds,
                                             len(arrays["train"]["x"]), test_x))
        for prefix in ("", "random."):
            if f"{prefix}layers.0.weight_mask" not in state:
                continue
            mask = layout.from_state(state, prefix, masks=True)
            theta = layout.from_state(state, prefix)
            res = analyze(layout, mask, theta, tasks)
            dist = (split_distance(layout, res.state, theta, tasks, params.train.workers)
                    if res.applicable else None)
            try:
                dead = tracker.level(i, prefix, state, mask, theta, res,
                                     dist.cut_w if dist is not None else None)
            except dying.FoldError as exc:
                raise StageError(f"fold check failed in models/imp: {exc}") from None
            if prefix:  # the random-mask null model: structural split statistics only
                tables = level_frames(layout, res, mask, theta, prunable, tasks, seeds, i,
                                      headline=headline, distance=dist, frozen=frozen)
                frames.setdefault("random", []).append(tables["levels"].assign(**dead))
                continue
            func = (functional_split(layout, mask, theta, res.cross, dist.cut_w, tasks, test_x,
                                     test_y, params.analysis.functional_tolerance, res.live)
                    if res.applicable else None)
            tables = level_frames(layout, res, mask, theta, prunable, tasks, seeds, i,
                                  functional=func, headline=headline, distance=dist,
                                  frozen=frozen)
            tables["levels"] = tables["levels"].assign(**dead)
            used.append(res.input_used.numpy())
            for name, frame in tables.items():
                frames.setdefault(name, []).append(frame)
            states.append(res.state)
            masks.append(mask)
    try:
        check_monotone(states, masks)
    except InvariantError as exc:
        raise StageError(f"invariant violated in models/imp: {exc}") from None

    tables = {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}
    seeds_table = per_seed(tables["levels"], imp_levels, tasks,
                           params.analysis.degradation_threshold)
    life = lifetimes(states)
    dead_tables, without_bias = tracker.tables()
    random = tables.get("random")
    dead = answers(dead_tables, tables["levels"], random, seeds_table, imp_levels, tasks, seeds,
                   tracker.run.biases_prunable, tracker.deaths.measured, params.prune.method,
                   params.train.weight_decay, without_bias)
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
        io.write_csv(out / "events.csv", dying.comatose_events(dead_tables["episodes"]))
        io.write_csv(out / "episodes.csv", dead_tables["episodes"])
        io.write_csv(out / "bias_survival.csv", dead_tables["bias_survival"])
        dying.write_csv_gz(out / "frozen_deaths.csv.gz", dead_tables["frozen_deaths"])
        io.write_json(out / "dying.json", dead)
        np.savez_compressed(out / "coverage.npz", used=np.stack(used), seeds=np.array(seeds),
                            levels=np.arange(len(used)),
                            task=np.array([j for j, t in enumerate(tasks) for _ in t.inputs]),
                            task_names=np.array([t.name for t in tasks]))
    io.write_csv(rp.plots_levels_csv, plot_table(tables["levels"], imp_levels, tasks))
    metrics = summarize(seeds_table, tasks, params.analysis.degradation_threshold,
                        None if random is None else random_mask_splits(random), headline)
    metrics["functional_tolerance"] = params.analysis.functional_tolerance
    metrics["split_distance"] = distance_summary(tables["levels"], seeds_table, random)
    metrics["constant_inputs"] = {t.name: int(constant[t.inputs].sum()) for t in tasks}
    metrics["frozen_inputs"] = {t.name: int(frozen[t.inputs].sum()) for t in tasks}
    metrics["dying"] = headlines(dead)  # what dies during IMP; in full: analysis/dying.json
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


def run_info(params: config.Params, rp: RunPaths, layout: Layout, prunable: torch.Tensor,
             seeds: list[int], n_train: int, test_x: torch.Tensor) -> dying.RunInfo:
    """What pipeline.dying needs besides the level files: θ₀ and θ_rewind of the level files'
    seeds (models/init.pt), the method and the training settings that decide start values and
    decay-only steps."""
    init = io.read_torch(rp.init_pt, required=("seeds",))
    check_networks(rp.init_pt, init, layout, trained=False)
    held = init["seeds"].tolist()
    if any(s not in held for s in seeds):
        raise StageError("models/init.pt was made for other model.seeds than models/imp; "
                         "run dvc repro")
    rows = torch.tensor([held.index(s) for s in seeds], dtype=torch.long)
    theta0 = layout.from_state(init)[rows]
    rewind = (layout.from_state(init, "rewind.")[rows] if params.prune.rewind > 0
              and "rewind.layers.0.weight" in init else theta0)
    t = params.train
    return dying.RunInfo(layout, prunable, theta0, rewind, params.prune.method,
                         dying.train_config(t.optimizer, t.lr, t.momentum, t.weight_decay,
                                            t.batch_size, t.restore_best),
                         n_train, test_x, seeds)


def add_learned(metrics: dict, rp: RunPaths) -> None:
    """metrics.json's `learned` (reports/learned.json, stage `learned`: each task against the
    task trained alone) and `degradation.unlearned_reference`: the tasks not learned, whose
    degradation is measured from a dense accuracy that is not a learned reference."""

    if not rp.learned_json.exists():  # runs made before the stage existed
        return
    metrics["learned"] = io.read_json(rp.learned_json, required=("checked", "not_learned"))
    metrics["degradation"]["unlearned_reference"] = metrics["learned"]["not_learned"]


def main() -> list[Path]:
    return run(config.load())


if __name__ == "__main__":
    cli(main)
