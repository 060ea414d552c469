"""The README and docs/ say what the project does: the README stays a short newcomer's page with
the two commands CI runs, every link and anchor of every Markdown file resolves in a fresh clone
(git-tracked files only), nothing links or points outside the repository (a clone stands on its
own), every name of code the definitions cite exists, every default number quoted is the committed
reports/metrics.json, every params key is documented, and every preset's `Run:` line works as
written (run with `dvc` replaced by a recorder; its arguments parsed by DVC's own command-line
parser and its -S values validated as the study pipeline validates them)."""
from __future__ import annotations

import json
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest
from conftest import ROOT, with_recorded_dvc

from pipeline import config
from pipeline.study import apply_preset

README = ROOT / "README.md"
PAGES = ("params", "running", "criteria", "engine", "science")  # docs/ pages this repository owns
DOCS = [README, *(ROOT / "docs" / f"{p}.md" for p in PAGES)]
QUOTING = [*DOCS, ROOT / "docs/results.md"]  # pages whose marked default numbers are checked
MARKER = re.compile(r"<!--\s*default:\s*([^>]*?)\s*-->")
HISTORY = re.compile(r"<!--\s*not the committed run")
FRACTION = re.compile(r"\b(\d+)/(\d+)\b")
PRESETS = sorted(p for p in (ROOT / "studies").glob("*.yaml") if p.name != "dvc.yaml")


def metrics() -> dict:
    return json.loads((ROOT / "reports/metrics.json").read_text())


