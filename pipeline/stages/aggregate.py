"""Stage `aggregate` of studies/dvc.yaml: every configuration's results → reports/study/."""
from __future__ import annotations

from pathlib import Path

from pipeline import config, io
from pipeline.paths import RunPaths
from pipeline.stages import StageError, cli

RUNS = RunPaths().study_runs
OUT = RunPaths().study


def write_study(params: config.Params, runs: Path = RUNS, out: Path = OUT) -> None:
    """tidy.csv, seeds.csv, summary.csv, dying.json, metrics.json and figures/ of the study in
    params."""
    from pipeline import dying_compare, study, study_dying
    from pipeline.dying_plots import study_figure
    from pipeline.plots import save, study_figures, style

    combos = config.configurations(params.study)
    try:
        results = study.read_results(runs, combos)
    except FileNotFoundError as exc:
        raise StageError(f"{exc}; run dvc repro studies/dvc.yaml") from None
    except ValueError as exc:
        raise StageError(str(exc)) from None
    tidy, seeds, summary = study.aggregate(results, params.analysis.degradation_threshold)
    seeds, summary = study_dying.with_answers(results, tidy, seeds, summary)
    io.write_csv(out / "tidy.csv", tidy)
    io.write_csv(out / "seeds.csv", seeds)
    io.write_csv(out / "summary.csv", summary)
    # what dies during IMP across configurations (docs/science.md §8): in full, and the p-values
    compared = dying_compare.comparisons(summary, seeds)
    io.write_json(out / "dying.json", compared)
    io.write_json(out / "metrics.json", {**study.study_metrics(summary, study_dying.METRICS_KEYS),
                                         "dying": dying_compare.headlines(compared)})
    style()
    with io.atomic_dir(out / "figures") as folder:
        for name, fig in [*study_figures(summary, seeds), ("dying", study_figure(summary, tidy))]:
            save(fig, folder / f"{name}.png", params.plot.dpi)
    n, k = len(combos), int(summary["seeds"].max())
    print(f"aggregate: {n} configuration{'s' * (n != 1)} × {k} seed{'s' * (k != 1)} → {out}")
    for row in summary.to_dict("records"):
        print(f"  {row['config']}: split {row['p_split']:.2f} "
              f"[{row['p_split_low']:.2f}, {row['p_split_high']:.2f}], before degradation "
              f"{row['p_split_before_degradation']:.2f}")
    for line in dying_compare.lines(compared):
        print(line)


def run(params: config.Params, root: Path = Path(".")) -> list[Path]:
    """The study of params (validated with study=True) from root/reports/study/runs."""
    paths = RunPaths(root)
    write_study(params, paths.study_runs, paths.study)
    return [paths.study / name for name in ("tidy.csv", "seeds.csv", "summary.csv",
                                            "dying.json", "metrics.json", "figures")]


def main() -> list[Path]:
    return run(config.load(study=True))


if __name__ == "__main__":
    cli(main)
