"""The book runner: execute chapters under a named profile, record what ran, build the HTML book.

Usage (``python -m avlib.book`` or ``avlib book``)::

    avlib book run --profile cpu                     # every chapter, skipping unchanged ones
    avlib book run --profile smoke --only 00 --force
    avlib book run --profile cpu --only 02_syncnet -p epochs=20 -p device=cuda
    avlib book build --profile cpu                   # jupyter-book on the executed notebooks
    avlib book inspect 00_corpus                     # a chapter's parameters and defaults
    avlib book results --snapshot                    # README and landing page from the metrics

A chapter is a py:percent notebook ``notebooks/NN_name.py``. Its jupytext header carries, under
``jupyter.avlib``, the chapters it needs (``needs``) and its expected wall time per profile in
seconds (``expected_seconds``). A profile (``profiles/<name>.yml``) holds values shared by every
chapter (``shared``) and per-chapter sections (``chapters.<name>``); a shared value is injected only
into chapters that declare that parameter, a chapter value must be declared by its chapter.

A chapter is skipped when its fingerprint (notebook text, avlib source, injected parameters and
the fingerprints of the chapters it needs) equals that of its last successful run.

Inside a chapter, one call sets it up and one saves its results::

    ch = book.chapter("02_syncnet", profile=profile, seed=seed, device=device,
                      artifacts_root=artifacts_root, data_root=data_root, threads=torch_threads)
    ...
    ch.save_metrics(rows, task="sync", model="syncnet", size="width 0.125", split="test")

``save_metrics`` writes ``<artifacts>/metrics/<chapter>.json`` in one schema (:data:`METRICS_SCHEMA`)
that later chapters read with :func:`load_metrics` / :func:`metrics_frame`, and the Status page
shows each headline metric against its target and baseline with a :func:`verdict`.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from avlib import envinfo
from avlib.artifacts import (ARTIFACTS_ENV, atomic_write_json, atomic_write_text, project_root,
                             resolve_artifacts_root)
from avlib.profiles import load_profile, parse_overrides
from avlib.progress import PROGRESS_ENV

CHAPTER_RE = re.compile(r"^(\d\d)_[a-z0-9_]+\.py$")
#: Parameters every chapter must declare; the runner fills ``profile`` and ``artifacts_root``.
REQUIRED_PARAMETERS = ("profile", "seed", "device", "artifacts_root", "data_root", "ckpt_policy")


class BookError(RuntimeError):
    """A problem the user has to fix (bad profile, unknown chapter or parameter, failed chapter)."""


# --------------------------------------------------------------------------------------------
# Chapters and profiles
# --------------------------------------------------------------------------------------------
@dataclass
class Chapter:
    """One py:percent notebook of the book."""

    path: Path
    metadata: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def needs(self) -> list[str]:
        return list(self.metadata.get("needs", []))

    def expected_seconds(self, profile: str) -> float | None:
        return self.metadata.get("expected_seconds", {}).get(profile)

    def read(self):
        """The notebook as an nbformat ``NotebookNode`` (converted in memory by jupytext)."""
        import jupytext

        return jupytext.read(self.path)

    def parameters(self) -> dict[str, dict]:
        """Declared parameters: name -> {default, type, help} as papermill infers them."""
        import nbformat
        import papermill

        with tempfile.TemporaryDirectory() as tmp:
            ipynb = Path(tmp) / f"{self.name}.ipynb"
            nbformat.write(self.read(), ipynb)
            found = papermill.inspect_notebook(str(ipynb))
        return {name: {"default": p["default"], "type": p["inferred_type_name"], "help": p["help"]}
                for name, p in found.items()}


def find_chapters(root: Path | None = None) -> list[Chapter]:
    """All chapters under ``notebooks/`` in reading order."""
    import jupytext

    root = Path(root or project_root())
    chapters = []
    for path in sorted((root / "notebooks").glob("*.py")):
        if not CHAPTER_RE.match(path.name):
            continue
        header = jupytext.read(path).metadata
        chapters.append(Chapter(path=path, metadata=dict(header.get("avlib", {}))))
    return chapters


def select_chapters(chapters: list[Chapter], only: list[str] | None) -> list[Chapter]:
    """Chapters matching ``only`` (full name, number ``02`` or name without number ``syncnet``)."""
    if not only:
        return chapters
    chosen = []
    for key in only:
        hits = [c for c in chapters
                if key in (c.name, c.name[:2], c.name[3:]) or c.name.startswith(key)]
        if not hits:
            names = ", ".join(c.name for c in chapters)
            raise BookError(f"no chapter matches {key!r}; chapters are: {names}")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen, key=lambda c: c.name)


def chapter_parameters(chapter: Chapter, declared: dict, profile_name: str, profile: dict,
                       overrides: dict, artifacts_root: Path) -> dict:
    """The parameters papermill injects into ``chapter`` for this run."""
    missing = [p for p in REQUIRED_PARAMETERS if p not in declared]
    if missing:
        raise BookError(f"{chapter.name}: the parameters cell must declare {missing}")
    params = {k: v for k, v in profile["shared"].items() if k in declared}
    section = profile["chapters"].get(chapter.name, {}) or {}
    unknown = sorted(set(section) - set(declared))
    if unknown:
        raise BookError(f"profile {profile_name!r}, chapter {chapter.name}: parameters {unknown} "
                        f"are not declared by the chapter; it declares {sorted(declared)}")
    params.update(section)
    params.update({k: v for k, v in overrides.items() if k in declared})
    params["profile"] = profile_name
    # notebooks/NN_name.py: the project root is two levels up
    params["artifacts_root"] = display_path(artifacts_root, chapter.path.resolve().parent.parent)
    return params


def display_path(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """``path`` relative to the project root when it lies inside it (``_build/artifacts/cpu``),
    else absolute: what the book shows and injects, so no clone's absolute path is printed."""
    path = Path(path).expanduser()
    root = Path(root or project_root()).resolve()
    absolute = path if path.is_absolute() else root / path
    try:
        return absolute.resolve().relative_to(root).as_posix() or "."
    except ValueError:
        return str(absolute.resolve())


