"""`python -m pipeline.compare`: experiments compared as docs/science.md §7 asks — k/n with 95%
Wilson intervals, Fisher's exact test per criterion, Mann–Whitney on the per-seed split distance —
checked against references that share no code with it (a closed-form Wilson interval, Fisher's
test by enumerating every 2 × 2 table, scipy), on fixed inputs; which names it accepts; that it
refuses an experiment whose metrics are not its own; and, end to end, two real `dvc exp run`
experiments of a tiny run compared in one command."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from math import comb

import pandas as pd
import pytest
from conftest import ROOT
from scipy.stats import fisher_exact, mannwhitneyu

from pipeline import compare
from pipeline.compare import CompareError, Experiment
from pipeline.plots import p_text


# ---- references ----------------------------------------------------------------------------------
def wilson_closed_form(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def fisher_by_enumeration(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided: the probability, with the margins fixed, of every table no more likely than
    the one observed."""
    total, splits = n1 + n2, k1 + k2

    def prob(a: int) -> float:
        return comb(n1, a) * comb(n2, splits - a) / comb(total, splits)

    observed = prob(k1)
    return min(1.0, sum(prob(a) for a in range(max(0, splits - n2), min(n1, splits) + 1)
                        if prob(a) <= observed * (1 + 1e-7)))


def metrics(n: int, splits: dict[str, tuple[int, int]], acc: dict[str, float] | None = None,
            d=(2.0, 1.0, 3.0), exact: bool = True, applicable: bool = True) -> dict:
    """A reports/metrics.json as the analyze stage writes it (the keys compare reads):
    splits[criterion] = (k at some level, k before degradation)."""
    out = {"seeds": n, "split_applicable": applicable, "split_criterion": "complete",
           "dense_test_acc": acc or {"moons_0": 1.0, "circles_1": 0.9875},
           "degradation": {"threshold": 0.05}}
    for c, (k, kb) in splits.items():
        out[f"split_{c}"] = {"seeds_split": k, "seeds_split_before_degradation": kb}
    out["split"] = out.get("split_complete", {})
    out["split_distance"] = {"exact": exact, "per_level": [{"level": 0, "params": 386.0},
                                                           {"level": 4, "params": 30.0}],
                             "last_level": {"d": dict(zip(("median", "q25", "q75"), d))}}
    return out


ALL = ("complete", "effective", "output", "functional")
A = Experiment("main", "a" * 40, None, {"model": {"hidden": [16, 16]}},
               metrics(32, {"complete": (26, 19), "effective": (29, 19), "output": (29, 19),
                            "functional": (31, 26)}))
B = Experiment("wide", "b" * 40, "main", {"model": {"hidden": [24, 24]}},
               metrics(16, {"complete": (3, 0), "effective": (16, 2), "output": (9, 9),
                            "functional": (0, 0)}))
D_A = [0.0, 0.0, 1.0, 2.0, 2.0, 5.0, 0.0, 3.0]
D_B = [4.0, 6.0, 2.0, 9.0, 7.0, 7.0]


# ---- statistics on fixed inputs ------------------------------------------------------------------
@pytest.mark.parametrize("k, n", [(0, 4), (1, 4), (4, 4), (26, 32), (19, 32), (3, 16), (0, 1)])
def test_k_of_n_is_the_wilson_interval(k, n):
    lo, hi = wilson_closed_form(k, n)
    assert compare.k_of_n((k, n)) == f"{k}/{n} ({max(lo, 0):.2f}–{min(hi, 1):.2f})"


@pytest.mark.parametrize("a, b", [((26, 32), (3, 16)), ((19, 32), (0, 16)), ((31, 32), (0, 16)),
                                  ((1, 4), (1, 4)), ((0, 4), (4, 4)), ((29, 32), (16, 16))])
def test_fisher_matches_scipy_and_enumeration(a, b):
    p = compare.fisher(a, b)
    assert p == pytest.approx(fisher_exact([[a[0], a[1] - a[0]], [b[0], b[1] - b[0]]]).pvalue,
                              rel=1e-12)
    assert p == pytest.approx(fisher_by_enumeration(*a, *b), rel=1e-9)
    assert compare.fisher(None, b) is None  # one task: not applicable, no number


@pytest.mark.parametrize("a, b", [(D_A, D_B), ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),
                                  ([0.0] * 5, [0.0, 0.0, 1.0]), ([3.0, 1.0], [2.0])])
def test_mann_whitney_matches_scipy(a, b):
    assert compare.mann_whitney(a, b) == pytest.approx(
        mannwhitneyu(a, b, alternative="two-sided").pvalue, rel=1e-12)
    assert compare.mann_whitney(a, None) is None


