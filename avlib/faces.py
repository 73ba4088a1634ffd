"""Face detection and face mesh on RGB frames with mediapipe 0.10.14 (legacy solutions, CPU).

Two thin wrappers over the models bundled in the ``mediapipe==0.10.14`` wheel (no download):

- :class:`FaceDetector` wraps ``mp.solutions.face_detection`` (BlazeFace) and returns
  :class:`Detection` records in **pixel** coordinates.
- :class:`FaceMesher` wraps ``mp.solutions.face_mesh`` and returns the 468 (or 478 with
  ``refine_landmarks=True``: 10 extra iris points) mesh landmarks as an ``(N, 2)`` float array
  in **pixels** (x to the right, y down).

Both take ``uint8`` RGB images of shape ``(H, W, 3)`` (avlib decodes video to RGB; OpenCV
images are BGR and must be converted first). Both are context managers; use one
:class:`FaceMesher` per video in tracking mode (``static_image_mode=False``), because tracking
reuses the previous frame's landmarks to crop the next frame.

Lip landmark indices are derived from mediapipe's own ``FACEMESH_LIPS`` connection set, which
holds two closed loops: the outer lip contour (through the mouth corners 61 and 291) and the
inner lip contour (through 78 and 308). The contours are ordered like the renderer's lip
landmarks (:mod:`avlib.corpus.render`): start at the mouth corner on the image left of a frontal
face (61, the subject's right corner), run along the upper lip to the other corner, then back
along the lower lip.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

import mediapipe as mp

_face_detection = mp.solutions.face_detection
_face_mesh = mp.solutions.face_mesh

#: Mouth corners on the outer lip contour: 61 = subject's right (image left on a frontal face),
#: 291 = subject's left.
MOUTH_CORNERS: tuple[int, int] = (61, 291)
#: Inner-lip midpoints: 13 = lower edge of the upper lip, 14 = upper edge of the lower lip.
UPPER_INNER_LIP_MID = 13
LOWER_INNER_LIP_MID = 14
#: Outer-lip midpoints: 0 = top of the upper lip, 17 = bottom of the lower lip.
UPPER_OUTER_LIP_MID = 0
LOWER_OUTER_LIP_MID = 17
#: Corners of the inner lip contour (subject's right, subject's left).
INNER_MOUTH_CORNERS: tuple[int, int] = (78, 308)
#: Outer eye corners (subject's right eye 33, subject's left eye 263): their distance is the
#: face-size unit used by :func:`lip_gap`; it does not change with articulation.
OUTER_EYE_CORNERS: tuple[int, int] = (33, 263)

N_MESH_LANDMARKS = 468
N_MESH_LANDMARKS_REFINED = 478


def _lip_loops(edges: frozenset) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Order the two closed loops of an undirected edge set.

    Returns (outer, inner), each starting at its image-left corner (61 or 78), going through
    the upper midpoint (0 or 13) to the other corner and back along the lower lip.
    """
    adjacency: dict[int, list[int]] = {}
    for a, b in edges:
        adjacency.setdefault(a, []).append(b)
        adjacency.setdefault(b, []).append(a)
    if any(len(n) != 2 for n in adjacency.values()):
        raise RuntimeError("mediapipe FACEMESH_LIPS is not a union of simple loops; "
                           "this wrapper expects mediapipe==0.10.14")

    def walk(start: int, upper_mid: int, end: int) -> tuple[int, ...]:
        # Go round the loop from `start` in the direction that meets the upper-lip midpoint
        # before the opposite corner `end`, so the upper lip comes before the lower lip.
        for first in adjacency[start]:
            order = [start, first]
            while order[-1] != start:
                a, b = adjacency[order[-1]]
                order.append(a if a != order[-2] else b)
            order.pop()
            if upper_mid in order and end in order and order.index(upper_mid) < order.index(end):
                return tuple(order)
        raise RuntimeError(f"landmarks {upper_mid}, {end} not found on the lip loop through {start}")

    outer = walk(MOUTH_CORNERS[0], UPPER_OUTER_LIP_MID, MOUTH_CORNERS[1])
    inner = walk(INNER_MOUTH_CORNERS[0], UPPER_INNER_LIP_MID, INNER_MOUTH_CORNERS[1])
    return outer, inner


#: Outer lip contour (20 indices), ordered: 61, upper lip ..., 291, lower lip ... (see module doc).
LIPS_OUTER: tuple[int, ...]
#: Inner lip contour (20 indices), ordered: 78, upper inner edge ..., 308, lower inner edge ....
LIPS_INNER: tuple[int, ...]
LIPS_OUTER, LIPS_INNER = _lip_loops(_face_mesh.FACEMESH_LIPS)
#: All lip landmarks, outer contour then inner contour (40 indices).
LIPS_ALL: tuple[int, ...] = LIPS_OUTER + LIPS_INNER



