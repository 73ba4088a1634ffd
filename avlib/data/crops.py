"""Per-paper crops of a tracked face: ``face96`` (Wav2Lip, its expert, VocaLiST), ``syncnet``
(SyncNet v2), ``mouth96`` (SyncVSR, LRW lip reading) and ``vcagan112`` (VCA-GAN). Step 4 of
:mod:`avlib.data.preprocess`. Colour: frames come in RGB; ``face96`` and ``syncnet`` leave as BGR
because upstream reads its crops with ``cv2.imread``."""
from __future__ import annotations

import cv2
import numpy as np

from avlib.faces import LIPS_ALL

__all__ = [
    "CROPS",
    "CROP_ORDERS",
    "SYNCNET_CROP_SCALE",
    "SYNCNET_PAD_VALUE",
    "MOUTH_ROI_INDICES",
    "MOUTH_REF_INTEROCULAR",
    "VCAGAN_REFERENCE",
    "VCAGAN_MOUTH_BOX",
    "crop_face96",
    "syncnet_window",
    "crop_syncnet",
    "mouth_roi_centre",
    "crop_mouth96",
    "similarity_transform",
    "vcagan_matrix",
    "crop_vcagan112",
    "resample_region",
]

#: Crop streams this module can make, in the order they are produced.
CROPS = ("face96", "syncnet", "mouth96", "vcagan112")
#: Colour order of each crop stream (what :meth:`avlib.data.store.ClipStore.frames` returns).
CROP_ORDERS = {"face96": "bgr", "syncnet": "bgr", "mouth96": "gray", "vcagan112": "gray"}

# --- crop geometry
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
VCAGAN_REFERENCE.setflags(write=False)


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


def resample_region(img, x0, y0, w, h, out_w, out_h, fill=None) -> np.ndarray:
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
    box = resample_region(frame_rgb, x0, y0, bw, bh, _MOUTH_BOX_W, _MOUTH_BOX_H)
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