def units(text: str) -> list[str]:
    """Paragraphs (blank-line separated); each table row is a unit of its own."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        rows = block.splitlines()
        if rows and all(r.lstrip().startswith("|") for r in rows):
            out += rows
        else:
            out.append(block)
    return out


def lookup(data: dict, key: str):
    for part in key.split("."):
        data = data[part]
    return data


def github_slug(heading: str) -> str:
    """GitHub's heading anchor: markup dropped, lower case, punctuation and symbols removed
    (letters, digits, '_', '-' and spaces kept), each space a '-'. An underscore inside a word
    or a code span is text (`mnist_pair`, snake_case), not emphasis, so it stays."""
    spans = re.split(r"(`[^`]*`)", heading)  # code spans keep every character
    text = "".join(s.strip("`") if s.startswith("`") else
                   re.sub(r"\*|(?<!\w)_+|_+(?!\w)", "", s) for s in spans).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The #anchors GitHub gives a Markdown page: one per ATX heading (outside fenced code), a
    repeated heading's slug with -1, -2, … as GitHub numbers them, and explicit HTML anchors
    (`<a id=…>`, `name=…`)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    seen: dict[str, int] = {}
    found = set()
    for m in re.finditer(r"^ {0,3}#{1,6} +(.+?) *#* *$", text, re.M):
        slug = github_slug(m.group(1))
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    found |= set(re.findall(r"<a\s[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", text))
    return found


def test_readme_is_short_and_has_the_two_commands_ci_runs():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    repro = "pip install torch==2.13.0 && pip install -e . && dvc repro"
    tests = ('pip install torch==2.13.0 && pip install -e ".[test]" && ruff check . '
             "&& python -m pytest -q")
    assert repro in text and tests in text
    ci = (ROOT / ".ci/run").read_text()  # CI runs the README's test command, step by step
    for step in ("install --quiet --disable-pip-version-check --root-user-action=ignore "
                 "torch==2.13.0", '-e ".[test]"', "python3 -m ruff check .",
                 "python3 -m pytest -q"):
        assert step in ci, step


# ---- every link and anchor resolves in a fresh clone -----------------------------------------
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)  # fenced blocks and code spans: not links
AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]*:[^>\s]*)>")
LINE_ANCHOR = re.compile(r"L\d+(-L\d+)?")  # GitHub's line anchors of a source file


def git_files(root: Path, *args: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", *args], cwd=root, capture_output=True,
                         check=True).stdout.decode()
    return [name for name in out.split("\0") if name]


def clone_files(root: Path) -> set[str]:
    """The files a fresh clone of the committed tree has: tracked by git (and not deleted here).
    A DVC output (ignored by git) or a new file not yet added is missing there."""
    return set(git_files(root, "--cached")) - set(git_files(root, "--deleted"))


def markdown_pages(root: Path) -> list[Path]:
    """Every Markdown file of the repository: tracked, and new ones git does not ignore."""
    return sorted(root / n for n in git_files(root, "--cached", "--others", "--exclude-standard")
                  if n.endswith(".md") and (root / n).is_file())


def link_targets(text: str) -> list[str]:
    """Every link target of a Markdown text: inline links and images, reference definitions,
    HTML href/src and autolinks; not inside code."""
    text = CODE.sub("", text)
    return [t for pattern in (*MD_LINKS, AUTOLINK) for t in pattern.findall(text)]


def dead_links(root: Path, page: Path, files: set[str]) -> list[str]:
    """What in `page` a fresh clone cannot follow: a link leaving the repository (a web or other
    URL, an absolute path, a relative path out of the clone), a link to a file or folder git does
    not track (a DVC output, an uncommitted file), an #anchor with no heading of that Markdown
    page, or another anchor into a file that is not Markdown (GitHub's #L<n> line anchors
    excepted)."""
    from urllib.parse import unquote

    dead = []
    for target in link_targets(page.read_text(encoding="utf-8")):
        if outside_target(root, page, target):
            dead.append(f"{target} (leaves the repository)")
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / unquote(path)).resolve() if path else page.resolve()
        name = file.relative_to(root.resolve()).as_posix()
        if path and not (name in files or any(f.startswith(name + "/") for f in files)):
            dead.append(f"{target} (not tracked by git: a fresh clone lacks {name})")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            dead.append(f"{target} (no heading #{anchor} in {name})")
        elif anchor and file.suffix != ".md" and not LINE_ANCHOR.fullmatch(anchor):
            dead.append(f"{target} (#{anchor}: {name} is not a Markdown page)")
    return dead


def test_every_link_and_anchor_resolves_in_a_fresh_clone():
    """Every link of every Markdown file (the committed reports/report.md included) names a file
    or folder that git tracks, and every anchor a heading of its page: a clone holds no DVC
    output (the report's figures once were one) and nothing beside the checkout."""
    files = clone_files(ROOT)
    pages = markdown_pages(ROOT)
    assert {ROOT / "README.md", ROOT / "docs/science.md", ROOT / "reports/report.md"} <= set(pages)
    dead = {str(p.relative_to(ROOT)): hits for p in pages if (hits := dead_links(ROOT, p, files))}
    assert not dead, dead
    report = (ROOT / "reports/report.md").read_text(encoding="utf-8")
    assert "](figures/split.png)" in report  # the committed report embeds its figures


def test_dead_links_catch_every_kind(tmp_path):
    """In a throwaway repository: links to an ignored output, an untracked file, a missing file,
    a missing heading, out of the repository and to the web are dead; links to tracked files and
    folders, existing headings (a repeated one numbered as GitHub does) and line anchors of a
    source file, and anything inside code, are not."""
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "out").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".gitignore").write_text("/out\n")
    (repo / "docs/a.md").write_text("# A\n\n## Notes\n\n## Notes\n")
    (repo / "tool.py").write_text("X = 1\n")
    (repo / "out/figure.png").write_bytes(b"png")
    subprocess.run(["git", "add", ".gitignore", "docs/a.md", "tool.py"], cwd=repo, check=True)
    (repo / "new.md").write_text("untracked\n")
    up = "." * 2 + "/"
    cases = {
        "[a](docs/a.md) [n](docs/a.md#notes) [n1](docs/a.md#notes-1) [d](docs/) [t](tool.py#L1)"
        " [self](#top) `[x](missing.md)`\n\n```\n[y](missing.md)\n```\n\n# Top\n": [],
        "![f](out/figure.png)": ["out/figure.png"],
        "[n](new.md)": ["new.md"],
        "[m](missing.md)": ["missing.md"],
        "[h](docs/a.md#nothing)": ["docs/a.md#nothing"],
        "[h](docs/a.md#notes-2)": ["docs/a.md#notes-2"],
        f"[o]({up}outside.md)": [f"{up}outside.md"],
        "[w](https://example.org) <https://example.org>": ["https://example.org"] * 2,
        "[p](tool.py#main)": ["tool.py#main"],
    }
    files = clone_files(repo)
    assert files == {".gitignore", "docs/a.md", "tool.py"}
    for text, dead in cases.items():
        (repo / "README.md").write_text(text + "\n")
        assert [d.split(" (")[0] for d in dead_links(repo, repo / "README.md", files)] == dead, text
    assert repo / "new.md" in markdown_pages(repo)  # new pages are checked too


