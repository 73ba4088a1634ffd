"""The published results: the committed metrics snapshot and the pages generated from it.

``make book`` runs ``python -m avlib.book results --snapshot`` once every chapter has run, before
it builds the HTML (so the landing page it builds shows this run), which

1. copies the saved metrics of the run (``<artifacts>/metrics/<chapter>.json``, one per chapter,
   in :data:`avlib.book.METRICS_SCHEMA`) into ``book/results/<profile>/``, the committed
   snapshot, byte for byte;
2. regenerates, from the snapshot of the published profile (:data:`PUBLISHED_PROFILE`), the
   block between :data:`README_MARKERS` in ``README.md`` (:func:`results_markdown`: every
   headline metric with its target, baseline and verdict, then one stamp line per chapter run:
   commit, profile, machine, date, seconds) and the block between :data:`LANDING_MARKERS` in
   ``book/intro.md`` (:func:`landing_markdown`: each chapter's status and a results-at-a-glance
   table).

So no number of the README's results table or of the landing page is typed by hand, and
``tests/test_results_table.py`` fails when they differ from what the committed snapshot gives.
The output is deterministic: chapters in name order, rows in the order the chapter saved them.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

from avlib import book
from avlib.artifacts import (atomic_write_bytes, atomic_write_text, project_root,
                             resolve_artifacts_root)
from avlib.cli import EXIT_INPUT

#: The profile whose snapshot the README and the landing page show.
PUBLISHED_PROFILE = "cpu"
README_MARKERS = ("<!-- results:begin -->", "<!-- results:end -->")
LANDING_MARKERS = ("<!-- landing:begin -->", "<!-- landing:end -->")
#: The verdict of a value that is not a finite number (NaN, inf): nothing to judge.
NO_VALUE = "no value"
_PROBLEMS = ("below baseline", "at chance", "missed", NO_VALUE)


class ResultsError(ValueError):
    """A snapshot or a page the generator cannot use (missing, not in the schema, no marker)."""

    exit_code = EXIT_INPUT


# --------------------------------------------------------------------------------------------
# The snapshot
# --------------------------------------------------------------------------------------------
def snapshot_dir(profile: str = PUBLISHED_PROFILE, root: str | os.PathLike | None = None) -> Path:
    """``<project>/book/results/<profile>``: the committed copy of a run's metrics files."""
    return Path(root or project_root()) / "book" / "results" / profile


def load_snapshot(folder: str | os.PathLike) -> dict[str, dict]:
    """chapter -> its metrics record, for every ``*.json`` of ``folder``, sorted by chapter.

    Raises :class:`ResultsError` when the folder holds none, or a file is not JSON or not in
    :data:`avlib.book.METRICS_SCHEMA`."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not paths:
        raise ResultsError(f"{folder}: no metrics snapshot (*.json); `make book` writes it, or "
                           "`python -m avlib.book results --snapshot` after a run")
    records = {}
    for path in paths:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResultsError(f"{path}: not a JSON metrics file ({err})") from None
        if not isinstance(record, dict) or record.get("schema") != book.METRICS_SCHEMA:
            raise ResultsError(f"{path}: not a metrics file of schema {book.METRICS_SCHEMA}")
        name = record.get("chapter") or path.stem
        if name != path.stem:
            raise ResultsError(f"{path}: holds the metrics of chapter {name!r}")
        records[name] = record
    return dict(sorted(records.items()))


def book_chapters(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the chapters under ``notebooks/`` (``00_corpus``, ...), sorted."""
    folder = Path(root or project_root()) / "notebooks"
    return sorted(p.stem for p in folder.glob("*.py") if book.CHAPTER_RE.match(p.name))