def _nodes(edges: frozenset) -> set[int]:
    return {i for edge in edges for i in edge}


# The fixed indices above must agree with mediapipe's own connection sets (checked at import,
# so that another mediapipe version fails loudly instead of measuring the wrong points).
if not (set(MOUTH_CORNERS) <= set(LIPS_OUTER) and set(INNER_MOUTH_CORNERS) <= set(LIPS_INNER)
        and {UPPER_INNER_LIP_MID, LOWER_INNER_LIP_MID} <= set(LIPS_INNER)
        and OUTER_EYE_CORNERS[0] in _nodes(_face_mesh.FACEMESH_RIGHT_EYE)
        and OUTER_EYE_CORNERS[1] in _nodes(_face_mesh.FACEMESH_LEFT_EYE)):
    raise RuntimeError("mediapipe face-mesh connection sets do not match the landmark indices "
                       "of avlib.faces; install mediapipe==0.10.14")


def check_rgb_frame(frame: np.ndarray) -> np.ndarray:
    """Validate an RGB image and return it C-contiguous.

    Raises ValueError unless ``frame`` is a numpy ``uint8`` array of shape (H, W, 3).
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"expected a numpy uint8 RGB image of shape (H, W, 3), got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 RGB image, got dtype {frame.dtype}; convert float images in [0, 1] "
            "with (np.clip(x, 0, 1) * 255).round().astype(np.uint8)")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"expected an RGB image of shape (H, W, 3), got shape {frame.shape}; convert grey "
            "images with np.repeat(x[..., None], 3, axis=2) and drop alpha with x[..., :3]")
    if frame.shape[0] < 8 or frame.shape[1] < 8:
        raise ValueError(f"image of shape {frame.shape} is too small for face detection")
    return np.ascontiguousarray(frame)


@dataclass(frozen=True)
class Detection:
    """One detected face, in pixels of the input frame.

    box: (x0, y0, x1, y1) float pixels (may extend slightly outside the frame).
    score: detector confidence in [0, 1].
    keypoints: (6, 2) float pixels: subject's right eye, left eye, nose tip, mouth centre,
        right ear tragion, left ear tragion (mediapipe ``FaceKeyPoint`` order).
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)


class _Solution:
    """Shared open/close and context-manager logic of the two wrappers."""

    _solution = None

    def close(self) -> None:
        """Release the mediapipe graph; the object cannot be used afterwards."""
        if self._solution is not None:
            self._solution.close()
            self._solution = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: mediapipe may already be gone
            pass

    def _process(self, frame: np.ndarray):
        """Run the graph on a frame already checked by :func:`check_rgb_frame`."""
        if self._solution is None:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new one")
        with warnings.catch_warnings():
            # mediapipe 0.10.14 calls a protobuf API deprecated in protobuf 4: harmless noise
            warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype", category=UserWarning)
            return self._solution.process(frame)

    def _start_quietly(self, make_solution) -> None:
        """Build the graph and run it once on a blank frame with fd 2 silenced, so that its
        start-up logging (emitted by graph threads until the first frame is done) stays out of
        notebooks. A blank frame holds no face, so a tracking mesher starts from no state."""
        with _native_stderr_silenced():
            self._solution = make_solution()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype", category=UserWarning)
                self._solution.process(np.zeros((64, 64, 3), np.uint8))


@contextlib.contextmanager
def _native_stderr_silenced():
    """Silence file descriptor 2 while a mediapipe graph is built or started.

    Its C++ side (TFLite, absl) prints INFO/W lines ("Created TensorFlow Lite XNNPACK delegate",
    "Feedback manager requires a model with a single signature") straight to fd 2, ignoring
    Python's logging and GLOG variables; in notebooks they would land in every chapter's output.
    Only the start-up is silenced: errors while processing real frames still show.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceDetector(_Solution):
    """BlazeFace detector (``mp.solutions.face_detection``).

    model_selection: 0 = short-range model (faces within ~2 m, the right one for face-centred
        crops such as LRS2/LRW), 1 = full-range model.
    min_confidence: detections scoring below this are dropped.
    """

    def __init__(self, model_selection: int = 0, min_confidence: float = 0.5):
        if model_selection not in (0, 1):
            raise ValueError(f"model_selection must be 0 (short range) or 1 (full range), got {model_selection}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}")
        self.model_selection = model_selection
        self.min_confidence = float(min_confidence)
        self._start_quietly(lambda: _face_detection.FaceDetection(
            min_detection_confidence=self.min_confidence, model_selection=model_selection))

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 frame (H, W, 3), highest score first (empty list if none)."""
        frame = check_rgb_frame(frame_rgb)
        h, w = frame.shape[:2]
        result = self._process(frame)
        found: list[Detection] = []
        for det in result.detections or ():
            rel = det.location_data.relative_bounding_box
            box = (rel.xmin * w, rel.ymin * h, (rel.xmin + rel.width) * w, (rel.ymin + rel.height) * h)
            keypoints = np.array([[k.x * w, k.y * h] for k in det.location_data.relative_keypoints],
                                 dtype=np.float32).reshape(-1, 2)
            found.append(Detection(box=tuple(float(v) for v in box), score=float(det.score[0]),
                                   keypoints=keypoints))
        found.sort(key=lambda d: d.score, reverse=True)
        return found


