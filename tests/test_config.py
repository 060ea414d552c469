"""params.yaml validation: a bad file stops before any work with one clear line and exit 2."""
from __future__ import annotations

import dataclasses
import re

import pytest
import yaml
from conftest import ROOT, default_params, run_stage, stage_in_process, write_params

from pipeline import config

# (description, edit of the default params, text the error line must name)
BAD = [
    ("unknown key", lambda p: p["prune"].update(iteration=25), "prune.iteration"),
    ("unknown section", lambda p: p.update(pruning={"rate": 0.2}), "pruning"),
    ("wrong type int", lambda p: p["prune"].update(iterations="many"), "prune.iterations"),
    ("bool as int", lambda p: p["prune"].update(iterations=True), "prune.iterations"),
    ("wrong type list", lambda p: p["model"].update(hidden=40), "model.hidden"),
    ("non-positive width", lambda p: p["model"].update(hidden=[40, 0]), "model.hidden[1]"),
    ("iterations < 1", lambda p: p["prune"].update(iterations=0), "prune.iterations"),
    ("target >= P_0", lambda p: p["prune"].update(target=1922), "prune.target"),
    ("target < 1", lambda p: p["prune"].update(target=0), "prune.target"),
    ("rate outside (0,1)", lambda p: p["prune"].update(target=None, rate=1.5), "prune.rate"),
    ("target and rate", lambda p: p["prune"].update(rate=0.2), "prune.target/prune.rate"),
    ("neither target nor rate", lambda p: p["prune"].update(target=None), "prune.target/prune.rate"),
    ("unknown task", lambda p: p["data"].update(tasks=["moons", "spirals"]), "data.tasks[1]"),
    ("unknown init", lambda p: p["model"].update(init="he"), "model.init"),
    ("unknown optimizer", lambda p: p["train"].update(optimizer="rmsprop"), "train.optimizer"),
    ("fashion without folder", lambda p: p["data"].update(tasks=["fashion_mnist"]),
     "data.fashion_mnist_dir"),
    ("bundled mnist too many samples", lambda p: p["data"].update(tasks=["mnist"], n_samples=5001),
     "data.n_samples"),
    ("mnist copies beyond the bundled digits",
     lambda p: p["data"].update(tasks=["mnist", "mnist"], n_samples=2501), "data.n_samples"),
    ("mnist copies beyond a class of the bundled digits",
     lambda p: p["data"].update(tasks=["mnist", "mnist"], n_samples=1000, classes=3),
     "data.n_samples"),
    ("digits copies beyond sklearn's set",
     lambda p: p["data"].update(tasks=["digits", "moons", "digits"], n_samples=900),
     "data.n_samples"),
    ("negative weight decay", lambda p: p["train"].update(weight_decay=-1e-4), "train.weight_decay"),
    ("weight decay not a number", lambda p: p["train"].update(weight_decay="1e-4x"),
     "train.weight_decay"),
    ("unknown method", lambda p: p["prune"].update(method="lottery"), "prune.method"),
    ("finetune with rewind epochs", lambda p: p["prune"].update(method="finetune", rewind=2),
     "prune.rewind"),
    ("mnist folder missing", lambda p: p["data"].update(tasks=["mnist"], mnist_dir="/nonexistent"),
     "data.mnist_dir"),
    ("fractions too large", lambda p: p["data"].update(val_fraction=0.5, test_fraction=0.45),
     "data.val_fraction + data.test_fraction"),
    ("negative lr", lambda p: p["train"].update(lr=-0.1), "train.lr"),
    ("duplicate seeds", lambda p: p["model"].update(seeds=[1, 1]), "model.seeds"),
    ("negative seed", lambda p: p["model"].update(seeds=[0, -1]), "model.seeds"),
    ("seed beyond int64", lambda p: p["model"].update(seeds=[0, 2**63]), "model.seeds"),
    ("seed beyond uint64", lambda p: p["model"].update(seeds=[10**20]), "model.seeds"),
    ("digits too many samples", lambda p: p["data"].update(tasks=["digits"], n_samples=5000),
     "data.n_samples"),
    ("rewind beyond max_epochs", lambda p: p["prune"].update(rewind=20000), "prune.rewind"),
    ("draw seed not trained", lambda p: p["plot"].update(draw_seed=99), "plot.draw_seed"),
    ("section not a mapping", lambda p: p.update(train=[1, 2]), "train"),
    ("unknown device", lambda p: p["train"].update(device="tpu"), "train.device"),
    ("compact not a bool", lambda p: p["train"].update(compact="yes"), "train.compact"),
    ("unknown monitor", lambda p: p["train"].update(monitor="each"), "train.monitor"),
    ("image size too large", lambda p: p["data"].update(image_size=32), "data.image_size"),
    ("image size not an int", lambda p: p["data"].update(image_size="14"), "data.image_size"),
    ("one class", lambda p: p["data"].update(classes=1), "data.classes"),
    ("eleven classes", lambda p: p["data"].update(classes=11), "data.classes"),
    ("restore_best not a bool", lambda p: p["train"].update(restore_best=1), "train.restore_best"),
    # a wrong type or unknown key is refused in every section, the study's included
    ("study hidden not a string", lambda p: p["study"].update(hidden=[40]), "study.hidden[0]"),
    ("study unknown axis", lambda p: p["study"].update(width=[40]), "study.width"),
    ("rate leaves nothing", lambda p: p["prune"].update(target=None, rate=0.9, iterations=30),
     "prune.rate"),
]


