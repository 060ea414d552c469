"""params.yaml edited while a stage runs (issue 36; treeverse/dvc#11058: DVC records params.yaml
as it is when a stage *ends*). Every stage compares, at its end, the params sections it declares
in dvc.yaml with those it started with: a change is refused in one line naming the keys, exit
code 2, and the stage's outputs are removed (its persistent ones kept) so that DVC reruns it; an
edit of keys the stage does not declare changes nothing.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, copied
from test_faults import NAME, STUDY_ARGS, finished_run, tree

from pipeline import config
from pipeline.paths import outputs_by_stage
from pipeline.stages import declaration, declared_params, persistent_outputs

# Runs the stage module `stage` through the stage runner, with `function` of the stage module
# wrapped so that its first call sets params.yaml's `key` to `value` (as a user editing the
# file while the stage runs: the imp stage's first level, the analyze stage's first level).
HOOKED = """
import sys
import yaml
from pipeline.stages import cli, {stage} as stage

original = getattr(stage, {function!r})
edited = []

def hooked(*args, **kwargs):
    if not edited:
        edited.append(True)
        with open("params.yaml") as f:
            params = yaml.safe_load(f)
        for key, value in {edits!r}:
            section, name = key.split(".")
            params[section][name] = value
        with open("params.yaml", "w") as f:
            f.write({text!r} or yaml.safe_dump(params, sort_keys=False))
    return original(*args, **kwargs)