# --------------------------------------------------------------------------------------------
# Fingerprints and run records
# --------------------------------------------------------------------------------------------
def avlib_source_hash() -> str:
    """Hash of every ``.py`` file of the installed avlib package (code changes rerun chapters)."""
    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(pkg.rglob("*.py")):
        h.update(str(path.relative_to(pkg)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(chapter: Chapter, params: dict, upstream: dict[str, str]) -> str:
    payload = {
        "notebook": hashlib.sha256(chapter.path.read_bytes()).hexdigest(),
        "avlib": avlib_source_hash(),
        "params": params,
        "upstream": upstream,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def executed_dir(profile: str, root: Path | None = None) -> Path:
    return Path(root or project_root()) / "_build" / "executed" / profile


def read_run_record(profile: str, root: Path | None = None) -> dict:
    path = executed_dir(profile, root) / "run.json"
    if path.is_file():
        return json.loads(path.read_text())
    return {"profile": profile, "notebooks": {}}


def write_run_record(record: dict, profile: str, root: Path | None = None) -> None:
    path = executed_dir(profile, root) / "run.json"
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------
def _kernel_env(root: Path) -> dict:
    """Environment in which the ``python3`` kernel is this interpreter, whatever else is installed.

    Jupyter looks up kernelspecs in ``JUPYTER_PATH`` first, so a spec written there wins over a
    user-level ``python3`` kernel that might point to another Python.
    """
    kernels = root / "_build" / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (avlib)", "language": "python"}
    atomic_write_text(kernels / "kernel.json", json.dumps(spec, indent=1))
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(
        [str(root / "_build" / "jupyter")] + ([env["JUPYTER_PATH"]] if env.get("JUPYTER_PATH") else []))
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # Long steps print one summary line in the executed book instead of bar updates.
    env[PROGRESS_ENV] = "summary"
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return env


def _print_failure(chapter: Chapter, err) -> None:
    bar = "=" * 78
    print(f"\n{bar}\nChapter {chapter.name} failed in cell {err.cell_index} "
          f"(execution count {err.exec_count}):\n{bar}", file=sys.stderr)
    print(err.source, file=sys.stderr)
    print(f"{'-' * 78}\n{err.ename}: {err.evalue}", file=sys.stderr)
    print("\n".join(err.traceback), file=sys.stderr)
    print(bar, file=sys.stderr)


def run(profile: str, only: list[str] | None = None, overrides: dict | None = None,
        force: bool = False, root: Path | None = None, progress: bool = True) -> dict:
    """Execute chapters under ``profile``; returns the updated run record. Raises on failure.

    The kernel runs in the project root (relative paths, the injected ``artifacts_root``
    included, are relative to it) with ``$AVLIB_PROGRESS=summary``.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root = Path(root or project_root())
    prof = load_profile(profile, root)
    overrides = overrides or {}
    chapters = find_chapters(root)
    selected = select_chapters(chapters, only)
    out_dir = executed_dir(profile, root)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = read_run_record(profile, root)
    artifacts_root = resolve_artifacts_root(None, profile, root)

    declared_all = {c.name: c.parameters() for c in selected}
    unknown = sorted(k for k in overrides if not any(k in d for d in declared_all.values()))
    if unknown:
        raise BookError(f"override(s) {unknown} are declared by none of the selected chapters")

    env = _kernel_env(root)
    machine = envinfo.machine()
    packages = envinfo.package_versions()
    commit = envinfo.git_commit(root)
    old_env = dict(os.environ)
    for chapter in selected:
        params = chapter_parameters(chapter, declared_all[chapter.name], profile, prof,
                                    overrides, artifacts_root)
        upstream = {}
        for need in chapter.needs:
            prev = record["notebooks"].get(need, {})
            upstream[need] = f"{prev.get('fingerprint')}@{prev.get('finished_at')}"
        fp = fingerprint(chapter, params, upstream)
        output = out_dir / f"{chapter.name}.ipynb"
        last = record["notebooks"].get(chapter.name, {})
        if (not force and last.get("status") == "ok" and last.get("fingerprint") == fp
                and output.is_file()):
            print(f"[avlib.book] {chapter.name}: unchanged since {last.get('finished_at')}, skipped "
                  "(--force reruns it)")
            continue
        for need in chapter.needs:
            if record["notebooks"].get(need, {}).get("status") != "ok":
                print(f"[avlib.book] warning: {chapter.name} needs {need}, which has no successful "
                      f"run under profile {profile!r}; its outputs are produced or loaded by "
                      "ckpt_policy", file=sys.stderr)
        print(f"[avlib.book] {chapter.name}: executing under profile {profile!r} "
              f"with {json.dumps(params, default=str)}")
        entry = {"status": "running", "profile": profile, "parameters": params,
                 "git_commit": commit, "machine": machine, "packages": packages,
                 "started_at": _now(), "expected_seconds": chapter.expected_seconds(profile)}
        tmp_out = output.with_name(f"{chapter.name}.partial.ipynb")
        t0 = time.perf_counter()
        os.environ.update(env)
        try:
            papermill.execute_notebook(chapter.read(), str(tmp_out), parameters=params,
                                       kernel_name="python3", progress_bar=progress,
                                       cwd=str(root))
        except PapermillExecutionError as err:
            entry.update(status="failed", wall_seconds=round(time.perf_counter() - t0, 1),
                         finished_at=_now(), error=f"{err.ename}: {err.evalue}",
                         failed_cell=err.cell_index)
            record["notebooks"][chapter.name] = entry
            write_run_record(record, profile, root)
            _print_failure(chapter, err)
            raise BookError(f"chapter {chapter.name} failed; the partial notebook is {tmp_out}") from None
        finally:
            os.environ.clear()
            os.environ.update(old_env)
        os.replace(tmp_out, output)
        wall = round(time.perf_counter() - t0, 1)
        entry.update(status="ok", wall_seconds=wall, finished_at=_now(), fingerprint=fp)
        expected = chapter.expected_seconds(profile)
        if expected and wall > 2 * expected:
            entry["warning"] = f"took {wall:.0f} s, more than twice the expected {expected:.0f} s"
            print(f"[avlib.book] WARNING: {chapter.name} {entry['warning']} under profile "
                  f"{profile!r}", file=sys.stderr)
        record["notebooks"][chapter.name] = entry
        write_run_record(record, profile, root)
        print(f"[avlib.book] {chapter.name}: ok in {wall:.1f} s -> {output}")
    return record


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# Inside a chapter: setup, saved metrics, verdicts
# --------------------------------------------------------------------------------------------
#: Version of the metrics file format written by :func:`save_metrics`.
METRICS_SCHEMA = 1
#: Keys every metrics row has (after defaults); ``size``, ``split`` may be ``None``.
ROW_KEYS = ("task", "model", "size", "split", "metric", "value", "unit")
#: Optional keys and their defaults. ``higher_is_better`` orients target and baseline;
#: ``tolerance`` (value units) is how close to the baseline counts as "at chance".
ROW_OPTIONAL = {"target": None, "baseline": None, "headline": False, "higher_is_better": True,
                "tolerance": None}
#: Verdicts of :func:`verdict`, best first.
VERDICTS = ("met", "beats baseline", "missed", "at chance", "below baseline", "")


@dataclass
class ChapterContext:
    """What a running chapter knows about itself; made by :func:`chapter`.

    ``artifacts`` is the artifacts root, ``figures`` the chapter's figure folder (created),
    ``metrics_path`` where :meth:`save_metrics` writes, ``data_root`` the ``data_root``
    parameter resolved against the project root (or ``None``).
    """

    name: str
    profile: str
    seed: int
    device: str
    artifacts: Path
    figures: Path
    metrics_path: Path
    root: Path
    data_root: Path | None = None
    threads: int | None = None
    started: str = ""
    t0: float = field(default_factory=time.perf_counter, repr=False)
    rows: list = field(default_factory=list, repr=False)

    def rel(self, path: str | os.PathLike) -> str:
        """``path`` as a reader should see it: relative to the artifacts root when inside it
        (``corpus/fac6e03eea76``), else relative to the project root, else absolute. A
        relative ``path`` is taken as relative to the project root."""
        p = Path(path).expanduser()
        p = (p if p.is_absolute() else self.root / p).resolve()
        for base in (self.artifacts, self.root):
            try:
                return p.relative_to(base).as_posix() or "."
            except ValueError:
                continue
        return str(p)

    def seconds(self) -> float:
        """Seconds since :func:`chapter` was called."""
        return time.perf_counter() - self.t0

    def save_metrics(self, rows: list[dict], *, extra: dict | None = None, **defaults):
        """Write the chapter's metrics (see :func:`save_metrics`) and return its headline table
        (:func:`metrics_table`), to display in the Results section.

        ``defaults`` fill keys the rows leave out (``task="sync", model="syncnet"``).
        """
        record = save_metrics(rows, chapter=self.name, artifacts_root=self.artifacts,
                              profile=self.profile, started=self.started,
                              seconds=self.seconds(), extra=extra, root=self.root, **defaults)
        self.rows = record["rows"]
        return metrics_table(self.rows, headline=True)

    def metrics_table(self, headline: bool | None = None):
        """:func:`metrics_table` of the rows last saved by :meth:`save_metrics`
        (``headline=False``: the other rows, to show after the headline table)."""
        if not self.rows:
            raise ValueError("no metrics saved yet: call save_metrics(rows, ...) first")
        return metrics_table(self.rows, headline=headline)


def chapter(name: str, *, profile: str, seed: int, device: str,
            artifacts_root: str | os.PathLike | None, data_root: str | os.PathLike | None = None,
            threads: int | None = None, quiet: bool = False) -> ChapterContext:
    """Set up a chapter in one call, right after its parameters cell.

    Resolves the artifacts root (a relative ``artifacts_root`` or ``data_root`` is relative to
    the project root, wherever the kernel runs), creates ``<artifacts>/figures/<name>``, sets
    torch's CPU threads when ``threads`` is given, seeds numpy's global generator and, when torch
    is imported, torch's; applies the book's plotting style and pandas display options, and
    prints one line::

        profile cpu · device cpu · seed 0 · artifacts: _build/artifacts/cpu · 2 threads
    """
    import numpy as np

    from avlib import plotting

    root = project_root()
    if artifacts_root is not None and not Path(artifacts_root).expanduser().is_absolute():
        artifacts_root = root / artifacts_root
    artifacts = resolve_artifacts_root(artifacts_root, profile, root)
    if data_root is not None:
        data_root = Path(data_root).expanduser()
        data_root = data_root if data_root.is_absolute() else root / data_root
    figures = artifacts / "figures" / name
    figures.mkdir(parents=True, exist_ok=True)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    plotting.use_style()
    try:  # tables of sentences (reasons, details) are shown whole, not cut at 50 characters
        import pandas as pd

        pd.set_option("display.max_colwidth", 200)
    except ImportError:
        pass
    ctx = ChapterContext(name=name, profile=profile, seed=seed, device=device,
                         artifacts=artifacts, figures=figures,
                         metrics_path=artifacts / "metrics" / f"{name}.json", root=root,
                         data_root=data_root, threads=threads, started=_now())
    if not quiet:
        line = (f"profile {profile} · device {device} · seed {seed} · artifacts: "
                f"{display_path(artifacts, root)}")
        if data_root is not None:
            line += f" · data: {display_path(data_root, root)}"
        if threads:
            line += f" · {threads} thread{'s' if threads != 1 else ''}"
        print(line)
    return ctx


def _number(value, what: str, optional: bool = False):
    """``value`` as a finite Python int or float (numpy scalars accepted), else ValueError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not hasattr(value, "__float__"):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, int):
        return value
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return value


def check_rows(rows: list[dict], **defaults) -> list[dict]:
    """Metrics rows completed by ``defaults`` and the optional keys, checked: every key of
    :data:`ROW_KEYS` present, no unknown key, values, targets and baselines finite numbers."""
    known = set(ROW_KEYS) | set(ROW_OPTIONAL)
    bad_defaults = sorted(set(defaults) - known)
    if bad_defaults:
        raise ValueError(f"unknown metrics key(s) {bad_defaults}; rows have {sorted(known)}")
    if isinstance(rows, dict):
        raise ValueError("rows must be a list of dicts, one per metric")
    checked = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"metrics row {i} must be a dict, got {type(row).__name__}")
        full = {**ROW_OPTIONAL, **defaults, **row}
        label = f"metrics row {i} ({row.get('metric', '?')!r})"
        for key in ROW_KEYS:
            if key not in full:
                raise ValueError(f"{label} has no {key!r}: give it in the row or as a default "
                                 f"(save_metrics(rows, {key}=...))")
        unknown = sorted(set(full) - known)
        if unknown:
            raise ValueError(f"{label} has unknown key(s) {unknown}; rows have {sorted(known)}")
        if not isinstance(full["metric"], str) or not full["metric"]:
            raise ValueError(f"{label}: 'metric' must be a non-empty string")
        full["value"] = _number(full["value"], f"{label}: 'value'")
        for key in ("target", "baseline", "tolerance"):
            full[key] = _number(full[key], f"{label}: {key!r}", optional=True)
        full["headline"] = bool(full["headline"])
        full["higher_is_better"] = bool(full["higher_is_better"])
        for key in ("task", "model", "size", "split", "unit"):
            if full[key] is not None:
                full[key] = str(full[key])
        checked.append({k: full[k] for k in (*ROW_KEYS, *ROW_OPTIONAL)})
    return checked


def _host_brief() -> dict:
    gpu = envinfo.gpu_model() if "torch" in sys.modules else None
    return {"cpu": envinfo.cpu_model(), "cores": os.cpu_count(), "gpu": gpu,
            "python": sys.version.split()[0]}


def save_metrics(rows: list[dict], *, chapter: str, artifacts_root: str | os.PathLike,
                 profile: str | None = None, started: str | None = None,
                 seconds: float | None = None, extra: dict | None = None,
                 root: str | os.PathLike | None = None, **defaults) -> dict:
    """Write ``<artifacts_root>/metrics/<chapter>.json`` atomically; returns the record.

    The record (schema :data:`METRICS_SCHEMA`)::

        {"schema": 1, "chapter": ..., "run": {"profile", "commit", "started", "seconds", "host"},
         "rows": [{"task", "model", "size", "split", "metric", "value", "unit", "target",
                   "baseline", "headline", "higher_is_better", "tolerance"}, ...],
         "extra": {...}}

    ``defaults`` fill keys the rows leave out. A missing key, an unknown key or a value that is
    not a finite number raises ValueError naming the row and the key. ``extra`` is free-form
    (anything JSON-able; paths should be relative, see :meth:`ChapterContext.rel`).
    """
    checked = check_rows(rows, **defaults)
    root = Path(root or project_root())
    record = {
        "schema": METRICS_SCHEMA, "chapter": chapter,
        "run": {"profile": profile, "commit": envinfo.git_commit(root), "started": started,
                "seconds": None if seconds is None else round(float(seconds), 1),
                "host": _host_brief()},
        "rows": checked, "extra": extra or {},
    }
    path = Path(artifacts_root) / "metrics" / f"{chapter}.json"
    atomic_write_json(path, record)
    return record


def read_metrics(path: str | os.PathLike) -> dict | None:
    """One metrics file, or ``None`` when it is missing or not in :data:`METRICS_SCHEMA`."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("schema") != METRICS_SCHEMA:
        return None
    return record


def load_metrics(artifacts_root: str | os.PathLike, chapters: list[str] | None = None) -> list[dict]:
    """Every chapter's metrics record under ``artifacts_root`` (files of an older format are
    skipped), in chapter order; ``chapters`` keeps only those."""
    folder = Path(artifacts_root) / "metrics"
    records = []
    for path in sorted(folder.glob("*.json")):
        if chapters is not None and path.stem not in chapters:
            continue
        record = read_metrics(path)
        if record is not None:
            records.append(record)
    return records


def metrics_frame(source):
    """One pandas row per metric, with ``chapter``, ``profile`` and ``verdict`` columns.

    ``source``: an artifacts root (every chapter), a list of records (:func:`load_metrics`)
    or one record."""
    import pandas as pd

    if isinstance(source, (str, os.PathLike)):
        source = load_metrics(source)
    elif isinstance(source, dict):
        source = [source]
    rows = []
    for record in source:
        for row in record["rows"]:
            rows.append({"chapter": record["chapter"], "profile": record["run"].get("profile"),
                         **row, "verdict": row_verdict(row)})
    columns = ["chapter", "profile", *ROW_KEYS, *ROW_OPTIONAL, "verdict"]
    return pd.DataFrame(rows, columns=columns)


def verdict(value: float, target: float | None = None, baseline: float | None = None,
            higher_is_better: bool = True, tolerance: float | None = None) -> str:
    """Judge a measured value against its target and its baseline.

    - ``"met"``: it beats the baseline (when there is one) and reaches the target;
    - ``"missed"``: it beats the baseline but does not reach the target;
    - ``"at chance"``: within ``tolerance`` of the baseline (default: 5 % of the baseline's
      magnitude), i.e. no better than the baseline;
    - ``"below baseline"``: worse than the baseline by more than ``tolerance``;
    - ``"beats baseline"``: no target, better than the baseline;
    - ``""``: neither target nor baseline (reported only).

    So a model never reads "met" unless it beats its baseline, whatever its target.
    """
    sign = 1.0 if higher_is_better else -1.0
    if baseline is not None:
        tol = abs(baseline) * 0.05 if tolerance is None else abs(tolerance)
        margin = sign * (value - baseline)
        if margin < -tol:
            return "below baseline"
        if margin <= tol:
            return "at chance"
    if target is None:
        return "beats baseline" if baseline is not None else ""
    return "met" if sign * (value - target) >= 0 else "missed"


def row_verdict(row: dict) -> str:
    """:func:`verdict` of a metrics row."""
    return verdict(row["value"], row.get("target"), row.get("baseline"),
                   row.get("higher_is_better", True), row.get("tolerance"))


def metrics_table(rows: list[dict], headline: bool | None = None, **defaults):
    """A table of metrics rows for the reader: value, unit, target, baseline and verdict, with
    integers printed as integers. ``headline=True`` keeps the headline rows, ``False`` the
    others. Columns ``task``, ``model``, ``size`` and ``split`` appear only where they vary;
    ``defaults`` fill keys the rows leave out, as in :func:`save_metrics`."""
    import pandas as pd

    from avlib import plotting

    rows = check_rows(rows, **defaults)
    if headline is not None:
        rows = [r for r in rows if r["headline"] == headline]
    varying = [k for k in ("task", "model", "size", "split")
               if len({r[k] for r in rows}) > 1]
    out = []
    for r in rows:
        line = {k: r[k] for k in varying}
        line.update({"metric": r["metric"], "value": plotting.number(r["value"]),
                     "unit": r["unit"] or ""})
        if any(x["target"] is not None or x["baseline"] is not None for x in rows):
            arrow = "≥" if r["higher_is_better"] else "≤"
            line["target"] = "" if r["target"] is None else f"{arrow} {plotting.number(r['target'])}"
            line["baseline"] = "" if r["baseline"] is None else plotting.number(r["baseline"])
            line["verdict"] = row_verdict(r)
        out.append(line)
    table = pd.DataFrame(out)
    if not table.empty:
        table = table.set_index([*varying, "metric"])
    return table


# --------------------------------------------------------------------------------------------
# Building the HTML book
# --------------------------------------------------------------------------------------------
STATUS_MARKER = "<!-- run-table -->"
#: Where the headline-results table goes in book/status.md (after the run table when absent).
HEADLINE_MARKER = "<!-- headline-table -->"
_PROBLEMS = ("below baseline", "at chance", "missed")


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def run_metrics(record: dict, chapters: list[Chapter], root: Path | None = None) -> dict:
    """chapter name -> its metrics record (:func:`read_metrics`) from the artifacts root its
    last run used; ``None`` when there is none, ``{"schema": None, "rows": []}`` for a file of
    an older format."""
    root = Path(root or project_root())
    found = {}
    for c in chapters:
        entry = record["notebooks"].get(c.name) or {}
        art = (entry.get("parameters") or {}).get("artifacts_root")
        if art is None:
            art = resolve_artifacts_root(None, record.get("profile", "cpu"), root)
        art = Path(art) if Path(art).is_absolute() else root / art
        path = art / "metrics" / f"{c.name}.json"
        found[c.name] = read_metrics(path)
        if found[c.name] is None and path.is_file():
            found[c.name] = {"schema": None, "rows": []}  # written before METRICS_SCHEMA
    return found


def chapter_status(entry: dict | None, metrics: dict | None) -> str:
    """A chapter's status for the Status page: the run's, and "ok" only when the run succeeded
    and no headline metric missed its target or failed to beat its baseline."""
    if entry is None:
        return "not run"
    if entry.get("status") != "ok":
        return entry.get("status", "?")
    if metrics is None:
        return "ran · no metrics saved"
    if metrics.get("schema") != METRICS_SCHEMA:
        return "ran · metrics not in the book's schema"
    verdicts = [row_verdict(r) for r in metrics["rows"] if r.get("headline")]
    if not verdicts:
        return "ran · no headline metric"
    for problem in _PROBLEMS:
        n = verdicts.count(problem)
        if n:
            what = {"missed": "target missed"}.get(problem, problem)
            return f"ran · {n} of {len(verdicts)} headline {what}"
    return "ok"


def status_table(record: dict, chapters: list[Chapter], metrics: dict | None = None) -> str:
    """Markdown table of the run record: what ran, when, on what, how long against the budget
    the chapter declares for the profile (``expected_seconds``), and the chapter's status judged
    on its headline metrics (``metrics``: :func:`run_metrics`). A last row sums the times."""
    metrics = metrics or {}
    rows = ["| chapter | status | profile | finished (UTC) | wall time | budget | of budget | "
            "machine | torch | git commit |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    total_wall = total_budget = 0.0
    for chapter in chapters:
        e = record["notebooks"].get(chapter.name)
        if e is None:
            rows.append(f"| {chapter.name} | not run | | | | | | | | |")
            continue
        m = e.get("machine", {})
        hw = f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores)"
        if m.get("gpu"):
            hw += f", {m['gpu']}"
        wall_s, budget_s = e.get("wall_seconds"), e.get("expected_seconds")
        wall = f"{wall_s:.0f} s" if wall_s is not None else ""
        budget = f"{budget_s:.0f} s" if budget_s else ""
        share = ""
        if wall_s is not None and budget_s:
            share = f"{100 * wall_s / budget_s:.0f} %"
            share = f"**{share}, over**" if wall_s > budget_s else share
            total_wall += wall_s
            total_budget += budget_s
        status = chapter_status(e, metrics.get(chapter.name)) + (" ⚠" if e.get("warning") else "")
        commit = (e.get("git_commit") or "")[:10]
        torch_v = e.get("packages", {}).get("torch", "")
        rows.append(f"| {chapter.name} | {_md(status)} | {e.get('profile')} | "
                    f"{(e.get('finished_at') or '')[:19].replace('T', ' ')} | {wall} | {budget} | "
                    f"{share} | {_md(hw)} | {torch_v} | `{commit}` |")
    if total_budget:
        rows.append(f"| **all chapters** | | | | {total_wall / 60:.1f} min | "
                    f"{total_budget / 60:.1f} min | {100 * total_wall / total_budget:.0f} % "
                    "| | | |")
    return "\n".join(rows)


def headline_table(chapters: list[Chapter], metrics: dict) -> str:
    """Markdown table of every chapter's headline metrics with target, baseline and verdict."""
    from avlib import plotting

    rows = ["| chapter | model | metric | split | value | target | baseline | verdict |",
            "|---|---|---|---|---|---|---|---|"]
    for chapter in chapters:
        record = metrics.get(chapter.name)
        heads = [r for r in (record or {}).get("rows", []) if r.get("headline")]
        if not heads:
            why = ("no metrics saved" if record is None
                   else "metrics not in the book's schema" if record.get("schema") is None
                   else "no headline metric")
            rows.append(f"| {chapter.name} | | {why} | | | | | |")
            continue
        for r in heads:
            unit = f" {r['unit']}" if r.get("unit") else ""
            arrow = "≥" if r.get("higher_is_better", True) else "≤"
            target = "" if r.get("target") is None else f"{arrow} {plotting.number(r['target'])}{unit}"
            base = "" if r.get("baseline") is None else f"{plotting.number(r['baseline'])}{unit}"
            v = row_verdict(r)
            v = f"**{v}**" if v in _PROBLEMS else v
            model = r["model"] + (f" ({r['size']})" if r.get("size") else "")
            rows.append(f"| {chapter.name} | {_md(model)} | {_md(r['metric'])} | "
                        f"{_md(r.get('split') or '')} | {plotting.number(r['value'])}{_md(unit)} | "
                        f"{_md(target)} | {_md(base)} | {v} |")
    return "\n".join(rows)