def test_report_prints_each_fraction_and_the_tests_against_the_first():
    lines = compare.report([A, B], {A.rev: (D_A, ""), B.rev: (D_B, "")})
    assert max(map(len, lines)) <= 100
    text = "\n".join(lines)
    for exp in (A, B):
        for before in (False, True):
            row = next(line for line in table_rows(text, before) if line.startswith(exp.name))
            n = exp.metrics["seeds"]
            ks = [exp.metrics[f"split_{c}"]["seeds_split_before_degradation" if before
                                            else "seeds_split"] for c in ALL]
            assert re.findall(r"(\d+)/(\d+) \(", row) == [(str(k), str(n)) for k in ks]
    for before in (False, True):
        p_row = next(line for line in table_rows(text, before) if "p vs main" in line)
        key = "seeds_split_before_degradation" if before else "seeds_split"
        expected = [fisher_exact([[A.metrics[f"split_{c}"][key], 32 - A.metrics[f"split_{c}"][key]],
                                  [B.metrics[f"split_{c}"][key], 16 - B.metrics[f"split_{c}"][key]]]
                                 ).pvalue for c in ALL]
        assert re.findall(r"p = (\S+)", p_row) == [p_text(p) for p in expected]
    d_row = next(line for line in lines if line.startswith("wide") and "p = " in line)
    assert d_row.endswith(f"p = {p_text(mannwhitneyu(D_A, D_B).pvalue)}")
    assert "model.hidden [16, 16] → [24, 24]" in text


def table_rows(text: str, before: bool) -> list[str]:
    part = text.split("Split before any task degraded")[1 if before else 0]
    return part.split("Split distance")[0].splitlines()


def test_report_says_what_it_cannot_test():
    """One task: every fraction n/a (no number from nothing); per-seed d not at hand: 'not
    testable' with the reason; a d that is only an upper bound (T > 2) is marked ≤."""
    one_task = Experiment("solo", "c" * 40, None, {}, metrics(8, {}, {"moons_0": 0.99},
                                                             applicable=False))
    one_task.metrics["split_distance"] = {}
    three = Experiment("three", "d" * 40, None, {},
                       metrics(8, {c: (1, 0) for c in ALL}, exact=False))
    lines = compare.report([three, one_task], {three.rev: (None, "seeds.csv of three is not in "
                                                                 "this clone's DVC cache"),
                                               one_task.rev: (None, "solo has no d")})
    text = "\n".join(lines)
    solo_rows = [line for line in lines if line.startswith("solo")]
    assert all(row.split()[1:] == ["n/a"] * 4 for row in solo_rows[:2])
    assert "p = " not in text  # nothing to test against an inapplicable fraction or missing d
    assert "not testable: seeds.csv of three is not in this clone's DVC cache" in text
    assert "≤ 2 (1–3)" in text
    distance_rows = text.split("Split distance")[1].split("Dense test accuracy")[0].splitlines()
    assert next(r for r in distance_rows if r.startswith("solo")).split() == [
        "solo", "–", "n/a", "not", "testable"]


def test_many_tasks_and_long_names_fit_in_100_columns():
    tasks = {f"task_with_a_long_name_{i}": 0.5 for i in range(12)}
    exps = [Experiment(f"experiment-{'x' * 30}-{i}", f"{i:040d}", None, {},
                       metrics(32, {c: (i, i) for c in ALL}, tasks)) for i in range(3)]
    lines = compare.report(exps, {e.rev: (None, "no cache") for e in exps})
    assert max(map(len, lines)) <= 100
    text = "\n".join(lines)
    assert all(t in text for t in tasks)


# ---- names --------------------------------------------------------------------------------------
SHOW = [
    {"rev": "workspace", "name": None, "data": {"params": {"params.yaml": {"data": {"x": 1}}},
                                                "metrics": {}}},
    {"rev": "1" * 40, "name": "main", "data": {}, "experiments": [
        {"name": "wide", "executor": None, "revs": [{"rev": "2" * 40, "name": "wide",
                                                     "error": None, "data": {}}]},
        {"name": "broken", "executor": {"state": "failed"},
         "revs": [{"rev": "3" * 40, "name": "broken", "error": {"msg": "Experiment run failed"},
                   "data": {}}]}]},
]


def test_names_as_dvc_exp_show_lists_them():
    rows = compare.listed(SHOW, head="1" * 40)
    got = compare.resolve(["main", "HEAD", "wide", "workspace", "2222222"], rows, False)
    assert [e.rev for e in got] == ["1" * 40, "1" * 40, "2" * 40, "workspace", "2" * 40]
    assert [e.name for e in got] == ["main", "HEAD", "wide", "workspace", "2222222"]
    assert got[2].baseline == "main"
    broken = compare.resolve(["broken"], rows, False)[0]
    with pytest.raises(CompareError, match="broken has no results of its own"):
        compare.check(broken)


def test_an_unknown_name_lists_the_available_ones():
    with pytest.raises(CompareError) as err:
        compare.resolve(["main", "wdie"], compare.listed(SHOW, head=None), False)
    assert str(err.value).startswith("unknown experiment 'wdie'; available: workspace, main, "
                                     "wide, broken")
    assert "\n" not in str(err.value)


