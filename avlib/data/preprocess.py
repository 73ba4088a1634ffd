"""Preprocessing: decoded clips -> face tracks, lip landmarks, model crops and audio features.

One clip goes through these steps (:func:`preprocess_clip`); a dataset is a loop over clips
with resume, sharding and worker processes (:func:`preprocess_dataset`, ``avlib preprocess``),
and :func:`store_artifact` makes a dataset's store a book product that later chapters find.
The steps:

1. **Decode** with :mod:`avlib.media` to RGB at a constant 25 fps (any frame rate, VFR included,
   is resampled by timestamps) and 16 kHz mono audio on the same clock. Frames larger than
   ``max_side`` are downscaled while decoding; without ``max_side`` the ``max_pixels`` guard
   rejects them ("too_large"). Acappella clips are JPEG folders plus a wav (assumed 25 fps, the
   rate VocaLiST extracted them at).
2. **Face track**: mediapipe's BlazeFace on every frame; detections are linked into tracks by
   IoU; one track is chosen (:func:`choose_track`); gaps of at most ``max_gap`` frames are filled
   linearly; boxes are smoothed (:func:`smooth_boxes`). Clips with too many frames without a face
   are rejected ("no_face", "face_track_gaps"), and so are clips with several persistent faces
   when ``multi_face="reject"`` ("multi_face").
3. **Face mesh** (mediapipe FaceMesh, tracking mode, a fresh mesher per clip) gives the 468
   landmarks of every frame; frames where it fails are interpolated from their neighbours.
4. **Crops** (which ones: ``PreprocessConfig.crops``):

   ============  ==========================  ======  =====================================
   stream        used by                     order   shape
   ============  ==========================  ======  =====================================
   ``face96``    Wav2Lip, its expert,        BGR     (T, 96, 96, 3); experts use rows 48:96
                 VocaLiST / MTDVocaLiST
   ``syncnet``   SyncNet v2 (LSE-D/LSE-C)    BGR     (T, S, S, 3), S = ``syncnet_size`` (224)
   ``mouth96``   LRW lip reading (SyncVSR)   gray    (T, 96, 96); readers centre-crop 88x88
   ``vcagan112`` VCA-GAN lip-to-speech       gray    (T, 112, 112)
   ============  ==========================  ======  =====================================

5. **Audio**: trimmed or zero-padded to exactly ``640 T`` samples (the video is the clock:
   frame ``f`` owns samples ``[640 f, 640 f + 640)``), plus the features of
   ``PreprocessConfig.features`` (:mod:`avlib.audio`: ``wav2lip_mel``, ``vocalist_mel``,
   ``syncnet_mfcc``).
6. **Store** (:class:`avlib.data.store.StoreWriter`): streams as JPEG, audio, features (with the
   per-frame ``face_boxes``, ``face_state`` and ``mesh_found``), the 40 lip landmarks
   ``(T, 40, 2)`` (:data:`avlib.faces.LIPS_ALL` order, pixels of the decoded frame) and the
   metadata, including the face-track statistics. Every failure of a clip's *content* becomes a
   recorded rejection with a reason code (:data:`REJECT_REASONS`); one bad clip never stops a run.

Failures that say nothing about a clip (an OS error with an errno of :data:`TRANSIENT_ERRNOS`:
disk full, quota, I/O error, stale NFS handle, read-only file system, no memory) are *not*
recorded: the clip stays pending, so the documented resume (rerun the same command) retries it,
and the run ends with :data:`avlib.cli.EXIT_INCOMPLETE`. When the store itself cannot be written
(disk full, quota, read-only, permission denied) the run stops at once with
:class:`StoreWriteError` (exit code 4) instead of failing every remaining clip: free the space and
rerun the same command.

Colour: avlib decodes RGB; ``face96`` and ``syncnet`` are converted to BGR at the crop because
upstream Wav2Lip, VocaLiST and SyncNet read their crops with ``cv2.imread``.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import hashlib
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from scipy.ndimage import uniform_filter1d

from avlib import media
from avlib.audio import FPS, SAMPLES_PER_FRAME, SR, syncnet_mfcc, vocalist_mel, wav2lip_mel
from avlib.cli import EXIT_INCOMPLETE, EXIT_OK, EXIT_OUTPUT
from avlib.data.crops import (CROP_ORDERS, CROPS, MOUTH_REF_INTEROCULAR, crop_face96, crop_mouth96,
                              crop_syncnet, crop_vcagan112, mouth_roi_centre)
from avlib.data.tracking import ClipRejected, FaceTrack, detect_faces, mesh_landmarks, track_faces
from avlib.faces import LIPS_ALL, OUTER_EYE_CORNERS, FaceDetector
from avlib.media import MediaError

__all__ = [
    "FEATURES",
    "REJECT_REASONS",
    "TRANSIENT_ERRNOS",
    "StoreWriteError",
    "IncompleteRun",
    "PreprocessConfig",
    "make_crops",
    "make_detector",
    "fit_audio",
    "load_clip",
    "preprocess_clip",
    "shard_of",
    "parse_shard",
    "preprocess_dataset",
    "store_artifact",
    "add_arguments",
    "main_from_args",
]

#: Audio features this module can store (functions of :mod:`avlib.audio`).
FEATURES = ("wav2lip_mel", "vocalist_mel", "syncnet_mfcc")
_FEATURE_FUNCS = {"wav2lip_mel": wav2lip_mel, "vocalist_mel": vocalist_mel, "syncnet_mfcc": syncnet_mfcc}

#: Rejection reason codes written by :func:`preprocess_clip`.
REJECT_REASONS = {
    **{k: v for k, v in media.REASONS.items() if k != "encode_failed"},
    "too_short": "fewer frames than min_frames (the shortest model context is 5 frames = 0.2 s)",
    "no_face": "a face was detected on fewer than half of the frames (or the mesh found none)",
    "face_track_gaps": "a face is there, but more than max_missing of the frames have no "
                       "detected/interpolated face (or no face-mesh landmarks)",
    "multi_face": "two or more faces are present on at least half of the frames (multi_face='reject')",
    "error": "an unexpected exception inside this clip (a bug): detail holds its last line",
}

#: OS errors that say nothing about a clip's content: such a clip is not rejected but left
#: pending (the next run retries it), and the run reports it as failed.
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ENOSPC", "EDQUOT", "EIO", "ESTALE", "EROFS", "EACCES", "EPERM", "ENOMEM", "EAGAIN",
        "ETIMEDOUT", "ENFILE", "EMFILE", "EINTR", "EFBIG", "ENOLCK", "ECONNRESET", "EHOSTDOWN",
        "EHOSTUNREACH", "ENETDOWN", "ENETUNREACH", "EREMOTEIO", "ENOLINK", "ECOMM")
    if hasattr(errno, name))
#: Errors writing the store after which no other clip can be written either: the run stops.
_STORE_FATAL_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM")
    if hasattr(errno, name))


class StoreWriteError(OSError):
    """The run stopped because the store cannot be written (disk full, quota, read-only,
    permission denied); finished clips are kept and a rerun continues with the others."""

    exit_code = EXIT_OUTPUT

    def __str__(self) -> str:
        return str(self.strerror)


class IncompleteRun(RuntimeError):
    """A run ended with clips that failed for a reason other than their content (they are not
    recorded, so a rerun retries them)."""

    exit_code = EXIT_INCOMPLETE


class _WriteFailed(Exception):
    """Internal: the store writer raised this OS error (as opposed to reading or processing)."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def _transient(err: BaseException) -> bool:
    """An error that is about the machine, not the clip (see :data:`TRANSIENT_ERRNOS`)."""
    return isinstance(err, MemoryError) or (isinstance(err, OSError) and not isinstance(err, MediaError)
                                            and err.errno in TRANSIENT_ERRNOS)


