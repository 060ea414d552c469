"""Any locale: the pipeline writes the same bytes under a Latin-1 locale as under UTF-8, and no
print of `→` or `×` ends a stage (issue 36: under LC_ALL=en_US.ISO-8859-1 the trajectory,
analyze and plot stages wrote their outputs, then crashed at a print with UnicodeEncodeError;
plot lost report.md, analyze left metrics.json newer than dvc.lock).

Every text file is read and written with encoding="utf-8" (checked on the source, call by
call), and every entry point makes stdout and stderr safe first (pipeline.io.safe_streams).
The Latin-1 locale is made with localedef into a private folder (LOCPATH), as in the field case.
"""
from __future__ import annotations

import ast
import io as text_io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GIT_ENV, ROOT, committed_tiny_repo

from pipeline import io

LATIN1 = "en_US.ISO-8859-1"
SOURCES = sorted([*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "docs" / "runs").glob("*.py"),
                  *(ROOT / "benchmarks").glob("*.py")])


# ---- every text file call names its encoding ---------------------------------------------------
def _keywords(call: ast.Call) -> set[str]:
    return {k.arg for k in call.keywords if k.arg}


def _constant(node) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _text_mode(call: ast.Call, position: int, default: str) -> bool:
    """The mode argument (at `position`, or mode=; `default` when absent) is a text mode: no 'b'
    in it (a mode that is not a literal counts as text: the encoding must be given anyway)."""
    mode = next((k.value for k in call.keywords if k.arg == "mode"), None)
    if mode is None and len(call.args) > position:
        mode = call.args[position]
    value = default if mode is None else _constant(mode)
    return not (isinstance(value, str) and "b" in value)


def locale_dependent(call: ast.Call) -> str | None:
    """What a call would read or write in the locale's encoding without encoding=, or None.
    Python's str.encode / bytes.decode default to UTF-8 whatever the locale, and pandas'
    read_csv / to_csv too; open, Path.read_text / write_text, subprocess's text mode and
    numpy's text files take the locale's."""
    func, keys = call.func, _keywords(call)
    if "encoding" in keys:
        return None
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(
        func, ast.Attribute) else None
    owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(
        func.value, ast.Name) else None
    if name == "open" and owner not in ("tarfile", "zipfile", "os", "Image"):
        function = isinstance(func, ast.Name) or owner in ("io", "builtins", "gzip", "bz2", "lzma")
        default = "rb" if owner in ("gzip", "bz2", "lzma") else "r"
        if _text_mode(call, 1 if function else 0, default):  # open(path, mode), Path.open(mode)
            return "open() in text mode"
    if name in ("read_text", "write_text") and isinstance(func, ast.Attribute) \
            and owner != "io":  # Path's methods, not pipeline.io's own helpers
        return f".{name}()"
    if name in ("run", "check_output", "Popen") and owner == "subprocess" and any(
            _constant(k.value) is True for k in call.keywords
            if k.arg in ("text", "universal_newlines")):
        return f"subprocess.{name}(text=True)"
    if name in ("savetxt", "loadtxt", "genfromtxt"):
        return f"numpy.{name}()"
    if name in ("NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile") and \
            _text_mode(call, 0, "w+b"):
        return f"tempfile.{name}() in text mode"
    if name == "to_csv" and (call.args or "path_or_buf" in keys):
        return ".to_csv(path)"
    return None