# ---- nothing links or points outside the repository ------------------------------------------
# The repository stands on its own: its docs define everything in its own words, and no file
# links or points to anything a clone does not hold (a folder beside the checkout, a web page).
# The patterns below are written so that this file's own source never matches them.
SCANNED = (".md", ".py", ".yaml", ".yml", ".toml")  # docs, code, presets and params, config
MD_LINKS = (re.compile(r"\]\(\s*<?([^)\s>]+)"),                          # [text](target), images
            re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?"              # [label]: target
                       r"(?:[ \t]+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?[ \t]*$", re.M),  # ["title"]
            re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']"))       # <a href>, <img src>
CLIMBING = re.compile(r"(?<![\w.])(?:\.\.[/\\])+[\w.\-/]*")  # a relative path going up: two dots, /
SIBLING = re.compile(r"(?<![\w./-])shared[/]")  # the folder beside the checkout that held the spec
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # https:, file:, mailto:, C: …


def repository_files(root: Path) -> list[Path]:
    """The repository's files of the SCANNED kinds: tracked, and new ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=root, capture_output=True, check=True).stdout.decode()
    files = {root / name for name in listed.split("\0") if name}
    return sorted(f for f in files if f.suffix in SCANNED and f.is_file())


def outside_target(root: Path, page: Path, target: str) -> bool:
    """A Markdown link target a clone cannot follow: a web or other URL, an absolute path, or a
    relative path resolving outside the repository. In-page anchors (#…) stay inside."""
    if SCHEME.match(target) or target.startswith(("/", "\\", "~")):
        return True
    path = target.partition("#")[0]
    return bool(path) and not (page.parent / path).resolve().is_relative_to(root.resolve())


def outside_pointers(root: Path, file: Path) -> list[str]:
    """What in `file` links or points outside the repository at root: Markdown links (inline,
    reference and HTML) that leave the clone, any relative path climbing out of it — resolved
    from the file's folder, and for Python also from the root (where the stages run) — and any
    path into the folder beside the checkout."""
    text = file.read_text(encoding="utf-8")
    found = []
    if file.suffix == ".md":
        found += [t for pattern in MD_LINKS for t in pattern.findall(text)
                  if outside_target(root, file, t)]
    bases = [file.parent, root] if file.suffix == ".py" else [file.parent]
    found += [p for p in CLIMBING.findall(text)
              if any(not (b / p.replace("\\", "/")).resolve().is_relative_to(root.resolve())
                     for b in bases)]
    found += [m.group(0) for m in SIBLING.finditer(text)]
    return found


def test_nothing_links_or_points_outside_the_repository():
    """No Markdown file, preset, params file or Python file links or points outside the clone:
    the README once linked the spec in the folder beside the checkout, which a clone lacks."""
    files = repository_files(ROOT)
    assert {ROOT / "README.md", ROOT / "docs/science.md", ROOT / "tests/test_docs.py"} <= set(files)
    assert any(f.parent.name == "studies" and f.suffix == ".yaml" for f in files)
    bad = {str(f.relative_to(ROOT)): hits for f in files if (hits := outside_pointers(ROOT, f))}
    assert not bad, bad


def test_outside_pointers_catch_every_form(tmp_path):
    """The check finds the README's old link to the spec beside the checkout, and every other
    way out, in a throwaway repository; links inside the clone pass."""
    up = "." * 2 + "/"                      # built, so that this file never holds the pattern
    beside = "shared" + "/docs/science.md"
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "docs/a.md").write_text("# A\n")
    cases = {
        f"[`{up}{beside}`]({up}{beside})": True,      # the README before docs/science.md
        f"[spec]({up}{up}elsewhere.md)": True,
        "[site](https://example.org)": True,
        "[file](file:///etc/passwd)": True,
        "[abs](/etc/hosts)": True,
        f"[ref]: {up}notes.md": True,
        f'[ref]: {up}notes.md "a title"': True,
        "[P_0, …, P_T]: pruning S_k for k levels": False,  # text, not a reference definition
        f'<img src="{up}figure.png">': True,
        f"see `{beside}` for the definitions": True,
        "[a](docs/a.md#a), [b](#a), [c](docs/)": False,
    }
    for text, outside in cases.items():
        (repo / "README.md").write_text(text + "\n")
        assert bool(outside_pointers(repo, repo / "README.md")) == outside, text
    (repo / "docs/b.md").write_text(f"[up]({up}README.md), [out]({up}{up}x.md)\n")
    assert outside_pointers(repo, repo / "docs/b.md") == [f"{up}{up}x.md", f"{up}{up}x.md"]
    (repo / "tool.py").write_text(f"SPEC = '{up}{beside}'\n")  # read from the root: outside
    assert outside_pointers(repo, repo / "tool.py")
    assert repository_files(repo) == sorted([repo / "README.md", repo / "docs/a.md",
                                             repo / "docs/b.md", repo / "tool.py"])


