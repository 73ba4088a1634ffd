"""Tests of the mediapipe face detection / face mesh wrapper (avlib.faces)."""
from __future__ import annotations

import numpy as np
import pytest

import mediapipe as mp

from avlib import faces
from avlib.corpus.mouth import INDEX, N_MOUTH
from avlib.corpus.render import FaceIdentity, render_frame


def _mouth(jaw: float = 0.0) -> np.ndarray:
    m = np.zeros(N_MOUTH)
    m[INDEX["jaw_open"]] = jaw
    return m


@pytest.fixture(scope="module")
def face_frames() -> dict[str, np.ndarray]:
    """Frontal rendered faces (160x160 RGB) with a closed and a wide-open mouth."""
    identity = FaceIdentity()
    return {"closed": render_frame(identity, _mouth(0.0)).frame,
            "open": render_frame(identity, _mouth(1.0)).frame}


def test_lip_loops_follow_mediapipe_connections():
    for loop, corners, upper_mid, lower_mid in (
            (faces.LIPS_OUTER, faces.MOUTH_CORNERS, faces.UPPER_OUTER_LIP_MID, faces.LOWER_OUTER_LIP_MID),
            (faces.LIPS_INNER, faces.INNER_MOUTH_CORNERS, faces.UPPER_INNER_LIP_MID, faces.LOWER_INNER_LIP_MID)):
        assert len(loop) == 20 and len(set(loop)) == 20
        # same layout as the renderer's lip landmarks: corner, upper mid, corner, lower mid
        assert (loop[0], loop[5], loop[10], loop[15]) == (corners[0], upper_mid, corners[1], lower_mid)
    edges = {frozenset(e) for e in mp.solutions.face_mesh.FACEMESH_LIPS}
    loop_edges = {frozenset((lp[i], lp[(i + 1) % 20])) for lp in (faces.LIPS_OUTER, faces.LIPS_INNER)
                  for i in range(20)}
    assert loop_edges == edges
    assert faces.LIPS_ALL == faces.LIPS_OUTER + faces.LIPS_INNER


@pytest.mark.parametrize("bad", [
    np.zeros((64, 64, 3), np.float32),
    np.zeros((64, 64), np.uint8),
    np.zeros((64, 64, 4), np.uint8),
    np.zeros((4, 4, 3), np.uint8),
    [[0, 0, 0]],
])
def test_bad_frames_raise_value_error(bad):
    with faces.FaceDetector() as detector, pytest.raises(ValueError, match="RGB|uint8|small"):
        detector.detect(bad)
    with faces.FaceMesher(static_image_mode=True) as mesher, pytest.raises(ValueError, match="RGB|uint8|small"):
        mesher.landmarks(bad)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="model_selection"):
        faces.FaceDetector(model_selection=2)
    with pytest.raises(ValueError, match="min_confidence"):
        faces.FaceDetector(min_confidence=1.5)
    with pytest.raises(ValueError, match="min_tracking_confidence"):
        faces.FaceMesher(min_tracking_confidence=-0.1)


def test_detector_finds_rendered_face_in_pixels(face_frames):
    frame = face_frames["closed"]
    with faces.FaceDetector() as detector:
        found = detector.detect(frame)
        assert detector.detect(np.full((160, 160, 3), 128, np.uint8)) == []
    assert len(found) == 1
    det = found[0]
    assert 0.5 <= det.score <= 1.0
    x0, y0, x1, y1 = det.box
    assert 30 < det.width < 160 and 30 < det.height < 160
    assert x0 < 80 < x1 and y0 < 80 < y1
    assert det.keypoints.shape == (6, 2) and det.keypoints.dtype == np.float32
    right_eye, left_eye, nose, mouth = det.keypoints[:4]
    # subject's right eye appears on the image left of a frontal face; mouth below the nose
    assert right_eye[0] < left_eye[0]
    assert nose[1] < mouth[1]


def test_detector_closed_raises(face_frames):
    detector = faces.FaceDetector()
    detector.close()
    detector.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        detector.detect(face_frames["closed"])


def test_mesh_landmarks_and_lip_measures(face_frames):
    with faces.FaceMesher(static_image_mode=True) as mesher:
        closed = mesher.landmarks(face_frames["closed"])
        opened = mesher.landmarks(face_frames["open"])
        assert mesher.landmarks(np.full((160, 160, 3), 128, np.uint8)) is None
    assert closed.shape == (468, 2) and closed.dtype == np.float32
    assert closed.min() >= 0 and closed.max() < 160
    left_corner, right_corner = closed[list(faces.MOUTH_CORNERS)]
    assert left_corner[0] < right_corner[0]  # 61 is on the image left
    assert closed[faces.UPPER_INNER_LIP_MID, 1] <= closed[faces.LOWER_INNER_LIP_MID, 1] + 0.5
    # a drawn open mouth opens the mesh's inner lips
    assert faces.lip_gap(opened) > faces.lip_gap(closed) + 0.15
    assert faces.lip_gap(closed) < 0.1
    width = faces.mouth_width(closed)
    assert 15 < width < 60
    gap_px = faces.lip_gap(opened, normalise="none")
    assert faces.lip_gap(opened, normalise="mouth_width") == pytest.approx(gap_px / faces.mouth_width(opened))
    assert faces.lip_gap(opened) == pytest.approx(gap_px / faces.interocular_distance(opened))


def test_refined_mesh_has_478_points(face_frames):
    with faces.FaceMesher(static_image_mode=True, refine_landmarks=True) as mesher:
        assert mesher.n_landmarks == 478
        landmarks = mesher.landmarks(face_frames["open"])
    assert landmarks.shape == (478, 2)
    assert faces.lip_gap(landmarks) > 0.15


def test_lip_measures_reject_bad_landmarks():
    with pytest.raises(ValueError, match="468"):
        faces.lip_gap(np.zeros((40, 2)))
    with pytest.raises(ValueError, match="normalise"):
        faces.lip_gap(np.ones((468, 2)), normalise="face")
