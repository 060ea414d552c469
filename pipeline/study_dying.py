"""What dies during IMP in a study's result files (docs/science.md §8, issue 32 item 4).

`collect` adds to a configuration's result files (pipeline.study.RESULT_FILES; the study runner
passes it to pipeline.study.collect) what the docs need to answer H1–H6 and the death prediction
from the result folders alone: `dying.json` (the run's full answers, reports/analysis/dying.json,
as they are), `episodes.csv` and `bias_survival.csv` (copies of the analysis tables) and
`frozen_deaths_levels.csv` (frozen_deaths.csv.gz counted per seed, first frozen level and kind:
the table itself can hold millions of rows at image width).

`read` loads them back (None for result folders collected before issue 32), `seed_values` gives
each seed's share of the answers (the values the study compares across configurations,
pipeline.dying_compare), `summary_columns` the study summary's columns of one configuration,
`with_answers` both for a whole study (the aggregate stage), and `recompute` the answers from
the result files themselves (pipeline.dying_answers applied to them): how a sharded sweep
(pipeline.sweep) gets the dying.json of a configuration whose seeds ran in separate runs.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from pipeline import io

DYING_FILES = ("dying.json", "episodes.csv", "bias_survival.csv", "frozen_deaths_levels.csv")
FROZEN_LEVEL_COLUMNS = ["seed", "first_frozen_level", "kind", "frozen", "exact", "unfroze", "tie",
                        "unexplained", "survived"]
NOT_COLLECTED = "not testable: no dying answers in the result files (collected before issue 32)"


# ---- collect ---------------------------------------------------------------------------------
def frozen_death_levels(deaths: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """frozen_deaths_levels.csv: per (seed, first frozen level, kind) the parameters first frozen
    there (`frozen`), how many die exactly when predicted (`exact`), the misses by reason
    (`unfroze`, `tie`, `unexplained`) and how many are never pruned (`survived`). Rows in the
    order of `seeds` (model.seeds), then level, then kind."""
    if not len(deaths):
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in FROZEN_LEVEL_COLUMNS}
                            ).astype({"kind": object})
    exact = deaths["exact"].astype(bool)
    reason = deaths["reason"].fillna("").astype(str)
    frame = pd.DataFrame({
        "seed": deaths["seed"].astype(np.int64),
        "first_frozen_level": deaths["first_frozen_level"].astype(np.int64),
        "kind": deaths["kind"].astype(str), "frozen": 1, "exact": exact.astype(np.int64),
        "unfroze": (~exact & (reason == "unfroze")).astype(np.int64),
        "tie": (~exact & (reason == "tie")).astype(np.int64),
        "unexplained": (~exact & (reason == "")).astype(np.int64),
        "survived": deaths["actual_death"].isna().astype(np.int64)})
    position = {s: i for i, s in enumerate(seeds)}
    frame["_pos"] = frame["seed"].map(position)
    out = (frame.groupby(["_pos", "seed", "first_frozen_level", "kind"], sort=True)
           [["frozen", "exact", "unfroze", "tie", "unexplained", "survived"]].sum()
           .reset_index().drop(columns="_pos"))
    return out[FROZEN_LEVEL_COLUMNS]


def collect(work: Path, out: Path) -> None:
    """The dying result files of the run in work folder `work`, written into `out` (the
    result folder being assembled by pipeline.study.collect, whose `extra` this is)."""
    from pipeline import config

    seeds = list(config.load(work / "params.yaml").model.seeds)
    analysis = work / "reports/analysis"
    io.copy_file(analysis / "dying.json", out / "dying.json")  # the answers in full
    io.copy_file(analysis / "episodes.csv", out / "episodes.csv")
    io.copy_file(analysis / "bias_survival.csv", out / "bias_survival.csv")
    deaths = io.read_csv(analysis / "frozen_deaths.csv.gz",
                         usecols=["seed", "kind", "first_frozen_level", "actual_death", "exact",
                                  "reason"], dtype={"reason": object})
    io.write_csv(out / "frozen_deaths_levels.csv", frozen_death_levels(deaths, seeds))


# ---- read --------------------------------------------------------------------------------------
@dataclass
class DyingFiles:
    """One configuration's dying result files, read once."""

    block: dict                 # dying.json: the run's full answers (pipeline.dying_answers)
    episodes: pd.DataFrame
    survival: pd.DataFrame      # bias_survival.csv
    frozen: pd.DataFrame        # frozen_deaths_levels.csv


