"""The clip store: preprocessed talking-face clips with random access to any window of frames.

One store folder holds every preprocessed clip of a corpus. Each clip keeps several image
*streams* (face crops of the same ``T`` frames at 25 fps), its 16 kHz mono audio, precomputed
audio features, optional lip landmarks and its metadata::

    <root>/
      store.json                     manifest: store summary + one record per clip (finalize())
      config.json                    the preprocessing config the writers were started with
      clips/<safe id>/
        meta.json                    the clip record; written last (a clip without it is unfinished)
        <stream>.jpg.bin             the T JPEG images of the stream, concatenated
        <stream>.idx.npy             int64 byte offsets (T + 1,): frame i is bin[idx[i]:idx[i+1]]
        audio.npy                    int16 PCM at 16 kHz (N,)
        features/<name>.npy          float32 (or float16) features, e.g. wav2lip_mel (80, 1 + N // 200)
        landmarks.npy                float32 (T, K, 2) pixels, optional
      rejected/<safe id>.json        clips the preprocessing rejected: reason code, detail, metadata

Why this layout. Upstream Wav2Lip / VocaLiST store one JPEG file per frame plus ``audio.wav`` and
recompute the mel spectrogram of the whole wav for every training sample. Here a window of
frames is one ``pread`` of a contiguous byte range followed by decoding only those JPEGs, and the
audio features are sliced from a memory map: no clip is ever decoded whole. The JPEG bytes are
the same as the per-frame files (same encoder, same quality), so storage matches the per-frame
layout (minus the file-system slack of thousands of small files); :meth:`ClipStore.export_jpeg_layout`
writes that layout back out byte for byte for upstream code.

Colour order. Colour JPEGs are always *encoded* with the correct colours (OpenCV's BGR
convention), whatever order the arrays were given in; the stream's ``order`` ("rgb", "bgr" or
"gray") says in which order :meth:`ClipStore.frames` returns them, so exported files open with the
right colours in any viewer and ``cv2.imread`` of an exported frame gives BGR, as upstream expects.

Crash safety. A clip is written into a hidden temporary sibling folder and renamed into place
(atomic), so a killed run leaves either a complete clip or nothing under its name; a writer
removes the temporaries of dead runs when it starts (those of live processes, and of other
machines younger than ``stale_temp_seconds``, are kept). Rejections and ``store.json`` are single
files written atomically (:mod:`avlib.artifacts`).

Several writers. Processes or machines sharing the folder may fill one store at the same time,
sharded (``--shard i/N``, each clip written by one writer) or not. What is guaranteed:

- a finished clip is never lost, damaged or moved aside by another writer: when two writers
  finish the same clip, the first one's stays and the second counts it as done
  (``write_clip(..., overwrite=False)``, what the preprocessing uses); a rejection never removes
  a finished clip (``reject`` keeps it unless ``replace_finished=True``), and when both exist the
  finished clip wins;
- :meth:`StoreWriter.finalize` scans the folder and writes ``store.json`` under an exclusive
  lock (``.store.lock``, ``flock``), so the manifest written last lists every clip finished
  before that finalize started: a slower shard can no longer replace it with an older snapshot;
- :class:`ClipStore` warns when finished clips on disk are missing from ``store.json`` (written
  after the last finalize) and lists them with :meth:`ClipStore.unlisted`.

Not guaranteed: unsharded writers may do the same clip twice (wasted work, not lost data; shard
to split the work); clips finished after a finalize are not in that manifest until the next one;
on network file systems the lock holds across machines only where the client supports ``flock``
(Linux NFS clients emulate it with POSIX locks; others may lock per machine), and stale
temporaries of other machines are recognised by age only.

Clip ids may contain ``/`` (LRS2 ``6330311066473698535/00011``) or any other character: folder
names are a reversible percent-encoding (:func:`safe_name`, :func:`id_from_safe_name`).
"""

from __future__ import annotations

import copy
import errno
import io
import json
import os
import re
import shutil
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import soundfile as sf

from avlib.artifacts import (HOST, atomic_write_text, find_current, folder_lock,
                             is_stale_temp, record_current as _record_product, temp_owner)
from avlib.audio import FPS, SAMPLES_PER_FRAME, SR
from avlib.cli import EXIT_OUTPUT, EXIT_USAGE

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SR",
    "FPS",
    "SAMPLES_PER_FRAME",
    "StoreError",
    "StoreConfigError",
    "StoreWriter",
    "ClipStore",
    "safe_name",
    "id_from_safe_name",
]

FORMAT = "avlib-clip-store"
FORMAT_VERSION = 1
MANIFEST = "store.json"
LOCK = ".store.lock"  #: held while finalize() scans and writes the manifest
CONFIG = "config.json"
CLIPS_DIR = "clips"
REJECTED_DIR = "rejected"
FEATURES_DIR = "features"
META = "meta.json"
AUDIO = "audio.npy"
LANDMARKS = "landmarks.npy"

ORDERS = ("rgb", "bgr", "gray")
#: Keys the store computes itself; a caller's meta may not set them.
RESERVED_META = frozenset(
    {"id", "status", "reason", "n_frames", "duration", "n_samples", "sample_rate", "streams",
     "features", "landmarks", "format_version"}
)
#: Keys every manifest record carries (None when the preprocessing did not provide them).
RECORD_KEYS = ("dataset", "split", "speaker", "transcript")
#: Audio may differ from ``640 T`` samples by this many frames or this fraction, whichever is
#: larger: real containers end audio and video a little apart, but a wrong sample rate is
#: off by far more and must not slip into the store.
AUDIO_SLACK_FRAMES = 2
AUDIO_SLACK_FRACTION = 0.10

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # stream / feature names (file names)
_REASON_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
_MAX_SAFE_LEN = 240  # file names are limited to 255 bytes; leave room for ".json"
_TEMP_PREFIXES = (".tmp.", ".old.")
_HOST = HOST


