"""``avlib lipread``: which word is said in a video, from the lips (word-level lip reading), and
for MMAB optionally from the lips and the sound together.

What it does with a video (any frame rate; resampled to 25 fps by timestamps, as everywhere in the
book, :mod:`avlib.media`):

1. **Mouth crops**, exactly as the clip store's crop stream that the reader was trained on
   (:mod:`avlib.data.preprocess`, with its default settings except ``max_missing``, see
   :data:`MAX_MISSING`): BlazeFace on every frame, the speaker's face track
   (:func:`avlib.data.tracking.track_faces`), the face mesh on the tracked face
   (:func:`avlib.data.tracking.mesh_landmarks`), then the reader's crop
   (:func:`avlib.data.preprocess.make_crops`): SyncVSR's ``mouth96`` (its 112 x 96 mouth box
   scaled by the face size and centre-cropped to 96 x 96 gray) or MMAB's ``vcagan112`` (the face
   aligned to a reference by a similarity transform, the 136 x 136 mouth box resized to 112 x 112
   gray, :func:`avlib.data.crops.crop_vcagan112`).
2. **A word clip** (at most :data:`WORD_MAX_FRAMES` = 35 frames, LRW's 29 plus a little) is one
   input: centre-cropped or edge-padded to 29 frames. No word duration is known (LRW's ``.txt``
   gives it; a user's clip does not), so SyncVSR's **word boundary** marks the clip's own
   frames: all 29 for a clip of 29 frames or more (:func:`avlib.vsr.data.word_boundary` of
   None), the clip's ``n`` frames centred in the 29 for a shorter one (the padding is not the
   word); MMAB takes no boundary. The result is the ``top`` most probable words (softmax over the
   reader's classes).
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
the detections, the landmarks (7.5 kB a frame) and the crops (9 kB a frame at 96 x 96, 12.5 kB at
112 x 112) are kept. The crops equal those of one pass over the whole video (the face-size
smoothing sees its neighbours across chunk borders; missing mesh frames are interpolated over the
whole video). With ``--audio`` the audio is held too (64 kB a second).

Readers (``--model``; :data:`READERS`):

* ``syncvsr`` (default): :class:`avlib.models.SyncVSR`, the lips alone. Weights (``--weights``,
  else the environment variable :data:`ENV_WEIGHTS`, else the default product): a book
  checkpoint (the ``.json`` of a ``.json``/``.safetensors`` pair, whose config carries the word
  list), a training product's folder (``<artifacts>/vsr_<name>/<key>/``, or
  ``<artifacts>/vsr_<name>/``: its newest complete product), or SyncVSR's official Lightning
  ``.ckpt`` (``LRW_CKPT_epoch_167_step_213864.ckpt``, loaded safely by
  :func:`avlib.checkpoints.load_official`), which holds no word list: pass ``--words FILE``, one
  word per line in class order (LRW's order is its 500 folder names sorted). The **default** is
  chapter 06's ``vsr_lam10_f100`` product of the ``cpu`` profile under the artifacts root
  (:func:`avlib.artifacts.resolve_artifacts_root`: ``$AVLIB_ARTIFACTS`` or
  ``_build/artifacts/cpu/``), made by ``make run ONLY=06_syncvsr``.
* ``mmab``: :class:`avlib.models.MMAB`, the memory lip reader. Without ``--audio`` it reads the
  video alone (MMAB's mode ``"memory"``: the lips and the audio its memory recalls from them,
  the paper's test path); ``--audio`` turns on audio-visual recognition (mode
  ``"audiovisual"``: the lips and the real audio) with the video's own soundtrack, or
  ``--audio FILE`` with the sound of any audio file or video (:func:`avlib.media.read_audio`,
  16 kHz mono, on the video's clock: sample ``640 k`` is frame ``k``'s start). Each 29-frame
  clip gets the :func:`avlib.audio.mmab_mel` (80 bands x 116) of its 29 x 640 samples (a word
  clip's padded frames get silence, as in training); audio shorter than the video frames it
  serves is padded with silence and a warning (:class:`LipreadWarning`); silence is read like
  any sound. The flip test-time augmentation (the mean of the logits of each clip and its
  mirror) is on by default, as in MMAB's reported numbers (``--no-flip``; ``--flip`` turns it
  on for SyncVSR). Weights (``--weights``, else :data:`ENV_MMAB_WEIGHTS`, else chapter 07's
  ``mmab_memory168`` product of the ``cpu`` profile, made by ``make run ONLY=07_mmab``): a book
  checkpoint or product folder as above (``config["name"] == "mmab"``), or MMAB's official
  ``GRU_Back_Ckpt.ckpt`` / ``MSTCN_Back_Ckpt.ckpt`` (one state dict per part, loaded by
  :meth:`avlib.models.MMAB.from_official`), which need ``--words`` as many as the classifier's
  rows (``back.fc.weight`` of the Bi-GRU, ``back.tcn.tcn_output.weight`` of the MS-TCN).

The reader is fed its crops resized (area interpolation) to the size it was trained on,
``cfg.input_size`` (96 for SyncVSR, 112 for MMAB official; 32 for MMAB's cpu size), as
:func:`avlib.vsr.data.load_words` resizes them, and normalised as in training (MMAB: mean
0.4136, std 0.17). A file of the other reader's kind is refused, naming it and the ``--model``
that reads it. Nothing is written: the command prints (``--json``: one JSON document that also
names ``"model"``, ``"model_mode"`` (``"visual"`` for SyncVSR, ``"memory"`` or
``"audiovisual"`` for MMAB; ``"mode"`` stays ``"word"`` or ``"windows"``), ``"flip"`` and
``"audio"``). Errors are one line with an exit code (:mod:`avlib.cli`): 2 for options (unknown
model, no weights, ``--words`` missing or of the wrong length, ``--audio`` with SyncVSR), 3 for
inputs (missing, unreadable or damaged video or ``--audio`` file, no face, fewer than
:data:`MIN_FRAMES` frames, weights that are not the chosen reader).

Command line::

    avlib lipread VIDEO [--weights FILE_OR_FOLDER] [--words FILE] [--top 5]
                  [--model syncvsr|mmab] [--audio [FILE]] [--flip|--no-flip]
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
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avlib import media
from avlib.artifacts import is_complete, resolve_artifacts_root
from avlib.audio import FPS, SAMPLES_PER_FRAME, SR, mmab_mel
from avlib.checkpoints import (
    CheckpointMismatch,
    identify_network,
    identify_state_dict,
    load_checkpoint,
    load_official,
    read_checkpoint_info,
    read_official,
)
from avlib.cli import EXIT_OK, EXIT_USAGE, CommandError, torch_device
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
from avlib.vsr.data import LRW_FRAMES, _fit_audio, _fit_length, augment, word_boundary
from avlib.vsr.recipes import MMAB_MEAN, MMAB_STD

__all__ = [
    "ENV_WEIGHTS",
    "ENV_MMAB_WEIGHTS",
    "DEFAULT_PROFILE",
    "WORD_MAX_FRAMES",
    "MIN_FRAMES",
    "DEFAULT_HOP",
    "DEFAULT_TOP",
    "MAX_MISSING",
    "READERS",
    "Reader",
    "LipreadError",
    "LipreadWarning",
    "read_words",
    "default_weights",
    "mouth_crops",
    "window_starts",
    "load_reader",
    "lipread",
    "add_arguments",
    "main_from_args",
]

#: Environment variable naming the default SyncVSR weights (before the default product).
ENV_WEIGHTS = "AVLIB_VSR_WEIGHTS"
#: The same for MMAB (``--model mmab``).
ENV_MMAB_WEIGHTS = "AVLIB_MMAB_WEIGHTS"
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
#: Side of SyncVSR's mouth crops (``mouth96``), the fallback training size.
CROP = 96
#: Crop streams of :func:`avlib.data.preprocess.make_crops` the readers take: side in pixels.
CROP_SIDES = {"mouth96": 96, "vcagan112": 112}


class LipreadError(CommandError):
    """Lip reading cannot run on this input or with these options; the message says why and
    what to do. ``exit_code`` is its command-line class (:mod:`avlib.cli`): an input problem
    unless said otherwise."""


class LipreadWarning(UserWarning):
    """Lip reading went on, but with a caveat (e.g. ``--audio`` shorter than the video: the
    rest is read with silence). The command prints it as one ``warning:`` line on stderr."""


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reader:
    """A kind of lip reader the command knows (a row of :data:`READERS`).

    Attributes:
        name: the ``--model`` value.
        title: what it is, for messages.
        short: its short name in messages ("SyncVSR").
        registry_name: ``config["name"]`` of its book checkpoints.
        product: the default product's name under the artifacts root.
        producer: the chapter that makes that product.
        load: ``(path, words, origin) -> (model, shown path, description)`` for a file (book
            checkpoint ``.json`` or an official file), raising :class:`LipreadError`.
        logits: ``(model, video uint8 (B, T, S, S), boundary (B, T), mel (B, 1, 80, 4 T) or
            None, flip) -> (B, C)`` word logits (``mel`` only for a reader that ``hears``;
            ``flip``: the mean of the clip's and its mirror's logits).
        vocabulary: ``model -> tuple of words`` (empty when unknown).
        with_vocabulary: ``(model, words) -> model`` naming its classes.
        env: environment variable naming its default weights.
        official: its official files, for messages.
        crop: the crop stream it reads (:data:`CROP_SIDES`), resized to its ``cfg.input_size``.
        hears: it can also take the audio (``--audio``: audio-visual recognition).
        flip: the flip test-time augmentation is on by default.
        boundary: it takes a word boundary (SyncVSR); else the boundary is ignored.
    """

    name: str
    title: str
    short: str
    registry_name: str
    product: str
    producer: str
    load: Callable
    logits: Callable
    vocabulary: Callable
    with_vocabulary: Callable
    env: str
    official: str
    crop: str = "mouth96"
    hears: bool = False
    flip: bool = False
    boundary: bool = True

    @property
    def chapter(self) -> str:
        """The producing chapter's number ("06")."""
        return self.producer[:2]


