"""Word clips for lip reading (LRW layout): mouth crops in memory, word boundaries, augmentation.

A word clip is LRW's unit: 29 frames (1.16 s at 25 fps) with the target word centred in running
speech, labelled by its folder. From a clip store (:mod:`avlib.data.store`, stream ``mouth96``:
SyncVSR's 112 x 96 mouth box around :func:`avlib.data.crops.mouth_roi_centre`, centre-cropped to
96 x 96, gray) :func:`load_words` reads a split into a :class:`WordSet`:

========== ================= ==========================================================
field      shape             meaning
========== ================= ==========================================================
video      (N, T, S, S)      uint8 gray mouths, resized once to ``size`` (S; 96 official)
labels     (N,)              int64 index into ``vocabulary``
boundary   (N, T)            float32 word-boundary mask (:func:`word_boundary`)
audio      (N, 640 T)        int16 16 kHz audio on the video clock (token targets)
========== ================= ==========================================================

SyncVSR's transforms (spec §4.2), batched on tensors by :func:`augment`:

* training: RandomResizedCrop (area 0.6-1.0 of the crop, aspect 3/4-4/3) to ``size``, horizontal
  flip with probability 0.5, one time mask (a span of 0-``time_mask`` frames replaced by the
  clip's mean frame), then Normalize(0.421, 0.165) on [0, 1] pixels;
* evaluation: the centre crop (the stored 96 x 96 already is SyncVSR's CenterCrop(96) of its
  112 x 96 box) and Normalize.

The word boundary follows SyncVSR: a word of L frames (``Duration:`` of the LRW ``.txt`` x 25,
rounded) is 1 on frames ``[(T - L) // 2, (T - L) // 2 + L)``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from avlib.audio import FPS, SAMPLES_PER_FRAME

__all__ = [
    "LRW_FRAMES",
    "WORD_CROPS",
    "MOUTH_MEAN",
    "MOUTH_STD",
    "WordSet",
    "word_boundary",
    "load_words",
    "fraction_subset",
    "augment",
    "cutmix",
]

LRW_FRAMES = 29
#: SyncVSR's Normalize of gray mouths in [0, 1] (spec §4.2).
MOUTH_MEAN, MOUTH_STD = 0.421, 0.165
STREAM = "mouth96"
#: The crops of the lip-reading store: SyncVSR's mouth box (chapter 06) and VCA-GAN's aligned
#: 112 x 112 mouth (MMAB, chapter 07). One preprocessing pass serves both chapters.
WORD_CROPS = ("mouth96", "vcagan112")


def word_boundary(duration_s: float | None, n_frames: int = LRW_FRAMES) -> np.ndarray:
    """SyncVSR's word-boundary mask (n_frames,) float32: 1 on the centred word's frames.

    ``duration_s`` None (no ``.txt``) gives all ones: the word is somewhere in the clip."""
    mask = np.zeros(n_frames, np.float32)
    if duration_s is None or not math.isfinite(float(duration_s)):
        mask[:] = 1.0
        return mask
    length = int(min(max(round(float(duration_s) * FPS), 1), n_frames))
    start = (n_frames - length) // 2
    mask[start:start + length] = 1.0
    return mask


@dataclass
class WordSet:
    """Word clips of one split in memory (see the module docstring for the fields)."""

    video: torch.Tensor
    labels: np.ndarray
    boundary: torch.Tensor
    audio: np.ndarray | None
    ids: list[str]
    speakers: list[str]
    vocabulary: tuple[str, ...]
    skipped: dict[str, int] = field(default_factory=dict)  #: reason -> clips left out

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        return int(self.video.shape[-1])

    def subset(self, index: Sequence[int] | np.ndarray) -> "WordSet":
        """The clips at ``index`` (same vocabulary)."""
        index = np.asarray(index, dtype=np.int64)
        t = torch.from_numpy(index)
        return dataclasses.replace(
            self, video=self.video[t], labels=self.labels[index], boundary=self.boundary[t],
            audio=None if self.audio is None else self.audio[index],
            ids=[self.ids[i] for i in index], speakers=[self.speakers[i] for i in index])

    def words(self) -> list[str]:
        return [self.vocabulary[i] for i in self.labels]


def _clip_word(meta: dict) -> str | None:
    text = meta.get("transcript")
    if text:
        return str(text).strip().upper()
    return None


def _clip_duration(meta: dict) -> float | None:
    value = (meta.get("extra") or {}).get("word_duration")
    return None if value is None else float(value)


def _fit_length(frames: np.ndarray, n: int) -> np.ndarray:
    """Centre-crop or edge-pad ``frames`` (T, ...) to ``n`` frames (LRW clips are 29)."""
    t = len(frames)
    if t == n:
        return frames
    if t > n:
        start = (t - n) // 2
        return frames[start:start + n]
    before = (n - t) // 2
    return np.concatenate([frames[:1].repeat(before, 0), frames, frames[-1:].repeat(n - t - before, 0)])


def _fit_audio(audio: np.ndarray, t: int, n: int) -> np.ndarray:
    """The audio (640 n,) of the frames :func:`_fit_length` keeps of a ``t``-frame clip: the
    same centre crop, silence under the padded frames (so tokens stay on the video clock)."""
    spf = SAMPLES_PER_FRAME
    start = ((t - n) // 2 if t > n else -((n - t) // 2)) * spf
    out = np.zeros(n * spf, np.float32)
    lo, hi = max(start, 0), min(start + n * spf, len(audio))
    if hi > lo:
        out[lo - start:hi - start] = audio[lo:hi]
    return out


def load_words(store, split: str, *, vocabulary: Sequence[str] | None = None, size: int = 96,
               n_frames: int = LRW_FRAMES, with_audio: bool = True, progress: bool = False,
               stream: str = STREAM) -> WordSet:
    """Read the word clips of ``split`` from a store into memory.

    Args:
        store: an :class:`avlib.data.store.ClipStore` with a ``mouth96`` stream.
        split: ``"train"``, ``"val"``, ``"test"`` or (corpus) ``"test_unseen"``.
        vocabulary: the class list (None: the sorted words of this split). Clips of other words
            are left out and counted in ``skipped["unknown_word"]``.
        size: resize the crops to ``size`` x ``size`` once here (area interpolation).
        stream: the store's crop stream: ``"mouth96"`` (SyncVSR) or ``"vcagan112"`` (MMAB).
        n_frames: clips are centre-cropped or edge-padded to this many frames.
        with_audio: also read the audio (the token targets need it).

    Raises:
        ValueError: no clip of the split, or a store without the ``mouth96`` stream.
    """
    from avlib.progress import progress_bar

    records = [r for r in store.select(split=split) if _clip_word(r)]
    if not records:
        raise ValueError(f"the store at {store.root} has no word clips in split {split!r}")
    if stream not in (records[0].get("streams") or {}):
        raise ValueError(f"the store at {store.root} has no {stream!r} crops (streams: "
                         f"{sorted(records[0].get('streams') or {})}); preprocess with crops "
                         f"including {stream!r}")
    if vocabulary is None:
        vocabulary = sorted({_clip_word(r) for r in records})
    vocabulary = tuple(vocabulary)
    index = {w: i for i, w in enumerate(vocabulary)}
    skipped: dict[str, int] = {}
    videos, labels, bounds, audios, ids, speakers = [], [], [], [], [], []
    for rec in progress_bar(iterable=records, total=len(records), desc=f"reading {split} words",
                            unit="clip", disable=not progress):
        word = _clip_word(rec)
        if word not in index:
            skipped["unknown_word"] = skipped.get("unknown_word", 0) + 1
            continue
        raw = store.frames(rec["id"], stream)
        frames = _fit_length(raw, n_frames)
        video = torch.from_numpy(np.ascontiguousarray(frames))
        if size != video.shape[-1]:
            video = F.interpolate(video[None].float(), size=(size, size), mode="area")[0]
            video = video.round().clamp(0, 255).to(torch.uint8)
        videos.append(video)
        labels.append(index[word])
        bounds.append(word_boundary(_clip_duration(rec), n_frames))
        if with_audio:
            # The frames were centre-cropped or padded: the audio follows them.
            audio = _fit_audio(store.audio(rec["id"]), len(raw), n_frames)
            audios.append(np.round(audio * 32768.0).clip(-32768, 32767).astype(np.int16))
        ids.append(rec["id"])
        speakers.append(str(rec.get("speaker")))
    if not labels:
        raise ValueError(f"no clip of split {split!r} has a word of the vocabulary")
    return WordSet(video=torch.stack(videos), labels=np.asarray(labels, np.int64),
                   boundary=torch.from_numpy(np.stack(bounds)),
                   audio=np.stack(audios) if with_audio else None, ids=ids, speakers=speakers,
                   vocabulary=vocabulary, skipped=skipped)


def fraction_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a class-stratified ``fraction`` of the clips (at least one per class).

    Nested: for one seed, a smaller fraction's clips are a subset of a larger one's, so a
    data-efficiency curve adds data instead of redrawing it."""
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = members[rng.permutation(len(members))]
        keep.extend(order[:max(1, math.ceil(fraction * len(members) - 1e-9))].tolist())
    return np.sort(np.asarray(keep, np.int64))


