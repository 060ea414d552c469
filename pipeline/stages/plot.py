"""Stage `plot`: reports → reports/figures/*.png (git-tracked, embedded in the report),
reports/every_level/network_levels.{png,gif} (DVC-cached: megabytes) and reports/report.md."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import config, cut, drawing, dying_plots, health, io, palette, plots
from pipeline import trajectory as traj
from pipeline.analysis import fraction_text
from pipeline.data import load as load_data
from pipeline.imp import LEVELS_COLUMNS, check_written, level_path, load_level
from pipeline.paths import RunPaths
from pipeline.stages import cli


def drawing_levels(seeds: pd.DataFrame, seed: int, last: int) -> list[tuple[str, int]]:
    """Dense, first split (if the seed splits) and last level."""
    chosen = [("dense", 0)]
    row = seeds[seeds["seed"] == seed]
    if len(row) and not pd.isna(row["first_split_level"].iloc[0]):
        chosen.append(("first split", int(row["first_split_level"].iloc[0])))
    if last not in [lv for _, lv in chosen]:
        chosen.append(("last", last))
    return chosen


def draw_networks(tasks, seed: int, levels: list[tuple[str, int]], n_levels: int, dpi: int,
                  imp: pd.DataFrame, analysis: pd.DataFrame,
                  paths: RunPaths = RunPaths()) -> list[str]:
    """network.png (the chosen levels; reports/figures), network_levels.png (every level) and
    network_levels.gif (one frame per level; both in reports/every_level) of one seed, all in
    the same layout: the node order of its first split level (else its last level)."""
    views, cuts = {}, {}
    for level in range(n_levels):  # each level file is read once
        state = load_level(level_path(paths.imp, level))
        views[level] = drawing.net_view(state, seed, tasks)
        cuts[level] = cut.seed_cut(state, seed, tasks)  # C_w, marked black dashed
    cuts = cuts if all(c is not None for c in cuts.values()) else None
    first_split = next((lv for name, lv in levels if name == "first split"), None)
    ref = drawing.reference_level(first_split, n_levels)
    order = drawing.neuron_order(views[ref], [views[lv] for lv in range(ref - 1, -1, -1)])

    mine = imp[imp["seed"] == seed].set_index("level")
    # NaN ("not applicable", one task) is not a split
    split = analysis[analysis["seed"] == seed].set_index("level")["split"].eq(True)
    distance = (analysis[analysis["seed"] == seed].set_index("level")["split_distance"]
                if "split_distance" in analysis else pd.Series(dtype=float))

    def title(level: int, name: str | None = None) -> str:
        head = f"{name} (level {level})" if name else f"level {level}"
        d = distance.get(level, np.nan)
        return (f"{head}: {int(mine.loc[level, 'params'])} params"
                + (", split" if split.get(level, False) else "")
                + ("" if pd.isna(d) else f", d = {int(d)}"))

    layout_note = f"layout of level {ref}" + (" (first split)" if first_split is not None
                                               else " (last level; this seed never splits)")
    fig = drawing.figure_levels(views, tasks, order, [(lv, title(lv, name)) for name, lv in levels],
                                f"Network of seed {seed}: one band per task, {layout_note}; "
                                "width ∝ |w|", cuts=cuts)
    plots.save(fig, paths.figures / "network.png", dpi)
    fig = drawing.figure_levels(views, tasks, order, [(lv, title(lv)) for lv in range(n_levels)],
                                f"Every IMP level of seed {seed} ({layout_note})", cols=5,
                                compact=True, cuts=cuts)
    plots.save(fig, paths.every_level / "network_levels.png", dpi)
    drawing.animate(views, tasks, order, {lv: title(lv) for lv in range(n_levels)},
                    f"Seed {seed} through the IMP levels", paths.every_level / "network_levels.gif",
                    dpi=min(dpi, 80), cuts=cuts)


def read_trajectory(shape: Path = RunPaths().shape_json,
                    trajectory: Path = RunPaths().trajectory_csv) -> tuple[dict, list[int]]:
    """The run's shape (trajectory stage: layers, base_layers, extensions) and its prunable
    parameter count per level, as the trajectory stage wrote them (not recomputed)."""
    traj.read_shape(shape)  # a damaged or foreign file: one line naming it
    return io.read_json(Path(shape), required=("extensions",)), traj.read_csv(trajectory)[1]


def report(params: config.Params, metrics: dict, seeds: pd.DataFrame, tasks,
           figures: list[str], paths: RunPaths = RunPaths(), answers: dict | None = None,
           not_drawn: list[str] | None = None, drawn_seed: int | None = None) -> str:
    """reports/report.md: the answers of docs/science.md §1 across seeds, with the "Tasks not
    learned", learned-check and "Run health" blocks first when anything went wrong."""
    lines = ["# ticketsplit report", "", configuration_line(params, metrics, tasks, paths), "",
             "## Does the ticket split?", ""]
    if not metrics.get("split_applicable", True):
        lines += one_task_lines(metrics, tasks)
    else:
        lines += split_answer_lines(metrics, tasks) + per_seed_lines(seeds)
    lines += dying_lines(answers)
    lines += ["", *figure_lines(figures, not_drawn or [], drawn_seed)]
    return with_blocks("\n".join(lines) + "\n", metrics)


