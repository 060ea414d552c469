"""The import closure of a `pipeline/` module: every source file that running it may import.

One implementation for two users: tests/test_dag.py checks that each dvc.yaml stage declares its
closure as deps, and the imp stage's resume manifest hashes the closure's bytes, so that levels
made by other code are never reused (pipeline.imp.fingerprint). Pure standard library (ast).
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the folder that holds the `pipeline` package


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of module `name` (dotted, under root), or None when it is not ours."""
    path = root.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _packages(name: str) -> list[str]:
    """`a.b.c` → [`a`, `a.b`]: importing a module imports every package above it."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_modules(file: Path, root: Path = ROOT) -> set[str]:
    """Dotted names of the `pipeline` modules one source file imports, anywhere in it (module
    level, inside functions, under `if TYPE_CHECKING:`), including `from pkg import submodule`."""
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    package = list(file.relative_to(root).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pipeline import io` imports the submodule pipeline.io
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "pipeline" and module_file(name, root) is not None:
                found.add(name)
    return found


def import_closure(entry: Path, root: Path = ROOT) -> set[str]:
    """Root-relative POSIX paths of every non-empty `pipeline/` source file that running `entry`
    (a file under root) may import, the entry itself included, following imports transitively.
    An empty package __init__ is left out: it has nothing to go stale (and DVC warns about
    empty deps)."""
    start = ".".join(entry.resolve().relative_to(root).with_suffix("").parts)
    todo, seen = [start], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [*_packages(name), *imported_modules(module_file(name, root), root)]
    files = (module_file(n, root) for n in seen)
    return {f.relative_to(root).as_posix() for f in files if f.stat().st_size > 0}


def code_hashes(entry: Path, root: Path = ROOT) -> dict[str, str]:
    """{root-relative path: sha256 of its bytes} of entry's import closure, sorted by path."""
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest()
            for p in sorted(import_closure(entry, root))}