def cited_code(text: str) -> list[str]:
    """The dotted names in code spans of `text` whose first part is a pipeline module
    (`graph.analyze`, `engine.loop.epoch_loop`): what a definition says implements it."""
    import pkgutil

    import pipeline
    modules = {m.name for m in pkgutil.iter_modules(pipeline.__path__)}
    params = config.parse(config.read_sections(ROOT / "params.yaml"))
    is_key = lambda n: n.count(".") == 1 and hasattr(getattr(params, n.split(".")[0], None),  # noqa: E731
                                                     n.split(".")[1])  # `data.image_size`
    names = re.findall(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)`", text)
    files = ("json", "csv", "png", "gif", "md", "gz", "pt", "npz", "yaml", "py")  # `dying.json`
    return [n for n in names if n.split(".")[0] in modules and not is_key(n)
            and n.rsplit(".", 1)[1] not in files]


def test_every_cited_function_exists():
    """docs/science.md's **Code** lines and docs/engine.md's "Where each definition lives" name
    functions that exist: a renamed function cannot leave a definition pointing at nothing."""
    import importlib

    science = (ROOT / "docs/science.md").read_text(encoding="utf-8")
    code_lines = [unit for unit in units(science) if unit.startswith("**Code (§")]
    assert len(code_lines) == 7  # §2 … §8
    engine = (ROOT / "docs/engine.md").read_text(encoding="utf-8")
    table = engine[engine.index("## Where each definition lives"):engine.index("## Extending")]
    names = cited_code("\n".join(code_lines)) + cited_code(table)
    assert len(names) > 60
    for name in names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module prefix
            try:
                obj = importlib.import_module("pipeline." + ".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"{name}: pipeline.{'.'.join(parts[:cut])} has no {attr}"
            obj = getattr(obj, attr)


def test_github_slug_matches_known_anchors():
    assert github_slug("(g) Images on a CPU: digits beside 14 × 14 Fashion-MNIST") == \
        "g-images-on-a-cpu-digits-beside-14--14-fashion-mnist"
    assert github_slug("(a′) Size in the thesis' protocol") == "a-size-in-the-thesis-protocol"
    assert github_slug("Multi-task stopping (`train.monitor`)") == \
        "multi-task-stopping-trainmonitor"
    # underscores: in a code span and inside a word they are kept, as emphasis they go
    assert github_slug("(f″) MNIST beside MNIST (`studies/mnist_pair.yaml`)") == \
        "f-mnist-beside-mnist-studiesmnist_pairyaml"
    assert github_slug("The check_learned stage") == "the-check_learned-stage"
    assert github_slug("An _emphasised_ word and **bold**") == "an-emphasised-word-and-bold"
    assert github_slug("`__init__` files") == "__init__-files"


def expected_texts(m: dict, keys: list[str]) -> tuple[list[str], list[str]]:
    """(fractions k/n in order, interval texts) that the marker's keys name."""
    fractions, intervals = [], []
    for key in keys:
        value = lookup(m, key)
        if key.endswith("_ci95"):
            intervals.append(f"{value[0]:.2f}–{value[1]:.2f}")
        else:
            fractions.append(f"{value}/{m['seeds']}")
    return fractions, intervals


def test_quoted_default_numbers_are_the_committed_metrics():
    """Every unit (paragraph, table row) with a `<!-- default: keys -->` marker quotes exactly
    those numbers of reports/metrics.json: its first fractions k/32 are the keys' seed counts, in
    order, and each interval key's 95% Wilson interval (2 decimals) is in it. A unit of the
    README or the docs pages that mentions the default with a /32 fraction must be marked (or
    say it is not the committed run), so no quoted default number escapes this test."""
    m = metrics()
    checked = 0
    for page in QUOTING:
        for unit in units(page.read_text()):
            marker = MARKER.search(unit)
            found = [f"{a}/{b}" for a, b in FRACTION.findall(MARKER.sub("", unit))]
            if marker is None:
                if page in DOCS and "default" in unit.lower() and not HISTORY.search(unit):
                    assert not [f for f in found if f.endswith(f"/{m['seeds']}")], \
                        f"{page.name}: unmarked default numbers in: {unit[:120]}"
                continue
            fractions, intervals = expected_texts(m, marker.group(1).split())
            assert found[:len(fractions)] == fractions, (page.name, unit[:160])
            for text in intervals:
                assert text in unit, (page.name, text, unit[:160])
            checked += 1
    assert checked >= 5  # README (answers table, the default run), docs/engine.md, criteria, results


def test_every_params_key_is_documented():
    text = (ROOT / "docs/params.md").read_text()
    for section in config.SECTIONS:
        if section == "study":
            continue
        cls = type(getattr(config.parse(config.read_sections(ROOT / "params.yaml")), section))
        for field in cls.__dataclass_fields__:
            assert f"`{section}.{field}`" in text or f"{section}.{field}`" in text, \
                f"docs/params.md misses {section}.{field}"


