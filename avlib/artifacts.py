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

This module also owns what every writer of the project shares:

- **atomic writes** (:func:`atomic_write_bytes`, :func:`atomic_write_text`,
  :func:`atomic_write_json`, and :func:`atomic_path` for writers that need a path): a hidden
  owner-tagged temporary in the destination folder (:func:`temp_path`), flushed, given the
  mode of a plainly created file (``0o666 & ~umask``) and renamed. :func:`is_stale_temp` tells
  whether a leftover temporary's owner is dead, so a sweep never deletes a live run's file;
- **folder locks** (:func:`folder_lock`, ``flock``): one process at a time where needed;
- **current products** (:func:`record_current`, :func:`find_current`): which folder of a
  product a chapter last made or loaded, for later chapters.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from avlib.cli import EXIT_BUSY

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


# ---------------------------------------------------------------------------------------------
# Atomic writes: the one place where files are written through a temporary and a rename
# ---------------------------------------------------------------------------------------------
#: This machine in temporary names (letters, digits and '-'), so that a later run can tell
#: whether the process that made a temporary is still alive (:func:`is_stale_temp`).
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
#: Age after which a temporary of another machine (whose process cannot be asked) is stale.
STALE_TEMP_SECONDS = 3600.0
# ".<name>.<host>.<pid>.<10 hex>.tmp<suffix>" (files, this module) or
# ".tmp.<host>.<pid>.<10 hex>.<name>" / ".old.<host>.<pid>.<10 hex>.<name>" (store folders).
_TEMP_RE = re.compile(
    r"^\.(?:(?:tmp|old)\.(?P<h1>[A-Za-z0-9-]+)\.(?P<p1>\d+)\.[0-9a-f]{10}\..+"
    r"|.*\.(?P<h2>[A-Za-z0-9-]+)\.(?P<p2>\d+)\.[0-9a-f]{10}\.tmp(?:\.[^.]*)?)$", re.S)


def temp_path(final: str | os.PathLike, suffix: str | None = None) -> Path:
    """A fresh hidden name next to ``final`` that records its owner:
    ``.<name>.<host>.<pid>.<random>.tmp<suffix>`` (``suffix`` defaults to ``final``'s, so tools
    that pick a format by extension, ffmpeg, soundfile, ``np.save``, write the right one). Nothing
    is created."""
    final = Path(final)
    suffix = final.suffix if suffix is None else suffix
    stem = final.name[:100]  # file names are limited to 255 bytes
    return final.with_name(f".{stem}.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:10]}.tmp{suffix}")


def probe_writable(final: str | os.PathLike) -> None:
    """Check that ``final``'s folder really takes a new file, by creating and removing a
    temporary beside it (root passes ``os.access`` everywhere; read-only mounts and permissions
    show only when tried). Raises the ``OSError`` with ``final`` as its file name."""
    probe = temp_path(final)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise type(err)(err.errno, err.strerror, str(final)) from None
    try:
        os.unlink(probe)
    except OSError:
        pass