def figure_lines(figures: list[str], not_drawn: list[str], drawn_seed: int | None) -> list[str]:
    """The report's "Figures" section: every figure of reports/figures embedded (git-tracked, so
    a clone shows them), the drawings of every level named (reports/every_level: DVC-cached,
    not in git for their size) and one line per figure not drawn, saying why."""
    lines = ["## Figures", "", *[f"![{f}](figures/{f})" for f in figures]]
    if "network.png" in figures and drawn_seed is not None:
        lines += ["", f"Every IMP level of seed {drawn_seed} in the layout of network.png: "
                  "`reports/every_level/network_levels.png` and, one frame per level, "
                  "`reports/every_level/network_levels.gif` (written by `dvc repro`; kept out of "
                  "git for their size)."]
    return lines + (["", *[f"- {line}." for line in not_drawn]] if not_drawn else [])


def configuration_line(params: config.Params, metrics: dict, tasks, paths: RunPaths) -> str:
    """The report's first line: tasks, shape, init, optimizer, trajectory and seeds."""
    shape, counts = read_trajectory(paths.shape_json, paths.trajectory_csv)
    batch = "full batch" if params.train.batch_size is None else f"batch {params.train.batch_size}"
    return (f"Tasks **{', '.join(t.name for t in tasks)}**; shape "
            f"{shape['layers']} (base {shape['base_layers']}, {shape['extensions']} extensions); "
            f"init {params.model.init} (bias {params.model.bias_init}); {params.train.optimizer} "
            f"lr {params.train.lr}, {batch}; {len(counts) - 1} levels from {counts[0]} to "
            f"{counts[-1]} prunable parameters (biases {'' if params.prune.biases else 'not '}"
            f"prunable); {metrics['seeds']} seeds.")


def one_task_lines(metrics: dict, tasks) -> list[str]:
    """A one-task run: split not applicable, degradation, learned, dense accuracy."""
    lines = [*split_criteria_lines(metrics), degradation_line(metrics), *learned_lines(metrics),
             "", "| task | dense test acc |", "|---|---|"]
    return lines + [f"| {t.name} | {plots.fmt(metrics['dense_test_acc'][t.name])} |"
                    for t in tasks]


def split_answer_lines(metrics: dict, tasks) -> list[str]:
    """The headline fractions, first split, degradation, learned, the null model, the criteria
    side by side and the accuracy per task."""
    s, d, n = metrics["split"], metrics["degradation"], metrics["seeds"]
    lines = [
        f"- Seeds split ({metrics.get('split_criterion', 'complete')} split): "
        f"**{fraction_text(s['seeds_split'], n)}**; before any task degraded by more than "
        f"{d['threshold']:.0%}: **{fraction_text(s['seeds_split_before_degradation'], n)}**.",
        first_split_line(s), degradation_line(metrics), *learned_lines(metrics),
        *random_mask_lines(metrics), *split_criteria_lines(metrics), "",
        "| task | dense test acc | test acc at first split |", "|---|---|---|"]
    return lines + [f"| {t.name} | {plots.fmt(metrics['dense_test_acc'][t.name])} | "
                    f"{plots.fmt(metrics['test_acc_at_split'][t.name])} |" for t in tasks]


