"""Stage `trajectory`: P_0 → P_T (and extended shape) → models/shape.json, reports/trajectory.csv."""
from __future__ import annotations

import json

from pipeline import config, io
from pipeline.stages import StageError, run


def main() -> None:
    params = config.load()
    try:
        meta = json.loads(open("data/tasks.json").read())
    except FileNotFoundError:
        raise StageError("data/tasks.json is missing; run the generate stage first "
                         "(dvc repro)") from None
    if [meta["n_inputs"], meta["n_outputs"]] != [params.n_inputs, params.n_outputs]:
        raise StageError("data/tasks.json does not match data.tasks in params.yaml; "
                         "run the generate stage first (dvc repro)")
    tr = params.trajectory()
    lines = ["level,params,rate"] + [f"{lv},{n},{r:.6f}"
                                     for lv, n, r in zip(tr.levels, tr.params, tr.rates)]
    io.write_json("models/shape.json", {"layers": tr.layers, "base_layers": tr.base_layers,
                                        "extensions": tr.extensions})
    io.write_text("reports/trajectory.csv", "\n".join(lines) + "\n")
    print(f"trajectory: shape {tr.layers} (base {tr.base_layers}), "
          f"{tr.params[0]} → {tr.params[-1]} prunable parameters in {len(tr.params) - 1} levels")


if __name__ == "__main__":
    run(main)
