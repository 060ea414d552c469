"""The markdown tables of docs/results.md (j) "What dies during IMP" (docs/science.md §8) from
analysed runs.

    python docs/runs/dying_tables.py FOLDER [FOLDER ...] [--per-level all|none|SUBSTRING,...]
    python docs/runs/dying_tables.py --help

A FOLDER is either a work folder (params.yaml, reports/analysis/{dying.json, episodes.csv,
bias_survival.csv, levels.csv, random_masks.csv}) or a flat result folder as the study collects
it (config.json, dying.json, episodes.csv, bias_survival.csv, levels.csv, random_levels.csv).
The random masks' levels are optional (no random-mask columns without them).

Per configuration, one table per question: H1 (zombie lifetime against trained bias), H2 (bias
survival by sign), H3 (comatose peak level / T, comatose lifetimes), H4 (zombies against level,
IMP against random masks), H5 (comatose biases pruned before detachment, budget spent on the
dead), H6 (split against never-split seeds), the death prediction. Across configurations, only
between configurations that differ in the compared axis alone: H3's per-seed peak fractions
across T and across widths (Kruskal–Wallis), and bias_init default against zero (Fisher's exact
test on the k/n answers, Mann–Whitney on per-seed values). Per level (median over seeds): τ_k,
zombie / comatose neurons (IMP, random masks), zombie weights' share, the budget spent on the
dead, alive share and effective density. Every k/n with its 95 % Wilson interval; tests are
scipy's (two-sided). Reads only these files; prints markdown on stdout.
"""
from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import cli, config, dying_answers, io, study_dying
from pipeline.analysis import fisher_p, wilson

ALPHA = 0.05
# the axes a configuration is known by (label, and the groups of the cross-configuration tests)
AXES = ("tasks", "hidden", "T", "bias_init", "biases", "method", "weight_decay")


# ---- reading ------------------------------------------------------------------------------------
@dataclass
class Run:
    """One configuration's dying files, read once."""
    name: str
    axes: dict
    answers: dict
    episodes: pd.DataFrame
    survival: pd.DataFrame
    levels: pd.DataFrame
    random: pd.DataFrame  # the random masks' levels; empty without the control
    seeds: pd.DataFrame = field(default_factory=pd.DataFrame)  # per-seed values, filled by load

    @property
    def last(self) -> int:
        return int(self.levels["level"].max())


def stop(message: str) -> None:
    """One line on stderr, exit code 2 (nothing printed on stdout yet)."""
    cli.stop(message)


def _axes(params: dict) -> dict:
    model, prune = params.get("model", {}), params.get("prune", {})
    return {"tasks": "+".join(params.get("data", {}).get("tasks", [])),
            "hidden": "x".join(str(h) for h in model.get("hidden", [])),
            "T": int(prune.get("iterations", 0)) + int(prune.get("extensions", 0) or 0),
            "bias_init": model.get("bias_init", "default"),
            "biases": bool(prune.get("biases", True)),
            "method": prune.get("method", "rewind"),
            "weight_decay": float(params.get("train", {}).get("weight_decay", 0.0) or 0.0),
            "control": bool(prune.get("random_mask_control", False))}


def load(folder: Path) -> Run:
    """A work folder (files under reports/analysis/) or a flat result folder; a missing or
    damaged file ends the script with one line naming it (io.read_csv / read_json)."""
    try:
        return _load(folder)
    except FileNotFoundError as exc:
        stop(f"{folder}: {exc.filename} is missing")
    except io.ReadError as exc:  # its first clause: `<file> is damaged … (<why>)`; the rest is
        stop(str(exc).split("; ")[0])  # about remaking pipeline outputs
    except config.ConfigError as exc:  # params.yaml of a work folder: not YAML, not readable
        stop(str(exc))


FILES_ALLOWED = ("allowed: beside dying.json, episodes.csv, bias_survival.csv and levels.csv "
                 "(random_levels.csv / random_masks.csv if the control ran) as the study writes them")