def per_seed_lines(seeds: pd.DataFrame) -> list[str]:
    """The per-seed table of the headline criterion."""
    lines = ["", "## Per seed", "", "| seed | first split level | params at split | alive at "
             "split | degradation level | split before degradation |", "|---|---|---|---|---|---|"]
    counts = ("seed", "first_split_level", "params_at_split", "alive_at_split",
              "degradation_level")
    for _, r in seeds.iterrows():
        cells = [plots.fmt(None if pd.isna(r[c]) else r[c], 0) for c in counts]
        cells.append(str(bool(r["split_before_degradation"])))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def median_range(block: dict) -> str:
    """`median (min–max)` of a {median, min, max} block; "–" alone when there is none (no
    seed split), never "– (–––)"."""
    if block.get("median") is None:
        return "–"
    return (f"{plots.fmt(block['median'], 1)} ({plots.fmt(block['min'], 0)}–"
            f"{plots.fmt(block['max'], 0)})")


def first_split_line(s: dict) -> str:
    """The report's first-split line of a metrics split block; no dashes when nothing split."""
    if s["first_split_level"].get("median") is None:
        return "- First split level: none (no seed split at any level)."
    return (f"- First split level: median {plots.fmt(s['first_split_level']['median'], 1)} "
            f"(min {plots.fmt(s['first_split_level']['min'], 0)}, "
            f"max {plots.fmt(s['first_split_level']['max'], 0)}); parameters at the split: "
            f"median {plots.fmt(s['params_at_split']['median'], 0)}, alive "
            f"{plots.fmt(s['alive_at_split']['median'], 0)}.")


def degradation_line(metrics: dict) -> str:
    """The report's degradation line; tasks not learned (metrics `learned`) are named: their
    degradation is measured from an unlearned dense reference."""
    d = metrics["degradation"]
    line = (f"- First degradation level: median {plots.fmt(d['first_degradation_level']['median'], 1)} "
            f"({d['seeds_degraded']} seeds degrade within the run).")
    weak = d.get("unlearned_reference") or []
    if weak:
        line += (f" For {', '.join(weak)} degradation is measured from an **unlearned reference** "
                 "(the dense accuracy is below the task alone; see *Tasks not learned* above).")
    return line


def learned_block(learned: dict | None) -> list[str]:
    """The report's blocks about learning (stage `learned`), each only when it has something to
    say: "Tasks not learned" (the check ran and some task is not learned), "Tasks learned: not
    checked" (the check was skipped: why, and the command that runs it) and "Dense nets below a
    linear model or near chance" (checked or not)."""
    if not learned:
        return []
    return [*not_learned_block(learned), *not_checked_block(learned), *linear_block(learned)]


def not_learned_block(learned: dict) -> list[str]:
    """"Tasks not learned": the tasks whose dense accuracy is not that of the task alone."""
    if not learned.get("checked") or learned.get("all_learned"):
        return []
    lines = ["## Tasks not learned", "",
             f"{', '.join(f'**{t}**' for t in learned['not_learned'])}: the dense net's test "
             "accuracy is not within "
             f"{learned['tolerance']:g} of the same task trained alone, or some net failed on it "
             "(docs/science.md §4). Its degradation, and so a split before degradation, is "
             "measured from an unlearned reference.", "",
             "| task | dense (side by side) | alone | gap, mean (worst seed) | failed side / alone |",
             "|---|---|---|---|---|"]
    for name, r in learned["tasks"].items():
        if not r["learned"]:
            lines.append(f"| {name} | {r['dense_test_acc']:.3f} | {r['alone_test_acc']:.3f} | "
                         f"{r['gap']:.3f} ({r['max_gap']:.3f}) | "
                         f"{r['side_failed']} / {r['alone_failed']} |")
    return lines + ["", "Check it for other seeds or presets with `python -m pipeline.baseline`.", ""]


def not_checked_block(learned: dict) -> list[str]:
    """"Tasks learned: not checked": why the comparison with each task alone did not run, and
    the one command that runs it."""
    if learned.get("checked"):
        return []
    return ["## Tasks learned: not checked", "",
            f"Each task's dense accuracy was not compared with the same task trained alone "
            f"({learned.get('reason', 'no reason recorded')}; docs/science.md §4), so nothing "
            "below says whether the dense nets learned their tasks as well as the protocol can. "
            f"Check it: `{learned.get('command', 'python -m pipeline.baseline')}`.", ""]


