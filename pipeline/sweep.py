"""Run a study's configurations on a Dask cluster, then aggregate them exactly as locally.

    python -m pipeline.sweep --scheduler local --workers 2            # a LocalCluster
    python -m pipeline.sweep --scheduler tcp://host:8786 --preset studies/size.yaml

Each configuration is one Dask task: the worker runs the ordinary stages for it in a temporary
folder (pipeline.study.run_configuration) and returns its result files as bytes, so workers need
the package installed but no shared file system. The client writes them to
reports/study/runs/<configuration>/ and runs the aggregate stage's code on them. Parallelism comes
from the Dask workers, so every configuration runs with train.workers = 1 (results do not depend
on it). Needs the `dask` extra: pip install -e ".[dask]".
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import yaml

from pipeline import config, io


def sweep(raw: dict, client, runs: Path, log=print) -> dict[str, float]:
    """Run every configuration of raw's study on the client's cluster; seconds per configuration."""
    from distributed import as_completed

    from pipeline.study import run_remote

    params = config.parse(raw)
    raw = copy.deepcopy(raw)
    raw.setdefault("train", {})["workers"] = 1
    combos = config.configurations(params.study)
    futures = {client.submit(run_remote, raw, combo, key=f"ticketsplit-{i}-"
                             f"{config.configuration_name(combo)}", pure=False): combo
               for i, combo in enumerate(combos)}
    seconds = {}
    for future in as_completed(futures):
        combo = futures[future]
        files, took = future.result()
        name = config.configuration_name(combo)
        with io.atomic_dir(runs / name) as folder:
            for fname, data in files.items():
                (folder / fname).write_bytes(data)
        seconds[name] = took
        log(f"sweep: {name} done in {took:.1f}s ({len(seconds)}/{len(combos)})")
    return seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.sweep", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--scheduler", required=True,
                        help="'local' for a LocalCluster, or a scheduler address tcp://host:port")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--preset", help="a studies/*.yaml preset applied to params.yaml")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print("error: the sweep needs Dask: pip install -e '.[dask]'", file=sys.stderr)
        return 2
    from pipeline.stages import StageError
    from pipeline.stages.aggregate import RUNS, write_study
    from pipeline.study import apply_preset

    try:
        if args.preset:
            raw = apply_preset(Path(args.params), Path(args.preset))
        else:
            raw = yaml.safe_load(Path(args.params).read_text())
        params = config.parse(raw)
    except (config.ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    if args.scheduler == "local":
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        cluster, client = None, Client(args.scheduler)
    try:
        seconds = sweep(raw, client, RUNS)
        write_study(params)
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    total = time.perf_counter() - start
    print(f"sweep: {len(seconds)} configurations in {total:.1f}s "
          f"({sum(seconds.values()) / max(len(seconds), 1):.1f}s per configuration on a worker)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