def html_dir(profile: str, root: Path | None = None) -> Path:
    """Where ``build`` writes the HTML book: ``_build/html`` for the published ``cpu`` profile,
    ``_build/profiles/<profile>/_build/html`` for the others (jupyter-book appends ``_build/html``)."""
    return _path_output(profile, root) / "_build" / "html"


def _path_output(profile: str, root: Path | None = None) -> Path:
    root = Path(root or project_root())
    return root if profile == "cpu" else root / "_build" / "profiles" / profile


def build(profile: str, root: Path | None = None, strict: bool = True) -> Path:
    """Build the HTML book from the notebooks executed under ``profile``; returns index.html."""
    root = Path(root or project_root())
    chapters = find_chapters(root)
    record = read_run_record(profile, root)
    out = executed_dir(profile, root)
    missing = [c.name for c in chapters
               if record["notebooks"].get(c.name, {}).get("status") != "ok"
               or not (out / f"{c.name}.ipynb").is_file()]
    if missing:
        raise BookError(f"chapters without a successful run under profile {profile!r}: {missing}; "
                        f"run `avlib book run --profile {profile}` first")
    _check_executed(chapters, out, root)

    # The status page: the template from book/status.md with the run and headline tables.
    template = (root / "book" / "status.md").read_text()
    if STATUS_MARKER not in template:
        raise BookError(f"book/status.md must contain the marker {STATUS_MARKER}")
    if HEADLINE_MARKER not in template:
        template = template.replace(STATUS_MARKER, f"{STATUS_MARKER}\n\n{HEADLINE_MARKER}")
    metrics = run_metrics(record, chapters, root)
    page = template.replace(STATUS_MARKER, status_table(record, chapters, metrics))
    page = page.replace(HEADLINE_MARKER, headline_table(chapters, metrics))
    atomic_write_text(out / "status.md", page)

    # The table of contents: book/_toc.yml with chapters pointed at the executed notebooks.
    toc = (root / "book" / "_toc.yml").read_text()
    rel = out.relative_to(root).as_posix()
    toc = re.sub(r"\bnotebooks/(\d\d_[a-z0-9_]+)", rf"{rel}/\1", toc)
    toc = toc.replace("book/status", f"{rel}/status")
    toc_path = root / "_build" / f"toc-{profile}.yml"
    atomic_write_text(toc_path, toc)

    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root),
           "--toc", str(toc_path), "--config", str(root / "_config.yml"),
           "--path-output", str(_path_output(profile, root))]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    print("[avlib.book] " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=root)
    if proc.returncode != 0:
        raise BookError(f"jupyter-book failed (exit {proc.returncode}); see the messages above")
    index = html_dir(profile, root) / "index.html"
    print(f"[avlib.book] the book is at {index}")
    return index