def _syncvsr_class():
    from avlib.models import SyncVSR

    return SyncVSR


def _mmab_class():
    from avlib.models.mmab import MMAB

    return MMAB


def _resized(net, video: torch.Tensor) -> torch.Tensor:
    """uint8 crops (B, T, S, S) resized (area) to the reader's training size, as
    :func:`avlib.vsr.data.load_words` resizes the store's crops."""
    size = int(getattr(getattr(net, "cfg", None), "input_size", CROP) or CROP)
    if size == video.shape[-1]:
        return video
    video = F.interpolate(video.float(), size=(size, size), mode="area")
    return video.round().clamp(0, 255).to(torch.uint8)


def _syncvsr_logits(net, video: torch.Tensor, boundary: torch.Tensor, mel=None,
                    flip: bool = False) -> torch.Tensor:
    param = next(net.parameters())
    x = augment(_resized(net, video), train=False).to(device=param.device, dtype=param.dtype)
    b = boundary.to(device=param.device, dtype=param.dtype)
    logits = net(x, b)[0].float()
    if flip:  # as avlib.vsr.recipes.predict(flip_tta=True)
        logits = (logits + net(x.flip(-1), b)[0].float()) / 2
    return logits


def _mmab_logits(net, video: torch.Tensor, boundary: torch.Tensor | None = None,
                 mel: torch.Tensor | None = None, flip: bool = True) -> torch.Tensor:
    """MMAB's word logits: mode "memory" (video alone, recalled audio) without ``mel``, else
    "audiovisual". The boundary is not an MMAB input. With ``flip`` the mean of the clip's and
    its mirror's logits (upstream sums them: the same ranking, probabilities less peaked)."""
    param = next(net.parameters())
    x = augment(_resized(net, video), train=False, mean=MMAB_MEAN, std=MMAB_STD)
    x = x.to(device=param.device, dtype=param.dtype)
    if mel is not None:
        mel = mel.to(device=param.device, dtype=param.dtype)
    mode = "memory" if mel is None else "audiovisual"
    logits = net.classify(x, mel, mode=mode, flip=flip).float()
    return logits / 2 if flip else logits