def read(folder: Path) -> DyingFiles | None:
    """The dying files of a result folder; None where it has none (collected before issue 32)."""
    if not (folder / "dying.json").is_file():
        return None
    return DyingFiles(io.read_json(folder / "dying.json"),
                      *(io.read_csv(folder / name) for name in
                        ("episodes.csv", "bias_survival.csv", "frozen_deaths_levels.csv")))


# ---- the block from the result files (sharded sweeps) -------------------------------------------
def expanded_deaths(frozen: pd.DataFrame) -> pd.DataFrame:
    """One row (kind, exact, reason) per frozen parameter counted in frozen_deaths_levels.csv:
    what dying_answers.death_predicted reads of frozen_deaths.csv.gz."""
    parts = []
    for column, exact, reason in (("exact", True, ""), ("unfroze", False, "unfroze"),
                                  ("tie", False, "tie"), ("unexplained", False, "")):
        counts = frozen[column].to_numpy(dtype=np.int64)
        parts.append(pd.DataFrame({"kind": np.repeat(frozen["kind"].to_numpy(dtype=object),
                                                     counts),
                                   "exact": exact, "reason": reason}))
    return pd.concat(parts, ignore_index=True)


def recompute(info: dict, levels: pd.DataFrame, seeds_table: pd.DataFrame,
              accuracy: pd.DataFrame, random: pd.DataFrame, dying: DyingFiles,
              shard_blocks: list[dict]) -> dict:
    """The full dying answers (dying.json) of a configuration from its result files, by the analyze
    stage's own function (dying_answers.answers). `shard_blocks`: the `dying` blocks of the runs
    the files were merged from, for what the files do not carry (zombies without bias per
    seed; whether frozen parameters were measured).

    Equal to the analyze stage's block of one run of every seed, but for what the files' six
    significant digits change: the ranks of two zombies' trained biases that agree to six
    digits (H1's ρ), nothing else (counts are exact, the budget's shares are recomputed from
    their counts, the accuracies are the level files' own six digits)."""
    from pipeline.dying import NOT_MEASURED
    from pipeline.dying_answers import answers

    params, seeds = info["params"], [int(s) for s in info["seeds"]]
    per_seed = {}
    for block in shard_blocks:
        per_seed.update(block["zombies_without_bias"]["per_seed"])
    measured = all(b["death_predicted"].get("reason") != NOT_MEASURED for b in shard_blocks)
    levels = levels.assign(pruned_dead_share=np.where(
        levels["newly_pruned"] > 0, levels["pruned_dead"] / levels["newly_pruned"], np.nan))
    tasks = list(dict.fromkeys(accuracy["task"]))
    per_task = accuracy.pivot(index=["seed", "level"], columns="task", values="test_acc")
    imp_levels = levels[["seed", "level", "test_acc"]].merge(
        per_task.add_prefix("test_acc_").reset_index(), on=["seed", "level"])
    tables = {"episodes": dying.episodes, "bias_survival": dying.survival,
              "frozen_deaths": expanded_deaths(dying.frozen)}
    return answers(tables, levels, random if len(random) else None, seeds_table, imp_levels,
                   [SimpleNamespace(name=t) for t in tasks], seeds,
                   bool(params["prune"]["biases"]), measured, params["prune"]["method"],
                   float(params["train"]["weight_decay"]),
                   np.array([per_seed[str(s)] for s in seeds], dtype=np.int64))


def _episode_order(row: dict, position: dict[int, int]) -> tuple:
    """episodes.csv's row order (pipeline.dying.neuron_episodes): zombies before comatose
    neurons, then by layer, seed (model.seeds order) and neuron (one episode of each kind per
    neuron)."""
    return (row["kind"] != "zombie", int(row["layer"]), position[int(row["seed"])],
            int(row["neuron"]))


# result files whose rows are not ordered by seed (or level and seed): their order for
# pipeline.sweep.merge_shards, as a key of (CSV row as a dict, {seed: position})
SHARD_ROW_ORDER = {"episodes.csv": _episode_order}


