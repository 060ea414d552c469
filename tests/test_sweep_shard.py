"""`python -m pipeline.sweep --shards N`: one configuration's seeds spread over Dask workers give
byte for byte the files of the unsharded sweep (the dying answers, recomputed from the merged
files, included; without Dask: tests/test_study_dying.py)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline.sweep import main, merge_shards, shard_seeds
from tests.conftest import tiny_params


def test_shard_seeds_splits_in_order_without_empty_groups():
    assert shard_seeds([5, 6, 7, 8], 3) == [[5, 6], [7], [8]]
    assert shard_seeds([5, 6], 4) == [[5], [6]]
    assert shard_seeds([5, 6, 7], 1) == [[5, 6, 7]]


def test_merge_restores_the_unsharded_row_order():
    by_level = b"seed,level,x\n3,0,a\n1,0,b\n3,1,c\n1,1,d\n"  # level-major, seeds [3, 1, 2]
    part2 = b"seed,level,x\n2,0,e\n2,1,f\n"
    merged = merge_shards([{"t.csv": by_level}, {"t.csv": part2}], [3, 1, 2])
    assert merged["t.csv"] == b"seed,level,x\n3,0,a\n1,0,b\n2,0,e\n3,1,c\n1,1,d\n2,1,f\n"
    by_seed = {"s.csv": b"seed,y\n3,1.5\n1,2\n"}
    assert merge_shards([by_seed, {"s.csv": b"seed,y\n2,\n"}], [3, 1, 2])["s.csv"] == \
        b"seed,y\n3,1.5\n1,2\n2,\n"
    with pytest.raises(ValueError, match="neither"):
        merge_shards([{"t.csv": b"seed,level\n1,0\n3,0\n"}], [3, 1])
    with pytest.raises(ValueError, match="more than their seeds"):
        merge_shards([{"c.json": b'{"a": 1, "seeds": [1]}'}, {"c.json": b'{"a": 2, "seeds": [2]}'}],
                     [1, 2])


def test_bad_shard_count_is_one_line_error(capsys):
    assert main(["--scheduler", "local", "--shards", "0"]) == 2
    assert capsys.readouterr().err.strip() == \
        "error: --shards: 0 is not allowed; allowed: an integer >= 1"


def test_sharded_sweep_equals_unsharded_byte_for_byte(tmp_path):
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    from pipeline.sweep import sweep

    raw = tiny_params(**{"model.seeds": [0, 1, 2, 3, 4]})
    raw["prune"].update(reinit_control=True, random_mask_control=True)
    # a later axis at a value other than its default (bias_init): named, run and merged alike
    raw["study"] = {"extensions": [0], "iterations": [3], "tasks": ["moons+circles"],
                    "hidden": ["6x6"], "init": ["torch_default"], "noise": [0.1],
                    "bias_init": ["zero"]}
    runs = {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        for shards in (1, 3):
            runs[shards] = tmp_path / f"runs{shards}"
            seconds = sweep(raw, client, runs[shards], log=lambda *_: None, shards=shards)
            assert len(seconds) == 1
    (folder,) = sorted(runs[1].iterdir())
    assert folder.name == "ext0-it3-moons+circles-6x6-torch_default-noise0.1-biaszero"
    assert json.loads((folder / "config.json").read_text())["params"]["model"]["bias_init"] == \
        "zero"
    assert set(pd.read_csv(folder / "levels.csv")["bias_init"]) == {"zero"}
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["accuracy.csv", "bias_survival.csv", "config.json", "controls.csv",
                     "dying.json", "episodes.csv", "frozen_deaths_levels.csv", "levels.csv",
                     "random_levels.csv", "seeds.csv"]
    assert len((folder / "levels.csv").read_text().splitlines()) == 1 + 5 * 4  # 5 seeds × 4 levels
    for name in files:
        assert (runs[3] / folder.name / name).read_bytes() == (folder / name).read_bytes(), name
