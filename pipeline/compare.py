"""Experiments compared the way the science asks (docs/science.md §7): per experiment the split
fractions as k/n seeds with 95% Wilson intervals, at some level and before any task degraded,
for every criterion; the split distance d at the last level; the dense accuracy per task; and
against the first experiment named, Fisher's exact test per fraction and Mann–Whitney on the
per-seed d.

    python -m pipeline.compare main wide narrow

Names as `dvc exp show` lists them (experiments, branches, `workspace`, `HEAD`, or a commit's
hash prefix). What it reads: `dvc exp show --json` (the experiments, their params and state),
each one's reports/metrics.json and dvc.lock from git (`git show REV:…`; the lock says whether
the metrics were made from its params) and the per-seed d of reports/analysis/seeds.csv from
the DVC cache (dvc.api). Plain text, at most 100 columns, in the terminal's encoding (escapes
for what it lacks).
"""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

METRICS = "reports/metrics.json"
SEEDS = "reports/analysis/seeds.csv"  # per-seed split_distance_last (a DVC-cached output)
LOCK = "dvc.lock"
WIDTH = 100
CRITERIA = ("complete", "effective", "output", "functional")  # pipeline.analysis.CRITERIA


class CompareError(Exception):
    """Why nothing can be compared: one line, exit code 2."""


@dataclass
class Experiment:
    """One row of `dvc exp show`: its name, its commit ("workspace" for the working tree), the
    name of its baseline commit (None for a baseline), params.yaml and reports/metrics.json."""

    name: str
    rev: str
    baseline: str | None
    params: dict = field(default_factory=dict)
    metrics: dict | None = None
    problem: str | None = None  # a failed or queued experiment: no results of its own

    @property
    def short(self) -> str:
        return self.rev if self.rev == "workspace" else self.rev[:7]

    @property
    def called(self) -> str:
        """Its name, with its commit where that says more: 'wide (eb88cd8)'."""
        return self.name if self.short == self.name else f"{self.name} ({self.short})"


# ---- what dvc exp show lists ------------------------------------------------------------------
def exp_show(all_commits: bool = False) -> list[dict]:
    """`dvc exp show --json` (with -A: the experiments of every commit), parsed."""
    from pipeline.cli import dvc_command

    command = [*dvc_command(), "exp", "show", "--json", *(["-A"] if all_commits else [])]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, encoding="utf-8")
    except OSError as exc:
        raise CompareError(f"cannot run dvc: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise CompareError(f"dvc exp show failed: {lines[-1] if lines else proc.returncode}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise CompareError("dvc exp show --json printed no JSON") from None


def _data(entry: dict) -> dict:
    data = entry.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    metrics = ((data.get("metrics") or {}).get(METRICS) or {}).get("data")
    return {"params": params, "metrics": metrics or None}


def listed(show: list[dict], head: str | None) -> list[tuple[list[str], Experiment]]:
    """(the names it answers to, experiment) of every row of `dvc exp show --json`: the
    workspace, each baseline commit (its branch name, HEAD where it is HEAD, its hash) and each
    experiment of it (its name, its hash)."""
    out = []
    for entry in show:
        rev, name = entry["rev"], entry.get("name")
        if rev == "workspace":
            out.append((["workspace"], Experiment("workspace", rev, None, **_data(entry))))
            continue
        keys = [k for k in (name, "HEAD" if rev == head else None) if k] + [rev]
        out.append((keys, Experiment(name or rev[:7], rev, None, **_data(entry))))
        for group in entry.get("experiments") or []:
            state = ((group.get("executor") or {}).get("state") or "").lower()
            for run in group.get("revs") or []:
                exp = Experiment(run.get("name") or run["rev"][:7], run["rev"], name or rev[:7],
                                 **_data(run))
                if run.get("error") or state in ("failed", "queued", "running"):
                    exp.problem = (f"{exp.name} has no results of its own (dvc exp show: "
                                   f"{state or run['error'].get('msg', 'error')}); `dvc queue "
                                   f"logs {exp.name}` says why")
                out.append(([k for k in (run.get("name"),) if k] + [run["rev"]], exp))
    return out


def resolve(names: list[str], rows: list[tuple[list[str], Experiment]],
            all_commits: bool) -> list[Experiment]:
    """The experiments the names mean, in the order given. An unknown or ambiguous name raises
    CompareError naming it and listing what is available."""
    out = []
    for name in names:
        found = [exp for keys, exp in rows
                 if name in keys or (len(name) >= 7 and any(k.startswith(name) for k in keys
                                                            if len(k) == 40))]
        found = list({id(e): e for e in found}.values())
        if not found:
            available = []
            for keys, _ in rows:
                available += [k for k in keys if len(k) != 40 and k not in available]
            more = "" if all_commits else "; -A lists the experiments of every commit"
            raise CompareError(f"unknown experiment {name!r}; available: "
                               f"{', '.join(available)} (as dvc exp show lists them{more})")
        if len(found) > 1:
            raise CompareError(f"{name!r} names {len(found)} experiments ("
                               + ", ".join(f"{e.name} {e.short}" for e in found)
                               + "); give a commit hash prefix instead")
        out.append(dataclasses.replace(found[0], name=name))  # shown as the user named it
    return out


# ---- were the metrics made from these params? -------------------------------------------------
def git(*args: str) -> str | None:
    """git's output (stripped of the last newline), or None where git fails or is missing."""
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, encoding="utf-8")
    except OSError:
        return None
    return proc.stdout.removesuffix("\n") if proc.returncode == 0 else None