@pytest.mark.parametrize("desc,edit,key", BAD, ids=[b[0] for b in BAD])
def test_bad_params_exit_2_name_key_and_touch_nothing(tmp_path, desc, edit, key, monkeypatch,
                                                      capsys):
    params = default_params()
    edit(params)
    write_params(tmp_path, params)
    sentinel = tmp_path / "data" / "tasks.json"
    sentinel.parent.mkdir()
    sentinel.write_text("old")
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    # in this process; the table below runs a stage process (exit code and streams as a user sees)
    proc = stage_in_process("generate", tmp_path, monkeypatch, capsys)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr          # one line, no traceback
    assert "Traceback" not in proc.stderr
    assert key in lines[0] and "allowed" in lines[0]
    after = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    assert after == before
    assert sentinel.read_text() == "old"


# The study pipeline validates its own configurations (and its error names the configuration);
# the main pipeline never runs them, so none of these stops a main stage.
STUDY_BAD = [
    ("study task unknown", lambda p: p["study"].update(tasks=["moons+spirals"]), "study.tasks"),
    ("study hidden malformed", lambda p: p["study"].update(hidden=["40*40"]), "study.hidden"),
    ("study axis empty", lambda p: p["study"].update(init=[]), "study.init"),
    ("study duplicate values", lambda p: p["study"].update(extensions=[1, 1]),
     "study.extensions"),
    ("study configuration impossible", lambda p: p["study"].update(hidden=["4x4"]),
     "study configuration ext0-it20-moons+circles-4x4-torch_default-noise0.1: prune.target"),
    ("study configuration beyond the base run",  # the issue: a wide base run, the default study
     lambda p: (p["model"].update(hidden=[100, 100]), p["prune"].update(target=3000)),
     "study configuration ext0-it20-moons+circles-40x40-torch_default-noise0.1: prune.target: "
     "3000 is not allowed"),
    ("study integer written as a float", lambda p: p["study"].update(iterations=[20.0]),
     "study.iterations[0]"),
]


@pytest.mark.parametrize("desc,edit,key", STUDY_BAD, ids=[b[0] for b in STUDY_BAD])
def test_study_pipeline_validates_its_configurations(tmp_path, desc, edit, key):
    params = default_params()
    edit(params)
    write_params(tmp_path, params)
    # the study pipeline's stages stop with one line naming the key (and the configuration)
    proc = run_stage("aggregate", tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "allowed" in lines[0], proc.stderr
    assert not (tmp_path / "reports").exists()
    # the main run is valid: the main stages validate only what they run
    main = config.load(tmp_path / "params.yaml")
    with pytest.raises(config.ConfigError, match=re.escape(key)):
        config.load(tmp_path / "params.yaml", study=True)
    assert main.study == config.parse(params).study


def test_issue_case_wide_base_run_passes_the_main_stages(tmp_path):
    """`dvc exp run -S 'model.hidden=[100,100]' -S prune.target=3000` on the shipped params: the
    main stages run (the default study's 40x40 configuration cannot reach 3000 parameters, but
    the main pipeline never runs it)."""
    params = default_params()
    params["model"]["hidden"] = [100, 100]
    params["prune"]["target"] = 3000
    params["data"]["n_samples"] = 100  # a fast generate; the point is the validation
    write_params(tmp_path, params)
    for stage in ("generate", "trajectory"):
        proc = run_stage(stage, tmp_path, check=False)
        assert proc.returncode == 0, proc.stderr
    p0 = 4 * 100 + 100 + 100 * 100 + 100 + 100 * 2 + 2  # weights and biases of [4, 100, 100, 2]
    assert f"{p0} → 3000 prunable parameters" in proc.stdout


def test_invalid_yaml_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("data: [unclosed\n")
    proc = run_stage("trajectory", tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "not valid YAML" in proc.stderr


def test_default_params_load_and_match_dataclass_defaults():
    params = config.load(ROOT / "params.yaml")
    assert params.data.tasks == ("moons", "circles")
    assert params.base_layers[0] == 4 and params.base_layers[-1] == 2
    # every key of params.yaml is a dataclass field and vice versa: the file is complete
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in config.SECTIONS:
        fields = {f.name for f in dataclasses.fields(getattr(params, name))}
        assert set(raw[name]) == fields, name


def test_missing_keys_take_defaults_and_values_are_typed():
    params = config.parse({"train": {"lr": 1}, "model": {"hidden": [30]}})
    assert params.train.lr == 1.0 and isinstance(params.train.lr, float)
    assert params.model.hidden == (30,)
    assert params.prune.iterations == config.PruneConfig().iterations
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.lr = 2.0  # type: ignore[misc]


def test_rate_instead_of_target():
    params = config.parse({"prune": {"target": None, "rate": 0.2, "iterations": 5}})
    tr = params.trajectory()
    assert tr.params[0] == 1922 and tr.params[-1] == round(1922 * 0.8**5)
