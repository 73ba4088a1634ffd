"""Audio-visual synchronisation evaluation shared by every sync model of the book.

Two protocols live here, both built on the same bookkeeping (25 fps video, 16 kHz audio,
5-frame windows; see :mod:`avlib.audio`):

* **syncnet_python's offset / LSE protocol** (spec §1.5, §2.8): :func:`syncnet_offset` (and its
  bounded-memory twin :func:`syncnet_offset_stream`) embed every 5-frame window of a clip and its
  audio window with SyncNet, compare each video window with the audio windows up to ``vshift``
  frames away, and report the AV offset, the minimum mean distance (**LSE-D**) and the confidence
  (**LSE-C**).
* **The sync-accuracy protocol of VocaLiST / Perfect Match** (spec §3.5): a scorer gives each
  5-frame window ``2 vshift + 1`` scores (one per candidate offset, higher = more in sync),
  :func:`offset_accuracy` averages them over longer contexts and counts the windows whose best
  offset is within ±1 frame of the truth, and :func:`evaluate_sync` runs it over a set of clips.
  :class:`EmbeddingScorer` (SyncNet, the Wav2Lip expert) and :class:`PairScorer` (VocaLiST,
  MTDVocaLiST) implement the :class:`SyncScorer` interface, so one evaluation serves every model.

Window bookkeeping (both protocols, as upstream)
------------------------------------------------
A clip with ``T`` frames and ``N`` samples has ``n = min(T, floor(N / 640)) - 5`` windows; window
``i`` is frames ``i .. i+4`` and the audio from video frame ``i`` on (MFCC columns ``4i .. 4i+19``,
mel columns ``floor(3.2 i) .. +16``). Upstream stops one window early (the window starting at
``min(T, N/640) - 5`` is complete but never scored); that is kept. Score column ``j`` of window
``i`` compares video window ``i`` with audio window ``i - vshift + j``.

Sign convention
---------------
``offset = vshift - best column``. An offset ``k > 0`` means the audio that best matches video
window ``i`` is audio window ``i - k``: the sound comes ``k`` frames *earlier* than the picture
(audio leads). Delaying the audio by ``d`` frames (``avlib.media.remux_with_shifted_audio(...,
shift_frames=d)``, sound later than the picture) therefore makes SyncNet report ``offset = -d``
(:func:`audio_delay_to_offset`); tests/test_sync.py checks this through the real remux.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F

from avlib.audio import (
    MEL_WINDOW,
    MFCC_FRAMES_PER_VIDEO_FRAME,
    MFCC_WINDOW,
    SAMPLES_PER_FRAME,
    SYNC_WINDOW_FRAMES,
    mel_start_index,
    syncnet_mfcc,
    vocalist_mel,
    wav2lip_mel,
)
from avlib.models.syncnet import lip_windows
from avlib.models.wav2lip import face_halves, face_windows

__all__ = [
    "DEFAULT_VSHIFT",
    "DEFAULT_CONTEXTS",
    "OUT_OF_RANGE",
    "FRAMEWISE_MEDFILT_KERNEL",
    "EXPERT_CROP",
    "SyncResult",
    "SyncScorer",
    "EmbeddingScorer",
    "PairScorer",
    "SyncEvaluation",
    "num_sync_windows",
    "audio_delay_to_offset",
    "calc_pdist",
    "summarise_dists",
    "syncnet_offset",
    "syncnet_offset_stream",
    "out_of_range_mask",
    "lower_half_faces",
    "context_average",
    "predicted_offsets",
    "offset_accuracy",
    "evaluate_sync",
    "sync_table",
]

DEFAULT_VSHIFT = 15  #: candidate offsets -15..+15 frames (±0.6 s), syncnet_python and VocaLiST
DEFAULT_CONTEXTS = (5, 7, 9, 11, 13, 15)  #: context lengths (frames) of the LRS2 accuracy table
OUT_OF_RANGE = -1000.0  #: VocaLiST's score for candidate audio windows outside the clip
FRAMEWISE_MEDFILT_KERNEL = 9  #: median filter applied to syncnet_python's frame-wise confidence
EXPERT_CROP = 96  #: face crop side of the Wav2Lip expert and VocaLiST (lower half = 48 x 96)

_PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance default, as in syncnet_python


# ---------------------------------------------------------------------------------------------
# Bookkeeping and validation
# ---------------------------------------------------------------------------------------------
def num_sync_windows(n_frames: int, n_samples: int) -> int:
    """Number of scored 5-frame windows: ``min(T, floor(N / 640)) - 5`` (may be <= 0)."""
    return min(int(n_frames), int(n_samples) // SAMPLES_PER_FRAME) - SYNC_WINDOW_FRAMES


def audio_delay_to_offset(shift_frames: int) -> int:
    """The offset the sync protocols report for audio delayed by ``shift_frames`` frames.

    ``shift_frames`` uses the convention of :func:`avlib.media.remux_with_shifted_audio`
    (> 0: the sound comes later than the picture). The sound of video frame ``i`` then sits in
    audio window ``i + d``, the best column is ``vshift + d`` and ``offset = vshift - column = -d``.
    Use the result as ``true_offset`` of :func:`offset_accuracy` / :func:`evaluate_sync`.
    """
    if int(shift_frames) != shift_frames:
        raise ValueError(
            f"the sync protocols measure whole frames; got shift_frames={shift_frames!r}"
        )
    return -int(shift_frames)


def _check_vshift(vshift) -> int:
    if int(vshift) != vshift or vshift < 0:
        raise ValueError(f"vshift must be a non-negative integer number of frames, got {vshift!r}")
    return int(vshift)


def _check_batch_size(batch_size) -> int:
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _check_frame(frame, what: str, size: int | None) -> np.ndarray:
    """One (H, W, 3) uint8 frame; square of side ``size`` when given."""
    if isinstance(frame, torch.Tensor):
        raise ValueError(f"{what}: expected numpy uint8 frames, got a torch.Tensor; pass .numpy()")
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{what}: expected a (H, W, 3) BGR frame, got shape {arr.shape}")
    _check_pixels(arr, what, size)
    return arr


def _check_frames(frames, what: str, size: int | None) -> np.ndarray:
    """A (T, H, W, 3) uint8 clip; square crops of side ``size`` when given."""
    if isinstance(frames, torch.Tensor):
        raise ValueError(f"{what}: expected numpy uint8 frames, got a torch.Tensor; pass .numpy()")
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(
            f"{what}: expected frames of shape (T, H, W, 3) (uint8, BGR face crops), got {arr.shape}"
        )
    _check_pixels(arr, what, size)
    return arr


def _check_pixels(arr: np.ndarray, what: str, size: int | None) -> None:
    if arr.dtype != np.uint8:
        raise ValueError(
            f"{what}: expected uint8 pixels (0-255), got {arr.dtype}; convert with "
            "np.clip(x, 0, 255).astype(np.uint8) (scale [0, 1] floats by 255 first)"
        )
    height, width = arr.shape[-3], arr.shape[-2]
    if size is not None and (height, width) != (size, size):
        raise ValueError(
            f"{what}: the model expects {size}x{size} face crops, got {height}x{width}; resize "
            f"them first (e.g. cv2.resize(frame, ({size}, {size})))"
        )


def _clip_length(wav, what: str) -> int:
    arr = np.asarray(wav)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected mono audio of shape (N,), got shape {arr.shape}")
    return int(arr.shape[0])


def _require_windows(n_windows: int, n_frames: int, n_samples: int, what: str) -> None:
    if n_windows < 1:
        raise ValueError(
            f"{what}: the clip is too short to score: {n_frames} frames and {n_samples} samples "
            f"give {n_windows} windows; sync evaluation needs at least 6 frames and 6 x 640 = "
            "3840 samples (0.24 s)"
        )


def _check_device(model, device) -> torch.device:
    """``device`` as a torch.device, after checking the model's weights live there."""
    dev = torch.device(device)
    tensors = getattr(model, "parameters", None)
    first = next(iter(tensors()), None) if callable(tensors) else None
    if first is None and callable(getattr(model, "buffers", None)):
        first = next(iter(model.buffers()), None)
    if first is not None:
        same = first.device.type == dev.type and (dev.index is None or dev.index == first.device.index)
        if not same:
            raise ValueError(
                f"the model's weights are on {first.device} but device={str(dev)!r}; move the model "
                f"with model.to({str(dev)!r}) or pass device={str(first.device)!r}"
            )
    return dev


