"""What dies during IMP compared across a study's configurations (docs/science.md §7–§8): the study's
metrics.json `dying` section, from its summary (one row per configuration, pipeline.study_dying's
columns) and seeds table (one row per configuration × seed, with study_dying.seed_values).

Only configurations that differ in exactly the compared axis are compared: for an axis, the
configurations are grouped by the values of every other study axis, and each group with two or
more values of the axis is one comparison.
- H3 across T (`iterations`) and across widths (`hidden`): Kruskal–Wallis of the per-seed peak
  fractions (level of the comatose count's first maximum / T) over the group's values;
- `bias_init` (every pair of values in a group, e.g. default vs zero): H1 (the two ρ with their
  seed-bootstrap intervals side by side; Mann–Whitney on the per-seed ρ where both can test H1;
  Mann–Whitney on the per-seed median zombie lifetimes), H2 and H5 (Fisher's exact test on the
  k/n answers, Mann–Whitney on the per-seed values) and the budget spent on the dead
  (Mann–Whitney on the per-seed shares).
A comparison a configuration cannot take part in says so (its reason), never a number.
"""
from __future__ import annotations

import itertools
import re

import pandas as pd

from pipeline.config import STUDY_AXES
from pipeline.dying_answers import kruskal_p, mann_whitney, number, proportion, quartiles
from pipeline.plots import p_text

ACROSS = {"iterations": "T (prune.iterations)", "hidden": "width (model.hidden)"}
PAIRED_AXIS = "bias_init"
# (result key, summary k/n column, hypothesis) compared by Fisher's exact test
FISHER = (("h2_seeds_negative_lower", "h2_seeds_negative_lower", "h2"),
          ("h5_bias_first", "h5_bias_first", "h5"))
# (result key, seeds column, hypothesis whose testability it needs, or None) by Mann–Whitney
MANN_WHITNEY = (("h1_rho_per_seed", "h1_rho", "h1"),
                ("zombie_lifetime", "zombie_lifetime_median", None),
                ("h2_survival_difference", "h2_survival_difference", "h2"),
                ("h5_bias_first_fraction", "h5_bias_first_fraction", "h5"),
                ("budget_on_dead_share", "budget_on_dead_share", "budget"))


def not_testable(reason: str, **extra) -> dict:
    return {"testable": False, "reason": f"not testable: {reason}", **extra}


# a new hypothesis in `dying_not_testable` ("h1: zero biases; budget: …"): "; " before its name
_NEXT = re.compile(r"; (?=(?:h[1-6]|death_predicted|budget): )")


def reasons(summary_row: dict) -> dict[str, str]:
    """{hypothesis: reason} of one configuration's `dying_not_testable` column ("h1: zero
    biases; h5: …"); {"all": …} where its result files have no dying answers."""
    text = summary_row.get("dying_not_testable")
    if not isinstance(text, str) or not text:
        return {}
    if text.startswith("not testable: "):
        return {"all": text.removeprefix("not testable: ")}
    return dict(part.split(": ", 1) for part in _NEXT.split(text))


def _why(row: dict, hypothesis: str | None) -> str | None:
    """Why configuration `row` cannot take part in a comparison of `hypothesis` (None: it can)."""
    r = reasons(row)
    if "all" in r:
        return f"{row['config']}: {r['all']}"
    if hypothesis is not None and hypothesis in r:
        name = hypothesis.upper() if hypothesis.startswith("h") else hypothesis
        return f"{name} in {row['config']}: {r[hypothesis]}"
    return None


def groups(summary: pd.DataFrame, axis: str) -> list[pd.DataFrame]:
    """The configurations (summary rows) grouped by every study axis but `axis`; only groups
    with at least two values of `axis`, in study order."""
    others = [a for a in STUDY_AXES if a != axis and a in summary]
    out = []
    for _, g in summary.groupby(others, sort=False, dropna=False):
        if g[axis].nunique() > 1:
            out.append(g)
    return out


