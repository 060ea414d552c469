"""What dies during IMP at study level (issue 32 items 4 and 6): the dying result files of a
configuration, the study summary's columns and per-seed values against plain loops over those
files, the comparisons across configurations against scipy, a sharded configuration merged byte
for byte, result folders collected before issue 32, and the dying.png figures."""
from __future__ import annotations

import gzip
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, shared_folder, tiny_params
from scipy import stats
from test_palette import figure_colours, is_task_colour

from pipeline import config, dying_compare, dying_plots, plots, study, study_dying
from pipeline.analysis import wilson
from pipeline.config import STUDY_AXES
from pipeline.pool import merge_shards
from pipeline.study import RESULT_FILES

SEEDS = [0, 1, 2, 3]
COMBO = {"extensions": 0, "iterations": 4, "tasks": "moons+circles", "hidden": "6x6",
         "init": "torch_default", "noise": 0.1, "method": "rewind", "weight_decay": 0.0,
         "bias_init": "default", "n_samples": tiny_params()["data"]["n_samples"]}
RUNS = {  # name: (seeds, params overrides)
    "all": (SEEDS, {"prune.random_mask_control": True}),
    "shard0": (SEEDS[:2], {"prune.random_mask_control": True}),
    "shard1": (SEEDS[2:], {"prune.random_mask_control": True}),
    # one task, biases not prunable, no random-mask control: what cannot be tested says so
    "one": ([0, 1], {"data.tasks": ["moons"], "prune.biases": False}),
}


def _build(folder: Path) -> None:
    """Each run of RUNS in process (tiny: 4 levels to 20 parameters, one worker) and its
    result folder (the study runner's collect)."""
    from pipeline.stages import analyze, generate, imp, train, trajectory
    from pipeline.stages.study_run import collect_results

    for name, (seeds, overrides) in RUNS.items():
        work = folder / name
        work.mkdir()
        raw = tiny_params(**{"prune.iterations": 4, "prune.target": 20, "train.workers": 1,
                             "plot.draw_seed": None,
                             "model.seeds": seeds, **overrides})
        (work / "params.yaml").write_text(json.dumps(raw))  # YAML reads JSON
        params = config.parse(raw)
        for stage in (generate, trajectory, train, imp, analyze):
            stage.run(params, work)
        collect_results(COMBO, work, folder / f"{name}-results")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return shared_folder(tmp_path_factory, "dying_study_runs", _build)


def aggregated(results: list[tuple[dict, Path]]):
    tidy, seeds, summary = study.aggregate(results, 0.05)
    seeds, summary = study_dying.with_answers(results, tidy, seeds, summary)
    return tidy, seeds, summary


def result(folder: Path) -> tuple[dict, Path]:
    return json.loads((folder / "config.json").read_text()), folder


