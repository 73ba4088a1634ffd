"""Real data, end to end: every chapter that reads a real dataset, run on a tree in its layout.

The session builds small LRS2, LRS3, Acappella, GRID and LRW trees from clips of the corpus
renderer (``layouts.py``), then runs each layout's chapters under the ``smoke`` profile
(``runner.PIPELINES``): preprocessing (chapter 01) of the tree, then the chapters that read its
store, two layouts at a time. Everything goes to ``_build/realdata/`` (remade each session):
the trees, and per layout the artifacts root and the executed notebooks, so that the smoke
book's own records (``_build/executed/smoke``, ``_build/artifacts/smoke``) are never touched.
The terminal summary gives each layout's wall time.

These tests take minutes, so ``make unit`` does not collect them: files in this folder are
collected only when the pytest command line names this folder or a file in it. ``make
realdata`` runs ``pytest tests/realdata``, in ``make test`` before ``make smoke``.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from avlib.artifacts import project_root

HERE = Path(__file__).resolve().parent
_TIMES: dict[str, float] = {}  # "all" and each layout: wall seconds of this session's runs



@pytest.fixture(scope="session")
def out() -> Path:
    """``_build/realdata/``, emptied."""
    folder = project_root(HERE) / "_build" / "realdata"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="session")
def trees(out) -> dict[str, tuple[Path, dict]]:
    """layout -> (the folder to pass as ``data_root``, {split: [clip id, ...]})."""
    from . import layouts  # imported here: `make unit` loads this file, collecting nothing

    pool = layouts.render_pool(out / "pool")
    return {name: make(pool, out / "trees") for name, make in layouts.LAYOUTS.items()}


@pytest.fixture(scope="session")
def runs(trees, out) -> dict[str, dict]:
    """layout -> :func:`runner.run_pipeline`'s result, every layout run once per session."""
    from . import runner

    t0 = time.perf_counter()
    results = runner.run_pipelines({k: root for k, (root, _) in trees.items()}, out)
    _TIMES["all"] = time.perf_counter() - t0
    _TIMES.update({k: r["seconds"] for k, r in results.items()})
    return results


def pytest_terminal_summary(terminalreporter):
    if _TIMES:
        each = ", ".join(f"{k} {v:.0f} s" for k, v in _TIMES.items() if k != "all")
        terminalreporter.write_line(f"realdata: the chapters ran in {_TIMES['all']:.0f} s, "
                                    f"two layouts at a time ({each})")


@pytest.fixture()
def chapter_run(runs):
    """``chapter_run(layout, chapter)``: that chapter's saved metrics; fails the test with the
    chapter's error when it (or a chapter before it) failed."""
    def get(layout: str, chapter: str) -> dict:
        result = runs[layout]
        if chapter not in result["metrics"]:
            pytest.fail(f"{layout}: {chapter} did not run; {result['failed']} failed:\n"
                        f"{result['error']}", pytrace=False)
        return result["metrics"][chapter]

    return get
