"""docs/results.md (f) against its committed result files (docs/runs/real-mnist/): the tables
script reads every configuration folder, and each criterion's fraction of seeds it prints is the
one the section quotes for that configuration."""
from __future__ import annotations

import importlib.util
import re
import sys

import pandas as pd
import pytest
from conftest import ROOT

RUNS = ROOT / "docs/runs/real-mnist"
FOLDERS = sorted(p for p in RUNS.iterdir() if (p / "config.json").is_file())


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs/runs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import does: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def section(heading_start: str) -> str:
    text = (ROOT / "docs/results.md").read_text()
    start = text.index(heading_start)
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_every_result_folder_has_the_files_the_tables_read():
    assert FOLDERS, "no result folders under docs/runs/real-mnist"
    for folder in FOLDERS:
        for name in ("levels.csv", "seeds.csv", "controls.csv", "accuracy.csv",
                     "random_levels.csv"):
            assert (folder / name).is_file(), (folder.name, name)
        seeds = pd.read_csv(folder / "seeds.csv")
        assert len(seeds) >= 16  # issue 26: ≥ 16 seeds per answer


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_quoted_fractions_are_the_result_files(folder):
    tables = load("tables")
    printed = tables.configuration(tables.load(folder))
    text = section("## (f) Real MNIST")
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"^\| (effective|complete|output|functional)[^|]* \| (\d+/\d+)", printed,
                        re.M)}
    assert set(rows) == {"effective", "complete", "output", "functional"}
    for criterion, fraction in rows.items():
        assert fraction in text, (folder.name, criterion, fraction)