def linear_block(learned: dict) -> list[str]:
    """"Dense nets below a linear model or near chance": the tasks whose mean dense test
    accuracy is below a linear model's on the same rows, or within the margin of always guessing
    the most frequent class; the split and the dying structure of such nets say little."""
    linear = learned.get("linear")
    if not linear or not (linear["below"] or linear["near_chance"]):
        return []
    weak = list(dict.fromkeys(linear["below"] + linear["near_chance"]))
    n = linear.get("seeds")
    lines = ["## Dense nets below a linear model or near chance", "",
             f"{', '.join(f'**{t}**' for t in weak)}: the dense nets' mean test accuracy is below "
             f"that of a {linear['model']}, or within {linear['near_chance_margin']:g} of always "
             "guessing the most frequent class (docs/science.md §4). Everything below analyses "
             "nets that did not learn these tasks; read it with this in mind.", "",
             "| task | dense test acc, mean | linear model | most frequent class | nets below "
             "the linear model |", "|---|---|---|---|---|"]
    for name in weak:
        r = linear["tasks"][name]
        below = f"{r['nets_below']}" + (f"/{n}" if n else "")
        lines.append(f"| {name} | {r['dense_test_acc']:.3f} | {r['test_acc']:.3f} | "
                     f"{r['majority_rate']:.3f} | {below} |")
    return lines + [""]


def learned_lines(metrics: dict) -> list[str]:
    """Was every task learned (stage `learned`), not checked, or which were not; and the linear
    reference beside the dense accuracy."""
    learned = metrics.get("learned")
    if not learned:
        return []
    if not learned.get("checked"):
        lines = ["- Tasks learned: not checked against each task alone (see *Tasks learned: not "
                 "checked* above)."]
    elif learned.get("all_learned"):
        lines = [f"- Every task learned: each within {learned['tolerance']:g} of the same task "
                 "trained alone (docs/science.md §4)."]
    else:
        lines = [f"- **Not learned**: {', '.join(learned['not_learned'])} (see *Tasks not "
                 "learned*)."]
    linear = learned.get("linear")
    if linear:
        pairs = ", ".join(f"{t} {r['dense_test_acc']:.3f} vs {r['test_acc']:.3f}"
                          for t, r in linear["tasks"].items())
        if linear["below"] or linear["near_chance"]:
            lines.append(f"- **Below a linear model or near chance**: "
                         f"{', '.join(dict.fromkeys(linear['below'] + linear['near_chance']))} "
                         f"(dense vs linear test accuracy: {pairs}; see above).")
        else:
            lines.append(f"- Above a linear model: every task's mean dense test accuracy beats a "
                         f"logistic regression on the same rows ({pairs}).")
    return lines


def with_blocks(report_text: str, metrics: dict) -> str:
    """report.md with the learning blocks (learned_block) and then the "Run health" block right
    after its title (each only when something is off)."""
    text = health.with_block(report_text, metrics.get("health"))
    lines = learned_block(metrics.get("learned"))
    if not lines:
        return text
    title, sep, rest = text.partition("\n\n")
    return title + sep + "\n".join(lines) + "\n" + rest


def split_figures(analysis: pd.DataFrame, seeds: pd.DataFrame, tasks,
                  folder: Path = RunPaths().analysis,
                  base: tuple[int, int] | None = None, random: pd.DataFrame | None = None) -> dict:
    """The split-criteria figures (docs/science.md §6) that apply to this run: per-level fractions
    of the four criteria, λ and λ_w per level, the split distance d and d_w (IMP and the random
    masks `random`, random_masks.csv, where the control ran; `base` = (level, parameters) of the
    base count marked) — not with one task — and coverage maps (image tasks; from coverage.npz
    in `folder`, the analyze stage's output)."""
    random = random if random is not None and len(random) else None
    figs = {"split_criteria.png": plots.split_criteria_over_levels(analysis),
            "leakage.png": plots.leakage_over_levels(analysis),
            "split_distance.png": plots.split_distance_over_levels(
                analysis, random, *(base if base is not None else (None, None)))}
    path = folder / "coverage.npz"
    if path.exists() and palette.colour_only_refusal("coverage maps", len(tasks)) is None:
        f = io.read_npz(path)
        figs["coverage_maps.png"] = plots.coverage_maps(f["used"], f["levels"], f["task"],
                                                        tasks, seeds, f["seeds"])
    return {name: fig for name, fig in figs.items() if fig is not None}


