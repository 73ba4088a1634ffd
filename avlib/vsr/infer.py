"""``avlib lipread``: which word is said in a video, from the lips alone (word-level lip reading).

What it does with a video (any frame rate; resampled to 25 fps by timestamps, as everywhere in the
book, :mod:`avlib.media`):

1. **Mouth crops**, exactly as the clip store's ``mouth96`` stream that the readers were trained
   on (:mod:`avlib.data.preprocess`, with its default settings except ``max_missing``, see
   :data:`MAX_MISSING`): BlazeFace on every frame, the speaker's face track
   (:func:`avlib.data.tracking.track_faces`), the face mesh on the tracked face
   (:func:`avlib.data.tracking.mesh_landmarks`), and SyncVSR's 112 x 96 mouth box scaled by the
   face size and centre-cropped to 96 x 96 gray (:func:`avlib.data.preprocess.make_crops`).
2. **A word clip** (at most :data:`WORD_MAX_FRAMES` = 35 frames, LRW's 29 plus a little) is one
   input: centre-cropped or edge-padded to 29 frames. No word duration is known (LRW's ``.txt``
   gives it; a user's clip does not), so the **word boundary** marks the clip's own frames:
   all 29 for a clip of 29 frames or more (:func:`avlib.vsr.data.word_boundary` of None), the
   clip's ``n`` frames centred in the 29 for a shorter one (the padding is not the word). The
   result is the ``top`` most probable words (softmax over the reader's classes).
3. **A longer video** is read by a sliding window of 29 frames every ``hop`` frames (default 5,
   0.2 s), each window a word clip whose boundary is all ones; the last window is aligned with
   the video's end when the hop does not land there, so the whole video is covered. Each window
   gives its start, end and centre time (seconds; frame ``k`` lasts from ``k / 25`` to
   ``(k + 1) / 25``), the top word, its probability, the ``top`` list and ``face``: the share of
   its frames with a tracked face and mesh (a window below 0.5 mostly shows no face and its word
   means nothing). A lip reader trained on isolated LRW-style words answers *some* word for
   every window, also between words: read the sequence of confident windows, not each one.

Bounded memory: a video whose decoded frames fit in :data:`HOLD_BYTES` is decoded once and held;
a longer one is decoded three times, :data:`CHUNK` frames at a time (faces; mesh; crops), and only
the detections, the landmarks (7.5 kB a frame) and the 96 x 96 crops (9 kB a frame) are kept. The
crops equal those of one pass over the whole video (the face-size smoothing sees its neighbours
across chunk borders; missing mesh frames are interpolated over the whole video).

Readers (``--model``; :data:`READERS`, a table a later model joins):

* ``syncvsr``: :class:`avlib.models.SyncVSR`. Weights (``--weights``, else the environment variable
  :data:`ENV_WEIGHTS`, else the default product): a book checkpoint (the ``.json`` of a
  ``.json``/``.safetensors`` pair, whose config carries the word list), a training product's
  folder (``<artifacts>/vsr_<name>/<key>/``, or ``<artifacts>/vsr_<name>/``: its newest complete
  product), or SyncVSR's official Lightning ``.ckpt`` (``LRW_CKPT_epoch_167_step_213864.ckpt``,
  loaded safely by :func:`avlib.checkpoints.load_official`), which holds no word list: pass
  ``--words FILE``, one word per line in class order (LRW's order is its 500 folder names
  sorted). The **default** is chapter 06's ``vsr_lam10_f100`` product of the ``cpu`` profile
  under the artifacts root (:func:`avlib.artifacts.resolve_artifacts_root`:
  ``$AVLIB_ARTIFACTS`` or ``_build/artifacts/cpu/``), made by ``make run ONLY=06_syncvsr``.

The reader is fed the 96 x 96 crops resized (area interpolation) to the size it was trained on,
``SyncVSRConfig.input_size`` (96 official), as :func:`avlib.vsr.data.load_words` resizes them.
Nothing is written: the command prints. Errors are one line with an exit code
(:mod:`avlib.cli`): 2 for options (unknown model, no weights, ``--words`` missing or of the
wrong length), 3 for inputs (missing, unreadable or damaged video, no face, fewer than
:data:`MIN_FRAMES` frames, weights that are not a lip reader).

Command line::

    avlib lipread VIDEO [--weights FILE_OR_FOLDER] [--words FILE] [--top 5] [--model syncvsr]
                  [--hop FRAMES] [--device cpu|cuda] [--json] [--no-progress]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avlib import media
from avlib.artifacts import is_complete, resolve_artifacts_root
from avlib.audio import FPS
from avlib.checkpoints import (
    CheckpointMismatch,
    identify_state_dict,
    load_checkpoint,
    load_official,
    read_checkpoint_info,
    read_official,
)
from avlib.cli import EXIT_INPUT, EXIT_OK, EXIT_USAGE, torch_device
from avlib.data.preprocess import PreprocessConfig, make_crops, make_detector
from avlib.data.tracking import (
    MISSING,
    ClipRejected,
    _interpolate_missing,
    detect_faces,
    mesh_landmarks,
    track_faces,
)
from avlib.faces import FaceMesher
from avlib.progress import progress_bar
from avlib.vsr.data import LRW_FRAMES, _fit_length, augment, word_boundary

__all__ = [
    "ENV_WEIGHTS",
    "DEFAULT_PROFILE",
    "WORD_MAX_FRAMES",
    "MIN_FRAMES",
    "DEFAULT_HOP",
    "DEFAULT_TOP",
    "MAX_MISSING",
    "READERS",
    "Reader",
    "LipreadError",
    "read_words",
    "default_weights",
    "mouth_crops",
    "window_starts",
    "load_reader",
    "lipread",
    "add_arguments",
    "main_from_args",
]

#: Environment variable naming the default weights (before the default product).
ENV_WEIGHTS = "AVLIB_VSR_WEIGHTS"
#: Profile whose artifacts hold the default reader.
DEFAULT_PROFILE = "cpu"
#: Longest video read as one word clip (LRW's 29 frames and a little); longer ones are windowed.
WORD_MAX_FRAMES = 35
#: Shortest usable video (the preprocessing's ``min_frames``: 0.2 s).
MIN_FRAMES = 5
#: Frames between the starts of two windows of a long video (0.2 s).
DEFAULT_HOP = 5
#: Words listed per clip or window.
DEFAULT_TOP = 5
#: Largest share of frames without a (detected or bridged) face, or without mesh landmarks,
#: accepted (the preprocessing's default is 0.2 for training clips; a long video may leave the
#: face for a while). A face must still be *detected* on half of the frames.
MAX_MISSING = 0.5
#: Decoded frames of one video held at once (above it the video is decoded in chunks).
HOLD_BYTES = 256 * 2**20
#: Frames per chunk when streaming.
CHUNK = 32
#: Windows per forward pass.
BATCH = 16
#: Side of the mouth crops fed to the reader.
CROP = 96


class LipreadError(Exception):
    """Lip reading cannot run on this input or with these options; the message says why and
    what to do. ``exit_code`` is its command-line class (:mod:`avlib.cli`): an input problem
    unless said otherwise."""

    def __init__(self, message: str, exit_code: int = EXIT_INPUT):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        return (type(self), (str(self), self.exit_code))


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reader:
    """A kind of lip reader the command knows (a row of :data:`READERS`).

    Attributes:
        name: the ``--model`` value.
        title: what it is, for messages.
        registry_name: ``config["name"]`` of its book checkpoints.
        product: the default product's name under the artifacts root.
        producer: the chapter that makes that product.
        load: ``(path, words, origin) -> (model, description)`` for a file (book checkpoint
            ``.json`` or an official file), raising :class:`LipreadError`.
        logits: ``(model, video uint8 (B, T, S, S), boundary (B, T)) -> (B, C)`` word logits.
        vocabulary: ``model -> tuple of words`` (empty when unknown).
        with_vocabulary: ``(model, words) -> model`` naming its classes.
    """

    name: str
    title: str
    registry_name: str
    product: str
    producer: str
    load: Callable
    logits: Callable
    vocabulary: Callable
    with_vocabulary: Callable


def _syncvsr_class():
    from avlib.models import SyncVSR

    return SyncVSR


def _syncvsr_logits(net, video: torch.Tensor, boundary: torch.Tensor) -> torch.Tensor:
    param = next(net.parameters())
    size = int(getattr(getattr(net, "cfg", None), "input_size", CROP) or CROP)
    if size != video.shape[-1]:  # the reader's training size (SyncVSRConfig.input_size)
        video = F.interpolate(video.float(), size=(size, size), mode="area").round().to(torch.uint8)
    x = augment(video, train=False).to(device=param.device, dtype=param.dtype)
    return net(x, boundary.to(device=param.device, dtype=param.dtype))[0].float()


def _syncvsr_vocabulary(net) -> tuple[str, ...]:
    return tuple(getattr(getattr(net, "cfg", None), "vocabulary", ()) or ())


def _syncvsr_with_vocabulary(net, words: Sequence[str]):
    words = tuple(words)
    if len(words) != net.cfg.n_classes:
        raise LipreadError(f"the word list has {len(words)} words but the reader has "
                           f"{net.cfg.n_classes} classes: give one word per class, in class "
                           "order", EXIT_USAGE)
    net.cfg = dataclasses.replace(net.cfg, vocabulary=words)
    net.config["kwargs"]["vocabulary"] = list(words)
    return net


def _classes_in(raw) -> int | None:
    """Rows of SyncVSR's word classifier in a loaded official checkpoint, or None."""
    stack = [raw]
    while stack:
        obj = stack.pop()
        if not isinstance(obj, Mapping):
            continue
        for key, value in obj.items():
            if isinstance(value, torch.Tensor):
                if str(key).endswith("category_classifier.weight") and value.dim() == 2:
                    return int(value.shape[0])
            elif isinstance(value, Mapping):
                stack.append(value)
    return None


