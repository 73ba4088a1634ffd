"""Check and fix the audio-visual offset of a video with SyncNet (``avlib sync check|fix``).

``check`` measures a video the way syncnet_python does (spec §1.2, §1.5): 25 fps frames,
16 kHz mono audio, one face track smoothed with a 13-frame median filter, crops with
``run_pipeline.py``'s geometry resized to the model's input size (224 for ``syncnet_v2``),
every 5-frame window compared with the audio windows up to ``vshift`` frames away. It prints the
AV offset (frames and ms), **LSE-D** (min dist) and **LSE-C** (confidence), spec §2.8.
``fix`` writes a copy whose audio is moved to cancel the offset; the video stream is copied
bit for bit (:func:`avlib.media.remux_with_shifted_audio`).

Bounded memory. The video is read twice, one decoded frame at a time, and never held whole:

1. **faces**: every frame goes through BlazeFace; only its boxes are kept (a few bytes per
   frame). The whole track is then linked, filled and smoothed by :func:`avlib.data.tracking.track_faces`
   (the centred 13-frame median needs frames on both sides, so it runs on the boxes, not the
   frames);
2. **sync**: the frames are decoded again, cropped with :func:`avlib.data.crops.crop_syncnet`
   and streamed into :func:`avlib.sync.syncnet_offset_stream`, which holds at most
   ``batch_size + 5`` crops.

The audio (10 minutes = 38 MB as float32) and its MFCC are held whole, as upstream does, and
so are the embeddings (8 kB per window at D = 1024). Caveat: the final distance step,
:func:`avlib.sync.calc_pdist`, currently builds ``(windows x (2 vshift + 1), D)`` float32
temporaries all at once, about 0.7 GB per minute of video at D = 1024; that step, not the
frames, sets the peak memory of long videos until it is computed in chunks.

Sign convention (:mod:`avlib.sync`): ``offset > 0`` means the audio *leads* the video (the sound
comes first); audio delayed by ``d`` frames gives ``offset = -d``. ``fix`` therefore delays the
audio by ``offset`` frames (``shift_frames = offset``; negative = advance).

Weights: the official ``syncnet_v2.model`` (a bare state dict, loaded with
:func:`avlib.checkpoints.load_official` into the full-size :class:`~avlib.models.SyncNet`), or
one of the book's own SyncNet checkpoints (``.json`` + ``.safetensors``, any width/img_size),
given with ``--weights`` or the environment variable :data:`ENV_WEIGHTS`. Nothing is
downloaded.

Differences from syncnet_python's ``run_pipeline.py``, on purpose: faces come from mediapipe's
BlazeFace (S3FD weights cannot be had here) with boxes extended to S3FD's forehead-to-chin
shape; the video is one scene with one speaker track (no scene-cut split, no minimum track
length), and detection gaps are filled by interpolation instead of cutting the track.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from avlib import media
from avlib.artifacts import temp_path
from avlib.audio import FPS, SAMPLES_PER_FRAME, SR, SYNC_WINDOW_FRAMES
from avlib.cli import EXIT_INPUT, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE
from avlib.checkpoints import (
    CheckpointMismatch,
    UnsafeCheckpointError,
    load_checkpoint,
    load_official,
    read_checkpoint_info,
)
from avlib.models import SyncNet, count_parameters
from avlib.models.syncnet import OFFICIAL_IMG_SIZE
from avlib.data.tracking import ClipRejected, track_faces
from avlib.data.preprocess import MAX_SIDE_HELP, PreprocessConfig, make_detector, max_side_option
from avlib.data.crops import crop_syncnet
from avlib.sync import DEFAULT_VSHIFT, SyncResult, syncnet_offset_stream

__all__ = [
    "ENV_WEIGHTS",
    "MS_PER_FRAME",
    "DEFAULT_MAX_SIDE",
    "SyncToolError",
    "min_frames",
    "load_syncnet",
    "check_video",
    "fix_video",
    "describe_offset",
    "plot_offset_curve",
    "add_arguments",
    "main_from_args",
]

#: Environment variable naming the default SyncNet weights (official file or avlib checkpoint).
ENV_WEIGHTS = "AVLIB_SYNCNET_WEIGHTS"
#: Milliseconds per video frame at 25 fps.
MS_PER_FRAME = 1000.0 / FPS
#: Frames whose longer side exceeds this are downscaled while decoding (as ``avlib preprocess``).
DEFAULT_MAX_SIDE = 1280
#: Suffixes of the book's own checkpoints (everything else is read as an official state dict).
_OWN_SUFFIXES = (".json", ".safetensors")
#: Containers ``fix`` writes (H.264 copied + AAC): what ffmpeg muxes both into.
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")

_NO_WEIGHTS = (
    "no SyncNet weights given. Pass --weights FILE (Python: load_syncnet(FILE)) or set the "
    f"environment variable {ENV_WEIGHTS}=FILE, where FILE is either the official syncnet_v2.model "
    "of syncnet_python (a bare state dict, .model/.pth) or a SyncNet checkpoint of the book "
    "(the .json of a .json/.safetensors pair written by avlib.checkpoints.save_checkpoint, e.g. "
    "the one the SyncNet chapter trains). Nothing can be downloaded here: the file must already "
    "be on disk."
)


class SyncToolError(Exception):
    """The sync check/fix cannot run on this input; the message says why and what to do.
    ``exit_code`` is its command-line class (:mod:`avlib.cli`): an input problem unless said."""

    def __init__(self, message: str, exit_code: int = EXIT_INPUT):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        return (type(self), (str(self), self.exit_code))


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def _is_own_checkpoint(path: Path) -> bool:
    if path.suffix in _OWN_SUFFIXES:
        return True
    # "<name>" without suffix names a pair when "<name>.json" exists.
    return path.suffix == "" and Path(f"{path}.json").is_file()


def _load_syncnet(weights: str | os.PathLike | None) -> tuple[SyncNet, str]:
    """(model in eval mode on the CPU, one-line description of where it came from)."""
    from_env = weights is None
    source = os.environ.get(ENV_WEIGHTS) if from_env else weights
    if source is None or str(source).strip() == "":
        raise SyncToolError(_NO_WEIGHTS, EXIT_USAGE)
    path = Path(source).expanduser()
    origin = f" (from ${ENV_WEIGHTS})" if from_env else ""
    if _is_own_checkpoint(path):
        stem = path.with_suffix("") if path.suffix in _OWN_SUFFIXES else path
        json_path, tensors_path = Path(f"{stem}.json"), Path(f"{stem}.safetensors")
        for needed in (json_path, tensors_path):
            if not needed.is_file():
                raise SyncToolError(
                    f"SyncNet checkpoint file not found: {needed}{origin}. A book checkpoint is a "
                    f"pair {json_path.name} + {tensors_path.name} written by save_checkpoint."
                )
        name = read_checkpoint_info(json_path).get("config", {}).get("name")
        if name != SyncNet.registry_name:
            raise SyncToolError(
                f"{json_path}{origin} holds a {name!r} model, not a SyncNet ({SyncNet.registry_name!r}); "
                "the sync tool needs SyncNet weights"
            )
        model, config = load_checkpoint(json_path)
        kwargs = config.get("kwargs", {})
        options = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
        what = f"avlib checkpoint, SyncNet({options})"
    else:
        if not path.is_file():
            raise SyncToolError(
                f"SyncNet weights file not found: {path}{origin}. Give the official syncnet_v2.model "
                "or the .json of a book checkpoint."
            )
        model = SyncNet()
        try:
            load_official(model, path)
        except CheckpointMismatch as err:
            raise SyncToolError(
                f"{path}{origin} is not a syncnet_v2 state dict for the full-size SyncNet: {err}\n"
                "The book's own (smaller) SyncNets are .json/.safetensors pairs: pass the .json."
            ) from err
        except UnsafeCheckpointError:
            raise
        except (EOFError, KeyError, IndexError, RuntimeError, OSError, ValueError) as err:
            # torch.load's own failures on files that are not (complete) PyTorch pickles.
            raise SyncToolError(
                f"cannot read {path}{origin} as a PyTorch checkpoint ({type(err).__name__}: {err}); "
                "is it the syncnet_v2.model file, completely copied?"
            ) from err
        what = "official syncnet_v2 format, full-size SyncNet"
    model.eval()
    return model, f"{path} ({what}, {count_parameters(model):,} parameters)"


def load_syncnet(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> SyncNet:
    """Load SyncNet weights for the sync tool.

    Args:
        weights: the official ``syncnet_v2.model`` (bare state dict; missing
            ``num_batches_tracked`` buffers are filled), or a book checkpoint: ``<name>.json``,
            ``<name>.safetensors`` or ``<name>`` of a pair written by
            :func:`avlib.checkpoints.save_checkpoint` (any SyncNet width / img_size). None reads
            the path from the environment variable :data:`ENV_WEIGHTS`.
        device: where the model is moved.

    Returns:
        The :class:`~avlib.models.SyncNet` in eval mode on ``device``.

    Raises:
        SyncToolError: no weights given, file missing, not SyncNet weights, or bad device.
        UnsafeCheckpointError: the official-format file holds pickled code (refused).
    """
    model, _ = _load_syncnet(weights)
    return model.to(_device(device))


def _device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise SyncToolError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'", EXIT_USAGE) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SyncToolError(f"device {str(dev)!r} was asked for but torch sees no CUDA GPU; use --device cpu",
                            EXIT_USAGE)
    return dev


# ---------------------------------------------------------------------------------------------
# checking
# ---------------------------------------------------------------------------------------------
def min_frames(vshift: int = DEFAULT_VSHIFT) -> int:
    """Shortest usable clip for a check, in frames: one 5-frame window plus ``vshift + 1`` more.

    With ``n`` windows, candidate offset ``+vshift`` compares window ``i`` with audio window
    ``i - vshift``, which exists only when ``n > vshift``: fewer windows would score some
    offsets against nothing but the zero padding of syncnet_python's ``calc_pdist``.
    """
    return SYNC_WINDOW_FRAMES + int(vshift) + 1


def _check_vshift(vshift) -> int:
    if isinstance(vshift, bool) or int(vshift) != vshift or vshift < 1:
        raise SyncToolError(f"vshift must be a positive whole number of frames (15 = ±0.6 s), got {vshift!r}",
                            EXIT_USAGE)
    return int(vshift)


def _video_frames(info: media.VideoInfo) -> int:
    """Frames :func:`avlib.media.iter_video` yields at 25 fps (its ``ceil(duration * fps)``)."""
    return max(0, math.ceil((info.video_duration - 1e-4) * FPS))


def _probe_input(path: Path, vshift: int) -> tuple[media.VideoInfo, np.ndarray, int]:
    """Probe and read the audio; (info, 16 kHz mono audio, usable frames). Fails fast."""
    if not path.exists():
        raise SyncToolError(f"video not found: {path}")
    info = media.probe(path)
    if not info.has_video:
        raise SyncToolError(f"{path} has no video stream: a sync check needs a video of the speaker's face")
    if not info.has_audio:
        raise SyncToolError(
            f"{path} has no audio stream: a sync check compares the lips with the sound. If the "
            "sound is in a separate file, mux it in first (ffmpeg -i video -i audio -c:v copy out.mp4)"
        )
    wav = media.read_audio(path, SR)
    n_video = _video_frames(info)
    usable = min(n_video, len(wav) // SAMPLES_PER_FRAME)
    _require_length(path, usable, n_video, len(wav), vshift)
    return info, wav, usable


def _require_length(path: Path, usable: int, n_video: int, n_samples: int, vshift: int) -> None:
    need = min_frames(vshift)
    if usable < need:
        raise SyncToolError(
            f"{path} is too short to check: {usable} usable frames ({usable * MS_PER_FRAME / 1000:.2f} s; "
            f"the shorter of the video, {n_video} frames at 25 fps, and the audio, {n_samples / SR:.2f} s). "
            f"With vshift={vshift} it must have at least {need} frames ({need * MS_PER_FRAME / 1000:.2f} s): "
            f"5 frames for one SyncNet window plus {vshift + 1} so that every offset up to ±{vshift} "
            "frames is compared with real audio. Use a longer video or a smaller --vshift."
        )


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False, file=sys.stderr)


def _face_track(path: Path, usable: int, cfg: PreprocessConfig, detector, progress: bool):
    """Pass 1: detect faces frame by frame (one decoded frame held), then track and smooth.

    Returns the :class:`avlib.data.tracking.FaceTrack` of the first ``usable`` frames and the frame
    size (width, height).
    """
    detections: list[list[tuple[np.ndarray, float]]] = []
    size = None
    frames = media.iter_video(path, FPS, max_pixels=cfg.max_pixels, max_side=cfg.max_side)
    with contextlib.closing(frames), _progress(usable, "faces", progress) as bar:
        for index, frame in frames:
            if index >= usable:
                break
            size = (frame.shape[1], frame.shape[0])
            # Boxes and scores only: Detection also carries keypoints the track does not need.
            detections.append([(np.asarray(d.box), d.score) for d in detector.detect(frame)])
            del frame
            bar.update(1)
    if not detections:
        raise SyncToolError(f"{path}: the video stream decodes to no frames")
    try:
        track = track_faces(detections, size, cfg)
    except ClipRejected as rej:
        hint = {
            "no_face": "the sync check needs the speaker's face, roughly frontal, on most frames",
            "face_track_gaps": "cut the video to the part where the speaker is on screen",
            "multi_face": "cut the video to one speaker",
        }.get(rej.reason, "")
        word = "no face found" if rej.reason == "no_face" else "unusable face track"
        raise SyncToolError(f"{path}: {word}: {rej.detail}" + (f"; {hint}" if hint else "")) from rej
    return track, size


def _syncnet_crops(path: Path, params: np.ndarray, crop_size: int, cfg: PreprocessConfig) -> Iterator[np.ndarray]:
    """Pass 2: BGR SyncNet crops (crop_size, crop_size, 3) uint8, one decoded frame at a time.

    ``params`` (T, 3) are the smoothed crop parameters x, y, bs of every frame
    (``FaceTrack.syncnet``); decoding stops after frame T - 1.
    """
    frames = media.iter_video(path, FPS, max_pixels=cfg.max_pixels, max_side=cfg.max_side)
    with contextlib.closing(frames):
        for index, frame in frames:
            if index >= len(params):
                return
            x, y, bs = params[index]
            crop = crop_syncnet(frame, x, y, bs, crop_size)
            # Drop the decoded frame before the consumer asks for the next one.
            del frame
            yield crop


class _Counted:
    """Iterator wrapper that counts items and ticks a progress bar."""

    def __init__(self, items: Iterator, bar):
        self.items, self.bar, self.count = items, bar, 0

    def __iter__(self):
        for item in self.items:
            self.count += 1
            self.bar.update(1)
            yield item


def _analyse(
    path, model, vshift: int = DEFAULT_VSHIFT, batch_size: int = 20, device="cpu", progress: bool = True,
    max_side: int | None = DEFAULT_MAX_SIDE, cfg: PreprocessConfig | None = None, detector=None,
) -> tuple[SyncResult, dict]:
    """:func:`check_video` plus a dict of facts about the run (for the CLI and fix_video)."""
    path = Path(path)
    vshift = _check_vshift(vshift)
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise SyncToolError(f"batch_size must be a positive whole number of windows, got {batch_size!r}",
                            EXIT_USAGE)
    dev = _device(device)
    crop_size = getattr(model, "img_size", OFFICIAL_IMG_SIZE)
    if not isinstance(crop_size, (int, np.integer)) or crop_size < 1:
        raise SyncToolError(f"the model's img_size must be a positive int (crop side in pixels), got {crop_size!r}")
    if cfg is None:
        # max_side 0 or None: never downscale (as `avlib preprocess --max-side 0`).
        cfg = PreprocessConfig(crops=("syncnet",), features=(), syncnet_size=int(crop_size),
                               max_side=max_side_option(max_side))
    info, wav, usable = _probe_input(path, vshift)

    t0 = time.perf_counter()
    own_detector = detector is None
    detector = make_detector(cfg) if own_detector else detector
    try:
        track, frame_size = _face_track(path, usable, cfg, detector, progress)
    finally:
        if own_detector:
            detector.close()
    t1 = time.perf_counter()
    n_frames = len(track.syncnet)
    # The header promised `usable` frames; a stream that decodes fewer is judged by what it gave.
    _require_length(path, n_frames, n_frames, len(wav), vshift)
    with _progress(n_frames, "sync", progress) as bar:
        crops = _Counted(_syncnet_crops(path, track.syncnet, int(crop_size), cfg), bar)
        result = syncnet_offset_stream(model, crops, wav, vshift, int(batch_size), dev)
    t2 = time.perf_counter()
    facts = {
        "path": str(path),
        "duration_s": round(info.duration, 3),
        "video_frames": _video_frames(info),
        "source_fps": round(info.fps, 3),
        "audio_s": round(len(wav) / SR, 3),
        "frames_used": n_frames,
        "frame_size": list(frame_size),
        "source_size": [info.width, info.height],
        "crop_size": int(crop_size),
        "faces": {k: track.stats[k] for k in ("detected", "interpolated", "missing", "n_faces_max")},
        "windows": result.n_windows,
        "faces_s": round(t1 - t0, 3),
        "sync_s": round(t2 - t1, 3),
    }
    return result, facts


def check_video(
    path: str | os.PathLike,
    model,
    vshift: int = DEFAULT_VSHIFT,
    batch_size: int = 20,
    device: str | torch.device = "cpu",
    progress: bool = True,
    *,
    max_side: int | None = DEFAULT_MAX_SIDE,
    cfg: PreprocessConfig | None = None,
    detector=None,
) -> SyncResult:
    """Measure the AV offset, LSE-D and LSE-C of a video, streaming (see the module doc).

    Args:
        path: any video with an audio stream (any frame rate: frames are taken at 25 fps by
            timestamp; audio resampled to 16 kHz mono).
        model: a :class:`~avlib.models.SyncNet` (e.g. from :func:`load_syncnet`) or any object
            with ``img_size`` and ``forward_lip((B, 3, 5, S, S))`` / ``forward_aud((B, 1, 13, 20))``,
            already on ``device``. Crops are made at its ``img_size`` (224 if absent).
        vshift: largest offset tried, in frames (±15 = ±0.6 s).
        batch_size: windows per forward pass; at most ``batch_size + 5`` crops are held.
        device: where the windows are sent.
        progress: tqdm bars on stderr.
        max_side: frames larger than this (longer side, pixels) are downscaled while decoding;
            0 or None: never.
        cfg: face-tracking and decoding settings (:class:`avlib.data.preprocess.PreprocessConfig`:
            detector model and threshold, gap filling, median kernel, ``max_side``,
            ``max_pixels``); default: the preprocessing defaults with ``max_side``. When given,
            its own ``max_side`` applies. Crops are always made at the model's ``img_size``.
        detector: an open :class:`avlib.faces.FaceDetector` to reuse; None opens and closes one.

    Returns:
        :class:`avlib.sync.SyncResult`: ``offset`` (frames, > 0 = audio leads), ``min_dist``
        (LSE-D), ``confidence`` (LSE-C), ``mean_dists`` (2 vshift + 1,) per candidate offset.

    Raises:
        SyncToolError: missing file, no audio/video stream, too short (see :func:`min_frames`),
        no usable face track, bad arguments. MediaError: the file cannot be decoded.
    """
    result, _ = _analyse(path, model, vshift, batch_size, device, progress, max_side, cfg, detector)
    return result


def describe_offset(offset: int) -> str:
    """One sentence reading an offset (frames, syncnet_python's sign) in milliseconds."""
    offset = int(offset)
    ms = abs(offset) * MS_PER_FRAME
    frames = f"{abs(offset)} frame{'s' if abs(offset) != 1 else ''}"
    if offset == 0:
        return "The audio and the video are in sync (best offset 0 frames, within ±20 ms)."
    if offset > 0:
        return f"The audio leads the video by {ms:.0f} ms ({frames}): the sound comes before the lips move."
    return f"The audio lags the video by {ms:.0f} ms ({frames}): the sound comes after the lips move."


def _fix_hint(offset: int) -> str:
    ms = abs(offset) * MS_PER_FRAME
    direction = "delays" if offset > 0 else "advances"
    return f"`avlib sync fix` {direction} the audio by {ms:.0f} ms to compensate."


# ---------------------------------------------------------------------------------------------
# fixing
# ---------------------------------------------------------------------------------------------
def fix_video(
    path: str | os.PathLike,
    out: str | os.PathLike,
    model=None,
    offset: int | None = None,
    vshift: int = DEFAULT_VSHIFT,
    batch_size: int = 20,
    device: str | torch.device = "cpu",
    progress: bool = True,
    verify: bool = False,
    overwrite: bool = False,
    **check_options,
) -> dict:
    """Write a copy of ``path`` with the audio moved to cancel its AV offset.

    The video stream is copied without re-encoding; the audio is re-encoded (AAC) with a
    sample-exact shift of ``offset`` frames (``offset * 40`` ms): audio that leads (offset > 0)
    is delayed, audio that lags is advanced (:func:`avlib.media.remux_with_shifted_audio`).

    Args:
        path: input video. out: destination, a new file (its folder must exist and be writable;
            suffix one of :data:`OUTPUT_SUFFIXES`; not ``path``). Checked before the measurement.
        model: SyncNet used to measure the offset when ``offset`` is None.
        offset: a known offset in frames, syncnet_python's sign (what ``check`` prints);
            skips the measurement.
        vshift, batch_size, device, progress, check_options: passed to :func:`check_video`.
        verify: re-check ``out`` with ``model`` and report its residual offset.
        overwrite: replace an existing ``out`` (else FileExistsError, before any work).

    Returns:
        dict with ``input``, ``output``, ``offset_frames``, ``offset_ms``, ``measured`` (bool),
        ``shift_frames`` / ``shift_ms`` (> 0 = audio delayed), ``result`` (the SyncResult of the
        measurement or None), ``check`` (facts of the measurement or None) and
        ``residual_offset`` (frames, with ``verify``; else None).
    """
    if offset is None and model is None:
        raise SyncToolError(
            "fix needs the offset: give a SyncNet (--weights / $AVLIB_SYNCNET_WEIGHTS) to measure "
            "it, or --offset N with the offset `avlib sync check` printed", EXIT_USAGE
        )
    if verify and model is None:
        raise SyncToolError("verify=True re-checks the output and needs a model", EXIT_USAGE)
    src, dst = Path(path), Path(out)
    if not src.exists():
        raise SyncToolError(f"video not found: {src}")
    check_output(src, dst, overwrite)
    result, facts = None, None
    if offset is None:
        result, facts = _analyse(src, model, vshift, batch_size, device, progress, **check_options)
        offset = result.offset
    elif isinstance(offset, bool) or int(offset) != offset:
        raise SyncToolError(f"offset must be a whole number of frames, got {offset!r}", EXIT_USAGE)
    offset = int(offset)
    info = media.probe(src)
    if not info.has_audio:
        raise SyncToolError(f"{src} has no audio stream to shift")
    # offset k > 0: the sound comes k frames early, so delaying it by k frames realigns it.
    media.remux_with_shifted_audio(src, dst, shift_frames=offset, fps=FPS)
    residual = None
    if verify:
        residual = check_video(dst, model, vshift, batch_size, device, progress, **check_options).offset
    return {
        "input": str(src),
        "output": str(dst),
        "offset_frames": offset,
        "offset_ms": offset * MS_PER_FRAME,
        "measured": result is not None,
        "shift_frames": offset,
        "shift_ms": offset * MS_PER_FRAME,
        "result": result,
        "check": facts,
        "residual_offset": residual,
    }


def check_output(src: Path, dst: Path, overwrite: bool = False) -> None:
    """Refuse an output ``fix`` could not or should not write, before any (slow) measurement:
    the input itself, a folder, an unknown suffix, a missing or unwritable folder, or an existing
    file without ``overwrite``."""
    if dst.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"the output {dst} is a folder; give a file name such as "
                                f"{dst / (src.stem + '_fixed.mp4')}", str(dst))
    same = dst.resolve() == src.resolve()
    if not same and dst.exists():
        try:
            same = os.path.samefile(src, dst)
        except OSError:
            pass
    if same:
        raise SyncToolError(f"the output must be a new file, not the input itself ({src})", EXIT_USAGE)
    if dst.suffix.lower() not in OUTPUT_SUFFIXES:
        raise SyncToolError(f"the output {dst} must end in one of {', '.join(OUTPUT_SUFFIXES)} (the copied "
                            "H.264 video and AAC audio are muxed into it)", EXIT_USAGE)
    if not dst.parent.is_dir():
        what = "is a file" if dst.parent.exists() else "does not exist (create it first)"
        raise SyncToolError(f"cannot write {dst}: folder {dst.parent} {what}", EXIT_OUTPUT)
    if dst.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, f"{dst} exists and `fix` writes a new file; pass --force "
                              "(Python: overwrite=True) to replace it, or choose another name", str(dst))
    # Root passes os.access everywhere: try the folder for real (read-only mounts, permissions).
    probe = temp_path(dst)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise type(err)(err.errno, err.strerror, str(dst)) from None
    try:
        os.unlink(probe)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------
