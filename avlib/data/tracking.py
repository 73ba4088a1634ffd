"""Face tracks: BlazeFace detections linked into tracks, the speaker's track chosen, gaps
filled and boxes smoothed; the face mesh on the tracked face. Step 2 and 3 of
:mod:`avlib.data.preprocess`; :class:`ClipRejected` is how a step says a clip cannot be used."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from avlib.data.crops import resample_region
from avlib.faces import FaceMesher

if TYPE_CHECKING:
    from avlib.data.preprocess import PreprocessConfig

__all__ = [
    "DETECTED",
    "INTERPOLATED",
    "MISSING",
    "FACE_BOX_EXTEND",
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
]

#: Per-frame face-track state (``face_state`` feature).
DETECTED, INTERPOLATED, MISSING = 0, 1, 2

# --- tracking constants
#: S3FD-like face box from BlazeFace's: (top, bottom) extension as fractions of the box height.
#: BlazeFace's box is square and runs from the eyebrows to the chin; the S3FD boxes that Wav2Lip
#: and syncnet_python crop from run from the forehead to the chin (about 1.2-1.35 times taller
#: than wide). On the corpus renderer the forehead top lies 0.38 box heights above BlazeFace's
#: box and the chin 0.05 below its bottom (48 frames, 12 identities): the top is raised by 0.30
#: (S3FD cuts into the forehead too) and the bottom lowered by 0.05 so the chin stays inside
#: (Wav2Lip's inference pads its boxes by 10 px at the bottom for the same reason).
FACE_BOX_EXTEND = (0.30, 0.05)
#: Side of the square region the mesh sees on clips with several faces (see mesh_landmarks).
MESH_REGION_SIZE = 256
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
    if cfg is None:
        from avlib.data.preprocess import PreprocessConfig  # the pipeline's settings

        cfg = PreprocessConfig()
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
                patch = resample_region(frames[t], x0, y0, side, side, MESH_REGION_SIZE, MESH_REGION_SIZE, 0)
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

