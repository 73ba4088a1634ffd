"""Where chapters keep what they make, and how a later chapter gets it back.

One artifacts root per profile: ``_build/artifacts/<profile>/`` under the project, overridden by
the ``AVLIB_ARTIFACTS`` environment variable, itself overridden by a chapter's ``artifacts_root``
parameter. Inside it every product lives in ``<name>/<key>/`` where ``key`` is a hash of the
configuration that determines it, so a chapter run with other parameters never picks up a stale
product.

:func:`produce_or_load` is the one train-or-load call of the book, driven by ``ckpt_policy``:

- ``"load"``: use the existing product; fail with a message naming what would produce it;
- ``"train"``: always (re)produce it;
- ``"auto"``: load when present, produce otherwise.

A product directory appears only complete: it is built in a temporary sibling and renamed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

ARTIFACTS_ENV = "AVLIB_ARTIFACTS"
POLICIES = ("load", "train", "auto")
_DONE = "artifact.json"


class ArtifactMissing(FileNotFoundError):
    """``ckpt_policy="load"`` asked for a product that has not been made."""


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The book's root: the nearest folder above ``start`` (default: cwd) holding ``_config.yml``
    and ``avlib/``; falls back to the folder above this package, then to ``start``."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_config.yml").is_file() and (folder / "avlib").is_dir():
            return folder
    pkg_parent = Path(__file__).resolve().parent.parent
    if (pkg_parent / "_config.yml").is_file():
        return pkg_parent
    return start


def resolve_artifacts_root(artifacts_root: str | os.PathLike | None, profile: str,
                           root: str | os.PathLike | None = None) -> Path:
    """Parameter > ``$AVLIB_ARTIFACTS`` > ``<project>/_build/artifacts/<profile>``; made absolute."""
    if artifacts_root:
        path = Path(artifacts_root)
    elif os.environ.get(ARTIFACTS_ENV):
        path = Path(os.environ[ARTIFACTS_ENV])
    else:
        path = Path(root or project_root()) / "_build" / "artifacts" / profile
    return path.expanduser().resolve()


def settings_from_dict(cls, values: dict, what: str = "settings"):
    """Build the dataclass ``cls`` from a dict, naming unknown keys (a typo in a profile or a
    ``--set`` option) instead of failing with a bare TypeError."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {sorted(names)}")
    return cls(**values)