class StoreError(Exception):
    """The store on disk is missing, incomplete, inconsistent, or does not hold what was asked."""

    exit_code = EXIT_OUTPUT  # on the command line the store is what `avlib preprocess` writes


class StoreConfigError(StoreError):
    """A writer was started with settings other than those the store was written with."""

    exit_code = EXIT_USAGE


# ----------------------------------------------------------------------------- clip id <-> folder


def safe_name(clip_id: str) -> str:
    """File-system-safe, reversible, collision-free folder name for ``clip_id``.

    Letters, digits, ``_``, ``-`` and ``.`` stay; every other byte of the UTF-8 id becomes ``%XX``
    (so ``/`` -> ``%2F`` and ``%`` -> ``%25``); a leading ``.`` is escaped too, so no name is hidden
    or equals ``.``/``..``. Example: ``"6330311066473698535/00011"`` -> ``"6330311066473698535%2F00011"``.
    """
    if not isinstance(clip_id, str) or not clip_id:
        raise ValueError(f"a clip id must be a non-empty string, got {clip_id!r}")
    out = []
    for i, byte in enumerate(clip_id.encode("utf-8")):
        if byte in _SAFE_BYTES and not (i == 0 and byte == ord(".")):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    name = "".join(out)
    if len(name) > _MAX_SAFE_LEN:
        raise ValueError(f"clip id {clip_id[:60]!r}... is too long: its folder name would have "
                         f"{len(name)} characters (max {_MAX_SAFE_LEN}); use shorter ids")
    return name


def id_from_safe_name(name: str) -> str:
    """Inverse of :func:`safe_name`; raises ValueError for names it would never produce."""
    raw = bytearray()
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "%":
            try:
                raw.append(int(name[i + 1 : i + 3], 16))
            except ValueError:
                raise ValueError(f"{name!r} is not a clip folder name (bad escape at {i})") from None
            i += 3
        else:
            raw.append(ord(ch))
            i += 1
    try:
        clip_id = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{name!r} is not a clip folder name (not UTF-8 once decoded)") from None
    if not clip_id or safe_name(clip_id) != name:
        raise ValueError(f"{name!r} is not a clip folder name written by safe_name()")
    return clip_id


# ----------------------------------------------------------------------------- small file helpers


def _json_default(value):
    """Let metadata carry numpy scalars/arrays (face-track statistics often are)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable; store plain numbers, strings, "
                    "lists and dicts in clip metadata")


def _dumps(obj) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=False, indent=1, sort_keys=True)


def _temp_name(final_name: str, kind: str = ".tmp.") -> str:
    """Hidden sibling name of a clip folder that records its owner (host, pid), so that a later
    writer can tell whether the run that made it is dead (:func:`avlib.artifacts.is_stale_temp`)."""
    return f"{kind}{HOST}.{os.getpid()}.{uuid.uuid4().hex[:10]}.{final_name}"


def _write_text_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text, make_parents=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise StoreError(f"{path} is not valid JSON ({err}); delete it and rerun the writer") from None


def _read_range(path: Path, start: int, stop: int) -> bytes:
    """Bytes [start, stop) of a file. Opens per call: no file handle is shared between threads
    or across fork (DataLoader workers), and pread does not move any shared file offset."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        if hasattr(os, "pread"):
            data = os.pread(fd, stop - start, start)
        else:
            os.lseek(fd, start, os.SEEK_SET)
            data = os.read(fd, stop - start)
    finally:
        os.close(fd)
    if len(data) != stop - start:
        raise StoreError(f"{path} is shorter than its index says ({start + len(data)} < {stop} bytes); "
                         "the clip is damaged: delete its folder and rerun the preprocessing")
    return data


# ----------------------------------------------------------------------------- validation


def _check_name(name, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"{what} name {name!r} must be letters, digits, '_' or '-' (it becomes a file name)")
    return name


def _check_meta(meta: dict | None) -> dict:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
    bad = sorted(RESERVED_META & set(meta))
    if bad:
        raise ValueError(f"meta keys {bad} are computed by the store; remove them from meta")
    if "fps" in meta and float(meta["fps"]) != FPS:
        raise ValueError(f"the store holds {FPS} fps video, got meta fps={meta['fps']}; "
                         f"resample the frames to {FPS} fps first (avlib.media.read_video(fps={FPS}))")
    try:
        return json.loads(_dumps(meta))  # plain JSON types from here on
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must be JSON-serialisable: {err}") from None


def _check_streams(streams: dict, orders: dict | None) -> tuple[int, dict[str, str]]:
    if not isinstance(streams, dict) or not streams:
        raise ValueError("streams must be a non-empty dict {name: uint8 array (T, H, W, 3) or (T, H, W)}")
    orders = dict(orders or {})
    unknown = sorted(set(orders) - set(streams))
    if unknown:
        raise ValueError(f"orders names streams {unknown} that are not in streams {sorted(streams)}")
    lengths = {}
    resolved = {}
    for name, arr in streams.items():
        _check_name(name, "stream")
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
            got = getattr(arr, "dtype", type(arr).__name__)
            raise ValueError(f"stream {name!r} must be a uint8 numpy array, got {got}; "
                             "convert with np.clip(x, 0, 255).astype(np.uint8)")
        colour = arr.ndim == 4 and arr.shape[-1] == 3
        if not (colour or arr.ndim == 3) or min(arr.shape) == 0:
            raise ValueError(f"stream {name!r} has shape {arr.shape}; expected (T, H, W, 3) colour "
                             "or (T, H, W) gray with T, H, W >= 1")
        order = orders.get(name, "rgb" if colour else "gray")
        if order not in ORDERS:
            raise ValueError(f"stream {name!r}: order must be one of {ORDERS}, got {order!r}")
        if (order == "gray") == colour:
            raise ValueError(f"stream {name!r} has shape {arr.shape} but order {order!r}; "
                             "gray streams are (T, H, W), rgb/bgr streams (T, H, W, 3)")
        lengths[name] = arr.shape[0]
        resolved[name] = order
    if len(set(lengths.values())) != 1:
        raise ValueError(f"all streams must have the same number of frames, got {lengths}")
    return next(iter(lengths.values())), resolved


def _audio_to_int16(audio, n_frames: int) -> np.ndarray:
    arr = np.asarray(audio)
    if arr.ndim != 1:
        raise ValueError(f"audio must be mono (N,), got shape {arr.shape}; mix channels down first")
    if arr.dtype == np.int16:
        pcm = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.size and not np.isfinite(arr).all():
            raise ValueError("audio contains NaN or inf")
        peak = float(np.abs(arr).max()) if arr.size else 0.0
        if peak > 2.0:
            raise ValueError(f"audio peaks at {peak:.1f}: float audio must lie in [-1, 1] "
                             "(int16-scale samples? divide by 32768)")
        # Peaks slightly over full scale (resampling overshoot) are clipped rather than wrapped.
        pcm = np.clip(np.rint(arr.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    else:
        raise ValueError(f"audio must be float in [-1, 1] or int16, got dtype {arr.dtype}")
    expected = SAMPLES_PER_FRAME * n_frames
    slack = max(AUDIO_SLACK_FRAMES * SAMPLES_PER_FRAME, AUDIO_SLACK_FRACTION * expected)
    if abs(len(pcm) - expected) > slack:
        raise ValueError(
            f"audio has {len(pcm)} samples but {n_frames} frames at {FPS} fps need about {expected} "
            f"({SAMPLES_PER_FRAME} per frame at {SR} Hz); is the audio 16 kHz mono and of the same clip?")
    return np.ascontiguousarray(pcm)


def _check_features(features: dict | None) -> dict[str, np.ndarray]:
    out = {}
    for name, value in (features or {}).items():
        _check_name(name, "feature")
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.floating):
            if arr.dtype != np.float16:  # float16 is kept: a caller's choice to halve the size
                arr = arr.astype(np.float32, copy=False)
            if arr.size and not np.isfinite(arr).all():
                raise ValueError(f"feature {name!r} contains NaN or inf")
        elif not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ValueError(f"feature {name!r} must be numeric, got dtype {arr.dtype}")
        out[name] = np.ascontiguousarray(arr)
    return out


def _check_landmarks(landmarks, n_frames: int) -> np.ndarray | None:
    if landmarks is None:
        return None
    arr = np.asarray(landmarks, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[0] != n_frames or arr.shape[2] not in (2, 3):
        raise ValueError(f"landmarks must be (T={n_frames}, K, 2) pixels (or (T, K, 3)), got {arr.shape}")
    return np.ascontiguousarray(arr)


def _encode_stream(frames: np.ndarray, order: str, quality: int) -> tuple[bytes, np.ndarray]:
    """JPEG-encode every frame; returns the concatenated bytes and the (T + 1,) int64 offsets."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    chunks = []
    for frame in frames:
        # OpenCV encodes its arrays as BGR: swap RGB input so the JPEG holds the true colours.
        image = frame[..., ::-1] if order == "rgb" else frame
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), params)
        if not ok:
            raise StoreError(f"OpenCV could not JPEG-encode a frame of shape {frame.shape}")
        chunks.append(buf.tobytes())
    offsets = np.zeros(len(chunks) + 1, np.int64)
    np.cumsum([len(c) for c in chunks], out=offsets[1:])
    return b"".join(chunks), offsets


# ----------------------------------------------------------------------------- writer


class StoreWriter:
    """Writes clips into a store folder; safe to kill and rerun, and to run as several writers
    at once (shards or not: see the module docstring for what is guaranteed).

    Args:
        root: the store folder (created if absent).
        config: the preprocessing settings (JSON-able). Saved in ``config.json`` by the first
            writer; a later writer with a *different* config raises :class:`StoreConfigError`,
            so a resumed run cannot silently mix settings. ``None`` adopts the saved one.
        jpeg_quality: JPEG quality 1-100 of the image streams (95 = ``cv2.imwrite``'s default,
            what upstream's per-frame files use).
        stale_temp_seconds: temporaries of other machines older than this are removed at start
            (on this machine, those of dead processes are removed at once).
    """

    def __init__(self, root, config: dict | None = None, jpeg_quality: int = 95,
                 stale_temp_seconds: float = 3600.0):
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
        self.root = Path(root)
        self.jpeg_quality = int(jpeg_quality)
        self.clips_dir = self.root / CLIPS_DIR
        self.rejected_dir = self.root / REJECTED_DIR
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        self.removed_temporaries = self._remove_stale_temporaries(stale_temp_seconds)
        # Under the lock: two writers starting together must not both save their config.
        with folder_lock(self.root / LOCK, what=f"the clip store {self.root}"):
            self.config = self._settle_config(config)

    # -- setup
    def _settle_config(self, config: dict | None) -> dict:
        path = self.root / CONFIG
        saved = _read_json(path) if path.exists() else None
        if config is None:
            return saved if saved is not None else {}
        try:
            wanted = json.loads(_dumps(config))
        except (TypeError, ValueError) as err:
            raise ValueError(f"config must be JSON-serialisable: {err}") from None
        if saved is None:
            _write_text_atomic(path, _dumps(wanted))
        elif saved != wanted:
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            raise StoreConfigError(f"the store at {self.root} was written with a different config "
                             f"(differs in {changed}); finish it with the same config, or write to "
                             "a new folder")
        return wanted

    def _remove_stale_temporaries(self, max_age_s: float) -> int:
        """Remove the clip folders and files that dead (or, on other machines, old) writers left
        half-written; never those of live processes."""
        removed = 0
        for folder in (self.clips_dir, self.rejected_dir, self.root):
            for entry in folder.iterdir():
                ours = entry.name.startswith(_TEMP_PREFIXES) or temp_owner(entry) is not None
                if ours and is_stale_temp(entry, max_age_s):
                    _remove(entry)
                    removed += 1
        return removed

    # -- state
    def clip_dir(self, clip_id: str) -> Path:
        return self.clips_dir / safe_name(clip_id)

    def _rejected_path(self, clip_id: str) -> Path:
        return self.rejected_dir / (safe_name(clip_id) + ".json")

    def done(self, clip_id: str) -> bool:
        """True when the clip is finished (written) or rejected, by this or any other writer."""
        return (self.clip_dir(clip_id) / META).is_file() or self._rejected_path(clip_id).is_file()

    def pending(self, clip_ids: Iterable[str]) -> list[str]:
        """The ids among ``clip_ids`` that are neither finished nor rejected (what a rerun must do)."""
        return [cid for cid in clip_ids if not self.done(cid)]

    def _check_owner(self, path: Path, clip_id: str) -> None:
        """Refuse to overwrite a clip of another id that maps to the same name (possible only on
        case-insensitive file systems, where 'A' and 'a' are one folder)."""
        meta_path = path / META if path.is_dir() else path
        if meta_path.is_file():
            other = _read_json(meta_path).get("id")
            if other is not None and other != clip_id:
                raise StoreError(f"clip ids {clip_id!r} and {other!r} map to the same file name "
                                 f"{path.name!r} on this (case-insensitive) file system; rename one")

    def _move_aside(self, path: Path) -> None:
        """Remove a finished clip folder without ever exposing a half-deleted one under its name."""
        if not path.exists():
            return
        trash = path.with_name(_temp_name(path.name, ".old."))
        try:
            os.replace(path, trash)
        except FileNotFoundError:  # another shard removed it meanwhile
            return
        shutil.rmtree(trash, ignore_errors=True)

    @staticmethod
    def _finished(folder: Path, clip_id: str) -> bool:
        """Whether ``folder`` holds a finished clip of ``clip_id`` (a readable ``meta.json``
        that names it: the writer renames a clip into place only after writing it last)."""
        try:
            record = json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(record, dict) and record.get("id") == clip_id and record.get("status") == "ok"

    def _commit(self, tmp: Path, final: Path, clip_id: str, overwrite: bool) -> bool:
        """Rename the finished temporary folder ``tmp`` onto ``final``. True when it is in
        place; False when another writer's finished clip was there (or got there first) and
        was kept (``overwrite=False``, or a race lost during the swap)."""
        try:
            os.rename(tmp, final)  # fails on a non-empty final folder instead of replacing it
            return True
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if not overwrite and self._finished(final, clip_id):
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        # Replace: the old folder goes aside first, so its name never shows a half-deleted clip.
        trash = final.with_name(_temp_name(final.name, ".old."))
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            trash = None
        try:
            os.rename(tmp, final)
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST) and self._finished(final, clip_id):
                shutil.rmtree(tmp, ignore_errors=True)  # another writer's clip got in between
                if trash is not None:
                    shutil.rmtree(trash, ignore_errors=True)
                return False
            if trash is not None:
                try:
                    os.rename(trash, final)  # put the old clip back rather than lose it
                except OSError:
                    pass
            raise
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return True

    # -- writing
    def write_clip(self, clip_id: str, meta: dict, streams: dict[str, np.ndarray], audio: np.ndarray,
                   features: dict[str, np.ndarray] | None = None, landmarks: np.ndarray | None = None,
                   orders: dict[str, str] | None = None, *, overwrite: bool = True) -> bool:
        """Write one finished clip atomically (replacing an earlier rejection).

        Args:
            clip_id: e.g. ``"6330311066473698535/00011"``; any non-empty string.
            meta: JSON-able metadata: ``dataset``, ``split``, ``speaker``, ``transcript``,
                ``words``, ``source``, ``face_track`` (statistics dict), ``fps`` (must be 25), ...
            streams: ``{name: uint8 (T, H, W, 3) or (T, H, W)}``, all with the same T.
            audio: ``(N,)`` float in [-1, 1] at 16 kHz (stored as int16) or int16; N ~ 640 T.
            features: ``{name: array}``, e.g. ``{"wav2lip_mel": (80, 1 + N // 200)}``; floats are
                stored as float32.
            landmarks: ``(T, K, 2)`` pixels (e.g. lip landmarks), stored as float32.
            orders: colour order per stream, ``"rgb"`` (default for colour), ``"bgr"`` or ``"gray"``
                (default and only choice for (T, H, W) streams).
            overwrite: replace an existing finished version of the clip (swapped, never shown
                half-deleted). False keeps a finished version already in the store, e.g. one
                another writer finished meanwhile, and returns False.

        Returns:
            True when this version is in place, False when an existing finished one was kept.
        """
        name = safe_name(clip_id)
        user_meta = _check_meta(meta)
        n_frames, resolved = _check_streams(streams, orders)
        pcm = _audio_to_int16(audio, n_frames)
        feats = _check_features(features)
        marks = _check_landmarks(landmarks, n_frames)
        final = self.clips_dir / name
        self._check_owner(final, clip_id)

        tmp = self.clips_dir / _temp_name(name)
        try:
            tmp.mkdir()
            stream_info = {}
            for sname, frames in streams.items():
                blob, offsets = _encode_stream(frames, resolved[sname], self.jpeg_quality)
                (tmp / f"{sname}.jpg.bin").write_bytes(blob)
                np.save(tmp / f"{sname}.idx.npy", offsets)
                stream_info[sname] = {"shape": list(frames.shape), "order": resolved[sname],
                                      "quality": self.jpeg_quality, "bytes": len(blob)}
            np.save(tmp / AUDIO, pcm)
            feature_info = {}
            if feats:
                (tmp / FEATURES_DIR).mkdir()
                for fname, arr in feats.items():
                    np.save(tmp / FEATURES_DIR / f"{fname}.npy", arr)
                    feature_info[fname] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
            if marks is not None:
                np.save(tmp / LANDMARKS, marks)
            record = {key: None for key in RECORD_KEYS}
            record.update({"face_track": {}, "detail": ""})
            record.update(user_meta)
            record.update({
                "id": clip_id, "status": "ok", "reason": None, "format_version": FORMAT_VERSION,
                "n_frames": n_frames, "fps": FPS, "duration": n_frames / FPS,
                "n_samples": int(len(pcm)), "sample_rate": SR,
                "streams": stream_info, "features": feature_info,
                "landmarks": None if marks is None else {"shape": list(marks.shape)},
            })
            # meta.json last: inside the temporary folder too, a clip without it is unfinished.
            (tmp / META).write_text(_dumps(record), encoding="utf-8")
            placed = self._commit(tmp, final, clip_id, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # After the clip is in place: a crash here leaves both records, and finalize() lets the
        # finished clip win, which is what this call meant.
        self._rejected_path(clip_id).unlink(missing_ok=True)
        return placed

    def reject(self, clip_id: str, reason: str, detail: str = "", meta: dict | None = None, *,
               replace_finished: bool = False) -> bool:
        """Record that ``clip_id`` was rejected: ``reason`` is a short code (``"no_face"``,
        ``"too_short"``, a :data:`avlib.media.REASONS` code, ...), ``detail`` a sentence for humans,
        ``meta`` what is known about the clip (dataset, split, speaker, face_track ...).

        A finished version of the clip is kept and nothing is recorded (returns False): a
        rejection must never destroy a clip another writer finished. ``replace_finished=True``
        removes it instead (a deliberate re-verdict). Returns True when the rejection is recorded.
        """
        if not isinstance(reason, str) or not _REASON_RE.fullmatch(reason):
            raise ValueError("reason must be a short code of letters, digits and _.:- (e.g. 'no_face'), "
                             f"got {reason!r}")
        path = self._rejected_path(clip_id)
        self._check_owner(path, clip_id)
        record = {key: None for key in RECORD_KEYS}
        record["face_track"] = {}
        record.update(_check_meta(meta))
        record.update({"id": clip_id, "status": "rejected", "reason": reason, "detail": str(detail),
                       "format_version": FORMAT_VERSION})
        if self._finished(self.clip_dir(clip_id), clip_id):
            if not replace_finished:
                return False
            # Remove the finished version first: a crash in between leaves neither, so the clip
            # is simply redone, never both with the finished one (which would win) being stale.
            self._move_aside(self.clip_dir(clip_id))
        _write_text_atomic(path, _dumps(record))
        return True

    # -- manifest
    def _scan(self) -> tuple[list[dict], list[dict], list[str]]:
        ok, rejected, incomplete = {}, {}, []
        for entry in sorted(self.clips_dir.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            meta_path = entry / META
            if not meta_path.is_file():
                incomplete.append(entry.name)
                continue
            try:
                record = _read_json(meta_path)
            except FileNotFoundError:  # swapped by a writer replacing it this very moment
                continue
            if not isinstance(record.get("id"), str) or not record["id"] or safe_name(record["id"]) != entry.name:
                raise StoreError(f"{meta_path} holds id {record.get('id')!r}, which does not belong in "
                                 f"folder {entry.name!r}; remove that folder and rerun its clip")
            ok[record["id"]] = record
        for entry in sorted(self.rejected_dir.glob("*.json")):
            if entry.name.startswith("."):
                continue
            try:
                record = _read_json(entry)
            except FileNotFoundError:  # removed by a writer that finished the clip meanwhile
                continue
            if record.get("id") not in ok:  # a finished clip wins (see write_clip)
                rejected[record["id"]] = record
        by_id = lambda records: [records[k] for k in sorted(records)]  # noqa: E731
        return by_id(ok), by_id(rejected), incomplete

    def finalize(self) -> dict:
        """Scan every finished and rejected clip (from all shards) and write ``store.json``.

        Returns the manifest: ``format``, ``format_version``, ``created_by``, ``finalized_at``,
        ``config``, ``summary`` (counts, hours, per-split/per-dataset totals, rejections by
        reason, bytes) and ``clips`` (one record per clip, finished and rejected, sorted by id).

        Several writers may finalize at any time: the scan and the write happen under the
        store's lock, so the manifest written last is never an older snapshot than one written
        before it (it lists every clip finished before its scan began).
        """
        with folder_lock(self.root / LOCK, what=f"the clip store {self.root}"):
            return self._finalize_locked()

    def _finalize_locked(self) -> dict:
        ok, rejected, incomplete = self._scan()
        if incomplete:
            warnings.warn(f"{len(incomplete)} clip folders under {self.clips_dir} have no {META} "
                          f"(e.g. {incomplete[0]!r}); they are left out of the manifest", stacklevel=3)
        from avlib import __version__

        def totals(records, key):
            out = {}
            for rec in records:
                group = out.setdefault(str(rec.get(key)), {"clips": 0, "frames": 0, "hours": 0.0})
                group["clips"] += 1
                group["frames"] += rec["n_frames"]
            for group in out.values():
                group["hours"] = group["frames"] / FPS / 3600
            return dict(sorted(out.items()))

        reasons: dict[str, int] = {}
        for rec in rejected:
            reasons[rec["reason"]] = reasons.get(rec["reason"], 0) + 1
        n_frames = sum(rec["n_frames"] for rec in ok)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_by": f"avlib {__version__}",
            "finalized_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": self.config,
            "summary": {
                "n_clips": len(ok),
                "n_rejected": len(rejected),
                "n_incomplete": len(incomplete),
                "n_frames": n_frames,
                "hours": n_frames / FPS / 3600,
                "splits": totals(ok, "split"),
                "datasets": totals(ok, "dataset"),
                "rejections": dict(sorted(reasons.items())),
                "image_bytes": sum(s["bytes"] for rec in ok for s in rec["streams"].values()),
            },
            "clips": sorted(ok + rejected, key=lambda rec: rec["id"]),
        }
        _write_text_atomic(self.root / MANIFEST, _dumps(manifest))
        return manifest


# ----------------------------------------------------------------------------- reader


class _LRU:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int):
        self.size = max(1, int(size))
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()  # outside the lock: slow I/O must not serialise other threads
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value


class ClipStore:
    """Read access to a finalized store: clip records, windows of frames, audio, features.

    Random window reads decode only the asked frames: the frame index of a stream is loaded
    once and cached (LRU), each read is one ``pread`` of the window's JPEG bytes; audio and
    features are memory-mapped. No file handle stays open, so a store object can be used from
    threads and DataLoader worker processes (fork or spawn; it pickles without its caches).

    Attributes:
        root: the store folder. manifest: the parsed ``store.json``.
        clips: records of the finished clips (sorted by id). rejected: records of rejected clips.

    ``check_unlisted`` (default) compares the clip folders with ``store.json`` when the store is
    opened (one directory listing) and warns when finished clips are missing from it: they were
    written after the last :meth:`StoreWriter.finalize` (:meth:`unlisted` names them).
    """

    def __init__(self, root, cache_size: int = 4096, check_unlisted: bool = True):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not self.root.is_dir():
            raise StoreError(f"no clip store at {self.root}: the folder does not exist; preprocess "
                             "clips into it first (`avlib preprocess`, or avlib.data.store.StoreWriter)")
        if not path.is_file():
            raise StoreError(f"{self.root} has no {MANIFEST}: the store was not finalized; run "
                             f"StoreWriter({str(self.root)!r}).finalize() or finish `avlib preprocess`")
        self.manifest = _read_json(path)
        found = (self.manifest.get("format"), self.manifest.get("format_version"))
        if found != (FORMAT, FORMAT_VERSION):
            raise StoreError(f"{path} is not a {FORMAT} v{FORMAT_VERSION} manifest (format, version = "
                             f"{found}); re-run the preprocessing with this avlib version")
        records = self.manifest.get("clips", [])
        self.clips = [rec for rec in records if rec.get("status") == "ok"]
        self.rejected = [rec for rec in records if rec.get("status") == "rejected"]
        self._by_id = {rec["id"]: rec for rec in self.clips}
        self._cache_size = int(cache_size)
        self._make_caches()
        if check_unlisted:
            missing = self.unlisted()
            if missing:
                warnings.warn(
                    f"{len(missing)} finished clips in {self.root} are not in {MANIFEST} (e.g. "
                    f"{missing[0]!r}): they were written after its last finalize(); run "
                    f"StoreWriter({str(self.root)!r}).finalize() (or rerun `avlib preprocess`) to "
                    "include them", stacklevel=2)

    def unlisted(self) -> list[str]:
        """Ids of the finished clips on disk that ``store.json`` does not list (sorted); such a
        clip was written after the last finalize, by this or another writer."""
        listed = {safe_name(rec["id"]) for rec in self.manifest.get("clips", []) if rec.get("id")}
        found = []
        try:
            entries = list(os.scandir(self.root / CLIPS_DIR))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name.startswith(".") or entry.name in listed or not entry.is_dir():
                continue
            if os.path.isfile(os.path.join(entry.path, META)):
                try:
                    found.append(id_from_safe_name(entry.name))
                except ValueError:
                    continue
        return sorted(found)

    def _make_caches(self) -> None:
        self._index_cache = _LRU(self._cache_size)
        # Memory maps hold no file descriptor, but each is a kernel mapping (limit ~65k per process).
        self._mmap_cache = _LRU(min(self._cache_size, 1024))

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_index_cache"], state["_mmap_cache"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._make_caches()

    def __len__(self) -> int:
        return len(self.clips)

    def __contains__(self, clip_id) -> bool:
        return clip_id in self._by_id

    def __repr__(self) -> str:
        return f"ClipStore({str(self.root)!r}: {len(self.clips)} clips, {len(self.rejected)} rejected)"

    @property
    def ids(self) -> list[str]:
        return [rec["id"] for rec in self.clips]

    # -- records
    def _record(self, clip_id: str) -> dict:
        try:
            return self._by_id[clip_id]
        except KeyError:
            rejected = next((r for r in self.rejected if r["id"] == clip_id), None)
            if rejected is not None:
                raise StoreError(f"clip {clip_id!r} was rejected ({rejected['reason']}: "
                                 f"{rejected.get('detail', '')}); pick ids from ClipStore.clips") from None
            raise StoreError(f"clip {clip_id!r} is not in the store at {self.root} "
                             f"({len(self.clips)} clips; see ClipStore.ids)") from None

    def clip_dir(self, clip_id: str) -> Path:
        return self.root / CLIPS_DIR / safe_name(clip_id)

    def select(self, split=None, dataset=None, speaker=None, min_frames: int = 0) -> list[dict]:
        """Finished clip records matching every given filter; each filter is a value or a
        collection of values (e.g. ``split=("train", "val")``)."""
        def matches(value, wanted) -> bool:
            if wanted is None:
                return True
            if isinstance(wanted, (list, tuple, set, frozenset)):
                return value in wanted
            return value == wanted

        return [rec for rec in self.clips
                if matches(rec.get("split"), split) and matches(rec.get("dataset"), dataset)
                and matches(rec.get("speaker"), speaker) and rec["n_frames"] >= min_frames]

    def n_frames(self, clip_id: str) -> int:
        return int(self._record(clip_id)["n_frames"])

    def meta(self, clip_id: str) -> dict:
        """The clip's full record (a copy): metadata, shapes of streams/features, face-track stats."""
        return copy.deepcopy(self._record(clip_id))

    # -- frames
    def _window(self, clip_id: str, start: int, length: int | None, what: str) -> tuple[int, int]:
        total = self.n_frames(clip_id)
        if int(start) != start or start < 0:
            raise ValueError(f"{what}: start must be a non-negative integer frame index, got {start!r}")
        start = int(start)
        if length is None:
            length = total - start
        if int(length) != length or length < 1:
            raise ValueError(f"{what}: length must be a positive number of frames, got {length!r}")
        length = int(length)
        if start + length > total:
            raise ValueError(f"{what}: window [{start}, {start + length}) runs past the end of clip "
                             f"{clip_id!r}, which has {total} frames (last valid start: {total - length})")
        return start, length

    def _load_npy(self, clip_id: str, relpath: str, mmap: bool) -> np.ndarray:
        """One ``.npy`` of a clip; a missing or damaged file is a StoreError naming the clip, the
        file and the remedy (not numpy's ``mmap length is greater than file size``)."""
        path = self.clip_dir(clip_id) / relpath
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise StoreError(f"clip {clip_id!r}: {path} is missing although {MANIFEST} lists it; the "
                             "store changed after finalize(): run finalize() again") from None
        except (ValueError, EOFError, OSError) as err:
            size = path.stat().st_size if path.exists() else 0
            raise StoreError(
                f"clip {clip_id!r}: {path} is damaged ({size} bytes; numpy: "
                f"{str(err).splitlines()[0] if str(err) else type(err).__name__}), probably cut short "
                f"by a full disk or an interrupted copy; delete the folder {self.clip_dir(clip_id)} "
                "and rerun the preprocessing with the same settings (it redoes missing clips)") from None

    def _offsets(self, clip_id: str, stream: str) -> np.ndarray:
        return self._index_cache.get((clip_id, stream),
                                     lambda: self._load_npy(clip_id, f"{stream}.idx.npy", mmap=False))

    def _stream_info(self, clip_id: str, stream: str) -> dict:
        streams = self._record(clip_id)["streams"]
        if stream not in streams:
            raise StoreError(f"clip {clip_id!r} has no stream {stream!r}; it has {sorted(streams)}")
        return streams[stream]

    def frames(self, clip_id: str, stream: str, start: int = 0, length: int | None = None) -> np.ndarray:
        """Frames ``start .. start + length - 1`` of a stream: uint8 ``(length, H, W, 3)`` in the
        stream's recorded order (``meta(clip_id)["streams"][stream]["order"]``) or ``(length, H, W)``
        for gray. ``length=None`` reads to the end. Decodes only those frames; a window past the
        end raises ValueError."""
        info = self._stream_info(clip_id, stream)
        start, length = self._window(clip_id, start, length, "frames")
        offsets = self._offsets(clip_id, stream)
        base = int(offsets[start])
        blob = _read_range(self.clip_dir(clip_id) / f"{stream}.jpg.bin", base, int(offsets[start + length]))
        view = memoryview(blob)
        shape = info["shape"]
        out = np.empty([length, *shape[1:]], np.uint8)
        order = info["order"]
        for i in range(length):
            a, b = int(offsets[start + i]) - base, int(offsets[start + i + 1]) - base
            image = cv2.imdecode(np.frombuffer(view[a:b], np.uint8), cv2.IMREAD_UNCHANGED)
            if image is None or image.shape != out.shape[1:]:
                raise StoreError(f"frame {start + i} of stream {stream!r} of clip {clip_id!r} does not "
                                 f"decode to {tuple(shape[1:])}; the clip is damaged: rerun its preprocessing")
            if order == "rgb":
                cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out[i])
            else:
                out[i] = image
        return out

    def jpeg_bytes(self, clip_id: str, stream: str, index: int) -> bytes:
        """The stored JPEG file of one frame, exactly as :meth:`export_jpeg_layout` writes it."""
        self._stream_info(clip_id, stream)
        start, _ = self._window(clip_id, index, 1, "jpeg_bytes")
        offsets = self._offsets(clip_id, stream)
        return _read_range(self.clip_dir(clip_id) / f"{stream}.jpg.bin", int(offsets[start]), int(offsets[start + 1]))

    # -- audio, features, landmarks
    def _mmap(self, clip_id: str, relpath: str) -> np.ndarray:
        return self._mmap_cache.get((clip_id, relpath), lambda: self._load_npy(clip_id, relpath, mmap=True))

    def audio(self, clip_id: str, start_frame: int = 0, n_frames: int | None = None, pad: bool = False) -> np.ndarray:
        """Audio of video frames ``start_frame .. start_frame + n_frames - 1``: float32 in [-1, 1],
        samples ``[640 start_frame, 640 (start_frame + n_frames))`` at 16 kHz.

        ``n_frames=None`` returns everything from ``start_frame`` to the end of the stored audio.
        A window past the end of the audio raises ValueError unless ``pad=True`` (zeros = silence).
        """
        if int(start_frame) != start_frame or start_frame < 0:
            raise ValueError(f"audio: start_frame must be a non-negative integer, got {start_frame!r}")
        self._record(clip_id)
        pcm = self._mmap(clip_id, AUDIO)
        a = SAMPLES_PER_FRAME * int(start_frame)
        if n_frames is None:
            if a > len(pcm) and not pad:
                raise ValueError(f"audio: start_frame {start_frame} lies past the end of clip {clip_id!r} "
                                 f"({len(pcm)} samples); use an earlier start_frame")
            b = max(a, len(pcm))
        else:
            if int(n_frames) != n_frames or n_frames < 1:
                raise ValueError(f"audio: n_frames must be a positive integer, got {n_frames!r}")
            b = a + SAMPLES_PER_FRAME * int(n_frames)
        if b > len(pcm) and not pad:
            raise ValueError(f"audio: samples [{a}, {b}) run past the end of clip {clip_id!r} "
                             f"({len(pcm)} samples = {len(pcm) / SAMPLES_PER_FRAME:.2f} frames); "
                             "use an earlier start_frame or pad=True")
        out = np.zeros(b - a, np.float32)
        part = pcm[a : min(b, len(pcm))]
        out[: len(part)] = part
        out *= np.float32(1.0 / 32768.0)
        return out

    def feature(self, clip_id: str, name: str) -> np.ndarray:
        """A precomputed feature as a read-only memory map, e.g. ``"wav2lip_mel"`` (80, 1 + N // 200);
        slice windows with :func:`avlib.audio.mel_window` (copies only the window)."""
        features = self._record(clip_id)["features"]
        if name not in features:
            raise StoreError(f"clip {clip_id!r} has no feature {name!r}; it has {sorted(features)}")
        return self._mmap(clip_id, f"{FEATURES_DIR}/{name}.npy")

    def landmarks(self, clip_id: str) -> np.ndarray | None:
        """float32 ``(T, K, 2)`` landmark pixels, or None when the clip was stored without them."""
        if self._record(clip_id).get("landmarks") is None:
            return None
        return self._load_npy(clip_id, LANDMARKS, mmap=False)

    # -- interoperability
    def _export_relpath(self, clip_id: str) -> Path:
        """Upstream's nested ``<id>/<clip>`` path when every part is a plain name, else the safe name."""
        parts = clip_id.split("/")
        if all(p and not p.startswith(".") and safe_name(p) == p for p in parts):
            return Path(*parts)
        return Path(safe_name(clip_id))

    def export_jpeg_layout(self, out, stream: str = "face96", clip_ids: Iterable[str] | None = None,
                           filelist_dir=None) -> int:
        """Write the per-frame layout of Wav2Lip / VocaLiST: ``<out>/<id>/<n>.jpg`` + ``audio.wav``.

        ``<id>`` is the clip id as nested folders (``6330311066473698535/00011``) when its parts
        are plain names, else :func:`safe_name`. Frames are the stored JPEG bytes unchanged (same
        pixels as :meth:`frames`; ``cv2.imread`` gives BGR as upstream expects); ``audio.wav`` is
        16 kHz PCM16 mono. With ``filelist_dir``, also writes ``<filelist_dir>/<split>.txt`` with
        one relative clip path per line (upstream's ``filelists/``). Each clip folder appears
        atomically and replaces an earlier export. Returns the number of clips exported.
        """
        out = Path(out)
        ids = self.ids if clip_ids is None else list(clip_ids)
        rels = {}
        for clip_id in ids:
            self._stream_info(clip_id, stream)  # fail before writing anything
            rels[clip_id] = self._export_relpath(clip_id)
        folders = {rel.as_posix(): cid for cid, rel in rels.items()}
        for cid, rel in rels.items():
            for parent in rel.parents:
                if parent.as_posix() in folders:  # one clip's folder would hold another clip
                    raise StoreError(f"clips {folders[parent.as_posix()]!r} and {cid!r} cannot both be "
                                     "exported: the first one's folder would contain the second; "
                                     "export them to different folders (clip_ids=...)")
        out.mkdir(parents=True, exist_ok=True)
        lists: dict[str, list[str]] = {}
        for clip_id, rel in rels.items():
            final = out / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(_temp_name(final.name))
            try:
                tmp.mkdir()
                offsets = self._offsets(clip_id, stream)
                blob = _read_range(self.clip_dir(clip_id) / f"{stream}.jpg.bin", 0, int(offsets[-1]))
                for n in range(len(offsets) - 1):
                    (tmp / f"{n}.jpg").write_bytes(blob[offsets[n] : offsets[n + 1]])
                # Through memory: libsndfile reports a full disk as a bare "System error".
                wav = io.BytesIO()
                sf.write(wav, np.asarray(self._mmap(clip_id, AUDIO)), SR, subtype="PCM_16", format="WAV")
                (tmp / "audio.wav").write_bytes(wav.getvalue())
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            lists.setdefault(str(self._by_id[clip_id].get("split")), []).append(rel.as_posix())
        if filelist_dir is not None:
            folder = Path(filelist_dir)
            folder.mkdir(parents=True, exist_ok=True)
            for split, paths in lists.items():
                _write_text_atomic(folder / f"{safe_name(split)}.txt", "".join(p + "\n" for p in paths))
        return len(rels)


# -- where a chapter finds its store


def find_store(artifacts_root=None, data_root=None) -> "ClipStore":
    """The store a chapter should read: ``data_root`` when it is a store folder, else the one the
    preprocessing chapter recorded (:func:`avlib.artifacts.find_current` of ``"store"``)."""
    if data_root and (Path(data_root) / MANIFEST).is_file():
        return ClipStore(data_root)
    if data_root:
        raise StoreError(f"no clip store under {artifacts_root}: {data_root} is not a clip store (no "
                         f"{MANIFEST}); preprocess it with `avlib preprocess --dataset ... --root ... "
                         "--out ...` and pass the output folder")
    try:
        folder = find_current(Path(artifacts_root or "."), "store", producer="01_preprocessing")
    except FileNotFoundError as err:
        raise StoreError(f"no clip store under {artifacts_root}: {err}") from None
    return ClipStore(folder)


def record_current(artifacts_root, store_root) -> None:
    """Remember ``store_root`` as the store later chapters of this profile read
    (:func:`avlib.artifacts.record_current` of ``"store"``)."""
    _record_product(artifacts_root, "store", store_root)