def _check_executed(chapters: list[Chapter], out: Path, root: Path | None = None) -> None:
    """Fail when an executed notebook has a code cell that did not run (no execution count);
    warn when an output shows an absolute path inside the project (``ChapterContext.rel``)."""
    import nbformat

    root_text = str(Path(root or project_root()).resolve())
    for chapter in chapters:
        nb = nbformat.read(out / f"{chapter.name}.ipynb", as_version=4)
        absolute = []
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and cell.source.strip() and cell.get("execution_count") is None:
                raise BookError(f"{chapter.name}: code cell {i} has not been executed")
            for o in cell.get("outputs", []):
                shown = o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values())
                if root_text in shown:
                    absolute.append(i)
                    break
        if absolute:
            print(f"[avlib.book] warning: {chapter.name} shows absolute paths of this clone in "
                  f"the outputs of cells {absolute}; print ch.rel(path) instead", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="book_command", required=True)
    p = sub.add_parser("run", help="execute chapters with papermill under a profile")
    p.add_argument("--profile", default="cpu", help="profiles/<name>.yml (default: cpu)")
    p.add_argument("--only", nargs="+", metavar="CHAPTER", help="chapters to run (name or number)")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="override a parameter (YAML value), repeatable")
    p.add_argument("--force", action="store_true", help="rerun even when nothing changed")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    b = sub.add_parser("build", help="build the HTML book from executed notebooks")
    b.add_argument("--profile", default="cpu")
    b.add_argument("--no-strict", action="store_true", help="do not treat warnings as errors")
    i = sub.add_parser("inspect", help="list a chapter's parameters and their defaults")
    i.add_argument("chapter")
    i.add_argument("--profile", help="also show the values this profile injects")
    sub.add_parser("list", help="list chapters with their expected times")
    r = sub.add_parser("results", help="regenerate the README's results and the landing page "
                       "from book/results/ (avlib.results); --snapshot first copies the metrics")
    r.add_argument("--profile", default="cpu", help="whose metrics --snapshot copies (default: "
                   "cpu); the README and the landing page always show book/results/cpu/")
    r.add_argument("--snapshot", action="store_true",
                   help="copy <artifacts>/metrics/*.json into book/results/<profile>/")