# ============================================================================ configuration


@dataclass
class PreprocessConfig:
    """Every setting of the preprocessing; saved with the store (a rerun must use the same).

    Attributes:
        crops: crop streams to make, a subset of :data:`CROPS`.
        features: audio features to store, a subset of :data:`FEATURES`. The default leaves out
            ``vocalist_mel``: VocaLiST computes its mel from the stored audio (training chunks and
            evaluation alike), and a third float feature would make the store larger than the
            per-frame JPEG layout it replaces.
        feature_dtype: "float16" (default) or "float32". Stored features only feed training
            (evaluation recomputes them from the audio in float32); float16 keeps ~3 significant
            digits (a Wav2Lip mel step of 0.002 near its +-4 range) at half the bytes.
        syncnet_size: side of the SyncNet crop in pixels (224 = SyncNet v2; 112 for a CPU model).
        max_gap: detection gaps of at most this many frames are filled by linear interpolation
            of the box coordinates (held at the clip's ends); longer gaps count as missing.
        max_missing: reject the clip when more than this fraction of its frames has no
            (detected or interpolated) face, or no face-mesh landmarks.
        multi_face: "largest" keeps the chosen track when several faces are present (records
            ``n_faces_max``); "reject" rejects clips with two or more persistent faces.
        smooth_window: frames of the centred moving average over box centre and size (odd; 5 as
            Wav2Lip's inference ``T=5``) for ``face96`` and the mesh region.
        syncnet_smooth_window: kernel of the median filter over SyncNet's box size and centre
            (odd; syncnet_python uses 13).
        min_frames: shorter clips are rejected "too_short" (5 = the shortest model context).
        max_side: downscale frames whose longer side exceeds this (pixels) while decoding; None
            keeps the size, and then ``max_pixels`` rejects huge frames "too_large".
        max_pixels: reject frames with more pixels than this when they are not downscaled.
        max_bytes: reject clips whose decoded frames would exceed this many bytes (the clip is
            held in memory while it is processed).
        jpeg_quality: JPEG quality of the stored crops (95 = ``cv2.imwrite``'s default).
        detector_model: BlazeFace model: 0 short range (face-centred crops), 1 full range.
        min_detection_score: detections scoring below this are ignored.
    """

    crops: tuple[str, ...] = CROPS
    features: tuple[str, ...] = ("wav2lip_mel", "syncnet_mfcc")
    feature_dtype: str = "float16"
    syncnet_size: int = 224
    max_gap: int = 5
    max_missing: float = 0.2
    multi_face: str = "largest"
    smooth_window: int = 5
    syncnet_smooth_window: int = 13
    min_frames: int = 5
    max_side: int | None = 1280
    max_pixels: int | None = media.DEFAULT_MAX_PIXELS
    max_bytes: int | None = 2 * 1024**3
    jpeg_quality: int = 95
    detector_model: int = 0
    min_detection_score: float = 0.5

    def __post_init__(self):
        self.crops = tuple(self.crops)
        self.features = tuple(self.features)
        bad = [c for c in self.crops if c not in CROPS]
        if bad or not self.crops or len(set(self.crops)) != len(self.crops):
            raise ValueError(f"crops must be distinct names from {CROPS} (at least one), got {self.crops}")
        bad = [f for f in self.features if f not in FEATURES]
        if bad or len(set(self.features)) != len(self.features):
            raise ValueError(f"features must be distinct names from {FEATURES}, got {self.features}")
        if self.feature_dtype not in ("float16", "float32"):
            raise ValueError(f"feature_dtype must be 'float16' or 'float32', got {self.feature_dtype!r}")
        if not 16 <= int(self.syncnet_size) <= 1024:
            raise ValueError(f"syncnet_size must be 16..1024 pixels (224 for SyncNet v2), got {self.syncnet_size}")
        if int(self.max_gap) < 0:
            raise ValueError(f"max_gap must be >= 0 frames, got {self.max_gap}")
        if not 0.0 <= float(self.max_missing) < 1.0:
            raise ValueError(f"max_missing must be a fraction in [0, 1), got {self.max_missing}")
        if self.multi_face not in ("largest", "reject"):
            raise ValueError(f"multi_face must be 'largest' or 'reject', got {self.multi_face!r}")
        for name in ("smooth_window", "syncnet_smooth_window"):
            value = getattr(self, name)
            if int(value) < 1 or int(value) % 2 == 0:
                raise ValueError(f"{name} must be an odd number of frames >= 1 (a centred window), got {value}")
        if int(self.min_frames) < 1:
            raise ValueError(f"min_frames must be >= 1, got {self.min_frames}")
        if self.max_side is not None and int(self.max_side) < 64:
            raise ValueError(f"max_side must be None (never downscale) or >= 64 pixels, got {self.max_side}")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.detector_model not in (0, 1):
            raise ValueError(f"detector_model must be 0 (short range) or 1 (full range), got {self.detector_model}")
        if not 0.0 <= float(self.min_detection_score) <= 1.0:
            raise ValueError(f"min_detection_score must be in [0, 1], got {self.min_detection_score}")

    def to_dict(self) -> dict:
        """JSON-able settings (what the store saves in ``config.json``)."""
        out = dataclasses.asdict(self)
        out["crops"], out["features"] = list(self.crops), list(self.features)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "PreprocessConfig":
        from avlib.artifacts import settings_from_dict

        return settings_from_dict(cls, values, "preprocessing settings")


