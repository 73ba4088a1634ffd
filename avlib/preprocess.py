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
6. **Store** (:class:`avlib.store.StoreWriter`): streams as JPEG, audio, features (with the
   per-frame ``face_boxes``, ``face_state`` and ``mesh_found``), the 40 lip landmarks
   ``(T, 40, 2)`` (:data:`avlib.faces.LIPS_ALL` order, pixels of the decoded frame) and the
   metadata, including the face-track statistics. Every failure becomes a recorded rejection
   with a reason code (:data:`REJECT_REASONS`); one bad clip never stops a run.

Colour: avlib decodes RGB; ``face96`` and ``syncnet`` are converted to BGR at the crop because
upstream Wav2Lip, VocaLiST and SyncNet read their crops with ``cv2.imread``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from avlib import media
from avlib.audio import SAMPLES_PER_FRAME, SR, syncnet_mfcc, vocalist_mel, wav2lip_mel
from avlib.faces import LIPS_ALL, OUTER_EYE_CORNERS, FaceDetector, FaceMesher
from avlib.media import MediaError

__all__ = [
    "CROPS",
    "CROP_ORDERS",
    "FEATURES",
    "REJECT_REASONS",
    "DETECTED",
    "INTERPOLATED",
    "MISSING",
    "FACE_BOX_EXTEND",
    "SYNCNET_CROP_SCALE",
    "SYNCNET_PAD_VALUE",
    "MOUTH_ROI_INDICES",
    "MOUTH_REF_INTEROCULAR",
    "VCAGAN_REFERENCE",
    "VCAGAN_MOUTH_BOX",
    "PreprocessConfig",
    "ClipRejected",
    "Track",
    "FaceTrack",
    "box_iou",
    "link_tracks",
    "choose_track",
    "fill_track",
    "smooth_boxes",
    "box_jitter",
    "s3fd_like_box",
    "syncnet_params",
    "track_faces",
    "detect_faces",
    "mesh_landmarks",
    "crop_face96",
    "syncnet_window",
    "crop_syncnet",
    "mouth_roi_centre",
    "crop_mouth96",
    "similarity_transform",
    "vcagan_matrix",
    "crop_vcagan112",
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

FPS = 25
#: Crop streams this module can make, in the order they are produced.
CROPS = ("face96", "syncnet", "mouth96", "vcagan112")
#: Colour order of each crop stream (what :meth:`avlib.store.ClipStore.frames` returns).
CROP_ORDERS = {"face96": "bgr", "syncnet": "bgr", "mouth96": "gray", "vcagan112": "gray"}
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

#: Per-frame face-track state (``face_state`` feature).
DETECTED, INTERPOLATED, MISSING = 0, 1, 2

# --- tracking constants
#: IoU needed to link a detection to a track (syncnet_python's tracker uses 0.5).
TRACK_IOU = 0.5
#: A track may resume after this many frames without a matching detection (syncnet_python:
#: ``num_failed_det`` = 25). Only gaps of at most ``max_gap`` frames are *filled* (interpolated);
#: longer ones stay in the track but count as missing frames.
TRACK_LINK_GAP = 25
#: Tracks whose length is at least this fraction of the longest count as equally long when
#: choosing the speaker's track (a detector dropout must not hand the clip to a smaller face).
LENGTH_TIE = 0.9
#: Likewise for the mean box area, before the most central track wins.
AREA_TIE = 0.9
#: Several faces are "persistently present" when at least this fraction of the frames has two or
#: more detections (a face passing through, or a misdetection, does not count; nor does one face
#: split into two tracks by a scene cut, which is never two faces on one frame).
PERSISTENT_FRACTION = 0.5
#: Below this fraction of frames with a *detected* face the reason is "no_face", above it
#: "face_track_gaps".
NO_FACE_FRACTION = 0.5

# --- crop geometry
#: S3FD-like face box from BlazeFace's: (top, bottom) extension as fractions of the box height.
#: BlazeFace's box is square and runs from the eyebrows to the chin; the S3FD boxes that Wav2Lip
#: and syncnet_python crop from run from the forehead to the chin (about 1.2-1.35 times taller
#: than wide). On the corpus renderer the forehead top lies 0.38 box heights above BlazeFace's
#: box and the chin 0.05 below its bottom (48 frames, 12 identities): the top is raised by 0.30
#: (S3FD cuts into the forehead too) and the bottom lowered by 0.05 so the chin stays inside
#: (Wav2Lip's inference pads its boxes by 10 px at the bottom for the same reason).
FACE_BOX_EXTEND = (0.30, 0.05)
#: syncnet_python ``crop_scale`` (cs).
SYNCNET_CROP_SCALE = 0.4
#: syncnet_python pads frames with this grey value before cropping.
SYNCNET_PAD_VALUE = 110
#: FaceMesh indices of the 15 lower face-oval (jaw) points from one jaw angle to the other
#: through the chin (152). SyncVSR's ``FACEMESH_ROI`` = 40 lip + 15 jaw-oval indices; this jaw
#: subset is ours (its exact list is in their code, which we do not copy).
_JAW_OVAL = (58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288)
#: Landmarks whose median/mean place the mouth ROI centre (lips + jaw).
MOUTH_ROI_INDICES = tuple(LIPS_ALL) + _JAW_OVAL
#: Outer-eye-corner distance (landmarks 33-263, pixels) of a face in a 256x256 LRW frame: the
#: scale at which SyncVSR's fixed 112x96 box applies. Ours, from LRW's framing (the face fills
#: about 60 % of the frame width, so ~100 px between the outer eye corners).
MOUTH_REF_INTEROCULAR = 100.0
#: SyncVSR's mouth box at LRW scale: 112 wide, 96 high, centred on the ROI centre.
_MOUTH_BOX_W, _MOUTH_BOX_H = 112, 96
#: VCA-GAN canonical 256x256 frame: target pixels of the outer eye corners (33, 263) and the
#: mouth corners (61, 291). VCA-GAN aligns 98-point landmarks to ``Ref_face.txt`` (an LRW
#: frame); this 4-point reference is ours: mouth centre at (127, 163), the centre of VCA-GAN's
#: crop box (and of LRW's classic 96x96 mouth crop), eye corners 78 px above it and 108 px apart,
#: mouth 62 px wide (adult proportions at LRW scale), so the 136x136 box spans from just below
#: the eyes to below the chin.
VCAGAN_REFERENCE = np.array([[73.0, 85.0], [181.0, 85.0], [96.0, 163.0], [158.0, 163.0]])
_VCAGAN_LANDMARKS = (33, 263, 61, 291)
#: VCA-GAN crop box (left, top, right, bottom) in the aligned 256x256 frame, resized to 112x112.
VCAGAN_MOUTH_BOX = (59, 95, 195, 231)
#: Side of the square region the mesh sees on clips with several faces (see mesh_landmarks).
MESH_REGION_SIZE = 256
VCAGAN_REFERENCE.setflags(write=False)


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
            raise ValueError(f"max_side must be None or >= 64 pixels, got {self.max_side}")
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


class ClipRejected(Exception):
    """A clip that cannot be used: ``reason`` (a :data:`REJECT_REASONS` code), ``detail`` (a
    sentence), ``meta`` (what was learnt before the rejection, e.g. face-track statistics)."""

    def __init__(self, reason: str, detail: str, meta: dict | None = None, frames: int = 0):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.meta = dict(meta or {})
        self.frames = int(frames)


# ============================================================================ face tracks


def _as_box_score(det) -> tuple[np.ndarray, float]:
    """A detection as (box (4,) x0, y0, x1, y1 pixels, score): faces.Detection or (box, score)."""
    if hasattr(det, "box"):
        box, score = det.box, getattr(det, "score", 1.0)
    else:
        box, score = det
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"a detection box must be finite (x0, y0, x1, y1) with x1 > x0, y1 > y0; got {box}")
    return box, float(score)