def _vocabulary(net) -> tuple[str, ...]:
    return tuple(getattr(getattr(net, "cfg", None), "vocabulary", ()) or ())


def _with_vocabulary(net, words: Sequence[str]):
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


def _check_word_count(words, n_classes: int, path) -> None:
    """An official file's classes must each get one word of ``--words``."""
    if len(words) != n_classes:
        raise LipreadError(f"the word list has {len(words)} words but {path} has {n_classes} "
                           "classes: give one word per class, in class order (LRW: its 500 "
                           "folder names sorted)", EXIT_USAGE)


def _first_problem(err: Exception) -> str:
    """The first offending key of a :class:`CheckpointMismatch` (its message lists several)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    line = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
    parts = line.split("; ")
    return parts[0] + ("; ..." if len(parts) > 1 else "")


def _other_reader(registry_name) -> Reader | None:
    """The reader whose checkpoints (or official files) carry this name, if the command knows
    it."""
    return next((r for r in READERS.values() if r.registry_name == registry_name), None)


def _load_book(path: Path, words, origin: str, reader: Reader, shown_keys: Sequence[str]):
    """A book checkpoint (``.json`` + ``.safetensors``) of ``reader``'s kind."""
    json_path = path.with_suffix(".json")
    try:
        info = read_checkpoint_info(json_path)
    except FileNotFoundError:
        raise LipreadError(f"checkpoint description not found: {json_path}{origin}; a book "
                           "checkpoint is a pair <name>.json + <name>.safetensors") from None
    except ValueError as err:
        raise LipreadError(f"{json_path}{origin} is not a book checkpoint: {err}") from None
    name = info.get("config", {}).get("name")
    if name != reader.registry_name:
        other = _other_reader(name)
        hint = (f"it is {other.title}: read it with --model {other.name}" if other else
                f"pass the .json of a chapter-{reader.chapter} reader")
        raise LipreadError(f"{json_path}{origin} holds a {name!r} model, not {reader.title} "
                           f"({reader.registry_name!r}); {hint}")
    if not path.with_suffix(".safetensors").is_file():
        raise LipreadError(f"checkpoint tensors not found: {path.with_suffix('.safetensors')}"
                           f"{origin} (next to {json_path.name})")
    try:
        net, config = load_checkpoint(json_path)
    except CheckpointMismatch as err:
        raise LipreadError(f"{json_path}{origin} cannot be loaded: "
                           f"{_first_problem(err)}") from None
    if words is not None:
        _with_vocabulary(net, words)
    kwargs = config.get("kwargs", {})
    shown = {k: kwargs[k] for k in shown_keys if k in kwargs}
    what = (f"book checkpoint, {type(net).__name__}("
            + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")")
    return net, json_path, what


def _not_this_reader(path: Path, origin: str, raw, reader: Reader, absent: str) -> LipreadError:
    """The error for an official file that is not ``reader``'s: what it holds, and the
    ``--model`` that reads it when the command knows one (a SyncVSR of another size is known
    by its word classifier, an MMAB by its parts)."""
    from avlib.models.mmab import MMAB_PARTS

    found = identify_network(raw)
    if found is None and _classes_in(raw) is not None:
        found = "syncvsr"
    elif found is None and isinstance(raw, Mapping) and any(p in raw for p in MMAB_PARTS):
        found = "mmab"
    other = _other_reader(found)
    if other is not None and other is not reader:
        what = identify_state_dict(raw) or f"{other.title} (official format)"
        return LipreadError(f"{path}{origin} holds {what}, not {reader.title}: read it with "
                            f"--model {other.name} (and --words)")
    what = (f"holds {identify_state_dict(raw)}" if found else
            f"holds no {reader.short} network ({absent})")
    return LipreadError(f"{path}{origin} {what}, not {reader.title}; pass a chapter-"
                        f"{reader.chapter} checkpoint or {reader.official}")