def split_criteria_lines(metrics: dict) -> list[str]:
    """The report's split criteria: complete, effective and functional side by side, and the
    gap between the first functional and the first structural split (docs/science.md §6)."""
    n = metrics["seeds"]
    if not metrics.get("split_applicable", True):
        return ["- **Not applicable**: a split needs at least two tasks; this run has one "
                "(a single-task accuracy baseline). Every split quantity is null."]
    if "split_complete" not in metrics:
        return []
    tol = metrics.get("functional_tolerance")
    lines = ["", f"Split criteria side by side (headline: **{metrics['split_criterion']}**; "
             "docs/science.md §6):", "",
             "| criterion | seeds split | before degradation | first split level, median "
             "(min–max) | parameters at split, median |", "|---|---|---|---|---|"]
    for c in ("complete", "effective", "output", "functional"):
        b = metrics.get(f"split_{c}")
        if b is None:
            continue
        f = b["first_split_level"]
        name = {"output": "output (the thesis' MNIST criterion)",
                "functional": "functional (minimum cut C_w zeroed"
                              + ("" if tol is None else f", δ = {tol:g}") + ")"}.get(c, c)
        lines.append(f"| {name} | {fraction_text(b['seeds_split'], n)} | "
                     f"{fraction_text(b['seeds_split_before_degradation'], n)} | "
                     f"{median_range(f)} | {plots.fmt(b['params_at_split']['median'], 0)} |")
    lines += coverage_leakage_lines(metrics)
    lines += split_distance_lines(metrics)
    gap = metrics.get("functional_gap_levels")
    if gap is not None and gap.get("median") is not None:
        lines += ["", f"- Levels from the first functional to the first {metrics['split_criterion']} "
                  f"split (seeds with both): median {plots.fmt(gap['median'], 1)} "
                  f"(min {plots.fmt(gap['min'], 0)}, max {plots.fmt(gap['max'], 0)}) — how long "
                  "IMP keeps cross-task weights the tasks no longer need."]
    return lines


def coverage_leakage_lines(metrics: dict) -> list[str]:
    """Coverage per task and leakage λ, λ_w (docs/science.md §6), medians over seeds."""
    out = []
    cov = metrics.get("coverage")
    if cov:
        def per_task(block: dict) -> str:
            return ", ".join(f"{name} {plots.fmt(v, 2)}" for name, v in block.items())
        out.append(f"- Coverage (fraction of each task's inputs still used), median over seeds: at "
                   f"the first split {per_task(cov['at_split'])}; at the last level "
                   f"{per_task(cov['last_level'])}.")
    lam, lam_w = metrics.get("leakage"), metrics.get("leakage_w")
    if lam and lam["last_level"]["median"] is not None:
        q = lam["last_level"]
        text = (f"- Leakage at the last level (share of input → output paths that cross tasks; "
                f"0 = pure): λ median {plots.fmt(q['median'], 3)} (IQR {plots.fmt(q['q25'], 3)}–"
                f"{plots.fmt(q['q75'], 3)})")
        if lam_w and lam_w["last_level"]["median"] is not None:
            text += f", λ_w median {plots.fmt(lam_w['last_level']['median'], 3)}"
        out.append(text + ".")
    return [""] + out if out else []


def split_distance_lines(metrics: dict) -> list[str]:
    """How far the tickets are from a split (docs/science.md §6): d and d_w's share at the first
    functional split and at the last level, the first levels with d ≤ 1 and d = 0, and the
    random masks' d at the last level where the control ran."""
    sd = metrics.get("split_distance")
    if not sd:
        return []
    n = metrics["seeds"]

    def at(block: dict) -> str:
        d, w = block["d"], block["d_w_share"]
        if d["median"] is None:
            return "no seed has one"
        return (f"median d = {plots.fmt(d['median'], 1)} weights (IQR {plots.fmt(d['q25'], 1)}–"
                f"{plots.fmt(d['q75'], 1)}), d_w = {plots.fmt(100 * w['median'], 2)} % of the "
                "alive |w| mass")

    bound = "" if sd["exact"] else " (T > 2: isolating-cut upper bound)"
    lines = ["", f"- Split distance{bound} — the fewest alive weights whose removal leaves no "
             f"path between two tasks: at the first functional split {at(sd['at_functional_split'])}; "
             f"at the last level {at(sd['last_level'])}."]
    first1, first0 = sd["first_level_distance_at_most_1"], sd["first_level_distance_0"]
    lines.append(f"- First level with d ≤ 1: median {plots.fmt(first1['median'], 1)} (seeds "
                 f"reaching it: {fraction_text(first1['seeds'], n)}); with d = 0 (pure): median "
                 f"{plots.fmt(first0['median'], 1)} ({fraction_text(first0['seeds'], n)}).")
    r = sd.get("random_mask")
    if r:
        lines.append(f"- Random masks of the same per-layer sparsity, last level: "
                     f"{at(r['last_level'])}; d = 0 at some level in "
                     f"{fraction_text(r['first_level_distance_0']['seeds'], n)} of the seeds.")
    return lines


