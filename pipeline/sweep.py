"""Run a study's configurations on a Dask cluster, then aggregate them exactly as locally.

    python -m pipeline.sweep --scheduler local --workers 2            # a LocalCluster
    python -m pipeline.sweep --scheduler tcp://host:8786 --preset studies/size.yaml

Each configuration is one Dask task: the worker runs the ordinary stages for it in a temporary
folder (pipeline.stages.study_run.run_configuration) and returns its result files as bytes, so workers need
the package installed but no shared file system. The client writes them to
reports/study/runs/<configuration>/ and runs the aggregate stage's code on them. Parallelism comes
from the Dask workers, so every configuration runs with train.workers = 1 (results do not depend
on it). With `--shards N` each configuration's seeds are split into N tasks as well (a seed's
result does not depend on which seeds share its run), and the client merges their files into
the unsharded ones, byte for byte (merge_shards): the way to spread a study of few, big
configurations over many workers. Needs the `dask` extra: pip install -e ".[dask]".
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
import time
from pathlib import Path

from pipeline import config
from pipeline.pool import merge_shards
from pipeline.pool import write as write_result_folder


def shard_seeds(seeds: list[int], shards: int) -> list[list[int]]:
    """The seeds in at most `shards` contiguous groups of near-equal size (none empty)."""
    shards = max(1, min(shards, len(seeds)))
    size, extra = divmod(len(seeds), shards)
    out, start = [], 0
    for i in range(shards):
        stop = start + size + (i < extra)
        out.append(list(seeds[start:stop]))
        start = stop
    return out


def sweep(raw: dict, client, runs: Path, log=print, shards: int = 1) -> dict[str, float]:
    """Run every configuration of raw's study on the client's cluster; seconds per configuration
    (summed over its shards). With shards > 1 every configuration's model.seeds are split into
    that many groups, each its own Dask task; a configuration's files are merged (merge_shards)
    once all its shards are back, identical to an unsharded run's."""
    from distributed import as_completed

    from pipeline.stages.study_run import run_remote

    params = config.parse(raw, study=True)
    raw = copy.deepcopy(raw)
    raw.setdefault("train", {})["workers"] = 1
    combos = config.configurations(params.study)
    seeds = list(params.model.seeds)
    groups = shard_seeds(seeds, shards)
    futures, pending = {}, {}
    for i, combo in enumerate(combos):
        name = config.configuration_name(combo)
        pending[name] = [None] * len(groups)
        for j, group in enumerate(groups):
            part = copy.deepcopy(raw)
            part.setdefault("model", {})["seeds"] = group
            plot = part.setdefault("plot", {})  # null, or a seed of the run (the plot stage
            if plot.get("draw_seed") not in (None, *group):  # does not run on workers)
                plot["draw_seed"] = group[0]
            key = f"ticketsplit-{i}-{name}" + (f"-shard{j}" if len(groups) > 1 else "")
            futures[client.submit(run_remote, part, combo, key=key, pure=False)] = (name, j)
    seconds: dict[str, float] = {}
    for future in as_completed(futures):
        name, j = futures[future]
        files, took = future.result()
        pending[name][j] = files
        seconds[name] = seconds.get(name, 0.0) + took
        if any(p is None for p in pending[name]):
            continue
        parts = pending.pop(name)
        files = parts[0] if len(parts) == 1 else merge_shards(parts, seeds)
        write_result_folder(runs / name, files)
        done = len(combos) - len(pending)
        log(f"sweep: {name} done in {seconds[name]:.1f}s ({done}/{len(combos)})")
    return seconds


CONNECT_SECONDS = 30  # how long a scheduler address may take to answer
SCHEDULER = re.compile(r"(tcp|tls)://[^\s:/]+:(\d{1,5})")


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line, naming the argument and what is allowed (None: fine).
    Checked before any work: a LocalCluster of 0 workers waits for ever, and a mistyped address
    fails deep inside Dask with a traceback."""
    match = SCHEDULER.fullmatch(args.scheduler)
    if args.scheduler != "local" and not (match and 0 < int(match.group(2)) < 65536):
        return (f"--scheduler: {args.scheduler!r} is not allowed; allowed: local, or a Dask "
                "scheduler address tcp://host:port (tls://host:port)")
    for name in ("workers", "shards"):
        value = getattr(args, name)
        if value < 1:
            return f"--{name}: {value} is not allowed; allowed: an integer >= 1"
    return None


def main(argv: list[str]) -> int:
    from pipeline import cli

    parser = cli.parser("python -m pipeline.sweep", __doc__.split("\n\n")[0])
    parser.add_argument("--scheduler", required=True,
                        help="'local' for a LocalCluster, or a scheduler address tcp://host:port")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--preset", help="a studies/*.yaml preset applied to params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--shards", type=int, default=1,
                        help="split every configuration's seeds into this many Dask tasks "
                             "(results identical to 1; for big nets with few configurations)")
    args = parser.parse_args(argv)
    problem = argument_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
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
            raw = config.read_yaml(args.params)
        params = config.parse(raw, study=True)
    except (config.ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    if args.scheduler == "local":
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            cluster, client = None, Client(args.scheduler, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as exc:  # nothing listening there, or not a scheduler
            print(f"error: --scheduler {args.scheduler}: no Dask scheduler answered ({exc})",
                  file=sys.stderr)
            return 2
    try:
        seconds = sweep(raw, client, RUNS, shards=args.shards)
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