def _first_problem(err: Exception) -> str:
    """The first offending key of a :class:`CheckpointMismatch` (its message lists several)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    line = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
    parts = line.split("; ")
    return parts[0] + ("; ..." if len(parts) > 1 else "")


def _load_syncvsr(path: Path, words, origin: str):
    SyncVSR = _syncvsr_class()
    if path.suffix in (".json", ".safetensors"):
        json_path = path.with_suffix(".json")
        try:
            info = read_checkpoint_info(json_path)
        except FileNotFoundError:
            raise LipreadError(f"checkpoint description not found: {json_path}{origin}; a book "
                               "checkpoint is a pair <name>.json + <name>.safetensors") from None
        except ValueError as err:
            raise LipreadError(f"{json_path}{origin} is not a book checkpoint: {err}") from None
        name = info.get("config", {}).get("name")
        if name != SyncVSR.registry_name:
            raise LipreadError(f"{json_path}{origin} holds a {name!r} model, not SyncVSR's word "
                               "lip reader ('syncvsr'); pass the .json of a chapter-06 reader")
        if not path.with_suffix(".safetensors").is_file():
            raise LipreadError(f"checkpoint tensors not found: {path.with_suffix('.safetensors')}"
                               f"{origin} (next to {json_path.name})")
        try:
            net, config = load_checkpoint(json_path)
        except CheckpointMismatch as err:
            raise LipreadError(f"{json_path}{origin} cannot be loaded: "
                               f"{_first_problem(err)}") from None
        if words is not None:
            _syncvsr_with_vocabulary(net, words)
        kwargs = config.get("kwargs", {})
        shown = {k: kwargs[k] for k in ("n_classes", "depth", "widths") if k in kwargs}
        what = "book checkpoint, SyncVSR(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"
        return net, json_path, what
    # An official file: SyncVSR's Lightning .ckpt (or its state dict).
    if not path.is_file():
        raise LipreadError(f"lip-reader weights not found: {path}{origin}")
    if words is None and path.suffix == ".ckpt":
        raise LipreadError(_words_needed(path, origin), EXIT_USAGE)
    raw = read_official(path)  # unsafe / corrupt files raise with exit code 3
    n_classes = _classes_in(raw)
    if n_classes is None:
        found = identify_state_dict(raw)
        what = f"holds {found}" if found else "holds no SyncVSR network (no category_classifier)"
        raise LipreadError(f"{path}{origin} {what}, not SyncVSR's word lip reader; pass a "
                           "chapter-06 checkpoint or SyncVSR's official .ckpt")
    if words is None:
        raise LipreadError(_words_needed(path, origin), EXIT_USAGE)
    if len(words) != n_classes:
        raise LipreadError(f"the word list has {len(words)} words but {path} has {n_classes} "
                           "classes: give one word per class, in class order (LRW: its 500 "
                           "folder names sorted)", EXIT_USAGE)
    net = SyncVSR(n_classes=n_classes, vocabulary=tuple(words))
    try:
        report = load_official(net, raw)
    except CheckpointMismatch as err:
        raise LipreadError(f"{path}{origin} is not an official-size SyncVSR: "
                           f"{_first_problem(err)}") from None
    skipped = f", {len(report.skipped)} tokenizer keys skipped" if report.skipped else ""
    return net.eval(), path, f"official SyncVSR format{skipped}"


def _words_needed(path: Path, origin: str) -> str:
    return (f"{path}{origin} is an official SyncVSR checkpoint, which holds no word list: pass "
            "--words FILE, one word per line in class order (LRW: its 500 folder names sorted)")


#: ``--model`` -> :class:`Reader`.
READERS: dict[str, Reader] = {
    "syncvsr": Reader(
        name="syncvsr", title="SyncVSR's word lip reader", registry_name="syncvsr",
        product="vsr_lam10_f100", producer="06_syncvsr", load=_load_syncvsr,
        logits=_syncvsr_logits, vocabulary=_syncvsr_vocabulary,
        with_vocabulary=_syncvsr_with_vocabulary),
}


def _reader(model: str) -> Reader:
    if model not in READERS:
        raise LipreadError(f"unknown lip-reading model {model!r}; known: "
                           f"{', '.join(sorted(READERS))}", EXIT_USAGE)
    return READERS[model]


def _reader_of(net) -> Reader:
    for reader in READERS.values():
        if getattr(net, "registry_name", None) == reader.registry_name:
            return reader
    raise LipreadError(f"a {type(net).__name__} object is not a lip reader this command knows "
                       f"({', '.join(sorted(READERS))})", EXIT_USAGE)


# ---------------------------------------------------------------------------------------------
# weights and words
# ---------------------------------------------------------------------------------------------
def read_words(path: str | os.PathLike) -> tuple[str, ...]:
    """The words of a word-list file: one per line, in class order (blank lines skipped).
    Raises :class:`LipreadError` when it is missing, unreadable, empty or repeats a word."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "not found"
        raise LipreadError(f"word list {path}: {what}; give a text file, one word per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LipreadError(f"word list {path} is not UTF-8 text; give a text file, one word "
                           "per line") from None
    words = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not words:
        raise LipreadError(f"word list {path} holds no word")
    seen: set[str] = set()
    repeated = sorted({w for w in words if w in seen or seen.add(w)})
    if repeated:
        raise LipreadError(f"word list {path} repeats {', '.join(repeated[:5])}: each class "
                           "needs its own word")
    return words


