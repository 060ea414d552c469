"""params.yaml is read as DVC reads it (YAML 1.2, DVC's own reader): what `dvc exp run -S` writes
and `dvc params diff` reports is what the stages see."""
from __future__ import annotations

import json
import math
import types
import typing

import numpy as np
import pytest
from conftest import dvc, run_stage, tiny_params, write_params
from dvc.utils.serialize import parse_yaml

from pipeline import config

MAIN_SECTIONS = [s for s in config.SECTIONS if s != "study"]


def numeric_keys() -> list[tuple[str, str, type, bool]]:
    """(section, key, int or float, is a list) of every numeric key of the main run."""
    out = []
    for section in MAIN_SECTIONS:
        hints = typing.get_type_hints(config._SECTION_TYPES[section])
        for name, tp in hints.items():
            args = typing.get_args(tp)
            if typing.get_origin(tp) in (typing.Union, types.UnionType):
                tp = next(a for a in args if a is not type(None))
            is_list = typing.get_origin(tp) is tuple
            base = typing.get_args(tp)[0] if is_list else tp
            if base in (int, float):
                out.append((section, name, base, is_list))
    return out


def e_notation(value) -> str:
    """The shortest scientific notation of a number that reads back exactly, e.g. 1e-05."""
    return np.format_float_scientific(float(value), unique=True, trim="-")


# (YAML text of train.lr / model.hidden / …, the value the pipeline must see); each is also
# parsed by DVC's reader below and must agree with it
READ_AS_DVC = [
    ("train:\n  min_delta: 1e-05\n", ("train", "min_delta"), 1e-05),
    ("train:\n  lr: 1E-3\n", ("train", "lr"), 0.001),
    ("train:\n  lr: 5.0e-4\n", ("train", "lr"), 0.0005),
    ("train:\n  lr: .5\n", ("train", "lr"), 0.5),
    ("prune:\n  target: 3e1\n", ("prune", "target"), 30),
    ("prune:\n  target: 30.0\n", ("prune", "target"), 30),
    ("prune:\n  target: 0x1e\n", ("prune", "target"), 30),
    ("data:\n  n_samples: 1_000\n", ("data", "n_samples"), 1000),
    ("model:\n  hidden: [4.0e1, 40]\n", ("model", "hidden"), (40, 40)),
    ("model:\n  seeds: [0.0, 1e0, 2]\n", ("model", "seeds"), (0, 1, 2)),
    ("data:\n  classes: ~\n", ("data", "classes"), None),
    ("data:\n  classes:\n", ("data", "classes"), None),
    ("train:\n  compact: False\n", ("train", "compact"), False),
    ("data:\n  mnist_dir: null\n", ("data", "mnist_dir"), None),
]


@pytest.mark.parametrize("text,key,want", READ_AS_DVC, ids=[c[0].split(":")[1].strip() + ":"
                                                             + c[0].split(":", 2)[2].strip()
                                                             for c in READ_AS_DVC])
def test_values_are_read_as_dvc_reads_them(tmp_path, text, key, want):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    got = getattr(getattr(config.load(path), key[0]), key[1])
    assert got == want and type(got) is type(want)
    theirs = parse_yaml(text, str(path))[key[0]][key[1]]
    assert (list(got) if isinstance(got, tuple) else got) == theirs  # numerically equal


# (YAML text, text the one-line error must contain): what DVC reads as a string, or as a number
# that is not what the key allows, is refused
REFUSED = [
    ("train:\n  compact: yes\n", "train.compact: 'yes' has the wrong type"),   # YAML 1.2: a string
    ("train:\n  restore_best: on\n", "train.restore_best: 'on' has the wrong type"),
    ("prune:\n  target: 30.5\n", "prune.target: 30.5 has the wrong type; allowed: an integer"),
    ("train:\n  lr: .inf\n", "train.lr: inf is not allowed; allowed: a finite number"),
    ("train:\n  lr: .nan\n", "train.lr: nan is not allowed; allowed: a finite number"),
    ("train:\n  lr: '1e-3'\n", "train.lr: '1e-3' has the wrong type; allowed: a number"),
    ("train:\n  lr: 1\n  lr: 2\n", "not valid YAML at line 3 (found duplicate key"),
    ("model:\n  hidden: [40, 40.5]\n", "model.hidden[1]: 40.5 has the wrong type"),
    ("prune:\n  iterations: 1:20\n", "prune.iterations: '1:20' has the wrong type"),  # 1.1: 80
]