def make_crops(frames: np.ndarray, track: FaceTrack, landmarks: np.ndarray,
               cfg: PreprocessConfig) -> dict[str, np.ndarray]:
    """Every crop stream of ``cfg.crops`` for a clip: {name: uint8 (T, ...)} (orders in
    :data:`CROP_ORDERS`)."""
    n = len(frames)
    out: dict[str, np.ndarray] = {}
    if "face96" in cfg.crops:
        out["face96"] = np.stack([crop_face96(frames[t], track.boxes[t]) for t in range(n)])
    if "syncnet" in cfg.crops:
        out["syncnet"] = np.stack([crop_syncnet(frames[t], *track.syncnet[t], size=cfg.syncnet_size)
                                   for t in range(n)])
    if "mouth96" in cfg.crops:
        iod = np.linalg.norm(landmarks[:, OUTER_EYE_CORNERS[0]] - landmarks[:, OUTER_EYE_CORNERS[1]], axis=1)
        # The face size changes slowly; smoothing it keeps the mouth zoom steady.
        iod = uniform_filter1d(iod, size=cfg.smooth_window, mode="nearest") if n > 1 else iod
        scale = np.maximum(iod, 1.0) / MOUTH_REF_INTEROCULAR
        out["mouth96"] = np.stack([crop_mouth96(frames[t], mouth_roi_centre(landmarks[t]), scale[t])
                                   for t in range(n)])
    if "vcagan112" in cfg.crops:
        out["vcagan112"] = np.stack([crop_vcagan112(frames[t], landmarks[t]) for t in range(n)])
    return {name: out[name] for name in cfg.crops}




# ============================================================================ audio


def fit_audio(audio: np.ndarray, n_frames: int) -> tuple[np.ndarray, dict]:
    """Trim or zero-pad 16 kHz audio to exactly ``640 n_frames`` samples.

    The video is the clock (both streams are already aligned at time zero by
    :mod:`avlib.media`): frame ``f`` owns samples ``[640 f, 640 f + 640)``, so sound after the
    last frame is dropped and missing sound at the end is silence. Returns the float32 audio and
    ``{"source_samples", "padded_samples", "trimmed_samples"}``.
    """
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    want = SAMPLES_PER_FRAME * int(n_frames)
    info = {"source_samples": int(len(x)), "padded_samples": max(0, want - len(x)),
            "trimmed_samples": max(0, len(x) - want)}
    if len(x) >= want:
        return np.ascontiguousarray(x[:want]), info
    return np.concatenate([x, np.zeros(want - len(x), np.float32)]), info


# ============================================================================ one clip