def test_every_text_file_call_names_its_encoding():
    """Each open / read_text / write_text / to_csv(path) / subprocess text call in pipeline/,
    docs/runs/ and benchmarks/ passes encoding= (the locale's would be used otherwise)."""
    assert len(SOURCES) > 40
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (what := locale_dependent(node)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {what}")
    assert found == []


@pytest.mark.parametrize("source, flagged", [
    ("open(p)", True), ("open(p, 'w')", True), ("open(p, 'rb')", False),
    ("open(p, mode='wb')", False), ("open(p, encoding='utf-8')", False),
    ("Path(p).open('w')", True), ("Path(p).open('rb')", False),
    ("tarfile.open(fileobj=f, mode='r:gz')", False), ("gzip.open(p, 'rt')", True),
    ("gzip.open(p)", False), ("os.open(p, flags)", False),
    ("p.read_text()", True), ("p.write_text(t)", True), ("p.read_text(encoding='utf-8')", False),
    ("io.write_text(p, t)", False), ("frame.to_csv(p)", True), ("frame.to_csv(index=False)", False),
    ("subprocess.run(c, text=True)", True), ("subprocess.run(c)", False),
    ("subprocess.run(c, text=True, encoding='utf-8')", False), ("np.savetxt(p, a)", True),
    ("tempfile.NamedTemporaryFile('w')", True), ("tempfile.NamedTemporaryFile()", False),
])
def test_the_encoding_check_sees_each_kind_of_call(source, flagged):
    """The check above is not blind: each kind of locale-dependent call is flagged."""
    call = ast.parse(source).body[0].value
    assert (locale_dependent(call) is not None) == flagged


# ---- streams -----------------------------------------------------------------------------------
def test_safe_streams_print_what_the_locale_cannot_encode(monkeypatch):
    """A Latin-1 stdout: `×` is written in Latin-1, `→` as its escape, and nothing raises."""
    raw = text_io.BytesIO()
    stream = text_io.TextIOWrapper(raw, encoding="latin-1", errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    with pytest.raises(UnicodeEncodeError):
        print("386 → 50", flush=True)
    io.safe_streams()
    print("386 → 50, 6 levels × 4 seeds", flush=True)
    assert raw.getvalue().endswith("386 \\u2192 50, 6 levels \xd7 4 seeds\n".encode("latin-1"))


@pytest.fixture(scope="session")
def latin1_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a process under a Latin-1 locale compiled into a private folder."""
    localedef = shutil.which("localedef")
    if localedef is None:
        pytest.skip("localedef is not installed (glibc's locales): no Latin-1 locale can be made")
    folder = tmp_path_factory.mktemp("locales")
    made = subprocess.run([localedef, "-i", "en_US", "-f", "ISO-8859-1", str(folder / LATIN1)],
                          capture_output=True, text=True, encoding="utf-8")
    if not (folder / LATIN1).exists():
        pytest.skip(f"localedef could not make {LATIN1} (locale sources missing?): "
                    f"{made.stderr.strip()[:200]}")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LC_") and k not in ("PYTHONIOENCODING", "PYTHONUTF8", "LANG")}
    env.update({"LOCPATH": str(folder), "LC_ALL": LATIN1, "PYTHONUTF8": "0",
                "PYTHONPATH": str(ROOT), **GIT_ENV, "DVC_NO_ANALYTICS": "1"})
    seen = subprocess.run([sys.executable, "-c", "import locale, sys; "
                           "print(locale.getpreferredencoding(), sys.stdout.encoding)"],
                          env=env, capture_output=True, text=True, encoding="utf-8")
    if "ISO-8859-1" not in seen.stdout.upper().replace("ISO8859", "ISO-8859"):
        pytest.skip(f"Python does not take the Latin-1 locale here: {seen.stdout.strip()}")
    return env


ENTRY_POINTS = [
    *([sys.executable, "-m", f"pipeline.stages.{s}", "--help"]
      for s in ("params", "generate", "trajectory", "train", "learned", "imp", "analyze", "plot",
                "aggregate", "study_run")),
    *([sys.executable, "-m", f"pipeline.{m}", "--help"]
      for m in ("sweep", "baseline", "study", "offline_plots", "compare", "pool")),
    *([sys.executable, str(ROOT / "docs" / "runs" / f"{s}.py"), "--help"]
      for s in ("tables", "against_alone", "dying_tables", "size_figure")),
]


@pytest.mark.parametrize("argv", ENTRY_POINTS, ids=[a[-2].split(".")[-1] if a[1] == "-m"
                                                     else Path(a[1]).stem for a in ENTRY_POINTS])
def test_every_entry_point_prints_its_help_under_latin1(argv, latin1_env, tmp_path):
    """--help of every command-line entry point works under Latin-1 (their texts hold −, →, §,
    θ₀ …): what the locale lacks is printed as an escape, exit 0, no traceback."""
    proc = subprocess.run(argv, cwd=tmp_path, env=latin1_env, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode("latin-1")
    assert b"Traceback" not in proc.stderr and b"usage" in proc.stdout.lower()


# ---- the whole pipeline ------------------------------------------------------------------------
def outputs(repo: Path) -> dict[str, bytes]:
    """Every file the run made or changed: data, models, reports and dvc.lock."""
    files = {p for top in ("data", "models", "reports") for p in (repo / top).rglob("*")
             if p.is_file()}
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted(files | {
        repo / "dvc.lock"})}


@pytest.mark.e2e
def test_pipeline_under_latin1_writes_the_bytes_it_writes_under_utf8(latin1_env, reproduced_repo,
                                                                      tmp_path):
    """`dvc repro` of the tiny run under Latin-1 against the same run under the suite's UTF-8
    locale (the shared reproduced_repo, committed the same way): every output and dvc.lock
    byte-identical, and the prints the field case crashed at are there."""
    repo = committed_tiny_repo(tmp_path / "latin1")
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=latin1_env,
                          capture_output=True)
    shown = (proc.stdout + proc.stderr).decode("latin-1")
    assert proc.returncode == 0 and "Traceback" not in shown, shown
    latin1, utf8 = outputs(repo), outputs(reproduced_repo[0])
    assert "reports/report.md" in latin1 and "reports/metrics.json" in latin1
    assert sorted(latin1) == sorted(utf8)
    assert [f for f in latin1 if latin1[f] != utf8[f]] == []
    # the prints the field case crashed at: `→` escaped, `×` in Latin-1
    assert re.search(r"\d+ \\u2192 \d+ prunable parameters", shown), shown
    assert re.search(r"\d+ levels × 2 seeds", shown), shown