def plot_offset_curve(result: SyncResult, path: str | os.PathLike | None = None, title: str | None = None):
    """Mean distance vs candidate offset (the curve whose minimum is LSE-D), book style.

    x: offset in frames (> 0 = audio leads; top axis in ms); y: mean L2 distance over windows.
    The minimum (offset, LSE-D) and the median (LSE-C = median - min) are marked. Saves a PNG
    when ``path`` is given (and closes the figure); returns the figure otherwise.
    """
    from avlib import plotting

    vshift = result.vshift
    offsets = vshift - np.arange(2 * vshift + 1)  # column j <-> offset vshift - j
    dists = np.asarray(result.mean_dists, dtype=np.float64)
    median = result.min_dist + result.confidence
    fig, ax = plotting.figure(height=3.0)
    ax.plot(offsets, dists, "-o", ms=3, color=plotting.COLORS["audio"], label="mean distance")
    ax.axhline(median, color="0.5", lw=1, ls="--", label=f"median (LSE-C = {result.confidence:.3f})")
    ax.plot([result.offset], [result.min_dist], "o", ms=8, color=plotting.COLORS["pred"],
            label=f"offset {result.offset:+d} ({result.offset * MS_PER_FRAME:+.0f} ms), LSE-D = {result.min_dist:.3f}")
    ax.set_xlabel("offset (frames; > 0 = audio leads the video)")
    ax.set_ylabel("mean L2 distance")
    top = ax.secondary_xaxis("top", functions=(lambda f: f * MS_PER_FRAME, lambda ms: ms / MS_PER_FRAME))
    top.set_xlabel("offset (ms)")
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    if path is None:
        return fig
    import matplotlib.pyplot as plt

    try:
        plotting.save(fig, path)
    finally:
        plt.close(fig)
    return fig


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``check VIDEO [...]`` and ``fix VIDEO -o OUT [...]`` sub-commands."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="{check,fix}")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("video", help="video file with the speaker's face and the audio")
        p.add_argument("--weights", default=None,
                       help=f"SyncNet weights: the official syncnet_v2.model or a book checkpoint "
                            f"(.json of a .json/.safetensors pair); default ${ENV_WEIGHTS}")
        p.add_argument("--vshift", type=int, default=DEFAULT_VSHIFT,
                       help="largest offset tried, frames (default 15 = ±600 ms)")
        p.add_argument("--batch-size", type=int, default=20, help="windows per forward pass (default 20)")
        p.add_argument("--device", default="cpu", help="torch device (default cpu)")
        p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                       help=f"{MAX_SIDE_HELP} (default {DEFAULT_MAX_SIDE})")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    check = actions.add_parser("check", help="measure the AV offset, LSE-D and LSE-C of a video",
                               description="Measure the audio-visual offset of VIDEO with SyncNet.")
    common(check)
    check.add_argument("--plot", default=None, metavar="PNG", help="save the distance-vs-offset curve here")

    fix = actions.add_parser("fix", help="write a copy with the audio shifted to cancel the offset",
                             description="Write a copy of VIDEO whose audio is shifted to cancel the "
                                         "measured (or given) offset; the video stream is not re-encoded.")
    common(fix)
    fix.add_argument("-o", "--output", required=True,
                     help=f"output video, a new file ({', '.join(OUTPUT_SUFFIXES)}); see --force")
    fix.add_argument("--force", action="store_true", help="replace the output file if it exists")
    fix.add_argument("--offset", type=int, default=None,
                     help="known offset in frames as `sync check` prints it (> 0 = audio leads); "
                          "skips the measurement and needs no weights")
    fix.add_argument("--verify", action="store_true", help="re-check the output and print its offset")