def _jsonable(value):
    """Plain JSON types for clip metadata (Paths and other objects become strings)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _clip_meta(item) -> dict:
    """What the dataset listing knows about a clip, as store metadata."""
    words = [{"label": w.label, "start": float(w.start), "end": float(w.end)} for w in (item.words or [])]
    return {
        "dataset": item.dataset, "split": item.split, "speaker": item.speaker,
        "transcript": item.transcript, "words": words, "source": str(item.video),
        "audio_source": None if item.audio is None else str(item.audio),
        "problems": list(item.problems or []), "extra": _jsonable(dict(item.extra or {})),
        "fps": FPS,
    }


def _downscale(frames: np.ndarray, max_side: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    if max(h, w) <= max_side:
        return frames
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def load_clip(item, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """Decode a :class:`avlib.data.datasets.ClipItem`: RGB uint8 (T, H, W, 3) at 25 fps, float32
    16 kHz mono audio (not yet fitted to the frames), and facts about the source.

    Sources: a media file (audio from ``item.audio`` when set, else from the same file), or an
    Acappella JPEG folder (``extra["frames_dir"]``) with its wav. Raises MediaError ("missing",
    "not_media", "corrupt", "truncated", "no_video", "no_audio", "too_large").
    """
    opts = {"max_pixels": cfg.max_pixels, "max_side": cfg.max_side}
    if item.extra.get("frames_dir"):
        from avlib.data.datasets import DatasetError, list_jpeg_frames, read_jpeg_folder

        folder = Path(item.video)
        if not folder.is_dir():
            raise MediaError("missing", f"{folder}: frame folder not found", folder)
        if item.audio is None:
            raise MediaError("no_audio", f"{folder}: the clip has no audio file", folder)
        try:
            listed = list_jpeg_frames(folder)
            if cfg.max_bytes is not None and listed:
                # Size the whole clip from its first frame before decoding all of them.
                first = read_jpeg_folder(folder, max_frames=1)
                need = len(listed) * first[0].nbytes
                if need > cfg.max_bytes:
                    raise MediaError("too_large", f"{folder}: {len(listed)} frames of {first.shape[2]}x"
                                     f"{first.shape[1]} need {need / 2**30:.1f} GiB (max_bytes="
                                     f"{cfg.max_bytes}); split the clip or raise max_bytes", folder)
            frames = read_jpeg_folder(folder)
        except DatasetError as err:
            raise MediaError("corrupt", f"{folder}: {err}", folder) from err
        source_size = (frames.shape[2], frames.shape[1])
        if cfg.max_side is not None:
            frames = _downscale(frames, cfg.max_side)
        elif cfg.max_pixels is not None and source_size[0] * source_size[1] > cfg.max_pixels:
            raise MediaError("too_large", f"{folder}: {source_size[0]}x{source_size[1]} frames exceed "
                             f"max_pixels={cfg.max_pixels}; set max_side to downscale", folder)
        audio = media.read_audio(item.audio, SR)
        facts = {"source_fps": float(FPS), "variable_frame_rate": False,
                 "source_audio_sr": int(media.probe(item.audio).audio_sr)}
    else:
        if item.audio is not None:
            info = media.probe(item.video)
            frames, _ = media.read_video(item.video, FPS, max_bytes=cfg.max_bytes, **opts)
            audio = media.read_audio(item.audio, SR)
            audio_info = media.probe(item.audio)
        else:
            clip = media.read_av(item.video, FPS, SR, max_bytes=cfg.max_bytes, **opts)
            frames, audio, info = clip.frames, clip.audio, clip.info
            audio_info = info
        source_size = (info.width, info.height)
        facts = {"source_fps": round(info.fps, 4), "variable_frame_rate": bool(info.variable_frame_rate),
                 "source_audio_sr": int(audio_info.audio_sr),
                 "source_audio_channels": int(audio_info.audio_channels)}
    facts.update({"source_size": list(source_size), "frame_size": [int(frames.shape[2]), int(frames.shape[1])],
                  "downscale": round(frames.shape[2] / source_size[0], 6) if source_size[0] else 1.0})
    return frames, audio, facts


def make_detector(cfg: PreprocessConfig):
    """A FaceDetector with the config's model and score threshold."""
    return FaceDetector(model_selection=cfg.detector_model, min_confidence=cfg.min_detection_score)


def _process(item, writer, cfg: PreprocessConfig, detector, mesher, meta: dict) -> int:
    frames, audio, facts = load_clip(item, cfg)
    meta.update(facts)
    n = len(frames)
    if n < cfg.min_frames:
        raise ClipRejected("too_short", f"{n} frames at {FPS} fps; at least min_frames={cfg.min_frames} "
                           "are needed (the shortest model context is 5 frames = 0.2 s)", frames=n)
    detections = detect_faces(frames, detector)
    track = track_faces(detections, (frames.shape[2], frames.shape[1]), cfg)
    # One face on every frame: the mesh may look at the whole frame (it then finds that face).
    whole = track.stats["n_faces_max"] <= 1
    landmarks, found = mesh_landmarks(frames, track, mesher, whole_frame=whole)
    mesh_stats = {"mesh_found": int(found.sum()), "mesh_filled": int(n - found.sum()),
                  "mesh_region": "frame" if whole else "face"}
    stats = {**track.stats, **mesh_stats}
    if not found.any():
        raise ClipRejected("no_face", "the face mesh found the tracked face on no frame",
                           {"face_track": stats}, n)
    if n - found.sum() > cfg.max_missing * n:
        raise ClipRejected("face_track_gaps", f"the face mesh failed on {n - int(found.sum())} of {n} "
                           f"frames (max_missing={cfg.max_missing})", {"face_track": stats}, n)
    streams = make_crops(frames, track, landmarks, cfg)
    fitted, audio_info = fit_audio(audio, n)
    features = {name: _FEATURE_FUNCS[name](fitted).astype(cfg.feature_dtype) for name in cfg.features}
    features["face_boxes"] = track.boxes.astype(np.float32)
    features["face_state"] = track.state
    features["mesh_found"] = found
    meta["face_track"] = stats
    meta["audio"] = audio_info
    lips = landmarks[:, list(LIPS_ALL)].astype(np.float32)
    try:
        # overwrite=False: a clip another writer finished meanwhile is kept, never replaced.
        placed = writer.write_clip(item.id, meta, streams, fitted, features, lips,
                                   {name: CROP_ORDERS[name] for name in streams}, overwrite=False)
    except OSError as err:
        raise _WriteFailed(err) from err
    return n if placed is not False else -n