def config_key(config: dict) -> str:
    """Short stable hash of a JSON-able configuration."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def atomic_write_text(path: str | os.PathLike, text: str, make_parents: bool = True) -> Path:
    """Write ``text`` (UTF-8, LF line ends) to ``path`` through a temporary file in the same
    folder and a rename, so readers see the old file or the new one, never half of one."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def source_hash(modules: tuple[str, ...] | list[str]) -> str:
    """Hash of the source files of the named modules or packages (``"avlib.corpus"``): the code
    that determines a product is part of its key, so editing it remakes the product."""
    import importlib.util

    h = hashlib.sha256()
    for name in sorted(set(modules)):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"no module named {name!r}")
        if spec.submodule_search_locations:
            base = Path(next(iter(spec.submodule_search_locations)))
            files = sorted(base.rglob("*.py"))
        else:
            base, files = Path(spec.origin).parent, [Path(spec.origin)]
        for f in files:
            h.update(f"{name}:{f.relative_to(base)}".encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def product_dir(root: str | os.PathLike, name: str, config: dict, code: tuple[str, ...] = ()) -> Path:
    """``<root>/<name>/<key>``: where the product of ``name`` under ``config`` lives; the key
    hashes the config and the source of the ``code`` modules that make the product."""
    keyed = {**config, "_code": source_hash(code)} if code else config
    return Path(root) / name / config_key(keyed)


def is_complete(path: str | os.PathLike) -> bool:
    return (Path(path) / _DONE).is_file()


def produce_or_load(name: str, config: dict, produce: Callable[[Path], dict | None],
                    policy: str = "auto", root: str | os.PathLike | None = None,
                    producer: str | None = None, resumable: bool = False,
                    code: tuple[str, ...] = ()) -> Path:
    """Return the folder holding product ``name`` for ``config``, producing it when needed.

    ``produce(folder)`` writes everything into the (temporary) ``folder`` and may return a dict of
    metadata (metrics, timings) stored beside the config in ``artifact.json``. ``producer`` names
    the chapter that makes this product, for the error message under ``policy="load"``.

    ``code`` names the modules whose source determines the product (e.g. ``("avlib.corpus",)``):
    their hash joins the key, so a product made by older code is not reused.

    With ``resumable=True`` the work folder is ``<key>.partial`` and survives a failure or a kill,
    so that a ``produce`` which skips finished pieces (the corpus) continues where it stopped.
    """
    if policy not in POLICIES:
        raise ValueError(f"ckpt_policy must be one of {POLICIES}, got {policy!r}")
    if root is None:
        raise ValueError("pass the artifacts root (resolve_artifacts_root(...))")
    final = product_dir(root, name, config, code)
    if policy in ("load", "auto") and is_complete(final):
        return final
    if policy == "load":
        hint = f" (made by chapter {producer})" if producer else ""
        raise ArtifactMissing(
            f"no {name!r} product for this configuration under {final}{hint}; run the producing "
            "chapter with the same profile first, or set ckpt_policy='auto' to make it here")
    final.parent.mkdir(parents=True, exist_ok=True)
    if resumable:
        tmp = final.with_name(final.name + ".partial")
        tmp.mkdir(exist_ok=True)
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        t0 = time.perf_counter()
        meta = produce(tmp) or {}
        record = {"name": name, "config": config, "key": final.name, "metadata": meta,
                  "code": {m: source_hash((m,)) for m in code},
                  "seconds": round(time.perf_counter() - t0, 2),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_json(tmp / _DONE, record)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        if not resumable:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``artifact.json`` record of a product folder (config, metadata, timings)."""
    return json.loads((Path(path) / _DONE).read_text())


# ---------------------------------------------------------------------------------------------
# Current products: which folder of a product a chapter last made or loaded
# ---------------------------------------------------------------------------------------------
_CURRENT = "current.json"


def record_current(root: str | os.PathLike, name: str, folder: str | os.PathLike) -> Path:
    """Record ``folder`` as the current product ``name`` under ``root``
    (``<root>/<name>/current.json``, written atomically); returns the pointer's path.

    The pointer holds the absolute path and, for a folder inside ``root``, the path relative to
    it (so a moved or copied artifacts root still finds its products), and whether the folder
    was a complete product (``artifact.json``) when recorded."""
    root, folder = Path(root), Path(folder).resolve()
    record = {"path": str(folder), "complete": is_complete(folder)}
    try:
        record["relative"] = folder.relative_to(root.resolve()).as_posix()
    except ValueError:
        pass
    pointer = root / name / _CURRENT
    atomic_write_json(pointer, record)
    return pointer


def find_current(root: str | os.PathLike, name: str, *, producer: str | None = None) -> Path:
    """The folder last recorded by :func:`record_current` for product ``name`` under ``root``.

    Raises FileNotFoundError naming the chapter that makes it (``producer``) when there is none,
    when the pointer is unreadable, when the recorded folder is gone, or when a folder recorded
    as a complete product no longer is (being remade, or damaged).
    """
    pointer = Path(root) / name / _CURRENT
    hint = (f"; run chapter {producer} with the same profile first (avlib book run --only "
            f"{producer})") if producer else ""
    if not pointer.is_file():
        raise FileNotFoundError(f"no current {name!r} product under {root}{hint}")
    try:
        record = json.loads(pointer.read_text(encoding="utf-8"))
        folder = Path(record["path"])
    except (ValueError, KeyError, TypeError) as err:
        raise FileNotFoundError(f"the pointer {pointer} is unreadable ({err}){hint}") from None
    if not folder.is_dir() and record.get("relative"):
        folder = Path(root) / record["relative"]
    if not folder.is_dir():
        raise FileNotFoundError(f"the current {name!r} product {folder} (recorded in {pointer}) "
                                f"is gone{hint}")
    if record.get("complete", True) and not is_complete(folder):
        raise FileNotFoundError(f"the current {name!r} product {folder} is incomplete (no {_DONE})"
                                f"{hint}")
    return folder