def main_from_args(args: argparse.Namespace) -> int:
    try:
        if args.book_command == "run":
            run(args.profile, args.only, parse_overrides(args.param), args.force,
                progress=not args.no_progress)
        elif args.book_command == "build":
            build(args.profile, strict=not args.no_strict)
        elif args.book_command == "inspect":
            _inspect(args.chapter, args.profile)
        elif args.book_command == "results":
            from avlib import results

            return results.command(args.profile, snapshot=args.snapshot)
        elif args.book_command == "list":
            for c in find_chapters():
                print(f"{c.name:24s} needs={c.needs} expected_seconds={c.metadata.get('expected_seconds')}")
    except BookError as err:  # a failed chapter or build: its own message was printed above
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _inspect(name: str, profile: str | None) -> None:
    (chapter,) = select_chapters(find_chapters(), [name])[:1]
    declared = chapter.parameters()
    injected = {}
    if profile:
        injected = chapter_parameters(chapter, declared, profile, load_profile(profile), {},
                                      resolve_artifacts_root(None, profile))
    print(f"Parameters of {chapter.name} ({chapter.path}):")
    width = max(len(k) for k in declared)
    for key, info in declared.items():
        line = f"  {key:{width}s} = {info['default']:<24s}"
        if info["help"]:
            line += f"  # {info['help']}"
        if key in injected:
            line += f"   [{profile}: {injected[key]!r}]"
        print(line)
    print(f"Artifacts root: ${ARTIFACTS_ENV} or _build/artifacts/<profile>/ unless artifacts_root is set")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avlib book", description=__doc__.split("\n")[0])
    add_arguments(parser)
    from avlib.cli import run_command  # one error line and exit code per class, as `avlib book`

    return run_command("avlib book", main_from_args, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
