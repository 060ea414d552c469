"""Studies: one full run (generate → … → analyze) per configuration, and their aggregation.

A configuration is the base params with the keys of one combination of the `study` axes replaced
(config.configurations). The study runner (pipeline.stages.study_run) runs the ordinary stage
functions with the configuration's own work folder as their root, so a study configuration is
exactly what `dvc repro` would compute for those params; `collect` turns that folder's reports
into the configuration's small result files, and `aggregate` combines the result files of a study
into its tidy table and summary.

`python -m pipeline.study run studies/size.yaml` checks a preset (a partial params.yaml) and
runs it with `dvc exp run studies/dvc.yaml -S key=value …`; nothing starts when the preset is
wrong. `python -m pipeline.study flags studies/size.yaml` only prints the `-S` arguments.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import config, io
from pipeline import trajectory as traj
from pipeline.config import STUDY_AXES

if TYPE_CHECKING:
    import pandas as pd

RESULT_FILES = ("config.json", "levels.csv", "seeds.csv", "controls.csv", "accuracy.csv",
                "random_levels.csv",
                # pipeline.study_dying.DYING_FILES (written by study_dying.collect, `extra` below)
                "dying.json", "episodes.csv", "bias_survival.csv", "frozen_deaths_levels.csv")


def axis_value(info: dict, axis: str):
    """A configuration's value of `axis` (config.json, combo). Result files made before an axis
    existed lack it: they mean the value their params record (config.json's `params`: e.g.
    model.bias_init, a key long before it was an axis, is `zero` in the MNIST presets' result
    files), else the axis' default (config.STUDY_AXIS_DEFAULTS: a key that did not exist yet)."""
    if axis in info:
        return info[axis]
    section, key = STUDY_AXES[axis]
    recorded = (info.get("params") or {}).get(section) or {}
    return recorded[key] if key in recorded else config.STUDY_AXIS_DEFAULTS[axis]


def configuration_params(raw: dict, combo: dict) -> dict:
    """The params.yaml document of one configuration (no study section: it is a plain run)."""
    out = {name: dict(raw.get(name) or {}) for name in config.SECTIONS if name != "study"}
    for axis, value in combo.items():
        section, key = STUDY_AXES[axis]
        value = config.study_value(axis, value)
        out[section][key] = list(value) if isinstance(value, tuple) else value
    return out