def _products(folder: Path) -> list[Path]:
    """Complete product folders (``<key>/`` with ``artifact.json``) under a product name."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
             and is_complete(p)]
    return sorted(found, key=lambda p: ((p / "artifact.json").stat().st_mtime, p.name))


def default_weights(model: str = "syncvsr", profile: str = DEFAULT_PROFILE) -> Path:
    """The newest complete default product of ``model`` under the profile's artifacts root
    (``$AVLIB_ARTIFACTS`` or ``_build/artifacts/<profile>/``), e.g.
    ``_build/artifacts/cpu/vsr_lam10_f100/<key>/``. Raises :class:`LipreadError` (exit 2)
    saying how to make it when there is none."""
    reader = _reader(model)
    folder = resolve_artifacts_root(None, profile) / reader.product
    found = _products(folder)
    if not found:
        raise LipreadError(
            f"no --weights given and no default lip reader: {folder} holds no trained "
            f"{reader.product!r} product. Make it with `make run ONLY={reader.producer}` (chapter "
            f"{reader.producer[:2]}, {profile} profile), or pass --weights FILE (a chapter-06 "
            "checkpoint .json or product folder, or SyncVSR's official .ckpt with --words) or "
            f"set {ENV_WEIGHTS}", EXIT_USAGE)
    return found[-1]


def _checkpoint_in(folder: Path, reader: Reader, origin: str) -> Path:
    """The one checkpoint (``.json``) of ``reader``'s kind in a product folder; a product name
    folder (holding ``<key>/`` products) gives its newest complete product's."""
    found = []
    for candidate in sorted(folder.glob("*.json")):
        try:
            name = read_checkpoint_info(candidate).get("config", {}).get("name")
        except (ValueError, OSError):
            continue  # artifact.json, history.json, ...: not checkpoints
        if name == reader.registry_name:
            found.append(candidate)
    if not found:
        products = _products(folder)
        if products:
            return _checkpoint_in(products[-1], reader, origin)
        raise LipreadError(f"{folder}{origin} holds no {reader.title} checkpoint (a .json/"
                           f".safetensors pair of a {reader.registry_name!r} model); pass its "
                           ".json or a chapter-06 product folder")
    if len(found) > 1:
        raise LipreadError(f"{folder}{origin} holds several {reader.registry_name} checkpoints "
                           f"({', '.join(p.name for p in found)}); pass the .json of one")
    return found[0]