# ---- plain references -------------------------------------------------------------------------
def linear_quantile(values: list[float], q: float) -> float:
    """numpy's default (linear) quantile, by hand."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (pos - lo)


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def read_rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return list(pd.read_csv(f, keep_default_na=False, dtype=str).to_dict("records"))


def per_seed_by_loops(work: Path) -> dict[int, dict]:
    """Per seed, by plain loops over the run's own tables: H3's first-peak fraction, H5's share
    of comatose neurons whose bias went first, the budget share on the dead, the share of
    frozen deaths exactly predicted, and the negative / positive median survivals."""
    analysis = work / "reports/analysis"
    levels = read_rows(analysis / "levels.csv")
    last = max(int(r["level"]) for r in levels)
    out = {}
    for seed in {int(r["seed"]) for r in levels}:
        mine = sorted((r for r in levels if int(r["seed"]) == seed), key=lambda r: int(r["level"]))
        best, peak, dead, pruned = 0, None, 0, 0
        for r in mine:
            c = int(r["comatose_neurons"])
            if c > best:
                best, peak = c, int(r["level"])
            if int(r["level"]) > 0:
                dead += int(float(r["pruned_dead"]))
                pruned += int(float(r["newly_pruned"]))
        out[seed] = {"h3": peak / last if peak is not None else math.nan,
                     "budget": dead / pruned if pruned else math.nan}
    first, total = {}, {}
    for r in read_rows(analysis / "episodes.csv"):
        if r["kind"] != "comatose":
            continue
        seed = int(r["seed"])
        bias = float(r["bias_pruned_level"]) if r["bias_pruned_level"] else None
        detached = int(r["last_level"]) + 1 if r["end"] == "detached" else None
        total[seed] = total.get(seed, 0) + 1
        first[seed] = first.get(seed, 0) + int(bias is not None and (detached is None
                                                                     or bias < detached))
    exact, frozen = {}, {}
    for r in read_rows(analysis / "frozen_deaths.csv.gz"):
        seed = int(r["seed"])
        frozen[seed] = frozen.get(seed, 0) + 1
        exact[seed] = exact.get(seed, 0) + (r["exact"] == "True")
    survival = {}
    for r in read_rows(analysis / "bias_survival.csv"):
        survival.setdefault((int(r["seed"]), r["sign"]), []).append(int(r["survival"]))
    for seed, row in out.items():
        row["h5"] = first[seed] / total[seed] if total.get(seed) else math.nan
        row["h5_k"], row["h5_n"] = first.get(seed, 0), total.get(seed, 0)
        row["death"] = exact[seed] / frozen[seed] if frozen.get(seed) else math.nan
        row["death_k"], row["death_n"] = exact.get(seed, 0), frozen.get(seed, 0)
        neg, pos = survival.get((seed, "negative")), survival.get((seed, "positive"))
        row["h2"] = (statistics.median(neg) - statistics.median(pos) if neg and pos
                     else math.nan)
    return out


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


# ---- the result files -------------------------------------------------------------------------
def test_result_folder_carries_the_full_answers_and_frozen_death_counts(runs):
    work, folder = runs / "all", runs / "all-results"
    assert sorted(p.name for p in folder.iterdir()) == sorted(RESULT_FILES)
    analysis = work / "reports/analysis"
    for name in ("dying.json", "episodes.csv", "bias_survival.csv"):  # copies, byte for byte
        assert (folder / name).read_bytes() == (analysis / name).read_bytes(), name
    full = json.loads((folder / "dying.json").read_text())
    assert "all" in full["h1_zombie_lifetime_vs_bias"] or not \
        full["h1_zombie_lifetime_vs_bias"]["testable"]  # the full answers, not the headlines
    assert "per_level" in full["h5_comatose_bias_before_detach"]["budget_on_dead"]
    # frozen_deaths_levels.csv: frozen_deaths.csv.gz counted per (seed, first level, kind)
    counts: dict[tuple, list[int]] = {}
    for r in read_rows(analysis / "frozen_deaths.csv.gz"):
        key = (int(r["seed"]), int(r["first_frozen_level"]), r["kind"])
        c = counts.setdefault(key, [0] * 6)
        exact = r["exact"] == "True"
        c[0] += 1
        c[1] += exact
        c[2] += not exact and r["reason"] == "unfroze"
        c[3] += not exact and r["reason"] == "tie"
        c[4] += not exact and r["reason"] == ""
        c[5] += r["actual_death"] == ""
    table = pd.read_csv(folder / "frozen_deaths_levels.csv")
    assert len(table) == len(counts) > 0
    assert {(int(r.seed), int(r.first_frozen_level), r.kind):
            [int(r.frozen), int(r.exact), int(r.unfroze), int(r.tie), int(r.unexplained),
             int(r.survived)] for r in table.itertuples()} == counts
    assert list(table["seed"]) == sorted(table["seed"], key=SEEDS.index)  # model.seeds order
    # the answers recomputed from the result files alone (what a sharded sweep does)
    assert study_dying.recompute_folder(folder) == full


def test_sharded_result_files_merge_byte_for_byte(runs):
    """A configuration whose seeds ran in two runs, merged as `pipeline.sweep --shards` does:
    every result file, dying.json (recomputed from the merged files) and episodes.csv (rows
    by kind, layer, seed, neuron) included, equals the single run's byte for byte."""
    parts = [{name: (runs / f"shard{i}-results" / name).read_bytes() for name in RESULT_FILES}
             for i in (0, 1)]
    merged = merge_shards(parts, SEEDS)
    assert sorted(merged) == sorted(RESULT_FILES)
    for name in RESULT_FILES:
        assert merged[name] == (runs / "all-results" / name).read_bytes(), name