def fixed(group: pd.DataFrame, axis: str, varied: list[str]) -> dict:
    """The values the group's configurations share, of the axes the study varies."""
    first = group.iloc[0]
    return {a: _plain(first[a]) for a in varied if a != axis}


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _seed_values(seeds: pd.DataFrame, config: str, column: str) -> pd.Series:
    part = seeds.loc[seeds["config"] == config, column] if column in seeds else pd.Series()
    return part.dropna().astype(float)


def across(summary: pd.DataFrame, seeds: pd.DataFrame, axis: str, varied: list[str]) -> dict:
    """H3 across the values of `axis`: per group, each configuration's per-seed peak fractions
    (median, IQR, n) and Kruskal–Wallis' p over them."""
    found = groups(summary, axis)
    if not found:
        return not_testable(f"no two configurations of the study differ in {axis} alone")
    out = []
    for g in found:
        rows = g.to_dict("records")
        left_out = [w for w in (_why(r, "h3") for r in rows) if w]
        values = {r["config"]: _seed_values(seeds, r["config"], "h3_peak_fraction") for r in rows
                  if not _why(r, "h3")}
        entry = {"fixed": fixed(g, axis, varied),
                 "configurations": [{axis: _plain(r[axis]), "config": r["config"],
                                     "peak_fraction": quartiles(values.get(r["config"], []))}
                                    for r in rows],
                 "left_out": left_out}
        usable = [v for v in values.values() if len(v)]
        if len(usable) < 2:
            entry.update(not_testable(f"fewer than two values of {axis} with a comatose neuron"))
        else:
            entry.update({"testable": True, "reason": None, "kruskal_p": kruskal_p(usable)})
        out.append(entry)
    return {"testable": any(e["testable"] for e in out), "reason": None, "groups": out}


def fisher_block(a: dict, b: dict, column: str, hypothesis: str) -> dict:
    """Fisher's exact test of configuration a's k/n answer `column` against b's."""
    from pipeline.analysis import fisher_p

    why = [w for w in (_why(a, hypothesis), _why(b, hypothesis)) if w]
    if why or any(pd.isna(r.get(f"{column}_n")) for r in (a, b)):
        return not_testable("; ".join(why) or "no k/n answer")
    ka, na, kb, nb = (int(x) for x in (a[f"{column}_k"], a[f"{column}_n"], b[f"{column}_k"],
                                       b[f"{column}_n"]))
    if not na or not nb:
        return not_testable("an answer over no cases")
    return {"testable": True, "reason": None, a["config"]: proportion(ka, na),
            b["config"]: proportion(kb, nb), "fisher_p": number(fisher_p(ka, na, kb, nb))}


def mann_whitney_block(a: dict, b: dict, seeds: pd.DataFrame, column: str,
                       hypothesis: str | None) -> dict:
    """Mann–Whitney of the per-seed values `column` of configuration a against b's."""
    why = [w for w in (_why(a, hypothesis), _why(b, hypothesis)) if w]
    if why:
        return not_testable("; ".join(why))
    va, vb = (_seed_values(seeds, r["config"], column) for r in (a, b))
    if not len(va) or not len(vb):
        empty = [r["config"] for r, v in ((a, va), (b, vb)) if not len(v)]
        return not_testable(f"no seed with a value in {', '.join(empty)}")
    return {"testable": True, "reason": None, a["config"]: quartiles(va),
            b["config"]: quartiles(vb), "mannwhitney_p": mann_whitney(va, vb)}


def _rho(row: dict) -> dict:
    """A configuration's pooled H1 ρ with its seed-bootstrap interval, or its reason."""
    why = _why(row, "h1")
    if why:
        return not_testable(why)
    return {"testable": True, "reason": None, "rho": number(row["h1_rho"]),
            "rho_ci95": [number(row["h1_rho_low"]), number(row["h1_rho_high"])]}


