"""Run health: did the networks actually train as params.yaml asked?

A run can finish every stage and still answer nothing: dense networks that never improved on
their start (best epoch 0; IMP then prunes θ₀ itself), that diverged, that ran out of epochs, or
whose tasks sit at chance level — a dense net that learned nothing is not a lottery-ticket
experiment (docs/science.md §4: IMP starts from a *trained* dense net). This module finds those
networks in the per-(seed, level) table the imp stage writes (`reports/imp/levels.csv`: epochs,
best_epoch, stop_reason, test_acc_<task>) and the test labels (`data/test.npz`), for

- `metrics.json` → `health` (`section`): per level kind, `dense` (level 0) and `imp` (levels ≥ 1),
  counts as scalars (so `dvc exp show` shows them) and the seeds as lists;
- `report.md` (`with_block`): a "Run health" block at the top whenever anything is off, naming
  the seeds and what to change;
- the train stage (`dense_failure`): one line for the error that stops the pipeline when *every*
  dense network failed to learn (never improved, diverged, or every task at chance). Partial
  failures are flagged, not fatal.

Chance level (dense nets only: pruned nets reaching chance is the degradation IMP measures): a
task is at chance when its test accuracy is not significantly above the rate of the majority
class among that task's test labels (always guessing that class): one-sided exact binomial test
of the number of correct test predictions, p ≥ CHANCE_ALPHA.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import io

CHANCE_ALPHA = 0.05  # one-sided exact binomial test against the majority-class rate
KINDS = ("dense", "imp")
CHECKS = ("never_improved", "diverged", "max_epochs", "at_chance")
ADVICE = {
    "never_improved": "its validation loss never fell by train.min_delta below its start: lower "
                      "train.min_delta, or raise train.lr or train.patience",
    "diverged": "the loss became NaN/inf: lower train.lr (or use train.optimizer: adam)",
    "max_epochs": "stopped by train.max_epochs before early stopping did: raise train.max_epochs "
                  "(or train.lr)",
    "at_chance": "test accuracy not above always guessing the majority class: more data "
                 "(data.n_samples), a wider net (model.hidden) or another train.lr",
}


def majority_rates(test_y: np.ndarray) -> np.ndarray:
    """Per task, the fraction of the most frequent class among the test labels.

    test_y: [N, T] int labels (data/test.npz `y`). Returns [T] floats in (0, 1].
    """
    test_y = np.asarray(test_y)
    return np.array([np.bincount(col).max() / len(col) for col in test_y.T], dtype=np.float64)


def chance_p_values(test_acc: np.ndarray, test_y: np.ndarray) -> np.ndarray:
    """One-sided exact binomial p-values P(X ≥ correct) with X ~ Bin(N, majority rate), per
    network and task: how likely always guessing the majority class does at least as well.

    test_acc: [K, T] accuracies on the N test samples; test_y: [N, T]. Returns [K, T].
    """
    from scipy.stats import binom

    test_y = np.asarray(test_y)
    n = test_y.shape[0]
    correct = np.rint(np.asarray(test_acc, dtype=np.float64) * n)
    return binom.sf(correct - 1, n, majority_rates(test_y)[None, :])


def network_flags(levels, task_names: list[str], test_y: np.ndarray | None = None,
                  patience: int | None = None):
    """Boolean columns per row of a levels.csv-like frame (seed, level, epochs, best_epoch,
    stop_reason, test_acc_<task>; test_loss optional): never_improved, diverged, max_epochs and,
    with test_y, at_chance (some task at chance), all_at_chance (every task) and
    at_chance_<task>.

    never_improved: best_epoch 0 (with train.restore_best, the default), or, given `patience`,
    stopped by patience after exactly `patience` epochs (no epoch ever restarted the counter;
    this also covers restore_best: false, where best_epoch is the last epoch). Diverged networks
    are not counted as never improved (their advice differs).
    """
    import pandas as pd

    out = pd.DataFrame(index=levels.index)
    reason = levels["stop_reason"].astype(str)
    diverged = reason.eq("diverged")
    if "test_loss" in levels:
        diverged |= ~np.isfinite(levels["test_loss"].to_numpy(dtype=np.float64))
    never = levels["best_epoch"].eq(0)
    if patience is not None:
        never |= reason.eq("patience") & levels["epochs"].eq(patience)
    out["never_improved"] = never & ~diverged
    out["diverged"] = diverged
    out["max_epochs"] = reason.eq("max_epochs")
    if test_y is not None:
        acc = levels[[f"test_acc_{t}" for t in task_names]].to_numpy(dtype=np.float64)
        chance = chance_p_values(np.nan_to_num(acc, nan=0.0), test_y) >= CHANCE_ALPHA
        for i, t in enumerate(task_names):
            out[f"at_chance_{t}"] = chance[:, i]
        out["at_chance"] = chance.any(axis=1)
        out["all_at_chance"] = chance.all(axis=1)
    return out


def _kind(levels, flags, checks: tuple[str, ...], task_names: list[str]) -> dict:
    """The health dict of one level kind: counts (scalars) and seeds (sorted lists)."""
    out: dict = {"networks": int(len(levels))}
    for check in checks:
        hit = flags[check].to_numpy(dtype=bool)
        out[check] = int(hit.sum())
        out[f"{check}_seeds"] = sorted({int(s) for s in levels["seed"].to_numpy()[hit]})
    if "at_chance" in checks:  # dense
        out["at_chance_tasks"] = {t: int(flags[f"at_chance_{t}"].sum()) for t in task_names}
        out["failed"] = int((flags["never_improved"] | flags["diverged"]
                             | flags["all_at_chance"]).sum())
    else:  # imp: the levels too
        for check in checks:
            lv = levels["level"].to_numpy()[flags[check].to_numpy(dtype=bool)]
            out[f"{check}_levels"] = sorted({int(v) for v in lv})
    return out


def section(levels, data: str | Path = "data") -> dict:
    """metrics.json's `health` section from levels.csv's frame and the generate stage's files.

    levels: reports/imp/levels.csv as a DataFrame; data: the folder with tasks.json and
    test.npz. Returns {"ok", "problems", "dense": {...}, "imp": {...}}: per kind the number of
    networks and, per check, a count, the seeds (and levels for imp); `problems` counts the
    checks that found something, `ok` is True when none did.
    """
    data = Path(data)
    meta = io.read_json(data / "tasks.json")
    names = [t["name"] for t in meta["tasks"]]
    test_y = io.read_npz(data / "test.npz")["y"]
    dense_rows = levels[levels["level"] == 0]
    imp_rows = levels[levels["level"] > 0]
    dense = _kind(dense_rows, network_flags(dense_rows, names, test_y), CHECKS, names)
    dense["majority_rate"] = {t: float(r) for t, r in zip(names, majority_rates(test_y))}
    imp = _kind(imp_rows, network_flags(imp_rows, names), CHECKS[:3], names)
    problems = sum(int(part[c] > 0) for part, checks in ((dense, CHECKS), (imp, CHECKS[:3]))
                   for c in checks)
    return {"ok": problems == 0, "problems": problems, "dense": dense, "imp": imp}


def dense_failure(levels, task_names: list[str], test_y: np.ndarray,
                  patience: int | None = None) -> str | None:
    """The one-line reason to stop the pipeline, or None: when *every* dense network failed to
    learn (never improved on its start, diverged, or every task at chance), there is no trained
    dense net for IMP to prune. levels: one row per dense network (levels.csv columns)."""
    flags = network_flags(levels, task_names, test_y, patience)
    failed = flags["never_improved"] | flags["diverged"] | flags["all_at_chance"]
    if len(levels) == 0 or not failed.all():
        return None
    k = len(levels)
    parts, advice = [], []
    rest = failed & ~flags["diverged"] & ~flags["never_improved"]  # learned, but nothing useful
    for check in ("diverged", "never_improved", "all_at_chance"):
        n = int((rest if check == "all_at_chance" else flags[check]).sum())
        if n:
            what = {"diverged": "diverged", "never_improved": "never improved on epoch 0",
                    "all_at_chance": "every task at chance level"}[check]
            parts.append(f"{n} {what}")
            advice.append(ADVICE[check.removeprefix("all_")].split(": ", 1)[-1])
    return (f"train: every dense network failed to learn ({k}/{k}: " + ", ".join(parts)
            + "), so there is no trained net to prune; change params: " + "; ".join(advice))


def _seeds(seeds: list[int], limit: int = 12) -> str:
    shown = ", ".join(map(str, seeds[:limit]))
    return shown + (f", … ({len(seeds)} seeds)" if len(seeds) > limit else "")


def _levels(levels: list[int]) -> str:
    if not levels:
        return ""
    return f" at level {levels[0]}" if len(levels) == 1 else \
        f" at levels {levels[0]}–{levels[-1]}"


def block(health: dict | None) -> list[str]:
    """Markdown lines of report.md's "Run health" block; [] when nothing is off."""
    if not health or health.get("ok", True):
        return []
    dense, imp = health["dense"], health["imp"]
    serious = any(part.get(c) for part, checks in ((dense, CHECKS), (imp, CHECKS[:3]))
                  for c in checks if c != "max_epochs")
    lead = ("**Something in this run did not go as params.yaml asked; read the results below "
            "with this in mind** (docs/criteria.md, \"When a run is flagged\")." if serious else
            "Some trainings were stopped by `train.max_epochs` while their validation loss was "
            "still improving; the results stand, but those networks might have trained further "
            "(docs/criteria.md, \"When a run is flagged\").")
    lines = ["## Run health", "", lead, ""]
    label = {"never_improved": "never improved on their start (best epoch 0)",
             "diverged": "diverged", "max_epochs": "hit train.max_epochs",
             "at_chance": "have a task at chance level"}
    for check in CHECKS[:3]:
        if dense.get(check):
            lines.append(f"- Dense: {dense[check]} of {dense['networks']} networks "
                         f"{label[check]} (seeds {_seeds(dense[f'{check}_seeds'])}): "
                         f"{ADVICE[check]}.")
    rates = dense.get("majority_rate", {})
    chance = [f"{task} in {n}" for task, n in dense.get("at_chance_tasks", {}).items() if n]
    if chance:
        lines.append(f"- Dense: tasks at chance level (test accuracy not above the majority "
                     f"class rate, {', '.join(f'{t} {r:.3f}' for t, r in rates.items())}): "
                     f"{', '.join(chance)} of {dense['networks']} networks (seeds "
                     f"{_seeds(dense['at_chance_seeds'])}): {ADVICE['at_chance'].split(': ', 1)[1]}; "
                     "the split of a task that was never learned means nothing.")
    for check in CHECKS[:3]:
        if imp.get(check):
            extra = (" — expected only once pruning has cut every path from the inputs to an "
                     "output; otherwise " if check == "never_improved" else ": ")
            lines.append(f"- IMP: {imp[check]} of {imp['networks']} networks {label[check]}"
                         f"{_levels(imp.get(f'{check}_levels', []))} (seeds "
                         f"{_seeds(imp[f'{check}_seeds'])}){extra}{ADVICE[check]}.")
    return [*lines, ""]


def with_block(report: str, health: dict | None) -> str:
    """report.md with the "Run health" block inserted right after its title line (unchanged
    when nothing is off)."""
    lines = block(health)
    if not lines:
        return report
    title, sep, rest = report.partition("\n\n")
    return title + sep + "\n".join(lines) + "\n" + rest if sep else \
        report + "\n" + "\n".join(lines)