# ---- "What dies during IMP" (docs/science.md §8; metrics.json `dying`) ------------------------------
def share_text(block: dict) -> str:
    """'807/876 (0.92, 95% CI 0.90–0.94)' from a {k, n, fraction, low, high} block."""
    if not block["n"]:
        return "0/0"
    return (f"{block['k']}/{block['n']} ({block['fraction']:.2f}, 95% CI {block['low']:.2f}–"
            f"{block['high']:.2f})")


def dying_lines(d: dict | None) -> list[str]:
    """The report's section "What dies during IMP" from the answers d
    (reports/analysis/dying.json): one line per hypothesis (its number and interval or test, or
    its "not testable" reason) and the death prediction."""
    if not d:
        return []
    lines = ["", "## What dies during IMP", ""]
    lines.append("Each line tests a claim of the notes (in italics) and gives what this run measured; "
                 "the numbers decide, not the claim (docs/criteria.md, \"What dies during IMP\").")
    lines.append("")
    for key, title, claim, text in DYING_LINES:
        block = d[key]
        body = text(block) if block["testable"] or key in ALWAYS else block["reason"]
        lines.append(f"- **{title}**{f' (*{claim}*?)' if claim else ''}: {body}.")
    return lines + [f"- Zombie neurons whose bias was already pruned (constant 0, no episode): "
                    f"{d['zombies_without_bias']['total']} over all seeds."]


def _h1_text(b: dict) -> str:
    def part(x: dict) -> str:
        g = x["lifetime_by_bias"]
        return (f"ρ(lifetime, trained bias) = {plots.fmt(x['rho'], 2)} (95% seed-bootstrap CI "
                f"{plots.fmt(x['rho_ci95'][0], 2)} to {plots.fmt(x['rho_ci95'][1], 2)}; "
                f"{x['episodes']} episodes); median lifetime {plots.fmt(g['positive']['median'], 1)} "
                f"levels for bias > 0 ({g['positive']['n']}) vs "
                f"{plots.fmt(g['nonpositive']['median'], 1)} for bias ≤ 0 "
                f"({g['nonpositive']['n']}), Mann–Whitney p = {plots.p_text(g['mannwhitney_p'])}")
    return (f"{part(b['all'])}; uncensored episodes only ({b['censored']} censored left out): "
            f"{part(b['uncensored'])}")


def _h2_text(b: dict) -> str:
    s = b["by_sign"]
    return (f"median survival {plots.fmt(s['negative']['median_survival'], 1)} levels for negative "
            f"dense biases ({s['negative']['n']}) vs {plots.fmt(s['positive']['median_survival'], 1)}"
            f" for positive ({s['positive']['n']}), Mann–Whitney p = {plots.p_text(b['mannwhitney_p'])}; "
            f"negative median lower in {share_text(b['seeds_negative_lower'])} of the seeds")


def _h3_text(b: dict) -> str:
    q, life = b["peak_fraction"], b["lifetime"]
    return (f"the comatose count first peaks at level / T = {plots.fmt(q['median'], 2)} (IQR "
            f"{plots.fmt(q['q25'], 2)}–{plots.fmt(q['q75'], 2)}, {q['n']} seeds, T = {b['levels']}); "
            f"comatose episodes last a median {plots.fmt(life['median'], 1)} levels, ≤ 2 levels in "
            f"{share_text(life['at_most_2'])} ({b['censored']} censored)")


def _h4_text(b: dict) -> str:
    r = b["imp_vs_random"]
    chance = (f"IMP above the random masks at {r['levels_above']} and below at {r['levels_below']}"
              f" of {r['levels_tested']} levels (Wilcoxon signed-rank, p < 0.05)"
              if r["testable"] else r["reason"])
    return (f"zombie-neuron count rises with the level (Spearman ρ > 0) in "
            f"{share_text(b['seeds_rho_positive'])} of the seeds with a varying count "
            f"({b['constant_seeds']} constant); {chance}")