def preprocess_clip(item, writer, cfg: PreprocessConfig | None = None, detector=None, mesher=None) -> dict:
    """Preprocess one clip into the store; never raises for a bad clip.

    Args:
        item: a :class:`avlib.data.datasets.ClipItem`.
        writer: an :class:`avlib.data.store.StoreWriter`.
        cfg: the settings (default :class:`PreprocessConfig`).
        detector: an :class:`avlib.faces.FaceDetector` to reuse (one per worker); None makes one.
        mesher: a fresh tracking-mode :class:`avlib.faces.FaceMesher` for this clip; None makes
            one per clip (11 ms), because tracking state must not carry over from the last clip.

    Every failure of the clip's content is recorded with ``writer.reject(id, reason, detail,
    meta)``: media reasons of :class:`avlib.media.MediaError`, "too_short", "no_face",
    "face_track_gaps", "multi_face", and "error" (any other exception, a bug: detail = the
    exception's last line) — then the caller's loop goes on. Transcript problems found while
    listing (``item.problems``, e.g. ``transcript_not_utf8``) are recorded in the metadata, not
    rejected. Failures that are not about the content (:data:`TRANSIENT_ERRNOS`, MemoryError)
    are not recorded: status "failed" (``fatal`` when the store cannot be written at all), and
    the clip stays pending for the next run. Only interrupts (KeyboardInterrupt, SystemExit)
    propagate; the store then holds no part of this clip.

    Returns ``{"id", "status": "ok"|"rejected"|"failed"|"skipped", "reason", "detail",
    "seconds", "frames", "fatal"}`` ("skipped": another writer finished the clip meanwhile).
    """
    cfg = cfg or PreprocessConfig()
    t0 = time.perf_counter()
    status, reason, detail, frames, fatal, err_no = "ok", None, "", 0, False, None
    meta: dict = {}
    try:
        meta = _clip_meta(item)
        own_detector = detector is None
        det = make_detector(cfg) if own_detector else detector
        try:
            frames = _process(item, writer, cfg, det, mesher, meta)
        finally:
            if own_detector:
                det.close()
        if frames < 0:  # another writer finished the clip first; its version was kept
            status, reason, frames = "skipped", "finished_by_another_writer", -frames
    except ClipRejected as rej:
        status, reason, detail, frames = "rejected", rej.reason, rej.detail, rej.frames
        meta.update(rej.meta)
    except MediaError as err:
        status, reason, detail = "rejected", err.reason, str(err)
        if reason not in REJECT_REASONS:
            reason = "corrupt"
    except _WriteFailed as failed:
        status, reason, detail = "failed", "store_write", _os_detail(failed.error)
        fatal, err_no = failed.error.errno in _STORE_FATAL_ERRNOS, failed.error.errno
    except Exception as err:  # a bug inside one clip must not end a dataset run
        if _transient(err):
            status, reason, detail = "failed", "os_error", _os_detail(err)
            err_no = getattr(err, "errno", None)
            fatal = err_no in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
        else:
            status, reason = "rejected", "error"
            detail = traceback.format_exception_only(type(err), err)[-1].strip()
    if status == "rejected":
        meta["preprocess_seconds"] = round(time.perf_counter() - t0, 4)
        try:
            if writer.reject(item.id, reason, detail, meta) is False:
                status, reason = "skipped", "finished_by_another_writer"
        except OSError as err:  # the verdict stands, but it could not be recorded: retry later
            status, reason, detail = "failed", "store_write", _os_detail(err)
            fatal, err_no = err.errno in _STORE_FATAL_ERRNOS, err.errno
    return {"id": item.id, "status": status, "reason": reason, "detail": detail,
            "seconds": round(time.perf_counter() - t0, 4), "frames": int(frames), "fatal": bool(fatal),
            "errno": err_no}


def _os_detail(err: BaseException) -> str:
    """One line for an OS error: what, errno name, and the file (as the user knows it)."""
    if isinstance(err, OSError) and err.errno is not None:
        name = errno.errorcode.get(err.errno, str(err.errno))
        # A hidden temporary is not a path the user knows: leave it out.
        path = Path(os.fsdecode(err.filename)) if err.filename else None
        shown = path is not None and not any(part.startswith(".") and part not in (".", "..")
                                             for part in path.parts)
        return f"{name}: {err.strerror or err}" + (f" ({path})" if shown else "")
    return traceback.format_exception_only(type(err), err)[-1].strip()


# ============================================================================ a dataset


