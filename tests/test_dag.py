"""The DVC DAG is exact: every stage depends on each `pipeline/` module it imports (directly,
through other modules, or lazily inside functions) and declares every params key it reads.

A stale dependency is silent: editing an undeclared module (or changing an undeclared key)
leaves a cached result in place while `dvc status` says "up to date".
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import sys
import types
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, stage_in_process, tiny_params, write_params

from pipeline import config
from pipeline.closure import import_closure as closure_of
from pipeline.closure import imported_modules, module_file

PIPELINES = (ROOT / "dvc.yaml", ROOT / "studies/dvc.yaml")


# ---- import closure (pipeline.closure: the same derivation the imp stage's manifest hashes) --
def _module_file(name: str) -> Path | None:
    return module_file(name, ROOT)


def import_closure(entry: Path) -> set[str]:
    return closure_of(entry, ROOT)


def stages() -> list[tuple[str, dict]]:
    """(name, stage definition) of every stage of both pipelines, with paths from ROOT."""
    out = []
    for file in PIPELINES:
        doc = yaml.safe_load(file.read_text())
        for name, st in doc["stages"].items():
            wdir = (file.parent / st.get("wdir", ".")).resolve()
            prefix = os.path.relpath(wdir, ROOT)
            out.append((f"{file.relative_to(ROOT)}:{name}", {**st, "_wdir": prefix}))
    return out


def _entry(stage: dict) -> Path:
    words = stage["cmd"].split()
    assert words[:3] == ["python", "-m", words[2]] and words[2].startswith("pipeline."), \
        stage["cmd"]
    return _module_file(words[2])


def _dep_paths(stage: dict) -> list[str]:
    return [os.path.normpath(os.path.join(stage["_wdir"], d)) for d in stage.get("deps", [])]


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name,stage", stages(), ids=[n for n, _ in stages()])
def test_stage_deps_are_its_import_closure(name, stage):
    """Every imported pipeline/ file is a dep (a folder dep covers its files), and no
    pipeline/ file that the stage never imports is one (it would rerun the stage for nothing)."""
    closure = import_closure(_entry(stage))
    deps = _dep_paths(stage)
    missing = sorted(p for p in closure if not _covered(p, deps))
    assert not missing, f"{name}: deps miss modules the stage imports: {missing}"
    code_deps = [d for d in deps if d.startswith("pipeline/") and d.endswith(".py")]
    extra = sorted(set(code_deps) - closure)
    assert not extra, f"{name}: deps name modules the stage never imports: {extra}"


def test_import_closure_follows_lazy_and_transitive_imports():
    """The closure itself (cross-checked by hand against the sources): plot imports graph via
    `from pipeline.graph import analyze`, analysis lazily inside plots.split_over_levels, and
    config → trajectory transitively."""
    closure = import_closure(ROOT / "pipeline/stages/plot.py")
    assert {"pipeline/graph.py", "pipeline/analysis.py", "pipeline/trajectory.py",
            "pipeline/stages/__init__.py"} <= closure
    assert "pipeline/train.py" not in import_closure(ROOT / "pipeline/stages/generate.py")
    assert "pipeline/imp.py" in import_closure(ROOT / "pipeline/stages/train.py")


# ---- params reads -------------------------------------------------------------------------------
class Recorder:
    """Read keys as 'section.key'; `Params`' own properties and methods run on the proxy, so
    derived quantities (n_inputs, trajectory()) record the keys they read too."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def wrap(self, params: config.Params) -> ParamsProxy:
        return ParamsProxy(params, self)


class SectionProxy:
    def __init__(self, name: str, section, recorder: Recorder) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_section", section)
        object.__setattr__(self, "_recorder", recorder)

    def __getattr__(self, key: str):
        section = object.__getattribute__(self, "_section")
        if key in {f.name for f in dataclasses.fields(section)}:
            object.__getattribute__(self, "_recorder").keys.add(
                f"{object.__getattribute__(self, '_name')}.{key}")
        return getattr(section, key)

    def __reduce__(self):  # a whole section handed to a worker or a fingerprint: all keys read
        section = object.__getattribute__(self, "_section")
        for f in dataclasses.fields(section):
            getattr(self, f.name)
        return (lambda s: s, (section,))