def collect(combo: dict, work: Path, out: Path, extra=None) -> None:
    """The configuration's result files (RESULT_FILES) from the reports in its work folder;
    extra(folder), where given, writes more of them into the folder being assembled (the study
    runner passes pipeline.study_dying.collect: kept out of this module, which the `learned`
    stage imports through pipeline.baseline's presets)."""

    shape = io.read_json(work / "models/shape.json")
    trajectory = io.read_csv(work / "reports/trajectory.csv", required=("level",))
    params = config.load(work / "params.yaml")
    base_p0 = int(trajectory.loc[trajectory["level"] == 0, "params"].iloc[0])
    info = {**combo, "name": config.configuration_name(combo),
            "layers": shape["layers"], "base_layers": shape["base_layers"],
            "width": shape["layers"][1], "depth": len(shape["layers"]) - 2,
            "n_tasks": len(params.data.tasks), "base_params": base_p0,
            "start_params": int(trajectory["params"].iloc[0]),
            "final_params": int(trajectory["params"].iloc[-1]),
            "rate": _nominal_rate(params, base_p0),
            "seeds": list(params.model.seeds),
            # the whole configuration as it ran (but its seeds, listed above, and the plot
            # section, which a study never runs): two studies whose base params differ never
            # have equal result files
            "params": {name: {k: v for k, v in config.section_dict(getattr(params, name)).items()
                              if (name, k) != ("model", "seeds")}
                       for name in config.SECTIONS if name not in ("study", "plot")}}
    cols = {axis: combo[axis] for axis in STUDY_AXES}

    imp_levels = io.read_csv(work / "reports/imp/levels.csv")
    analysis = io.read_csv(work / "reports/analysis/levels.csv")
    acc_cols = [c for c in imp_levels.columns if c.startswith("test_acc_")]
    levels = analysis.merge(
        imp_levels[["seed", "level", "base_level", "epochs", "stop_reason", "test_acc",
                    *acc_cols]], on=["seed", "level"])
    levels["test_acc_min"] = levels[acc_cols].min(axis=1)
    levels = levels.drop(columns=acc_cols)

    seeds = io.read_csv(work / "reports/analysis/seeds.csv")
    k = shape["extensions"]
    dense = levels[levels["level"] == 0].set_index("seed")
    seeds["dense_test_acc"] = seeds["seed"].map(dense["test_acc"])
    split_rows = levels[levels["split"].astype(bool)].sort_values("level").groupby("seed").first()
    seeds["test_acc_at_split"] = seeds["seed"].map(split_rows["test_acc"])
    # "alive" counts biases too, which are not prunable when prune.biases is false
    seeds["alive_weights_at_split"] = seeds["seed"].map(split_rows["alive_w"])
    seeds["first_split_base_level"] = seeds["first_split_level"] - k
    at_base = levels[levels["base_level"] == 0].set_index("seed")
    seeds["split_at_base_params"] = seeds["seed"].map(at_base["split"]).astype(bool)
    seeds = seeds[[c for c in seeds.columns
                   if not c.startswith("test_acc_") or c == "test_acc_at_split"]]

    controls = _controls(work, levels)
    accuracy = task_accuracy(imp_levels, io.read_csv(work / "reports/imp/controls.csv"))
    # the random-mask null model's structure per (seed, level), the split distance included,
    # so d can be compared with chance from the result files alone (no rows without the control)
    random_levels = io.read_csv(work / "reports/analysis/random_masks.csv")
    with io.atomic_dir(out) as tmp:
        io.write_json(tmp / "config.json", info)
        io.write_csv(tmp / "levels.csv", levels.assign(**cols))
        io.write_csv(tmp / "seeds.csv", seeds.assign(**cols))
        io.write_csv(tmp / "controls.csv", controls.assign(**cols))
        io.write_csv(tmp / "accuracy.csv", accuracy.assign(**cols))
        io.write_csv(tmp / "random_levels.csv", random_levels.assign(**cols))
        if extra is not None:
            extra(tmp)


def task_accuracy(imp_levels, imp_controls) -> pd.DataFrame:
    """accuracy.csv of a configuration: one row per (seed, level, task) with the ticket's test
    accuracy on that task (test_acc) and, where the controls ran, the random mask's
    (random_test_acc) and the re-initialised ticket's (reinit_test_acc) at the same level —
    the table that took three joins over work-folder files (reports/imp/levels.csv and
    controls.csv)."""
    acc_cols = [c for c in imp_levels.columns if c.startswith("test_acc_")]
    keys = ["seed", "level", "base_level", "params", "weights"]

    def long(frame, name):
        out = frame[keys + acc_cols].melt(id_vars=keys, var_name="task", value_name=name)
        out["task"] = out["task"].str.slice(len("test_acc_"))
        return out

    table = long(imp_levels, "test_acc")
    for control in ("random", "reinit"):
        part = imp_controls[imp_controls["control"] == control]
        if len(part):
            table = table.merge(long(part, f"{control}_test_acc")
                                .drop(columns=["base_level", "params", "weights"]),
                                on=["seed", "level", "task"], how="left")
    order = {name[len("test_acc_"):]: i for i, name in enumerate(acc_cols)}
    table["_task"] = table["task"].map(order)
    return (table.sort_values(["seed", "level", "_task"], kind="stable")
            .drop(columns="_task").reset_index(drop=True))


def _nominal_rate(params: config.Params, base_p0: int) -> float:
    """The per-level rate p: given, or implied by P_0, the target and the levels."""
    pr = params.prune
    if pr.rate is not None:
        return pr.rate
    return 1.0 - traj.keep_ratio(base_p0, pr.target, pr.iterations)