def _load(folder: Path) -> Run:
    if (folder / "reports" / "analysis" / "dying.json").is_file():
        files, random_name = folder / "reports" / "analysis", "random_masks.csv"
        params = config.read_sections(folder / "params.yaml")
        name = folder.resolve().name
    elif (folder / "dying.json").is_file():
        files, random_name = folder, "random_levels.csv"
        info = cli.read_input(folder / "config.json", io.read_json, FILES_ALLOWED)
        if not isinstance(info, dict):
            raise io.read_error(folder / "config.json", "not a configuration")
        params, name = info.get("params", info), info.get("name", folder.resolve().name)
    else:
        stop(f"FOLDER {str(folder)!r} is not allowed; allowed: a work folder "
             "(reports/analysis/dying.json) or a study result folder (dying.json)")
    # a missing, unreadable or damaged file, a folder or a broken link: one line (cli.read_input)
    read = {n: cli.read_input(files / f"{n}.csv", io.read_csv, FILES_ALLOWED)
            for n in ("episodes", "bias_survival", "levels")}
    random_path = files / random_name
    random = (cli.read_input(random_path, io.read_csv, FILES_ALLOWED)
              if random_path.exists() or random_path.is_symlink() else pd.DataFrame())
    run = Run(name, _axes(params), cli.read_input(files / "dying.json", io.read_json, FILES_ALLOWED),
              read["episodes"], read["bias_survival"], read["levels"], random)
    run.seeds = seed_values(run)
    return run


# ---- statistics: the pipeline's own (pipeline.analysis, pipeline.dying_answers), on the values
# a seed has (NaN where it has none) -----------------------------------------------------------
def _present(values) -> pd.Series:
    return pd.Series(values, dtype=float).dropna()


def mann_whitney(a, b) -> float | None:
    return dying_answers.mann_whitney(_present(a), _present(b))


def kruskal(groups: list) -> float | None:
    return dying_answers.kruskal_p([_present(g) for g in groups])


# ---- per seed ------------------------------------------------------------------------------------
def seed_values(run: Run) -> pd.DataFrame:
    """Per seed, the values the study compares (pipeline.study_dying.seed_values: H1's ρ and
    median zombie lifetime, H2's median survival negative − positive, H3's peak fraction, H4's
    ρ, H5's fraction with the bias first, the share of the budget on the dead), and the last
    level / T with a comatose neuron whose bias is unpruned (the thesis' "comatose biases drop
    to 0"; only where biases are prunable: a bias that is never pruned says nothing)."""
    seeds = sorted(run.levels["seed"].unique())
    files = study_dying.DyingFiles(run.answers, run.episodes, run.survival,
                                   pd.DataFrame(columns=["seed", "exact", "frozen"]))
    out = study_dying.seed_values(run.levels, files, seeds).set_index("seed")
    c = run.episodes[run.episodes["kind"] == "comatose"].drop_duplicates(["seed", "layer", "neuron"])
    out["comatose_with_bias_last"] = (_comatose_with_bias_last(c, run.last) if run.axes["biases"]
                                      else math.nan)
    return out


def _comatose_with_bias_last(c: pd.DataFrame, last: int) -> pd.Series:
    """Per seed: the last level at which some comatose neuron still has its bias unpruned, / T
    (the notes' "comatose biases drop to 0"); NaN where no comatose neuron ever has one."""
    out = {}
    for seed, g in c.groupby("seed"):
        first, stop_ = g["first_level"].to_numpy(), g["last_level"].to_numpy()
        bias = g["bias_pruned_level"].astype(float).fillna(np.inf).to_numpy()
        # levels of the episode at which the bias is unpruned: first .. min(last, bias − 1)
        until = np.minimum(stop_, bias - 1)
        has = until >= first
        out[seed] = float(until[has].max()) / last if has.any() else math.nan
    return pd.Series(out, dtype=float)


# ---- formatting ---------------------------------------------------------------------------------
def frac(block: dict | None) -> str:
    """'k/n (low–high)' from a dying.json k/n block or a (k, n) pair."""
    if not block:
        return "–"
    k, n = (block["k"], block["n"]) if isinstance(block, dict) else block
    if not n:
        return "0/0"
    lo, hi = wilson(k, n)
    digits = 2 if f"{lo:.2f}" != f"{hi:.2f}" else 4  # large n: show the interval, not "1.00–1.00"
    return f"{k}/{n} ({lo:.{digits}f}–{hi:.{digits}f})"