def _h5_text(b: dict) -> str:
    """H5's line, and the budget spent on the dead, which is measured even where the bias
    question is not testable."""
    budget = b["budget_on_dead"]
    share = budget.get("share") or {}
    spent = (f"pruning budget spent on parameters that were not alive: median "
             f"{plots.fmt(100 * share['median'], 1)} % per seed (IQR "
             f"{plots.fmt(100 * share['q25'], 1)}–{plots.fmt(100 * share['q75'], 1)} %)"
             if budget["testable"] else budget["reason"].replace("not testable", "budget"))
    if not b["testable"]:
        return f"{b['reason']}; {spent}"
    return (f"bias pruned before the last incoming weight in {share_text(b['bias_first'])} of the "
            f"comatose neurons (per-seed median {plots.fmt(b['per_seed_fraction']['median'], 2)});"
            f" {spent}")


def _h6_text(b: dict) -> str:
    def acc(x: dict) -> str:
        a = x["test_acc"]
        return (f"{plots.fmt(a['split_median'])} vs {plots.fmt(a['never_median'])} at level "
                f"{x['level']} (p = {plots.p_text(a['mannwhitney_p'])})")
    dl = b["degradation_level"]
    return (f"median test accuracy of the {b['seeds_split']} seeds that split vs the "
            f"{b['seeds_never']} that never do: {acc(b['at_first_split_level'])}, "
            f"{acc(b['at_last_level'])}; degradation level {plots.fmt(dl['split_median'], 1)} vs "
            f"{plots.fmt(dl['never_median'], 1)} (p = {plots.p_text(dl['mannwhitney_p'])}; never: T + 1)")


def _death_text(b: dict) -> str:
    m = b["misses"]
    return (f"{share_text(b['exact'])} frozen parameters die exactly at the level the pruning "
            f"threshold predicts ({b['method']}, weight decay {b['weight_decay']:g}); misses: "
            f"{m['unfroze']} unfroze, {m['tie']} tie, {m['unexplained']} unexplained")


ALWAYS = {"h5_comatose_bias_before_detach"}  # lines with a part measured whether testable or not
DYING_LINES = (  # (key, the question, the notes' claim it tests, its line)
    ("h1_zombie_lifetime_vs_bias", "H1", "zombies with a positive bias live longer", _h1_text),
    ("h2_negative_biases_pruned_early", "H2", "negative biases are pruned early", _h2_text),
    ("h3_comatose_peak", "H3", "comatose neurons peak at a fixed fraction of the run", _h3_text),
    ("h4_zombies_at_high_sparsity", "H4", "zombies appear at high sparsity", _h4_text),
    ("h5_comatose_bias_before_detach", "H5", "comatose biases are pruned before detachment",
     _h5_text),
    ("h6_split_vs_unsplit_accuracy", "H6", "nets that do not split perform worse", _h6_text),
    ("death_predicted", "Death of frozen parameters", None, _death_text),
)


def random_mask_lines(metrics: dict) -> list[str]:
    """The null model, where prune.random_mask_control ran: chance splits and Fisher's test."""
    r = metrics.get("random_mask")
    if r is None:
        return []
    return [f"- Random masks of the same per-layer sparsity split (at some level) in "
            f"**{fraction_text(r['seeds_split'], metrics['seeds'])}** of the seeds; IMP vs "
            f"random masks, Fisher's exact test: p = {r['fisher_p_imp_vs_random']:.3g}."]


def curve_table(curves: pd.DataFrame, seed: int, points: int = 120) -> pd.DataFrame:
    """The drawn seed's loss curves at about `points` log-spaced epochs per level: the small
    git-tracked file behind the `dvc plots` view of validation curves coloured by level."""
    c = curves[curves["seed"] == seed]
    keep = []
    for _, g in c.groupby("level", sort=True):
        n = len(g)
        idx = np.unique(np.round(np.geomspace(1, n, min(points, n))).astype(int) - 1)
        keep.append(g.iloc[idx])
    out = pd.concat(keep, ignore_index=True)[["level", "epoch", "train_loss", "val_loss"]]
    return out