@pytest.mark.parametrize("text,message", REFUSED, ids=[m.split(":")[0] + "-" + str(i)
                                                        for i, (_, m) in enumerate(REFUSED)])
def test_refused_values_name_the_key(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_study_integer_axes_must_be_written_as_integers(tmp_path):
    """DVC names the study's matrix stages after the values as written: `20.0` would be a stage
    `…-it20.0-…`; the study pipeline refuses it, the main run does not read the study."""
    params = tiny_params()
    params["study"]["iterations"] = [3.0]
    write_params(tmp_path, params)
    assert config.load(tmp_path / "params.yaml").study.iterations == (3,)
    with pytest.raises(config.ConfigError, match=r"study\.iterations\[0\]: 3\.0 is not allowed"):
        config.load(tmp_path / "params.yaml", study=True)


@pytest.mark.e2e
def test_every_numeric_key_set_by_dvc_exp_run_in_e_notation(tiny_repo):
    """`dvc exp run -S key=<e-notation>` for every numeric key of the main run (DVC writes
    `1e-05`, `120.0`, …): the stage runs, and its view of params.yaml equals what `dvc params
    diff` reports for every key."""
    base = tiny_params()
    fallback = {("data", "classes"): 10, ("train", "batch_size"): 32}
    skip = {("prune", "rate")}  # exactly one of target and rate: target is set
    changed = {("train", "min_delta"): 1e-05, ("train", "lr"): 2e-02}  # the case, and one more
    sets, keys = [], []
    for section, key, base_type, is_list in numeric_keys():
        if (section, key) in skip:
            continue
        value = changed.get((section, key), base[section].get(key))
        if value is None:  # null in the tiny params: set a valid number instead
            assert (section, key) in fallback, f"give {section}.{key} a valid value in fallback"
            value = fallback[(section, key)]
        text = ("[" + ",".join(e_notation(v) for v in value) + "]" if is_list
                else e_notation(value))
        sets += ["-S", f"{section}.{key}={text}"]
        keys.append((section, key, base_type))
    assert len(keys) >= 25  # every numeric key of data, model, train, prune, analysis, plot
    sets += ["-S", f"study.noise=[{e_notation(0.1)}]"]  # the study's one float axis
    # the generate stage loads and validates every section of the main run
    dvc(tiny_repo, "exp", "run", *sets, "generate")
    text = (tiny_repo / "params.yaml").read_text()
    assert "min_delta: 1e-05" in text  # DVC wrote e-notation; YAML 1.1 would read a string
    view = config.load(tiny_repo / "params.yaml")
    diff = json.loads(dvc(tiny_repo, "params", "diff", "--all", "--json").stdout)["params.yaml"]
    for section, key, base_type in keys:
        ours = getattr(getattr(view, section), key)
        theirs = diff[f"{section}.{key}"]["new"]
        if isinstance(ours, tuple):  # `params diff --json` shows a list as its text, "[6.0, 6.0]"
            values, theirs = list(ours), json.loads(theirs)
        else:
            values, theirs = [ours], [theirs]
        assert values == theirs, (section, key)
        # typed as the dataclass declares (DVC's 120.0 is the integer 120), and finite
        assert all(type(v) is base_type and math.isfinite(v) for v in values), (section, key)
    assert view.train.min_delta == 1e-05 and diff["train.min_delta"]["old"] == 0.0
    study = config.load(tiny_repo / "params.yaml", study=True).study  # as the study pipeline
    assert list(study.noise) == json.loads(diff["study.noise"]["new"]) == [0.1]
    # and a stage started by hand after the experiment sees the same
    assert run_stage("generate", tiny_repo).returncode == 0