def _whole_section_read(proxy: SectionProxy) -> None:
    section = object.__getattribute__(proxy, "_section")
    for f in dataclasses.fields(section):
        getattr(proxy, f.name)


class ParamsProxy:
    def __init__(self, params: config.Params, recorder: Recorder) -> None:
        object.__setattr__(self, "_params", params)
        object.__setattr__(self, "_recorder", recorder)

    def __getattr__(self, name: str):
        params = object.__getattribute__(self, "_params")
        recorder = object.__getattribute__(self, "_recorder")
        if name in config.SECTIONS:
            return SectionProxy(name, getattr(params, name), recorder)
        attr = getattr(type(params), name)
        if isinstance(attr, property):
            return attr.fget(self)
        if isinstance(attr, types.FunctionType):
            return types.MethodType(attr, self)
        return getattr(params, name)


def _unwrap_sections(monkeypatch) -> None:
    """Library functions that take a whole section (dataclasses.asdict/replace, isinstance
    checks) get the real dataclass, and the whole section counts as read."""
    real_asdict, real_replace = dataclasses.asdict, dataclasses.replace

    def unwrap(obj):
        if isinstance(obj, SectionProxy):
            _whole_section_read(obj)
            return object.__getattribute__(obj, "_section")
        return obj

    monkeypatch.setattr(dataclasses, "asdict", lambda obj, **kw: real_asdict(unwrap(obj), **kw))
    monkeypatch.setattr(dataclasses, "replace",
                        lambda obj, /, **kw: real_replace(unwrap(obj), **kw))


def declared(stage: dict) -> set[str]:
    """'section' or 'section.key' entries of a stage's params (params.yaml only)."""
    out: set[str] = set()
    for entry in stage.get("params", []):
        if isinstance(entry, dict):  # {file: [keys]}
            out |= {k for file, keys in entry.items() if file == "params.yaml" for k in keys}
        else:
            out.add(entry)
    return out


def undeclared(read: set[str], decl: set[str]) -> set[str]:
    return {k for k in read if k not in decl and k.split(".")[0] not in decl}


MAIN_STAGES = ("params", "generate", "trajectory", "train", "learned", "imp", "analyze", "plot")
STUDY = {"extensions": 0, "iterations": 2, "tasks": "moons+circles", "hidden": "6x6",
         "init": "torch_default", "noise": 0.1}
# (pipeline file, stage, module, command-line arguments) of every stage, in DAG order
STAGES = [("dvc.yaml", s, s, []) for s in MAIN_STAGES] + [
    ("studies/dvc.yaml", "run", "study_run",
     ["--work", "models/study/tiny", "--out", "reports/study/runs/tiny",
      *[f"--{k}={v}" for k, v in STUDY.items()]]),
    ("studies/dvc.yaml", "aggregate", "aggregate", [])]
# Reads that are checks, not inputs: `run@…` reads `study` only to refuse a configuration that
# is not in it (DVC hands it the configuration in its command line); declaring `study` would
# rerun every configuration when one value is added to an axis.
NOT_INPUTS = {("studies/dvc.yaml", "run"): {"study"}}


@pytest.fixture(scope="module")
def reads(tmp_path_factory) -> dict[tuple[str, str], set[str]]:
    """Run every stage of both pipelines in order, in process, on tiny params (one tiny study
    configuration); record the params keys each one reads after loading them."""
    folder = tmp_path_factory.mktemp("dag")
    params = tiny_params(**{"train.workers": 1})
    params["study"] = {axis: [value] for axis, value in STUDY.items()}
    write_params(folder, params)
    out: dict[tuple[str, str], set[str]] = {}
    mp = pytest.MonkeyPatch()
    old = Path.cwd()
    try:
        os.chdir(folder)
        _unwrap_sections(mp)
        real_load = config.load
        for file, stage, module_name, argv in STAGES:
            module = importlib.import_module(f"pipeline.stages.{module_name}")
            recorder = Recorder()
            mp.setattr(config, "load", lambda *a, **kw: recorder.wrap(real_load(*a, **kw)))
            mp.setattr(sys, "argv", [module_name, *argv])
            module.main()
            out[(file, stage)] = recorder.keys
    finally:
        os.chdir(old)
        mp.undo()
    return out