def _load(weights, words, model: str) -> tuple[torch.nn.Module, str]:
    reader = _reader(model)
    if isinstance(words, (str, os.PathLike)):
        words = read_words(words)
    elif words is not None:
        words = tuple(str(w) for w in words)
    if weights is not None and str(weights).strip():
        path, origin = Path(weights).expanduser(), ""
    elif os.environ.get(ENV_WEIGHTS, "").strip():
        path, origin = Path(os.environ[ENV_WEIGHTS]).expanduser(), f" (from ${ENV_WEIGHTS})"
    else:
        path, origin = default_weights(model), " (the default product)"
    if path.is_dir():
        path = _checkpoint_in(path, reader, origin)
    elif path.suffix == "" and Path(f"{path}.json").is_file():
        path = Path(f"{path}.json")
    elif not path.exists():
        raise LipreadError(f"lip-reader weights not found: {path}{origin}")
    net, shown, what = reader.load(path, words, origin)
    if not reader.vocabulary(net):
        raise LipreadError(f"{shown}{origin} has no word list: pass --words FILE, one word per "
                           "line in class order", EXIT_USAGE)
    n_params = sum(p.numel() for p in net.parameters())
    return net.eval(), f"{shown} ({what}, {n_params:,} parameters)"


def _device(device) -> torch.device:
    return torch_device(device, LipreadError)


