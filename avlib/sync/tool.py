"""Check and fix the audio-visual offset of a video with SyncNet (``avlib sync check|fix``).

``check`` measures a video the way syncnet_python does (spec §1.2, §1.5): 25 fps frames,
16 kHz mono audio, one face track smoothed with a 13-frame median filter, crops with
``run_pipeline.py``'s geometry resized to the model's input size (224 for ``syncnet_v2``),
every 5-frame window compared with the audio windows up to ``vshift`` frames away. It prints the
AV offset (frames and ms), **LSE-D** (min dist) and **LSE-C** (confidence), spec §2.8.
``fix`` writes a copy whose audio is moved to cancel the offset; the video stream is copied
bit for bit (:func:`avlib.media.remux_with_shifted_audio`). :func:`lse` is the same measurement
as one Python call on a video or on arrays (the metric lip-sync papers quote). Many files at
once, resumable, with a CSV, and dataset filtering: :mod:`avlib.sync.batch`.

Options of every measurement:

* ``protocol``: ``"avlib"`` (default) decodes losslessly with PyAV and reads the audio as
  float32 aligned to the first video frame; ``"syncnet_python"`` reproduces upstream's frame
  path (:data:`PROTOCOLS`): every frame extracted by ffmpeg to a JPEG at ffmpeg's default
  quality and read back with ``cv2.imread`` (BGR), the audio extracted by ffmpeg as 16-bit PCM
  at 16 kHz, in a temporary folder that is always removed.
* ``cropped``: the input is already a face track (syncnet_python's ``pycrop/*.avi`` or any
  square crop): no face detection, every frame is resized to the model's ``img_size``.
* ``precision``: ``"fp32"`` or ``"bf16"`` (``torch.autocast`` around the network, on the CPU and
  on CUDA; the embeddings and the distances stay float32).

Speed. A :class:`~avlib.models.SyncNet` runs through :class:`avlib.sync.batch.SyncEngine`, an
inference copy (BatchNorms folded, 2-D convolutions, channels-last tensors, one uint8 gather of
the overlapping frames per batch) whose numbers equal the reference network's up to float
rounding (tests/test_synctool.py); other models run as given.

Bounded memory. The video is read twice, one decoded frame at a time, and never held whole:

1. **faces**: every frame goes through BlazeFace; only its boxes are kept (a few bytes per
   frame). The whole track is then linked, filled and smoothed by
   :func:`avlib.data.tracking.track_faces` (the centred 13-frame median needs frames on both
   sides, so it runs on the boxes, not the frames);
2. **sync**: the frames are decoded again, cropped with :func:`avlib.data.crops.crop_syncnet`
   and embedded in batches; at most ``batch_size + 5`` crops are held.

The audio (10 minutes = 38 MB as float32) and its MFCC are held whole, as upstream does, and so
are the embeddings (8 kB per window at D = 1024, 120 MB for 10 minutes); the distance step
(:func:`avlib.sync.calc_pdist`) works in chunks of windows. The peak of a 10-minute video stays
well under 1 GiB above the interpreter: the largest transients are the audio decoder's and the
MFCC's (about 0.5 GB each, one after the other); measured 0.66 GiB (``avlib``) and 0.61 GiB
(``syncnet_python``) for a 10-minute clip with 1024-d embeddings.

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
import itertools
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from avlib import media
from avlib.artifacts import is_stale_temp, probe_writable, temp_path
from avlib.audio import FPS, SAMPLES_PER_FRAME, SR, SYNC_WINDOW_FRAMES, syncnet_mfcc
from avlib.cli import EXIT_OK, EXIT_OUTPUT, EXIT_USAGE, CommandError, torch_device
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
from avlib.sync import DEFAULT_VSHIFT, SyncResult, calc_pdist, summarise_dists
from avlib.sync.batch import PRECISIONS, SyncEngine, embed_stream

__all__ = [
    "ENV_WEIGHTS",
    "MS_PER_FRAME",
    "DEFAULT_MAX_SIDE",
    "PROTOCOLS",
    "PRECISIONS",
    "SyncToolError",
    "min_frames",
    "load_syncnet",
    "lse",
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
#: How frames and audio reach the network: avlib's lossless decoding, or syncnet_python's
#: ffmpeg JPEG frames (default mjpeg quality, read with cv2.imread) and 16-bit PCM audio.
PROTOCOLS = ("avlib", "syncnet_python")
#: Name stem of the scratch folders of the syncnet_python protocol (in $TMPDIR or ``tmp_dir``).
SCRATCH_NAME = "avlib-sync-frames"

_NO_WEIGHTS = (
    "no SyncNet weights given. Pass --weights FILE (Python: load_syncnet(FILE)) or set the "
    f"environment variable {ENV_WEIGHTS}=FILE, where FILE is either the official syncnet_v2.model "
    "of syncnet_python (a bare state dict, .model/.pth) or a SyncNet checkpoint of the book "
    "(the .json of a .json/.safetensors pair written by avlib.checkpoints.save_checkpoint, e.g. "
    "the one the SyncNet chapter trains). Nothing can be downloaded here: the file must already "
    "be on disk."
)


class SyncToolError(CommandError):
    """The sync check/fix cannot run on this input; the message says why and what to do.
    ``exit_code`` is its command-line class (:mod:`avlib.cli`): an input problem unless said."""


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
                f"{json_path}{origin} holds a {name!r} model, not a SyncNet "
                f"({SyncNet.registry_name!r}); "
                "the sync tool needs SyncNet weights"
            )
        model, config = load_checkpoint(json_path)
        kwargs = config.get("kwargs", {})
        options = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
        what = f"avlib checkpoint, SyncNet({options})"
    else:
        if not path.is_file():
            raise SyncToolError(
                f"SyncNet weights file not found: {path}{origin}. Give the official "
                "syncnet_v2.model "
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
                f"cannot read {path}{origin} as a PyTorch checkpoint "
                f"({type(err).__name__}: {err}); "
                "is it the syncnet_v2.model file, completely copied?"
            ) from err
        what = "official syncnet_v2 format, full-size SyncNet"
    model.eval()
    return model, f"{path} ({what}, {count_parameters(model):,} parameters)"


def load_syncnet(weights: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu") -> SyncNet:
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


def _device(device) -> torch.device:
    return torch_device(device, SyncToolError)


# ---------------------------------------------------------------------------------------------
# options and the model's mode
# ---------------------------------------------------------------------------------------------
def _check_choice(value, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise SyncToolError(f"{what} must be one of {', '.join(map(repr, choices))}, got {value!r}",
                            EXIT_USAGE)
    return value


@contextlib.contextmanager
def _eval_mode(model):
    """Eval mode (frozen BatchNorm statistics) for the measurement; the mode is restored."""
    was_training = bool(getattr(model, "training", False))
    if callable(getattr(model, "eval", None)):
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


# ---------------------------------------------------------------------------------------------
# inputs: a video decoded by avlib or by syncnet_python's ffmpeg path, or arrays
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
        raise SyncToolError(f"vshift must be a positive whole number of frames (15 = ±0.6 s), "
                            f"got {vshift!r}", EXIT_USAGE)
    return int(vshift)


def _video_frames(info: media.VideoInfo) -> int:
    """Frames :func:`avlib.media.iter_video` yields at 25 fps (its ``ceil(duration * fps)``)."""
    return max(0, math.ceil((info.video_duration - 1e-4) * FPS))


def _probe(path: Path) -> media.VideoInfo:
    """Probe a video that a sync check can use (video and audio streams); fails fast."""
    if not path.exists():
        raise SyncToolError(f"video not found: {path}")
    info = media.probe(path)
    if not info.has_video:
        raise SyncToolError(f"{path} has no video stream: a sync check needs a video of the "
                            "speaker's face")
    if not info.has_audio:
        raise SyncToolError(
            f"{path} has no audio stream: a sync check compares the lips with the sound. If the "
            "sound is in a separate file, mux it in first (ffmpeg -i video -i audio -c:v copy "
            "out.mp4)"
        )
    return info


def _require_length(path, usable: int, n_video: int, n_samples: int, vshift: int) -> None:
    need = min_frames(vshift)
    if usable < need:
        raise SyncToolError(
            f"{path} is too short to check: {usable} usable frames "
            f"({usable * MS_PER_FRAME / 1000:.2f} s; the shorter of the video, {n_video} frames "
            f"at 25 fps, and the audio, {n_samples / SR:.2f} s). With vshift={vshift} it must have "
            f"at least {need} frames ({need * MS_PER_FRAME / 1000:.2f} s): 5 frames for one "
            f"SyncNet window plus {vshift + 1} so that every offset up to ±{vshift} frames is "
            "compared with real audio. Use a longer video or a smaller --vshift."
        )


@dataclass
class _Input:
    """A clip ready for measuring: what to call it in messages, its audio, how many frames to
    use, a way to iterate over its frames (RGB (H, W, 3) uint8, one at a time, as often as
    needed), facts for the printout, and the stage stopwatch of the measurement."""

    where: object
    wav: np.ndarray  # float32 in [-1, 1] or int16 (syncnet_python's PCM)
    usable: int
    frames: Callable[[], Iterator[np.ndarray]]
    facts: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)


def _timed(items: Iterable, stages: dict, key: str) -> Iterator:
    """Iterate over ``items``, adding the time spent producing each item to ``stages[key]``."""
    iterator = iter(items)
    try:
        while True:
            t0 = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                stages[key] += time.perf_counter() - t0
            yield item
            del item  # hold no frame while the next one is made
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _decoded(path: Path, cfg: PreprocessConfig) -> Iterator[np.ndarray]:
    frames = media.iter_video(path, FPS, max_pixels=cfg.max_pixels, max_side=cfg.max_side)
    with contextlib.closing(frames):
        for _, frame in frames:
            yield frame
            del frame


def _avlib_input(path: Path, vshift: int, cfg: PreprocessConfig, stages: dict) -> _Input:
    """PyAV decoding: RGB frames at 25 fps by timestamp, float32 audio aligned to frame 0."""
    info = _probe(path)
    t0 = time.perf_counter()
    wav = media.read_audio(path, SR)
    stages["decode"] += time.perf_counter() - t0
    n_video = _video_frames(info)
    usable = min(n_video, len(wav) // SAMPLES_PER_FRAME)
    _require_length(path, usable, n_video, len(wav), vshift)
    facts = {"duration_s": round(info.duration, 3), "video_frames": n_video,
             "source_fps": round(info.fps, 3), "source_size": [info.width, info.height]}
    return _Input(path, wav, usable, lambda: _timed(_decoded(path, cfg), stages, "decode"), facts,
                  stages)


def _sweep_scratch(folder: Path) -> None:
    """Remove scratch folders that killed runs left behind (their owner process is dead)."""
    try:
        leftovers = list(folder.glob(f".{SCRATCH_NAME}.*"))
    except OSError:
        return
    for old in leftovers:
        if old.is_dir() and is_stale_temp(old):
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _scratch_folder(tmp_dir: str | os.PathLike | None) -> Iterator[Path]:
    """An owner-tagged hidden folder (:func:`avlib.artifacts.temp_path`) in ``tmp_dir`` (default
    ``$TMPDIR``), removed on exit whatever happens; a killed run's folder is swept by the next."""
    base = Path(tmp_dir if tmp_dir is not None else tempfile.gettempdir()).expanduser()
    if not base.is_dir():
        raise SyncToolError(f"temporary folder {base} does not exist", EXIT_USAGE)
    _sweep_scratch(base)
    folder = temp_path(base / SCRATCH_NAME, suffix="")
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _ffmpeg(path: Path, args: list[str], what: str) -> None:
    cmd = [media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-i", str(path), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        if "No space left" in proc.stderr:
            raise OSError(errno.ENOSPC, f"no space left for the {what} of {path} ({tail})",
                          str(args[-1]))
        raise SyncToolError(f"{path}: ffmpeg could not extract the {what} ({tail})")


def _imread_rgb(file: Path) -> np.ndarray:
    bgr = cv2.imread(str(file))  # what syncnet_python reads: BGR
    if bgr is None:
        raise SyncToolError(f"cannot read the extracted frame {file.name} back")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _syncnet_python_input(path: Path, info: media.VideoInfo, vshift: int, work: Path,
                          stages: dict) -> _Input:
    """syncnet_python's frame path (``SyncNetInstance.evaluate``, spec §1.5): every frame to a
    JPEG with ffmpeg's default mjpeg settings (no ``-qscale:v``: 200 kb/s rate control, q 2-31;
    run_pipeline.py's ``-qscale:v 2`` extraction feeds its face detector, not the network),
    read back with cv2.imread; the audio as mono 16-bit PCM at 16 kHz (``-ac 1 -ar 16000
    -acodec pcm_s16le``), fed to the MFCC as int16. A source that is not at 25 fps is converted
    with ``-r 25`` on extraction, as run_pipeline.py converts every video first."""
    import scipy.io.wavfile

    t0 = time.perf_counter()
    rate = [] if abs(info.fps - FPS) < 0.01 else ["-r", str(FPS)]
    _ffmpeg(path, [*rate, "-f", "image2", str(work / "%06d.jpg")], "frames")
    _ffmpeg(path, ["-vn", "-ac", "1", "-ar", str(SR), "-acodec", "pcm_s16le",
                   str(work / "audio.wav")], "audio")
    files = sorted(work.glob("*.jpg"))
    sr, wav = scipy.io.wavfile.read(work / "audio.wav")
    stages["decode"] += time.perf_counter() - t0
    if sr != SR or wav.dtype != np.int16 or wav.ndim != 1:
        raise SyncToolError(f"{path}: ffmpeg's audio is not mono 16-bit at {SR} Hz")
    usable = min(len(files), len(wav) // SAMPLES_PER_FRAME)
    _require_length(path, usable, len(files), len(wav), vshift)
    facts = {"duration_s": round(info.duration, 3), "video_frames": len(files),
             "source_fps": round(info.fps, 3), "source_size": [info.width, info.height],
             "jpeg_mib": round(sum(f.stat().st_size for f in files) / 2**20, 1)}
    kept = files[:usable]
    return _Input(path, wav, usable, lambda: _timed(map(_imread_rgb, kept), stages, "decode"),
                  facts, stages)


def _array_input(frames, wav, order: str, vshift: int, stages: dict) -> _Input:
    """(T, H, W, 3) uint8 frames in ``order`` and a (N,) 16 kHz wav (float in [-1, 1] or int16)."""
    if isinstance(frames, torch.Tensor) or isinstance(wav, torch.Tensor):
        raise SyncToolError("lse takes numpy arrays; pass tensor.numpy()", EXIT_USAGE)
    frames, wav = np.asarray(frames), np.asarray(wav)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise SyncToolError(f"frames must be a (T, H, W, 3) uint8 array, got {frames.dtype} "
                            f"{frames.shape}", EXIT_USAGE)
    if wav.ndim != 1:
        raise SyncToolError(f"the audio must be mono (N,) at {SR} Hz, got shape {wav.shape}",
                            EXIT_USAGE)
    rgb = frames if _check_choice(order, ("rgb", "bgr"), "order") == "rgb" else frames[..., ::-1]
    usable = min(len(frames), len(wav) // SAMPLES_PER_FRAME)
    _require_length("the clip", usable, len(frames), len(wav), vshift)
    facts = {"duration_s": round(len(frames) / FPS, 3), "video_frames": len(frames),
             "source_fps": float(FPS), "source_size": [frames.shape[2], frames.shape[1]]}
    return _Input("the clip", wav, usable, lambda: (frame for frame in rgb[:usable]), facts,
                  stages)


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------
def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False,
                file=sys.stderr)


def _face_track(source: _Input, usable: int, cfg: PreprocessConfig, detector, progress: bool):
    """Pass 1: detect faces frame by frame (one decoded frame held), then track and smooth.

    Returns the :class:`avlib.data.tracking.FaceTrack` of the first ``usable`` frames of
    ``source`` and the frame size (width, height).
    """
    where, frames, stages = source.where, source.frames(), source.stages
    detections: list[list[tuple[np.ndarray, float]]] = []
    size = None
    with contextlib.closing(frames), _progress(usable, "faces", progress) as bar:
        for frame in itertools.islice(frames, usable):
            size = (frame.shape[1], frame.shape[0])
            t0 = time.perf_counter()
            # Boxes and scores only: Detection also carries keypoints the track does not need.
            detections.append([(np.asarray(d.box), d.score) for d in detector.detect(frame)])
            stages["detect"] += time.perf_counter() - t0
            del frame
            bar.update(1)
    if not detections:
        raise SyncToolError(f"{where}: the video stream decodes to no frames")
    t0 = time.perf_counter()
    try:
        track = track_faces(detections, size, cfg)
    except ClipRejected as rej:
        hint = {
            "no_face": "the sync check needs the speaker's face, roughly frontal, on most frames",
            "face_track_gaps": "cut the video to the part where the speaker is on screen",
            "multi_face": "cut the video to one speaker",
        }.get(rej.reason, "")
        word = "no face found" if rej.reason == "no_face" else "unusable face track"
        raise SyncToolError(f"{where}: {word}: {rej.detail}"
                            + (f"; {hint}" if hint else "")) from rej
    stages["detect"] += time.perf_counter() - t0
    return track, size


def _syncnet_crops(frames: Iterator[np.ndarray], params: np.ndarray, crop_size: int,
                   stages: dict) -> Iterator[np.ndarray]:
    """Pass 2: BGR SyncNet crops (crop_size, crop_size, 3) uint8, one decoded frame at a time.

    ``params`` (T, 3) are the smoothed crop parameters x, y, bs of every frame
    (``FaceTrack.syncnet``); decoding stops after frame T - 1.
    """
    with contextlib.closing(frames):
        for index, frame in enumerate(itertools.islice(frames, len(params))):
            t0 = time.perf_counter()
            x, y, bs = params[index]
            crop = crop_syncnet(frame, x, y, bs, crop_size)
            # Drop the decoded frame before the consumer asks for the next one.
            del frame
            stages["crop"] += time.perf_counter() - t0
            yield crop


def _resized(frames: Iterator[np.ndarray], usable: int, crop_size: int,
             stages: dict) -> Iterator[np.ndarray]:
    """``cropped``: every RGB frame resized to (crop_size, crop_size) (``cv2.resize`` default,
    bilinear, as Wav2Lip's LSE scripts resize every frame to 224) and turned BGR."""
    with contextlib.closing(frames):
        for frame in itertools.islice(frames, usable):
            t0 = time.perf_counter()
            if frame.shape[:2] != (crop_size, crop_size):
                frame = cv2.resize(np.ascontiguousarray(frame), (crop_size, crop_size))
            crop = np.ascontiguousarray(frame[..., ::-1])
            del frame
            stages["crop"] += time.perf_counter() - t0
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


def measure_config(crop_size: int, max_side: int | None) -> PreprocessConfig:
    """Decoding and face-tracking settings of a measurement: the preprocessing defaults, crops
    of ``crop_size``, frames downscaled to ``max_side`` (0 or None: never, as ``avlib
    preprocess --max-side 0``)."""
    return PreprocessConfig(crops=("syncnet",), features=(), syncnet_size=int(crop_size),
                            max_side=max_side_option(max_side))


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise SyncToolError(f"batch_size must be a positive whole number of windows, got "
                            f"{batch_size!r}", EXIT_USAGE)
    return int(batch_size)


def _analyse(
    path, model, vshift: int = DEFAULT_VSHIFT, batch_size: int = 20, device="cpu",
    progress: bool = True, max_side: int | None = DEFAULT_MAX_SIDE,
    cfg: PreprocessConfig | None = None, detector=None, *, protocol: str = "avlib",
    precision: str = "fp32", cropped: bool = False, tmp_dir: str | os.PathLike | None = None,
    engine: SyncEngine | None = None, order: str = "rgb",
) -> tuple[SyncResult, dict]:
    """:func:`check_video` plus a dict of facts about the run (for the CLI, fix_video, batch).

    ``path`` is a video file or a ``(frames, wav)`` pair (:func:`lse`); ``engine`` reuses an
    open :class:`SyncEngine` (batch workers), else one is made from ``model``.
    """
    vshift = _check_vshift(vshift)
    batch_size = _check_batch_size(batch_size)
    protocol = _check_choice(protocol, PROTOCOLS, "protocol")
    _check_choice(precision, PRECISIONS, "precision")
    stages = dict.fromkeys(("decode", "detect", "crop", "network", "distances"), 0.0)
    t_start = time.perf_counter()
    if engine is None:
        size = getattr(model, "img_size", OFFICIAL_IMG_SIZE)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise SyncToolError(f"the model's img_size must be a positive int (crop side in "
                                f"pixels), got {size!r}")
        engine = SyncEngine(model, precision, _device(device))
    built = time.perf_counter() - t_start  # folding the fast copy counts as network time
    crop_size = engine.img_size
    cfg = cfg if cfg is not None else measure_config(crop_size, max_side)
    net0 = engine.seconds
    arrays = isinstance(path, tuple)
    where = "the clip" if arrays else Path(path)
    with contextlib.ExitStack() as stack:
        if arrays:
            if protocol != "avlib":
                raise SyncToolError("protocol='syncnet_python' re-reads a video file through "
                                    "ffmpeg; arrays are already decoded: pass the video's path",
                                    EXIT_USAGE)
            source = _array_input(*path, order, vshift, stages)
        elif protocol == "avlib":
            source = _avlib_input(where, vshift, cfg, stages)
        else:
            info = _probe(where)  # fail fast, before any extraction
            work = stack.enter_context(_scratch_folder(tmp_dir))
            source = _syncnet_python_input(where, info, vshift, work, stages)
        t0 = time.perf_counter()
        mfcc = torch.from_numpy(syncnet_mfcc(source.wav))  # (13, M); int16 is used as is
        stages["decode"] += time.perf_counter() - t0
        track, frame_size = None, None
        if not cropped:
            own_detector = detector is None
            t0 = time.perf_counter()
            detector = make_detector(cfg) if own_detector else detector
            stages["detect"] += time.perf_counter() - t0
            try:
                track, frame_size = _face_track(source, source.usable, cfg, detector, progress)
            finally:
                if own_detector:
                    detector.close()
        t_faces = time.perf_counter()
        n_frames = len(track.syncnet) if track is not None else source.usable
        # The header promised `usable` frames; a stream that decodes fewer is judged by what
        # it gave.
        _require_length(where, n_frames, n_frames, len(source.wav), vshift)
        if track is not None:
            crops = _syncnet_crops(source.frames(), track.syncnet, crop_size, stages)
        else:
            crops = _resized(source.frames(), n_frames, crop_size, stages)
        with _progress(n_frames, "sync", progress) as bar, _eval_mode(model):
            counted = _Counted(crops, bar)
            video_emb, audio_emb, consumed = embed_stream(engine, counted, mfcc, n_frames,
                                                          batch_size)
    _require_length(where, consumed, consumed, len(source.wav), vshift)
    t0 = time.perf_counter()
    result = summarise_dists(calc_pdist(video_emb, audio_emb, vshift), vshift)
    t_end = time.perf_counter()
    stages["distances"] = t_end - t0
    stages["network"] = engine.seconds - net0 + built
    facts = {
        "path": str(where),
        **source.facts,
        "audio_s": round(len(source.wav) / SR, 3),
        "frames_used": consumed,
        "frame_size": list(frame_size) if frame_size else None,
        "crop_size": crop_size,
        "faces": (None if track is None else {
            k: track.stats[k] for k in ("detected", "interpolated", "missing", "n_faces_max")}),
        "windows": result.n_windows,
        "protocol": protocol,
        "precision": engine.precision,
        "cropped": bool(cropped),
        "fast_network": engine.fast,
        "forward_s": round(engine.seconds - net0, 4),  # the network's passes alone
        "faces_s": round(t_faces - t_start, 3),
        "sync_s": round(t_end - t_faces, 3),
        "stages": {k: round(v, 4) for k, v in stages.items()},
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
    protocol: str = "avlib",
    precision: str = "fp32",
    cropped: bool = False,
    tmp_dir: str | os.PathLike | None = None,
) -> SyncResult:
    """Measure the AV offset, LSE-D and LSE-C of a video, streaming (see the module doc).

    Args:
        path: any video with an audio stream (any frame rate: frames are taken at 25 fps by
            timestamp; audio resampled to 16 kHz mono).
        model: a :class:`~avlib.models.SyncNet` (e.g. from :func:`load_syncnet`) or any object
            with ``img_size`` and ``forward_lip((B, 3, 5, S, S))`` /
            ``forward_aud((B, 1, 13, 20))``, already on ``device``. Crops are made at its
            ``img_size`` (224 if absent).
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
        protocol, precision, cropped: see :func:`lse`.
        tmp_dir: where ``protocol="syncnet_python"`` extracts its frames (default ``$TMPDIR``);
            the folder it makes there is always removed.

    Returns:
        :class:`avlib.sync.SyncResult`: ``offset`` (frames, > 0 = audio leads), ``min_dist``
        (LSE-D), ``confidence`` (LSE-C), ``mean_dists`` (2 vshift + 1,) per candidate offset.

    Raises:
        SyncToolError: missing file, no audio/video stream, too short (see :func:`min_frames`),
        no usable face track, bad arguments. MediaError: the file cannot be decoded.
    """
    result, _ = _analyse(path, model, vshift, batch_size, device, progress, max_side, cfg,
                         detector, protocol=protocol, precision=precision, cropped=cropped,
                         tmp_dir=tmp_dir)
    return result


def lse(
    video_or_frames_and_audio,
    model=None,
    *,
    protocol: str = "avlib",
    precision: str = "fp32",
    cropped: bool = False,
    vshift: int = DEFAULT_VSHIFT,
    batch_size: int = 20,
    device: str | torch.device = "cpu",
    order: str = "rgb",
    max_side: int | None = DEFAULT_MAX_SIDE,
    progress: bool = False,
    tmp_dir: str | os.PathLike | None = None,
) -> SyncResult:
    """LSE-D, LSE-C, the AV offset and the per-window confidence of a clip: the lip-sync metric.

    The protocol (syncnet_python's ``SyncNetInstance.evaluate``, spec §1.2, §1.5; Wav2Lip's
    LSE scripts, §2.8):

    * **fps / audio**: video at **25 fps** (other rates are resampled by timestamp), audio mono
      **16 kHz**; ``T`` frames and ``N`` samples give ``min(T, N // 640) - 5`` windows.
    * **crop / size**: one face track (BlazeFace boxes extended to S3FD's shape, 13-frame median
      smoothing) cut with ``run_pipeline.py``'s geometry: half-size ``bs``, window
      ``[y - bs, y + bs (1 + 2 * 0.4)] x [x - bs (1 + 0.4), x + bs (1 + 0.4)]``, padded with
      110, resized bilinearly to the model's ``img_size`` (**224 x 224** for ``syncnet_v2``),
      **BGR**, raw 0-255. ``cropped=True``: the input already is a face track (syncnet_python's
      ``pycrop/*.avi``, any square crop): no detection, every frame is resized to ``img_size``.
    * **windows**: 5 frames (3 x 5 x 224 x 224) against 13 x 20 MFCC columns ``4i .. 4i + 19``
      (python_speech_features defaults on the int16-scale signal); 1024-d embeddings.
    * **vshift**: **15** (offsets -15 .. +15 frames = ±600 ms): each video window against the
      audio windows ``i - 15 .. i + 15``, the audio zero-padded at both ends and **not masked**.
    * **numbers**: distances averaged over windows (``mean_dists``, 31 values); **LSE-D** =
      ``min_dist`` = their minimum, **offset** = ``vshift - argmin`` (> 0: the audio leads),
      **LSE-C** = ``confidence`` = median - minimum; syncnet_python's ``fconf`` =
      ``framewise_conf`` = median - the window's distance at the best offset, median-filtered
      over 9 windows.

    Args:
        video_or_frames_and_audio: a video path (any container ffmpeg reads, with an audio
            stream), or a pair ``(frames, wav)``: frames (T, H, W, 3) uint8 in ``order`` (whole
            frames, or face crops with ``cropped=True``) at 25 fps, wav (N,) at 16 kHz, float in
            [-1, 1] or int16.
        model: a :class:`~avlib.models.SyncNet` (on ``device``), a weights file for
            :func:`load_syncnet`, or None for ``$AVLIB_SYNCNET_WEIGHTS``.
        protocol: ``"avlib"`` (default): PyAV decoding, lossless, float audio aligned to the
            first frame. ``"syncnet_python"`` (video paths only): upstream's frame path, every
            frame extracted by ffmpeg to JPEG at ffmpeg's **default** mjpeg quality (no
            ``-qscale:v``, as ``SyncNetInstance.evaluate`` extracts what it scores; 200 kb/s
            rate control) and read with ``cv2.imread`` (BGR), the audio by ffmpeg as 16-bit PCM
            at 16 kHz (``-ac 1 -ar 16000 -acodec pcm_s16le``), in a temporary folder (in
            ``tmp_dir``, default ``$TMPDIR``; it holds every frame's JPEG until the measurement
            ends) that is always removed. JPEG loss and 16-bit audio move LSE-D/LSE-C slightly
            (about 1-2 % on the book's clips); face tracks and crops are made the same way.
        precision: ``"fp32"`` or ``"bf16"`` (``torch.autocast`` around the network on the CPU
            and on CUDA; distances in float32). bf16 finds the same offset and LSE-D/LSE-C
            within 1 % on the test clips (tests/test_synctool.py).
        cropped: skip face detection (see above).
        vshift: largest offset tried (frames). batch_size: windows per forward pass (memory
            holds ``batch_size + 5`` crops). device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        order: colour order of a frames array: ``"rgb"`` (as :mod:`avlib.media` decodes) or
            ``"bgr"`` (OpenCV, the clip store's ``syncnet`` crops).
        max_side: downscale decoded frames whose longer side exceeds this (0/None: never).
        progress: tqdm bars on stderr.

    Returns:
        :class:`avlib.sync.SyncResult`: ``offset``, ``min_dist`` (= ``lse_d``), ``confidence``
        (= ``lse_c``), ``framewise_conf`` (n_windows,), ``mean_dists`` and ``dists``.

    Raises:
        SyncToolError: unusable input (missing, no audio, too short, no face) or bad options.
    """
    if model is None or isinstance(model, (str, os.PathLike)):
        model = load_syncnet(model, device)
    source = video_or_frames_and_audio
    if isinstance(source, (list, tuple)):
        if len(source) != 2:
            raise SyncToolError("give a video path or a pair (frames, wav)", EXIT_USAGE)
        source = tuple(source)
    elif not isinstance(source, (str, os.PathLike)):
        raise SyncToolError(f"give a video path or a pair (frames, wav), got "
                            f"{type(source).__name__}", EXIT_USAGE)
    result, _ = _analyse(source, model, vshift, batch_size, device, progress, max_side,
                         protocol=protocol, precision=precision, cropped=cropped,
                         tmp_dir=tmp_dir, order=order)
    return result


def describe_offset(offset: int) -> str:
    """One sentence reading an offset (frames, syncnet_python's sign) in milliseconds."""
    offset = int(offset)
    ms = abs(offset) * MS_PER_FRAME
    frames = f"{abs(offset)} frame{'s' if abs(offset) != 1 else ''}"
    if offset == 0:
        return "The audio and the video are in sync (best offset 0 frames, within ±20 ms)."
    if offset > 0:
        return (f"The audio leads the video by {ms:.0f} ms ({frames}): the sound comes before "
                "the lips move.")
    return (f"The audio lags the video by {ms:.0f} ms ({frames}): the sound comes after the "
            "lips move.")


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
        residual = check_video(dst, model, vshift, batch_size, device, progress,
                               **check_options).offset
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
        raise IsADirectoryError(errno.EISDIR, f"the output {dst} is a folder; give a file name "
                                f"such as {dst / (src.stem + '_fixed.mp4')}", str(dst))
    same = dst.resolve() == src.resolve()
    if not same and dst.exists():
        try:
            same = os.path.samefile(src, dst)
        except OSError:
            pass
    if same:
        raise SyncToolError(f"the output must be a new file, not the input itself ({src})",
                            EXIT_USAGE)
    if dst.suffix.lower() not in OUTPUT_SUFFIXES:
        raise SyncToolError(f"the output {dst} must end in one of {', '.join(OUTPUT_SUFFIXES)} "
                            "(the copied H.264 video and AAC audio are muxed into it)", EXIT_USAGE)
    if not dst.parent.is_dir():
        what = "is a file" if dst.parent.exists() else "does not exist (create it first)"
        raise SyncToolError(f"cannot write {dst}: folder {dst.parent} {what}", EXIT_OUTPUT)
    if dst.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, f"{dst} exists and `fix` writes a new file; pass "
                              "--force (Python: overwrite=True) to replace it, or choose another "
                              "name", str(dst))
    probe_writable(dst)  # read-only mounts and permissions show only when tried


# ---------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------
def plot_offset_curve(result: SyncResult, path: str | os.PathLike | None = None,
                      title: str | None = None):
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
    ax.axhline(median, color="0.5", lw=1, ls="--",
               label=f"median (LSE-C = {result.confidence:.3f})")
    ax.plot([result.offset], [result.min_dist], "o", ms=8, color=plotting.COLORS["pred"],
            label=f"offset {result.offset:+d} ({result.offset * MS_PER_FRAME:+.0f} ms), "
                  f"LSE-D = {result.min_dist:.3f}")
    ax.set_xlabel("offset (frames; > 0 = audio leads the video)")
    ax.set_ylabel("mean L2 distance")
    top = ax.secondary_xaxis("top", functions=(lambda f: f * MS_PER_FRAME,
                                               lambda ms: ms / MS_PER_FRAME))
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
def measure_options(p: argparse.ArgumentParser) -> None:
    """The options of every measuring sub-command (``check``, ``fix``, ``filter``)."""
    p.add_argument("--weights", default=None,
                   help=f"SyncNet weights: the official syncnet_v2.model or a book checkpoint "
                        f"(.json of a .json/.safetensors pair); default ${ENV_WEIGHTS}")
    p.add_argument("--vshift", type=int, default=DEFAULT_VSHIFT,
                   help="largest offset tried, frames (default 15 = ±600 ms)")
    p.add_argument("--batch-size", type=int, default=20,
                   help="windows per forward pass (default 20)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="network arithmetic: fp32 (default) or bf16 autocast (CPU and CUDA); "
                        "distances are float32 either way")
    p.add_argument("--protocol", choices=PROTOCOLS, default="avlib",
                   help="avlib (default): lossless decoding; syncnet_python: frames through "
                        "ffmpeg JPEGs at its default quality read with cv2.imread, audio as "
                        "16-bit PCM, as syncnet_python scores them")
    p.add_argument("--cropped", action="store_true",
                   help="the videos are face tracks already (syncnet_python's pycrop/*.avi, "
                        "square crops): no face detection, frames resized to the model's size")
    p.add_argument("--tmp-dir", default=None,
                   help="folder for --protocol syncnet_python's JPEG frames (default $TMPDIR); "
                        "always cleaned")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help=f"{MAX_SIDE_HELP} (default {DEFAULT_MAX_SIDE})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def batch_options(p: argparse.ArgumentParser) -> None:
    """The options of the sub-commands that score many videos (``check --csv``, ``filter``)."""
    p.add_argument("--workers", type=int, default=1,
                   help="processes scoring files in parallel, one torch thread each (default 1)")
    p.add_argument("--retry-errors", action="store_true",
                   help="score again the files the CSV records as errors")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``check VIDEO... [--csv]``, ``fix VIDEO -o OUT`` and ``filter DATASET`` sub-commands."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="{check,fix,filter}")

    check = actions.add_parser(
        "check", help="measure the AV offset, LSE-D and LSE-C of one or more videos",
        description="Measure the audio-visual offset, LSE-D and LSE-C of each VIDEO with SyncNet. "
                    "With several videos or --csv: one row per file, resumable.")
    check.add_argument("video", nargs="+", help="video files with the speaker's face and the audio")
    measure_options(check)
    check.add_argument("--plot", default=None, metavar="PNG",
                       help="save the distance-vs-offset curve here (one video)")
    check.add_argument("--csv", default=None, metavar="CSV",
                       help="append one row per video (path, status, offset, LSE-D, LSE-C, "
                            "reason); files it already holds are skipped")
    batch_options(check)

    fix = actions.add_parser(
        "fix", help="write a copy with the audio shifted to cancel the offset",
        description="Write a copy of VIDEO whose audio is shifted to cancel the measured (or "
                    "given) offset; the video stream is not re-encoded.")
    fix.add_argument("video", help="video file with the speaker's face and the audio")
    measure_options(fix)
    fix.add_argument("-o", "--output", required=True,
                     help=f"output video, a new file ({', '.join(OUTPUT_SUFFIXES)}); see --force")
    fix.add_argument("--force", action="store_true", help="replace the output file if it exists")
    fix.add_argument("--offset", type=int, default=None,
                     help="known offset in frames as `sync check` prints it (> 0 = audio leads); "
                          "skips the measurement and needs no weights")
    fix.add_argument("--verify", action="store_true",
                     help="re-check the output and print its offset")

    from avlib.sync import batch

    batch.add_filter_arguments(actions.add_parser(
        "filter", help="keep the clips of a dataset whose sync is trustworthy",
        description="Score every video of DATASET (a folder, searched recursively, or a text "
                    "file listing videos), resumably, and write the list of clips to keep, a "
                    "report of the dropped ones and optionally sync-corrected copies."))


def _print_check(result: SyncResult, facts: dict, weights: str) -> None:
    faces = facts["faces"]
    width, height = facts["source_size"]
    if faces is None:
        seen = "face track given (--cropped: no detection)"
    else:
        seen = f"face on {faces['detected']}/{facts['frames_used']} frames" + (
            f" ({faces['interpolated']} filled)" if faces["interpolated"] else "")
    print(f"video      {facts['path']}: {facts['duration_s']:.2f} s, {facts['video_frames']} "
          f"frames at 25 fps, {width}x{height}; {seen}")
    print(f"weights    {weights}")
    how = f"{facts['protocol']} protocol, {facts['precision']}"
    print(f"windows    {result.n_windows} five-frame windows of {facts['crop_size']}x"
          f"{facts['crop_size']} crops, offsets -{result.vshift}..+{result.vshift} frames "
          f"({how}, {facts['faces_s'] + facts['sync_s']:.1f} s)")
    print(f"AV offset  {result.offset:+d} frames ({result.offset * MS_PER_FRAME:+.0f} ms)")
    print(f"LSE-D      {result.min_dist:.3f}  (min dist: lower = closer match)")
    print(f"LSE-C      {result.confidence:.3f}  (confidence: median - min dist, higher = more "
          "certain)")
    print(describe_offset(result.offset))
    if abs(result.offset) == result.vshift:
        print(f"Note: the best offset is at the edge of the searched range (±{result.vshift} "
              "frames); the real offset may be larger: rerun with a larger --vshift.")
    if result.offset:
        print(_fix_hint(result.offset))


def weights_label(weights: str | os.PathLike | None) -> str:
    """How a scores CSV names the weights: the absolute path of the file given (or of
    ``$AVLIB_SYNCNET_WEIGHTS``)."""
    source = os.environ.get(ENV_WEIGHTS, "") if weights is None else weights
    return os.path.abspath(os.path.expanduser(os.fspath(source)))


def measure_kwargs(args: argparse.Namespace) -> dict:
    """The measuring options of a parsed command line, as keyword arguments of :func:`_analyse`."""
    return {"max_side": max_side_option(args.max_side), "protocol": args.protocol,
            "precision": args.precision, "cropped": args.cropped, "tmp_dir": args.tmp_dir}


def main_from_args(args: argparse.Namespace) -> int:
    """Run ``avlib sync check|fix|filter``. Errors are raised and turned into one line on
    stderr and an exit code by :func:`avlib.cli.run_command` (2 usage, 3 input, 4 output ...)."""
    options = measure_kwargs(args)
    if args.action in ("filter",) or (args.action == "check"
                                      and (len(args.video) > 1 or args.csv)):
        from avlib.sync import batch

        if args.action == "check" and args.plot:
            raise SyncToolError("--plot draws the curve of one video; check it alone", EXIT_USAGE)
        return batch.main_from_args(args)
    if args.action == "check":
        model, weights = _load_syncnet(args.weights)
        model.to(_device(args.device))
        video = args.video[0]
        result, facts = _analyse(video, model, args.vshift, args.batch_size, args.device,
                                 not args.quiet, **options)
        _print_check(result, facts, weights)
        if args.plot:
            plot_offset_curve(result, args.plot, title=Path(video).name)
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
                     args.device, not args.quiet, args.verify, overwrite=args.force, **options)
    if done["measured"]:
        _print_check(done["result"], done["check"], weights)
    else:
        print(f"AV offset  {done['offset_frames']:+d} frames ({done['offset_ms']:+.0f} ms), "
              "given with --offset")
    shift = done["shift_frames"]
    if shift == 0:
        action = "the audio unchanged (offset 0)"
    else:
        verb = "delayed" if shift > 0 else "advanced"
        action = f"the audio {verb} by {abs(done['shift_ms']):.0f} ms ({abs(shift)} frames)"
    print(f"wrote      {done['output']}: video stream copied (not re-encoded), {action}")
    if done["residual_offset"] is not None:
        print(f"re-check   {done['residual_offset']:+d} frames "
              f"({done['residual_offset'] * MS_PER_FRAME:+.0f} ms)")
    return EXIT_OK