def _load_syncvsr(path: Path, words, origin: str):
    reader = READERS["syncvsr"]
    if path.suffix in (".json", ".safetensors"):
        return _load_book(path, words, origin, reader, ("n_classes", "depth", "widths"))
    # An official file: SyncVSR's Lightning .ckpt (or its state dict).
    if not path.is_file():
        raise LipreadError(f"lip-reader weights not found: {path}{origin}")
    raw = read_official(path)  # unsafe / corrupt files raise with exit code 3
    n_classes = _classes_in(raw)
    if n_classes is None:
        raise _not_this_reader(path, origin, raw, reader, "no category_classifier")
    if words is None:
        raise LipreadError(_words_needed(path, origin, reader), EXIT_USAGE)
    _check_word_count(words, n_classes, path)
    net = _syncvsr_class()(n_classes=n_classes, vocabulary=tuple(words))
    try:
        report = load_official(net, raw)
    except CheckpointMismatch as err:
        raise LipreadError(f"{path}{origin} is not an official-size SyncVSR: "
                           f"{_first_problem(err)}") from None
    skipped = f", {len(report.skipped)} tokenizer keys skipped" if report.skipped else ""
    return net.eval(), path, f"official SyncVSR format{skipped}"


def _part_tensor(part: Mapping, name: str) -> torch.Tensor | None:
    """``part[name]``, also under DataParallel's ``module.`` prefix."""
    for key in (name, f"module.{name}"):
        value = part.get(key)
        if isinstance(value, torch.Tensor):
            return value
    return None


def _mmab_head(raw: Mapping) -> tuple[str, int, int | None] | None:
    """``(backend, classes, slots)`` of an official MMAB dict: the rows of its word classifier
    (``back.fc.weight`` for the Bi-GRU, ``back.tcn.tcn_output.weight`` for the MS-TCN) and of its
    key memory; None without a classifier."""
    back, mem = raw["back_state_dict"], raw["mem_state_dict"]
    key = _part_tensor(mem, "key")
    slots = int(key.shape[0]) if key is not None and key.dim() == 2 else None
    for backend, name in (("gru", "fc.weight"), ("mstcn", "tcn.tcn_output.weight")):
        weight = _part_tensor(back, name)
        if weight is not None and weight.dim() == 2:
            return backend, int(weight.shape[0]), slots
    return None


def _load_mmab(path: Path, words, origin: str):
    from avlib.models.mmab import MMAB_PARTS

    reader = READERS["mmab"]
    if path.suffix in (".json", ".safetensors"):
        return _load_book(path, words, origin, reader, ("n_classes", "backend", "n_slot", "dim"))
    # An official file: GRU_Back_Ckpt.ckpt / MSTCN_Back_Ckpt.ckpt, one state dict per part.
    if not path.is_file():
        raise LipreadError(f"lip-reader weights not found: {path}{origin}")
    raw = read_official(path)  # unsafe / corrupt files raise with exit code 3
    present = [p for p in MMAB_PARTS
               if isinstance(raw, Mapping) and isinstance(raw.get(p), Mapping)]
    if not present:
        raise _not_this_reader(path, origin, raw, reader, f"no {', '.join(MMAB_PARTS)}")
    if len(present) < len(MMAB_PARTS):
        missing = [p for p in MMAB_PARTS if p not in present]
        raise LipreadError(f"{path}{origin} lacks {', '.join(missing)}: an official MMAB "
                           f"checkpoint holds {', '.join(MMAB_PARTS)}")
    head = _mmab_head(raw)
    if head is None:
        raise LipreadError(f"{path}{origin}: its back_state_dict holds no word classifier "
                           "(fc.weight for the Bi-GRU, tcn.tcn_output.weight for the MS-TCN); "
                           "is it a complete MMAB checkpoint?")
    backend, n_classes, slots = head
    if words is None:
        raise LipreadError(_words_needed(path, origin, reader), EXIT_USAGE)
    _check_word_count(words, n_classes, path)
    found = {"backend": backend, "n_classes": n_classes, **({"n_slot": slots} if slots else {})}
    try:
        net, report = _mmab_class().from_official(raw, vocabulary=tuple(words), **found)
    except CheckpointMismatch as err:
        raise LipreadError(f"{path}{origin} is not an official-size MMAB: "
                           f"{_first_problem(err)}") from None
    except ValueError as err:  # a config the tensors imply but MMABConfig refuses
        raise LipreadError(f"{path}{origin} is not an official-size MMAB: {err}") from None
    ignored = (f", {len(report.ignored_entries)} other entries ignored"
               if report.ignored_entries else "")
    return net.eval(), path, (f"official MMAB format, {'Bi-GRU' if backend == 'gru' else 'MS-TCN'}"
                              f" backend, {net.cfg.n_slot} slots{ignored}")


def _words_needed(path: Path, origin: str, reader: Reader) -> str:
    return (f"{path}{origin} is an official {reader.short} checkpoint, which holds no word list: "
            "pass --words FILE, one word per line in class order (LRW: its 500 folder names "
            "sorted)")