def merged_block(files: dict[str, bytes], shard_jsons: list[bytes]) -> bytes:
    """dying.json of a configuration whose seeds ran in shards: recomputed from its merged
    result files `files` (pipeline.sweep.merge_shards), the shards' dying.json for what the
    files do not carry; bytes as io.write_json writes them."""
    import io as io_bytes

    csv = {name: pd.read_csv(io_bytes.BytesIO(files[name])) for name in files
           if name.endswith(".csv")}
    dying = DyingFiles({}, csv["episodes.csv"], csv["bias_survival.csv"],
                       csv["frozen_deaths_levels.csv"])
    block = recompute(json.loads(files["config.json"]), csv["levels.csv"], csv["seeds.csv"],
                      csv["accuracy.csv"], csv["random_levels.csv"], dying,
                      [json.loads(b) for b in shard_jsons])
    return (json.dumps(block, indent=2, sort_keys=False) + "\n").encode()


def recompute_folder(folder: Path, shard_blocks: list[dict] | None = None) -> dict:
    """recompute on a result folder (its own dying.json as the shard block by default)."""
    dying = read(folder)
    if dying is None:
        raise FileNotFoundError(f"{folder}: no dying.json")
    return recompute(io.read_json(folder / "config.json"),
                     io.read_csv(folder / "levels.csv"), io.read_csv(folder / "seeds.csv"),
                     io.read_csv(folder / "accuracy.csv"), io.read_csv(folder / "random_levels.csv"),
                     dying, shard_blocks or [dying.block])


# ---- per seed ----------------------------------------------------------------------------------
SEED_COLUMNS = ("h1_rho", "zombie_lifetime_median", "h2_survival_difference", "h3_peak_fraction",
                "h4_rho", "h5_bias_first_fraction", "budget_on_dead_share",
                "death_predicted_fraction")


def seed_values(levels: pd.DataFrame, dying: DyingFiles | None, seeds: list[int]) -> pd.DataFrame:
    """Per seed (rows in `seeds` order), the seed's own value of each answer, NaN where the
    seed has none (or the result files have no dying answers):
    - h1_rho: Spearman ρ of its zombie episodes' lifetimes against their trained bias at the
      first level (≥ 3 episodes, neither side constant), zombie_lifetime_median;
    - h2_survival_difference: median survival of its negative minus its positive dense biases;
    - h3_peak_fraction: the level of its comatose count's first maximum / T (H3's per-seed
      value); h4_rho: Spearman ρ of its zombie-neuron count against the level (H4's);
    - h5_bias_first_fraction: share of its comatose neurons whose bias went first (H5's
      per-seed fraction, biases prunable only); budget_on_dead_share: Σ pruned_dead /
      Σ newly_pruned over its levels; death_predicted_fraction: its frozen parameters whose
      death is exactly predicted."""
    out = pd.DataFrame({"seed": seeds})
    if dying is None:
        return out.assign(**dict.fromkeys(SEED_COLUMNS, math.nan))
    from pipeline.dying_answers import _peak_fractions, row_spearman, spearman

    block, last = dying.block, int(levels["level"].max())
    ep = dying.episodes
    zombies = ep[ep["kind"] == "zombie"]
    rho = {s: spearman(g["lifetime"], g["bias_trained"])[0] for s, g in zombies.groupby("seed")}
    out["h1_rho"] = out["seed"].map(lambda s: rho.get(s) if rho.get(s) is not None else math.nan)
    out["zombie_lifetime_median"] = out["seed"].map(
        zombies.groupby("seed")["lifetime"].median()).astype(float)
    sv = dying.survival
    medians = (sv.pivot_table(index="seed", columns="sign", values="survival", aggfunc="median")
               if len(sv) else pd.DataFrame())
    out["h2_survival_difference"] = (
        out["seed"].map(medians["negative"] - medians["positive"]).astype(float)
        if {"negative", "positive"} <= set(medians.columns) else math.nan)
    out["h3_peak_fraction"] = (out["seed"].map(_peak_fractions(levels, last)).astype(float)
                               if last >= 1 else math.nan)
    counts = levels.pivot(index="seed", columns="level", values="zombie_neurons")
    out["h4_rho"] = out["seed"].map(pd.Series(
        row_spearman(counts.columns.to_numpy(dtype=float), counts.to_numpy(dtype=float)),
        index=counts.index)).astype(float)
    out["h5_bias_first_fraction"] = out["seed"].map(_bias_first(ep, block)).astype(float)
    lv = levels[levels["level"] > 0]
    sums = lv.groupby("seed")[["pruned_dead", "newly_pruned"]].sum()
    out["budget_on_dead_share"] = out["seed"].map(
        sums["pruned_dead"] / sums["newly_pruned"].where(sums["newly_pruned"] > 0)).astype(float)
    fz = dying.frozen.groupby("seed")[["exact", "frozen"]].sum()
    out["death_predicted_fraction"] = out["seed"].map(
        fz["exact"] / fz["frozen"].where(fz["frozen"] > 0)).astype(float)
    return out