def box_iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes (0 when they do not overlap)."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


@dataclass
class Track:
    """Detections of one face over time: ``frames`` (increasing indices), ``boxes`` (n, 4)
    pixels, ``scores`` (n,)."""

    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, frame: int, box: np.ndarray, score: float) -> None:
        self.frames.append(int(frame))
        self.boxes.append(np.asarray(box, dtype=np.float64))
        self.scores.append(float(score))

    @property
    def mean_area(self) -> float:
        b = np.asarray(self.boxes)
        return float(np.mean((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))

    def mean_centre(self) -> np.ndarray:
        b = np.asarray(self.boxes)
        return np.column_stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2]).mean(axis=0)


def link_tracks(detections: Sequence[Sequence], iou_threshold: float = TRACK_IOU,
                link_gap: int = TRACK_LINK_GAP) -> list[Track]:
    """Link per-frame detections into tracks by IoU.

    Args:
        detections: for every frame, its detections: :class:`avlib.faces.Detection` objects or
            ``(box, score)`` pairs, box = (x0, y0, x1, y1) pixels.
        iou_threshold: minimum IoU between a detection and the last box of a track.
        link_gap: a track still accepts detections after this many frames without one.

    Each frame's detections are matched greedily, highest IoU first, one detection per track;
    unmatched detections start new tracks. Returns the tracks in order of creation.
    """
    tracks: list[Track] = []
    for t, dets in enumerate(detections):
        parsed = [_as_box_score(d) for d in dets]
        active = [k for k, tr in enumerate(tracks) if t - tr.frames[-1] <= link_gap + 1]
        pairs = sorted(((box_iou(tracks[k].boxes[-1], box), k, j)
                        for k in active for j, (box, _) in enumerate(parsed)), reverse=True)
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        for iou, k, j in pairs:
            if iou < iou_threshold:
                break
            if k in used_tracks or j in used_dets:
                continue
            tracks[k].add(t, *parsed[j])
            used_tracks.add(k)
            used_dets.add(j)
        for j, (box, score) in enumerate(parsed):
            if j not in used_dets:
                track = Track()
                track.add(t, box, score)
                tracks.append(track)
    return tracks


def choose_track(tracks: Sequence[Track], frame_size: tuple[int, int]) -> Track | None:
    """The speaker's track: the longest, then the largest, then the most central.

    "Longest" counts detected frames; tracks within :data:`LENGTH_TIE` (90 %) of the longest
    tie, so a detector dropout does not hand the clip to another face. Among those, the largest
    mean box area wins, again with a :data:`AREA_TIE` tolerance; remaining ties go to the track
    whose mean centre is closest to the frame centre. ``frame_size`` is (width, height).
    Returns None when there is no track.
    """
    if not tracks:
        return None
    longest = max(len(t) for t in tracks)
    candidates = [t for t in tracks if len(t) >= LENGTH_TIE * longest]
    largest = max(t.mean_area for t in candidates)
    candidates = [t for t in candidates if t.mean_area >= AREA_TIE * largest]
    centre = np.array([frame_size[0] / 2.0, frame_size[1] / 2.0])
    return min(candidates, key=lambda t: (float(np.linalg.norm(t.mean_centre() - centre)), -t.mean_area))