def read_at(rev: str, path: str) -> str | None:
    """A git-tracked file as committed in rev (the working file for "workspace"); None if absent."""
    if rev == "workspace":
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError:
            return None
    return git("show", f"{rev}:{path}")


def upstream_stages(lock: dict, output: str) -> list[str]:
    """Names of the dvc.lock stages whose outputs `output` was made from: the stage writing
    it and, through their deps, every stage before it."""
    stages = lock.get("stages") or {}

    def outs(stage: dict) -> list[str]:
        return [o["path"] for o in stage.get("outs") or []]

    def writer(path: str) -> str | None:
        for name, stage in stages.items():
            if any(path == o or path.startswith(o + "/") or o.startswith(path + "/")
                   for o in outs(stage)):
                return name
        return None

    todo, seen = [writer(output)], []
    while todo:
        name = todo.pop()
        if name is None or name in seen:
            continue
        seen.append(name)
        todo += [writer(d["path"]) for d in stages[name].get("deps") or []]
    return seen


def stale_keys(exp: Experiment) -> list[str]:
    """params keys where the params that dvc.lock records for the stages behind
    reports/metrics.json differ from the experiment's params.yaml: its metrics were made from
    other params (an experiment of the study pipeline keeps the baseline's main-pipeline
    metrics; a refused `-S` leaves the workspace's params.yaml edited)."""
    from ruamel.yaml import YAML

    text = read_at(exp.rev, LOCK)
    if text is None:
        return []
    lock = YAML(typ="safe").load(text) or {}  # YAML 1.2, as DVC writes it (`off` is a string)
    out = []
    for name in upstream_stages(lock, METRICS):
        recorded = ((lock["stages"][name].get("params") or {}).get("params.yaml") or {})
        for key, value in recorded.items():
            current = exp.params
            for part in key.split("."):
                current = current.get(part) if isinstance(current, dict) else None
            out += [k for k in differing(key, value, current) if k not in out]
    return out