def _controls(work: Path, levels) -> pd.DataFrame:
    """Per seed: the random-mask null model (did a random mask of equal sparsity split?) and the
    re-initialised ticket's accuracy at the ticket's first split level, where enabled."""
    import pandas as pd

    seeds = sorted(levels["seed"].unique())
    out = pd.DataFrame({"seed": seeds})
    random = io.read_csv(work / "reports/analysis/random_masks.csv")
    if len(random):
        from pipeline.analysis import random_mask_splits
        out["random_mask_split"] = out["seed"].map(random_mask_splits(random))
    ctrl = io.read_csv(work / "reports/imp/controls.csv")
    reinit = ctrl[ctrl["control"] == "reinit"]
    if len(reinit):
        first = levels[levels["split"].astype(bool)].groupby("seed")["level"].min()
        acc = reinit.set_index(["seed", "level"])["test_acc"]
        ticket = levels.set_index(["seed", "level"])["test_acc"]
        out["ticket_test_acc_at_split"] = [
            ticket.get((s, first[s]), math.nan) if s in first.index else math.nan for s in seeds]
        out["reinit_test_acc_at_split"] = [
            acc.get((s, first[s]), math.nan) if s in first.index else math.nan for s in seeds]
    return out


# ---- aggregation ------------------------------------------------------------------------------
def read_results(runs: Path, combos: list[dict]) -> list[tuple[dict, Path]]:
    """(config.json, folder) of every configuration of the study, in study order. Raises
    FileNotFoundError naming the configurations without a folder, ValueError naming two folders
    of one configuration."""
    def key(combo: dict) -> tuple:
        return tuple(axis_value(combo, a) for a in STUDY_AXES)

    found = {}
    for cfg in sorted(runs.glob("*/config.json")):
        info = io.read_json(cfg)
        if key(info) in found:  # which one a study means would be a guess: say so instead
            raise ValueError(f"{found[key(info)][1]} and {cfg.parent} are result folders of one "
                             f"configuration, {config.configuration_name(info)}; allowed: one "
                             "folder per configuration in " + str(runs) + " (join two runs of it "
                             "with python -m pipeline.pool, outside this folder)")
        found[key(info)] = (info, cfg.parent)
    missing = [config.configuration_name(c) for c in combos if key(c) not in found]
    if missing:
        raise FileNotFoundError("no results for configuration(s) " + ", ".join(missing))
    return [found[key(c)] for c in combos]


def aggregate(results: list[tuple[dict, Path]], threshold: float):
    """(tidy, seeds, summary) frames of a study from its configurations' result files (the
    dying answers are added by pipeline.study_dying.with_answers)."""
    import pandas as pd

    tidy, seed_rows, rows = [], [], []
    for info, folder in results:
        meta = {"config": info["name"], "width": info["width"], "depth": info["depth"],
                "n_tasks": info["n_tasks"], "rate": info["rate"]}
        axes = {a: axis_value(info, a) for a in STUDY_AXES}
        levels = io.read_csv(folder / "levels.csv").assign(**meta)
        seeds = io.read_csv(folder / "seeds.csv").assign(**meta)
        for frame in (levels, seeds):  # result files made before an axis existed
            for a, v in axes.items():
                if a not in frame:
                    frame[a] = v
        controls = io.read_csv(folder / "controls.csv")
        random_path = folder / "random_levels.csv"  # absent from result files made before it
        random = io.read_csv(random_path) if random_path.exists() else None
        tidy.append(levels)
        seed_rows.append(seeds)
        rows.append({**axes, **meta,
                     "base_params": info["base_params"], "start_params": info["start_params"],
                     **summary_row(seeds, controls, info["n_tasks"], random)})
    summary = pd.DataFrame(rows)
    summary.insert(0, "degradation_threshold", threshold)
    tidy_frame = pd.concat(tidy, ignore_index=True)
    first = ["config", *STUDY_AXES, "width", "depth", "n_tasks", "rate"]
    tidy_frame = tidy_frame[first + [c for c in tidy_frame.columns if c not in first]]
    seeds_frame = pd.concat(seed_rows, ignore_index=True)
    seeds_frame = seeds_frame[first + [c for c in seeds_frame.columns if c not in first]]
    return tidy_frame, seeds_frame, summary