def fill_track(track: Track | None, n_frames: int, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes for every frame from a track, and each frame's state.

    Returns ``boxes`` float64 (T, 4) and ``state`` uint8 (T,) with :data:`DETECTED`,
    :data:`INTERPOLATED` or :data:`MISSING`. Interior gaps are filled by linear interpolation of
    the four box coordinates; gaps at the clip's start or end hold the nearest box (there is
    nothing to interpolate towards). Gaps of at most ``max_gap`` frames are INTERPOLATED, longer
    ones are filled the same way but marked MISSING (so crops exist for every frame, and the
    caller decides from the MISSING count whether to keep the clip). Without a track every box
    is NaN and every frame MISSING.
    """
    boxes = np.full((n_frames, 4), np.nan)
    state = np.full(n_frames, MISSING, np.uint8)
    if track is None or len(track) == 0:
        return boxes, state
    frames = np.asarray(track.frames)
    if frames.min() < 0 or frames.max() >= n_frames:
        raise ValueError(f"track frames {frames.min()}..{frames.max()} lie outside 0..{n_frames - 1}")
    known = np.asarray(track.boxes)
    boxes[frames] = known
    state[frames] = DETECTED
    all_t = np.arange(n_frames)
    for c in range(4):
        # np.interp holds the end values outside the known range: the edge policy above.
        boxes[:, c] = np.interp(all_t, frames, known[:, c])
    # Label each run of undetected frames by its length.
    undetected = state != DETECTED
    t = 0
    while t < n_frames:
        if undetected[t]:
            end = t
            while end < n_frames and undetected[end]:
                end += 1
            state[t:end] = INTERPOLATED if end - t <= max_gap else MISSING
            t = end
        else:
            t += 1
    return boxes, state


def _box_to_csz(boxes: np.ndarray) -> np.ndarray:
    """(T, 4) x0, y0, x1, y1 -> (T, 4) centre x, centre y, width, height."""
    return np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                            boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])


def _csz_to_box(csz: np.ndarray) -> np.ndarray:
    half_w, half_h = csz[:, 2] / 2, csz[:, 3] / 2
    return np.column_stack([csz[:, 0] - half_w, csz[:, 1] - half_h, csz[:, 0] + half_w, csz[:, 1] + half_h])


def smooth_boxes(boxes: np.ndarray, window: int, method: str = "mean") -> np.ndarray:
    """Smooth (T, 4) boxes over time: centre x, centre y, width and height are filtered
    separately with a centred window of ``window`` frames (odd), edges replicated.

    ``method="mean"``: moving average, as Wav2Lip's inference (``T=5``; theirs looks forward,
    ``boxes[i:i+T]``, ours is centred so it adds no lead). ``method="median"``: running median, as
    syncnet_python (kernel 13; its ``scipy.signal.medfilt`` pads with zeros, ours replicates the
    edge values so the first and last frames are not pulled towards the smallest box).
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (T, 4), got {b.shape}")
    if int(window) < 1 or int(window) % 2 == 0:
        raise ValueError(f"window must be an odd number of frames >= 1, got {window}")
    if window == 1 or len(b) < 2:
        return b.copy()
    csz = _box_to_csz(b)
    if method == "mean":
        smooth = uniform_filter1d(csz, size=int(window), axis=0, mode="nearest")
    elif method == "median":
        smooth = median_filter(csz, size=(int(window), 1), mode="nearest")
    else:
        raise ValueError(f"method must be 'mean' or 'median', got {method!r}")
    return _csz_to_box(smooth)


def box_jitter(boxes: np.ndarray) -> float:
    """Mean frame-to-frame movement of the box centre, in units of the mean box width (0 for
    a still box; 0.05 = the centre moves 5 % of the face width per frame on average)."""
    b = np.asarray(boxes, dtype=np.float64)
    if len(b) < 2:
        return 0.0
    csz = _box_to_csz(b)
    steps = np.linalg.norm(np.diff(csz[:, :2], axis=0), axis=1)
    width = float(np.mean(csz[:, 2]))
    return float(np.mean(steps) / width) if width > 0 else 0.0


def s3fd_like_box(boxes: np.ndarray) -> np.ndarray:
    """BlazeFace boxes (..., 4) -> S3FD-like forehead-to-chin boxes (see :data:`FACE_BOX_EXTEND`)."""
    b = np.array(boxes, dtype=np.float64)
    h = b[..., 3] - b[..., 1]
    b[..., 1] -= FACE_BOX_EXTEND[0] * h
    b[..., 3] += FACE_BOX_EXTEND[1] * h
    return b


def syncnet_params(boxes: np.ndarray, kernel: int = 13) -> np.ndarray:
    """syncnet_python's per-frame crop parameters from face boxes: (T, 3) = centre x, centre y,
    half-size ``bs = max(w, h) / 2``, each median-filtered over ``kernel`` frames (edges
    replicated, see :func:`smooth_boxes`)."""
    b = np.asarray(boxes, dtype=np.float64)
    params = np.column_stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                              np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2])
    if kernel > 1 and len(b) > 1:
        params = median_filter(params, size=(int(kernel), 1), mode="nearest")
    return params