# ---- the study summary ----------------------------------------------------------------------------
def test_summary_and_seed_columns_match_plain_loops(runs):
    _, seeds, summary = aggregated([result(runs / "all-results")])
    row = summary.iloc[0]
    loops = per_seed_by_loops(runs / "all")
    for seed in SEEDS:
        mine = seeds[seeds["seed"] == seed].iloc[0]
        ref = loops[seed]
        assert same(mine["h3_peak_fraction"], ref["h3"]), seed
        assert same(mine["budget_on_dead_share"], ref["budget"]), seed
        assert same(mine["h5_bias_first_fraction"], ref["h5"]), seed
        assert same(mine["death_predicted_fraction"], ref["death"]), seed
        assert same(mine["h2_survival_difference"], ref["h2"]), seed
    peaks = [loops[s]["h3"] for s in SEEDS if not math.isnan(loops[s]["h3"])]
    assert row["h3_peak_fraction"] == pytest.approx(statistics.median(peaks))
    assert row["h3_peak_fraction_q25"] == pytest.approx(linear_quantile(peaks, 0.25))
    assert row["h3_peak_fraction_q75"] == pytest.approx(linear_quantile(peaks, 0.75))
    assert row["h3_peak_seeds"] == len(peaks)
    budget = [loops[s]["budget"] for s in SEEDS]
    assert row["budget_on_dead_share"] == pytest.approx(statistics.median(budget))
    # the k/n columns, each with its Wilson interval
    k, n = sum(loops[s]["h5_k"] for s in SEEDS), sum(loops[s]["h5_n"] for s in SEEDS)
    k2 = sum(loops[s]["h2"] < 0 for s in SEEDS)
    n2 = sum(not math.isnan(loops[s]["h2"]) for s in SEEDS)
    kd, nd = sum(loops[s]["death_k"] for s in SEEDS), sum(loops[s]["death_n"] for s in SEEDS)
    for name, (kk, nn) in {"h5_bias_first": (k, n), "h2_seeds_negative_lower": (k2, n2),
                           "death_predicted": (kd, nd)}.items():
        assert (row[f"{name}_k"], row[f"{name}_n"]) == (kk, nn), name
        assert nn > 0, name  # the tiny run tests each of these
        lo, hi = wilson_by_hand(kk, nn)
        assert row[f"{name}_low"] == pytest.approx(lo, abs=1e-9), name
        assert row[f"{name}_high"] == pytest.approx(hi, abs=1e-9), name
    # H4: seeds whose zombie-neuron count rises with the level (scipy's ρ, seed by seed)
    levels = pd.read_csv(runs / "all/reports/analysis/levels.csv")
    rhos = []
    for seed in SEEDS:
        g = levels[levels["seed"] == seed].sort_values("level")
        if g["zombie_neurons"].nunique() > 1:
            rhos.append(stats.spearmanr(g["level"], g["zombie_neurons"]).statistic)
    if rhos:
        assert (row["h4_seeds_rho_positive_k"], row["h4_seeds_rho_positive_n"]) == \
            (sum(r > 0 for r in rhos), len(rhos))
    # metrics.json's per-configuration keys are the summary's own values
    metrics = study.study_metrics(summary, study_dying.METRICS_KEYS)[row["config"]]
    assert metrics["death_predicted_k"] == kd and metrics["h5_bias_first_n"] == n


def test_one_task_without_prunable_biases_says_what_it_cannot_test(runs):
    _, seeds, summary = aggregated([result(runs / "one-results")])
    row = summary.iloc[0]
    why = dying_compare.reasons(row.to_dict())
    assert why["h2"] == "biases are not prunable" and why["h5"] == "biases are not prunable"
    assert why["h6"] == "one task (a split needs two)"
    for column in ("h2_survival_negative", "h2_seeds_negative_lower_k", "h5_bias_first_k",
                   "h5_bias_first_low", "h6_test_acc_last_p"):
        assert math.isnan(row[column]), column
    assert seeds["h5_bias_first_fraction"].isna().all()
    assert row["budget_on_dead_share"] >= 0  # measured either way


