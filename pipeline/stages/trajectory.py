"""Stage `trajectory`: P_0 → P_T (and extended shape) → models/shape.json, reports/trajectory.csv."""
from __future__ import annotations

from pathlib import Path

from pipeline import config, io
from pipeline.paths import RunPaths
from pipeline.stages import StageError, cli


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """The pruning trajectory and the (extended) shape (docs/science.md §3) under root."""
    paths = RunPaths(root)
    try:
        meta = io.read_json(paths.tasks_json, required=("n_inputs", "n_outputs"))
    except FileNotFoundError:
        raise StageError(f"{paths.tasks_json} is missing; run the generate stage first "
                         "(dvc repro)") from None
    if [meta["n_inputs"], meta["n_outputs"]] != [params.n_inputs, params.n_outputs]:
        raise StageError(f"{paths.tasks_json} does not match data.tasks in params.yaml; "
                         "run the generate stage first (dvc repro)")
    tr = params.trajectory()
    lines = ["level,params,rate"] + [f"{lv},{n},{r:.6f}"
                                     for lv, n, r in zip(tr.levels, tr.params, tr.rates)]
    io.write_json(paths.shape_json, {"layers": tr.layers, "base_layers": tr.base_layers,
                                     "extensions": tr.extensions})
    io.write_text(paths.trajectory_csv, "\n".join(lines) + "\n")
    print(f"trajectory: shape {tr.layers} (base {tr.base_layers}), "
          f"{tr.params[0]} → {tr.params[-1]} prunable parameters in {len(tr.params) - 1} levels")
    return [paths.shape_json, paths.trajectory_csv]


def main() -> list[Path]:
    return run(config.load())


if __name__ == "__main__":
    cli(main)
