"""Stage `generate`: params `data` → data/{tasks.json, train.npz, val.npz, test.npz}."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import config, io
from pipeline.data import DataError, build
from pipeline.paths import RunPaths
from pipeline.stages import StageError, cli


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """Draw every task's samples and write them under root/data (docs/science.md §2).

    Raises StageError (one line naming the file) for unreadable or damaged data files, before
    anything is written."""
    paths = RunPaths(root)
    try:
        arrays, meta = build(params.data)
    except DataError as exc:
        raise StageError(str(exc)) from None
    with io.atomic_dir(paths.data) as out:
        for split, a in arrays.items():
            np.savez(out / f"{split}.npz", x=a["x"], y=a["y"])
        io.write_json(out / "tasks.json", meta)
    sizes = ", ".join(f"{k} {v}" for k, v in meta["sizes"].items())
    names = ", ".join(t["name"] for t in meta["tasks"])
    print(f"generate: {len(meta['tasks'])} tasks ({names}); {meta['n_inputs']} inputs, "
          f"{meta['n_outputs']} outputs; {sizes} samples")
    return [paths.data]


def main() -> list[Path]:
    return run(config.load())


if __name__ == "__main__":
    cli(main)