def shard_of(clip_id: str, n_shards: int) -> int:
    """Stable shard (0..n_shards-1) of a clip id: SHA-1 of the UTF-8 id modulo n_shards, so
    every machine agrees without coordination and the split does not change between runs."""
    digest = hashlib.sha1(str(clip_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % int(n_shards)


def parse_shard(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"i/N"`` (or (i, N)) -> (i, N) with 0 <= i < N; None stays None."""
    if text is None:
        return None
    try:
        if isinstance(text, str):
            i_text, n_text = text.split("/")
            i, n = int(i_text), int(n_text)
        else:
            i, n = (int(v) for v in text)
    except (ValueError, TypeError):
        raise ValueError(f"shard must look like 'i/N' (e.g. '0/4'), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard i/N needs N >= 1 and 0 <= i < N, got {i}/{n}")
    return i, n


_WORKER: dict = {}


def _init_worker(out: str, cfg_dict: dict) -> None:
    from avlib.data.store import StoreWriter

    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would oversubscribe
    cfg = PreprocessConfig.from_dict(cfg_dict)
    _WORKER.update(cfg=cfg, writer=StoreWriter(out, cfg.to_dict(), cfg.jpeg_quality),
                   detector=make_detector(cfg))


def _work(item) -> dict:
    return _process_pending(item, _WORKER["writer"], _WORKER["cfg"], _WORKER["detector"])


def _process_pending(item, writer, cfg, detector) -> dict:
    """preprocess_clip, unless another writer sharing the store has done the clip since the
    run started (two unsharded runs then split most of the work instead of doing it twice)."""
    if writer.done(item.id):
        return {"id": item.id, "status": "skipped", "reason": "done_by_another_writer", "detail": "",
                "seconds": 0.0, "frames": 0, "fatal": False, "errno": None}
    return preprocess_clip(item, writer, cfg, detector)


def preprocess_dataset(items: Iterable, out: str | os.PathLike, cfg: PreprocessConfig | None = None,
                       workers: int = 1, shard: str | tuple[int, int] | None = None,
                       progress: bool = True) -> dict:
    """Preprocess clips into the store at ``out``: resumable, shardable, parallel.

    Args:
        items: :class:`avlib.data.datasets.ClipItem` records (e.g. from ``list_clips``).
        out: the store folder (created if needed). A rerun with the same config skips clips that
            are finished or rejected, and redoes clips a killed run left unfinished (the store
            writes each clip atomically, so there are never half clips).
        cfg: the settings; must equal the store's saved config on a rerun.
        workers: processes (spawn); each has its own FaceDetector and store writer.
        shard: ``"i/N"`` or (i, N): process only the clips with ``shard_of(id, N) == i``. N
            machines sharing one folder (or writing separate ones) split a dataset without any
            coordination; each finalizes the manifest of what exists so far.
        progress: show a tqdm progress bar.

    Rejected clips count as done, like finished ones: to retry one (e.g. after fixing the bug
    behind an "error" rejection), delete its ``rejected/<safe id>.json`` and rerun. Clips that
    failed for a reason other than their content (:data:`TRANSIENT_ERRNOS`) are not recorded
    and are retried by the next run.

    Returns the summary: ``items`` (after sharding), ``processed`` (written now), ``skipped``
    (already done, by an earlier run or another writer), ``rejected`` (count by reason, this
    run), ``failed`` (``{id: detail}`` of the clips that failed for a reason other than their
    content; retried by a rerun), ``frames``, ``hours`` (video processed now), ``seconds``,
    ``frames_per_s``, ``clips_per_s``, ``workers``, ``shard``, and ``manifest``: the store
    manifest from :meth:`avlib.data.store.StoreWriter.finalize`.

    Raises:
        StoreWriteError: the store cannot be written (disk full, quota, read-only file system,
            permission denied): the run stops at the first such clip, keeping the finished ones;
            free space and rerun.
    """
    from avlib.progress import progress_bar

    from avlib.data.store import StoreWriter

    cfg = cfg or PreprocessConfig()
    shard_t = parse_shard(shard)
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    items = list(items)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"clip ids must be unique within a store, these repeat: {dupes[:5]}")
    if shard_t is not None:
        items = [it for it in items if shard_of(it.id, shard_t[1]) == shard_t[0]]
    writer = StoreWriter(out, cfg.to_dict(), cfg.jpeg_quality)
    todo = [it for it in items if not writer.done(it.id)]
    summary = {"items": len(items), "processed": 0, "skipped": len(items) - len(todo), "rejected": {},
               "failed": {}, "frames": 0, "workers": int(workers),
               "shard": None if shard_t is None else f"{shard_t[0]}/{shard_t[1]}"}
    t0 = time.perf_counter()
    bar = progress_bar(len(todo), "preprocess", "clip", disable=not progress)
    stop: dict = {}

    def account(result: dict) -> bool:
        """Count one result; False when the run must stop (the store cannot be written)."""
        summary["frames"] += result["frames"]
        if result["status"] == "ok":
            summary["processed"] += 1
        elif result["status"] == "skipped":
            summary["skipped"] += 1
        elif result["status"] == "failed":
            summary["failed"][result["id"]] = result["detail"]
            if result.get("fatal"):
                stop.update(result)
                return False
        else:
            summary["rejected"][result["reason"]] = summary["rejected"].get(result["reason"], 0) + 1
        bar.update()
        return True

    try:
        if int(workers) == 1 or len(todo) <= 1:
            detector = make_detector(cfg)
            try:
                for item in todo:
                    if not account(_process_pending(item, writer, cfg, detector)):
                        break
            finally:
                detector.close()
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            # Leaving the with-block terminates the workers; their half-written clips are
            # temporaries that the next writer removes (their owners are dead).
            with ctx.Pool(min(int(workers), len(todo)), initializer=_init_worker,
                          initargs=(str(out), cfg.to_dict())) as pool:
                for result in pool.imap_unordered(_work, todo, chunksize=1):
                    if not account(result):
                        break
    finally:
        bar.close()
    if stop:
        done = summary["processed"] + sum(summary["rejected"].values())
        left = len(items) - done - summary["skipped"]
        raise StoreWriteError(
            stop.get("errno") or errno.EIO,
            f"stopped: cannot write the store {out} ({stop['detail']}); {done} clips were stored or "
            f"rejected in this run and are kept; {left} clips are left. Free space (or fix the "
            "folder) and rerun the same command: it continues where it stopped")
    seconds = time.perf_counter() - t0
    summary.update({
        "seconds": round(seconds, 3),
        "hours": summary["frames"] / FPS / 3600,
        "frames_per_s": round(summary["frames"] / seconds, 2) if seconds > 0 else 0.0,
        "clips_per_s": round(len(todo) / seconds, 3) if seconds > 0 else 0.0,
        "rejected": dict(sorted(summary["rejected"].items())),
    })
    summary["manifest"] = writer.finalize()
    return summary


# ============================================================================ the store as a book artifact


#: The code that determines a store: editing it makes chapter 01 preprocess again.
STORE_CODE = ("avlib.data.preprocess", "avlib.faces", "avlib.media", "avlib.audio", "avlib.data.store",
              "avlib.data.datasets")


def _corpus_identity(corpus: Path) -> dict:
    """What determines a corpus's clips: for a corpus made by chapter 00, its product key (which
    hashes the generation settings and the generator's code); else its generation settings (or,
    for a corpus folder without them, its resolved path)."""
    from avlib.artifacts import is_complete, read_metadata
    from avlib.corpus.make import load_manifest

    manifest = load_manifest(corpus)
    if is_complete(corpus):
        return {"corpus_product": read_metadata(corpus)["key"]}
    if isinstance(manifest.get("config"), dict):
        return {"corpus_config": manifest["config"], "n_clips": manifest.get("n_clips")}
    return {"path": str(Path(corpus).resolve())}


def store_artifact(cfg: PreprocessConfig, artifacts_root: str | os.PathLike, *, dataset: str = "corpus",
                   data_root: str | os.PathLike | None = None, kinds: Sequence[str] | None = None,
                   split: str | None = None, split_file: str | os.PathLike | None = None,
                   policy: str = "auto", workers: int = 1, progress: bool = True,
                   record: bool = True) -> Path:
    """The clip store of a dataset as a book product: ``<artifacts_root>/store/<key>/``.

    Args:
        cfg: the preprocessing settings.
        artifacts_root: the profile's artifacts root (:func:`avlib.artifacts.resolve_artifacts_root`).
        dataset: ``"corpus"`` (default) preprocesses the avlib corpus that
            :func:`avlib.corpus.make.find_corpus` finds (``data_root`` when given, else the one
            chapter 00_corpus recorded); any other name of :data:`avlib.data.datasets.DATASETS` reads
            that real dataset from ``data_root``.
        data_root: the dataset folder (required for real datasets).
        kinds: corpus only: keep these kinds of clips (``"grid"``, ``"lrw"``, ``"sync"``); None
            keeps every kind.
        split, split_file: restrict the clips as :func:`avlib.data.datasets.list_clips` does.
        policy: ``ckpt_policy``: "load" (the store must exist), "train" (remake it), "auto".
        workers, progress: as :func:`preprocess_dataset`.
        record: remember the store with :func:`avlib.data.store.record_current`, so that later
            chapters get it from :func:`avlib.data.store.find_store` ``(artifacts_root)``.

    The key hashes ``cfg``, the dataset, ``kinds``/``split``/``split_file`` and the source's
    identity (a corpus: its generation settings; a real dataset: its resolved folder), so other
    settings never pick up a stale store. Resumable: an interrupted run continues in
    ``<key>.partial``, where the store writer skips finished and rejected clips. The product's
    metadata (:func:`avlib.artifacts.read_metadata`) is the run summary of
    :func:`preprocess_dataset` with the store manifest's ``summary`` under ``"store"``.

    Raises:
        ValueError: unknown dataset or kind, kinds for a real dataset, a real dataset without
            ``data_root``, workers < 1. :class:`avlib.artifacts.ArtifactMissing`: ``policy="load"``
            and no such store. FileNotFoundError: no corpus (run chapter 00_corpus first).
            :class:`IncompleteRun`: clips failed for a reason other than their content (the
            product stays unfinished; a rerun retries them). :class:`StoreWriteError`: the store
            cannot be written (disk full ...).
    """
    from avlib.artifacts import produce_or_load
    from avlib.data.datasets import CORPUS_KINDS, DATASETS, list_clips
    from avlib.data.store import record_current

    name = str(dataset).lower()
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if kinds is not None:
        if isinstance(kinds, str):
            kinds = [kinds]
        kinds = sorted(set(kinds))
        if name != "corpus":
            raise ValueError(f"kinds selects clips of the avlib corpus; {name} has none (pass kinds=None)")
        bad = [k for k in kinds if k not in CORPUS_KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {CORPUS_KINDS} (or None for all), got {kinds}")
    if name == "corpus":
        from avlib.corpus.make import find_corpus

        source = find_corpus(artifacts_root, data_root)
        identity = _corpus_identity(source)
    else:
        if data_root is None:
            raise ValueError(f"dataset {name!r} is read from data_root: pass the dataset folder "
                             "(see avlib.data.datasets for its layout)")
        source = Path(data_root).expanduser().resolve()
        identity = {"path": str(source)}
    split_path = None if split_file is None else str(Path(split_file).expanduser().resolve())
    key = {"preprocess": cfg.to_dict(), "dataset": name, "source": identity, "kinds": kinds,
           "split": split, "split_file": split_path}

    def produce(folder: Path) -> dict:
        items = list_clips(name, source, split=split, split_file=split_path)
        if kinds is not None:
            items = [it for it in items if it.extra.get("kind") in kinds]
            if not items:
                raise ValueError(f"the corpus at {source} has no clips of kinds {kinds}")
        summary = preprocess_dataset(items, folder, cfg, workers=workers, progress=progress)
        if summary["failed"]:
            # Not a finished product: it stays <key>.partial and the next call retries these.
            first = next(iter(summary["failed"].items()))
            raise IncompleteRun(
                f"{len(summary['failed'])} clips failed for a reason other than their content "
                f"(e.g. {first[0]!r}: {first[1]}); the store is kept unfinished in {folder}: fix "
                "the cause and run again to retry them")
        manifest = summary.pop("manifest")
        summary.update(store=manifest["summary"], dataset=name, source=str(source), kinds=kinds)
        return summary

    folder = produce_or_load("store", key, produce, policy, artifacts_root,
                             producer="01_preprocessing", resumable=True, code=STORE_CODE)
    if record:
        record_current(artifacts_root, folder)
    return folder


# ============================================================================ command line

#: ``--max-side`` help, shared with ``avlib sync`` (same meaning in both).
MAX_SIDE_HELP = ("downscale frames whose longer side exceeds this many pixels while decoding; "
                 "0 = never downscale")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``avlib preprocess``."""
    from avlib.data.datasets import DATASETS

    defaults = PreprocessConfig()
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="dataset layout of --root")
    parser.add_argument("--root", required=True, help="dataset folder (see avlib.data.datasets)")
    parser.add_argument("--out", required=True, help="store folder to write (resumable)")
    parser.add_argument("--split", default=None, help="keep one split (dataset-specific names)")
    parser.add_argument("--split-file", default=None, help="a split list to use instead (LRS2/LRS3/LRW/GRID)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--shard", default=None, help="i/N: process only shard i of N (stable hash of the clip id)")
    parser.add_argument("--crops", nargs="+", default=list(defaults.crops), choices=CROPS,
                        help=f"crop streams to make (default: all of {', '.join(CROPS)})")
    parser.add_argument("--features", nargs="*", default=list(defaults.features), choices=FEATURES,
                        help="audio features to store (default: all)")
    parser.add_argument("--syncnet-size", type=int, default=defaults.syncnet_size,
                        help="SyncNet crop side in pixels (224 = SyncNet v2, 112 for the CPU profile)")
    parser.add_argument("--multi-face", choices=("largest", "reject"), default=defaults.multi_face,
                        help="several faces: keep the speaker's track (largest) or reject the clip")
    parser.add_argument("--max-side", type=int, default=defaults.max_side,
                        help=MAX_SIDE_HELP + "; then frames above max_pixels are rejected")
    parser.add_argument("--jpeg-quality", type=int, default=defaults.jpeg_quality)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def max_side_option(value: int | None) -> int | None:
    """``--max-side`` of ``avlib preprocess`` and ``avlib sync``: 0 (or None) = never downscale."""
    if value is None or int(value) == 0:
        return None
    if int(value) < 0:
        raise ValueError(f"--max-side must be 0 (never downscale) or a positive number of pixels, got {value}")
    return int(value)


def check_out_and_root(root: str | os.PathLike, out: str | os.PathLike) -> None:
    """Refuse a store folder that is the dataset folder or inside it (the store would mix with,
    and be listed among, the dataset's own files)."""
    root_p, out_p = Path(root).expanduser().resolve(), Path(out).expanduser().resolve()
    if out_p == root_p or root_p in out_p.parents:
        raise ValueError(f"--out {out} is {'the dataset folder' if out_p == root_p else 'inside the dataset folder'} "
                         f"--root {root}; write the store to a folder outside the dataset")


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``avlib preprocess``; prints the summary as JSON. Returns 0, or
    :data:`avlib.cli.EXIT_INCOMPLETE` when clips failed for a reason other than their content
    (they are listed under ``failed``; rerun to retry them). Other errors are raised and turned
    into exit codes by :func:`avlib.cli.run_command`."""
    from avlib.data.datasets import list_clips

    check_out_and_root(args.root, args.out)
    cfg = PreprocessConfig(crops=tuple(args.crops), features=tuple(args.features),
                           syncnet_size=args.syncnet_size, multi_face=args.multi_face,
                           max_side=max_side_option(args.max_side), jpeg_quality=args.jpeg_quality)
    shard = parse_shard(args.shard)
    items = list_clips(args.dataset, args.root, split=args.split, split_file=args.split_file)
    for skipped in getattr(items, "skipped", [])[:20]:
        print(f"skipped {skipped.entry}: {skipped.reason} ({skipped.detail})", file=sys.stderr)
    summary = preprocess_dataset(items, args.out, cfg, workers=args.workers, shard=shard,
                                 progress=not args.no_progress)
    manifest = summary.pop("manifest")
    summary["store"] = {k: manifest["summary"][k] for k in ("n_clips", "n_rejected", "hours", "rejections")}
    print(json.dumps(summary, indent=2))
    if summary["failed"]:
        print(f"avlib preprocess: {len(summary['failed'])} clips failed for a reason other than their "
              f"content (see \"failed\"); they are not recorded: rerun the same command to retry them",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK
