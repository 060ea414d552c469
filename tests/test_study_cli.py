"""`python -m pipeline.study run PRESET` starts a study only after the preset and every argument
were checked: a slip at the keyboard (a mistyped preset path, a wrong key, a bad experiment name)
ends in one line naming it, exit code 2, no traceback, and no `dvc` call (issue 35: the README's
`eval "dvc exp run … $(… flags …)"` ran the default study after `flags` had failed). `dvc` is a
recorder of its arguments here (conftest.with_recorded_dvc): nothing runs."""
from __future__ import annotations

import shlex
import sys

import pytest
from conftest import ROOT, with_recorded_dvc

STUDY = [sys.executable, "-m", "pipeline.study"]


def study(args: list[str], tmp_path, cwd=ROOT):
    return with_recorded_dvc([*STUDY, *args], tmp_path, cwd=cwd)


def flags_of(preset: str, tmp_path) -> list[str]:
    proc, calls = study(["flags", preset], tmp_path)
    assert proc.returncode == 0 and not calls, proc.stderr
    return shlex.split(proc.stdout)


BAD_PRESETS = {
    "not_yaml.yaml": "model: [1, 2\n",
    "unknown_key.yaml": "model:\n  hiden: [8, 8]\n",
    "bad_value.yaml": "prune:\n  rate: 1.5\n",
    "not_sections.yaml": "- model\n",
}

# (arguments, what the one line must name); {tmp} is the test's folder with BAD_PRESETS
REFUSED = [
    (["run", "studies/sizes.yaml"], "studies/sizes.yaml"),  # the field case: a typo
    (["flags", "studies/sizes.yaml"], "studies/sizes.yaml"),
    (["run", "studies"], "studies"),  # a folder
    (["run", "{tmp}/not_yaml.yaml"], "not valid YAML"),
    (["run", "{tmp}/unknown_key.yaml"], "hiden"),
    (["run", "{tmp}/bad_value.yaml"], "prune.rate"),
    (["flags", "{tmp}/bad_value.yaml"], "prune.rate"),
    (["run", "{tmp}/not_sections.yaml"], "mapping of sections"),
    (["run", "studies/size.yaml", "--temp", "--queue"], "--queue"),
    (["run", "studies/size.yaml", "-n", "bad name"], "-n/--name"),
    (["run", "studies/size.yaml", "-n", "a..b"], "-n/--name"),
    (["run", "studies/size.yaml", "--bogus"], "--bogus"),
    (["runn", "studies/size.yaml"], "runn"),
    (["run"], "preset"),
    ([], "run,flags"),
]


@pytest.mark.parametrize("args, named", REFUSED, ids=lambda v: " ".join(v) if isinstance(
    v, list) else None)
def test_a_wrong_argument_starts_nothing(args, named, tmp_path):
    for name, text in BAD_PRESETS.items():
        (tmp_path / name).write_text(text)
    before = (ROOT / "params.yaml").read_bytes()
    proc, calls = study([a.format(tmp=tmp_path) for a in args], tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert named in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == "" and calls == []
    assert (ROOT / "params.yaml").read_bytes() == before


def test_run_outside_the_repository_root_starts_nothing(tmp_path):
    (tmp_path / "work").mkdir()
    proc, calls = study(["run", str(ROOT / "studies/size.yaml")], tmp_path, cwd=tmp_path / "work")
    assert proc.returncode == 2 and calls == []
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert "studies/dvc.yaml not found" in proc.stderr


def test_run_calls_dvc_exp_run_once_with_the_presets_flags(tmp_path):
    flags = flags_of("studies/size.yaml", tmp_path)
    assert flags[:2] == ["-S", "model.hidden=[8, 8]"]
    proc, calls = study(["run", "studies/size.yaml", "--temp", "-n", "sizes"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert calls == [["exp", "run", "studies/dvc.yaml", *flags, "--temp", "-n", "sizes"]]
    proc, calls = study(["run", "studies/images.yaml", "--plain", "--queue"], tmp_path)
    assert calls == [["exp", "run", *flags_of("studies/images.yaml", tmp_path), "--queue"]]


def test_dry_run_prints_the_command_and_runs_nothing(tmp_path):
    proc, calls = study(["run", "studies/size.yaml", "--dry-run"], tmp_path)
    assert proc.returncode == 0 and calls == []
    assert shlex.split(proc.stdout) == ["dvc", "exp", "run", "studies/dvc.yaml",
                                        *flags_of("studies/size.yaml", tmp_path)]


@pytest.mark.parametrize("script", [
    'f=$(python -m pipeline.study flags studies/sizes.yaml) && eval "dvc exp run studies/dvc.yaml $f"',
    'set -e; f=$(python -m pipeline.study flags studies/sizes.yaml); eval "dvc exp run studies/dvc.yaml $f"',
])
def test_the_scripting_form_of_flags_stops_at_a_typo(script, tmp_path):
    """docs/running.md's form for scripts: `flags` exits 2, so `&&` / `set -e` stop before DVC."""
    proc, calls = with_recorded_dvc(["bash", "-c", script], tmp_path)
    assert proc.returncode != 0 and calls == []
    assert "studies/sizes.yaml" in proc.stderr
