"""Run chapters of the book under the ``smoke`` profile, outside the smoke book's records.

``avlib.book.run`` keeps one run record and one executed notebook per chapter and profile
(``_build/executed/smoke/``) and writes into the profile's artifacts root; ``make smoke`` and
the smoke book are built from those. :func:`run_chapter` injects the same parameters (the
profile's values, then the overrides) with papermill, but with its own artifacts root and
output folder, and records nothing.

:data:`PIPELINES` says which chapters read each dataset layout; :func:`run_pipelines` runs
them, two layouts at a time (each chapter runs torch on one thread, so two fill the two cores
of the reference machine).
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from avlib import book
from avlib.artifacts import project_root

PROFILE = "smoke"

#: The chapters that read each layout, in order. Chapter 01 preprocesses the tree into a store
#: that the next chapters read; chapter 06 preprocesses an LRW folder itself, and 07 reads the
#: store 06 made. Chapter 04 loads the sync judges that 02 and 03 trained on the same store.
PIPELINES = {
    "lrs2": ("01_preprocessing", "02_syncnet", "03_vocalist", "04_wav2lip"),
    "lrs3": ("01_preprocessing", "02_syncnet"),
    "acappella": ("01_preprocessing", "02_syncnet"),
    "grid": ("01_preprocessing", "05_lip2speech"),
    "lrw": ("06_syncvsr", "07_mmab"),
}
#: Readers of a whole tree (the others read the store of the chapter before them).
TREE_READERS = ("01_preprocessing", "06_syncvsr")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ChapterFailed(RuntimeError):
    """A cell of a chapter raised; the message holds the cell and the error."""


def run_chapter(name: str, artifacts: Path, executed: Path, **overrides) -> dict:
    """Execute chapter ``name`` (``"02_syncnet"``) with ``artifacts`` as its artifacts root;
    the executed notebook goes to ``executed/<name>.ipynb``. Returns the chapter's saved
    metrics (``<artifacts>/metrics/<name>.json``) with ``"wall_seconds"`` added.

    Raises :class:`ChapterFailed` naming the failing cell and its error.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root = project_root(Path(__file__))
    (chapter,) = book.select_chapters(book.find_chapters(root), [name])
    declared = chapter.parameters()
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise book.BookError(f"{name} declares no parameter {unknown}")
    params = book.chapter_parameters(chapter, declared, PROFILE, book.load_profile(PROFILE, root),
                                     overrides, Path(artifacts).resolve())
    executed.mkdir(parents=True, exist_ok=True)
    output = executed / f"{name}.ipynb"
    print(f"[realdata] {name} with {json.dumps(params, default=str)}", file=sys.stderr)
    saved = dict(os.environ)
    os.environ.update(book._kernel_env(root))
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(chapter.read(), str(output), parameters=params,
                                   kernel_name="python3", progress_bar=False, cwd=str(root))
    except PapermillExecutionError as err:
        trace = _ANSI.sub("", "\n".join(err.traceback[-6:]))
        raise ChapterFailed(f"{name} failed in cell {err.cell_index}:\n{err.source}\n"
                            f"{'-' * 40}\n{trace}\n(the executed notebook: {output})") from None
    finally:
        os.environ.clear()
        os.environ.update(saved)
    metrics = json.loads((Path(artifacts) / "metrics" / f"{name}.json").read_text())
    metrics["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"[realdata] {name}: ok in {metrics['wall_seconds']} s", file=sys.stderr)
    return metrics


def run_pipeline(layout: str, tree: Path, out: Path) -> dict:
    """Run :data:`PIPELINES` ``[layout]`` on ``tree``, with ``out/artifacts`` as artifacts root
    and the executed notebooks in ``out/executed``. Stops at the first failure.

    Returns ``{"metrics": {chapter: metrics}, "failed": chapter or None, "error": str or None,
    "seconds": wall time}``.
    """
    artifacts, executed = out / "artifacts", out / "executed"
    result = {"metrics": {}, "failed": None, "error": None}
    t0 = time.perf_counter()
    store = None
    for name in PIPELINES[layout]:
        params = {"data_root": str(tree if name in TREE_READERS else store)}
        if name == "01_preprocessing":
            params.update(dataset=layout, kinds=None)  # every clip of the dataset
        else:
            params["torch_threads"] = 1  # tiny models; the other pipeline has the other core
        try:
            metrics = run_chapter(name, artifacts, executed, **params)
        except Exception as err:  # noqa: BLE001 - reported by the tests
            result.update(failed=name, error=f"{type(err).__name__}: {err}")
            break
        result["metrics"][name] = metrics
        store = artifacts / metrics["extra"]["store"]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def run_pipelines(trees: dict[str, Path], out: Path, workers: int = 2) -> dict[str, dict]:
    """:func:`run_pipeline` for every layout of ``trees``, ``workers`` at a time (the longest
    first); layout -> its result."""
    order = sorted(trees, key=lambda k: -len(PIPELINES[k]))
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {k: pool.submit(run_pipeline, k, trees[k], out / k) for k in order}
        return {k: f.result() for k, f in futures.items()}