@pytest.mark.xdist_group("dag_reads")  # one pytest-xdist worker runs the stages once for all
@pytest.mark.parametrize("file,stage", [(f, s) for f, s, _, _ in STAGES],
                         ids=[f"{f}:{s}" for f, s, _, _ in STAGES])
def test_stage_declares_every_params_key_it_reads(file, stage, reads):
    decl = declared(yaml.safe_load((ROOT / file).read_text())["stages"][stage])
    if stage == "params":  # it reads every key (config.load checks them all), so every section,
        assert decl == set(config.SECTIONS), decl  # `study` to refuse it alone (stages/params.py)
        return
    read = reads[(file, stage)]
    assert read, f"{stage}: recorded no params read at all (is the recorder wired?)"
    missing = undeclared(read, decl | NOT_INPUTS.get((file, stage), set()))
    assert not missing, f"{stage} reads params it does not declare in {file}: {sorted(missing)}"


def test_recorder_sees_derived_reads():
    """The recorder is not blind to properties: Params.trajectory() reads prune and model keys."""
    rec = Recorder()
    proxy = rec.wrap(config.parse(tiny_params()))
    proxy.trajectory()
    assert {"prune.iterations", "prune.target", "model.hidden", "data.tasks"} <= rec.keys
    assert undeclared(rec.keys, {"prune", "model"}) == {k for k in rec.keys
                                                        if k.startswith("data.")}


# ---- one direction between layers (issue: library modules never import entry points) ----------
ENTRY_POINTS = {"pipeline/sweep.py"}  # `python -m pipeline.sweep`: the Dask runner of the study stages


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions (absolute names)."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_library_modules_never_import_stage_entry_points():
    libraries = [p for p in sorted((ROOT / "pipeline").rglob("*.py"))
                 if "stages" not in p.relative_to(ROOT).parts
                 and p.relative_to(ROOT).as_posix() not in ENTRY_POINTS]
    assert len(libraries) > 10
    offenders = {p.relative_to(ROOT).as_posix(): sorted(m for m in _imported_modules(p)
                                                        if m.startswith("pipeline.stages"))
                 for p in libraries}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_stage_exposes_run_params_root():
    import inspect

    for name in ("params", "generate", "trajectory", "train", "learned", "imp", "analyze", "plot",
                 "aggregate"):
        module = importlib.import_module(f"pipeline.stages.{name}")
        params = list(inspect.signature(module.run).parameters)
        assert params[:2] == ["params", "root"], name
    source = (ROOT / "pipeline/stages/study_run.py").read_text()
    assert "chdir" not in source and "Lock" not in source


@pytest.mark.parametrize("stage", ["params", "generate", "trajectory", "train", "learned", "imp",
                                   "analyze", "plot", "aggregate"])
def test_stage_help_runs_nothing_and_extra_arguments_are_refused(stage, tmp_path, monkeypatch,
                                                                 capsys):
    """`python -m pipeline.stages.X --help` prints what the stage does and writes nothing (it
    used to run the stage); an argument a stage does not take is one line, exit code 2. (Run in
    this process; tests/test_locale.py runs every stage's --help as its own process.)"""
    write_params(tmp_path, tiny_params())
    run = lambda *args: stage_in_process(stage, tmp_path, monkeypatch, capsys, *args)  # noqa: E731
    shown = run("--help")
    assert shown.returncode == 0 and f"pipeline.stages.{stage}" in shown.stdout
    module = importlib.import_module(f"pipeline.stages.{stage}")
    assert module.__doc__.strip().splitlines()[0] in shown.stdout
    refused = run("--workers", "4")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "takes no arguments" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_pipeline_imports_run_one_way():
    """No import circle among pipeline/ modules, lazy imports included (`engine.live` and
    `engine.loop` imported each other; a package's __init__ counts as a module)."""
    import networkx as nx

    graph = nx.DiGraph()
    for file in sorted((ROOT / "pipeline").rglob("*.py")):
        name = ".".join(file.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph.add_node(name)
        graph.add_edges_from((name, m) for m in imported_modules(file) if m != name)
    assert not list(nx.simple_cycles(graph))