def _print_check(result: SyncResult, facts: dict, weights: str) -> None:
    faces = facts["faces"]
    width, height = facts["source_size"]
    print(f"video      {facts['path']}: {facts['duration_s']:.2f} s, {facts['video_frames']} frames at 25 fps, "
          f"{width}x{height}; face on {faces['detected']}/{facts['frames_used']} frames"
          + (f" ({faces['interpolated']} filled)" if faces["interpolated"] else ""))
    print(f"weights    {weights}")
    print(f"windows    {result.n_windows} five-frame windows of {facts['crop_size']}x{facts['crop_size']} crops, "
          f"offsets -{result.vshift}..+{result.vshift} frames ({facts['faces_s'] + facts['sync_s']:.1f} s)")
    print(f"AV offset  {result.offset:+d} frames ({result.offset * MS_PER_FRAME:+.0f} ms)")
    print(f"LSE-D      {result.min_dist:.3f}  (min dist: lower = closer match)")
    print(f"LSE-C      {result.confidence:.3f}  (confidence: median - min dist, higher = more certain)")
    print(describe_offset(result.offset))
    if abs(result.offset) == result.vshift:
        print(f"Note: the best offset is at the edge of the searched range (±{result.vshift} frames); the real "
              "offset may be larger: rerun with a larger --vshift.")
    if result.offset:
        print(_fix_hint(result.offset))


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``avlib sync check|fix``; returns 0. Errors are raised and turned into one line on
    stderr and an exit code by :func:`avlib.cli.run_command` (2 usage, 3 input, 4 output ...)."""
    max_side = max_side_option(args.max_side)
    if args.action == "check":
        model, weights = _load_syncnet(args.weights)
        model.to(_device(args.device))
        result, facts = _analyse(args.video, model, args.vshift, args.batch_size, args.device,
                                 not args.quiet, max_side)
        _print_check(result, facts, weights)
        if args.plot:
            plot_offset_curve(result, args.plot, title=Path(args.video).name)
            print(f"plot       {args.plot}")
        return EXIT_OK
    src = Path(args.video)
    if not src.exists():
        raise SyncToolError(f"video not found: {src}")
    check_output(src, Path(args.output), args.force)  # before loading weights or measuring
    model = weights = None
    if args.offset is None or args.verify:
        model, weights = _load_syncnet(args.weights)
        model.to(_device(args.device))
    done = fix_video(args.video, args.output, model, args.offset, args.vshift, args.batch_size,
                     args.device, not args.quiet, args.verify, overwrite=args.force, max_side=max_side)
    if done["measured"]:
        _print_check(done["result"], done["check"], weights)
    else:
        print(f"AV offset  {done['offset_frames']:+d} frames ({done['offset_ms']:+.0f} ms), given with --offset")
    shift = done["shift_frames"]
    if shift == 0:
        action = "the audio unchanged (offset 0)"
    else:
        verb = "delayed" if shift > 0 else "advanced"
        action = f"the audio {verb} by {abs(done['shift_ms']):.0f} ms ({abs(shift)} frames)"
    print(f"wrote      {done['output']}: video stream copied (not re-encoded), {action}")
    if done["residual_offset"] is not None:
        print(f"re-check   {done['residual_offset']:+d} frames ({done['residual_offset'] * MS_PER_FRAME:+.0f} ms)")
    return EXIT_OK