def paired(summary: pd.DataFrame, seeds: pd.DataFrame, axis: str, varied: list[str]) -> dict:
    """Every pair of `axis` values within a group: H1, H2, H5 and the budget on the dead."""
    found = groups(summary, axis)
    if not found:
        return not_testable(f"no two configurations of the study differ in {axis} alone")
    out = []
    for g in found:
        for a, b in itertools.combinations(g.to_dict("records"), 2):
            entry = {"fixed": fixed(g, axis, varied),
                     "configurations": {_plain(a[axis]): a["config"], _plain(b[axis]): b["config"]},
                     "h1_rho": {a["config"]: _rho(a), b["config"]: _rho(b)}}
            for key, column, hyp in FISHER:
                entry[key] = fisher_block(a, b, column, hyp)
            for key, column, hyp in MANN_WHITNEY:
                entry[key] = mann_whitney_block(a, b, seeds, column, hyp)
            out.append(entry)
    return {"testable": True, "reason": None, "pairs": out}


def comparisons(summary: pd.DataFrame, seeds: pd.DataFrame) -> dict:
    """The study's metrics.json `dying` section (module docstring)."""
    varied = [a for a in STUDY_AXES if a in summary and summary[a].nunique() > 1]
    no_answers = [r["config"] for r in summary.to_dict("records") if "all" in reasons(r)]
    out = {f"h3_peak_fraction_across_{axis}": across(summary, seeds, axis, varied)
           for axis in ACROSS}
    out[PAIRED_AXIS] = paired(summary, seeds, PAIRED_AXIS, varied)
    out["without_answers"] = no_answers
    return out


def _pair_label(pair: dict) -> str:
    values = " vs ".join(str(v) for v in pair["configurations"])
    return values + (f" ({_label(pair['fixed'])})" if pair["fixed"] else "")


def headlines(d: dict) -> dict:
    """reports/study/metrics.json `dying`: the comparisons' p-values only (null where not
    testable), keyed by what they compare; the full comparisons are reports/study/dying.json
    (`dvc exp show` tabulates every scalar of a metrics file)."""
    out = {}
    for axis in ACROSS:
        block = d[f"h3_peak_fraction_across_{axis}"]
        out[f"h3_peak_fraction_across_{axis}_kruskal_p"] = {
            _label(g["fixed"]): g.get("kruskal_p") for g in block.get("groups", [])}
    pairs = {}
    for pair in d[PAIRED_AXIS].get("pairs", []):
        p = {f"{key}_fisher_p": pair[key].get("fisher_p") for key, _, _ in FISHER}
        p.update({f"{key}_mannwhitney_p": pair[key].get("mannwhitney_p")
                  for key, _, _ in MANN_WHITNEY})
        pairs[_pair_label(pair)] = p
    out[PAIRED_AXIS] = pairs
    return out


# ---- the aggregate stage's lines ---------------------------------------------------------------
def _label(fixed_values: dict) -> str:
    return "/".join(str(v) for v in fixed_values.values()) or "the study"


def lines(d: dict) -> list[str]:
    """Two lines for the aggregate stage: H3 across T and widths; bias_init pairs."""
    parts = []
    for axis, name in ACROSS.items():
        block = d[f"h3_peak_fraction_across_{axis}"]
        if "groups" not in block:
            parts.append(f"across {name}: {block['reason']}")
            continue
        tests = [f"{_label(g['fixed'])} p = {p_text(g['kruskal_p'])}" if g["testable"]
                 else f"{_label(g['fixed'])} {g['reason']}" for g in block["groups"]]
        parts.append(f"across {name} (Kruskal–Wallis): " + ", ".join(tests))
    first = "  dying, H3 peak level / T " + "; ".join(parts)
    block = d[PAIRED_AXIS]
    if "pairs" not in block:
        return [first, f"  dying, {PAIRED_AXIS}: {block['reason']}"]
    tests = []
    for pair in block["pairs"]:
        found = [f"{key.split('_')[0].upper()} Fisher p = {p_text(pair[key]['fisher_p'])}"
                 for key, _, _ in FISHER if pair[key]["testable"]]
        for key, name in (("zombie_lifetime", "zombie lifetime"),
                          ("budget_on_dead_share", "budget on the dead")):
            if pair[key]["testable"]:
                found.append(f"{name} Mann–Whitney p = {p_text(pair[key]['mannwhitney_p'])}")
        tests.append(f"{_pair_label(pair)}: " + (", ".join(found) or "nothing testable"))
    return [first, f"  dying, {PAIRED_AXIS}: " + "; ".join(tests)]