@dataclass
class FaceTrack:
    """The chosen face over a clip (all boxes in pixels of the decoded frame).

    Attributes:
        raw: (T, 4) S3FD-like boxes, detected or filled (see :func:`fill_track`).
        boxes: (T, 4) ``raw`` smoothed by a moving average (``face96``, mesh region).
        syncnet: (T, 3) SyncNet crop parameters x, y, bs (median-filtered).
        state: (T,) uint8 DETECTED / INTERPOLATED / MISSING.
        stats: face-track statistics (see :func:`track_faces`).
    """

    raw: np.ndarray
    boxes: np.ndarray
    syncnet: np.ndarray
    state: np.ndarray
    stats: dict


def track_faces(detections: Sequence[Sequence], frame_size: tuple[int, int],
                cfg: "PreprocessConfig | None" = None) -> FaceTrack:
    """Link, choose, fill and smooth the face track of a clip; reject unusable clips.

    Args:
        detections: per frame, its detections (``faces.Detection`` or ``(box, score)``).
        frame_size: (width, height) of the frames in pixels.
        cfg: thresholds (``max_gap``, ``max_missing``, ``multi_face``, smoothing windows).

    Returns a :class:`FaceTrack` whose ``stats`` holds: ``frames``, ``detected``,
    ``interpolated``, ``missing`` (frame counts), ``n_faces_max`` (most detections on one frame),
    ``multi_face_frames`` (frames with two or more detections), ``n_tracks``,
    ``mean_score`` (chosen track), ``box_jitter_raw`` / ``box_jitter_smooth`` (:func:`box_jitter`
    before and after smoothing).

    Raises:
        ClipRejected: "no_face" (a face is detected on fewer than half of the frames),
        "face_track_gaps" (more than ``max_missing`` of the frames are MISSING), "multi_face"
        (``multi_face="reject"`` and two or more faces on at least half of the frames).
        ``meta["face_track"]`` holds the statistics so far.
    """
    cfg = cfg or PreprocessConfig()
    n = len(detections)
    if n == 0:
        raise ValueError("detections is empty: a clip needs at least one frame")
    tracks = link_tracks(detections)
    chosen = choose_track(tracks, frame_size)
    raw_mp, state = fill_track(chosen, n, cfg.max_gap)
    counts = [len(d) for d in detections]
    multi_frames = sum(1 for c in counts if c >= 2)
    stats = {
        "frames": n,
        "detected": int(np.sum(state == DETECTED)),
        "interpolated": int(np.sum(state == INTERPOLATED)),
        "missing": int(np.sum(state == MISSING)),
        "n_faces_max": int(max(counts)),
        "multi_face_frames": int(multi_frames),
        "n_tracks": len(tracks),
        "mean_score": round(float(np.mean(chosen.scores)), 4) if chosen is not None else 0.0,
    }
    if stats["detected"] < NO_FACE_FRACTION * n:
        raise ClipRejected("no_face", f"a face was detected on {stats['detected']} of {n} frames "
                           f"(fewer than {NO_FACE_FRACTION:.0%})", {"face_track": stats}, n)
    if stats["missing"] > cfg.max_missing * n:
        raise ClipRejected("face_track_gaps", f"{stats['missing']} of {n} frames have no face after "
                           f"filling gaps of <= {cfg.max_gap} frames (max_missing={cfg.max_missing})",
                           {"face_track": stats}, n)
    if cfg.multi_face == "reject" and multi_frames >= PERSISTENT_FRACTION * n:
        raise ClipRejected("multi_face", f"{multi_frames} of {n} frames show two or more faces "
                           f"(at least {PERSISTENT_FRACTION:.0%}; multi_face='reject')",
                           {"face_track": stats}, n)
    raw = s3fd_like_box(raw_mp)
    boxes = smooth_boxes(raw, cfg.smooth_window, "mean")
    stats["box_jitter_raw"] = round(box_jitter(raw), 5)
    stats["box_jitter_smooth"] = round(box_jitter(boxes), 5)
    return FaceTrack(raw=raw, boxes=boxes, syncnet=syncnet_params(raw, cfg.syncnet_smooth_window),
                     state=state, stats=stats)


def detect_faces(frames: np.ndarray, detector) -> list[list]:
    """BlazeFace detections of every RGB frame (T, H, W, 3): a list (per frame) of
    :class:`avlib.faces.Detection` (highest score first)."""
    return [detector.detect(frame) for frame in frames]


# ============================================================================ face mesh


def _interpolate_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill rows of ``values`` (T, ...) where ``found`` is False: linear between found
    neighbours, held at the ends."""
    out = np.array(values, dtype=np.float64)
    idx = np.flatnonzero(found)
    if len(idx) == len(found) or len(idx) == 0:
        return out
    flat = out.reshape(len(out), -1)
    t = np.arange(len(out))
    for c in range(flat.shape[1]):
        flat[:, c] = np.interp(t, idx, flat[idx, c])
    return flat.reshape(out.shape)


def _mesh_region(box: np.ndarray) -> tuple[float, float, float]:
    """Square region (x0, y0, side) around a face box, twice its larger side."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = 2.0 * max(box[2] - box[0], box[3] - box[1])
    return cx - side / 2, cy - side / 2, side