def summary_row(seeds, controls, n_tasks: int | None = None, random_levels=None) -> dict:
    """Per configuration: split probabilities with 95% intervals over seeds, and medians.

    p_split* follow the headline criterion (analysis.split); p_split_<c> (with _low/_high)
    and first_split_level_<c> each criterion c (complete, effective, output, functional) the
    seeds table has, p_split_functional_before_degradation (with _low/_high) the functional
    split (by the minimum cut) before degradation, functional_gap_levels the median first
    structural − first functional split level, split_distance_last,
    split_distance_w_share_last and split_distance_at_functional_split the medians over seeds
    of the split distance d at the last level, of d_w's share there and of d at the first
    functional split (docs/science.md §6); random_split_distance_last the median over seeds of the
    random masks' d at their last level (random_levels: random_levels.csv, where the control
    ran). With one task (n_tasks = 1) every split number is NaN:
    not applicable.
    """
    from pipeline.analysis import CRITERIA, fisher_p, wilson

    n = len(seeds)
    applicable = n_tasks is None or n_tasks >= 2
    split = seeds["first_split_level"].notna() & applicable
    flag = lambda c: seeds[c].map(lambda v: v is True or v == 1)  # noqa: E731 (NaN: False)
    before = flag("split_before_degradation")
    at_base = flag("split_at_base_params")
    row: dict = {"seeds": n}
    fractions = [("split", split), ("split_before_degradation", before),
                 ("split_at_base_params", at_base)]
    fractions += [(f"split_{c}", seeds[f"first_split_level_{c}"].notna()) for c in CRITERIA
                  if f"first_split_level_{c}" in seeds]
    if "split_before_degradation_functional" in seeds:
        fractions.append(("split_functional_before_degradation",
                          flag("split_before_degradation_functional")))
    for name, flags in fractions:
        k = int(flags.sum())
        lo, hi = wilson(k, n)
        row.update({f"p_{name}": k / n, f"p_{name}_low": lo, f"p_{name}_high": hi}
                   if applicable else dict.fromkeys((f"p_{name}", f"p_{name}_low",
                                                     f"p_{name}_high"), math.nan))
    med = lambda s: float(s.median()) if s.notna().any() else math.nan  # noqa: E731
    for c in CRITERIA:
        if f"first_split_level_{c}" in seeds:
            row[f"first_split_level_{c}"] = med(seeds[f"first_split_level_{c}"])
    if "functional_gap_levels" in seeds:
        row["functional_gap_levels"] = med(seeds["functional_gap_levels"])
    # coverage (mean over the configuration's tasks, per seed) and leakage: medians over seeds
    for when in ("at_split", "last"):
        cols = [c for c in seeds if c.startswith("coverage_") and c.endswith(f"_{when}")]
        if cols:
            row[f"coverage_{when}"] = med(seeds[cols].astype(float).mean(axis=1, skipna=False))
    for c in ("leakage_last", "leakage_w_last", "split_distance_last",
              "split_distance_w_share_last", "split_distance_at_functional_split"):
        if c in seeds:
            row[c] = med(seeds[c].astype(float)) if applicable else math.nan
    row.update({
        "first_split_level": med(seeds["first_split_level"]),
        "first_split_base_level": med(seeds["first_split_base_level"]),
        "params_at_split": med(seeds["params_at_split"]),
        "alive_at_split": med(seeds["alive_at_split"]),
        "alive_weights_at_split": (med(seeds["alive_weights_at_split"]) if applicable
                                   else math.nan),
        "dense_test_acc": float(seeds["dense_test_acc"].mean()),
        "test_acc_at_split": (float(seeds.loc[split, "test_acc_at_split"].mean())
                              if split.any() else math.nan),
        "degradation_level": med(seeds["degradation_level"]),
    })
    if "random_mask_split" in controls and applicable:
        flags = controls["random_mask_split"].astype(bool)
        lo, hi = wilson(int(flags.sum()), len(flags))
        row.update({"p_random_mask_split": float(flags.mean()),
                    "p_random_mask_split_low": lo, "p_random_mask_split_high": hi,
                    # Fisher's exact test: does IMP split more (or less) often than chance?
                    "fisher_p_imp_vs_random": fisher_p(int(split.sum()), n, int(flags.sum()),
                                                       len(flags))})
    if random_levels is not None and "split_distance" in random_levels and applicable \
            and random_levels["split_distance"].notna().any():
        last = random_levels.sort_values("level").groupby("seed").last()
        row["random_split_distance_last"] = med(last["split_distance"].astype(float))
    if "reinit_test_acc_at_split" in controls:
        row.update({
            "ticket_test_acc_at_split": float(controls["ticket_test_acc_at_split"].mean()),
            "reinit_test_acc_at_split": float(controls["reinit_test_acc_at_split"].mean())})
    return row