def _bias_first(episodes: pd.DataFrame, block: dict) -> pd.Series:
    """Per seed: H5's share of comatose neurons whose bias is pruned before the neuron is
    detached (empty where H5 is not testable: biases not prunable, no comatose neuron)."""
    if not block["h5_comatose_bias_before_detach"]["testable"]:
        return pd.Series(dtype=float)
    c = episodes[episodes["kind"] == "comatose"].drop_duplicates(["seed", "layer", "neuron"])
    detached = (c["last_level"].astype(float) + 1).where(c["end"] == "detached")
    bias = c["bias_pruned_level"].astype(float)
    before = bias.notna() & (detached.isna() | (bias < detached))
    return before.groupby(c["seed"]).mean()


def with_answers(results: list[tuple[dict, Path]], tidy: pd.DataFrame, seeds: pd.DataFrame,
                 summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(seeds, summary) of pipeline.study.aggregate with the dying answers of each
    configuration's result folder (results: its (config.json, folder) pairs, in summary order):
    seeds gets SEED_COLUMNS, summary the columns of summary_columns — NaN, and
    `dying_not_testable` saying so, for result folders collected before issue 32."""
    parts, rows = [], []
    for (info, folder), name in zip(results, summary["config"]):
        dying = read(folder)  # None in result folders collected before issue 32
        mine = seeds[seeds["config"] == name]
        values = seed_values(tidy[tidy["config"] == name], dying, list(mine["seed"]))
        parts.append(mine.reset_index(drop=True).merge(values, on="seed", how="left"))
        rows.append(summary_columns(dying.block if dying else None))
    return (pd.concat(parts, ignore_index=True),
            pd.concat([summary.reset_index(drop=True), pd.DataFrame(rows)], axis=1))


# ---- the study summary's columns ---------------------------------------------------------------
ANSWER_KEYS = {"h1": "h1_zombie_lifetime_vs_bias", "h2": "h2_negative_biases_pruned_early",
               "h3": "h3_comatose_peak", "h4": "h4_zombies_at_high_sparsity",
               "h5": "h5_comatose_bias_before_detach", "h6": "h6_split_vs_unsplit_accuracy",
               "death_predicted": "death_predicted"}
FRACTIONS = ("h2_seeds_negative_lower", "h3_lifetime_at_most_2", "h4_seeds_rho_positive",
             "h5_bias_first", "death_predicted")
SCALARS = ("h1_rho", "h1_rho_low", "h1_rho_high", "h1_rho_p", "h1_episodes",
           "h1_rho_uncensored", "h1_rho_uncensored_low", "h1_rho_uncensored_high",
           "h1_lifetime_positive", "h1_lifetime_nonpositive", "h1_lifetime_p",
           "h2_survival_negative", "h2_survival_positive", "h2_survival_p",
           "h3_peak_fraction", "h3_peak_fraction_q25", "h3_peak_fraction_q75", "h3_peak_seeds",
           "h3_comatose_lifetime_median", "h4_rho_median", "h4_levels_above", "h4_levels_below",
           "h4_levels_tested", "h5_per_seed_fraction", "budget_on_dead_share",
           "budget_on_dead_share_q25", "budget_on_dead_share_q75", "h6_test_acc_last_split",
           "h6_test_acc_last_never", "h6_test_acc_last_p", "h6_degradation_split",
           "h6_degradation_never", "h6_degradation_p", "zombies_without_bias")

# the ones reports/study/metrics.json repeats per configuration: few, as `dvc exp show`
# tabulates every scalar of a metrics file (intervals and the rest: summary.csv)
METRICS_KEYS = ("h1_rho", "h3_peak_fraction", "h5_bias_first_k", "h5_bias_first_n",
                "budget_on_dead_share", "death_predicted_k", "death_predicted_n")


def summary_columns(block: dict | None) -> dict:
    """The study summary's dying columns of one configuration from its dying.json answers (NaN where a
    hypothesis is not testable or the result files have none; `dying_not_testable` names the
    hypotheses the configuration cannot test, with the reason). Every k/n answer comes as
    <name>_k, <name>_n and its 95 % Wilson interval <name>_low, <name>_high."""
    row = {name: math.nan for name in SCALARS}
    for name in FRACTIONS:
        row.update({f"{name}_{p}": math.nan for p in ("k", "n", "low", "high")})
    if block is None:
        return {**row, "dying_not_testable": NOT_COLLECTED}
    num = lambda v: math.nan if v is None else v  # noqa: E731 (JSON null: NaN)

    def fraction(name: str, b: dict) -> None:
        row.update({f"{name}_k": b["k"], f"{name}_n": b["n"], f"{name}_low": num(b["low"]),
                    f"{name}_high": num(b["high"])})

    b = {short: block[key] for short, key in ANSWER_KEYS.items()}
    if b["h1"]["testable"]:
        a, u = b["h1"]["all"], b["h1"]["uncensored"]
        g = a["lifetime_by_bias"]
        row.update({"h1_rho": num(a["rho"]), "h1_rho_low": num(a["rho_ci95"][0]),
                    "h1_rho_high": num(a["rho_ci95"][1]), "h1_rho_p": num(a["rho_p"]),
                    "h1_episodes": a["episodes"], "h1_rho_uncensored": num(u["rho"]),
                    "h1_rho_uncensored_low": num(u["rho_ci95"][0]),
                    "h1_rho_uncensored_high": num(u["rho_ci95"][1]),
                    "h1_lifetime_positive": num(g["positive"]["median"]),
                    "h1_lifetime_nonpositive": num(g["nonpositive"]["median"]),
                    "h1_lifetime_p": num(g["mannwhitney_p"])})
    if b["h2"]["testable"]:
        s = b["h2"]["by_sign"]
        row.update({"h2_survival_negative": s["negative"]["median_survival"],
                    "h2_survival_positive": s["positive"]["median_survival"],
                    "h2_survival_p": num(b["h2"]["mannwhitney_p"])})
        fraction("h2_seeds_negative_lower", b["h2"]["seeds_negative_lower"])
    if b["h3"]["testable"]:
        q = b["h3"]["peak_fraction"]
        row.update({"h3_peak_fraction": num(q["median"]), "h3_peak_fraction_q25": num(q["q25"]),
                    "h3_peak_fraction_q75": num(q["q75"]), "h3_peak_seeds": q["n"],
                    "h3_comatose_lifetime_median": num(b["h3"]["lifetime"]["median"])})
        fraction("h3_lifetime_at_most_2", b["h3"]["lifetime"]["at_most_2"])
    if b["h4"]["testable"]:
        r = b["h4"]["imp_vs_random"]
        row["h4_rho_median"] = num(b["h4"]["rho"]["median"])
        if r["testable"]:
            row.update({"h4_levels_above": r["levels_above"], "h4_levels_below": r["levels_below"],
                        "h4_levels_tested": r["levels_tested"]})
        fraction("h4_seeds_rho_positive", b["h4"]["seeds_rho_positive"])
    if b["h5"]["testable"]:
        row["h5_per_seed_fraction"] = num(b["h5"]["per_seed_fraction"]["median"])
        fraction("h5_bias_first", b["h5"]["bias_first"])
    budget = b["h5"]["budget_on_dead"]
    if budget["testable"]:
        row.update({"budget_on_dead_share": num(budget["share"]["median"]),
                    "budget_on_dead_share_q25": num(budget["share"]["q25"]),
                    "budget_on_dead_share_q75": num(budget["share"]["q75"])})
    if b["h6"]["testable"]:
        acc, deg = b["h6"]["at_last_level"]["test_acc"], b["h6"]["degradation_level"]
        row.update({"h6_test_acc_last_split": num(acc["split_median"]),
                    "h6_test_acc_last_never": num(acc["never_median"]),
                    "h6_test_acc_last_p": num(acc["mannwhitney_p"]),
                    "h6_degradation_split": num(deg["split_median"]),
                    "h6_degradation_never": num(deg["never_median"]),
                    "h6_degradation_p": num(deg["mannwhitney_p"])})
    if b["death_predicted"]["testable"]:
        fraction("death_predicted", b["death_predicted"]["exact"])
    row["zombies_without_bias"] = block["zombies_without_bias"]["total"]
    reasons = [f"{short}: {blk['reason'].removeprefix('not testable: ')}"
               for short, blk in b.items() if not blk["testable"]]
    if not budget["testable"]:
        reasons.append(f"budget: {budget['reason'].removeprefix('not testable: ')}")
    return {**row, "dying_not_testable": "; ".join(reasons)}