def load_reader(weights=None, words=None, device: str | torch.device = "cpu", *,
                model: str = "syncvsr") -> torch.nn.Module:
    """The lip reader, in eval mode on ``device``, its classes named (``net.cfg.vocabulary``).

    Args:
        weights: a book checkpoint (``<name>.json``/``.safetensors``/``<name>``), a product
            folder (``<artifacts>/vsr_<name>/<key>/`` or ``<artifacts>/vsr_<name>/``), or
            SyncVSR's official ``.ckpt``; None: ``$AVLIB_VSR_WEIGHTS``, else the default
            product (:func:`default_weights`).
        words: a word-list file or a sequence of words, in class order: required for official
            files, else it replaces the checkpoint's list (same count).
        device: torch device.
        model: a key of :data:`READERS`.

    Raises :class:`LipreadError`: exit code 2 (no weights, ``words`` missing or of the wrong
    length, unknown model or device) or 3 (a file that is not such a reader).
    """
    dev = _device(device)
    net, _ = _load(weights, words, model)
    return net.to(dev)


# ---------------------------------------------------------------------------------------------
# video -> mouth crops
# ---------------------------------------------------------------------------------------------
class _Frames:
    """A video's 25 fps RGB frames, held when small, else decoded again on every pass."""

    def __init__(self, path: Path, cfg: PreprocessConfig):
        if not path.exists():
            raise LipreadError(f"video not found: {path}")
        if path.is_dir():
            raise LipreadError(f"{path} is a folder; give a video file")
        info = media.probe(path)  # MediaError: not media, damaged, truncated
        if not info.has_video:
            raise LipreadError(f"{path} has no video stream: lip reading needs a video of the "
                               "speaker's face")
        self.path, self.cfg = path, cfg
        self.count = max(0, math.ceil((info.video_duration - 1e-4) * FPS))
        self.frames = None
        if self.count * info.width * info.height * 3 <= HOLD_BYTES:
            self.frames, _ = media.read_video(path, FPS, max_pixels=cfg.max_pixels,
                                              max_side=cfg.max_side, max_bytes=None)
            self.count = len(self.frames)

    def chunks(self, size: int = CHUNK):
        """``(start, frames (n, H, W, 3))`` in order."""
        if self.frames is not None:
            yield 0, self.frames
            return
        buffer, start, seen = [], 0, 0
        for index, frame in media.iter_video(self.path, FPS, max_pixels=self.cfg.max_pixels,
                                             max_side=self.cfg.max_side):
            buffer.append(frame)
            seen = index + 1
            if len(buffer) == size:
                yield start, np.stack(buffer)
                start, buffer = start + len(buffer), []
        if buffer:
            yield start, np.stack(buffer)
        if seen != self.count:
            raise LipreadError(f"{self.path}: decoding gave {seen} frames, the header "
                               f"declares {self.count}; is the file complete?")


