"""The shape of avlib: layers import one way, every module is documented, no ``utils``.

Layers, lowest first: spine <- signals <- data <- models <- tasks. A module imports only modules
of its own layer or of layers below it (static imports, including those inside functions); only
``avlib.cli`` and ``avlib.results`` (pages generated from the book's saved metrics) import the
book runner. ``CONTRIBUTING.md`` has one row per module.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "avlib"
LAYERS = ("spine", "signals", "data", "models", "tasks")
SPINE = {"avlib", "avlib.__main__", "avlib.book", "avlib.cli", "avlib.profiles", "avlib.artifacts",
         "avlib.checkpoints", "avlib.train", "avlib.plotting", "avlib.progress", "avlib.envinfo",
         "avlib.results"}
SIGNALS = {"avlib.media", "avlib.audio", "avlib.faces"}
#: The modules that may import the book runner (avlib.book).
BOOK_USERS = ("avlib.cli", "avlib.results")
TASK_PACKAGES = ("avlib.sync", "avlib.lipsync", "avlib.lip2speech", "avlib.vsr")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def layer(name: str) -> str:
    if name in SPINE:
        return "spine"
    if name in SIGNALS:
        return "signals"
    if name.startswith(("avlib.data", "avlib.corpus")):
        return "data"
    if name.startswith("avlib.models"):
        return "models"
    if name.startswith(TASK_PACKAGES):
        return "tasks"
    raise AssertionError(f"{name} belongs to no layer: place it in the layout of CONTRIBUTING.md")


def avlib_imports(path: Path) -> set[str]:
    """Every avlib module ``path`` imports (``from avlib import x`` counts as ``avlib.x`` when
    ``x`` is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "avlib"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "avlib":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_the_layers(name):
    mine = LAYERS.index(layer(name))
    for target in avlib_imports(MODULES[name]):
        if target == "avlib":
            continue  # the package itself (__version__) is the root of the spine
        assert LAYERS.index(layer(target)) <= mine, (
            f"{name} ({layer(name)}) imports {target} ({layer(target)}): imports point "
            "spine <- signals <- data <- models <- tasks")
        if target == "avlib.book":
            assert name in BOOK_USERS, f"{name} imports the book runner; only {BOOK_USERS} may"


def test_every_module_has_a_row_in_contributing():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    rows = set(re.findall(r"^\| [a-z]+ \| `(avlib/[\w/]+\.py)` \|", text, flags=re.M))
    missing = [str(p.relative_to(ROOT)) for n, p in MODULES.items()
               if str(p.relative_to(ROOT)) not in rows and p.name not in ("__init__.py", "__main__.py")
               or (p.name == "__init__.py" and n == "avlib.models" and str(p.relative_to(ROOT)) not in rows)]
    assert not missing, f"CONTRIBUTING.md's layout table has no row for {missing}"
    stale = [r for r in rows if not (ROOT / r).is_file()]
    assert not stale, f"CONTRIBUTING.md lists modules that do not exist: {stale}"


def test_no_utils_module():
    assert not [n for n in MODULES if n.rsplit(".", 1)[-1] in ("utils", "util", "helpers", "misc")]
