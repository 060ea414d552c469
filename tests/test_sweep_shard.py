"""`python -m pipeline.sweep --shards N`: one configuration's seeds spread over Dask workers give
byte for byte the files of the unsharded sweep (the dying answers, recomputed from the merged
files, included; without Dask: tests/test_study_dying.py)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline.pool import merge_shards
from pipeline.sweep import main, shard_seeds
from tests.conftest import tiny_params


def test_shard_seeds_splits_in_order_without_empty_groups():
    assert shard_seeds([5, 6, 7, 8], 3) == [[5, 6], [7], [8]]
    assert shard_seeds([5, 6], 4) == [[5], [6]]
    assert shard_seeds([5, 6, 7], 1) == [[5, 6, 7]]


def test_merge_restores_the_unsharded_row_order():
    """levels.csv is written by level, then seed; the other files by seed, then level
    (pool.ROW_ORDER): the merge restores that order for any shards, those of one seed too
    (their rows are in both orders, so the order cannot be read off them)."""
    by_level = b"seed,level,x\n3,0,a\n1,0,b\n3,1,c\n1,1,d\n"  # seeds [3, 1, 2]
    part2 = b"seed,level,x\n2,0,e\n2,1,f\n"
    whole = b"seed,level,x\n3,0,a\n1,0,b\n2,0,e\n3,1,c\n1,1,d\n2,1,f\n"
    merged = merge_shards([{"levels.csv": by_level}, {"levels.csv": part2}], [3, 1, 2])
    assert merged["levels.csv"] == whole
    one_seed = [b"seed,level,x\n3,0,a\n3,1,c\n", b"seed,level,x\n1,0,b\n1,1,d\n", part2]
    assert merge_shards([{"levels.csv": p} for p in one_seed], [3, 1, 2])["levels.csv"] == whole
    assert merge_shards([{"accuracy.csv": p} for p in one_seed], [3, 1, 2])["accuracy.csv"] == \
        b"seed,level,x\n3,0,a\n3,1,c\n1,0,b\n1,1,d\n2,0,e\n2,1,f\n"
    by_seed = {"s.csv": b"seed,y\n3,1.5\n1,2\n"}
    assert merge_shards([by_seed, {"s.csv": b"seed,y\n2,\n"}], [3, 1, 2])["s.csv"] == \
        b"seed,y\n3,1.5\n1,2\n2,\n"
    with pytest.raises(ValueError, match="rows not by seed"):
        merge_shards([{"accuracy.csv": b"seed,level\n1,0\n3,0\n"}], [3, 1])
    with pytest.raises(ValueError, match="rows not by level"):
        merge_shards([{"levels.csv": b"seed,level\n3,0\n3,1\n1,0\n"}], [3, 1])
    with pytest.raises(ValueError, match="more than their seeds"):
        merge_shards([{"c.json": b'{"a": 1, "seeds": [1]}'}, {"c.json": b'{"a": 2, "seeds": [2]}'}],
                     [1, 2])


SCHEDULER_ALLOWED = ("allowed: local, or a Dask scheduler address tcp://host:port "
                     "(tls://host:port)")


@pytest.mark.parametrize("argv, line", [
    (["--shards", "0"], "error: --shards: 0 is not allowed; allowed: an integer >= 1"),
    (["--shards", "-3"], "error: --shards: -3 is not allowed; allowed: an integer >= 1"),
    # a LocalCluster of no workers waited for ever, printing nothing
    (["--workers", "0"], "error: --workers: 0 is not allowed; allowed: an integer >= 1"),
    (["--workers", "-1"], "error: --workers: -1 is not allowed; allowed: an integer >= 1"),
], ids=["shards-0", "shards-negative", "workers-0", "workers-negative"])
def test_bad_counts_are_one_line_errors(argv, line, capsys):
    assert main(["--scheduler", "local", *argv]) == 2
    assert capsys.readouterr().err.strip() == line


@pytest.mark.parametrize("address", ["lcoal", "Local", "", "tcp://host", "tcp://:8786",
                                     "tcp://host:port", "tcp://host:0", "tcp://host:70000",
                                     "http://host:8786", "host:8786"])
def test_a_mistyped_scheduler_is_a_one_line_error(address, capsys):
    """Refused before Dask is started (a typo once ended in Dask's ValueError traceback)."""
    assert main(["--scheduler", address]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --scheduler: {address!r} is not allowed; {SCHEDULER_ALLOWED}"


def test_an_address_without_a_scheduler_is_a_one_line_error(capsys, monkeypatch):
    """A well-formed address where no scheduler listens: one line naming it, exit 2."""
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    import socket

    from pipeline import sweep

    monkeypatch.setattr(sweep, "CONNECT_SECONDS", 2)

    with socket.socket() as s:  # a free port, closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --scheduler tcp://127.0.0.1:{port}: "
                                               "no Dask scheduler answered")


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
    assert folder.name == "ext0-it3-moons+circles-6x6-torch_default-noise0.1-biaszero-n120"
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
