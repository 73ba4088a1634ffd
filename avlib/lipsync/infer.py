"""``avlib lipsync``: a face video (or a still image) and new audio -> a lip-synced video (Wav2Lip).

What it does, per output frame ``i`` (25 fps), as Wav2Lip's ``inference.py`` (spec §2.7):

1. **Audio.** Any audio file, or the audio track of a video, decoded to 16 kHz mono
   (:func:`avlib.media.read_audio`); the Wav2Lip mel (:func:`avlib.audio.wav2lip_mel`, 80 mel
   frames/s). Frame ``i`` is fed the 16 mel frames ``mel[:, floor(80 i / 25) : +16]``
   (:func:`mel_chunk_starts`): **no -1-frame shift** -- training (``wav2lip_train.py``, spec §2.6)
   starts each frame's window one video frame earlier, inference does not, and this is the
   inference rule. A window that would run past the end is right-aligned (the last 16 mel frames).
   The output has ``floor(audio seconds x 25)`` frames, and the audio is cut to exactly that
   length, so both streams end together. (Upstream's chunk loop stops at the first window that
   runs past the end, which gives it about 4 frames fewer, 0.16 s of sound without picture; ours
   covers the whole audio, the last few frames all seeing the right-aligned last window.)
2. **Face.** BlazeFace on every frame of the face video (:class:`avlib.faces.FaceDetector`); the
   detections are linked into tracks and the speaker's track chosen, exactly as everywhere in the
   book (:mod:`avlib.data.tracking`: ``link_tracks``, ``choose_track``, ``fill_track``), turned
   into S3FD-like forehead-to-chin boxes (``s3fd_like_box``), padded by ``pads`` = (top, bottom,
   left, right) pixels (default 0 10 0 0 as upstream), clipped to the frame and smoothed by a
   5-frame moving average (``smooth_boxes``; upstream's ``T=5``; ``--nosmooth`` turns it off).
   Each crop is resized to 96x96 and turned BGR, like the training crops.
3. **Generator.** Input ``face`` = [the crop with rows 48-95 zeroed || the same crop unmasked]
   (upstream's inference uses the *same* frame as the reference; training used a random other
   frame of the clip), BGR/255, and ``audio`` = the mel window: ``model(audio, face)`` returns
   the 96x96 BGR face in [0, 1].
4. **Pasting.** The generated face is resized to its crop box and blended with a feathered mask
   (:func:`feather_mask`: a raised-cosine ramp, 1 over the lower, mouth half of the box and 0 at
   its four borders), not upstream's hard rectangle: no seam at the box edge, and the upper face
   (which the generator only copies, blurred) stays the original's.

Face sources:

* a **still image** (png/jpg/bmp/webp/tif): detected once, the same picture for every frame;
* a **video** at any frame rate: resampled to 25 fps by timestamps (:func:`avlib.media.iter_video`;
  a 30 fps source drops every sixth frame). A video longer than the audio is cut; a shorter one
  is played back and forth (:func:`pingpong_index`: 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...), so
  there is no jump at the loop point. The face video's own sound is not used.

A frame on which no face was found is written unchanged and counted
(``LipsyncReport.no_face_frames``); detector drop-outs of at most ``fill_gap`` frames (default
:data:`FILL_GAP`) inside the track are bridged by interpolating the box, as usual in the book. A
face video with no face anywhere is an input error (exit 3), and so are unreadable, too short or
silent audio.

Bounded memory, any length. Nothing proportional to the video is held: pass 1 decodes the face
video one frame at a time and keeps only the detections; pass 2 decodes it again, in batches of
``batch_size`` output frames (plus, when the face video is shorter than the audio, a cache of
decoded frames of at most :data:`FRAME_CACHE_BYTES`, which saves most of the seeking on the way
back of a ping-pong), and streams every finished frame into the
encoder (:func:`avlib.media.write_video` takes an iterator). The audio (38 MB per 10 minutes as
float32) and its mel (15 MB) are held whole; the mel is computed in blocks
(:func:`inference_mel`, equal to :func:`avlib.audio.wav2lip_mel` of the whole signal) so its
short-time Fourier transform is never held for the whole file.

The output is H.264 + AAC (16 kHz mono: the sound the model heard), written to a hidden
temporary file next to it and renamed when complete, so an error or Ctrl-C leaves no
half-written file (:mod:`avlib.artifacts`). It must differ from both inputs and must not exist
unless ``--force``. Frames with an odd side are padded by one replicated row/column (H.264 4:2:0).

Weights (``--weights``, or the environment variable :data:`ENV_WEIGHTS`): the official
``wav2lip.pth`` / ``wav2lip_gan.pth`` of Rudrabha/Wav2Lip (research/non-commercial licence; loaded
safely with :func:`avlib.checkpoints.load_official` into the full-size generator), a checkpoint
of the book (the ``.json`` of a ``.json``/``.safetensors`` pair, any width), or the folder of a
training product holding one (chapter 04 trains them under ``_build/artifacts/<profile>/``).
Nothing is downloaded. The Python API also takes a model object (:func:`lipsync`).

Command line::

    avlib lipsync --face VIDEO_OR_IMAGE --audio AUDIO_OR_VIDEO -o OUT.mp4 --weights FILE
                  [--force] [--pads T B L R] [--nosmooth] [--batch-size N]
                  [--device cpu|cuda] [--precision fp32|bf16] [--quiet]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from avlib import media
from avlib.artifacts import probe_writable, same_file
from avlib.audio import (
    FPS,
    MEL_WINDOW,
    SAMPLES_PER_FRAME,
    SR,
    mel_start_index,
    num_mel_frames,
    wav2lip_mel,
)
from avlib.checkpoints import (
    CheckpointMismatch,
    UnsafeCheckpointError,
    load_checkpoint,
    load_official,
    read_checkpoint_info,
)
from avlib.cli import EXIT_OK, EXIT_OUTPUT, EXIT_USAGE, CommandError, torch_device
from avlib.data.tracking import (
    MISSING,
    choose_track,
    fill_track,
    link_tracks,
    s3fd_like_box,
    smooth_boxes,
)
from avlib.faces import FaceDetector
from avlib.lipsync.data import mask_lower_half
from avlib.progress import progress_bar

__all__ = [
    "ENV_WEIGHTS",
    "IMAGE_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "DEFAULT_PADS",
    "DEFAULT_BATCH_SIZE",
    "FILL_GAP",
    "SMOOTH_WINDOW",
    "SILENCE_DBFS",
    "PRECISIONS",
    "LipsyncError",
    "LipsyncReport",
    "pingpong_index",
    "mel_chunk_starts",
    "mel_chunks",
    "inference_mel",
    "face_boxes",
    "feather_mask",
    "paste_face",
    "load_wav2lip",
    "lipsync",
    "add_arguments",
    "main_from_args",
]

#: Environment variable naming the default generator weights (official file or book checkpoint).
ENV_WEIGHTS = "AVLIB_WAV2LIP_WEIGHTS"
#: Face sources read as still images (with OpenCV); anything else is decoded as a video.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: Containers the output may use (H.264 video + AAC audio).
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")
#: Extra pixels around the face box: (top, bottom, left, right), upstream's ``--pads`` default.
DEFAULT_PADS = (0, 10, 0, 0)
#: Output frames per generator pass (upstream: 128). Each batch holds its decoded frames, so
#: 16 keeps 1080p work under ~100 MB; the network is not faster with bigger batches on a CPU.
DEFAULT_BATCH_SIZE = 16
#: Detector drop-outs of at most this many frames inside the track are bridged (box
#: interpolated); longer stretches without a face are passed through unchanged.
FILL_GAP = 3
#: Frames of the centred moving average over the boxes (upstream ``T=5``).
SMOOTH_WINDOW = 5
#: Audio whose RMS level is below this (dB relative to full scale) counts as silent.
SILENCE_DBFS = -60.0
#: Arithmetic of the generator: float32, or bfloat16 autocast (CPU and CUDA).
PRECISIONS = ("fp32", "bf16")
#: Side of the generator's face crops.
CROP = 96
#: Decoded face-video frames kept for reuse (the way back of a ping-pong, turnarounds).
FRAME_CACHE_BYTES = 256 * 2**20
#: Mel columns computed per block by :func:`inference_mel` (12.5 s: a ~40 MB transient).
MEL_BLOCK = 1000
#: The feathered mask (fractions of the crop box): weight rises from 0 to 1 between these
#: heights (so the upper face keeps the original), falls to 0 over the bottom fraction and over
#: the side fractions.
FEATHER_TOP = (0.25, 0.55)
FEATHER_BOTTOM = 0.12
FEATHER_SIDE = 0.15
#: A forward skip of at most this many frames is decoded through instead of seeking.
_SKIP_DECODE = 48

_NO_WEIGHTS = (
    "no Wav2Lip weights given: lip-syncing needs a trained generator. Pass --weights FILE "
    f"(Python: lipsync(..., weights=FILE) or model=...) or set {ENV_WEIGHTS}=FILE, where FILE is "
    "one of: a generator checkpoint of the book, i.e. the .json of a .json/.safetensors pair (or "
    "the training product's folder that holds it) which chapter 04 (Wav2Lip) trains under "
    "_build/artifacts/<profile>/ (run `avlib book run` for that chapter first); or the official "
    "wav2lip.pth / wav2lip_gan.pth of Rudrabha/Wav2Lip if you have it (research/non-commercial "
    "licence). Nothing can be downloaded here: the file must already be on disk."
)


class LipsyncError(CommandError):
    """Lip-syncing cannot run on this input; the message says why and what to do. ``exit_code``
    is its command-line class (:mod:`avlib.cli`): an input problem unless said otherwise."""


@dataclass
class LipsyncReport:
    """What :func:`lipsync` did.

    Attributes:
        output: the file written.
        frames: video frames written (25 fps).
        no_face_frames: frames written unchanged because no face was found on them.
        seconds: wall time of the whole run (decoding, detection, network, encoding).
        fps: frames written per second of wall time.
        duration_s: length of the output (``frames / 25``; the audio has the same length).
        face_frames: frames of the face source used (1 for a still image); the output loops
            back and forth over them when the audio is longer.
        still: whether the face source was a still image.
        source_fps: frame rate of the face video (0 for an image).
        size: (width, height) of the frames.
        weights: where the generator came from.
        precision, device: how it ran.
        face_track: face statistics of the source frames used (``frames``, ``detected``,
            ``with_face`` = detected or bridged, ``no_face``, ``tracks``).
        stages: seconds per stage: ``faces`` (pass 1: decoding, detection, tracking), and in
            pass 2 ``decode``, ``crop`` (96x96 crops and mel windows), ``network`` (the forward
            pass and the copies to and from the device) and ``paste`` (resizing, blending);
            the encoder runs beside them in its own process.
    """

    output: str
    frames: int
    no_face_frames: int
    seconds: float
    fps: float
    duration_s: float
    face_frames: int
    still: bool
    source_fps: float
    size: tuple[int, int]
    weights: str
    precision: str
    device: str
    face_track: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# frame and window indices
# ---------------------------------------------------------------------------------------------
def pingpong_index(i: int | np.ndarray, n: int) -> int | np.ndarray:
    """Face-source frame shown at output frame ``i`` when the source has ``n`` frames:
    ``0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...`` (period ``2 (n - 1)``; always 0 when ``n == 1``).
    For ``i < n`` it is ``i`` (a long enough video plays straight through)."""
    if int(n) < 1:
        raise ValueError(f"n must be >= 1 frame, got {n}")
    if n == 1:
        return np.zeros_like(i) if isinstance(i, np.ndarray) else 0
    period = 2 * (int(n) - 1)
    r = np.asarray(i) % period
    out = np.where(r < n, r, period - r)
    return out if isinstance(i, np.ndarray) else int(out)


def _as_input(crops: np.ndarray, device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float()
    return x / 255.0


def generate_faces(model: torch.nn.Module, crops: np.ndarray, windows: np.ndarray,
                   device: str | torch.device = "cpu", references: np.ndarray | None = None
                   ) -> np.ndarray:
    """One batch of Wav2Lip inference: (B, 96, 96, 3) uint8 BGR face crops and their mel windows
    (B, 1, 80, 16) -> the generated crops, (B, 96, 96, 3) uint8 BGR.

    The target is the crop with rows 48-95 zeroed (:func:`avlib.lipsync.data.mask_lower_half`);
    the reference is the crop itself, as upstream's inference does, unless ``references``
    (B, 96, 96, 3) gives others. Runs under ``torch.inference_mode`` (wrap it in an autocast
    context for bf16).
    """
    target = _as_input(crops, device)
    ref = target if references is None else _as_input(references, device)
    face_in = torch.cat([mask_lower_half(target), ref], 1)
    audio_in = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(device)
    with torch.inference_mode():
        pred = model(audio_in, face_in)
    pred = (pred.float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return pred.permute(0, 2, 3, 1).cpu().numpy()


def synthesize_crops(model: torch.nn.Module, faces: np.ndarray, mel: np.ndarray, *,
                     batch_size: int = DEFAULT_BATCH_SIZE, device: str | torch.device = "cpu",
                     references: np.ndarray | None = None) -> np.ndarray:
    """Lip-sync a whole track of 96x96 face crops to a Wav2Lip mel, without detection or
    pasting (the evaluation of chapter 04 works on the clip store's crops).

    ``faces`` (T, 96, 96, 3) uint8 BGR; ``mel`` (80, M) from :func:`avlib.audio.wav2lip_mel`.
    Returns (T', 96, 96, 3) uint8 with ``T' = min(T, frames the audio covers)``; frame ``i``
    reads the inference window of :func:`mel_chunk_starts`. ``references`` (T, 96, 96, 3): other
    reference frames (default: the faces themselves, as upstream's inference).
    """
    n = min(len(faces), int(mel.shape[1] * FPS // 80))
    if references is not None and len(references) < n:
        raise ValueError(f"{len(references)} reference frames for {n} output frames")
    out = []
    for b0 in range(0, n, int(batch_size)):
        idx = np.arange(b0, min(n, b0 + int(batch_size)))
        refs = None if references is None else references[idx]
        out.append(generate_faces(model, faces[idx], mel_chunks(mel, idx), device, refs))
    return np.concatenate(out) if out else np.zeros((0, CROP, CROP, 3), np.uint8)


def mel_chunk_starts(n_frames: int, n_mel: int, window: int = MEL_WINDOW) -> np.ndarray:
    """First mel column of the window of each output frame, Wav2Lip **inference** style.

    Frame ``i`` reads ``mel[:, s_i : s_i + window]`` with ``s_i = floor(80 i / 25)``
    (:func:`avlib.audio.mel_start_index`), with **no** -1-frame shift (training starts one video
    frame earlier, spec §2.6); a window that would run past column ``n_mel`` is right-aligned:
    ``s_i = n_mel - window``. Returns int64 (n_frames,).
    """
    if n_mel < window:
        raise ValueError(f"the mel has {n_mel} columns, fewer than one window ({window})")
    starts = np.array([mel_start_index(i) for i in range(int(n_frames))], dtype=np.int64)
    return np.minimum(starts, n_mel - window)


def mel_chunks(mel: np.ndarray, frames, window: int = MEL_WINDOW) -> np.ndarray:
    """The generator's audio input for output ``frames`` (indices): float32 (B, 1, 80, window)
    from a (80, T) mel, windows as :func:`mel_chunk_starts`."""
    frames = np.asarray(frames, dtype=np.int64)
    n_mel = mel.shape[1]
    if n_mel < window:
        raise ValueError(f"the mel has {n_mel} columns, fewer than one window ({window})")
    starts = np.minimum((16 * frames) // 5, n_mel - window)
    return np.stack([mel[:, s:s + window] for s in starts])[:, None].astype(np.float32, copy=False)


def inference_mel(wav: np.ndarray, block: int = MEL_BLOCK) -> np.ndarray:
    """:func:`avlib.audio.wav2lip_mel` of ``wav``, computed in blocks of ``block`` columns.

    Column ``m`` of the mel reads samples ``[200 m - 400, 200 m + 400)`` of the pre-emphasised
    signal; each block is computed from the stretch of samples its columns read, starting 3
    columns early (pre-emphasis restarts at a stretch's first sample, which only that sample
    sees) and reflect-padded only where the whole signal is. The result equals the whole-signal
    mel up to float rounding, with a transient of one block's STFT instead of the whole file's.
    """
    n = len(wav)
    total = num_mel_frames(n)
    if total <= block:
        return wav2lip_mel(wav)
    out = np.empty((80, total), np.float32)
    c0 = 0
    while c0 < total:
        c1 = min(total, c0 + int(block))
        if total - c1 < 8:  # no sliver of a last block (its STFT would be shorter than n_fft)
            c1 = total
        first = max(0, c0 - 3)
        a = first * 200
        b = min(n, (c1 - 1) * 200 + 400)
        part = wav2lip_mel(wav[a:b])
        out[:, c0:c1] = part[:, c0 - first:c1 - first]
        c0 = c1
    return out


# ---------------------------------------------------------------------------------------------
# boxes and pasting
# ---------------------------------------------------------------------------------------------
def _check_pads(pads) -> tuple[int, int, int, int]:
    try:
        values = tuple(pads)
        ok = len(values) == 4 and all(not isinstance(p, bool) and int(p) == p for p in values)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise LipsyncError(f"pads must be four whole numbers of pixels (top bottom left right), "
                           f"got {pads!r}", EXIT_USAGE)
    return tuple(int(p) for p in values)


def face_boxes(detections, frame_size: tuple[int, int], pads=DEFAULT_PADS, smooth: bool = True,
               fill_gap: int = FILL_GAP) -> tuple[np.ndarray, np.ndarray, dict]:
    """Crop boxes of the speaker's face on every frame of a face source.

    Args:
        detections: per frame, its detections (:class:`avlib.faces.Detection` or (box, score)).
        frame_size: (width, height) of the frames.
        pads: (top, bottom, left, right) pixels added to the S3FD-like box (may be negative).
        smooth: 5-frame centred moving average of the boxes (upstream's default; ``--nosmooth``).
        fill_gap: detector drop-outs of at most this many frames are bridged.

    Returns ``boxes`` int64 (T, 4) x0, y0, x1, y1 (inside the frame, at least 2 pixels wide and
    high), ``has_face`` bool (T,) and statistics. Raises :class:`LipsyncError` when no frame has
    a face.
    """
    top, bottom, left, right = _check_pads(pads)
    w, h = int(frame_size[0]), int(frame_size[1])
    n = len(detections)
    if n == 0:
        raise LipsyncError("the face source has no frames")
    tracks = link_tracks(detections)
    chosen = choose_track(tracks, (w, h))
    if chosen is None:
        raise LipsyncError(f"no face found on any of the {n} frame{'s' if n != 1 else ''} of the "
                           "face source; lip-syncing needs the speaker's face, roughly frontal")
    filled, state = fill_track(chosen, n, int(fill_gap))
    has_face = state != MISSING
    boxes = s3fd_like_box(filled)
    boxes = boxes + np.array([-left, -top, right, bottom], dtype=np.float64)
    boxes = np.clip(boxes, 0, [w, h, w, h])
    if smooth and n > 1:
        boxes = smooth_boxes(boxes, SMOOTH_WINDOW, "mean")
    boxes = np.round(boxes).astype(np.int64)
    boxes[:, 0] = np.clip(boxes[:, 0], 0, max(w - 2, 0))
    boxes[:, 1] = np.clip(boxes[:, 1], 0, max(h - 2, 0))
    boxes[:, 2] = np.clip(np.maximum(boxes[:, 2], boxes[:, 0] + 2), 0, w)
    boxes[:, 3] = np.clip(np.maximum(boxes[:, 3], boxes[:, 1] + 2), 0, h)
    stats = {"frames": n, "detected": int(len(chosen)), "with_face": int(has_face.sum()),
             "no_face": int(n - has_face.sum()), "tracks": len(tracks)}
    return boxes, has_face, stats


def _ramp(t: np.ndarray) -> np.ndarray:
    """Raised cosine: 0 for t <= 0, 1 for t >= 1, smooth in between."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0.0, 1.0))


def feather_mask(height: int, width: int, top=FEATHER_TOP, bottom: float = FEATHER_BOTTOM,
                 side: float = FEATHER_SIDE) -> np.ndarray:
    """Blend weight of the generated face over its crop box: float32 (height, width) in [0, 1].

    Separable raised-cosine ramps over the box's relative coordinates (0 on the first and last
    row/column): vertically 0 above ``top[0]`` of the height, rising to 1 at ``top[1]`` and
    falling back to 0 over the last ``bottom`` fraction; horizontally rising and falling over
    ``side`` at each edge. So the mouth and jaw (the lower half) come from the generator, the
    borders and the upper face from the original frame, without a seam.
    """
    v = np.linspace(0.0, 1.0, int(height))
    u = np.linspace(0.0, 1.0, int(width))
    wy = _ramp((v - top[0]) / (top[1] - top[0])) * _ramp((1.0 - v) / bottom)
    wx = _ramp(u / side) * _ramp((1.0 - u) / side)
    return np.outer(wy, wx).astype(np.float32)


class _Masks:
    """Feather masks by box size (boxes change size slowly: a few sizes per clip)."""

    def __init__(self, size: int = 64):
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._size = size

    def __call__(self, h: int, w: int) -> np.ndarray:
        key = (h, w)
        mask = self._cache.get(key)
        if mask is None:
            mask = feather_mask(h, w)[..., None]
            self._cache[key] = mask
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return mask


_MASKS = _Masks()


def paste_face(frame: np.ndarray, face_bgr: np.ndarray, box) -> np.ndarray:
    """A copy of the RGB ``frame`` with the generated (96, 96, 3) BGR ``face_bgr`` (uint8)
    resized to ``box`` (x0, y0, x1, y1) and blended in with :func:`feather_mask`."""
    x0, y0, x1, y1 = (int(v) for v in box)
    out = np.array(frame, copy=True)
    width, height = x1 - x0, y1 - y0
    face = cv2.resize(np.ascontiguousarray(face_bgr[..., ::-1]), (width, height),
                      interpolation=cv2.INTER_LINEAR)
    region = out[y0:y1, x0:x1].astype(np.float32)
    mask = _MASKS(height, width)
    blended = region + mask * (face.astype(np.float32) - region)
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def _crop96(frame: np.ndarray, box) -> np.ndarray:
    """The (96, 96, 3) BGR crop of an RGB frame in ``box`` (bilinear, as upstream's cv2.resize)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = cv2.resize(np.ascontiguousarray(frame[y0:y1, x0:x1]), (CROP, CROP),
                      interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(crop[..., ::-1])


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def _generator_class():
    from avlib.models import Wav2Lip

    return Wav2Lip


def _generator_name() -> str:
    return getattr(_generator_class(), "registry_name", "wav2lip")


def _checkpoint_name(json_path: Path) -> str | None:
    return read_checkpoint_info(json_path).get("config", {}).get("name")


def _generator_in_folder(folder: Path, origin: str) -> Path:
    """The one generator checkpoint (``.json``) of a training product's folder."""
    name = _generator_name()
    found = []
    for candidate in sorted(folder.glob("*.json")):
        try:
            if _checkpoint_name(candidate) == name:
                found.append(candidate)
        except (ValueError, OSError):
            continue  # history.json, artifact.json, ...: not checkpoints
    if len(found) == 1:
        return found[0]
    if not found:
        raise LipsyncError(f"{folder}{origin} holds no Wav2Lip generator checkpoint (a .json/"
                           f".safetensors pair of a {name!r} model); pass the generator's .json")
    listed = ", ".join(p.name for p in found)
    raise LipsyncError(f"{folder}{origin} holds several generator checkpoints ({listed}); "
                       "pass the .json of the one to use")


def _load_wav2lip(weights) -> tuple[torch.nn.Module, str]:
    """(generator in eval mode on the CPU, one line saying where it came from)."""
    from_env = weights is None
    source = os.environ.get(ENV_WEIGHTS) if from_env else weights
    if source is None or str(source).strip() == "":
        raise LipsyncError(_NO_WEIGHTS, EXIT_USAGE)
    path = Path(source).expanduser()
    origin = f" (from ${ENV_WEIGHTS})" if from_env else ""
    if path.is_dir():
        path = _generator_in_folder(path, origin)
    own = path.suffix in (".json", ".safetensors") or (path.suffix == "" and
                                                        Path(f"{path}.json").is_file())
    Wav2Lip = _generator_class()
    if own:
        stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
        json_path, tensors_path = Path(f"{stem}.json"), Path(f"{stem}.safetensors")
        for needed in (json_path, tensors_path):
            if not needed.is_file():
                raise LipsyncError(f"generator checkpoint file not found: {needed}{origin}. A book "
                                   f"checkpoint is a pair {json_path.name} + {tensors_path.name}")
        name = _checkpoint_name(json_path)
        if name != _generator_name():
            raise LipsyncError(f"{json_path}{origin} holds a {name!r} model, not the Wav2Lip "
                               f"generator ({_generator_name()!r}); lip-syncing needs generator "
                               "weights (the expert and the discriminator cannot generate faces)")
        model, config = load_checkpoint(json_path)
        options = ", ".join(f"{k}={v}" for k, v in sorted(config.get("kwargs", {}).items()))
        what = f"book checkpoint, Wav2Lip({options})"
        path = json_path
    else:
        if not path.is_file():
            raise LipsyncError(f"Wav2Lip weights not found: {path}{origin}. Give the official "
                               "wav2lip.pth / wav2lip_gan.pth, or the .json of a book checkpoint")
        model = Wav2Lip()
        try:
            load_official(model, path)
        except CheckpointMismatch as err:
            raise LipsyncError(
                f"{path}{origin} is not a state dict of the full-size Wav2Lip generator "
                f"(wav2lip.pth / wav2lip_gan.pth): {err}\nThe book's own (smaller) generators are "
                ".json/.safetensors pairs: pass the .json") from err
        except UnsafeCheckpointError:
            raise
        except (EOFError, KeyError, IndexError, RuntimeError, OSError, ValueError) as err:
            raise LipsyncError(f"cannot read {path}{origin} as a PyTorch checkpoint "
                               f"({type(err).__name__}: {err}); is it wav2lip.pth, completely "
                               "copied?") from err
        what = "official Wav2Lip format, full-size generator"
    n_params = sum(p.numel() for p in model.parameters())
    return model.eval(), f"{path} ({what}, {n_params:,} parameters)"


def load_wav2lip(weights=None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The Wav2Lip generator for lip-syncing, in eval mode on ``device``.

    ``weights``: the official ``wav2lip.pth`` / ``wav2lip_gan.pth`` (``module.`` prefixes and
    the ``{"state_dict", "optimizer", ...}`` wrapper are handled; nothing in it is executed), a
    book checkpoint (``<name>.json``, ``<name>.safetensors`` or ``<name>``), or a training
    product's folder holding exactly one generator checkpoint; None reads :data:`ENV_WEIGHTS`.
    Raises :class:`LipsyncError` (no weights: exit 2; unusable file: exit 3).
    """
    model, _ = _load_wav2lip(weights)
    return model.to(_device(device))


def _device(device) -> torch.device:
    return torch_device(device, LipsyncError)


# ---------------------------------------------------------------------------------------------
# inputs and output
# ---------------------------------------------------------------------------------------------
def _check_output(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an output that is an input, a folder, of an unknown container, in a missing or
    unwritable folder, or (without ``overwrite``) an existing file -- before any work."""
    for src in inputs:
        if same_file(out, src):
            raise LipsyncError(f"the output must be a new file, not an input ({src}): the input "
                               "is read while the output is written", EXIT_USAGE)
    if out.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"the output {out} is a folder; give a file name "
                                f"such as {out / 'lipsync.mp4'}", str(out))
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise LipsyncError(f"the output {out} must end in one of {', '.join(OUTPUT_SUFFIXES)} "
                           "(H.264 video and AAC audio are written into it)", EXIT_USAGE)
    if not out.parent.is_dir():
        what = "is a file" if out.parent.exists() else "does not exist (create it first)"
        raise LipsyncError(f"cannot write {out}: folder {out.parent} {what}", EXIT_OUTPUT)
    if out.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, f"{out} exists; pass --force (Python: overwrite=True) "
                              "to replace it, or choose another name", str(out))
    probe_writable(out)  # read-only mounts and permissions show only when tried


def _read_speech(path: Path) -> np.ndarray:
    """16 kHz mono float32 audio of ``path``; refuses unreadable, too short or silent audio."""
    if not path.exists():
        raise LipsyncError(f"audio not found: {path}")
    try:
        wav = media.read_audio(path, SR)
    except media.MediaError as err:
        if err.reason == "no_audio":
            raise LipsyncError(f"{path} has no audio stream: give a sound file or a video with "
                               "sound as --audio") from err
        raise LipsyncError(f"cannot read the audio of {path}: {err}") from err
    need = 16 * 200 - 200  # 16 mel columns: 1 + N // 200 >= 16
    if len(wav) < max(need, SAMPLES_PER_FRAME):
        raise LipsyncError(f"{path}: the audio lasts {len(wav) / SR:.3f} s; lip-syncing needs at "
                           f"least {need / SR:.2f} s (one 16-frame mel window, 0.2 s)")
    energy = 0.0
    for start in range(0, len(wav), 1 << 20):
        part = wav[start:start + (1 << 20)].astype(np.float64)
        energy += float(np.dot(part, part))
    rms = math.sqrt(energy / len(wav))
    level = 20 * math.log10(rms) if rms > 0 else -math.inf
    if level < SILENCE_DBFS:
        shown = "digital silence (all zeros)" if rms == 0 else f"{level:.0f} dBFS"
        raise LipsyncError(f"{path}: the audio is silent ({shown}, below {SILENCE_DBFS:.0f} dBFS): "
                           "there is no speech to lip-sync to; check that it is the right file "
                           "and track")
    return wav


class _FaceSource:
    """Frames of the face source at 25 fps, RGB uint8: a still image or a video read on demand
    (sequentially where possible, seeking where the ping-pong goes back), with a bounded cache."""

    def __init__(self, path: Path):
        self.path = path
        self.still = path.suffix.lower() in IMAGE_SUFFIXES
        self.image = None
        self.info = None
        self._iter = None
        self._next = None
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        if not path.exists():
            raise LipsyncError(f"face image or video not found: {path}")
        if self.still:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise LipsyncError(f"cannot read {path} as an image (damaged, or not a "
                                   f"{path.suffix} picture)")
            self.image = np.ascontiguousarray(bgr[..., ::-1])
            self.count = 1
            self.size = (self.image.shape[1], self.image.shape[0])
            self.source_fps = 0.0
        else:
            info = media.probe(path)
            if not info.has_video:
                raise LipsyncError(f"{path} has no video stream: --face needs a video or a "
                                   "picture of the speaker's face")
            self.info = info
            self.count = max(0, math.ceil((info.video_duration - 1e-4) * FPS))
            self.size = (info.width, info.height)
            self.source_fps = float(info.fps)
            if self.count == 0:
                raise LipsyncError(f"{path}: the video stream has no frames")

    # -- pass 1
    def scan(self, n: int):
        """Frames 0..n-1 in order (one decoded frame held)."""
        if self.still:
            yield self.image
            return
        frames = media._iter_frames_safe(self.path, FPS, 0, media.DEFAULT_MAX_PIXELS, None,
                                         self.info)
        with contextlib.closing(frames):
            for index, frame, _ in frames:
                if index >= n:
                    break
                yield frame
                if index >= n - 1:
                    break  # decode no further than needed

    # -- pass 2
    def _open(self, start: int) -> None:
        self.close()
        self._iter = media._iter_frames_safe(self.path, FPS, start, media.DEFAULT_MAX_PIXELS,
                                             None, self.info)
        self._next = start

    def _read(self, lo: int, hi: int) -> None:
        """Decode frames lo..hi (inclusive) into the cache."""
        if self._iter is None or lo < self._next or lo - self._next > _SKIP_DECODE:
            self._open(lo)
        while self._next <= hi:
            try:
                index, frame, _ = next(self._iter)
            except StopIteration:
                raise LipsyncError(f"{self.path}: decoding stopped at frame {self._next} of the "
                                   f"{self.count} the first pass read; is the file changing?")
            if index >= lo:
                self._cache[index] = frame
                self._cache.move_to_end(index)
            self._next = index + 1

    def get(self, indices: list[int], limit: int) -> list[np.ndarray]:
        """Frames at ``indices``; ``limit`` = how many decoded frames the cache may hold."""
        if self.still:
            return [self.image] * len(indices)
        missing = sorted({i for i in indices if i not in self._cache})
        if missing:
            lo, hi = missing[0], missing[-1]
            backwards = len(indices) > 1 and indices[-1] < indices[0]
            if backwards and (self._iter is None or lo < self._next):
                # Going back costs a seek: decode a whole cache's worth below ``hi`` at once.
                lo = max(0, min(lo, hi - limit + 1))
            self._read(lo, hi)
        frames = [self._cache[i] for i in indices]
        for i in indices:
            self._cache.move_to_end(i)
        while len(self._cache) > max(limit, len(set(indices))):
            self._cache.popitem(last=False)
        return frames

    def close(self) -> None:
        if self._iter is not None:
            self._iter.close()
            self._iter = None


def _face_pass(source: _FaceSource, n: int, detector, progress: bool) -> tuple[list, int]:
    """Pass 1: detections (box, score) of frames 0..n-1; returns them and the frames decoded."""
    detections = []
    with progress_bar(total=n, desc="faces", unit="frame", disable=not progress,
                      leave=False) as bar:
        for frame in source.scan(n):
            if (frame.shape[1], frame.shape[0]) != tuple(source.size):
                raise LipsyncError(f"{source.path}: frame {len(detections)} is "
                                   f"{frame.shape[1]}x{frame.shape[0]}, the video declares "
                                   f"{source.size[0]}x{source.size[1]} (the size changes "
                                   "mid-stream); re-encode it at one size")
            detections.append([(np.asarray(d.box), d.score) for d in detector.detect(frame)])
            bar.update(1)
    return detections, len(detections)


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _eval_mode(model):
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _check_int(value, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise LipsyncError(f"{what} must be a whole number >= {low}, got {value!r}", EXIT_USAGE)
    return int(value)


def lipsync(face, audio, out, model: torch.nn.Module | None = None, *, weights=None,
            overwrite: bool = False, pads=DEFAULT_PADS, smooth: bool = True,
            batch_size: int = DEFAULT_BATCH_SIZE, device: str | torch.device = "cpu",
            precision: str = "fp32", progress: bool = True, fill_gap: int = FILL_GAP,
            detector: FaceDetector | None = None) -> LipsyncReport:
    """Lip-sync the face in ``face`` to the speech in ``audio``; write the video to ``out``.

    Args:
        face: a video (any frame rate; resampled to 25 fps) or a still image of the speaker.
        audio: an audio file, or a video whose sound track is the speech.
        out: the output video (.mp4/.m4v/.mov/.mkv), a new file unless ``overwrite``.
        model: a Wav2Lip generator (``model(audio, face)``, audio (B, 1, 80, 16), face
            (B, 6, 96, 96) -> (B, 3, 96, 96) BGR in [0, 1]); None loads ``weights``.
        weights: what :func:`load_wav2lip` takes (used when ``model`` is None).
        overwrite: replace an existing ``out``.
        pads: (top, bottom, left, right) pixels added to the face box (default 0 10 0 0).
        smooth: 5-frame moving average of the face boxes.
        batch_size: output frames per generator pass.
        device: torch device of the network ("cpu", "cuda", "cuda:N").
        precision: "fp32" or "bf16" (autocast around the network).
        progress: progress bars (see :mod:`avlib.progress`).
        fill_gap: detector drop-outs of at most this many frames are bridged.
        detector: a :class:`avlib.faces.FaceDetector` to use (None: a fresh one, closed after).

    Returns a :class:`LipsyncReport`. Raises :class:`LipsyncError` (unusable input or option),
    :class:`avlib.media.MediaError` (damaged files), OSError / FileExistsError (the output).
    Nothing is left at ``out`` (or next to it) when it fails or is interrupted.
    """
    t_start = time.perf_counter()
    face_path, audio_path, out_path = Path(face), Path(audio), Path(out)
    pads = _check_pads(pads)
    batch_size = _check_int(batch_size, "batch_size")
    fill_gap = _check_int(fill_gap, "fill_gap", 0)
    if precision not in PRECISIONS:
        raise LipsyncError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}",
                           EXIT_USAGE)
    dev = _device(device)
    if model is None and weights is None and not os.environ.get(ENV_WEIGHTS, "").strip():
        raise LipsyncError(_NO_WEIGHTS, EXIT_USAGE)
    _check_output(out_path, [face_path, audio_path], overwrite)
    source = _FaceSource(face_path)
    wav = _read_speech(audio_path)
    n_out = len(wav) // SAMPLES_PER_FRAME
    wav = wav[:n_out * SAMPLES_PER_FRAME]
    if model is None:
        model, described = _load_wav2lip(weights)
    else:
        described = f"{type(model).__name__} object"
    model = model.to(dev)
    mel = inference_mel(wav)

    stages = dict.fromkeys(("faces", "decode", "crop", "network", "paste"), 0.0)
    t0 = time.perf_counter()
    own_detector = detector is None
    detector = FaceDetector() if own_detector else detector
    try:
        detections, n_face = _face_pass(source, min(source.count, n_out), detector, progress)
    finally:
        if own_detector:
            detector.close()
    if n_face == 0:
        raise LipsyncError(f"{face_path}: the video stream decodes to no frames")
    try:
        boxes, has_face, face_stats = face_boxes(detections, source.size, pads, smooth, fill_gap)
    except LipsyncError as err:
        raise LipsyncError(f"{face_path}: {err}") from None
    stages["faces"] = time.perf_counter() - t0
    del detections

    width, height = source.size
    # A face video that is long enough plays straight through: only a ping-pong needs a cache.
    limit = batch_size if n_face >= n_out else max(
        batch_size, FRAME_CACHE_BYTES // max(1, width * height * 3))
    counts = {"no_face": 0, "written": 0}

    def autocast():
        if precision == "bf16":
            return torch.autocast(dev.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def frames():
        with progress_bar(total=n_out, desc="lipsync", unit="frame", disable=not progress,
                          leave=False) as bar:
            for b0 in range(0, n_out, batch_size):
                outputs = np.arange(b0, min(n_out, b0 + batch_size))
                sources = [int(s) for s in pingpong_index(outputs, n_face)]
                t = time.perf_counter()
                pictures = source.get(sources, limit)
                stages["decode"] += time.perf_counter() - t
                faced = [k for k, s in enumerate(sources) if has_face[s]]
                generated = {}
                if faced:
                    t = time.perf_counter()
                    crops = np.stack([_crop96(pictures[k], boxes[sources[k]]) for k in faced])
                    windows = mel_chunks(mel, outputs[faced])
                    stages["crop"] += time.perf_counter() - t
                    t = time.perf_counter()
                    with autocast():
                        pred = generate_faces(model, crops, windows, dev)
                    generated = dict(zip(faced, pred))
                    stages["network"] += time.perf_counter() - t
                t = time.perf_counter()
                done = []
                for k, s in enumerate(sources):
                    if k in generated:
                        done.append(paste_face(pictures[k], generated[k], boxes[s]))
                    else:
                        counts["no_face"] += 1
                        done.append(pictures[k])
                stages["paste"] += time.perf_counter() - t
                del pictures, generated
                for frame in done:
                    yield frame
                    counts["written"] += 1
                bar.update(len(done))
                del done

    try:
        with _eval_mode(model):
            media.write_video(out_path, frames(), fps=FPS, audio=wav, sr=SR, pad_odd=True)
    finally:
        source.close()
    seconds = time.perf_counter() - t_start
    return LipsyncReport(
        output=str(out_path), frames=counts["written"], no_face_frames=counts["no_face"],
        seconds=round(seconds, 3), fps=round(counts["written"] / seconds, 3) if seconds else 0.0,
        duration_s=counts["written"] / FPS, face_frames=n_face, still=source.still,
        source_fps=round(source.source_fps, 3), size=(int(width), int(height)),
        weights=described, precision=precision, device=str(dev),
        face_track=face_stats, stages={k: round(v, 3) for k, v in stages.items()})


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``avlib lipsync --face F --audio A -o OUT [...]``."""
    parser.add_argument("--face", required=True,
                        help="video (any frame rate) or still image (png/jpg/...) of the speaker")
    parser.add_argument("--audio", required=True,
                        help="the new speech: an audio file or a video whose sound is used")
    parser.add_argument("-o", "--output", required=True,
                        help=f"output video, a new file ({', '.join(OUTPUT_SUFFIXES)}); "
                             "see --force")
    parser.add_argument("--weights", default=None,
                        help="generator weights: the official wav2lip.pth / wav2lip_gan.pth, or "
                             "a book checkpoint (.json of a .json/.safetensors pair, or the "
                             f"training product's folder); default ${ENV_WEIGHTS}")
    parser.add_argument("--force", action="store_true", help="replace the output if it exists")
    parser.add_argument("--pads", type=int, nargs=4, default=list(DEFAULT_PADS),
                        metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                        help="pixels added to the face box (default 0 10 0 0: the chin)")
    parser.add_argument("--nosmooth", action="store_true",
                        help="do not smooth the face boxes over 5 frames")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"frames per generator pass (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:N")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="network arithmetic: fp32 (default) or bf16 autocast")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``avlib lipsync``. Errors are raised and turned into one line on stderr and an exit
    code by :func:`avlib.cli.run_command` (2 usage, 3 input, 4 output, 5 interrupted)."""
    report = lipsync(args.face, args.audio, args.output, weights=args.weights,
                     overwrite=args.force, pads=args.pads, smooth=not args.nosmooth,
                     batch_size=args.batch_size, device=args.device, precision=args.precision,
                     progress=not args.quiet)
    width, height = report.size
    kind = ("still image" if report.still else
            f"video, {report.face_frames} frames at 25 fps (source {report.source_fps:.2f} fps)")
    print(f"face       {args.face}: {kind}, {width}x{height}")
    print(f"audio      {args.audio}: {report.duration_s:.2f} s")
    print(f"weights    {report.weights}")
    print(f"wrote      {report.output}: {report.frames} frames ({report.duration_s:.2f} s at 25 "
          f"fps) with the new audio, in {report.seconds:.1f} s ({report.fps:.1f} frames/s, "
          f"{report.precision} on {report.device})")
    if report.no_face_frames:
        print(f"no face    {report.no_face_frames} frame{'s' if report.no_face_frames != 1 else ''}"
              " without a face written unchanged")
    return EXIT_OK