# ---- every preset's Run: line ----------------------------------------------------------------
RUN_FORMS = ("python -m pipeline.study run", "eval ", "dvc exp run")


def run_lines(preset: Path) -> list[str]:
    """The command lines of a preset's header comment (`Run:` and `or …:`) that run it:
    `python -m pipeline.study run …` (or a plain `dvc exp run …`)."""
    out = []
    for line in preset.read_text().splitlines():
        starts = [i for i in map(line.find, RUN_FORMS) if i >= 0]
        if line.startswith("#") and starts:
            out.append(line[min(starts):].strip())
    return out


def recorded_calls(command: str, tmp_path: Path) -> list[list[str]]:
    """Run `command` with bash in the repository, `dvc` on PATH a recorder of its arguments."""
    proc, calls = with_recorded_dvc(["bash", "-c", command], tmp_path)
    assert proc.returncode == 0, f"{command}\n{proc.stderr}"
    return calls


def apply_set_params(raw: dict, assignments: list[str]) -> dict:
    """The params document after `dvc exp run -S` assignments (values read as YAML, as DVC does)."""
    for assignment in assignments:
        key, _, text = assignment.partition("=")
        section, _, name = key.partition(".")
        config.section_to_update(raw, section, "-S")[name] = config.parse_yaml(text, assignment)
    return raw


def test_every_preset_has_a_run_line():
    missing = [p.name for p in PRESETS if not run_lines(p)]
    assert not missing


@pytest.mark.parametrize("preset", [p for p in PRESETS if run_lines(p)], ids=lambda p: p.name)
def test_preset_run_lines_work_as_written(preset, tmp_path):
    """Each line, run by bash as written, calls `dvc exp run` once (the project command execs
    it) with arguments DVC's own parser accepts; its -S values turn params.yaml into exactly the preset applied to it, and
    that document passes the checks of the pipeline it targets (every study configuration for
    studies/dvc.yaml). The size study's line lacked `eval`: DVC got `'model.hidden=[8,` and
    `8]'` as two arguments and refused the second."""
    from dvc.cli import parse_args

    for command in run_lines(preset):
        calls = recorded_calls(command, tmp_path)
        assert len(calls) == 1, (command, calls)
        args = parse_args(calls[0])
        assert calls[0][:2] == ["exp", "run"]
        raw = apply_set_params(config.read_sections(ROOT / "params.yaml"), args.set_param)
        assert raw == apply_preset(ROOT / "params.yaml", preset), command
        study = args.targets == ["studies/dvc.yaml"]
        assert args.targets in ([], ["studies/dvc.yaml"]), args.targets
        config.parse(raw, study=study)  # raises ConfigError on a value the pipeline refuses


def test_recorder_sees_a_broken_run_line(tmp_path):
    """The old size.yaml line (no eval) is caught: its split quoting reaches DVC's parser."""
    from dvc.cli import DvcParserError, parse_args

    command = ("dvc exp run studies/dvc.yaml "
               "$(python -m pipeline.study flags studies/size.yaml)")
    calls = recorded_calls(command, tmp_path)
    with pytest.raises(DvcParserError):
        parse_args(calls[0])
    assert "'model.hidden=[8," in calls[0]