@contextmanager
def _inference(model):
    """Eval mode (frozen BatchNorm statistics, no dropout) and no autograd; restores the mode."""
    was_training = bool(getattr(model, "training", False))
    if callable(getattr(model, "eval", None)):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


# ---------------------------------------------------------------------------------------------
# Window tensors
# ---------------------------------------------------------------------------------------------
def _mfcc_batch(mfcc: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """MFCC ``(13, M)`` -> windows ``start .. stop-1`` as ``(B, 1, 13, 20)`` (columns 4i .. 4i+19)."""
    cols = (
        MFCC_FRAMES_PER_VIDEO_FRAME * torch.arange(start, stop)[:, None] + torch.arange(MFCC_WINDOW)
    )
    if int(cols[-1, -1]) >= mfcc.shape[1]:
        raise ValueError(
            f"MFCC has {mfcc.shape[1]} columns but window {stop - 1} needs column {int(cols[-1, -1])}"
        )
    return mfcc[:, cols].permute(1, 0, 2).unsqueeze(1).contiguous()


def lower_half_faces(frames: np.ndarray) -> np.ndarray:
    """Lower halves of 96x96 BGR crops, channels first, in [0, 1]: (T, 96, 96, 3) -> (T, 3, 48, 96)
    (:func:`avlib.models.wav2lip.face_halves`, after this module's input checks)."""
    return face_halves(_check_frames(frames, "lower_half_faces", EXPERT_CROP))


def _mel_windows(mel: np.ndarray, n_windows: int) -> np.ndarray:
    """Mel (80, M) -> (n_windows, 1, 80, 16): window i = columns floor(3.2 i) .. +16."""
    starts = np.array([mel_start_index(i) for i in range(n_windows)])
    if starts[-1] + MEL_WINDOW > mel.shape[1]:
        raise ValueError(
            f"mel has {mel.shape[1]} frames but window {n_windows - 1} needs {starts[-1] + MEL_WINDOW}"
        )
    cols = starts[:, None] + np.arange(MEL_WINDOW)
    return np.ascontiguousarray(mel[:, cols].transpose(1, 0, 2)[:, None])


# ---------------------------------------------------------------------------------------------
# syncnet_python's offset / LSE-D / LSE-C protocol
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncResult:
    """Outcome of syncnet_python's ``evaluate`` on one clip.

    Attributes:
        offset: AV offset in frames, ``vshift - argmin(mean_dists)`` (> 0: audio leads the video;
            audio delayed by d frames gives -d, see :func:`audio_delay_to_offset`).
        min_dist: smallest mean distance, ``min(mean_dists)`` — **LSE-D** (lower = better sync).
        confidence: ``median(mean_dists) - min_dist`` — **LSE-C** (higher = more confident).
        mean_dists: (2 vshift + 1,) distance per candidate offset, averaged over windows; entry j
            compares video window i with audio window i - vshift + j.
        framewise_conf: (n_windows,) ``median(mean_dists) - dists[:, argmin]``, median-filtered
            with kernel 9 (zero-padded at the ends, as scipy's medfilt).
        dists: (n_windows, 2 vshift + 1) L2 distances between unnormalised embeddings.
    """

    offset: int
    min_dist: float
    confidence: float
    mean_dists: np.ndarray
    framewise_conf: np.ndarray
    dists: np.ndarray

    @property
    def vshift(self) -> int:
        """Largest candidate offset (frames)."""
        return (self.dists.shape[1] - 1) // 2

    @property
    def n_windows(self) -> int:
        """Number of 5-frame windows scored."""
        return int(self.dists.shape[0])

    @property
    def lse_d(self) -> float:
        """LSE-D (Wav2Lip's name for ``min_dist``)."""
        return self.min_dist

    @property
    def lse_c(self) -> float:
        """LSE-C (Wav2Lip's name for ``confidence``)."""
        return self.confidence


_PDIST_CHUNK_ELEMENTS = 1 << 22  # floats per (chunk, 2 vshift + 1, D) block of calc_pdist


def calc_pdist(video_emb, audio_emb, vshift: int = DEFAULT_VSHIFT) -> torch.Tensor:
    """syncnet_python's ``calc_pdist``: distances of each video window to nearby audio windows.

    Args:
        video_emb: (n, D) video-window embeddings.
        audio_emb: (n, D) audio-window embeddings (same windows).
        vshift: largest offset (frames) tried in each direction.

    Returns:
        (n, 2 vshift + 1) float tensor; entry (i, j) is ``pairwise_distance(video_emb[i],
        audio_emb[i - vshift + j])``, i.e. ``||v - a + 1e-6||_2``. The audio sequence is padded
        with **zero vectors** on both ends and those positions are **not masked** (upstream quirk
        kept on purpose): an edge window's out-of-range entries are its distance to the origin.

    Memory: computed over chunks of windows, each a (chunk, 2 vshift + 1, D) difference of about
    4 M floats (132 windows at D = 1024) taken from a strided view of the padded audio (no
    copies of the overlapping candidate windows), so the temporaries do not grow with the video:
    a 10-minute video at D = 1024 needs little more than its two embedding matrices and a padded
    copy of the audio one (about 60 MB each). Every entry is the same row reduction as
    upstream's, so the values do not depend on the chunking.
    """
    vshift = _check_vshift(vshift)
    video = torch.as_tensor(video_emb)
    audio = torch.as_tensor(audio_emb)
    if video.ndim != 2 or video.shape != audio.shape:
        raise ValueError(
            f"calc_pdist needs two (n, D) embedding arrays of equal shape, got "
            f"{tuple(video.shape)} and {tuple(audio.shape)}"
        )
    n, dim = video.shape
    width = 2 * vshift + 1
    padded = F.pad(audio, (0, 0, vshift, vshift))  # zero vectors at both ends
    # (n, width, D) view, no copy: row i holds the audio windows i - vshift .. i + vshift.
    candidates = padded.unfold(0, width, 1).transpose(1, 2)
    out = torch.empty(n, width, dtype=torch.promote_types(video.dtype, audio.dtype))
    chunk = max(1, _PDIST_CHUNK_ELEMENTS // max(1, width * dim))
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        out[a:b] = F.pairwise_distance(video[a:b, None, :], candidates[a:b], eps=_PAIRWISE_EPS)
    return out


def summarise_dists(dists, vshift: int | None = None) -> SyncResult:
    """Offset, LSE-D, LSE-C and frame-wise confidence from a (n, 2 vshift + 1) distance matrix.

    syncnet_python's arithmetic in float32: mean over windows, ``torch.min`` for the best
    column, ``torch.median`` (the middle value: the width is always odd), and
    ``scipy.signal.medfilt(kernel_size=9)`` on the frame-wise confidence.
    """
    d = torch.as_tensor(dists, dtype=torch.float32)
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] % 2 != 1:
        raise ValueError(
            f"dists must have shape (n_windows >= 1, 2 * vshift + 1), got {tuple(d.shape)}"
        )
    width_vshift = (d.shape[1] - 1) // 2
    if vshift is not None and _check_vshift(vshift) != width_vshift:
        raise ValueError(f"dists has {d.shape[1]} columns, which is vshift={width_vshift}, not {vshift}")
    # Upstream stacks the per-window vectors as columns (2v+1, n) and averages along the rows;
    # the same contiguous layout keeps the float32 summation order.
    mean_dists = d.t().contiguous().mean(dim=1)
    min_val, min_idx = torch.min(mean_dists, 0)
    median = torch.median(mean_dists)
    framewise = (median - d[:, min_idx]).numpy()
    with warnings.catch_warnings():
        # Clips shorter than the kernel are zero-padded by medfilt, exactly as upstream.
        warnings.filterwarnings("ignore", message="kernel_size exceeds volume extent")
        framewise = scipy.signal.medfilt(framewise, kernel_size=FRAMEWISE_MEDFILT_KERNEL)
    return SyncResult(
        offset=width_vshift - int(min_idx),
        min_dist=float(min_val),
        confidence=float(median - min_val),
        mean_dists=mean_dists.numpy(),
        framewise_conf=np.asarray(framewise, dtype=np.float32),
        dists=d.numpy(),
    )


def _embed_syncnet(
    model, chunks: Iterable[tuple[int, int, np.ndarray]], mfcc: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Embed SyncNet windows batch by batch; ``chunks`` yields (start, stop, frames start..stop+3).

    Returns two (n, D) float32 CPU tensors, or (None, None) when ``chunks`` is empty.
    """
    video_feats, audio_feats = [], []
    with _inference(model):
        for start, stop, chunk in chunks:
            video = lip_windows(chunk, stop - start).to(device)
            audio = _mfcc_batch(mfcc, start, stop).to(device)
            video_feats.append(model.forward_lip(video).float().cpu())
            audio_feats.append(model.forward_aud(audio).float().cpu())
    if not video_feats:  # a stream that ended before one window was complete
        return None, None
    return torch.cat(video_feats), torch.cat(audio_feats)


def _syncnet_img_size(model) -> int | None:
    size = getattr(model, "img_size", None)
    return int(size) if isinstance(size, (int, np.integer)) else None


def _syncnet_mfcc_tensor(wav) -> torch.Tensor:
    return torch.from_numpy(syncnet_mfcc(wav))  # (13, M); float input is scaled by 32768 inside


def syncnet_offset(
    model,
    frames: np.ndarray,
    wav: np.ndarray,
    vshift: int = DEFAULT_VSHIFT,
    batch_size: int = 20,
    device: str | torch.device = "cpu",
) -> SyncResult:
    """syncnet_python's offset / LSE-D / LSE-C evaluation of one clip (spec §1.5).

    Args:
        model: a :class:`~avlib.models.SyncNet` (or any object with ``forward_lip((B, 3, 5, H, W))``
            and ``forward_aud((B, 1, 13, 20))`` returning (B, D)), already on ``device``. It runs
            in eval mode without gradients; its train/eval mode is restored afterwards.
        frames: (T, H, W, 3) uint8 **BGR** face crops at 25 fps, square and of the model's
            ``img_size`` (224 official). No resizing and no normalisation: windows are raw 0-255.
        wav: (N,) mono 16 kHz audio, int16 or float in [-1, 1] (scaled by 32768 for the MFCC, as
            syncnet_python feeds int16 samples).
        vshift: largest offset tried, in frames (±15 = ±0.6 s by default).
        batch_size: windows per forward pass (results do not depend on it beyond float rounding).
        device: where the windows are sent (the model must already be there).

    Returns:
        :class:`SyncResult` with ``n = min(T, floor(N / 640)) - 5`` windows.
    """
    vshift = _check_vshift(vshift)
    batch_size = _check_batch_size(batch_size)
    frames = _check_frames(frames, "syncnet_offset", _syncnet_img_size(model))
    mfcc = _syncnet_mfcc_tensor(wav)
    n_samples = _clip_length(wav, "syncnet_offset")
    n = num_sync_windows(len(frames), n_samples)
    _require_windows(n, len(frames), n_samples, "syncnet_offset")
    dev = _check_device(model, device)
    chunks = (
        (start, min(n, start + batch_size), frames[start : min(n, start + batch_size) + 4])
        for start in range(0, n, batch_size)
    )
    video_emb, audio_emb = _embed_syncnet(model, chunks, mfcc, dev)
    return summarise_dists(calc_pdist(video_emb, audio_emb, vshift), vshift)


def syncnet_offset_stream(
    model,
    frame_iter: Iterable[np.ndarray],
    wav: np.ndarray,
    vshift: int = DEFAULT_VSHIFT,
    batch_size: int = 20,
    device: str | torch.device = "cpu",
) -> SyncResult:
    """:func:`syncnet_offset` for long videos: frames are consumed from an iterator.

    Only the frames of the batch being filled are held (at most ``batch_size + 5``), so memory
    does not grow with the video; the embeddings and distances (a few kB per window) are kept.
    Batches are formed exactly as in :func:`syncnet_offset`, so the numbers are identical.

    Args:
        frame_iter: iterable of (H, W, 3) uint8 **BGR** face crops at 25 fps (e.g.
            ``(crop(f)[..., ::-1] for _, f in avlib.media.iter_video(path))`` — iter_video yields
            RGB). Frames beyond ``floor(len(wav) / 640)`` are not consumed.
        model, wav, vshift, batch_size, device: as in :func:`syncnet_offset`.
    """
    vshift = _check_vshift(vshift)
    batch_size = _check_batch_size(batch_size)
    mfcc = _syncnet_mfcc_tensor(wav)
    n_samples = _clip_length(wav, "syncnet_offset_stream")
    usable = n_samples // SAMPLES_PER_FRAME
    size = _syncnet_img_size(model)
    dev = _check_device(model, device)
    state = {"count": 0}

    def chunks():
        buffer: list[np.ndarray] = []  # frames start .. count-1
        start = 0
        shape = None
        for frame in frame_iter:
            if state["count"] >= usable:
                break
            frame = _check_frame(frame, f"syncnet_offset_stream (frame {state['count']})", size)
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise ValueError(
                    f"syncnet_offset_stream: frame {state['count']} has shape {frame.shape}, "
                    f"the first had {shape}; all crops must have one size"
                )
            buffer.append(frame)
            state["count"] += 1
            # Window w is scored only once frame w + 5 exists (upstream's lastframe = T - 5).
            if state["count"] - SYNC_WINDOW_FRAMES - start == batch_size:
                yield start, start + batch_size, np.stack(buffer[: batch_size + 4])
                del buffer[:batch_size]
                start += batch_size
        last = state["count"] - SYNC_WINDOW_FRAMES
        if last > start:
            yield start, last, np.stack(buffer[: last - start + 4])

    video_emb, audio_emb = _embed_syncnet(model, chunks(), mfcc, dev)
    if video_emb is None:
        n_frames = state["count"]
        _require_windows(n_frames - SYNC_WINDOW_FRAMES, n_frames, n_samples, "syncnet_offset_stream")
    return summarise_dists(calc_pdist(video_emb, audio_emb, vshift), vshift)


# ---------------------------------------------------------------------------------------------
# Scorers: one interface for every sync model
# ---------------------------------------------------------------------------------------------
@runtime_checkable
class SyncScorer(Protocol):
    """Anything that scores every 5-frame window of a clip against nearby audio windows.

    ``window_scores(frames, wav, vshift)`` takes a clip's face crops in the model's own format
    (uint8 BGR ``(T, H, W, 3)``) and its 16 kHz mono wav, does its own feature extraction, and
    returns ``(n_windows, 2 vshift + 1)`` float64 scores, **higher = more in sync**, where column
    j compares video window i with audio window ``i - vshift + j`` and
    ``n_windows = min(T, floor(N / 640)) - 5``.
    """

    def window_scores(
        self, frames: np.ndarray, wav: np.ndarray, vshift: int = DEFAULT_VSHIFT
    ) -> np.ndarray:
        ...


def out_of_range_mask(n_windows: int, vshift: int = DEFAULT_VSHIFT) -> np.ndarray:
    """Boolean (n, 2 vshift + 1): True where audio window ``i - vshift + j`` is outside [0, n)."""
    vshift = _check_vshift(vshift)
    audio_index = np.arange(n_windows)[:, None] - vshift + np.arange(2 * vshift + 1)[None, :]
    return (audio_index < 0) | (audio_index >= n_windows)


#: How an embedding model's pairs are scored, by the ``similarity`` its class declares (or by
#: ``kind=``): "l2" (SyncNet: negative distance) or "cosine" (the Wav2Lip expert).
_SIMILARITIES = ("l2", "cosine")
_KIND_SIMILARITY = {"syncnet": "l2", "wav2lip_expert": "cosine", "syncnet_color": "cosine"}


class EmbeddingScorer:
    """Scores from two-stream embedding models: SyncNet and the Wav2Lip expert.

    Each video window and each audio window is embedded once; all ``2 vshift + 1`` pairings are
    then scored from the embeddings.

    * ``kind="syncnet"`` (:class:`~avlib.models.SyncNet`): score = **negative L2 distance** of the
      unnormalised embeddings (the distances of :func:`syncnet_offset`); frames are square crops
      of the model's ``img_size``, windows raw 0-255 (3, 5, H, W); audio = SyncNet MFCC windows.
    * ``kind="wav2lip_expert"`` (:class:`~avlib.models.Wav2LipExpert`): score = **cosine similarity**
      of the L2-normalised embeddings, in [0, 1]; frames are 96x96 BGR crops whose lower halves
      /255 are stacked frame-major into (15, 48, 96); audio = Wav2Lip mel windows of 16 frames
      starting at ``mel_start_index(i)``.

    Args:
        model: the network, already on ``device``.
        kind: ``"syncnet"`` or ``"wav2lip_expert"``; inferred for the two avlib classes.
        batch_size: windows per forward pass.
        device: where inputs are sent.
        mask_out_of_range: True (default) sets candidates outside the clip to ``OUT_OF_RANGE``
            (-1000) as the accuracy protocol does; False scores them against a zero embedding,
            which is syncnet_python's unmasked padding (-||v||, or cosine 0).
    """

    def __init__(
        self,
        model,
        *,
        kind: str | None = None,
        batch_size: int = 20,
        device: str | torch.device = "cpu",
        mask_out_of_range: bool = True,
    ):
        if kind is not None and kind not in _KIND_SIMILARITY:
            raise ValueError(f"kind must be one of {sorted(_KIND_SIMILARITY)}, got {kind!r}")
        similarity = _KIND_SIMILARITY[kind] if kind else getattr(model, "similarity", None)
        if similarity not in _SIMILARITIES:
            raise ValueError(
                f"cannot tell how to score a {type(model).__name__}; pass kind='syncnet' "
                "(forward_lip / forward_aud, L2) or kind='wav2lip_expert' "
                "(forward(mel, faces), cosine)"
            )
        self.model = model
        self.similarity = similarity
        #: ``"syncnet"`` (L2 on SyncNet crops and MFCC) or ``"wav2lip_expert"`` (cosine on faces
        #: and Wav2Lip mel)
        self.kind = "syncnet" if similarity == "l2" else "wav2lip_expert"
        self.batch_size = _check_batch_size(batch_size)
        self.device = _check_device(model, device)
        self.mask_out_of_range = bool(mask_out_of_range)

    def __repr__(self) -> str:
        return (
            f"EmbeddingScorer({type(self.model).__name__}, kind={self.kind!r}, "
            f"similarity={self.similarity!r}, mask_out_of_range={self.mask_out_of_range})"
        )

    def embed(self, frames: np.ndarray, wav: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Video and audio embeddings of every window: two (n_windows, D) float32 CPU tensors."""
        n_samples = _clip_length(wav, "EmbeddingScorer")
        if self.similarity == "l2":
            frames = _check_frames(frames, "EmbeddingScorer(syncnet)", _syncnet_img_size(self.model))
            mfcc = _syncnet_mfcc_tensor(wav)
            n = num_sync_windows(len(frames), n_samples)
            _require_windows(n, len(frames), n_samples, "EmbeddingScorer")
            bs = self.batch_size
            chunks = (
                (start, min(n, start + bs), frames[start : min(n, start + bs) + 4])
                for start in range(0, n, bs)
            )
            return _embed_syncnet(self.model, chunks, mfcc, self.device)
        halves = torch.from_numpy(lower_half_faces(frames))
        n = num_sync_windows(len(halves), n_samples)
        _require_windows(n, len(halves), n_samples, "EmbeddingScorer")
        mels = torch.from_numpy(_mel_windows(wav2lip_mel(wav), n))
        video_feats, audio_feats = [], []
        with _inference(self.model):
            for start in range(0, n, self.batch_size):
                stop = min(n, start + self.batch_size)
                faces = face_windows(halves, torch.arange(start, stop)).to(self.device)
                audio_emb, face_emb = self.model(mels[start:stop].to(self.device), faces)
                video_feats.append(face_emb.float().cpu())
                audio_feats.append(audio_emb.float().cpu())
        return torch.cat(video_feats), torch.cat(audio_feats)

    def window_scores(
        self, frames: np.ndarray, wav: np.ndarray, vshift: int = DEFAULT_VSHIFT
    ) -> np.ndarray:
        """(n_windows, 2 vshift + 1) float64 scores, higher = more in sync (see the class doc)."""
        vshift = _check_vshift(vshift)
        video_emb, audio_emb = self.embed(frames, wav)
        if self.similarity == "l2":
            scores = -calc_pdist(video_emb, audio_emb, vshift)
        else:
            n, dim = video_emb.shape
            width = 2 * vshift + 1
            padded = F.pad(audio_emb, (0, 0, vshift, vshift))
            candidates = padded.unfold(0, width, 1).permute(0, 2, 1).reshape(n * width, dim)
            queries = video_emb.repeat_interleave(width, dim=0)
            scores = F.cosine_similarity(queries, candidates, dim=1).view(n, width)
        out = scores.double().numpy()
        if self.mask_out_of_range:
            out[out_of_range_mask(len(out), vshift)] = OUT_OF_RANGE
        return out


class PairScorer:
    """Scores from joint (video window, audio window) models: VocaLiST and MTDVocaLiST (spec §3.5).

    The model sees each pair and returns a logit: ``model(faces (B, 15, 48, 96), mel (B, 1, 80, 16))
    -> (B,)``. Faces are the lower halves of 96x96 BGR crops /255 stacked frame-major; the mel of
    the whole utterance is computed once (``mel_fn``, VocaLiST's mel by default) and window ``v``
    is columns ``floor(80 v / 25) .. +16``. For every window the ``2 vshift + 1`` candidate audio
    windows are scored in batches of ``batch_size`` pairs. Candidates outside the clip get
    ``OUT_OF_RANGE`` (-1000): upstream scores them against zero-padded audio and then overwrites
    them, so they are not computed here.

    Prenet caching: upstream runs the whole network on all 31 pairs of a window, so every video
    window goes through the (expensive) video prenet 31 times. When the model also offers
    ``prenets(faces, mel) -> (video_tokens, audio_tokens)`` and ``forward_tokens(video_tokens,
    audio_tokens) -> logits`` (the network after its prenets), each window's tokens are computed
    once and only the cross-modal part runs per pair: same logits up to float rounding, about
    ``2 vshift + 1`` times less prenet work. Models without both methods take the plain path.

    Args:
        model: the pair model, already on ``device``.
        mel_fn: wav (N,) -> mel (80, M) at 80 Hz (``avlib.audio.vocalist_mel``).
        batch_size: pairs per forward pass.
        device: where inputs are sent.
        cache_prenets: use the prenet cache when the model supports it (see above).
        upstream_edge_quirk: reproduce a detail of VocaLiST's ``test_lrs2.py``: its masking uses
            ``if i < vshift: mask left ... elif i >= n - vshift: mask right``, so in clips with
            fewer than ``2 vshift`` windows the first ``vshift`` windows keep their right-hand
            out-of-range scores (computed against an all-zero mel window) instead of -1000.
            False (default) masks every out-of-range candidate.
    """

    def __init__(
        self,
        model,
        *,
        mel_fn: Callable[[np.ndarray], np.ndarray] = vocalist_mel,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
        cache_prenets: bool = True,
        upstream_edge_quirk: bool = False,
    ):
        self.model = model
        self.mel_fn = mel_fn
        self.batch_size = _check_batch_size(batch_size)
        self.device = _check_device(model, device)
        self.cache_prenets = bool(cache_prenets)
        self.upstream_edge_quirk = bool(upstream_edge_quirk)

    def __repr__(self) -> str:
        return (
            f"PairScorer({type(self.model).__name__}, batch_size={self.batch_size}, "
            f"prenet_cache={self.uses_prenet_cache}, upstream_edge_quirk={self.upstream_edge_quirk})"
        )

    @property
    def uses_prenet_cache(self) -> bool:
        """Whether window tokens are cached (``cache_prenets`` and the model supports it)."""
        return (
            self.cache_prenets
            and callable(getattr(self.model, "prenets", None))
            and callable(getattr(self.model, "forward_tokens", None))
        )

    def scored_positions(self, n_windows: int, vshift: int = DEFAULT_VSHIFT) -> np.ndarray:
        """Boolean (n, 2 vshift + 1): the pairs the model is run on (the rest are -1000)."""
        scored = ~out_of_range_mask(n_windows, vshift)
        if self.upstream_edge_quirk:
            audio_index = np.arange(n_windows)[:, None] - vshift + np.arange(2 * vshift + 1)[None, :]
            early_rows = np.arange(n_windows)[:, None] < vshift
            scored |= early_rows & (audio_index >= n_windows)
        return scored

    def _logits(self, output, expected: int) -> np.ndarray:
        logits = torch.as_tensor(output).float().cpu().reshape(-1)
        if logits.numel() != expected:
            raise ValueError(
                f"the pair model must return one logit per pair ({expected}), got shape "
                f"{tuple(torch.as_tensor(output).shape)}"
            )
        return logits.double().numpy()

    def _window_tokens(self, halves: torch.Tensor, mels: torch.Tensor, n: int):
        """Prenet tokens of the n video windows and the n + 1 audio windows (last = zero mel)."""
        video_tokens, audio_tokens = [], []
        for start in range(0, n, self.batch_size):
            stop = min(n, start + self.batch_size)
            faces = face_windows(halves, torch.arange(start, stop)).to(self.device)
            video, audio = self.model.prenets(faces, mels[start:stop].to(self.device))
            video_tokens.append(video)
            audio_tokens.append(audio)
        # The zero window needs a face partner for prenets(); its video tokens are discarded.
        _, zero_audio = self.model.prenets(
            face_windows(halves, torch.zeros(1, dtype=torch.long)).to(self.device),
            mels[n:].to(self.device),
        )
        audio_tokens.append(zero_audio)
        return torch.cat(video_tokens), torch.cat(audio_tokens)

    def window_scores(
        self, frames: np.ndarray, wav: np.ndarray, vshift: int = DEFAULT_VSHIFT
    ) -> np.ndarray:
        """(n_windows, 2 vshift + 1) float64 logits, ``OUT_OF_RANGE`` outside the clip."""
        vshift = _check_vshift(vshift)
        halves = torch.from_numpy(lower_half_faces(frames))
        n_samples = _clip_length(wav, "PairScorer")
        n = num_sync_windows(len(halves), n_samples)
        _require_windows(n, len(halves), n_samples, "PairScorer")
        mel = np.asarray(self.mel_fn(wav), dtype=np.float32)
        if mel.ndim != 2:
            raise ValueError(f"mel_fn must return a (n_mels, frames) array, got shape {mel.shape}")
        mels = _mel_windows(mel, n)
        # Index n is an all-zero window: the zero padding used by upstream_edge_quirk.
        mels = torch.from_numpy(np.concatenate([mels, np.zeros_like(mels[:1])]))
        rows, cols = np.nonzero(self.scored_positions(n, vshift))
        audio_index = np.minimum(rows - vshift + cols, n)
        scores = np.full((n, 2 * vshift + 1), OUT_OF_RANGE, dtype=np.float64)
        rows_t, audio_t = torch.from_numpy(rows), torch.from_numpy(audio_index)
        with _inference(self.model):
            tokens = self._window_tokens(halves, mels, n) if self.uses_prenet_cache else None
            for start in range(0, len(rows), self.batch_size):
                part = slice(start, start + self.batch_size)
                if tokens is not None:
                    output = self.model.forward_tokens(tokens[0][rows_t[part]], tokens[1][audio_t[part]])
                else:
                    faces = face_windows(halves, rows_t[part]).to(self.device)
                    output = self.model(faces, mels[audio_t[part]].to(self.device))
                scores[rows[part], cols[part]] = self._logits(output, len(rows[part]))
        return scores


# ---------------------------------------------------------------------------------------------
# Offset accuracy over contexts (VocaLiST / Perfect Match protocol)
# ---------------------------------------------------------------------------------------------
def _check_scores(scores) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] % 2 != 1:
        raise ValueError(
            f"scores must have shape (n_windows >= 1, 2 * vshift + 1), got {arr.shape}"
        )
    return arr


def _check_context(context) -> int:
    if int(context) != context or context < SYNC_WINDOW_FRAMES or (context - SYNC_WINDOW_FRAMES) % 2:
        raise ValueError(
            f"a context is an odd number of frames >= 5 (5, 7, 9, ...), got {context!r}"
        )
    return int(context)


def context_average(scores, context: int) -> np.ndarray:
    """Scores for a ``context``-frame window by averaging ``context - 4`` consecutive 5-frame rows.

    Row i becomes the mean of rows ``i - h .. i + h`` (``h = (context - 5) / 2``), clipped to the
    clip: the first and last h rows average fewer rows (e.g. context 9: row 0 = mean of rows 0-2,
    row 1 = rows 0-3). This is VocaLiST's ``test_lrs2.py`` rule whenever the clip has at least
    ``context - 4`` windows; shorter clips simply average what exists.

    Args:
        scores: (n, 2 vshift + 1) window scores.
        context: odd number of frames >= 5 (5 returns the scores unchanged).

    Returns:
        (n, 2 vshift + 1) float64 averaged scores.
    """
    arr = _check_scores(scores)
    half = (_check_context(context) - SYNC_WINDOW_FRAMES) // 2
    n = arr.shape[0]
    total = np.zeros_like(arr)
    count = np.zeros((n, 1))
    for delta in range(-half, half + 1):
        lo, hi = max(0, -delta), min(n, n - delta)  # rows i with 0 <= i + delta < n
        if lo < hi:
            total[lo:hi] += arr[lo + delta : hi + delta]
            count[lo:hi] += 1
    return total / count


def predicted_offsets(scores) -> np.ndarray:
    """Offset of each row, ``vshift - argmax`` (first maximum on ties), int64 (n,)."""
    arr = _check_scores(scores)
    return (arr.shape[1] - 1) // 2 - np.argmax(arr, axis=1)


def offset_accuracy(
    scores,
    true_offset: int = 0,
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    tolerance: int = 1,
) -> dict[int, float]:
    """Fraction of windows whose predicted offset is within ``tolerance`` frames of the truth.

    Args:
        scores: (n, 2 vshift + 1) 5-frame window scores of **one clip** (higher = more in sync).
        true_offset: the clip's real offset in the protocol's sign (0 for untouched clips; audio
            delayed by d frames: ``audio_delay_to_offset(d) = -d``).
        contexts: context lengths in frames; each averages ``context - 4`` windows
            (:func:`context_average`).
        tolerance: ±frames counted as correct (1 in the VocaLiST/PM tables).

    Returns:
        ``{context: accuracy in [0, 1]}`` for this clip (the protocol averages it over clips).
    """
    arr = _check_scores(scores)
    if int(tolerance) != tolerance or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative integer number of frames, got {tolerance!r}")
    if int(true_offset) != true_offset:
        raise ValueError(f"true_offset must be a whole number of frames, got {true_offset!r}")
    result = {}
    for context in contexts:
        predicted = predicted_offsets(context_average(arr, _check_context(context)))
        result[int(context)] = float(np.mean(np.abs(predicted - int(true_offset)) <= tolerance))
    return result


# ---------------------------------------------------------------------------------------------
# Evaluation over clips and tables
# ---------------------------------------------------------------------------------------------
@dataclass
class SyncEvaluation:
    """Per-clip offset accuracies of one model and their means per group.

    Attributes:
        per_clip: DataFrame with one row per scored clip: ``clip_id``, ``group``, ``true_offset``,
            ``n_windows``, then one column per context (int, frames) holding the clip's accuracy
            as a fraction in [0, 1].
        contexts: the context lengths (frames).
        tolerance: ±frames counted as correct.
        skipped: ``(clip_id, reason)`` of clips too short to score.
        scores: clip_id -> (n_windows, 2 vshift + 1) window scores (only with ``keep_scores``).
    """

    per_clip: Any
    contexts: tuple[int, ...]
    tolerance: int
    skipped: list[tuple[Any, str]] = field(default_factory=list)
    scores: dict[Any, np.ndarray] = field(default_factory=dict)

    @property
    def table(self):
        """Mean accuracy **in %** per group (rows, in order of appearance) and context (columns)."""
        import pandas as pd

        if self.per_clip.empty:
            return pd.DataFrame(columns=list(self.contexts), dtype=float).rename_axis(
                index="group", columns="context (frames)"
            )
        groups = list(dict.fromkeys(self.per_clip["group"]))
        means = self.per_clip.groupby("group", sort=False)[list(self.contexts)].mean() * 100.0
        return means.loc[groups].rename_axis(index="group", columns="context (frames)")

    @property
    def n_clips(self) -> dict[Any, int]:
        """Scored clips per group."""
        return {g: int(c) for g, c in self.per_clip["group"].value_counts(sort=False).items()}


def evaluate_sync(
    scorer: SyncScorer,
    clips: Iterable[tuple],
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    tolerance: int = 1,
    vshift: int = DEFAULT_VSHIFT,
    progress: bool = True,
    keep_scores: bool = False,
) -> SyncEvaluation:
    """Run the sync-accuracy protocol of spec §3.5 over clips.

    Args:
        scorer: a :class:`SyncScorer` (:class:`EmbeddingScorer`, :class:`PairScorer`, ...).
        clips: iterable of ``(clip_id, frames, wav, true_offset, group)``: frames in the scorer's
            crop format (uint8 BGR (T, H, W, 3)), wav (N,) 16 kHz, ``true_offset`` in frames in
            the protocol's sign (0 for real clips, ``audio_delay_to_offset(d)`` for clips whose
            audio was delayed by d frames), ``group`` a label such as ``"seen"`` / ``"unseen"``.
            Clips are consumed one at a time (a generator keeps memory flat).
        contexts, tolerance: as in :func:`offset_accuracy`.
        vshift: largest offset tried (frames).
        progress: show a tqdm bar.
        keep_scores: keep every clip's window scores in ``result.scores`` (for plots).

    Returns:
        :class:`SyncEvaluation`; ``result.table`` is the chapters' table (group x context, %).
        Clips with fewer than 6 usable frames are skipped and listed in ``result.skipped``.
    """
    import pandas as pd

    if not callable(getattr(scorer, "window_scores", None)):
        raise ValueError(
            f"scorer must have a window_scores(frames, wav, vshift) method, got {type(scorer).__name__}"
        )
    contexts = tuple(_check_context(c) for c in contexts)
    if not contexts:
        raise ValueError("contexts must name at least one context length, e.g. (5, 7, 9, 11, 13, 15)")
    vshift = _check_vshift(vshift)
    records, skipped, kept = [], [], {}
    iterator = clips
    if progress:
        from avlib.progress import progress_bar

        iterator = progress_bar(desc="sync accuracy", unit="clip", iterable=clips)
    for item in iterator:
        if not isinstance(item, (tuple, list)) or len(item) != 5:
            raise ValueError(
                "each clip must be a tuple (clip_id, frames, wav, true_offset, group), got "
                f"{type(item).__name__} of length {len(item) if hasattr(item, '__len__') else '?'}"
            )
        clip_id, frames, wav, true_offset, group = item
        n = num_sync_windows(len(frames), _clip_length(wav, f"clip {clip_id!r}"))
        if n < 1:
            skipped.append((clip_id, f"{len(frames)} frames / {len(wav)} samples give {n} windows"))
            continue
        scores = np.asarray(scorer.window_scores(frames, wav, vshift))
        if scores.shape != (n, 2 * vshift + 1):
            raise ValueError(
                f"{type(scorer).__name__}.window_scores returned shape {scores.shape} for clip "
                f"{clip_id!r}; expected ({n}, {2 * vshift + 1})"
            )
        accuracy = offset_accuracy(scores, true_offset, contexts, tolerance)
        records.append(
            {"clip_id": clip_id, "group": group, "true_offset": int(true_offset), "n_windows": n,
             **accuracy}
        )
        if keep_scores:
            kept[clip_id] = scores
    if skipped:
        warnings.warn(
            f"evaluate_sync skipped {len(skipped)} clip(s) too short to score (see result.skipped)",
            stacklevel=2,
        )
    columns = ["clip_id", "group", "true_offset", "n_windows", *contexts]
    per_clip = pd.DataFrame.from_records(records, columns=columns)
    return SyncEvaluation(per_clip, contexts, int(tolerance), skipped, kept)


_PAPER_SOURCE = "LRS2 test, ±1 frame (spec §3.6 / §1.6; MTDVocaLiST logs and figure)"
_PAPER_GROUP = "LRS2 (paper)"
# model -> (parameters in millions, accuracy % at 5, 7, 9, 11, 13, 15 frames)
_PAPER_LRS2_ROWS = {
    "SyncNet": (13.6, 75.8, 82.3, 87.6, 91.8, 94.5, 96.1),
    "PM (Perfect Match)": (13.6, 88.1, 93.8, 96.4, 97.9, 98.7, 99.1),
    "AVST": (42.4, 92.0, 95.5, 97.7, 98.8, 99.3, 99.6),
    "VocaLiST": (80.1, 92.8, 96.7, 98.4, 99.3, 99.6, 99.8),
    "VocaLiST (MTD repro, official ckpt)": (80.1, 92.44, 96.52, 98.27, 99.13, 99.53, 99.76),
    "MTDVocaLiST": (13.28, 91.46, 95.74, 97.99, 98.95, 99.46, 99.68),
}
_paper_cache: dict[str, Any] = {}


def _paper_lrs2():
    """The LRS2 sync-accuracy table of spec §3.6 as a DataFrame (built once, pandas imported lazily)."""
    if "lrs2" not in _paper_cache:
        import pandas as pd

        table = pd.DataFrame.from_dict(
            _PAPER_LRS2_ROWS, orient="index", columns=["params (M)", *DEFAULT_CONTEXTS]
        )
        table.index.name = "model"
        table.attrs["source"] = _PAPER_SOURCE
        _paper_cache["lrs2"] = table
    return _paper_cache["lrs2"].copy()


def __getattr__(name: str):
    # PAPER_LRS2 is built on first access so that importing avlib.sync does not need pandas
    # (pandas comes with the book extra).
    if name == "PAPER_LRS2":
        return _paper_lrs2()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sync_table(results: Mapping[str, Any], paper: bool = True):
    """Several models' accuracy tables side by side, optionally with the published LRS2 numbers.

    Args:
        results: model name -> :class:`SyncEvaluation` (its ``table``) or a DataFrame laid out
            like one (rows = groups, columns = context frames, values in %).
        paper: append the rows of ``PAPER_LRS2`` (group ``"LRS2 (paper)"``).

    Returns:
        DataFrame indexed by (model, group), one column per context (frames), values in %.
    """
    import pandas as pd

    frames, keys = [], []
    for model_name, result in results.items():
        table = result.table if isinstance(result, SyncEvaluation) else result
        if not isinstance(table, pd.DataFrame):
            raise ValueError(
                f"results[{model_name!r}] must be a SyncEvaluation or a DataFrame, got "
                f"{type(result).__name__}"
            )
        frames.append(table)
        keys.append(model_name)
    parts = [t.rename_axis(index="group", columns=None) for t in frames]
    combined = pd.concat(parts, keys=keys, names=["model", "group"]) if parts else None
    if paper:
        reference = _paper_lrs2()[list(DEFAULT_CONTEXTS)]
        reference.index = pd.MultiIndex.from_product(
            [reference.index, [_PAPER_GROUP]], names=["model", "group"]
        )
        combined = reference if combined is None else pd.concat([combined, reference])
    if combined is None:
        raise ValueError("nothing to tabulate: pass at least one result or paper=True")
    combined.columns = [int(c) for c in combined.columns]
    return combined.rename_axis(columns="context (frames)")