setattr(stage, {function!r}, hooked)
sys.argv = sys.argv[:1] + {args!r}
cli(stage.main)
"""


@pytest.fixture(scope="session")
def finished(tmp_path_factory, reproduced_repo) -> Path:
    """Every stage of both pipelines run once (test_faults' shared run): read only."""
    return finished_run(tmp_path_factory, reproduced_repo)


def hooked_stage(run: Path, stage: str, function: str, edits: list[tuple[str, object]],
                 args: list[str] = (), text: str = "") -> subprocess.CompletedProcess:
    code = HOOKED.format(stage=stage, function=function, edits=edits, args=list(args), text=text)
    proc = subprocess.run([sys.executable, "-c", code], cwd=run, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def ready(finished: Path, run: Path, stage: str) -> Path:
    """A copy of the finished run with work left for `stage`: for imp, levels 1 and 2 to train
    again (imp: ... is missing; making level … again)."""
    copied(finished, run)
    for level in ((1, 2) if stage == "imp" else ()):
        (run / f"models/imp/level_{level:02d}.pt").unlink()
    return run


# (stage, function called once the stage has begun its work, a key the stage declares, a value)
DURING = {"imp": ("train_level_parallel", "prune.method", "finetune"),
          "analyze": ("analyze", "analysis.split", "effective")}


@pytest.mark.parametrize("stage", list(DURING))
def test_a_declared_key_edited_while_the_stage_runs_is_refused(stage, finished, tmp_path):
    """The issue's case (prune.method set to finetune as imp trains its first level; for
    analyze, analysis.split as it analyses its first level): one line naming the key, exit 2,
    the stage's outputs removed so that DVC reruns it (models/imp, persist: true, kept: its
    manifest records the params its levels were made with)."""
    run = ready(finished, tmp_path / "run", stage)
    function, key, value = DURING[stage]
    proc = hooked_stage(run, stage, function, [(key, value)])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: params.yaml changed while {stage} ran ({key}); run dvc repro again")
    for out in outputs_by_stage()[stage]:
        assert (run / out).exists() == (out == Path("models/imp")), out
    if stage == "imp":  # the levels it made were made with rewinding, and are recorded so
        assert (run / "models/imp/level_02.pt").exists()
        proc = subprocess.run([sys.executable, "-m", "pipeline.stages.imp"], cwd=run,
                              capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert "params (prune.method) changed since models/imp was written; starting over" \
            in proc.stderr, proc.stderr


@pytest.mark.parametrize("stage", list(DURING))
def test_an_undeclared_key_edited_while_the_stage_runs_changes_nothing(stage, finished, tmp_path):
    """plot.dpi and data.noise are read by neither stage (data.noise: only through the data
    files): the stage finishes, exit 0, its outputs as an untouched run's."""
    run = ready(finished, tmp_path / "run", stage)
    function, _, _ = DURING[stage]
    proc = hooked_stage(run, stage, function, [("plot.dpi", 120), ("data.noise", 0.2)])
    assert proc.returncode == 0, proc.stderr
    for out in outputs_by_stage()[stage]:
        assert tree(run / out) == tree(finished / out) if (run / out).is_dir() else \
            (run / out).read_bytes() == (finished / out).read_bytes(), out


def test_several_keys_and_an_unreadable_params_file_are_named(finished, tmp_path):
    run = ready(finished, tmp_path / "run", "imp")
    edits = [("prune.method", "finetune"), ("train.lr", 0.5), ("model.hidden", [8, 8]),
             ("prune.reinit_control", True)]
    proc = hooked_stage(run, "imp", "train_level_parallel", edits)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        "error: params.yaml changed while imp ran (model.hidden, prune.method, "
        "prune.reinit_control and 1 more); run dvc repro again"), proc.stderr

    run = ready(finished, tmp_path / "run2", "imp")
    proc = hooked_stage(run, "imp", "train_level_parallel", [], text="prune: [\n")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: params.yaml changed while imp ran (params.yaml: not valid YAML"), proc.stderr


def test_a_study_configuration_refuses_an_edit_of_its_sections(finished, tmp_path):
    """study_run (studies/dvc.yaml's run@…, sections data, model, train, prune, analysis):
    an edit while it runs removes its result folder and keeps its work folder (resumable)."""
    run = copied(finished, tmp_path / "run")
    proc = hooked_stage(run, "study_run", "run_configuration", [("train.lr", 0.5)],
                        args=STUDY_ARGS)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        "error: params.yaml changed while study_run ran (train.lr); run dvc repro again")
    assert not (run / "reports/study/runs" / NAME).exists()
    assert tree(run / "models/study" / NAME / "models/imp") == \
        tree(finished / "models/study" / NAME / "models/imp")


@pytest.mark.parametrize("module", ["params", "generate", "trajectory", "train", "learned", "imp",
                                    "analyze", "plot", "study_run", "aggregate"])
def test_every_stage_finds_what_it_declares_in_dvc_yaml(module):
    """Every stage module finds its dvc.yaml entry (else it would compare every section), and
    only imp keeps an output when it refuses."""
    entry = declaration(module)
    assert entry is not None and declared_params(entry), module
    assert persistent_outputs(entry) == ({Path("models/imp")} if module == "imp" else set())


def test_changed_params_compares_the_declared_keys_only():
    before = {"data": {"tasks": ["moons"], "noise": 0.1}, "prune": {"method": "rewind", "rate": None},
              "plot": {"dpi": 110}}
    after = {"data": {"tasks": ["moons", "circles"], "noise": 0.1},
             "prune": {"method": "rewind", "target": 50}, "plot": {"dpi": 120}}
    assert config.changed_params(before, after, ["data.tasks", "prune"]) == [
        "data.tasks", "prune.rate", "prune.target"]
    assert config.changed_params(before, after, ["data.noise", "prune.method"]) == []
    assert config.changed_params(before, before, None) == []
    assert config.changed_params(before, after, None) == [
        "data.tasks", "plot.dpi", "prune.rate", "prune.target"]
    # a key set to null is a change from a missing key; a section that is not a mapping
    assert config.changed_params({"a": {}}, {"a": {"k": None}}, ["a.k"]) == ["a.k"]
    assert config.changed_params({"a": {"k": 1}}, {"a": None}, ["a"]) == ["a"]
    assert config.changed_params(None, {"a": {"k": 1}}, ["a.k"]) == ["a.k"]