def test_result_folders_collected_before_issue_32_still_aggregate(runs, tmp_path):
    """A committed result folder collected before issue 32 (no dying files: the thesis-width
    study of docs/runs/, kept as it was) beside a new one: its columns are NaN and say why, it
    takes part in no comparison, and the figure is drawn."""
    old = ROOT / "docs/runs/ext0-it20-fashion_mnist+fashion_mnist-784x392-torch_default-noise0.1"
    assert not (old / "dying.json").exists()
    results = [result(old), result(runs / "all-results")]
    tidy, seeds, summary = aggregated(results)
    first, second = summary.to_dict("records")
    assert first["dying_not_testable"] == study_dying.NOT_COLLECTED
    assert all(math.isnan(first[c]) for c in (*study_dying.SCALARS, "h5_bias_first_k",
                                               "death_predicted_n") if c != "zombies_without_bias")
    assert not math.isnan(second["death_predicted_n"])
    old_seeds = seeds[seeds["config"] == first["config"]]
    assert len(old_seeds) == first["seeds"] and \
        old_seeds[list(study_dying.SEED_COLUMNS)].isna().all().all()
    compared = dying_compare.comparisons(summary, seeds)
    assert compared["without_answers"] == [first["config"]]
    json.dumps(dying_compare.headlines(compared), allow_nan=False)  # valid JSON: null, no NaN
    plots.style()
    fig = dying_plots.study_figure(summary, tidy)
    assert not any(is_task_colour(c) for c in figure_colours(fig))  # one palette: greys
    plots.save(fig, tmp_path / "dying.png", 40)
    assert (tmp_path / "dying.png").stat().st_size > 10_000


# ---- comparisons across configurations: scipy on fixed inputs -------------------------------------
def fixed_study() -> tuple[pd.DataFrame, pd.DataFrame]:
    """T ∈ {10, 20, 30} × bias_init {default, zero} at 40x40, and 100x100 at T = 20 with
    default biases; per-seed values drawn once (numpy seed 7); zero biases cannot test H1."""
    rng = np.random.default_rng(7)
    base = {"extensions": 0, "tasks": "moons+circles", "init": "torch_default", "noise": 0.1,
            "method": "rewind", "weight_decay": 0.0}
    combos = [{**base, "iterations": t, "hidden": "40x40", "bias_init": b}
              for b in ("default", "zero") for t in (10, 20, 30)]
    combos.append({**base, "iterations": 20, "hidden": "100x100", "bias_init": "default"})
    rows, seeds = [], []
    for i, c in enumerate(combos):
        name = config.configuration_name(c)
        zero = c["bias_init"] == "zero"
        row = {**c, "config": name, "h1_rho": math.nan if zero else 0.1 * i,
               "h1_rho_low": math.nan if zero else 0.1 * i - 0.2,
               "h1_rho_high": math.nan if zero else 0.1 * i + 0.2,
               "h2_seeds_negative_lower_k": 10 + 3 * i, "h2_seeds_negative_lower_n": 32,
               "h5_bias_first_k": 40 + 7 * i, "h5_bias_first_n": 90 + i,
               "dying_not_testable": ("h1: zero biases (every zombie's trained bias is 0 at its "
                                      "first level); h6: no seed splits") if zero else ""}
        rows.append(row)
        for s in range(12):
            seeds.append({"config": name, "seed": s,
                          "h3_peak_fraction": round(rng.uniform(0.1, 0.6) + 0.02 * i, 3),
                          "h1_rho": math.nan if zero else rng.uniform(-1, 1),
                          "zombie_lifetime_median": float(rng.integers(1, 6)),
                          "h2_survival_difference": float(rng.integers(-4, 3)),
                          "h5_bias_first_fraction": rng.uniform(0, 1),
                          "budget_on_dead_share": rng.uniform(0, 0.5)})
    return pd.DataFrame(rows), pd.DataFrame(seeds)