def mesh_landmarks(frames: np.ndarray, track: FaceTrack, mesher=None,
                   whole_frame: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """FaceMesh landmarks of the tracked face on every frame.

    Args:
        frames: RGB uint8 (T, H, W, 3).
        track: the chosen face (its smoothed boxes check, or place, the mesh).
        mesher: an :class:`avlib.faces.FaceMesher` in tracking mode with fresh state; None makes
            one (11 ms) and closes it.
        whole_frame: True runs the mesh on the full frame (the usual case: one face). False runs
            it on a square region twice the size of the tracked face box, resized to 256x256,
            so that on clips with several faces the mesh (which follows one face) cannot lock
            on another one.

    Returns ``landmarks`` float64 (T, 468, 2) pixels of the frame and ``found`` bool (T,). A
    frame counts as not found when the mesh finds no face or a face whose nose tip (landmark 1)
    lies outside the tracked box enlarged 1.5 times (another face); such frames are filled by
    linear interpolation between found neighbours (held at the ends).
    """
    own = mesher is None
    mesher = FaceMesher(static_image_mode=False) if own else mesher
    n = len(frames)
    marks = np.zeros((n, 468, 2))
    found = np.zeros(n, bool)
    try:
        for t in range(n):
            box = track.boxes[t]
            if whole_frame:
                lm = mesher.landmarks(frames[t])
            else:
                x0, y0, side = _mesh_region(box)
                patch = _resample_region(frames[t], x0, y0, side, side, MESH_REGION_SIZE, MESH_REGION_SIZE, 0)
                lm = mesher.landmarks(patch)
                if lm is not None:
                    lm = lm.astype(np.float64) * (side / MESH_REGION_SIZE) + np.array([x0, y0])
            if lm is None:
                continue
            lm = np.asarray(lm, dtype=np.float64)[:468, :2]
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            half_w, half_h = 0.75 * (box[2] - box[0]), 0.75 * (box[3] - box[1])
            nose = lm[1]
            if abs(nose[0] - cx) <= half_w and abs(nose[1] - cy) <= half_h:
                marks[t] = lm
                found[t] = True
    finally:
        if own:
            mesher.close()
    return _interpolate_missing(marks, found), found


# ============================================================================ crops


def _crop_with_border(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, fill=None) -> np.ndarray:
    """Rows y0:y1, columns x0:x1 of ``img``; outside the image: ``fill`` (a value) or, with
    ``fill=None``, the nearest edge pixel (replicate)."""
    h, w = img.shape[:2]
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty crop window x {x0}:{x1}, y {y0}:{y1}")
    if 0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h:
        return img[y0:y1, x0:x1]
    if fill is None:
        rows = np.clip(np.arange(y0, y1), 0, h - 1)
        cols = np.clip(np.arange(x0, x1), 0, w - 1)
        return img[rows][:, cols]
    out = np.full((y1 - y0, x1 - x0) + img.shape[2:], fill, img.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out


def _resize(img: np.ndarray, width: int, height: int, linear: bool = False) -> np.ndarray:
    """cv2.resize to (width, height): area averaging when shrinking (no aliasing), bilinear when
    enlarging or when ``linear`` (upstream's ``cv2.resize`` default, reproduced on purpose)."""
    if img.shape[1] == width and img.shape[0] == height:
        return np.ascontiguousarray(img)
    shrink = img.shape[1] > width and img.shape[0] > height
    interp = cv2.INTER_AREA if shrink and not linear else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(img), (int(width), int(height)), interpolation=interp)


def _resample_region(img, x0, y0, w, h, out_w, out_h, fill=None) -> np.ndarray:
    """The region (x0, y0, w, h) (float pixels, rounded to whole pixels) resized to out_w x out_h."""
    ix0, iy0 = int(round(x0)), int(round(y0))
    ix1, iy1 = max(ix0 + 1, int(round(x0 + w))), max(iy0 + 1, int(round(y0 + h)))
    return _resize(_crop_with_border(img, ix0, iy0, ix1, iy1, fill), out_w, out_h)


def crop_face96(frame_rgb: np.ndarray, box) -> np.ndarray:
    """Wav2Lip / VocaLiST face crop: uint8 (96, 96, 3) **BGR**.

    Used by Wav2Lip (generator, expert SyncNet, visual discriminator) and VocaLiST /
    MTDVocaLiST (lower half, rows 48:96, of 5 frames = the (15, 48, 96) input). ``box`` is the
    smoothed S3FD-like face box (forehead to chin, :data:`FACE_BOX_EXTEND`) in pixels. As in
    Wav2Lip's ``preprocess.py`` the box is clipped to the frame and truncated to whole pixels
    (no padding), the crop resized to 96x96 bilinearly (their ``cv2.resize`` at load time), and
    the channels are BGR as ``cv2.imread`` gives them.
    """
    h, w = frame_rgb.shape[:2]
    x0 = int(min(max(box[0], 0), w - 2))
    y0 = int(min(max(box[1], 0), h - 2))
    x1 = int(min(max(box[2], x0 + 2), w))
    y1 = int(min(max(box[3], y0 + 2), h))
    crop = _resize(frame_rgb[y0:y1, x0:x1], 96, 96, linear=True)
    return np.ascontiguousarray(crop[..., ::-1])


def syncnet_window(x: float, y: float, bs: float, crop_scale: float = SYNCNET_CROP_SCALE) -> tuple[int, int, int, int]:
    """syncnet_python's crop window for a face centred at (x, y) with half-size ``bs``.

    The frame is padded by ``bsi = int(bs (1 + 2 cs))`` pixels of value 110 on every side; in the
    padded frame the centre is (x + bsi, y + bsi) and the window is rows
    ``int(my - bs) : int(my + bs (1 + 2 cs))``, columns ``int(mx - bs (1 + cs)) : int(mx + bs (1 + cs))``
    (a square of side 2 bs (1 + cs), reaching further below the face centre than above it, so the
    chin and neck are in). Returns (top, bottom, left, right) in **unpadded** frame coordinates
    (subtract-``bsi`` of the padded indices), which may lie outside the frame.
    """
    cs = float(crop_scale)
    bsi = int(bs * (1 + 2 * cs))
    my, mx = y + bsi, x + bsi
    top, bottom = int(my - bs), int(my + bs * (1 + 2 * cs))
    left, right = int(mx - bs * (1 + cs)), int(mx + bs * (1 + cs))
    return top - bsi, bottom - bsi, left - bsi, right - bsi


def crop_syncnet(frame_rgb: np.ndarray, x: float, y: float, bs: float, size: int = 224) -> np.ndarray:
    """SyncNet v2 face crop (syncnet_python ``run_pipeline.py`` geometry): uint8 (size, size, 3) **BGR**.

    Used by SyncNet v2 and the LSE-D / LSE-C metrics. (x, y, bs) come from
    :func:`syncnet_params` (median-filtered centre and half-size of the S3FD-like box); the
    window is :func:`syncnet_window`; pixels outside the frame take the pad value 110 (identical
    to padding the frame by ``bsi`` and slicing); resized bilinearly (``cv2.resize`` default) to
    ``size`` (224 for the released model). BGR because syncnet_python reads frames with OpenCV.
    """
    top, bottom, left, right = syncnet_window(x, y, bs)
    crop = _crop_with_border(frame_rgb, left, top, right, bottom, SYNCNET_PAD_VALUE)
    crop = _resize(crop, size, size, linear=True)
    return np.ascontiguousarray(crop[..., ::-1])


def mouth_roi_centre(landmarks: np.ndarray) -> tuple[float, float]:
    """SyncVSR's mouth ROI centre from 468 FaceMesh landmarks (pixels).

    x = (median_ROI(x) + mean_ROI(x) + min_all(x) + max_all(x)) / 4 and
    y = (median_ROI(y) + mean_ROI(y)) / 2, where ROI = lips + jaw (:data:`MOUTH_ROI_INDICES`) and
    "all" = every landmark (the face's horizontal extent pulls x towards the face's middle, which
    steadies the box when the head turns).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    roi = lm[list(MOUTH_ROI_INDICES)]
    cx = (np.median(roi[:, 0]) + roi[:, 0].mean() + lm[:, 0].min() + lm[:, 0].max()) / 4
    cy = (np.median(roi[:, 1]) + roi[:, 1].mean()) / 2
    return float(cx), float(cy)


def crop_mouth96(frame_rgb: np.ndarray, centre: tuple[float, float], scale: float) -> np.ndarray:
    """LRW-style mouth ROI: uint8 (96, 96) **gray** (ITU-R 601 luma, as JPEG/TurboJPEG gray).

    Used for LRW word lip reading (SyncVSR's video model; the classic LRW front-ends take a
    centred 88x88 crop of it). SyncVSR crops a 112 (W) x 96 (H) box around
    :func:`mouth_roi_centre` on 256x256 LRW frames, shifted inside the frame when it would leave
    it, and its evaluation centre-crops 96x96. Here the box is scaled by ``scale`` = the face
    size relative to LRW (outer-eye-corner distance / :data:`MOUTH_REF_INTEROCULAR`), resized to
    112x96 and centre-cropped to 96x96 (columns 8:104), so every dataset gets LRW's framing.
    Boxes larger than the frame repeat the edge pixels.
    """
    h, w = frame_rgb.shape[:2]
    bw, bh = _MOUTH_BOX_W * scale, _MOUTH_BOX_H * scale
    x0, y0 = centre[0] - bw / 2, centre[1] - bh / 2
    # SyncVSR shifts an out-of-frame box back inside (when it fits) instead of padding.
    if bw <= w:
        x0 = min(max(x0, 0.0), w - bw)
    if bh <= h:
        y0 = min(max(y0, 0.0), h - bh)
    box = _resample_region(frame_rgb, x0, y0, bw, bh, _MOUTH_BOX_W, _MOUTH_BOX_H)
    off = (_MOUTH_BOX_W - 96) // 2
    return cv2.cvtColor(np.ascontiguousarray(box[:, off:off + 96]), cv2.COLOR_RGB2GRAY)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
    ``src`` (N, 2) onto ``dst`` (N, 2) (Umeyama 1991). Returns the (2, 3) matrix for
    ``cv2.warpAffine``."""
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.shape != d.shape or s.ndim != 2 or s.shape[1] != 2 or len(s) < 2:
        raise ValueError(f"src and dst must be matching (N >= 2, 2) point sets, got {s.shape} and {d.shape}")
    mu_s, mu_d = s.mean(axis=0), d.mean(axis=0)
    s0, d0 = s - mu_s, d - mu_d
    var_s = float((s0 ** 2).sum() / len(s))
    if var_s <= 0:
        raise ValueError("src points coincide: no similarity transform")
    u, sig, vt = np.linalg.svd(d0.T @ s0 / len(s))
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / var_s)
    t = mu_d - scale * rot @ mu_s
    return np.column_stack([scale * rot, t])