def study_metrics(summary, dying_keys: tuple[str, ...] = ()) -> dict:
    """reports/study/metrics.json: per configuration, the headline numbers (null for NaN), the
    dying columns of `dying_keys` (pipeline.study_dying.METRICS_KEYS) among them."""
    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v
    keys = ["seeds", "p_split", "p_split_low", "p_split_high", "p_split_before_degradation",
            "p_split_before_degradation_low", "p_split_before_degradation_high",
            "p_split_at_base_params", "first_split_level", "params_at_split", "dense_test_acc",
            "test_acc_at_split"]
    keys += [k for c in ("complete", "effective", "output", "functional")
             for k in (f"p_split_{c}", f"p_split_{c}_low", f"p_split_{c}_high",
                       f"first_split_level_{c}") if k in summary]
    keys += [k for k in ("p_split_functional_before_degradation",
                         "p_split_functional_before_degradation_low",
                         "p_split_functional_before_degradation_high", "functional_gap_levels",
                         "coverage_at_split", "coverage_last", "leakage_last", "leakage_w_last",
                         "split_distance_last", "split_distance_w_share_last",
                         "split_distance_at_functional_split", "random_split_distance_last")
             if k in summary]
    keys += [k for k in dying_keys if k in summary]
    return {"configurations": int(len(summary)),
            **{row["config"]: {k: clean(row[k]) for k in keys}
               for row in summary.to_dict("records")}}


# ---- presets ------------------------------------------------------------------------------------
def followed_axes(document: dict) -> dict:
    """{axis: [value]} for every study axis whose base key the preset document sets and whose
    axis it does not: the axis follows the base key (a preset's `model.hidden: [8, 8]` studies
    8x8, not params.yaml's study.hidden), written as the axis writes it."""
    own = document.get("study") if isinstance(document.get("study"), dict) else {}
    out = {}
    for axis, (section, key) in STUDY_AXES.items():
        values = document.get(section)
        if isinstance(values, dict) and key in values and axis not in own:
            value = values[key]
            if axis == "tasks" and isinstance(value, list):
                value = "+".join(map(str, value))
            elif axis == "hidden" and isinstance(value, list):
                value = "x".join(map(str, value))
            out[axis] = [value]
    return out


def preset_flags(path: str | os.PathLike) -> list[str]:
    """A preset file (a partial params.yaml) as `-S key=value` arguments for `dvc exp run`,
    with `-S study.<axis>=[…]` for every axis that follows its base key (followed_axes)."""
    raw = config.read_yaml(path) or {}
    flags = []
    if isinstance(raw, dict) and followed_axes(raw):
        raw = {**raw, "study": {**(raw.get("study") or {}), **followed_axes(raw)}}
    for section, values in raw.items():
        for key, value in (values or {}).items():  # `train: null` sets nothing
            text = json.dumps(value) if isinstance(value, (list, dict)) else (
                "null" if value is None else str(value).lower() if isinstance(value, bool)
                else str(value))
            flags += ["-S", f"{section}.{key}={text}"]
    return flags