#: ``--model`` -> :class:`Reader`.
READERS: dict[str, Reader] = {
    "syncvsr": Reader(
        name="syncvsr", title="SyncVSR's word lip reader", short="SyncVSR",
        registry_name="syncvsr", product="vsr_lam10_f100", producer="06_syncvsr",
        load=_load_syncvsr, logits=_syncvsr_logits, vocabulary=_vocabulary,
        with_vocabulary=_with_vocabulary, env=ENV_WEIGHTS,
        official="SyncVSR's official .ckpt (LRW_CKPT_epoch_167_step_213864.ckpt, with --words)"),
    "mmab": Reader(
        name="mmab", title="MMAB's memory lip reader", short="MMAB", registry_name="mmab",
        product="mmab_memory168", producer="07_mmab", load=_load_mmab, logits=_mmab_logits,
        vocabulary=_vocabulary, with_vocabulary=_with_vocabulary, env=ENV_MMAB_WEIGHTS,
        official="MMAB's official GRU_Back_Ckpt.ckpt or MSTCN_Back_Ckpt.ckpt (with --words)",
        crop="vcagan112", hears=True, flip=True, boundary=False),
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
    ``_build/artifacts/cpu/vsr_lam10_f100/<key>/`` (SyncVSR, chapter 06) or
    ``_build/artifacts/cpu/mmab_memory168/<key>/`` (MMAB, chapter 07). Raises
    :class:`LipreadError` (exit 2) saying how to make it when there is none."""
    reader = _reader(model)
    folder = resolve_artifacts_root(None, profile) / reader.product
    found = _products(folder)
    if not found:
        from avlib.artifacts import project_root

        if (project_root() / "notebooks" / f"{reader.producer}.py").is_file():
            make = (f"Make it with `make run ONLY={reader.producer}` (chapter {reader.chapter}, "
                    f"{profile} profile), or pass --weights FILE (a chapter-{reader.chapter} "
                    "checkpoint .json or product folder, ")
        else:  # the chapter that trains it is not in this version of the book
            make = ("Pass --weights FILE (a trained checkpoint .json or product folder, ")
        raise LipreadError(
            f"no --weights given and no default lip reader: {folder} holds no trained "
            f"{reader.product!r} product. {make}or {reader.official}) or set {reader.env}",
            EXIT_USAGE)
    return found[-1]


def _checkpoint_in(folder: Path, reader: Reader, origin: str) -> Path:
    """The one checkpoint (``.json``) of ``reader``'s kind in a product folder; a product name
    folder (holding ``<key>/`` products) gives its newest complete product's."""
    found, others = [], set()
    for candidate in sorted(folder.glob("*.json")):
        try:
            name = read_checkpoint_info(candidate).get("config", {}).get("name")
        except (ValueError, OSError):
            continue  # artifact.json, history.json, ...: not checkpoints
        if name == reader.registry_name:
            found.append(candidate)
        elif _other_reader(name) is not None:
            others.add(name)
    if not found:
        products = _products(folder)
        if products:
            return _checkpoint_in(products[-1], reader, origin)
        hint = "".join(f"; it holds {_other_reader(n).title}: read it with --model {n}"
                       for n in sorted(others))
        raise LipreadError(f"{folder}{origin} holds no {reader.title} checkpoint (a .json/"
                           f".safetensors pair of a {reader.registry_name!r} model); pass its "
                           f".json or a chapter-{reader.chapter} product folder{hint}")
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
    elif os.environ.get(reader.env, "").strip():
        path, origin = Path(os.environ[reader.env]).expanduser(), f" (from ${reader.env})"
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
            folder (``<artifacts>/vsr_<name>/<key>/`` or ``<artifacts>/vsr_<name>/``; MMAB:
            ``mmab_<name>``), or an official file (SyncVSR's ``.ckpt``; MMAB's
            ``GRU_Back_Ckpt.ckpt`` / ``MSTCN_Back_Ckpt.ckpt``); None: the reader's environment
            variable (``$AVLIB_VSR_WEIGHTS``, ``$AVLIB_MMAB_WEIGHTS``), else the default
            product (:func:`default_weights`).
        words: a word-list file or a sequence of words, in class order: required for official
            files, else it replaces the checkpoint's list (same count).
        device: torch device.
        model: a key of :data:`READERS` (``"syncvsr"``, ``"mmab"``).

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

    def __init__(self, path: Path, cfg: PreprocessConfig, task: str = "lip reading",
                 error: type[Exception] = LipreadError):
        if not path.exists():
            raise error(f"video not found: {path}")
        if path.is_dir():
            raise error(f"{path} is a folder; give a video file")
        info = media.probe(path)  # MediaError: not media, damaged, truncated
        if not info.has_video:
            raise error(f"{path} has no video stream: {task} needs a video of the speaker's "
                        "face")
        self.path, self.cfg, self.error = path, cfg, error
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
            raise self.error(f"{self.path}: decoding gave {seen} frames, the header "
                             f"declares {self.count}; is the file complete?")


def _slice_track(track, a: int, b: int):
    return dataclasses.replace(track, raw=track.raw[a:b], boxes=track.boxes[a:b],
                               syncnet=track.syncnet[a:b], state=track.state[a:b])


def mouth_crops(video: str | os.PathLike, *, progress: bool = False,
                cfg: PreprocessConfig | None = None,
                stream: str = "mouth96", min_frames: int = MIN_FRAMES,
                task: str = "lip reading",
                error: type[Exception] = LipreadError) -> tuple[np.ndarray, dict]:
    """The ``stream`` crops of every 25 fps frame of ``video`` (the clip store's chain):
    ``"mouth96"`` (SyncVSR's, the default) or ``"vcagan112"`` (MMAB's).

    Returns uint8 (T, S, S) gray crops (S = :data:`CROP_SIDES` of the stream) and
    ``{"frames", "size", "face"}``, ``face`` bool (T,) being the frames with a tracked face and
    mesh landmarks. ``progress``: a bar over the three passes when the video is longer than a
    word clip. Raises :class:`LipreadError` (no face, fewer than ``min_frames`` frames, default
    :data:`MIN_FRAMES`) or :class:`avlib.media.MediaError`. Another command passes its own
    ``error`` class (called ``error(message)``: an input problem) and ``task`` (its name in the
    messages, "lip-to-speech").
    """
    if stream not in CROP_SIDES:
        raise LipreadError(f"unknown crop stream {stream!r}; known: "
                           f"{', '.join(CROP_SIDES)}", EXIT_USAGE)
    path = Path(video)
    cfg = cfg or PreprocessConfig(crops=(stream,), features=(), max_missing=MAX_MISSING)
    if stream not in cfg.crops:
        cfg = dataclasses.replace(cfg, crops=(*cfg.crops, stream))
    side = CROP_SIDES[stream]
    source = _Frames(path, cfg, task, error)
    n = source.count
    if n < min_frames:
        raise error(f"{path}: {n} frame{'s' if n != 1 else ''} at 25 fps ({n / FPS:.2f} s); "
                    f"{task} needs at least {min_frames} ({min_frames / FPS:.1f} s)")
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
            raise error(f"{path}: no usable face ({err.detail}); {task} needs the speaker's "
                        "face, roughly frontal, on most frames") from None
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
            raise error(f"{path}: the face mesh found the tracked face on no frame; {task} "
                        "needs the speaker's face, roughly frontal")
        if n - found.sum() > cfg.max_missing * n:
            raise error(f"{path}: the face mesh failed on {n - int(found.sum())} of {n} frames; "
                        f"{task} needs the face on most frames")
        marks = _interpolate_missing(marks, found)  # across chunk borders too
        crops = np.zeros((n, side, side), np.uint8)
        margin = cfg.smooth_window // 2
        tail = np.zeros((0,) + (size[1], size[0], 3), np.uint8)
        pending = None

        def emit(start, frames, left, right):
            full = np.concatenate([left, frames, right])
            a = start - len(left)
            made = make_crops(full, _slice_track(track, a, a + len(full)),
                              marks[a:a + len(full)], cfg)[stream]
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


def _read_audio(source, video: Path) -> tuple[np.ndarray, str]:
    """16 kHz mono float32 audio for ``--audio``: ``True`` reads ``video``'s own soundtrack,
    a path any audio file or a video's sound (:func:`avlib.media.read_audio`). Returns it and
    what it is, for messages."""
    own = source is True
    path = video if own else Path(source).expanduser()
    shown = f"the soundtrack of {path}" if own else str(path)
    if not path.exists():
        raise LipreadError(f"video not found: {path}" if own else f"audio not found: {path}")
    if path.is_dir():
        raise LipreadError(f"{path} is a folder; give a "
                           f"{'video' if own else 'sound file or a video with sound'}")
    try:
        wav = media.read_audio(path, SR)
    except media.MediaError as err:
        if err.reason == "no_audio" and own:
            raise LipreadError(f"{path} has no sound track: --audio alone reads the video's own "
                               "sound; give --audio FILE, or leave --audio out to read the lips "
                               "alone (MMAB recalls the audio from its memory)") from None
        if err.reason == "no_audio":
            raise LipreadError(f"{path} has no audio stream: give a sound file or a video with "
                               "sound as --audio") from None
        raise LipreadError(f"cannot read the audio of {path}: {err}") from None
    return np.clip(wav, -1.0, 1.0).astype(np.float32, copy=False), shown


def _mels(wav: np.ndarray, starts: Sequence[int], n_frames: int | None = None) -> torch.Tensor:
    """MMAB's mel (:func:`avlib.audio.mmab_mel`) of the 29 frames from each start: (B, 1, 80,
    116). ``n_frames``: a word clip of that many frames, centre-cropped or padded to 29 as its
    video is (:func:`avlib.vsr.data._fit_audio`: silence under the padding)."""
    spf = SAMPLES_PER_FRAME
    if n_frames is not None:
        segments = [_fit_audio(wav, n_frames, LRW_FRAMES)]
    else:
        segments = [wav[s * spf:(s + LRW_FRAMES) * spf] for s in starts]
    out = []
    for seg in segments:
        if len(seg) < LRW_FRAMES * spf:  # past the end of the audio: silence
            seg = np.concatenate([seg, np.zeros(LRW_FRAMES * spf - len(seg), np.float32)])
        out.append(mmab_mel(seg, SR))
    return torch.from_numpy(np.stack(out)).unsqueeze(1)


def lipread(video: str | os.PathLike, net: torch.nn.Module | None = None, *, weights=None,
            words=None, top: int = DEFAULT_TOP, hop: int = DEFAULT_HOP,
            device: str | torch.device = "cpu", progress: bool = True,
            model: str | None = None, audio: bool | str | os.PathLike | None = None,
            flip: bool | None = None) -> dict:
    """Read the words of ``video`` from the lips (and, for MMAB, optionally from its sound).

    Args:
        video: any video (resampled to 25 fps) showing the speaker's face.
        net: a loaded reader (e.g. :func:`load_reader`); None loads ``weights``.
        weights, words, model: what :func:`load_reader` takes (``words`` also renames a given
            ``net``'s classes); ``model`` defaults to ``"syncvsr"`` (or ``net``'s kind).
        top: words listed per clip or window.
        hop: frames between windows of a long video.
        device: torch device of the reader.
        progress: progress bars on long videos (:mod:`avlib.progress`).
        audio: MMAB only. None (or False): the video alone (MMAB's mode "memory": the lips and
            the audio recalled from its memory); True: audio-visual recognition (mode
            "audiovisual") with the video's own soundtrack; a path: with that file's sound (any
            audio file or a video's; 16 kHz mono). Audio shorter than the video frames it
            serves is padded with silence, with a :class:`LipreadWarning`.
        flip: the flip test-time augmentation (the mean of the logits of each clip and its
            mirror); None: the reader's default (on for MMAB, as its reported numbers; off for
            SyncVSR).

    Returns, for a clip of at most :data:`WORD_MAX_FRAMES` frames,
    ``{"mode": "word", "frames": n, "top": [(word, p), ...]}`` (most probable first), and for a
    longer video ``{"mode": "windows", "frames": n, "windows": [{"start", "end", "centre"
    (seconds), "word", "p", "top", "face"}, ...]}`` (see the module docstring); both also carry
    ``"model"`` (the reader's ``--model`` name), ``"model_mode"`` (``"visual"`` for SyncVSR;
    ``"memory"`` or ``"audiovisual"`` for MMAB), ``"flip"`` and ``"audio"`` (None, or the
    source read and ``"audio_padded_s"``, the seconds read as silence).
    Raises :class:`LipreadError`, :class:`avlib.media.MediaError`.
    """
    top = _check_int(top, "top")
    hop = _check_int(hop, "hop")
    dev = _device(device)
    reader = (_reader(model) if model is not None else
              _reader_of(net) if net is not None else _reader("syncvsr"))
    if audio is False:
        audio = None
    if audio is not None and not reader.hears:
        raise _deaf(reader)
    if net is not None and _reader_of(net) is not reader:
        raise LipreadError(f"the given network is {_reader_of(net).title}, not {reader.title} "
                           f"(model={reader.name!r})", EXIT_USAGE)
    if net is None:
        net, _ = _load(weights, words, reader.name)
    elif words is not None:
        words = read_words(words) if isinstance(words, (str, os.PathLike)) else tuple(words)
        reader.with_vocabulary(net, words)
    vocabulary = reader.vocabulary(net)
    if not vocabulary:
        raise LipreadError("the reader has no word list: pass words (a file, one word per line "
                           "in class order)", EXIT_USAGE)
    flip = reader.flip if flip is None else bool(flip)
    path = Path(video)
    wav, source = (None, None) if audio is None else _read_audio(audio, path)
    net = net.to(dev)
    crops, info = mouth_crops(video, progress=progress, stream=reader.crop)
    n = info["frames"]
    model_mode = ("visual" if not reader.hears else "memory" if wav is None else "audiovisual")
    about = {"model": reader.name, "model_mode": model_mode, "flip": flip, "audio": source}
    if wav is not None:
        # The audio the frames read: the whole video (windows), the 29 kept frames of a clip.
        used = n
        if LRW_FRAMES < n <= WORD_MAX_FRAMES:  # a clip centre-cropped to its middle 29
            used = (n - LRW_FRAMES) // 2 + LRW_FRAMES
        need = used * SAMPLES_PER_FRAME
        about["audio_padded_s"] = max(0, need - len(wav)) / SR
        if len(wav) < need:
            warnings.warn(f"{source} lasts {len(wav) / SR:.2f} s, shorter than the "
                          f"{need / SR:.2f} s of video it serves: the last "
                          f"{(need - len(wav)) / SR:.2f} s are read with silence",
                          LipreadWarning, stacklevel=2)
            wav = np.concatenate([wav, np.zeros(need - len(wav), np.float32)])
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            if n <= WORD_MAX_FRAMES:
                clip = torch.from_numpy(np.ascontiguousarray(_fit_length(crops, LRW_FRAMES)))
                boundary = word_boundary(None if n >= LRW_FRAMES else n / FPS, LRW_FRAMES)
                mel = None if wav is None else _mels(wav, [0], n_frames=n)
                logits = reader.logits(net, clip[None], torch.from_numpy(boundary)[None], mel, flip)
                probs = torch.softmax(logits.float().cpu(), dim=-1)
                return {"mode": "word", "frames": n, "top": _top(probs, vocabulary, top)[0],
                        **about}
            windows = []
            starts = window_starts(n, hop)
            boundary = torch.from_numpy(word_boundary(None, LRW_FRAMES))
            with progress_bar(total=len(starts), desc="lipread", unit="window",
                              disable=not progress, leave=False) as bar:
                for b0 in range(0, len(starts), BATCH):
                    batch = starts[b0:b0 + BATCH]
                    clips = torch.from_numpy(np.stack([crops[s:s + LRW_FRAMES] for s in batch]))
                    mel = None if wav is None else _mels(wav, batch)
                    logits = reader.logits(net, clips, boundary.expand(len(batch), -1), mel, flip)
                    probs = torch.softmax(logits.float().cpu(), dim=-1)
                    for s, best in zip(batch, _top(probs, vocabulary, top)):
                        windows.append({
                            "start": s / FPS, "end": (s + LRW_FRAMES) / FPS,
                            "centre": (s + LRW_FRAMES / 2) / FPS, "word": best[0][0],
                            "p": best[0][1], "top": best,
                            "face": float(info["face"][s:s + LRW_FRAMES].mean())})
                    bar.update(len(batch))
            return {"mode": "windows", "frames": n, "windows": windows, **about}
    finally:
        net.train(was_training)


def _deaf(reader: Reader) -> LipreadError:
    hearing = [r.name for r in READERS.values() if r.hears]
    return LipreadError(f"{reader.short} reads lips only: --audio (audio-visual recognition) "
                        f"needs --model {' or '.join(hearing)}", EXIT_USAGE)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``avlib lipread VIDEO [...]``."""
    parser.add_argument("video", help="a video of the speaker's face (any frame rate): a word "
                        f"clip (<= {WORD_MAX_FRAMES} frames at 25 fps) or a longer video")
    parser.add_argument("--weights", default=None,
                        help="syncvsr: a chapter-06 checkpoint (.json of a .json/.safetensors "
                             "pair) or product folder, or SyncVSR's official .ckpt (with "
                             "--words); mmab: a chapter-07 checkpoint or product folder, or "
                             "MMAB's official GRU_Back_Ckpt.ckpt / MSTCN_Back_Ckpt.ckpt (with "
                             f"--words). Default ${ENV_WEIGHTS} (mmab: ${ENV_MMAB_WEIGHTS}), "
                             "else the cpu profile's "
                             f"{READERS['syncvsr'].product} (mmab: {READERS['mmab'].product}) "
                             "product")
    parser.add_argument("--words", default=None,
                        help="word list, one word per line in class order (required for an "
                             "official checkpoint; LRW: its 500 folder names sorted)")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP,
                        help=f"words listed per clip or window (default {DEFAULT_TOP})")
    parser.add_argument("--model", choices=tuple(READERS), default="syncvsr",
                        help="the lip reader: syncvsr (SyncVSR, the lips alone; default) or "
                             "mmab (MMAB: the lips and the audio recalled from its memory, or "
                             "the real audio with --audio)")
    parser.add_argument("--audio", nargs="?", const=True, default=None, metavar="FILE",
                        help="mmab only: audio-visual recognition with the video's own sound "
                             "(--audio alone, after VIDEO) or the sound of FILE (any audio file "
                             "or video; padded with silence, with a warning, when shorter than "
                             "the video)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="flip test-time augmentation: the mean of the logits of each clip "
                             "and its mirror (default: on for mmab, as its reported numbers; "
                             "off for syncvsr)")
    parser.add_argument("--hop", type=int, default=DEFAULT_HOP,
                        help=f"frames between windows of a long video (default {DEFAULT_HOP})")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:N")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _reading(result: dict) -> str:
    """What the reader read, for the text output."""
    flip = ", flip test-time augmentation" if result["flip"] else ""
    if result["model_mode"] == "memory":
        return f"mmab, memory mode: the lips and the audio recalled from its memory{flip}"
    if result["model_mode"] == "audiovisual":
        return f"mmab, audiovisual mode: the lips and the sound of {result['audio']}{flip}"
    return f"{result['model']}: the lips alone{flip}"


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``avlib lipread``. Errors are raised and turned into one line on stderr and an exit
    code by :func:`avlib.cli.run_command` (2 usage, 3 input, 5 interrupted); a
    :class:`LipreadWarning` is one ``avlib lipread: warning: ...`` line on stderr."""
    top = _check_int(args.top, "--top")
    hop = _check_int(args.hop, "--hop")
    reader = _reader(args.model)
    audio = getattr(args, "audio", None)
    if audio is not None and not reader.hears:
        raise _deaf(reader)
    dev = _device(args.device)
    net, described = _load(args.weights, args.words, args.model)
    # With --json, stdout carries the JSON alone: bars go to stderr.
    redirect = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with redirect, warnings.catch_warnings():
        warnings.simplefilter("always", LipreadWarning)
        others = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, LipreadWarning):  # one line, when it happens
                print(f"avlib lipread: warning: {message}", file=sys.stderr, flush=True)
            else:
                others(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        result = lipread(args.video, net, top=top, hop=hop, device=dev,
                         progress=not args.no_progress, model=args.model, audio=audio,
                         flip=getattr(args, "flip", None))
    if args.json:
        print(json.dumps({"video": str(args.video), "weights": described, **result}))
        return EXIT_OK
    n = result["frames"]
    print(f"video      {args.video}: {n} frames ({n / FPS:.2f} s at 25 fps)")
    print(f"weights    {described}")
    print(f"reader     {_reading(result)}")
    if result["mode"] == "word":
        shown = (f"{n} frames, centre-cropped to {LRW_FRAMES}" if n > LRW_FRAMES else
                 f"{n} frames, padded to {LRW_FRAMES}" if n < LRW_FRAMES else f"{n} frames")
        if reader.boundary:
            shown += "; word boundary: the clip's frames (no duration known)"
        print(f"word clip  {shown}")
        for rank, (word, p) in enumerate(result["top"], 1):
            print(f"{rank:>4}  {word:<16} {p:.3f}")
        return EXIT_OK
    print(f"windows    {len(result['windows'])} of {LRW_FRAMES} frames every {hop} frames")
    print(f"{'centre_s':>8}  {'word':<16} {'p':>5}")
    for w in result["windows"]:
        note = "  (no face)" if w["face"] < 0.5 else ""
        print(f"{w['centre']:8.2f}  {w['word']:<16} {w['p']:5.3f}{note}")
    return EXIT_OK