def vcagan_matrix(landmarks: np.ndarray) -> np.ndarray:
    """(2, 3) similarity mapping a frame onto VCA-GAN's 256x256 canonical face
    (:data:`VCAGAN_REFERENCE`, from the eye and mouth corners of 468 FaceMesh landmarks)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return similarity_transform(lm[list(_VCAGAN_LANDMARKS)], VCAGAN_REFERENCE)


def crop_vcagan112(frame_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """VCA-GAN mouth crop: uint8 (112, 112) **gray** (ITU-R 601 luma, torchvision's Grayscale).

    Used by VCA-GAN (lip-to-speech, GRID/LRS). VCA-GAN aligns each frame to a 256x256
    reference face by a similarity transform, crops (left 59, top 95, right 195, bottom 231) =
    136x136 around the mouth, resizes to 112x112 and converts to grayscale. Here the transform
    comes from four FaceMesh points (:func:`vcagan_matrix`; our reference, not the repository's
    98-point file); the warp writes the 136x136 crop directly (the same pixels as warping the
    whole 256x256 frame and slicing), black outside the source frame as ``cv2.warpAffine``.
    """
    m = vcagan_matrix(landmarks)
    left, top, right, bottom = VCAGAN_MOUTH_BOX
    m[:, 2] -= (left, top)
    crop = cv2.warpAffine(np.ascontiguousarray(frame_rgb), m, (right - left, bottom - top),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.cvtColor(_resize(crop, 112, 112), cv2.COLOR_RGB2GRAY)


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
    """Decode a :class:`avlib.datasets.ClipItem`: RGB uint8 (T, H, W, 3) at 25 fps, float32
    16 kHz mono audio (not yet fitted to the frames), and facts about the source.

    Sources: a media file (audio from ``item.audio`` when set, else from the same file), or an
    Acappella JPEG folder (``extra["frames_dir"]``) with its wav. Raises MediaError ("missing",
    "not_media", "corrupt", "truncated", "no_video", "no_audio", "too_large").
    """
    opts = {"max_pixels": cfg.max_pixels, "max_side": cfg.max_side}
    if item.extra.get("frames_dir"):
        from avlib.datasets import DatasetError, list_jpeg_frames, read_jpeg_folder

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
    writer.write_clip(item.id, meta, streams, fitted, features, lips,
                      {name: CROP_ORDERS[name] for name in streams})
    return n


def preprocess_clip(item, writer, cfg: PreprocessConfig | None = None, detector=None, mesher=None) -> dict:
    """Preprocess one clip into the store; never raises for a bad clip.

    Args:
        item: a :class:`avlib.datasets.ClipItem`.
        writer: an :class:`avlib.store.StoreWriter`.
        cfg: the settings (default :class:`PreprocessConfig`).
        detector: an :class:`avlib.faces.FaceDetector` to reuse (one per worker); None makes one.
        mesher: a fresh tracking-mode :class:`avlib.faces.FaceMesher` for this clip; None makes
            one per clip (11 ms), because tracking state must not carry over from the last clip.

    Every failure is recorded with ``writer.reject(id, reason, detail, meta)``: media reasons of
    :class:`avlib.media.MediaError`, "too_short", "no_face", "face_track_gaps", "multi_face",
    and "error" (any other exception, a bug: detail = the exception's last line) — then the
    caller's loop goes on. Transcript problems found while listing (``item.problems``, e.g.
    ``transcript_not_utf8``) are recorded in the metadata, not rejected. Only interrupts
    (KeyboardInterrupt, SystemExit) propagate; the store then holds no part of this clip.

    Returns ``{"id", "status": "ok"|"rejected", "reason", "detail", "seconds", "frames"}``.
    """
    cfg = cfg or PreprocessConfig()
    t0 = time.perf_counter()
    status, reason, detail, frames = "ok", None, "", 0
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
    except ClipRejected as rej:
        status, reason, detail, frames = "rejected", rej.reason, rej.detail, rej.frames
        meta.update(rej.meta)
    except MediaError as err:
        status, reason, detail = "rejected", err.reason, str(err)
        if reason not in REJECT_REASONS:
            reason = "corrupt"
    except Exception as err:  # a bug inside one clip must not end a dataset run
        status, reason = "rejected", "error"
        detail = traceback.format_exception_only(type(err), err)[-1].strip()
    if status == "rejected":
        meta["preprocess_seconds"] = round(time.perf_counter() - t0, 4)
        writer.reject(item.id, reason, detail, meta)
    return {"id": item.id, "status": status, "reason": reason, "detail": detail,
            "seconds": round(time.perf_counter() - t0, 4), "frames": int(frames)}


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
    from avlib.store import StoreWriter

    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would oversubscribe
    cfg = PreprocessConfig.from_dict(cfg_dict)
    _WORKER.update(cfg=cfg, writer=StoreWriter(out, cfg.to_dict(), cfg.jpeg_quality),
                   detector=make_detector(cfg))


def _work(item) -> dict:
    return preprocess_clip(item, _WORKER["writer"], _WORKER["cfg"], _WORKER["detector"])


def preprocess_dataset(items: Iterable, out: str | os.PathLike, cfg: PreprocessConfig | None = None,
                       workers: int = 1, shard: str | tuple[int, int] | None = None,
                       progress: bool = True) -> dict:
    """Preprocess clips into the store at ``out``: resumable, shardable, parallel.

    Args:
        items: :class:`avlib.datasets.ClipItem` records (e.g. from ``list_clips``).
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
    behind an "error" rejection), delete its ``rejected/<safe id>.json`` and rerun.

    Returns the summary: ``items`` (after sharding), ``processed`` (written now), ``skipped``
    (already done), ``rejected`` (count by reason, this run), ``frames``, ``hours`` (video
    processed now), ``seconds``, ``frames_per_s``, ``clips_per_s``, ``workers``, ``shard``, and
    ``manifest``: the store manifest from :meth:`avlib.store.StoreWriter.finalize`.
    """
    from avlib.progress import progress_bar

    from avlib.store import StoreWriter

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
               "frames": 0, "workers": int(workers),
               "shard": None if shard_t is None else f"{shard_t[0]}/{shard_t[1]}"}
    t0 = time.perf_counter()
    bar = progress_bar(len(todo), "preprocess", "clip", disable=not progress)

    def account(result: dict) -> None:
        summary["frames"] += result["frames"]
        if result["status"] == "ok":
            summary["processed"] += 1
        else:
            summary["rejected"][result["reason"]] = summary["rejected"].get(result["reason"], 0) + 1
        bar.update()

    try:
        if int(workers) == 1 or len(todo) <= 1:
            detector = make_detector(cfg)
            try:
                for item in todo:
                    account(preprocess_clip(item, writer, cfg, detector))
            finally:
                detector.close()
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ctx.Pool(min(int(workers), len(todo)), initializer=_init_worker,
                          initargs=(str(out), cfg.to_dict())) as pool:
                for result in pool.imap_unordered(_work, todo, chunksize=1):
                    account(result)
    finally:
        bar.close()
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
STORE_CODE = ("avlib.preprocess", "avlib.faces", "avlib.media", "avlib.audio", "avlib.store",
              "avlib.datasets")


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
            chapter 00_corpus recorded); any other name of :data:`avlib.datasets.DATASETS` reads
            that real dataset from ``data_root``.
        data_root: the dataset folder (required for real datasets).
        kinds: corpus only: keep these kinds of clips (``"grid"``, ``"lrw"``, ``"sync"``); None
            keeps every kind.
        split, split_file: restrict the clips as :func:`avlib.datasets.list_clips` does.
        policy: ``ckpt_policy``: "load" (the store must exist), "train" (remake it), "auto".
        workers, progress: as :func:`preprocess_dataset`.
        record: remember the store with :func:`avlib.store.record_current`, so that later
            chapters get it from :func:`avlib.store.find_store` ``(artifacts_root)``.

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
    """
    from avlib.artifacts import produce_or_load
    from avlib.datasets import CORPUS_KINDS, DATASETS, list_clips
    from avlib.store import record_current

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
                             "(see avlib.datasets for its layout)")
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
        manifest = summary.pop("manifest")
        summary.update(store=manifest["summary"], dataset=name, source=str(source), kinds=kinds)
        return summary

    folder = produce_or_load("store", key, produce, policy, artifacts_root,
                             producer="01_preprocessing", resumable=True, code=STORE_CODE)
    if record:
        record_current(artifacts_root, folder)
    return folder