def num(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def pval(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.2g}"


def _range(low: float, high: float, digits: int) -> str:
    """'0.50–0.62', or '−0.51 to −0.06' where a bound is negative (a dash would read as minus)."""
    sep = " to " if min(low, high) < 0 else "–"
    return f"{num(low, digits)}{sep}{num(high, digits)}".replace("-", "−")


def quart(q: dict | None, digits: int = 2) -> str:
    if not q or q.get("median") is None:
        return "–"
    return f"{num(q['median'], digits).replace('-', '−')} [{_range(q['q25'], q['q75'], digits)}]"


def quart_of(values, digits: int = 2) -> str:
    v = pd.Series(values, dtype=float).dropna()
    if not len(v):
        return "–"
    return quart({"median": v.median(), "q25": v.quantile(0.25), "q75": v.quantile(0.75)}, digits)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def not_testable(block: dict | None) -> str | None:
    if block is None:
        return "not testable: no answer in dying.json"
    return None if block.get("testable") else block.get("reason") or "not testable"


# ---- labels ---------------------------------------------------------------------------------------
def varied(runs: list[Run]) -> list[str]:
    return [a for a in AXES if len({str(r.axes[a]) for r in runs}) > 1]


def label(run: Run, axes: list[str]) -> str:
    names = {"T": "T={}", "bias_init": "bias {}", "biases": "biases prunable: {}",
             "weight_decay": "wd {}", "tasks": "{}", "hidden": "{}", "method": "{}"}
    return " · ".join(names[a].format(run.axes[a]) for a in axes) if axes else run.name


# ---- per configuration ---------------------------------------------------------------------------
def configurations(runs: list[Run], lab) -> str:
    rows = [[lab(r), r.axes["tasks"], r.axes["hidden"], r.axes["T"], r.axes["bias_init"],
             "yes" if r.axes["biases"] else "no (weights only)", r.axes["method"],
             r.axes["weight_decay"], len(r.seeds), "on" if len(r.random) else "off"]
            for r in runs]
    return table(["configuration", "tasks", "hidden", "T", "bias init", "biases pruned", "method",
                  "weight decay", "seeds", "random masks"], rows)


def answer_table(runs: list[Run], lab, key: str, header: list[str], cells) -> str:
    """One row per configuration: its label and cells(run, answer) of the answer `key`, or the
    reason the run cannot test it followed by empty cells."""
    rows = []
    for r in runs:
        b = r.answers.get(key)
        why = not_testable(b)
        rows.append([lab(r), why, *[""] * (len(header) - 2)] if why else [lab(r), *cells(r, b)])
    return table(header, rows)


def h1_table(runs: list[Run], lab) -> str:
    def cells(r: Run, b: dict) -> list[str]:
        out = [f"{b['all']['episodes']} ({b['censored']})"]
        for part in ("all", "uncensored"):
            a = b[part]
            lo, hi = a["rho_ci95"]
            by = a["lifetime_by_bias"]
            out.append(f"{num(a['rho'])} ({_range(lo, hi, 2)})".replace("-", "−"))
            out.append(f"{num(by['positive']['median'], 0)} (n {by['positive']['n']}) / "
                       f"{num(by['nonpositive']['median'], 0)} (n {by['nonpositive']['n']}), "
                       f"p {pval(by['mannwhitney_p'])}")
        return out
    return answer_table(runs, lab, "h1_zombie_lifetime_vs_bias", [
        "configuration", "zombie episodes (censored)", "ρ lifetime vs bias, all (95 % seed "
        "bootstrap)", "median lifetime b > 0 / b ≤ 0, all (Mann–Whitney)", "ρ, uncensored",
        "median lifetime, uncensored"], cells)


def h2_table(runs: list[Run], lab) -> str:
    def cells(r: Run, b: dict) -> list[str]:
        neg, pos = b["by_sign"]["negative"], b["by_sign"]["positive"]
        return [f"{neg['n']} / {pos['n']}",
                f"{num(neg['median_survival'], 1)} / {num(pos['median_survival'], 1)}",
                f"{neg['censored']} / {pos['censored']}", pval(b["mannwhitney_p"]),
                frac(b["seeds_negative_lower"])]
    return answer_table(runs, lab, "h2_negative_biases_pruned_early", [
        "configuration", "biases negative / positive", "median survival (levels) neg / pos",
        "never pruned neg / pos", "Mann–Whitney p", "seeds: negative median lower"], cells)


def h3_table(runs: list[Run], lab) -> str:
    def cells(r: Run, b: dict) -> list[str]:
        peak_mean = int(r.levels.groupby("level")["comatose_neurons"].mean().idxmax())
        seeds_peak = r.seeds["h3_peak_fraction"].dropna()
        peak_count = r.levels.groupby("seed")["comatose_neurons"].max()
        return [f"{quart(b['peak_fraction'])} (n {b['peak_fraction']['n']})",
                f"{num(seeds_peak.median() * r.last, 1)} of {r.last}",
                f"{peak_mean} ({num(peak_mean / r.last)})", f"{num(peak_count.median(), 1)}",
                f"{b['lifetime']['episodes']} ({b['censored']})",
                f"{num(b['lifetime']['median'], 1)}; {frac(b['lifetime']['at_most_2'])}",
                quart_of(r.seeds["comatose_with_bias_last"]) if r.axes["biases"]
                else "not testable: biases are not prunable"]
    return answer_table(runs, lab, "h3_comatose_peak", [
        "configuration", "peak level / T, per seed (median [IQR])", "peak level",
        "peak of the mean count (level / T)", "comatose at the peak (median)",
        "comatose episodes (censored)", "lifetime: median; ≤ 2 levels",
        "last level / T with a comatose bias unpruned"], cells)


def h4_table(runs: list[Run], lab) -> str:
    def cells(r: Run, b: dict) -> list[str]:
        iv = b["imp_vs_random"]
        vs = (f"{iv['levels_below']} below / {iv['levels_above']} above of {iv['levels_tested']}"
              if iv.get("testable") else iv.get("reason"))
        last = r.levels[r.levels["level"] == r.last]["zombie_neurons"]
        rand = (r.random[r.random["level"] == r.last]["zombie_neurons"] if len(r.random)
                else pd.Series(dtype=float))
        return [frac(b["seeds_rho_positive"]) + (
            f", {b['constant_seeds']} constant" if b["constant_seeds"] else ""),
            quart(b["rho"]), vs, f"{num(last.median(), 1)} / {num(rand.median(), 1)}"]
    return answer_table(runs, lab, "h4_zombies_at_high_sparsity", [
        "configuration", "seeds with ρ > 0 (zombie neurons vs level)", "ρ (median [IQR])",
        "levels IMP below / above random masks (Wilcoxon p < 0.05)",
        "zombie neurons at T, IMP / random (median)"], cells)


def h5_table(runs: list[Run], lab) -> str:
    rows = []
    for r in runs:
        b = r.answers.get("h5_comatose_bias_before_detach") or {}
        budget = b.get("budget_on_dead") or {}
        q = budget.get("share") or {}
        digits = 4 if (q.get("median") or 0) < 0.01 else 3  # MNIST's share is a few in 10,000
        share = quart(q, digits) if budget.get("testable") else budget.get("reason")
        lv = r.levels[r.levels["level"] == r.last]["pruned_dead_share"]
        why = not_testable(b) if b else "not testable: no answer"
        if why:
            rows.append([lab(r), why, "", "", share, num(lv.median(), 3)])
            continue
        per_layer = ", ".join(f"layer {k}: {frac(v)}" for k, v in b["per_layer"].items())
        rows.append([lab(r), frac(b["bias_first"]), quart(b["per_seed_fraction"]), per_layer,
                     share, num(lv.median(), 3)])
    return table(["configuration", "comatose neurons with the bias pruned first",
                  "per-seed fraction (median [IQR])", "per layer", "budget on the dead, whole run "
                  "(median [IQR] over seeds)", "budget on the dead at T (median)"], rows)


def h6_table(runs: list[Run], lab) -> str:
    def cells(r: Run, b: dict) -> list[str]:
        out = [f"{b['seeds_split']} / {b['seeds_never']}"]
        for key in ("at_first_split_level", "at_last_level"):
            a = b[key]["test_acc"]
            out.append(f"level {b[key]['level']}: {num(a['split_median'], 3)} / "
                       f"{num(a['never_median'], 3)}, p {pval(a['mannwhitney_p'])}")
        d = b["degradation_level"]
        out.append(f"{num(d['split_median'], 1)} / {num(d['never_median'], 1)}, "
                   f"p {pval(d['mannwhitney_p'])}")
        worst = []
        for key in ("at_first_split_level", "at_last_level"):
            for col, a in b[key].items():
                if col.startswith("test_acc_") and a.get("mannwhitney_p") is not None \
                        and a["mannwhitney_p"] < ALPHA:
                    worst.append(f"{col.removeprefix('test_acc_')} at {b[key]['level']}: "
                                 f"{num(a['split_median'], 3)} / {num(a['never_median'], 3)} "
                                 f"(p {pval(a['mannwhitney_p'])})")
        return [*out, "; ".join(worst) or "none"]
    return answer_table(runs, lab, "h6_split_vs_unsplit_accuracy", [
        "configuration", "seeds split / never", "mean test acc. split / never, first split level",
        "… last level", "degradation level split / never", "tasks with p < 0.05 (split / never)"],
        cells)


def death_table(runs: list[Run], lab) -> str:
    def cells(r: Run, b: dict) -> list[str]:
        m = b["misses"]
        return [frac(b["exact"]), frac(b["by_kind"].get("weight")), frac(b["by_kind"].get("bias")),
                f"unfroze {m['unfroze']}, tie {m['tie']}, unexplained {m['unexplained']}"]
    return answer_table(runs, lab, "death_predicted", [
        "configuration", "frozen parameters whose death is exactly predicted", "weights",
        "biases", "misses"], cells)


# ---- across configurations -----------------------------------------------------------------------
def groups(runs: list[Run], axis: str) -> list[list[Run]]:
    """Runs that differ in `axis` alone (≥ 2 values), in the order given."""
    out: dict[tuple, list[Run]] = {}
    for r in runs:
        out.setdefault(tuple(str(r.axes[a]) for a in AXES if a != axis), []).append(r)
    return [g for g in out.values() if len({str(r.axes[axis]) for r in g}) > 1]


def across(runs: list[Run], axis: str, title: str) -> str:
    """H3 across one axis: per group, each configuration's per-seed peak fractions and
    Kruskal–Wallis' p; also the comatose lifetime (Kruskal on per-seed medians)."""
    found = groups(runs, axis)
    if not found:
        return f"*{title}: not testable: no two configurations differ in {axis} alone.*"
    rows = []
    for g in found:
        fixed = ", ".join(f"{a} {g[0].axes[a]}" for a in varied(runs) if a != axis)
        cells = [fixed or "–"]
        cells.append("; ".join(f"{r.axes[axis]}: {quart_of(r.seeds['h3_peak_fraction'])} "
                               f"(n {r.seeds['h3_peak_fraction'].notna().sum()})" for r in g))
        cells.append(pval(kruskal([r.seeds["h3_peak_fraction"] for r in g])))
        cells.append("; ".join(f"{r.axes[axis]}: {quart_of(r.seeds['comatose_with_bias_last'])}"
                               for r in g))
        cells.append(pval(kruskal([r.seeds["comatose_with_bias_last"] for r in g])))
        cells.append("; ".join(f"{r.axes[axis]}: {quart_of(r.seeds['h4_rho'])}" for r in g))
        cells.append(pval(kruskal([r.seeds["h4_rho"] for r in g])))
        rows.append(cells)
    return f"{title}\n\n" + table(
        ["fixed", "peak level / T per seed (median [IQR])", "Kruskal–Wallis p",
         "last level / T with a comatose bias unpruned", "Kruskal–Wallis p",
         "H4 ρ per seed", "Kruskal–Wallis p"], rows)


PAIRED = (  # (study_dying.seed_values column, its name in the table)
    ("zombie_lifetime_median", "median zombie lifetime"),
    ("h2_survival_difference", "H2 median survival neg − pos"),
    ("h5_bias_first_fraction", "H5 fraction bias first"),
    ("h3_peak_fraction", "H3 peak level / T"),
    ("budget_on_dead_share", "budget on the dead"))
FISHER = (("H2 seeds with the negative median lower",
           ("h2_negative_biases_pruned_early", "seeds_negative_lower")),
          ("H5 comatose neurons with the bias first",
           ("h5_comatose_bias_before_detach", "bias_first")))


def _fisher_cell(a: Run, b: Run, path: tuple[str, str]) -> str:
    ka, kb = (r.answers.get(path[0], {}) for r in (a, b))
    if not (ka.get("testable") and kb.get("testable")):
        return f"{not_testable(ka) or frac(ka[path[1]])} / {not_testable(kb) or frac(kb[path[1]])}"
    x, y = ka[path[1]], kb[path[1]]
    return f"{frac(x)} / {frac(y)}, Fisher p {pval(fisher_p(x['k'], x['n'], y['k'], y['n']))}"


def _mann_whitney_cell(a: Run, b: Run, col: str) -> str:
    va, vb = a.seeds[col].dropna(), b.seeds[col].dropna()
    digits = 3 if col == "budget_on_dead_share" else 2
    return f"{quart_of(va, digits)} / {quart_of(vb, digits)}, p {pval(mann_whitney(va, vb))}"


def bias_init_table(runs: list[Run]) -> str:
    """Every pair of bias_init values within a group that differs in bias_init alone: Fisher's
    exact test on H2's and H5's k/n; Mann–Whitney on the per-seed values (median [IQR] per seed,
    first / second). H1 is left out: with zero biases it is not testable (dying.json says why)."""
    found = groups(runs, "bias_init")
    if not found:
        return "*bias_init: not testable: no two configurations differ in bias_init alone.*"
    rows = []
    for g in found:
        for a, b in itertools.combinations(g, 2):
            fixed = ", ".join(f"{x} {a.axes[x]}" for x in varied(runs) if x != "bias_init")
            rows.append([f"{fixed}: {a.axes['bias_init']} / {b.axes['bias_init']}"]
                        + [_fisher_cell(a, b, path) for _, path in FISHER]
                        + [_mann_whitney_cell(a, b, col) for col, _ in PAIRED])
    return table(["pair (first / second)"] + [name for name, _ in FISHER]
                 + [f"{name} per seed (Mann–Whitney)" for _, name in PAIRED], rows)


# ---- per level ------------------------------------------------------------------------------------
def per_level(run: Run, lab, rows_at: list[int] | None = None) -> str:
    lv = run.levels.copy()
    weights = lv[["alive_w", "audience_w", "zombie_w", "unproductive_w"]].sum(axis=1)
    lv["zombie_w_share"] = lv["zombie_w"] / weights.where(weights > 0)
    lv["weights"] = weights
    med = lv.groupby("level").median(numeric_only=True)
    rand = (run.random.groupby("level").median(numeric_only=True) if len(run.random)
            else pd.DataFrame())
    rows = []
    for level, m in med.iterrows():
        if rows_at and int(level) not in rows_at:
            continue
        rr = rand.loc[level] if level in rand.index else None

        def both(col: str, digits: int) -> str:
            """IMP's median / the random masks' (– without the control or at level 0)."""
            return f"{num(m[col], digits)} / {num(rr[col], digits) if rr is not None else '–'}"

        rows.append([int(level), f"{m['params']:,.0f}", num(m.get("prune_threshold"), 3),
                     both("zombie_neurons", 1), num(m["comatose_neurons"], 1),
                     f"{100 * m['zombie_w_share']:.2f} %", num(m.get("pruned_dead_share"), 3),
                     both("alive_share", 3), both("effective_density", 4),
                     num(m.get("frozen_params"), 0)])
    return f"{lab(run)} (median over {len(run.seeds)} seeds)\n\n" + table(
        ["level", "P_k", "τ_k", "zombie neurons IMP / random", "comatose neurons",
         "zombie weights / unpruned weights", "budget on the dead", "alive share IMP / random",
         "effective density IMP / random", "frozen parameters"], rows)


def width(hidden) -> int:
    """The first hidden layer's width of "40x40" (0 where unknown), for sorting."""
    try:
        return int(str(hidden).split("x")[0])
    except ValueError:
        return 0


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("python docs/runs/dying_tables.py", __doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, metavar="FOLDER",
                    help="a work folder (params.yaml, reports/analysis/dying.json, …) or a study "
                         "result folder (config.json, dying.json, …)")
    ap.add_argument("--per-level", default=None,
                    help="all, none, or comma-separated substrings of configuration names "
                         "(default: all for up to 3 folders, else none)")
    ap.add_argument("--rows", default=None,
                    help="comma-separated levels for the per-level tables (default: every level)")
    args = ap.parse_args(argv)
    try:
        rows_at = [int(x) for x in args.rows.split(",")] if args.rows else None
    except ValueError:
        stop(f"--rows: {args.rows!r} is not allowed; allowed: comma-separated level numbers, "
             "e.g. 0,5,10,20")
    if args.per_level is not None and not all(args.per_level.split(",")):
        stop(f"--per-level: {args.per_level!r} is not allowed; allowed: all, none, or "
             "comma-separated substrings of configuration names")
    seen: dict[Path, Path] = {}
    for folder in args.folders:  # one folder twice would be compared with itself
        cli.refuse_twice(folder, seen, "FOLDER",
                         "allowed: distinct work or study result folders, each once")
    runs = [load(f) for f in args.folders]
    levels = sorted({int(v) for r in runs for v in r.levels["level"]})
    if rows_at and not set(rows_at) <= set(levels):
        stop(f"--rows: {args.rows!r} is not allowed; allowed: levels of the runs "
             f"({levels[0]} to {levels[-1]})")
    # T, then width, then bias init: the order of the tables in docs/results.md (j)
    runs.sort(key=lambda r: (int(r.axes.get("T") or 0), width(r.axes.get("hidden")),
                             str(r.axes.get("bias_init"))))
    choice = args.per_level or ("all" if len(runs) <= 3 else "none")
    chosen = (runs if choice == "all" else [] if choice == "none"
              else [r for r in runs if any(s in r.name for s in choice.split(","))])
    if choice not in ("all", "none") and not chosen:
        stop(f"--per-level: {choice!r} is not allowed; allowed: all, none, or substrings of the "
             "configuration names: " + ", ".join(r.name for r in runs))
    axes = varied(runs)

    def lab(r: Run) -> str:
        return label(r, axes)

    sections = [("Configurations", configurations(runs, lab)),
                ("H1: zombie lifetime against the trained bias", h1_table(runs, lab)),
                ("H2: bias survival by the sign of the dense trained bias", h2_table(runs, lab)),
                ("H3: comatose peak and lifetimes", h3_table(runs, lab)),
                ("H4: zombie neurons against level; IMP against random masks", h4_table(runs, lab)),
                ("H5: comatose biases before detachment; the budget on the dead",
                 h5_table(runs, lab)),
                ("H6: split against never-split seeds", h6_table(runs, lab)),
                ("Death prediction", death_table(runs, lab))]
    if len(runs) > 1:
        sections += [("Across configurations",
                      across(runs, "T", "H3 across T (same width and bias init)") + "\n\n"
                      + across(runs, "hidden", "H3 across widths (same T and bias init)")),
                     ("bias_init: default against zero", bias_init_table(runs))]
    for r in chosen:
        sections.append(("Per level", per_level(r, lab, rows_at)))
    for title, text in sections:
        print(f"### {title}\n\n{text}\n")


if __name__ == "__main__":
    sys.exit(cli.pipe_safe(main))