def take_snapshot(profile: str, root: str | os.PathLike | None = None,
                  artifacts_root: str | os.PathLike | None = None) -> list[str]:
    """Copy each chapter's ``<artifacts>/metrics/<chapter>.json`` into ``book/results/<profile>/``
    as it is (atomically); returns the chapters copied.

    Only chapters of the book are copied, and only files in the metrics schema. A chapter with
    no metrics file keeps its old snapshot (a warning says so); the snapshot of a chapter that
    is no longer in the book is removed."""
    root = Path(root or project_root())
    source = resolve_artifacts_root(artifacts_root, profile, root) / "metrics"
    target = snapshot_dir(profile, root)
    chapters = book_chapters(root)
    copied = []
    for name in chapters:
        path = source / f"{name}.json"
        if not path.is_file():
            kept = " (its previous snapshot is kept)" if (target / path.name).is_file() else ""
            print(f"[avlib.book] warning: {name} has no metrics under "
                  f"{book.display_path(source, root)}{kept}", file=sys.stderr)
            continue
        if book.read_metrics(path) is None:
            print(f"[avlib.book] warning: {book.display_path(path, root)} is not in the metrics "
                  f"schema {book.METRICS_SCHEMA}; not copied", file=sys.stderr)
            continue
        atomic_write_bytes(target / path.name, path.read_bytes())
        copied.append(name)
    for stale in sorted(target.glob("*.json")):
        if stale.stem not in chapters:
            stale.unlink()
            print(f"[avlib.book] removed {book.display_path(stale, root)}: no such chapter")
    print(f"[avlib.book] snapshot: {len(copied)} metrics files -> "
          f"{book.display_path(target, root)}/")
    return copied


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------
def number(value) -> str:
    """A number for the results tables: integers (and whole floats) as integers (``100``,
    ``12,000``), others at three significant digits (``98.4``, ``89.0``, ``0.943``, ``0.5``,
    ``0.00726``), ``NaN`` and ``inf`` as such."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    if abs(v) >= 10_000:
        return f"{v:,.0f}"
    if abs(v) >= 1_000:
        return f"{v:.0f}"
    if v == int(v):
        return str(int(v))
    if abs(v) < 1e-3:
        return f"{v:.2e}"
    short = f"{v:.3g}"
    # a rounded value keeps its third digit (89.0 for 88.96), an exact one does not (0.5)
    return short if float(short) == v else f"{v:#.3g}".rstrip(".")


def _with_unit(value, unit: str | None) -> str:
    text = number(value)
    return f"{text} {unit}" if text and unit else text


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def row_verdict(row: dict) -> str:
    """:func:`avlib.book.verdict` of a metrics row; :data:`NO_VALUE` when its value is not a
    finite number (a snapshot written by hand or by an older writer)."""
    if not _finite(row.get("value")):
        return NO_VALUE
    return book.row_verdict(row)


def _shown_verdict(verdict: str) -> str:
    return f"**{verdict}**" if verdict in _PROBLEMS else verdict


def _headline(record: dict) -> list[dict]:
    return [r for r in record.get("rows", []) if r.get("headline")]


def _against(row: dict) -> str:
    """``≥ 95 % / 9.68 %``: the target (with its direction) and the baseline, ``–`` for none."""
    unit = row.get("unit") or ""
    arrow = "≥" if row.get("higher_is_better", True) else "≤"
    target = "–" if row.get("target") is None else f"{arrow} {_with_unit(row['target'], unit)}"
    base = "–" if row.get("baseline") is None else _with_unit(row["baseline"], unit)
    return f"{target} / {base}"


def short_commit(commit: str | None) -> str:
    """``93849d8+dirty`` for ``93849d8d26b1...+dirty``; ``unknown`` without one."""
    if not commit:
        return "unknown"
    sha, plus, rest = str(commit).partition("+")
    return sha[:7] + plus + rest


def machine_text(host: dict | None) -> str:
    """``2 cores, Intel(R) Xeon(R) Processor, no GPU, Python 3.11.7``."""
    host = host or {}
    cores = host.get("cores")
    parts = [f"{cores} cores" if cores else "? cores", host.get("cpu") or "unknown CPU",
             host.get("gpu") or "no GPU", f"Python {host.get('python') or '?'}"]
    return ", ".join(str(p) for p in parts)


def when_text(started: str | None) -> str:
    """``2026-12-03 06:27 UTC`` for ``2026-12-03T06:27:08+00:00``."""
    if not started:
        return "date unknown"
    m = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d)", str(started))
    if not m:
        return str(started)
    suffix = " UTC" if str(started).endswith(("+00:00", "Z")) else ""
    return f"{m.group(1)} {m.group(2)}{suffix}"


def stamp(name: str, record: dict) -> str:
    """One line naming the run a chapter's numbers come from: chapter, commit, profile,
    machine, start, seconds."""
    run = record.get("run") or {}
    seconds = run.get("seconds")
    took = f"{number(round(float(seconds)))} s" if _finite(seconds) else "? s"
    return (f"`{name}` · commit `{short_commit(run.get('commit'))}` · profile "
            f"{run.get('profile') or '?'} · {machine_text(run.get('host'))} · "
            f"{when_text(run.get('started'))} · {took}")


# --------------------------------------------------------------------------------------------
# The README's results table and the landing page
# --------------------------------------------------------------------------------------------
def results_markdown(records: dict[str, dict], *, profile: str = PUBLISHED_PROFILE) -> str:
    """The README's results block: one table row per headline metric of every chapter (model
    with its size, split, metric, value, target / baseline, verdict), then one stamp line per
    chapter run (:func:`stamp`). A run of another profile than ``profile`` is flagged."""
    lines = ["| chapter | model | split | metric | value | target / baseline | verdict |",
             "|---|---|---|---|---|---|---|"]
    for name, record in sorted(records.items()):
        heads = _headline(record)
        if not heads:
            lines.append(f"| {name} | | | no headline metric | | | |")
            continue
        for r in heads:
            model = r.get("model") or ""
            if r.get("size"):
                model += f" ({r['size']})"
            lines.append(
                f"| {name} | {_cell(model)} | {_cell(r.get('split') or '')} | "
                f"{_cell(r['metric'])} | {_cell(_with_unit(r.get('value'), r.get('unit')))} | "
                f"{_cell(_against(r))} | {_shown_verdict(row_verdict(r))} |")
    lines += ["", f"Each chapter's numbers come from its last run under the `{profile}` profile:",
              ""]
    for name, record in sorted(records.items()):
        other = (record.get("run") or {}).get("profile")
        flag = f" (**not the `{profile}` profile**)" if other != profile else ""
        lines.append(f"- {stamp(name, record)}{flag}")
    return "\n".join(lines) + "\n"


def chapter_title(name: str, root: str | os.PathLike | None = None) -> str:
    """The first heading of ``notebooks/<name>.py`` (its title), else ``name``."""
    path = Path(root or project_root()) / "notebooks" / f"{name}.py"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^# # (.+?)\s*$", line)
            if m:
                return m.group(1)
    return name


def chapter_status(record: dict | None) -> str:
    """The chapter's status as the Status page computes it (:func:`avlib.book.chapter_status`
    of a successful run): ``ok``, or how many headline metrics missed, sit at chance or fall
    below their baseline; a headline value that is not a number counts as :data:`NO_VALUE`."""
    if record is not None:
        verdicts = [row_verdict(r) for r in _headline(record)]
        if NO_VALUE in verdicts:
            return f"ran · {verdicts.count(NO_VALUE)} of {len(verdicts)} headline {NO_VALUE}"
    return book.chapter_status({"status": "ok"}, record)


def landing_markdown(records: dict[str, dict], *, profile: str = PUBLISHED_PROFILE,
                     root: str | os.PathLike | None = None) -> str:
    """The landing page's block: one line per chapter (number, title, status, run date and
    commit), then a results-at-a-glance table (chapter, headline metric, value, verdict)."""
    lines = []
    for name, record in sorted(records.items()):
        run = record.get("run") or {}
        status = chapter_status(record)
        status = status if status == "ok" else f"**{status}**"
        lines.append(f"- **{name[:2]} · {_cell(chapter_title(name, root))}**: {status} "
                     f"(run of {when_text(run.get('started')).split(' ')[0]}, commit "
                     f"`{short_commit(run.get('commit'))}`)")
    lines += ["", "| chapter | headline metric | value | verdict |", "|---|---|---|---|"]
    for name, record in sorted(records.items()):
        for r in _headline(record):
            what = ", ".join(x for x in (r.get("model"), r.get("split")) if x)
            lines.append(f"| {name[:2]} | {_cell(r['metric'])} ({_cell(what)}) | "
                         f"{_cell(_with_unit(r.get('value'), r.get('unit')))} | "
                         f"{_shown_verdict(row_verdict(r))} |")
    lines += ["", f"Generated by `python -m avlib.book results` from `book/results/{profile}/`, "
              f"the saved metrics of the last `{profile}` run of each chapter; the Status page "
              "explains the verdicts."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Marked blocks
# --------------------------------------------------------------------------------------------
def replace_block(text: str, markers: tuple[str, str], block: str, what: str = "the page") -> str:
    """``text`` with what lies between the two ``markers`` replaced by ``block`` (markers kept,
    a blank line on either side of the block). Raises :class:`ResultsError` unless each marker occurs exactly once,
    the begin marker first."""
    begin, end = markers
    for marker in markers:
        n = text.count(marker)
        if n != 1:
            found = "no" if n == 0 else f"{n} times the"
            raise ResultsError(f"{what} has {found} marker {marker}: it needs exactly one "
                               f"{begin} and one {end}, the generated block goes between them")
    i, j = text.index(begin), text.index(end)
    if j < i:
        raise ResultsError(f"{what}: the marker {end} comes before {begin}")
    return text[:i + len(begin)] + "\n\n" + block.strip("\n") + "\n\n" + text[j:]


def update_file(path: str | os.PathLike, markers: tuple[str, str], block: str,
                root: str | os.PathLike | None = None) -> bool:
    """Regenerate the marked block of ``path`` (atomic write); returns whether it changed."""
    path = Path(path)
    shown = book.display_path(path, root)
    if not path.is_file():
        raise ResultsError(f"{shown}: no such file")
    text = path.read_text(encoding="utf-8")
    new = replace_block(text, markers, block, what=shown)
    if new == text:
        return False
    atomic_write_text(path, new)
    return True


def generated_blocks(root: str | os.PathLike | None = None,
                     profile: str = PUBLISHED_PROFILE) -> dict[str, tuple[tuple[str, str], str]]:
    """``README.md`` and ``book/intro.md`` -> (markers, block) from the snapshot of ``profile``."""
    root = Path(root or project_root())
    records = load_snapshot(snapshot_dir(profile, root))
    return {"README.md": (README_MARKERS, results_markdown(records, profile=profile)),
            "book/intro.md": (LANDING_MARKERS,
                              landing_markdown(records, profile=profile, root=root))}


def command(profile: str = PUBLISHED_PROFILE, snapshot: bool = False,
            root: str | os.PathLike | None = None) -> int:
    """``avlib book results``: with ``snapshot``, copy the metrics of ``profile``'s run into
    ``book/results/<profile>/``; then regenerate the README's and the landing page's blocks
    from the published snapshot (``book/results/cpu/``)."""
    root = Path(root or project_root())
    if snapshot:
        take_snapshot(profile, root)
    if profile != PUBLISHED_PROFILE:
        print(f"[avlib.book] README.md and book/intro.md show the published profile "
              f"{PUBLISHED_PROFILE!r}, not {profile!r}")
    for rel, (markers, block) in generated_blocks(root).items():
        changed = update_file(root / rel, markers, block, root)
        print(f"[avlib.book] {rel}: results block {'regenerated' if changed else 'unchanged'}")
    return 0