def apply_preset(params_path: Path, preset: Path) -> dict:
    """params.yaml's document with a preset's keys replaced (key by key), validated as a study
    (every configuration; the study pipeline is what a preset is for)."""
    raw = config.read_sections(params_path)
    document = config.read_yaml(preset, what="preset file") or {}
    if not isinstance(document, dict) or not all(isinstance(v, dict) or v is None
                                                 for v in document.values()):
        raise config.ConfigError(f"{preset}: a preset must be a mapping of sections, each a "
                                 "mapping of keys to values (as in params.yaml)")
    if not any(document.values()):  # it would silently run the study params.yaml holds
        raise config.ConfigError(f"{preset}: an empty preset sets no key; allowed: a preset "
                                 "with at least one key (studies/*.yaml)")
    for section, values in document.items():
        config.section_to_update(raw, section, params_path).update(values or {})
    check_axes_agree(document, raw, preset)
    if followed_axes(document):
        config.section_to_update(raw, "study", params_path).update(followed_axes(document))
    config.parse(raw, study=True)
    return raw


def _as_axis(axis: str, value):
    """A base key's value written as its study axis writes it (lists joined, numbers as floats),
    for comparison; values of the wrong type are returned as they are (parse names them)."""
    if axis == "tasks" and isinstance(value, list):
        return "+".join(map(str, value))
    if axis == "hidden" and isinstance(value, list):
        return "x".join(map(str, value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def check_axes_agree(document: dict, raw: dict, preset) -> None:
    """Refuse a preset that sets both a study axis (study.tasks, study.init, …) and its base key
    (data.tasks, model.init, …) to a value the axis does not hold: the study runs the axis
    values, so the base key would be silently ignored (issue 26: a copy of images_thesis.yaml
    with only data.tasks changed reran Fashion-MNIST twice). An axis the preset leaves unset
    follows the base key instead (followed_axes). Raises ConfigError, one line naming both."""
    own = document.get("study") if isinstance(document.get("study"), dict) else {}
    for axis, (section, key) in STUDY_AXES.items():
        values = document.get(section) or {}
        if key not in values or axis not in own:
            continue
        axis_values = own[axis]
        if not isinstance(axis_values, list):
            continue  # a wrong type: parse names it
        base = _as_axis(axis, values[key])
        if base not in [_as_axis(axis, v) for v in axis_values]:
            shown = base if not isinstance(base, float) else values[key]
            raise config.ConfigError(
                f"{preset}: {section}.{key} {values[key]!r} is not among study.{axis} "
                f"{axis_values!r}, and a study runs the axis values, not the base key; allowed: "
                f"study.{axis} holding {shown!r} (set it in the preset), or no {section}.{key}")


def workspace_drift(params_path: Path, document: dict) -> list[str]:
    """`section.key`s where the params file differs from its committed version (git HEAD) and
    the preset does not set: values that the working file, the base of both `dvc exp run -S`
    and pipeline.baseline --preset, carries in from an earlier experiment. [] outside git."""
    import subprocess

    try:
        shown = subprocess.run(["git", "show", f"HEAD:./{params_path.name}"],
                               cwd=params_path.resolve().parent, capture_output=True,
                               text=True, encoding="utf-8", timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if shown.returncode != 0:
        return []
    try:
        committed = config.parse_yaml(shown.stdout, "committed params") or {}
        working = config.read_yaml(params_path) or {}
    except config.ConfigError:
        return []
    if not isinstance(committed, dict) or not isinstance(working, dict):
        return []
    out = []
    for section in sorted(set(committed) | set(working)):
        old, new = committed.get(section) or {}, working.get(section) or {}
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        set_here = document.get(section) or {}
        out += [f"{section}.{k}" for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k) and k not in set_here]
    return out


def drift_note(params_path: Path, document: dict) -> str | None:
    """One line for stderr naming workspace_drift's keys, or None."""
    keys = workspace_drift(params_path, document)
    if not keys:
        return None
    return (f"note: {params_path} differs from its committed version in {', '.join(keys)} (not "
            "set by the preset); the preset is applied to the working file, as dvc exp run "
            "does: `git checkout params.yaml` to start from the committed one")


def checked_flags(preset: Path, plain: bool = False) -> list[str]:
    """The preset's `-S` arguments after checking it fully against the working params.yaml (the
    file `dvc exp run` applies them to): every study configuration, and with plain=True the
    main run's params too. Raises ConfigError (one line); the drift note goes to stderr."""
    raw = apply_preset(Path("params.yaml"), preset)
    if plain:
        config.parse(raw)
    note = drift_note(Path("params.yaml"), config.read_yaml(preset, what="preset file") or {})
    if note:
        print(note, file=sys.stderr)
    return preset_flags(preset)


def run_problem(args) -> str | None:
    """What is wrong with `run`'s arguments, one line naming it and what is allowed, or None.
    (DVC would refuse a bad name too, but with its own exit code and wording.)"""
    import subprocess

    pipeline = Path("dvc.yaml" if args.plain else "studies/dvc.yaml")
    if not pipeline.is_file():
        return (f"{pipeline} not found in {Path.cwd()}; allowed: run it from the repository "
                "root (the folder with params.yaml and dvc.yaml)")
    if args.name is not None:
        try:
            ok = subprocess.run(["git", "check-ref-format", f"refs/exps/{args.name}"],
                                capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = True  # no git: DVC's own check still refuses before any work
        if not ok:
            return (f"-n/--name: {args.name!r} is not allowed; allowed: a git reference name "
                    "(letters, digits, '-', '_', '.'; no spaces, no '..', '~', '^', ':', '?', "
                    "'*', '[', '\\')")
    return None


def exp_run_command(flags: list[str], args) -> list[str]:
    """`dvc exp run` with the preset's flags: the study pipeline, or the main one (--plain)."""
    from pipeline.cli import dvc_command

    command = [*dvc_command(), "exp", "run", *([] if args.plain else ["studies/dvc.yaml"]), *flags]
    command += ["--temp"] if args.temp else ["--queue"] if args.queue else []
    return command + (["-n", args.name] if args.name is not None else [])


def main(argv: list[str]) -> int:
    import shlex

    from pipeline import cli

    parser = cli.parser("python -m pipeline.study",
                        "Study presets (files under studies/): check one and run it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,flags}")
    r = sub.add_parser("run", help="check a preset, then run it with dvc exp run studies/dvc.yaml "
                                   "-S … (nothing starts when the preset is wrong)",
                       description="Check a preset against the working params.yaml (every "
                                   "study configuration), then replace this process with `dvc "
                                   "exp run studies/dvc.yaml -S key=value …`. A wrong preset "
                                   "stops with one line, exit code 2, and nothing runs.")
    r.add_argument("preset", help="a preset file, e.g. studies/size.yaml")
    r.add_argument("--plain", action="store_true",
                   help="one plain run (dvc.yaml) of the preset's keys instead of the study")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--temp", action="store_true",
                       help="run in a temporary copy: the results go to the experiment, the "
                            "workspace stays as it is")
    where.add_argument("--queue", action="store_true",
                       help="queue it (dvc queue start runs it, outside the workspace)")
    r.add_argument("-n", "--name", help="the experiment's name (dvc exp run -n)")
    r.add_argument("--dry-run", action="store_true",
                   help="print the dvc command instead of running it")
    f = sub.add_parser("flags", help="print a preset as -S arguments for dvc exp run (the "
                                     "preset is checked against the working params.yaml, the "
                                     "file dvc exp run applies the flags to); exit code 2 and "
                                     "nothing printed on stdout when it is wrong")
    f.add_argument("preset")
    args = parser.parse_args(argv)
    problem = run_problem(args) if args.command == "run" else None
    if problem:
        cli.stop(problem)
    try:
        flags = checked_flags(Path(args.preset), plain=args.command == "run" and args.plain)
    except (config.ConfigError, OSError) as exc:
        cli.stop(str(exc))
    if args.command == "flags":
        print(" ".join(shlex.quote(x) for x in flags))
        return 0
    command = exp_run_command(flags, args)
    if args.dry_run:
        print(shlex.join(command))
        return 0
    print(f"python -m pipeline.study: {shlex.join(command)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    try:
        os.execvp(command[0], command)  # DVC's output, exit code and signals are the user's
    except OSError as exc:
        cli.stop(f"cannot start {command[0]}: {exc.strerror or exc}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