def test_comparisons_match_scipy_on_fixed_inputs():
    summary, seeds = fixed_study()
    d = dying_compare.comparisons(summary, seeds)

    def values(config_name: str, column: str) -> np.ndarray:
        return seeds.loc[seeds["config"] == config_name, column].dropna().to_numpy()

    # H3 across T: one Kruskal–Wallis per bias_init at 40x40 (100x100 has a single T)
    groups = d["h3_peak_fraction_across_iterations"]["groups"]
    assert [g["fixed"] for g in groups] == [{"hidden": "40x40", "bias_init": "default"},
                                           {"hidden": "40x40", "bias_init": "zero"}]
    for g in groups:
        names = [c["config"] for c in g["configurations"]]
        assert [c["iterations"] for c in g["configurations"]] == [10, 20, 30]
        expected = stats.kruskal(*(values(n, "h3_peak_fraction") for n in names)).pvalue
        assert g["kruskal_p"] == pytest.approx(expected, rel=1e-12)
        assert g["configurations"][0]["peak_fraction"]["median"] == \
            pytest.approx(float(np.median(values(names[0], "h3_peak_fraction"))))
    # across widths: only T = 20 with default biases has two widths
    (w,) = d["h3_peak_fraction_across_hidden"]["groups"]
    names = [c["config"] for c in w["configurations"]]
    assert w["fixed"] == {"iterations": 20, "bias_init": "default"} and len(names) == 2
    assert w["kruskal_p"] == pytest.approx(
        stats.kruskal(*(values(n, "h3_peak_fraction") for n in names)).pvalue, rel=1e-12)
    # bias_init default vs zero at each T: Fisher's exact test and Mann–Whitney
    pairs = d["bias_init"]["pairs"]
    assert [p["fixed"] for p in pairs] == [{"iterations": t, "hidden": "40x40"}
                                          for t in (10, 20, 30)]
    by_name = summary.set_index("config")
    for pair in pairs:
        a, b = pair["configurations"]["default"], pair["configurations"]["zero"]
        for key in ("h2_seeds_negative_lower", "h5_bias_first"):
            ka, na = by_name.loc[a, f"{key}_k"], by_name.loc[a, f"{key}_n"]
            kb, nb = by_name.loc[b, f"{key}_k"], by_name.loc[b, f"{key}_n"]
            expected = stats.fisher_exact([[ka, na - ka], [kb, nb - kb]]).pvalue
            assert pair[key]["fisher_p"] == pytest.approx(expected, rel=1e-12), key
            assert pair[key][a]["k"] == ka and pair[key][a]["low"] == \
                pytest.approx(wilson(int(ka), int(na))[0])
        for key, column in (("zombie_lifetime", "zombie_lifetime_median"),
                            ("h2_survival_difference", "h2_survival_difference"),
                            ("h5_bias_first_fraction", "h5_bias_first_fraction"),
                            ("budget_on_dead_share", "budget_on_dead_share")):
            expected = stats.mannwhitneyu(values(a, column), values(b, column),
                                          alternative="two-sided").pvalue
            assert pair[key]["mannwhitney_p"] == pytest.approx(expected, rel=1e-12), key
        # zero biases cannot test H1: said, with the reason, and no number
        assert pair["h1_rho_per_seed"] == {
            "testable": False, "reason": f"not testable: H1 in {b}: zero biases (every "
                                         "zombie's trained bias is 0 at its first level)"}
        assert pair["h1_rho"][b]["testable"] is False and "rho" not in pair["h1_rho"][b]
        assert pair["h1_rho"][a]["rho"] == by_name.loc[a, "h1_rho"]
    # metrics.json: the p-values alone, keyed by what they compare
    head = dying_compare.headlines(d)
    assert head["h3_peak_fraction_across_iterations_kruskal_p"] == {
        "40x40/default": groups[0]["kruskal_p"], "40x40/zero": groups[1]["kruskal_p"]}
    assert head["bias_init"]["default vs zero (10/40x40)"]["h5_bias_first_fisher_p"] == \
        pairs[0]["h5_bias_first"]["fisher_p"]
    assert len(dying_compare.lines(d)) == 2


def test_no_comparison_without_two_values_of_an_axis():
    summary, seeds = fixed_study()
    d = dying_compare.comparisons(summary.iloc[:1], seeds)
    for key in ("h3_peak_fraction_across_iterations", "h3_peak_fraction_across_hidden",
                "bias_init"):
        assert d[key]["testable"] is False and d[key]["reason"].startswith("not testable: no two")
    assert set(STUDY_AXES) >= {"iterations", "hidden", "bias_init"}


# ---- figures ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["all", "one"])
def test_run_figure_with_and_without_the_random_mask_control(runs, tmp_path, name):
    """dying.png of a run: every panel drawn, in the palette's greys; without the control the
    IMP-vs-random panels say so; one task with biases not prunable: the bias panels say why they
    are empty."""
    analysis = runs / name / "reports/analysis"  # what the plot stage reads before the figure
    fig = dying_plots.run_figure_from(analysis, pd.read_csv(analysis / "levels.csv"),
                                      pd.read_csv(analysis / "random_masks.csv"),
                                      json.loads((analysis / "dying.json").read_text()))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 7 and all(titles)
    assert not any(is_task_colour(c) for c in figure_colours(fig))  # no task: greys only
    control_note = "no random masks: prune.random_mask_control is off"
    if name == "one":
        assert texts.count(control_note) == 2
        assert "not testable: biases are not prunable" in texts
    else:
        assert control_note not in texts
        legend = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]
        assert legend == ["IMP", "random masks"]
    plots.style()
    plots.save(fig, tmp_path / "dying.png", 40)
    assert (tmp_path / "dying.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