# ---- metrics made from other params ------------------------------------------------------------
LOCK = {"stages": {
    "params": {"params": {"params.yaml": {"model": {"hidden": [16, 16], "seeds": [0, 1]}}},
               "outs": [{"path": "reports/params_checked.txt"}]},
    "generate": {"deps": [{"path": "reports/params_checked.txt"}],
                 "params": {"params.yaml": {"data": {"n_samples": 300}}},
                 "outs": [{"path": "data"}]},
    "analyze": {"deps": [{"path": "data/tasks.json"}],
                "params": {"params.yaml": {"prune.biases": True}},
                "outs": [{"path": "reports/analysis"}, {"path": "reports/metrics.json"}]},
    "plot": {"deps": [{"path": "reports/analysis"}], "params": {"params.yaml": {"plot": {"dpi": 1}}},
             "outs": [{"path": "reports/figures"}]},
}}


def test_upstream_stages_follow_the_deps_back_from_metrics_json():
    assert sorted(compare.upstream_stages(LOCK, "reports/metrics.json")) == [
        "analyze", "generate", "params"]


def test_metrics_made_from_other_params_are_refused(monkeypatch):
    import yaml

    monkeypatch.setattr(compare, "read_at", lambda rev, path: yaml.safe_dump(LOCK))
    same = {"model": {"hidden": [16, 16], "seeds": [0, 1]}, "data": {"n_samples": 300},
            "prune": {"biases": True}, "plot": {"dpi": 2}}  # plot: not behind metrics.json
    assert compare.stale_keys(Experiment("a", "a" * 40, None, same)) == []
    study = {**same, "model": {"hidden": [16, 16], "seeds": [0, 1, 2]}}
    assert compare.stale_keys(Experiment("s", "s" * 40, None, study)) == ["model.seeds"]


# ---- end to end: two real experiments ----------------------------------------------------------
# README's `dvc exp show` recipe: the experiments' names, the headline k and the changed params
RECIPE = ["exp", "show", "--no-pager", "--only-changed", "--keep", r"^split\.seeds_split$",
          "--drop", r"^(?!Experiment|(data|model|train|prune|analysis)\.)|^model\.seeds$"]


@pytest.mark.e2e
@pytest.mark.xdist_group("experiments_repo")
def test_compare_two_real_experiments(experiments_repo):
    """The shared tiny run's two experiments (conftest.experiments_repo: 2 and 3 levels, 2
    seeds): every printed k/n is the experiment's metrics.json, every p is scipy's."""
    repo, kept = experiments_repo, experiments_repo.parent
    proc = subprocess.run([sys.executable, "-m", "pipeline.compare", "short", "long"], cwd=repo,
                          capture_output=True, text=True, encoding="utf-8",
                          env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(map(len, lines)) <= 100
    got = {name: json.loads((kept / f"{name}.metrics.json").read_text())
           for name in ("short", "long")}
    d = {name: pd.read_csv(kept / f"{name}.seeds.csv")["split_distance_last"].tolist()
         for name in ("short", "long")}
    n = len(d["short"])
    assert "long against short: prune.iterations 2 → 3." in proc.stdout
    for before in (False, True):
        key = "seeds_split_before_degradation" if before else "seeds_split"
        rows = table_rows(proc.stdout, before)
        for name, m in got.items():
            row = next(line for line in rows if line.startswith(name))
            assert [k for k, _ in re.findall(r"(\d+)/(\d+) \(", row)] == [
                str(m[f"split_{c}"][key]) for c in ALL]
        p_row = next(line for line in rows if "p vs short" in line)
        assert re.findall(r"p = (\S+)", p_row) == [p_text(fisher_exact(
            [[got["short"][f"split_{c}"][key], n - got["short"][f"split_{c}"][key]],
             [got["long"][f"split_{c}"][key], n - got["long"][f"split_{c}"][key]]]).pvalue)
            for c in ALL]
    d_row = next(line for line in lines if line.startswith("long") and "p = " in line)
    assert d_row.endswith(f"p = {p_text(mannwhitneyu(d['short'], d['long']).pvalue)}")

    unknown = subprocess.run([sys.executable, "-m", "pipeline.compare", "short", "lnog"],
                             cwd=repo, capture_output=True, text=True)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.splitlines() == [unknown.stderr.strip()]
    assert "unknown experiment 'lnog'; available: workspace, " in unknown.stderr
    assert "short" in unknown.stderr and "long" in unknown.stderr


@pytest.mark.e2e
@pytest.mark.xdist_group("experiments_repo")
def test_the_readme_exp_show_recipe_fits_100_columns(experiments_repo):
    readme = (ROOT / "README.md").read_text()
    assert "dvc exp show --only-changed --keep '^split\\.seeds_split$' \\\n" in readme
    assert f"--drop '{RECIPE[-1]}'" in readme
    proc = subprocess.run([sys.executable, "-m", "dvc", *RECIPE], cwd=experiments_repo,
                          capture_output=True, text=True, encoding="utf-8",
                          env={**os.environ, "COLUMNS": "100", "DVC_NO_ANALYTICS": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(map(len, lines)) <= 100 and "…" not in proc.stdout, proc.stdout
    header = next(line for line in lines if "Experiment" in line)
    assert "split.seeds_split" in header and "prune.iterations" in header
    assert any("[long]" in line for line in lines) and any("[short]" in line for line in lines)
