"""Benchmark: a study end to end, through DVC (one process per configuration, seeds split over
train.workers processes) and through the Dask sweep (configurations spread over Dask workers).

    python benchmarks/bench_study.py                          # the size study (a), both paths
    python benchmarks/bench_study.py --extensions 0 1 2 3     # a subset of its configurations
    python benchmarks/bench_study.py --preset studies/rate.yaml --only dvc

Each path runs in a fresh copy of the repository (tracked and untracked files, no outputs), so
nothing is cached. Prints seconds per configuration, the total, and the speed-up of the sweep
with 2 Dask workers over the DVC path; both must give identical summaries.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.study import apply_preset  # noqa: E402


def fresh_copy(dest: Path, raw: dict) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True, text=True, encoding="utf-8").stdout.split()
    for name in files:
        if name.startswith(("reports/", "tests/")) or not (ROOT / name).is_file():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    (dest / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@invalid"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env)
    return dest


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(cwd), "DVC_NO_ANALYTICS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8")
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return took, proc.stdout


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def keep(folder: str | None, repo: Path, path_name: str) -> None:
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        target = Path(folder) / f"summary-{path_name}.csv"
        target.write_bytes((repo / "reports/study/summary.csv").read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=str(ROOT / "studies/size.yaml"))
    parser.add_argument("--extensions", type=int, nargs="*", help="subset of study.extensions")
    parser.add_argument("--only", choices=["dvc", "dask"])
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--keep", metavar="DIR", help="copy each path's summary.csv there")
    args = parser.parse_args()
    raw = apply_preset(ROOT / "params.yaml", Path(args.preset))
    if args.extensions:
        raw["study"]["extensions"] = args.extensions
    n = 1
    for axis in ("extensions", "iterations", "tasks", "hidden", "init", "noise"):
        n *= len(raw["study"][axis])
    print(f"study {Path(args.preset).name}: {n} configurations × {len(raw['model']['seeds'])} "
          f"seeds; train.workers = {raw['train']['workers']}; {os.cpu_count()} CPUs")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "dvc"):
            repo = fresh_copy(Path(tmp) / "dvc", raw)
            took, out = run([sys.executable, "-m", "dvc", "repro", "studies/dvc.yaml"], repo)
            stages = re.findall(r"Running stage 'studies/dvc.yaml:run@([^']*)'", out)
            results["dvc"] = (took, digest(repo / "reports/study/summary.csv"))
            keep(args.keep, repo, "dvc")
            print(f"dvc repro studies/dvc.yaml: {took:.1f}s total, {took / len(stages):.1f}s per "
                  f"configuration ({len(stages)} run stages)")
        if args.only in (None, "dask"):
            repo = fresh_copy(Path(tmp) / "dask", raw)
            took, out = run([sys.executable, "-m", "pipeline.sweep", "--scheduler", "local",
                             "--workers", str(args.dask_workers)], repo)
            per = re.findall(r"sweep: (\S+) done in ([\d.]+)s", out)
            for name, sec in per:
                print(f"  {name}: {float(sec):.1f}s on a Dask worker")
            results["dask"] = (took, digest(repo / "reports/study/summary.csv"))
            keep(args.keep, repo, "dask")
            print(f"sweep, LocalCluster of {args.dask_workers} workers: {took:.1f}s total")
    if len(results) == 2:
        (t_dvc, h_dvc), (t_dask, h_dask) = results["dvc"], results["dask"]
        print(f"speed-up of the sweep over dvc repro: {t_dvc / t_dask:.2f}×; summaries "
              f"{'identical' if h_dvc == h_dask else 'DIFFER'} ({h_dvc} / {h_dask})")


if __name__ == "__main__":
    main()
