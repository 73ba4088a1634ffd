"""The book runner: execute chapters under a named profile, record what ran, build the HTML book.

Usage (``python -m avlib.book`` or ``avlib book``)::

    avlib book run --profile cpu                     # every chapter, skipping unchanged ones
    avlib book run --profile smoke --only 00 --force
    avlib book run --profile cpu --only 02_syncnet -p epochs=20 -p device=cuda
    avlib book build --profile cpu                   # jupyter-book on the executed notebooks
    avlib book inspect 00_corpus                     # a chapter's parameters and defaults

A chapter is a py:percent notebook ``notebooks/NN_name.py``. Its jupytext header carries, under
``jupyter.avlib``, the chapters it needs (``needs``) and its expected wall time per profile in
seconds (``expected_seconds``). A profile (``profiles/<name>.yml``) holds values shared by every
chapter (``shared``) and per-chapter sections (``chapters.<name>``); a shared value is injected only
into chapters that declare that parameter, a chapter value must be declared by its chapter.

A chapter is skipped when its fingerprint (notebook text, avlib source, injected parameters and
the fingerprints of the chapters it needs) equals that of its last successful run.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from avlib import envinfo
from avlib.artifacts import ARTIFACTS_ENV, atomic_write_text, project_root, resolve_artifacts_root
from avlib.profiles import ProfileError, load_profile, parse_overrides

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
    params["artifacts_root"] = str(artifacts_root)
    return params


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
    """Execute chapters under ``profile``; returns the updated run record. Raises on failure."""
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
                                       cwd=str(chapter.path.parent))
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
# Building the HTML book
# --------------------------------------------------------------------------------------------
STATUS_MARKER = "<!-- run-table -->"


def status_table(record: dict, chapters: list[Chapter]) -> str:
    """Markdown table of the run record: what ran, when, on what, how long."""
    rows = ["| chapter | status | profile | finished (UTC) | wall time | expected | machine | "
            "torch | git commit |",
            "|---|---|---|---|---|---|---|---|---|"]
    for chapter in chapters:
        e = record["notebooks"].get(chapter.name)
        if e is None:
            rows.append(f"| {chapter.name} | not run | | | | | | | |")
            continue
        m = e.get("machine", {})
        hw = f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores)"
        if m.get("gpu"):
            hw += f", {m['gpu']}"
        wall = f"{e['wall_seconds']:.0f} s" if e.get("wall_seconds") is not None else ""
        exp = f"{e['expected_seconds']:.0f} s" if e.get("expected_seconds") else ""
        status = e.get("status", "?") + (" ⚠" if e.get("warning") else "")
        commit = (e.get("git_commit") or "")[:10]
        torch_v = e.get("packages", {}).get("torch", "")
        rows.append(f"| {chapter.name} | {status} | {e.get('profile')} | "
                    f"{(e.get('finished_at') or '')[:19].replace('T', ' ')} | {wall} | {exp} | "
                    f"{hw} | {torch_v} | `{commit}` |")
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
    _check_executed(chapters, out)

    # The status page: the template from book/status.md with the run table filled in.
    template = (root / "book" / "status.md").read_text()
    if STATUS_MARKER not in template:
        raise BookError(f"book/status.md must contain the marker {STATUS_MARKER}")
    atomic_write_text(out / "status.md", template.replace(STATUS_MARKER, status_table(record, chapters)))

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


def _check_executed(chapters: list[Chapter], out: Path) -> None:
    """Fail when an executed notebook has a code cell that did not run (no execution count)."""
    import nbformat

    for chapter in chapters:
        nb = nbformat.read(out / f"{chapter.name}.ipynb", as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and cell.source.strip() and cell.get("execution_count") is None:
                raise BookError(f"{chapter.name}: code cell {i} has not been executed")


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


def main_from_args(args: argparse.Namespace) -> int:
    try:
        if args.book_command == "run":
            run(args.profile, args.only, parse_overrides(args.param), args.force,
                progress=not args.no_progress)
        elif args.book_command == "build":
            build(args.profile, strict=not args.no_strict)
        elif args.book_command == "inspect":
            _inspect(args.chapter, args.profile)
        elif args.book_command == "list":
            for c in find_chapters():
                print(f"{c.name:24s} needs={c.needs} expected_seconds={c.metadata.get('expected_seconds')}")
    except (BookError, ProfileError) as err:
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
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