def draw_seed(params: config.Params, seeds: pd.DataFrame) -> int:
    """plot.draw_seed, or when it is null the lowest seed that splits under the headline
    criterion (analysis.split), else the first seed: the drawing is there to show a split."""
    if params.plot.draw_seed is not None:
        return params.plot.draw_seed
    split = seeds[seeds["first_split_level"].notna()]["seed"] if len(seeds) else []
    return int(min(split)) if len(split) else int(params.model.seeds[0])


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """Figures (reports/figures) and reports/report.md of the run under root."""
    paths = RunPaths(root)
    tasks, _ = load_data(paths.data)
    names = [t.name for t in tasks]
    # each table with the columns that tell it from the others (one under another's name: a line)
    imp = io.read_csv(paths.imp_levels_csv, required=LEVELS_COLUMNS)
    curves = io.read_csv(paths.imp_curves_csv, required=("seed", "level", "epoch", "val_loss"))
    analysis = io.read_csv(paths.analysis / "levels.csv", required=("seed", "level", "split"))
    layers = io.read_csv(paths.analysis / "layers.csv", required=("seed", "level", "state"))
    seeds = io.read_csv(paths.analysis / "seeds.csv", required=("seed", "first_split_level"))
    life = io.read_csv(paths.analysis / "lifetimes.csv", required=("seed", "mean_levels"))
    events = io.read_csv(paths.analysis / "events.csv", required=("seed", "first_comatose_level"))
    tm = io.read_csv(paths.analysis / "task_matrix.csv", required=("seed", "level", "from_task"))
    metrics = io.read_json(paths.metrics_json,
                           required=("seeds", "split_applicable", "dense_test_acc", "degradation"))
    check_written(paths.imp, params.prune.biases)  # the level files drawn are the ones the imp stage wrote
    seed, dpi = draw_seed(params, seeds), params.plot.dpi
    last = int(imp["level"].max())
    chosen = drawing_levels(seeds, seed, last)

    plots.style()
    for folder in (paths.figures, paths.every_level):
        folder.mkdir(parents=True, exist_ok=True)
        io.remove_stale(folder)  # what a killed write left is never published with them
    not_drawn = task_figure_refusals(len(tasks))
    figs = {
        **({} if len(tasks) > palette.MAX_STYLED_TASKS else {
            "accuracy.png": plots.accuracy_vs_params(imp, seeds, names,
                                                     params.analysis.degradation_threshold)}),
        "split.png": plots.split_over_levels(analysis),
        "states.png": plots.state_composition(analysis),
        "neurons.png": plots.neuron_classes(layers),
        "lifetimes.png": plots.lifetimes_figure(life),
        "comatose_events.png": plots.comatose_events_figure(events),
        "val_curves.png": plots.validation_curves(curves, seed),
        "task_matrix.png": plots.task_matrices(tm, seed, chosen),
    }
    shape, counts = read_trajectory(paths.shape_json, paths.trajectory_csv)
    base = (int(shape["extensions"]), int(counts[int(shape["extensions"])]))
    random_csv = paths.analysis / "random_masks.csv"
    random = io.read_csv(random_csv) if random_csv.exists() else None
    dying_json = paths.analysis / "dying.json"  # what dies during IMP, in full (analyze stage)
    answers = io.read_json(dying_json) if dying_json.exists() else None
    figs.update(split_figures(analysis, seeds, tasks, paths.analysis, base, random))
    figs["dying.png"] = dying_plots.run_figure_from(paths.analysis, analysis, random, answers)
    for name, fig in figs.items():
        plots.save(fig, paths.figures / name, dpi)
    names_out = list(figs)
    if palette.colour_only_refusal("drawings", len(tasks)) is None:
        draw_networks(tasks, seed, chosen, last + 1, dpi, imp, analysis, paths)
        names_out.append("network.png")
    io.write_csv(paths.plots_curves_csv, curve_table(curves, seed))
    io.write_text(paths.report_md, report(params, metrics, seeds, tasks, names_out, paths, answers,
                                          not_drawn, seed))
    for line in not_drawn:
        print(f"plot: {line}")
    print(f"plot: {len(names_out)} figures in {paths.figures}, report in {paths.report_md}")
    return [paths.figures, paths.every_level, paths.report_md, paths.plots_curves_csv]


def task_figure_refusals(n_tasks: int) -> list[str]:
    """One line per figure not drawn because it could not give each of n_tasks tasks a colour
    (drawings, coverage maps: colour alone) or a (colour, marker) pair (accuracy.png) of its
    own: a colour never names two tasks (pipeline/palette.py)."""
    lines = [line for figure in ("network drawings (network.png, network_levels.png and .gif)",
                                 "coverage_maps.png")
             if (line := palette.colour_only_refusal(figure, n_tasks)) is not None]
    if n_tasks > palette.MAX_STYLED_TASKS:
        lines.insert(0, f"accuracy.png not drawn: {n_tasks} tasks but "
                        f"{palette.MAX_STYLED_TASKS} (colour, marker) pairs")
    return lines


def main() -> list[Path]:
    return run(config.load())


if __name__ == "__main__":
    cli(main)
