"""Judging generated lip-sync videos: what Wav2Lip measures, and what only a corpus with ground
truth can measure.

A generated video is given as arrays: ``frames`` (T, H, W, 3) uint8, **BGR** by default (what
the generator and the clip store's ``face96`` stream hold; pass ``order="rgb"`` for frames
decoded by :mod:`avlib.media`), either whole frames or 96 x 96 face crops, and the driving
audio ``wav`` (N,) float32 at 16 kHz. Every function also takes what it needs already computed
(landmarks, gap sequences), so the expensive steps run once per video.

=============================  ==============================================================
function                       what
=============================  ==============================================================
:func:`lse_scores`             LSE-D / LSE-C / offset, the paper's sync metric (spec §1.5,
                               §2.8), through :func:`avlib.sync.lse`
:func:`lip_gap_correlation`    Pearson r between the face mesh's lip gap on the generated
                               frames and the renderer's true mouth opening (corpus only)
:func:`lip_landmark_distance`  mean lip-landmark distance to the real frames, in face units
:func:`ssim`, :func:`psnr`     pixel fidelity of the lower half (the generated part) against
                               the real frames
:func:`true_mouth`             the ground truth of a corpus clip of the store: opening, lip
                               landmarks, mouth parameters
:func:`cross_pairs`            the paper's protocol: audio of one clip on the face of another
                               (unseen speakers); :func:`read_filelist` reads the official
                               ``audio_src video`` lists (LRS2/LRS3/LRW)
=============================  ==============================================================

FID is in :mod:`avlib.lipsync.fid` (it needs the user's Inception checkpoint).

Why the corpus metrics. LSE-D/LSE-C ask a SyncNet whether lips and sound agree; a generator
trained against a SyncNet expert can please it without drawing the right mouth, and the
paper's numbers (§2.9) can only be compared, never checked. The corpus renders every frame from
known mouth parameters, so the mouth a generated frame *should* show is known exactly:
:func:`lip_gap_correlation` compares the opening the face mesh reads on the generated frames
with the renderer's true opening of the clip whose **audio** drove the generation.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avlib.audio import SR

__all__ = [
    "OPENING",
    "lse_scores",
    "mesh_landmarks",
    "lip_gaps",
    "GapCorrelation",
    "lip_gap_correlation",
    "lip_landmark_distance",
    "lower_half",
    "ssim",
    "psnr",
    "true_mouth",
    "cross_pairs",
    "read_filelist",
    "write_filelist",
]

#: The mouth parameter (``avlib.corpus.mouth.MOUTH_PARAMS``) that is the mouth's opening: the
#: jaw's vertical opening, which the face mesh's inner-lip gap follows (r >= 0.85 on rendered
#: speech, tests/test_render.py). ``true_mouth(..., opening="gap")`` gives the renderer's own
#: inner-lip gap instead (it also closes for /p b m/ and narrows when rounding).
OPENING = "jaw_open"

_ORDERS = ("rgb", "bgr")


def _check_order(order: str) -> str:
    if order not in _ORDERS:
        raise ValueError(f"order must be 'rgb' or 'bgr', got {order!r}")
    return order


def _frames_array(frames, what: str = "frames") -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 images (T, H, W, 3), got {arr.dtype} {arr.shape}")
    return arr


# --------------------------------------------------------------------------------------------
# LSE-D / LSE-C
# --------------------------------------------------------------------------------------------
def _as_float_wav(wav) -> np.ndarray:
    audio = np.asarray(wav)
    if audio.ndim != 1:
        raise ValueError(f"the audio must be mono (N,) at {SR} Hz, got shape {audio.shape}")
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    return audio.astype(np.float32)


def lse_scores(frames, wav=None, syncnet=None, *, order: str = "bgr", cropped: bool | None = None,
               protocol: str = "syncnet_python", vshift: int = 15, batch_size: int = 20,
               device="cpu", precision: str = "fp32", crf: int = 18,
               tmp_dir: str | os.PathLike | None = None, progress: bool = False) -> dict:
    """LSE-D, LSE-C and the AV offset of a generated video, as Wav2Lip's evaluation scores it.

    The protocol is syncnet_python's (spec §1.5) as Wav2Lip's ``scores_LSE`` scripts run it
    (§2.8): the generated video is an **.mp4 file** that syncnet_python re-reads through ffmpeg
    (frames as JPEG, audio as 16-bit PCM); windows of 5 frames against 20 MFCC columns, offsets
    ±``vshift``; **LSE-D** = the smallest of the window-averaged distances, **LSE-C** = their
    median minus that minimum, **offset** = ``vshift`` - argmin (frames, > 0: the audio leads).
    Arrays are therefore written to a temporary H.264 + AAC mp4 (``crf``, like the generator's
    own output files) and scored with ``avlib.sync.lse(path, protocol="syncnet_python")``;
    ``protocol="avlib"`` scores the arrays directly (lossless, no files; numbers move by about
    1-2 %).

    Args:
        frames: the generated frames (T, H, W, 3) uint8 in ``order`` at 25 fps, or the path of
            a generated video (then ``wav`` must be None: the file's own audio is used).
        wav: the driving audio (N,) at 16 kHz, float in [-1, 1] or int16.
        syncnet: the judge: the book's trained :class:`~avlib.models.SyncNet`, the official
            syncnet_v2 loaded with :func:`avlib.sync.tool.load_syncnet`, a weights file for it
            (either kind), or None for ``$AVLIB_SYNCNET_WEIGHTS``. Pass a loaded model when
            scoring many videos.
        order: colour order of ``frames`` (``"bgr"``: the generator's and the store's).
        cropped: True: every frame already is a face crop and is only resized to the model's
            input (no face detection); False: a face track is detected and cut as
            syncnet_python's ``run_pipeline.py`` does. None: True for 96 x 96 frames (Wav2Lip's
            face crops), else False. Wav2Lip's ``calculate_scores_LRS.py`` scores LRS2's
            face-centred 160 x 160 frames whole (``cropped=True``); its real-video script runs
            the face pipeline first (``cropped=False``).
        protocol: ``"syncnet_python"`` (default, the paper's) or ``"avlib"`` (see above).
        vshift, batch_size, device, precision, progress: as :func:`avlib.sync.lse`.
        crf: x264 quality of the temporary mp4 (18: visually lossless).
        tmp_dir: where the temporary video and JPEG frames go (default ``$TMPDIR``).

    Returns:
        ``{"lse_d": float, "lse_c": float, "offset": int}``.

    Raises:
        avlib.sync.tool.SyncToolError: too short (fewer than ``vshift + 6`` frames, 21 at
            the default ±15: :func:`avlib.sync.tool.min_frames`), no face found, no weights,
            bad options.
    """
    from avlib import media
    from avlib.sync.tool import load_syncnet, lse

    if syncnet is None or isinstance(syncnet, (str, os.PathLike)):
        syncnet = load_syncnet(syncnet, device)
    options = dict(vshift=vshift, batch_size=batch_size, device=device, precision=precision,
                   progress=progress)
    if isinstance(frames, (str, os.PathLike)):
        if wav is not None:
            raise ValueError("a video path brings its own audio: pass wav=None")
        result = lse(frames, syncnet, protocol=protocol, cropped=bool(cropped), tmp_dir=tmp_dir,
                     **options)
    else:
        video = _frames_array(frames)
        if wav is None:
            raise ValueError("give the driving audio: lse_scores(frames, wav, syncnet)")
        audio = _as_float_wav(wav)
        order = _check_order(order)
        if cropped is None:
            cropped = video.shape[1:3] == (96, 96)
        if protocol == "avlib":
            result = lse((video, audio), syncnet, protocol="avlib", cropped=bool(cropped),
                         order=order, **options)
        else:
            rgb = video if order == "rgb" else video[..., ::-1]
            with tempfile.TemporaryDirectory(prefix="avlib-lse-", dir=tmp_dir) as work:
                path = media.write_video(Path(work) / "generated.mp4", rgb, audio=audio, sr=SR,
                                         crf=crf, pad_odd=True)
                result = lse(path, syncnet, protocol=protocol, cropped=bool(cropped),
                             tmp_dir=tmp_dir, **options)
    return {"lse_d": float(result.min_dist), "lse_c": float(result.confidence),
            "offset": int(result.offset)}


# --------------------------------------------------------------------------------------------
# face mesh: lip gap and lip landmarks
# --------------------------------------------------------------------------------------------
def mesh_landmarks(frames, order: str = "bgr", static_image_mode: bool = False) -> np.ndarray:
    """Face-mesh landmarks of every frame: float32 (T, 468, 2) pixels, a row of NaN where the
    mesh finds no face.

    One :class:`avlib.faces.FaceMesher` per call, in tracking mode (``static_image_mode=False``,
    the right mode for the frames of one video), on the frames as given: whole frames or 96 x 96
    Wav2Lip crops (the mesh finds the face in those too).
    """
    from avlib.faces import FaceMesher, N_MESH_LANDMARKS

    video = _frames_array(frames)
    rgb = video if _check_order(order) == "rgb" else video[..., ::-1]
    out = np.full((len(video), N_MESH_LANDMARKS, 2), np.nan, np.float32)
    with FaceMesher(static_image_mode=static_image_mode) as mesher:
        for t, frame in enumerate(rgb):
            found = mesher.landmarks(np.ascontiguousarray(frame))
            if found is not None:
                out[t] = found[:N_MESH_LANDMARKS, :2]
    return out


def _is_landmarks(arr: np.ndarray) -> bool:
    from avlib.faces import N_MESH_LANDMARKS, N_MESH_LANDMARKS_REFINED

    return arr.ndim == 3 and arr.shape[-1] == 2 and arr.shape[1] in (
        N_MESH_LANDMARKS, N_MESH_LANDMARKS_REFINED, _N_LIPS)


_N_LIPS = 40  # avlib.faces.LIPS_ALL: outer contour (20) then inner contour (20)
# Positions inside the 40 lip points (LIPS_ALL order, the renderer's order too): the mouth
# corners of the outer contour (61, 291) and the inner-lip midpoints (13, 14).
_OUTER_CORNERS = (0, 10)
_INNER_MID = (25, 35)


def _lip_points(landmarks: np.ndarray) -> np.ndarray:
    """(T, 40, 2) lip landmarks (LIPS_ALL order) of full meshes (T, 468|478, 2) or of lip sets."""
    from avlib.faces import LIPS_ALL

    if landmarks.shape[1] == _N_LIPS:
        return landmarks
    return landmarks[:, list(LIPS_ALL)]


def lip_gaps(frames_or_landmarks, order: str = "bgr", normalise: str = "interocular") -> np.ndarray:
    """The inner-lip gap (:func:`avlib.faces.lip_gap`, landmarks 13-14) of every frame, NaN where
    the mesh failed: (T,) float64.

    Takes frames (T, H, W, 3) uint8 (meshed with :func:`mesh_landmarks`), full meshes
    (T, 468|478, 2) (NaN rows allowed), or 40-point lip sets (T, 40, 2) in ``LIPS_ALL`` order
    (:meth:`ClipStore.landmarks`, the corpus sidecar), which have no eyes: use
    ``normalise="mouth_width"`` or ``"none"`` with those.
    """
    from avlib.faces import lip_gap

    arr = np.asarray(frames_or_landmarks)
    if arr.dtype == np.uint8 and arr.ndim == 4:
        arr = mesh_landmarks(arr, order)
    arr = arr.astype(np.float64)
    if not _is_landmarks(arr):
        raise ValueError(f"expected frames (T, H, W, 3) uint8 or landmarks (T, 468|478|40, 2), "
                         f"got {arr.dtype} {arr.shape}")
    gaps = np.full(len(arr), np.nan)
    for t, lm in enumerate(arr):
        if not np.isfinite(lm).all():
            continue
        if arr.shape[1] == _N_LIPS:
            if normalise == "interocular":
                raise ValueError("40-point lip landmarks have no eye corners: use "
                                 "normalise='mouth_width' or 'none'")
            gap = float(np.linalg.norm(lm[_INNER_MID[0]] - lm[_INNER_MID[1]]))
            if normalise == "mouth_width":
                gap /= float(np.linalg.norm(lm[_OUTER_CORNERS[0]] - lm[_OUTER_CORNERS[1]]))
            elif normalise != "none":
                raise ValueError(f"normalise must be 'interocular', 'mouth_width' or 'none', "
                                 f"got {normalise!r}")
            gaps[t] = gap
        else:
            gaps[t] = lip_gap(lm, normalise=normalise)
    return gaps


@dataclass
class GapCorrelation:
    """What :func:`lip_gap_correlation` measured (``details=True``).

    r: Pearson correlation (NaN when too few frames or a constant sequence); n_frames: frames
    compared (the shorter of the two sequences); n_used: frames with a mesh; n_dropped: frames
    where the mesh failed (dropped); gaps: the measured gap per frame (NaN where dropped).
    """

    r: float
    n_frames: int
    n_used: int
    n_dropped: int
    gaps: np.ndarray

    def __float__(self) -> float:
        return float(self.r)


def lip_gap_correlation(frames_or_landmarks, true_opening, *, order: str = "bgr",
                        normalise: str = "interocular", min_frames: int = 10,
                        details: bool = False) -> float | GapCorrelation:
    """Pearson r between the lip gap the face mesh reads on generated frames and the true mouth
    opening of the clip whose audio drove them (corpus only: :func:`true_mouth`).

    Args:
        frames_or_landmarks: generated frames (T, H, W, 3) uint8 in ``order`` (meshed here),
            their meshes (T, 468|478, 2) (NaN rows = no face), or gaps (T,) already measured.
        true_opening: (T',) the truth per frame, e.g. ``true_mouth(store, audio_clip)["opening"]``
            (the ``jaw_open`` parameter, or the renderer's gap).
        normalise: how :func:`avlib.faces.lip_gap` scales the gap (by the interocular distance:
            comparable across frames whatever the lips do).
        min_frames: fewer usable frames than this (or a constant sequence) gives NaN.
        details: return a :class:`GapCorrelation` (r, frames used, frames dropped, the gaps).

    The first ``min(T, T')`` frames are compared (a generated video can be a frame shorter
    than its audio clip). Frames where the mesh failed are dropped and counted (``n_dropped``).
    r near 1: the generated mouth opens and closes with the speech as the renderer drew it;
    near 0: no relation (a still mouth, or lips following other audio).
    """
    arr = np.asarray(frames_or_landmarks)
    gaps = arr.astype(np.float64) if arr.ndim == 1 else lip_gaps(arr, order, normalise)
    truth = np.asarray(true_opening, dtype=np.float64).reshape(-1)
    n = min(len(gaps), len(truth))
    gaps_n, truth_n = gaps[:n], truth[:n]
    keep = np.isfinite(gaps_n) & np.isfinite(truth_n)
    used = int(keep.sum())
    r = math.nan
    if used >= max(int(min_frames), 2):
        g, y = gaps_n[keep], truth_n[keep]
        if g.std() > 0 and y.std() > 0:
            r = float(np.corrcoef(g, y)[0, 1])
    if details:
        return GapCorrelation(r=r, n_frames=n, n_used=used, n_dropped=int(n - used),
                              gaps=gaps_n)
    return r


def lip_landmark_distance(gen_landmarks, real_landmarks, unit="auto",
                          reduce: str = "mean") -> float | np.ndarray:
    """Mean distance between the lip landmarks of generated and real frames, in face units.

    For each frame: the mean Euclidean distance over the 40 lip points (mediapipe's outer and
    inner lip contours, :data:`avlib.faces.LIPS_ALL`), divided by a face-size ``unit`` of the
    **real** frame; then the mean over frames. Both sets must be in the same pixel frame (both
    whole frames, or both crops cut with the same boxes).

    Args:
        gen_landmarks, real_landmarks: (T, 468|478, 2) face meshes (:func:`mesh_landmarks`) or
            (T, 40, 2) lip points in ``LIPS_ALL`` order (:meth:`ClipStore.landmarks`; the corpus
            sidecar's rendered ``lip_landmarks`` follow the same order); one frame (K, 2) too.
            Frames with NaN in either (mesh failed) are left out; no frame left gives NaN.
        unit: ``"interocular"``: the outer-eye-corner distance (33-263), needs full real meshes;
            ``"mouth_width"``: the real mouth-corner distance (61-291), for lip-only sets;
            ``"auto"`` (default): interocular when the real landmarks are full meshes, else
            mouth width; ``"none"``: pixels; or a number or (T,) array of units per frame
            (e.g. the face box width, ``true_mouth(...)["face_boxes"]``: x1 - x0).
        reduce: ``"mean"`` (a float) or ``"none"`` (per-frame distances, NaN where left out).
    """
    from avlib.faces import OUTER_EYE_CORNERS

    gen = np.asarray(gen_landmarks, dtype=np.float64)
    real = np.asarray(real_landmarks, dtype=np.float64)
    if gen.ndim == 2:
        gen = gen[None]
    if real.ndim == 2:
        real = real[None]
    for name, arr in (("gen_landmarks", gen), ("real_landmarks", real)):
        if not _is_landmarks(arr):
            raise ValueError(f"{name} must be (T, 468|478, 2) meshes or (T, 40, 2) lip points, "
                             f"got shape {arr.shape}")
    if len(gen) != len(real):
        raise ValueError(f"{len(gen)} generated frames against {len(real)} real ones")
    distances = np.linalg.norm(_lip_points(gen) - _lip_points(real), axis=-1).mean(1)
    full_real = real.shape[1] != _N_LIPS
    if isinstance(unit, str):
        if unit == "auto":
            unit = "interocular" if full_real else "mouth_width"
        if unit == "interocular":
            if not full_real:
                raise ValueError("unit='interocular' needs full face meshes of the real frames "
                                 "(40 lip points have no eyes): use 'mouth_width' or a face size")
            scale = np.linalg.norm(real[:, OUTER_EYE_CORNERS[0]] - real[:, OUTER_EYE_CORNERS[1]],
                                   axis=-1)
        elif unit == "mouth_width":
            lips = _lip_points(real)
            scale = np.linalg.norm(lips[:, _OUTER_CORNERS[0]] - lips[:, _OUTER_CORNERS[1]], axis=-1)
        elif unit == "none":
            scale = np.ones(len(real))
        else:
            raise ValueError(f"unit must be 'auto', 'interocular', 'mouth_width', 'none' or "
                             f"numbers, got {unit!r}")
    else:
        scale = np.broadcast_to(np.asarray(unit, dtype=np.float64), (len(real),))
    with np.errstate(divide="ignore", invalid="ignore"):
        per_frame = np.where(scale > 0, distances / scale, np.nan)
    if reduce == "none":
        return per_frame
    if reduce != "mean":
        raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")
    valid = per_frame[np.isfinite(per_frame)]
    return float(valid.mean()) if len(valid) else math.nan


# --------------------------------------------------------------------------------------------
# SSIM / PSNR of the lower half
# --------------------------------------------------------------------------------------------
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_LUMA_RGB = np.array([0.299, 0.587, 0.114])  # BT.601, as cv2.cvtColor(..., COLOR_*2GRAY)


def lower_half(frames) -> np.ndarray:
    """Rows ``H // 2 :`` of images (..., H, W[, C]) given as (T, H, W, C) or (H, W, C): the half
    Wav2Lip generates (rows 48..95 of its 96 x 96 crops; the upper half comes from the input)."""
    arr = np.asarray(frames)
    if arr.ndim == 3:
        return arr[arr.shape[0] // 2:]
    if arr.ndim == 4:
        return arr[:, arr.shape[1] // 2:]
    raise ValueError(f"expected images (H, W, C) or (T, H, W, C), got shape {arr.shape}")


def _pair(a, b, region: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        raise ValueError(f"the two videos differ in shape: {x.shape} vs {y.shape}")
    if x.ndim == 2:  # one grey image
        x, y = x[None, :, :, None], y[None, :, :, None]
    elif x.ndim == 3:  # one colour image
        x, y = x[None], y[None]
    if x.ndim != 4:
        raise ValueError(f"expected images (H, W), (H, W, C) or (T, H, W, C), got {x.shape}")
    if region == "lower":
        x, y = lower_half(x), lower_half(y)
    elif region != "full":
        raise ValueError(f"region must be 'lower' or 'full', got {region!r}")
    return x.astype(np.float64), y.astype(np.float64)


def _gaussian_window(size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(images: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable Gaussian filtering of (..., H, W) keeping only fully covered positions."""
    from numpy.lib.stride_tricks import sliding_window_view

    rows = sliding_window_view(images, len(g), axis=-2) @ g  # (..., H - k + 1, W)
    return sliding_window_view(rows, len(g), axis=-1) @ g  # (..., H - k + 1, W - k + 1)


def _reduce(values: np.ndarray, reduce: str):
    if reduce == "mean":
        return float(np.mean(values))
    if reduce == "none":
        return values
    raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")


def ssim(a, b, *, region: str = "lower", channels: str = "mean", order: str = "bgr",
         data_range: float = 255.0, reduce: str = "mean"):
    """SSIM (Wang et al. 2004) of generated against real frames, by default on the lower half.

    The reference definition: an 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
    L = ``data_range``, local means, variances and covariance as Gaussian-weighted moments
    **without** the N/(N-1) sample correction, over the positions the window fully covers (no
    padding); the SSIM of an image is the mean of its map. scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=255, channel_axis=-1)`` is documented with the same definition (its default
    ``use_sample_covariance=True`` scales the variances by 121/120); it is not installed here,
    so the two were not compared: tests/test_lipsync_metrics.py checks this function against
    the definition evaluated window by window.

    Args:
        a, b: frames (T, H, W, C), one image (H, W, C) or a grey image (H, W); same shape.
        region: ``"lower"`` (rows ``H // 2 :``, the generated half: 48..95 of a 96 x 96 crop)
            or ``"full"``. The region must be at least 11 x 11.
        channels: ``"mean"``: SSIM of each colour channel, averaged (skimage's colour SSIM);
            ``"luma"``: SSIM of the BT.601 luma (``order`` says which channel is red).
        reduce: ``"mean"``: one number, the mean over frames; ``"none"``: (T,) per frame.
    """
    x, y = _pair(a, b, region)
    if channels == "luma":
        if x.shape[-1] != 3:
            raise ValueError("channels='luma' needs colour images")
        weights = _LUMA_RGB if _check_order(order) == "rgb" else _LUMA_RGB[::-1]
        x, y = (x @ weights)[..., None], (y @ weights)[..., None]
    elif channels != "mean":
        raise ValueError(f"channels must be 'mean' or 'luma', got {channels!r}")
    if min(x.shape[1:3]) < _SSIM_WINDOW:
        raise ValueError(f"images of {x.shape[1]} x {x.shape[2]} are smaller than the "
                         f"{_SSIM_WINDOW} x {_SSIM_WINDOW} window")
    x, y = np.moveaxis(x, -1, 1), np.moveaxis(y, -1, 1)  # (T, C, H, W)
    g = _gaussian_window()
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    var_x = _filter_valid(x * x, g) - mu_x ** 2
    var_y = _filter_valid(y * y, g) - mu_y ** 2
    cov = _filter_valid(x * y, g) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return _reduce(ssim_map.mean(axis=(1, 2, 3)), reduce)


def psnr(a, b, *, region: str = "lower", data_range: float = 255.0, reduce: str = "mean"):
    """PSNR = 10 log10(L^2 / MSE) of generated against real frames (dB), by default on the
    lower half; the MSE is over all pixels and channels of a frame.

    ``reduce``: ``"mean"`` (default): the per-frame PSNR averaged over frames (as frame-wise
    evaluation scripts do; one identical frame makes it ``inf``); ``"pooled"``: the PSNR of the
    MSE over all frames (finite unless the videos are identical); ``"none"``: (T,) per frame.
    """
    x, y = _pair(a, b, region)
    mse = ((x - y) ** 2).mean(axis=(1, 2, 3))
    if reduce == "pooled":
        mse = np.array([mse.mean()])
        reduce = "mean"
    with np.errstate(divide="ignore"):
        values = 10 * np.log10(data_range ** 2 / mse)
    return _reduce(values, reduce)


# --------------------------------------------------------------------------------------------
# ground truth of a corpus clip
# --------------------------------------------------------------------------------------------
def _sidecar_of(store, clip_id: str, sidecar) -> Path:
    if sidecar is not None:
        path = Path(sidecar)
    else:
        extra = store.meta(clip_id).get("extra") or {}
        if not extra.get("sidecar"):
            raise ValueError(f"clip {clip_id!r} has no corpus ground truth (meta['extra'] has no "
                             "'sidecar'): only clips preprocessed from an avlib corpus have it")
        path = Path(extra["sidecar"])
    if not path.is_file():
        raise FileNotFoundError(f"the ground-truth sidecar of clip {clip_id!r}, {path}, does not "
                                "exist: was the corpus moved or deleted after preprocessing? "
                                "Pass its new path with sidecar=")
    return path


def true_mouth(store, clip_id: str, opening: str = OPENING, *, sidecar=None) -> dict:
    """The renderer's ground truth of a corpus clip in the store.

    Reads the clip's sidecar JSON (``store.meta(clip_id)["extra"]["sidecar"]``, written by
    :mod:`avlib.corpus.make`; ``sidecar=`` overrides the path).

    Args:
        opening: a mouth parameter name (default ``"jaw_open"``, the opening of the jaw, 0 closed
            .. 1 widest vowel) or ``"gap"``: the renderer's inner-lip gap in face units, computed
            from all seven parameters (closure seals it, rounding narrows it).

    Returns:
        dict with ``opening`` (T,) float64, ``lip_landmarks`` (T, 40, 2) float32 pixels of the
        original frame (outer then inner contour, the order of ``avlib.faces.LIPS_ALL``),
        ``mouth`` (T, 7) float32, ``mouth_params`` (names), ``face_boxes`` (T, 4) pixels,
        ``size`` (frame side), ``visual_lead_frames`` (how many frames the mouth leads the
        sound), ``sidecar`` (the path). T is the store's frame count when the sidecar has more.

    Raises:
        ValueError: not a corpus clip, a sync clip (its mouth is its source clip's: read that
            one), or an unknown ``opening``.
    """
    from avlib.corpus.mouth import MOUTH_PARAMS

    path = _sidecar_of(store, clip_id, sidecar)
    truth = json.loads(path.read_text(encoding="utf-8"))
    if "mouth" not in truth:
        source = truth.get("source_id") or truth.get("source")
        raise ValueError(f"the sidecar {path} holds no per-frame mouth (a sync clip: its picture "
                         f"is that of {source!r}; read the truth of that clip)")
    names = tuple(truth.get("mouth_params", MOUTH_PARAMS))
    mouth = np.asarray(truth["mouth"], dtype=np.float32)
    n = min(len(mouth), store.n_frames(clip_id))
    mouth = mouth[:n]
    if opening == "gap":
        from avlib.corpus.render import FaceIdentity, mouth_shape

        if names != tuple(MOUTH_PARAMS):
            raise ValueError(f"the sidecar's mouth parameters {names} are not this avlib's "
                             f"{MOUTH_PARAMS}: cannot recompute the renderer's gap")
        identity = FaceIdentity()  # the gap does not depend on the identity
        values = np.array([mouth_shape(identity, m).gap for m in mouth], dtype=np.float64)
    elif opening in names:
        values = mouth[:, names.index(opening)].astype(np.float64)
    else:
        raise ValueError(f"opening must be 'gap' or one of {names}, got {opening!r}")
    return {
        "opening": values,
        "lip_landmarks": np.asarray(truth["lip_landmarks"], dtype=np.float32)[:n],
        "mouth": mouth,
        "mouth_params": names,
        "face_boxes": np.asarray(truth.get("face_boxes", np.full((n, 4), np.nan)),
                                 dtype=np.float32)[:n],
        "size": truth.get("size"),
        "visual_lead_frames": truth.get("visual_lead_frames"),
        "sidecar": path,
    }


# --------------------------------------------------------------------------------------------
# the paper's protocol: audio of one clip, face of another
# --------------------------------------------------------------------------------------------
def cross_pairs(store, split: str = "test_unseen", seed: int = 0, n: int | None = None, *,
                dataset=None, min_frames: int = 0) -> list[tuple[str, str]]:
    """``(audio_clip, face_clip)`` pairs for lip-syncing a face to audio it never spoke, as
    Wav2Lip's test filelists pair LRS2/LRS3/LRW clips (spec §2.8: ``audio_src video``).

    Every face clip of ``split`` (``"test_unseen"``: the corpus's unseen speakers; ``"test"``
    for an LRS2 store) gets the audio of another clip of the split, drawn at random, from
    **another speaker** whenever the split has one (a voice that is not the face's), else from
    another clip of the same speaker. Deterministic for a ``seed`` (and the store's clips);
    sorted by face clip, like the official lists.

    Args:
        n: how many pairs; None: one per face clip. Fewer: a seeded choice of face clips; more:
            face clips repeat (each time with a new draw of audio).
        dataset, min_frames: filters passed to :meth:`ClipStore.select`. Clips whose audio
            was shifted on purpose (``extra.shift_frames``: the corpus's sync-test clips) are
            left out: their sound does not belong to their picture.

    Raises:
        ValueError: fewer than two clips in the split, or n < 1.
    """
    records = sorted((rec for rec in store.select(split=split, dataset=dataset,
                                                  min_frames=min_frames)
                      if not (rec.get("extra") or {}).get("shift_frames")),
                     key=lambda rec: rec["id"])
    if len(records) < 2:
        raise ValueError(f"cross pairs need at least 2 clips in split {split!r}, the store has "
                         f"{len(records)}")
    ids = [rec["id"] for rec in records]
    speakers = [rec.get("speaker") for rec in records]
    rng = np.random.default_rng(seed)
    if n is None:
        faces = list(range(len(ids)))
    else:
        if int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer or None, got {n!r}")
        rounds, rest = divmod(int(n), len(ids))
        faces = list(range(len(ids))) * rounds
        faces += [int(i) for i in rng.choice(len(ids), rest, replace=False)]
        faces.sort()
    pairs = []
    for face in faces:
        others = [i for i in range(len(ids)) if i != face]
        if speakers[face] is not None:
            strangers = [i for i in others
                         if speakers[i] is not None and speakers[i] != speakers[face]]
            others = strangers or others
        audio = others[int(rng.integers(len(others)))]
        pairs.append((ids[audio], ids[face]))
    return pairs


def read_filelist(path, store=None) -> list[tuple[str, str]]:
    """Read an official Wav2Lip test filelist (``test_filelists/lrs2.txt``, ``lrs3.txt``,
    ``lrw.txt``): one ``audio_src video`` pair of clip ids per line (``.mp4`` left off), e.g.
    ``6339758276407584924/00098 6330311066473698535/00011``. Blank lines and ``#`` comments are
    skipped; a trailing ``.mp4`` is removed.

    ``store``: keep only the pairs whose two clips are in that store (a warning says how many
    were left out, e.g. clips the preprocessing rejected). Returns ``[(audio_clip, face_clip)]``
    in file order.
    """
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) != 2:
            raise ValueError(f"{path}, line {number}: expected 'audio_src video', got {line!r}")
        pairs.append(tuple(f[:-4] if f.endswith(".mp4") else f for f in fields))
    if store is not None:
        kept = [p for p in pairs if p[0] in store and p[1] in store]
        if len(kept) < len(pairs):
            warnings.warn(f"{len(pairs) - len(kept)} of the {len(pairs)} pairs of {path} name "
                          f"clips that are not in the store {store.root}; they are left out",
                          stacklevel=2)
        pairs = kept
    return pairs


def write_filelist(pairs, path) -> Path:
    """Write ``(audio_clip, face_clip)`` pairs in the official ``audio_src video`` format (for
    Wav2Lip's ``gen_videos_from_filelist.py`` or to keep a protocol with its results)."""
    lines = []
    for audio, face in pairs:
        for name in (audio, face):
            if not name or any(c.isspace() for c in name):
                raise ValueError(f"clip ids must be non-empty and without spaces, got {name!r}")
        lines.append(f"{audio} {face}\n")
    path = Path(path)
    path.write_text("".join(lines), encoding="utf-8")
    return path