# ============================================================================ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``avlib preprocess``."""
    from avlib.datasets import DATASETS

    defaults = PreprocessConfig()
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="dataset layout of --root")
    parser.add_argument("--root", required=True, help="dataset folder (see avlib.datasets)")
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
                        help="downscale frames whose longer side exceeds this; 0 = never (then huge "
                             "frames are rejected)")
    parser.add_argument("--jpeg-quality", type=int, default=defaults.jpeg_quality)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``avlib preprocess``; prints the summary as JSON. Returns 0, or 2 for bad arguments."""
    from avlib.datasets import DatasetError, list_clips
    from avlib.store import StoreError

    try:
        cfg = PreprocessConfig(crops=tuple(args.crops), features=tuple(args.features),
                               syncnet_size=args.syncnet_size, multi_face=args.multi_face,
                               max_side=args.max_side or None, jpeg_quality=args.jpeg_quality)
        shard = parse_shard(args.shard)
        items = list_clips(args.dataset, args.root, split=args.split, split_file=args.split_file)
        for skipped in getattr(items, "skipped", [])[:20]:
            print(f"skipped {skipped.entry}: {skipped.reason} ({skipped.detail})", file=sys.stderr)
        summary = preprocess_dataset(items, args.out, cfg, workers=args.workers, shard=shard,
                                     progress=not args.no_progress)
    except (ValueError, DatasetError, StoreError) as err:
        print(f"avlib preprocess: {err}", file=sys.stderr)
        return 2
    manifest = summary.pop("manifest")
    summary["store"] = {k: manifest["summary"][k] for k in ("n_clips", "n_rejected", "hours", "rejections")}
    print(json.dumps(summary, indent=2))
    return 0