def _slice_track(track, a: int, b: int):
    return dataclasses.replace(track, raw=track.raw[a:b], boxes=track.boxes[a:b],
                               syncnet=track.syncnet[a:b], state=track.state[a:b])


def mouth_crops(video: str | os.PathLike, *, progress: bool = False,
                cfg: PreprocessConfig | None = None) -> tuple[np.ndarray, dict]:
    """The ``mouth96`` crops of every 25 fps frame of ``video`` (the clip store's chain).

    Returns uint8 (T, 96, 96) gray crops and ``{"frames", "size", "face"}``, ``face`` bool (T,)
    being the frames with a tracked face and mesh landmarks. ``progress``: a bar over the three
    passes when the video is longer than a word clip. Raises :class:`LipreadError` (no
    face, fewer than :data:`MIN_FRAMES` frames) or :class:`avlib.media.MediaError`.
    """
    path = Path(video)
    cfg = cfg or PreprocessConfig(crops=("mouth96",), features=(), max_missing=MAX_MISSING)
    source = _Frames(path, cfg)
    n = source.count
    if n < MIN_FRAMES:
        raise LipreadError(f"{path}: {n} frame{'s' if n != 1 else ''} at 25 fps "
                           f"({n / FPS:.2f} s); lip reading needs at least {MIN_FRAMES} "
                           f"({MIN_FRAMES / FPS:.1f} s)")
    # A word clip takes a second: bars only on longer videos.
    bars = {"total": 3 * n, "desc": "mouths", "unit": "frame", "leave": False,
            "disable": not progress or n <= WORD_MAX_FRAMES}
    with progress_bar(**bars) as bar:
        detections, size = [], None
        with make_detector(cfg) as detector:
            for _, frames in source.chunks():
                size = (frames.shape[2], frames.shape[1])
                detections.extend(detect_faces(frames, detector))
                bar.update(len(frames))
        n = len(detections)
        try:
            track = track_faces(detections, size, cfg)
        except ClipRejected as err:
            raise LipreadError(f"{path}: no usable face ({err.detail}); lip reading needs the "
                               "speaker's face, roughly frontal, on most frames") from None
        whole = track.stats["n_faces_max"] <= 1
        marks = np.zeros((n, 468, 2))
        found = np.zeros(n, bool)
        with FaceMesher(static_image_mode=False) as mesher:
            for start, frames in source.chunks():
                b = start + len(frames)
                marks[start:b], found[start:b] = mesh_landmarks(
                    frames, _slice_track(track, start, b), mesher, whole_frame=whole)
                bar.update(len(frames))
        if not found.any():
            raise LipreadError(f"{path}: the face mesh found the tracked face on no frame; lip "
                               "reading needs the speaker's face, roughly frontal")
        if n - found.sum() > cfg.max_missing * n:
            raise LipreadError(f"{path}: the face mesh failed on {n - int(found.sum())} of {n} "
                               "frames; lip reading needs the face on most frames")
        marks = _interpolate_missing(marks, found)  # across chunk borders too
        crops = np.zeros((n, CROP, CROP), np.uint8)
        margin = cfg.smooth_window // 2
        tail = np.zeros((0,) + (size[1], size[0], 3), np.uint8)
        pending = None

        def emit(start, frames, left, right):
            full = np.concatenate([left, frames, right])
            a = start - len(left)
            made = make_crops(full, _slice_track(track, a, a + len(full)),
                              marks[a:a + len(full)], cfg)["mouth96"]
            crops[start:start + len(frames)] = made[len(left):len(left) + len(frames)]
            bar.update(len(frames))

        for start, frames in source.chunks():
            if pending is not None:
                emit(*pending, tail, frames[:margin])
                tail = np.concatenate([tail, pending[1]])[-margin:] if margin else tail[:0]
            pending = (start, frames)
        emit(*pending, tail, tail[:0])
    face = (track.state != MISSING) & found
    return crops, {"frames": n, "size": size, "face": face}


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _check_int(value, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise LipreadError(f"{what} must be a whole number >= {low}, got {value!r}", EXIT_USAGE)
    return int(value)


def _top(probs: torch.Tensor, vocabulary: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    values, index = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [[(vocabulary[int(i)], float(p)) for p, i in zip(vs, ix)]
            for vs, ix in zip(values.tolist(), index.tolist())]


def window_starts(n_frames: int, hop: int = DEFAULT_HOP, length: int = LRW_FRAMES) -> list[int]:
    """First frames of the sliding windows over ``n_frames``: every ``hop`` frames, plus one
    aligned with the end when the hop does not land there."""
    if n_frames < length:
        return [0]
    starts = list(range(0, n_frames - length + 1, hop))
    if starts[-1] != n_frames - length:
        starts.append(n_frames - length)
    return starts


def lipread(video: str | os.PathLike, net: torch.nn.Module | None = None, *, weights=None,
            words=None, top: int = DEFAULT_TOP, hop: int = DEFAULT_HOP,
            device: str | torch.device = "cpu", progress: bool = True,
            model: str | None = None) -> dict:
    """Read the words of ``video`` from the lips.

    Args:
        video: any video (resampled to 25 fps) showing the speaker's face.
        net: a loaded reader (e.g. :func:`load_reader`); None loads ``weights``.
        weights, words, model: what :func:`load_reader` takes (``words`` also renames a given
            ``net``'s classes); ``model`` defaults to ``"syncvsr"`` (or ``net``'s kind).
        top: words listed per clip or window.
        hop: frames between windows of a long video.
        device: torch device of the reader.
        progress: progress bars on long videos (:mod:`avlib.progress`).

    Returns, for a clip of at most :data:`WORD_MAX_FRAMES` frames,
    ``{"mode": "word", "frames": n, "top": [(word, p), ...]}`` (most probable first), and for a
    longer video ``{"mode": "windows", "frames": n, "windows": [{"start", "end", "centre"
    (seconds), "word", "p", "top", "face"}, ...]}`` (see the module docstring).
    Raises :class:`LipreadError`, :class:`avlib.media.MediaError`.
    """
    top = _check_int(top, "top")
    hop = _check_int(hop, "hop")
    dev = _device(device)
    if net is None:
        reader = _reader(model or "syncvsr")
        net, _ = _load(weights, words, reader.name)
    else:
        reader = _reader_of(net) if model is None else _reader(model)
        if words is not None:
            words = read_words(words) if isinstance(words, (str, os.PathLike)) else tuple(words)
            reader.with_vocabulary(net, words)
    vocabulary = reader.vocabulary(net)
    if not vocabulary:
        raise LipreadError("the reader has no word list: pass words (a file, one word per line "
                           "in class order)", EXIT_USAGE)
    net = net.to(dev)
    crops, info = mouth_crops(video, progress=progress)
    n = info["frames"]
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            if n <= WORD_MAX_FRAMES:
                clip = torch.from_numpy(np.ascontiguousarray(_fit_length(crops, LRW_FRAMES)))
                boundary = word_boundary(None if n >= LRW_FRAMES else n / FPS, LRW_FRAMES)
                logits = reader.logits(net, clip[None], torch.from_numpy(boundary)[None])
                probs = torch.softmax(logits.float().cpu(), dim=-1)
                return {"mode": "word", "frames": n, "top": _top(probs, vocabulary, top)[0]}
            windows = []
            starts = window_starts(n, hop)
            boundary = torch.from_numpy(word_boundary(None, LRW_FRAMES))
            with progress_bar(total=len(starts), desc="lipread", unit="window",
                              disable=not progress, leave=False) as bar:
                for b0 in range(0, len(starts), BATCH):
                    batch = starts[b0:b0 + BATCH]
                    clips = torch.from_numpy(np.stack([crops[s:s + LRW_FRAMES] for s in batch]))
                    logits = reader.logits(net, clips, boundary.expand(len(batch), -1))
                    probs = torch.softmax(logits.float().cpu(), dim=-1)
                    for s, best in zip(batch, _top(probs, vocabulary, top)):
                        windows.append({
                            "start": s / FPS, "end": (s + LRW_FRAMES) / FPS,
                            "centre": (s + LRW_FRAMES / 2) / FPS, "word": best[0][0],
                            "p": best[0][1], "top": best,
                            "face": float(info["face"][s:s + LRW_FRAMES].mean())})
                    bar.update(len(batch))
            return {"mode": "windows", "frames": n, "windows": windows}
    finally:
        net.train(was_training)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``avlib lipread VIDEO [...]``."""
    parser.add_argument("video", help="a video of the speaker's face (any frame rate): a word "
                        f"clip (<= {WORD_MAX_FRAMES} frames at 25 fps) or a longer video")
    parser.add_argument("--weights", default=None,
                        help="a chapter-06 checkpoint (.json of a .json/.safetensors pair) or "
                             "product folder, or SyncVSR's official .ckpt (with --words); "
                             f"default ${ENV_WEIGHTS}, else the cpu profile's "
                             f"{READERS['syncvsr'].product} product")
    parser.add_argument("--words", default=None,
                        help="word list, one word per line in class order (required for an "
                             "official .ckpt; LRW: its 500 folder names sorted)")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP,
                        help=f"words listed per clip or window (default {DEFAULT_TOP})")
    parser.add_argument("--model", choices=tuple(READERS), default="syncvsr",
                        help="the lip reader (default syncvsr)")
    parser.add_argument("--hop", type=int, default=DEFAULT_HOP,
                        help=f"frames between windows of a long video (default {DEFAULT_HOP})")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:N")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``avlib lipread``. Errors are raised and turned into one line on stderr and an exit
    code by :func:`avlib.cli.run_command` (2 usage, 3 input, 5 interrupted)."""
    top = _check_int(args.top, "--top")
    hop = _check_int(args.hop, "--hop")
    dev = _device(args.device)
    net, described = _load(args.weights, args.words, args.model)
    # With --json, stdout carries the JSON alone: bars go to stderr.
    redirect = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with redirect:
        result = lipread(args.video, net, top=top, hop=hop, device=dev,
                         progress=not args.no_progress, model=args.model)
    if args.json:
        print(json.dumps({"video": str(args.video), "weights": described, **result}))
        return EXIT_OK
    n = result["frames"]
    print(f"video      {args.video}: {n} frames ({n / FPS:.2f} s at 25 fps)")
    print(f"weights    {described}")
    if result["mode"] == "word":
        shown = (f"{n} frames, centre-cropped to {LRW_FRAMES}" if n > LRW_FRAMES else
                 f"{n} frames, padded to {LRW_FRAMES}" if n < LRW_FRAMES else f"{n} frames")
        print(f"word clip  {shown}; word boundary: the clip's frames (no duration known)")
        for rank, (word, p) in enumerate(result["top"], 1):
            print(f"{rank:>4}  {word:<16} {p:.3f}")
        return EXIT_OK
    print(f"windows    {len(result['windows'])} of {LRW_FRAMES} frames every {hop} frames")
    print(f"{'centre_s':>8}  {'word':<16} {'p':>5}")
    for w in result["windows"]:
        note = "  (no face)" if w["face"] < 0.5 else ""
        print(f"{w['centre']:8.2f}  {w['word']:<16} {w['p']:5.3f}{note}")
    return EXIT_OK