def augment(video: torch.Tensor, *, train: bool, generator: torch.Generator | None = None,
            scale: tuple[float, float] = (0.6, 1.0), flip: bool = True,
            time_mask: int = 15, mean: float = MOUTH_MEAN, std: float = MOUTH_STD) -> torch.Tensor:
    """uint8 mouths (B, T, S, S) -> normalised float (B, 1, T, S, S), SyncVSR's transforms.

    ``train=False`` only normalises. In training every clip gets one random resized crop (the
    same for all its frames), a flip with probability 0.5 and a time mask of 0..``time_mask``
    frames set to the clip's mean frame; randomness comes from ``generator``. ``mean``/``std``:
    the reader's Normalize (SyncVSR's by default; MMAB's is (0.4136, 0.17))."""
    x = video.float() / 255.0  # a new tensor: float input is not changed in place
    if train:
        b, t, h, w = x.shape
        g = generator
        area = torch.empty(b).uniform_(scale[0], scale[1], generator=g)
        log_ratio = torch.empty(b).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)
        ratio = log_ratio.exp()
        cw = (area * ratio).sqrt().clamp(max=1.0)
        ch = (area / ratio).sqrt().clamp(max=1.0)
        cx = (torch.rand(b, generator=g) * 2 - 1) * (1 - cw)
        cy = (torch.rand(b, generator=g) * 2 - 1) * (1 - ch)
        sign = torch.ones(b)
        if flip:
            sign = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = cw * sign, cx
        theta[:, 1, 1], theta[:, 1, 2] = ch, cy
        grid = F.affine_grid(theta, (b, t, h, w), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if time_mask > 0:
            length = torch.randint(0, time_mask + 1, (b,), generator=g)
            start = (torch.rand(b, generator=g) * (t - length + 1).float()).long()
            frames = torch.arange(t)
            masked = (frames[None] >= start[:, None]) & (frames[None] < (start + length)[:, None])
            clip_mean = x.mean(dim=1, keepdim=True).expand_as(x)
            x = torch.where(masked[:, :, None, None], clip_mean, x)
    x = (x - mean) / std
    return x.unsqueeze(1)


def cutmix(video: torch.Tensor, boundary: torch.Tensor, targets: torch.Tensor, tokens: torch.Tensor | None,
           generator: torch.Generator | None = None, steps_per_frame: int = 4):
    """Sequential frame CutMix (SyncVSR's): a span of frames of each clip is replaced by the same
    span of another clip of the batch; the soft word target mixes by the span's share.

    Args:
        video: (B, 1, T, H, W) augmented clips; boundary: (B, T); targets: (B, C) soft targets;
        tokens: (B, steps_per_frame * T, G) audio tokens or None.

    The tokens of the replaced frames come from the other clip at the token rate (frames
    ``[a, b)`` -> steps ``[4a, 4b)``). Upstream slices the token tensor with *video-frame*
    indices (a 4x mismatch, spec §8.4); this keeps audio and video aligned instead.
    """
    b, t = boundary.shape
    g = generator
    perm = torch.randperm(b, generator=g)
    share = torch.rand(b, generator=g)
    length = (share * t).long().clamp(1, t - 1)
    start = (torch.rand(b, generator=g) * (t - length + 1).float()).long()
    frames = torch.arange(t)
    inside = (frames[None] >= start[:, None]) & (frames[None] < (start + length)[:, None])  # (B, T)
    video = torch.where(inside[:, None, :, None, None], video[perm], video)
    boundary = torch.where(inside, boundary[perm], boundary)
    lam = inside.float().mean(dim=1, keepdim=True)
    targets = (1 - lam) * targets + lam * targets[perm]
    if tokens is not None:
        steps = inside.repeat_interleave(steps_per_frame, dim=1)
        n = min(tokens.shape[1], steps.shape[1])
        mixed = tokens.clone()
        mixed[:, :n] = torch.where(steps[:, :n, None], tokens[perm][:, :n], tokens[:, :n])
        tokens = mixed
    return video, boundary, targets, tokens
