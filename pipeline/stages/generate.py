"""Stage `generate`: params `data` → data/{tasks.json, train.npz, val.npz, test.npz}."""
from __future__ import annotations

import numpy as np

from pipeline import config, io
from pipeline.data import DataError, build
from pipeline.stages import StageError, run


def main() -> None:
    params = config.load()
    try:
        arrays, meta = build(params.data)
    except DataError as exc:
        raise StageError(str(exc)) from None
    with io.atomic_dir("data") as out:
        for split, a in arrays.items():
            np.savez(out / f"{split}.npz", x=a["x"], y=a["y"])
        io.write_json(out / "tasks.json", meta)
    sizes = ", ".join(f"{k} {v}" for k, v in meta["sizes"].items())
    names = ", ".join(t["name"] for t in meta["tasks"])
    print(f"generate: {len(meta['tasks'])} tasks ({names}); {meta['n_inputs']} inputs, "
          f"{meta['n_outputs']} outputs; {sizes} samples")


if __name__ == "__main__":
    run(main)