def differing(key: str, recorded, current) -> list[str]:
    """The leaf keys under `key` whose values differ (`model` → `model.seeds`)."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        return [k for sub in sorted(set(recorded) | set(current))
                for k in differing(f"{key}.{sub}", recorded.get(sub), current.get(sub))]
    return [] if recorded == current else [key]


def read_metrics(exp: Experiment) -> None:
    """The experiment's reports/metrics.json in full, from git (it is kept in git): `dvc exp
    show --json` leaves out its lists and strings (the tasks not learned, d per level)."""
    text = read_at(exp.rev, METRICS)
    try:
        if text is not None:
            exp.metrics = json.loads(text)
    except json.JSONDecodeError:
        raise CompareError(f"{exp.called}: {METRICS} is not valid JSON") from None


def check(exp: Experiment) -> None:
    """Raise CompareError when the experiment has no metrics of its own to compare."""
    if exp.problem:
        raise CompareError(exp.problem)
    read_metrics(exp)
    if not exp.metrics or "seeds" not in exp.metrics:
        raise CompareError(f"{exp.called} has no {METRICS}: the main pipeline has "
                           "not run there (`dvc exp show` lists none)")
    stale = stale_keys(exp)
    if stale:
        raise CompareError(
            f"{exp.called}: its {METRICS} was made from other params than its "
            f"params.yaml ({', '.join(stale[:3])}{', …' if len(stale) > 3 else ''}; dvc.lock "
            "says so): an experiment of the study pipeline (compare its reports/study/"
            "summary.csv) or params edited since the run (`dvc status`)")


# ---- what each experiment says ------------------------------------------------------------------
def fraction(metrics: dict, criterion: str | None, before: bool) -> tuple[int, int] | None:
    """(k, n): seeds that split under the criterion (None: the headline criterion) at some
    level, or before any task degraded; None where not applicable (one task) or not recorded
    (a metrics.json made before the criterion existed)."""
    if not metrics.get("split_applicable", True):
        return None
    section = metrics.get("split" if criterion is None else f"split_{criterion}")
    key = "seeds_split_before_degradation" if before else "seeds_split"
    if not isinstance(section, dict) or section.get(key) is None:
        return None
    return int(section[key]), int(metrics["seeds"])


def last_distance(metrics: dict) -> tuple[dict | None, float | None, bool]:
    """(d's median / q25 / q75 at the last level, the median parameters there, exact?)."""
    sd = metrics.get("split_distance") or {}
    per_level = sd.get("per_level") or []
    d = (sd.get("last_level") or {}).get("d")
    params = per_level[-1].get("params") if per_level else None
    return d, params, bool(sd.get("exact", True))


def seed_distances(exp: Experiment) -> tuple[list[float] | None, str]:
    """Each seed's d at the last level (reports/analysis/seeds.csv, split_distance_last), or
    (None, why not): the file is a DVC-cached output, absent from a clone that has not run
    the experiment."""
    import io

    import pandas as pd

    try:
        if exp.rev == "workspace":
            text = Path(SEEDS).read_text(encoding="utf-8")
        else:
            import dvc.api

            text = dvc.api.read(SEEDS, rev=exp.rev, repo=".", encoding="utf-8")
        column = pd.read_csv(io.StringIO(text))["split_distance_last"]
    except Exception as exc:  # noqa: BLE001 (DVC's errors have no common base; any means absent)
        return None, (f"{SEEDS} of {exp.name} is not in this clone's DVC cache "
                      f"({type(exc).__name__})")
    values = [float(v) for v in column if not math.isnan(float(v))]
    if len(values) < len(column):
        return None, f"{exp.name} has no d for some seeds (one task?)"
    return values, ""


def fisher(a: tuple[int, int] | None, b: tuple[int, int] | None) -> float | None:
    """Two-sided p of Fisher's exact test of k1/n1 against k2/n2 (pipeline.analysis.fisher_p)."""
    from pipeline.analysis import fisher_p

    if a is None or b is None:
        return None
    p = fisher_p(a[0], a[1], b[0], b[1])
    return None if math.isnan(p) else p


def mann_whitney(a: list[float] | None, b: list[float] | None) -> float | None:
    """Two-sided p of the Mann–Whitney U test (pipeline.dying_answers.mann_whitney)."""
    from pipeline.dying_answers import mann_whitney as test

    if not a or not b:
        return None
    return test(a, b)


# ---- text --------------------------------------------------------------------------------------
def k_of_n(kn: tuple[int, int] | None) -> str:
    """'3/4 (0.30–0.95)': k/n with its 95% Wilson interval; 'n/a' where not applicable."""
    from pipeline.analysis import wilson

    if kn is None:
        return "n/a"
    k, n = kn
    lo, hi = wilson(k, n)
    return f"{k}/{n} ({lo:.2f}–{hi:.2f})"


def p_cell(p: float | None) -> str:
    from pipeline.plots import p_text

    return "–" if p is None else f"p = {p_text(p)}"


def table(header: list[str], rows: list[list[str]], width: int = WIDTH) -> list[str]:
    """Left-aligned columns two spaces apart; columns that do not fit in `width` go to a
    further block that repeats the first column."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    blocks, block, used = [], [], widths[0]
    for i in range(1, len(header)):
        if block and used + 2 + widths[i] > width:
            blocks.append(block)
            block, used = [], widths[0]
        block.append(i)
        used += 2 + widths[i]
    blocks.append(block)
    lines = []
    for j, block in enumerate(blocks):
        lines += [""] if j else []
        lines += ["  ".join(r[i].ljust(widths[i]) for i in [0, *block]).rstrip()
                  for r in [header, *rows]]
    return lines


def wrapped(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_on_hyphens=False)


def flat(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_params(first: Experiment, exp: Experiment) -> str:
    """'model.hidden [16, 16] → [24, 24], …' (the study section left out), or 'none'."""
    a, b = flat(first.params), flat(exp.params)
    keys = [k for k in sorted(set(a) | set(b)) if not k.startswith("study.")
            and a.get(k) != b.get(k)]
    return ", ".join(f"{k} {json.dumps(a.get(k))} → {json.dumps(b.get(k))}" for k in keys) or "none"


def report(exps: list[Experiment], distances: dict[str, tuple[list[float] | None, str]]
           ) -> list[str]:
    """The comparison as lines of at most WIDTH characters (the first experiment is the one
    the others are tested against)."""
    out = header(exps)
    for before in (False, True):
        out += ["", *fraction_table(exps, before)]
    out += ["", *distance_table(exps, distances)]
    return out + ["", *accuracy_table(exps)]


def header(exps: list[Experiment]) -> list[str]:
    """Which commit each name is, what each changed against the first, and a warning for every
    experiment whose nets did not learn every task."""
    first = exps[0]
    out = wrapped("Experiments: " + "; ".join(
        f"{e.name} = {e.short}" + (f" (experiment of {e.baseline})" if e.baseline else "")
        for e in exps) + ".")
    for e in exps[1:]:
        out += wrapped(f"{e.name} against {first.name}: {changed_params(first, e)}.", "  ")
    for e in exps:
        learned = e.metrics.get("learned") or {}
        if learned.get("checked") and not learned.get("all_learned", True):
            out += wrapped(f"Warning: {e.name} did not learn every task ("
                           + ", ".join(learned.get("not_learned") or []) + "): its split "
                           "numbers are about nets that do not solve their tasks.")
    return out


def fraction_table(exps: list[Experiment], before: bool) -> list[str]:
    """k/n with Wilson intervals per criterion, and Fisher's p of each against the first."""
    first = exps[0]
    headline = "/".join(sorted({e.metrics.get("split_criterion", "complete") for e in exps}))
    thresholds = "/".join(sorted({f"{(e.metrics.get('degradation') or {}).get('threshold', 0.05):g}"
                                  for e in exps}))
    title = (f"Split before any task degraded (> {thresholds} below dense)" if before
             else "Split at some level")
    rows = []
    for e in exps:
        rows.append([e.name, *(k_of_n(fraction(e.metrics, c, before)) for c in CRITERIA)])
        if e is not first:
            rows.append([f"  p vs {first.name}", *(p_cell(fisher(
                fraction(first.metrics, c, before), fraction(e.metrics, c, before)))
                for c in CRITERIA)])
    return [*wrapped(f"{title}: k/n seeds (95% Wilson interval); p: Fisher's exact test against "
                     f"{first.name}, two-sided; headline criterion {headline}"),
            *table(["experiment", *CRITERIA], rows)]


def distance_table(exps: list[Experiment], distances: dict) -> list[str]:
    """d at the last level per experiment, Mann–Whitney on the per-seed d against the first
    ("not testable: …" where the per-seed values are not at hand)."""
    first = exps[0]
    rows, notes = [], []
    for e in exps:
        d, params, exact = last_distance(e.metrics)
        d_text = ("n/a" if d is None else
                  f"{'≤ ' if not exact else ''}{d['median']:g} ({d['q25']:g}–{d['q75']:g})")
        test = ""
        if e is not first:
            a, b = distances[first.rev], distances[e.rev]
            test = p_cell(mann_whitney(a[0], b[0])) if a[0] and b[0] else "not testable"
            notes += [f"not testable: {why}" for _, why in (a, b) if why]
        rows.append([e.name, "–" if params is None else f"{params:g}", d_text, test])
    return [*wrapped("Split distance d at the last level (weights; median, q25–q75; ≤: an "
                     "upper bound, T > 2) and Mann–Whitney U on the per-seed d against "
                     f"{first.name}, two-sided"),
            *table(["experiment", "params at last level", "d", f"d vs {first.name}"], rows),
            *(line for note in dict.fromkeys(notes) for line in wrapped(note, "  "))]


def accuracy_table(exps: list[Experiment]) -> list[str]:
    """The dense nets' test accuracy per task (mean over seeds); '–' for a task not in a run."""
    accuracy = {e.name: e.metrics.get("dense_test_acc") or {} for e in exps}
    tasks = list(dict.fromkeys(t for e in exps for t in accuracy[e.name]))
    rows = [[e.name, *(f"{accuracy[e.name][t]:.3f}" if t in accuracy[e.name] else "–"
                       for t in tasks)] for e in exps]
    return ["Dense test accuracy per task (mean over seeds)", *table(["experiment", *tasks], rows)]


def main(argv: list[str]) -> int:
    from pipeline import cli

    parser = cli.parser("python -m pipeline.compare",
                        "Compare experiments (dvc exp show's names; workspace, HEAD, a branch "
                        "or a commit hash prefix too): split fractions with Wilson intervals, "
                        "Fisher's exact test and Mann–Whitney on d against the first one named.")
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT")
    parser.add_argument("-A", "--all-commits", action="store_true",
                        help="look among the experiments of every commit (dvc exp show -A)")
    args = parser.parse_args(argv)
    try:
        exps = resolve(args.experiments, listed(exp_show(args.all_commits), git("rev-parse", "HEAD")),
                       args.all_commits)
        for exp in exps:
            check(exp)
    except CompareError as exc:
        cli.stop(str(exc))
    distances = {e.rev: seed_distances(e) for e in exps}
    text = "\n".join(report(exps, distances)) + "\n"
    # any locale: the terminal's encoding, escapes (\\u2192) for what it lacks, as every tool
    # of the project prints (io.safe_streams); DVC wraps sys.stdout, hence __stdout__
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    sys.__stdout__.buffer.write(text.encode(encoding, errors="backslashreplace"))
    sys.__stdout__.flush()
    return 0


if __name__ == "__main__":
    from pipeline.cli import pipe_safe

    sys.exit(pipe_safe(main, sys.argv[1:]))  # `… | head`: the reader has what it wanted