class FaceMesher(_Solution):
    """Face mesh (``mp.solutions.face_mesh``) for one face.

    static_image_mode: True runs the face detector on every frame (independent images, ~9 ms);
        False tracks landmarks from frame to frame (video, 2-4 ms): use one mesher per clip.
    refine_landmarks: True adds the 10 iris landmarks (478 points) and refines eyes and lips.
    """

    def __init__(self, static_image_mode: bool = False, refine_landmarks: bool = False,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        for name, value in (("min_detection_confidence", min_detection_confidence),
                            ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        self.static_image_mode = bool(static_image_mode)
        self.refine_landmarks = bool(refine_landmarks)
        self._start_quietly(lambda: _face_mesh.FaceMesh(
            static_image_mode=self.static_image_mode, max_num_faces=1,
            refine_landmarks=self.refine_landmarks,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence))

    @property
    def n_landmarks(self) -> int:
        return N_MESH_LANDMARKS_REFINED if self.refine_landmarks else N_MESH_LANDMARKS

    def landmarks(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """Mesh landmarks of an RGB uint8 frame (H, W, 3) as float32 pixels (N, 2), or None.

        N is 468, or 478 with ``refine_landmarks``. Returns None when no face is found.
        """
        frame = check_rgb_frame(frame_rgb)
        result = self._process(frame)
        if not result.multi_face_landmarks:
            return None
        h, w = frame.shape[:2]
        points = result.multi_face_landmarks[0].landmark
        xy = np.array([(p.x, p.y) for p in points], dtype=np.float32)
        xy *= np.array([w, h], dtype=np.float32)
        return xy


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] < 2 or lm.shape[0] not in (N_MESH_LANDMARKS, N_MESH_LANDMARKS_REFINED):
        raise ValueError(f"expected face-mesh landmarks of shape (468, 2) or (478, 2), got {lm.shape}")
    return lm[:, :2]


def mouth_width(landmarks: np.ndarray) -> float:
    """Distance between the mouth corners 61 and 291, in the landmarks' unit (pixels)."""
    lm = _check_landmarks(landmarks)
    return float(np.linalg.norm(lm[MOUTH_CORNERS[0]] - lm[MOUTH_CORNERS[1]]))


def interocular_distance(landmarks: np.ndarray) -> float:
    """Distance between the outer eye corners 33 and 263 (pixels): a face-size unit."""
    lm = _check_landmarks(landmarks)
    return float(np.linalg.norm(lm[OUTER_EYE_CORNERS[0]] - lm[OUTER_EYE_CORNERS[1]]))


def lip_gap(landmarks: np.ndarray, normalise: str = "interocular") -> float:
    """Inner-lip opening: distance between landmarks 13 and 14, normalised.

    normalise: "interocular" (default) divides by the outer-eye-corner distance (33-263), a face
        size that articulation does not change, so the value is comparable across frames whatever
        the lips do (about 0 closed, ~0.3-0.5 for a wide-open mouth); "mouth_width" divides by
        the 61-291 corner distance (a mouth aspect ratio: it grows when rounding narrows the
        mouth); "none" returns pixels.
    """
    lm = _check_landmarks(landmarks)
    gap = float(np.linalg.norm(lm[UPPER_INNER_LIP_MID] - lm[LOWER_INNER_LIP_MID]))
    if normalise == "none":
        return gap
    if normalise == "interocular":
        unit = interocular_distance(lm)
    elif normalise == "mouth_width":
        unit = mouth_width(lm)
    else:
        raise ValueError(f"normalise must be 'interocular', 'mouth_width' or 'none', got {normalise!r}")
    if unit <= 0:
        raise ValueError("degenerate landmarks: normalising distance is zero")
    return gap / unit