def temp_owner(path: str | os.PathLike) -> tuple[str, int] | None:
    """``(host, pid)`` of the process that made a temporary named by :func:`temp_path` (or by
    the clip store), None for any other name."""
    match = _TEMP_RE.match(Path(path).name)
    if match is None:
        return None
    host = match.group("h1") or match.group("h2")
    return host, int(match.group("p1") or match.group("p2"))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (True when it cannot be told)."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale_temp(path: str | os.PathLike, max_age_s: float = STALE_TEMP_SECONDS) -> bool:
    """True when a temporary may be deleted: its owner on this machine is dead, or it is older
    than ``max_age_s`` (owners on other machines, and untagged names, cannot be asked). A
    temporary of this very process is never stale."""
    path = Path(path)
    owner = temp_owner(path)
    if owner is not None and owner[0] == HOST:
        if owner[1] == os.getpid():
            return False
        if not pid_alive(owner[1]):
            return True
    try:
        return time.time() - path.lstat().st_mtime > max_age_s
    except FileNotFoundError:
        return False


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it is racy)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _discard(path: Path) -> None:
    """Remove a temporary without ever raising: a failed cleanup must not hide the error that
    caused it (the caller re-raises that one)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except OSError:
        pass


def _publish(tmp: Path, final: Path, fsync: bool) -> None:
    """Give ``tmp`` the mode a plainly created file or folder would have (``0o666`` / ``0o777``
    minus the umask: ``mkstemp`` and ``mkdtemp`` make them private), flush it, rename it."""
    folder = tmp.is_dir()
    os.chmod(tmp, (0o777 if folder else 0o666) & ~current_umask())
    if fsync and not folder:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, final)


def _named_for_user(err: OSError, tmp: Path, final: Path) -> OSError:
    """The same OS error naming ``final`` instead of the hidden temporary the user never saw (or
    instead of nothing: a failed ``write`` to an open file names no file)."""
    if err.errno is None:
        return err
    if err.filename is None:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO):
            return err
    elif Path(os.fsdecode(err.filename)) != tmp:
        return err
    try:
        renamed = type(err)(err.errno, err.strerror, str(final))
    except TypeError:
        return err
    return renamed


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (the same path once resolved, or a hard link): what a
    command checks before it writes an output that must never replace one of its inputs."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_destination(final: str | os.PathLike, make_parents: bool = False) -> Path:
    """``final`` as a Path, once it can be written as a file: its folder exists (made when
    ``make_parents``) and it is not itself a folder. Raises FileNotFoundError / IsADirectoryError
    naming the path, before anything is written."""
    final = Path(final)
    if make_parents:
        final.parent.mkdir(parents=True, exist_ok=True)
    elif not final.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"cannot write {final}: folder {final.parent} does "
                                "not exist (create it first)", str(final.parent))
    if final.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"cannot write {final}: it is a folder; give a "
                                "file path", str(final))
    return final


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, suffix: str | None = None, make_parents: bool = True,
                fsync: bool = True) -> Iterator[Path]:
    """Write ``final`` through a temporary path, for writers that need a path (safetensors,
    ``np.save``, soundfile, ffmpeg)::

        with atomic_path(out / "clip.mp4") as tmp:
            run_ffmpeg(..., tmp)

    On success the temporary gets the mode ``0o666 & ~umask`` (like any new file), is flushed
    to disk and renamed onto ``final``: readers see the old file or the new one, never half of
    one. On any failure it is removed (a failing removal never hides the original error) and
    ``final`` is untouched; OS errors about the temporary are re-raised naming ``final``.
    A folder written at the temporary path is published the same way.

    Raises FileNotFoundError (``make_parents=False`` and no folder) or IsADirectoryError
    (``final`` is a folder) before anything is written.
    """
    final = check_destination(final, make_parents)
    tmp = temp_path(final, suffix)
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise FileNotFoundError(errno.ENOENT, f"the writer of {final} produced no file", str(tmp))
        _publish(tmp, final, fsync)
    except OSError as err:
        _discard(tmp)
        renamed = _named_for_user(err, tmp, final)
        if renamed is err:
            raise
        raise renamed from err
    except BaseException:
        _discard(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, make_parents: bool = True,
                       fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``."""
    path = Path(path)
    with atomic_path(path, make_parents=make_parents, fsync=fsync) as tmp:
        # O_EXCL: the name is fresh; the kernel applies the umask to 0o666 itself.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, make_parents: bool = True) -> Path:
    """Write ``text`` (UTF-8, line ends as given) to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"), make_parents)


def atomic_write_json(path: str | os.PathLike, obj, *, make_parents: bool = True, indent: int | None = 2,
                      default=str) -> Path:
    """Write ``obj`` as sorted, indented JSON (one trailing newline) atomically; returns ``path``.
    ``default`` turns what JSON does not know into something it does (``str`` by default)."""
    text = json.dumps(obj, indent=indent, sort_keys=True, default=default, allow_nan=False) + "\n"
    return atomic_write_text(path, text, make_parents)


# ---------------------------------------------------------------------------------------------
# Locks: one process at a time in a folder
# ---------------------------------------------------------------------------------------------
class Busy(RuntimeError):
    """Another process holds the lock of a folder (``exit_code``: :data:`avlib.cli.EXIT_BUSY`)."""

    exit_code = EXIT_BUSY


@contextlib.contextmanager
def folder_lock(lock_file: str | os.PathLike, *, blocking: bool = True, what: str | None = None
                ) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if needed) for the ``with`` block.

    ``blocking=False`` raises :class:`Busy` at once when another process holds it, naming that
    process (host, pid, start time, read from the file) and ``what`` is locked. The lock goes
    with the process: a killed holder never leaves a stale lock. Two ``with`` blocks of one
    process also exclude each other (each opens the file anew). Without ``fcntl`` (Windows) no
    lock is taken. On network file systems ``flock`` works across machines only where the
    client emulates it with POSIX locks (Linux NFSv3/v4 clients do; some others lock locally).
    """
    lock_file = Path(lock_file)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            try:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise Busy(f"{what or lock_file.parent} is in use by another process ({holder}); wait "
                       f"for it to finish, or use another folder") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"host {HOST} pid {os.getpid()} since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        except OSError:
            pass  # a full disk must not stop a lock that is already held
        yield
    finally:
        os.close(fd)


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
        # mkdtemp makes the folder private (0o700); the product gets a plain folder's mode.
        os.chmod(tmp, 0o777 & ~current_umask())
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
    if record.get("complete", False) and not is_complete(folder):
        raise FileNotFoundError(f"the current {name!r} product {folder} is incomplete (no {_DONE})"
                                f"{hint}")
    return folder
