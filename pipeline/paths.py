"""Every artifact path of a run, named once, relative to the run's root folder.

A run's root is the repository for `dvc repro` (root ".") and a configuration's work folder in a
study (`models/study/<name>`); the stage functions take the root instead of changing directory,
so several configurations can run in one process (Dask workers, threads) without a lock.
dvc.yaml names the same paths for DVC; tests/test_dag.py checks the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    """The files and folders of one run under `root`."""

    root: Path = Path(".")

    # generate
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tasks_json(self) -> Path:
        return self.data / "tasks.json"

    # trajectory
    @property
    def shape_json(self) -> Path:
        return self.root / "models" / "shape.json"

    @property
    def trajectory_csv(self) -> Path:
        return self.root / "reports" / "trajectory.csv"

    # train
    @property
    def init_pt(self) -> Path:
        return self.root / "models" / "init.pt"

    @property
    def dense_pt(self) -> Path:
        return self.root / "models" / "dense.pt"

    # imp
    @property
    def imp(self) -> Path:
        return self.root / "models" / "imp"

    @property
    def imp_reports(self) -> Path:
        return self.root / "reports" / "imp"

    @property
    def imp_levels_csv(self) -> Path:
        return self.imp_reports / "levels.csv"

    @property
    def imp_curves_csv(self) -> Path:
        return self.imp_reports / "curves.csv"

    @property
    def imp_controls_csv(self) -> Path:
        return self.imp_reports / "controls.csv"

    # analyze
    @property
    def analysis(self) -> Path:
        return self.root / "reports" / "analysis"

    @property
    def learned_json(self) -> Path:
        """Stage `learned`: every task's dense accuracy against the task trained alone."""
        return self.root / "reports" / "learned.json"

    @property
    def metrics_json(self) -> Path:
        return self.root / "reports" / "metrics.json"

    @property
    def plots_levels_csv(self) -> Path:
        return self.root / "reports" / "plots" / "levels.csv"

    # plot
    @property
    def figures(self) -> Path:
        return self.root / "reports" / "figures"

    @property
    def every_level(self) -> Path:
        """The drawings of every level (network_levels.png and .gif): DVC-cached, not in git
        for their size; reports/figures, which report.md embeds, is git-tracked."""
        return self.root / "reports" / "every_level"

    @property
    def report_md(self) -> Path:
        return self.root / "reports" / "report.md"

    @property
    def plots_curves_csv(self) -> Path:
        return self.root / "reports" / "plots" / "curves.csv"

    # study pipeline (studies/dvc.yaml), relative to the repository root
    @property
    def study_runs(self) -> Path:
        return self.root / "reports" / "study" / "runs"

    @property
    def study(self) -> Path:
        return self.root / "reports" / "study"

    def study_work(self, name: str) -> Path:
        return self.root / "models" / "study" / name


def outputs_by_stage(paths: RunPaths = RunPaths()) -> dict[str, list[Path]]:
    """What each stage of the main pipeline writes (its dvc.yaml `outs` and `metrics`)."""
    return {"params": [paths.root / "reports" / "params_checked.txt"],
            "generate": [paths.data],
            "trajectory": [paths.shape_json, paths.trajectory_csv],
            "train": [paths.init_pt, paths.dense_pt],
            "learned": [paths.learned_json],
            "imp": [paths.imp, paths.imp_levels_csv, paths.imp_curves_csv, paths.imp_controls_csv],
            "analyze": [paths.analysis, paths.plots_levels_csv, paths.metrics_json],
            "plot": [paths.figures, paths.report_md, paths.plots_curves_csv]}


def made_by(path: str | Path) -> str | None:
    """The main pipeline's stage whose output holds `path` (relative to the repository root, or
    absolute inside the current folder), or None: a study work folder's file, or no stage's."""
    path = Path(path)
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            return None
    for stage, outs in outputs_by_stage().items():
        if any(path == out or out in path.parents for out in outs):
            return stage
    return None
