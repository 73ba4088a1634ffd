"""Lip-to-speech data: VCA-GAN's mouth crops and spectrogram targets, from a clip store.

A GRID-layout clip (3 s, 75 frames at 25 fps) of the store (:mod:`avlib.data.store`) gives:

=========== ================== =============================================================
field       shape              meaning
=========== ================== =============================================================
video       (T, 112, 112)      uint8 gray mouths, stream ``vcagan112`` (VCA-GAN's aligned
                               136 x 136 box resized to 112, spec §5.1)
mel         (80, 4 T)          VCA-GAN's normalised log-mel (:func:`avlib.audio.vcagan_mel`)
linear      (321, 4 T)         the raw |STFT| magnitude, the postnet's target
audio       (640 T,)           float32 16 kHz waveform on the video clock
words       6 words            the GRID sentence (command colour preposition letter digit
                               adverb), from the store's transcript
=========== ================== =============================================================

Spectrograms run at 100 Hz, four frames per video frame; the STFT's extra last frame (``1 + N //
160``) is cropped, as upstream pads or crops to ``4 T``.

Training windows (:meth:`SpeechClips.batch`) follow ``vid_aud_grid.py``: 40 video frames (1.6
s) at a random start with their 160 spectrogram frames; the same horizontal flip for every frame
of a window (probability 0.5) and one random-erasing patch of up to 56 x 56 pixels at the same
place in every frame (mean gray); then Normalize(0.4136, 0.17) of [0, 1] pixels. Evaluation takes whole clips
(:meth:`SpeechClips.clips`) with their lengths.

Splits follow the GRID protocols on the corpus: ``train``/``val``/``test`` hold the seen
speakers (multi-speaker), ``test_unseen`` speakers never seen in training (unseen-speaker).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from avlib.audio import SAMPLES_PER_FRAME, vcagan_features

__all__ = ["STREAM", "WINDOW", "MEL_PER_FRAME", "VIDEO_MEAN", "VIDEO_STD", "ERASE",
           "ERASE_FILL",
           "SpeechClips", "load_clips", "normalise_video"]

STREAM = "vcagan112"
WINDOW = 40  #: training window in video frames (upstream: 40 = 1.6 s)
MEL_PER_FRAME = 4  #: 100 Hz spectrogram frames per 25 fps video frame
VIDEO_MEAN, VIDEO_STD = 0.4136, 0.1700  #: VCA-GAN's Normalize of gray mouths in [0, 1]
ERASE = 56  #: side of the random-erasing patch (pixels of the 112 x 112 crop)
#: the erased pixels: 0 after Normalize(0.4136, 0.17) is this gray level
ERASE_FILL = round(VIDEO_MEAN * 255)


def normalise_video(video) -> torch.Tensor:
    """uint8 mouths (..., T, 112, 112) -> float32 Normalize(0.4136, 0.17) of [0, 1] pixels."""
    x = torch.as_tensor(np.asarray(video)).float().div_(255.0)
    return x.sub_(VIDEO_MEAN).div_(VIDEO_STD)


@dataclass
class SpeechClips:
    """The clips of one split, in memory (see the module docstring for the fields)."""

    ids: list[str]
    speakers: list[str]
    words: list[tuple[str, ...]]
    video: list[np.ndarray]
    mel: list[np.ndarray]
    linear: list[np.ndarray]
    audio: list[np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int]) -> "SpeechClips":
        """The clips at ``index`` (in that order)."""
        pick = [int(i) for i in index]
        return SpeechClips(*[[getattr(self, f)[i] for i in pick] for f in
                             ("ids", "speakers", "words", "video", "mel", "linear", "audio")])

    def batch(self, rng: np.random.Generator, size: int, window: int = WINDOW, *,
              augment: bool = True) -> dict[str, torch.Tensor]:
        """A training batch: ``video`` (B, 1, W, 112, 112) normalised, ``mel`` (B, 1, 80, 4W),
        ``linear`` (B, 1, 321, 4W), ``lengths`` (B,) = W, ``clip`` (B,) clip indices."""
        usable = [i for i, v in enumerate(self.video) if len(v) >= window]
        if not usable:
            raise ValueError(f"no clip has {window} frames; the longest has "
                             f"{max((len(v) for v in self.video), default=0)}")
        pick = rng.choice(usable, size=int(size), replace=len(usable) < size)
        videos, mels, lins = [], [], []
        for i in pick:
            t0 = int(rng.integers(0, len(self.video[i]) - window + 1))
            v = self.video[i][t0:t0 + window]
            if augment:
                v = _augment(v, rng)
            videos.append(v)
            a, b = t0 * MEL_PER_FRAME, (t0 + window) * MEL_PER_FRAME
            mels.append(self.mel[i][:, a:b])
            lins.append(self.linear[i][:, a:b])
        return {"video": normalise_video(np.stack(videos))[:, None],
                "mel": torch.from_numpy(np.stack(mels))[:, None],
                "linear": torch.from_numpy(np.stack(lins))[:, None],
                "lengths": torch.full((len(pick),), window, dtype=torch.long),
                "clip": torch.as_tensor(pick, dtype=torch.long)}

    def clips(self, index: Sequence[int]) -> dict[str, torch.Tensor]:
        """Whole clips, padded to the longest: ``video`` (B, 1, T, 112, 112) with zeros (after
        Normalize), ``mel`` with -1 (the log-mel's floor), ``linear`` (B, 1, F, 4T) with zeros,
        and ``lengths`` (B,) in video frames."""
        pick = [int(i) for i in index]
        t = max(len(self.video[i]) for i in pick)
        video = np.zeros((len(pick), t, 112, 112), np.uint8)
        mel = np.full((len(pick), 80, MEL_PER_FRAME * t), -1.0, np.float32)
        lin = np.zeros((len(pick), 321, MEL_PER_FRAME * t), np.float32)
        for k, i in enumerate(pick):
            n = len(self.video[i])
            video[k, :n] = self.video[i]
            mel[k, :, :MEL_PER_FRAME * n] = self.mel[i]
            lin[k, :, :MEL_PER_FRAME * n] = self.linear[i]
        lengths = torch.as_tensor([len(self.video[i]) for i in pick], dtype=torch.long)
        x = normalise_video(video)[:, None]
        for k, n in enumerate(lengths.tolist()):
            x[k, :, n:] = 0.0
        return {"video": x, "mel": torch.from_numpy(mel)[:, None],
                "linear": torch.from_numpy(lin)[:, None], "lengths": lengths}


def _augment(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One window's training transforms: flip (p 0.5) and one erased patch of up to 56 x 56,
    both the same for every frame (upstream's stateful flip and RandomErasing). As upstream,
    the patch's corner is drawn from [-10, 66) and clipped to the image, and the patch is set
    to 0 *after* Normalize, i.e. to the mean gray (:data:`ERASE_FILL`)."""
    if rng.random() < 0.5:
        v = v[:, :, ::-1]
    v = np.array(v, copy=True)
    y, x = (int(rng.integers(-10, v.shape[d] - ERASE + 10)) for d in (1, 2))
    v[:, max(y, 0):max(y + ERASE, 0), max(x, 0):max(x + ERASE, 0)] = ERASE_FILL
    return v


def _targets(wav: np.ndarray, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    mel, lin = vcagan_features(wav)
    n = MEL_PER_FRAME * n_frames
    return mel[:, :n], lin[:, :n]


def load_clips(store, split: str, *, kind: str = "grid", limit: int | None = None,
               speakers: Sequence[str] | None = None, min_frames: int = WINDOW) -> SpeechClips:
    """Read the ``kind`` clips of ``split`` (optionally only ``speakers``, at most ``limit``)
    into memory. Clips shorter than ``min_frames`` or without a ``vcagan112`` stream or a
    six-word transcript are skipped and listed in ``SpeechClips.skipped`` with the reason."""
    ids, spk, words, video, mel, lin, audio, skipped = [], [], [], [], [], [], [], []
    for rec in store.select(split=split):
        cid = rec["id"]
        meta = store.meta(cid)
        if (meta.get("extra") or {}).get("kind", kind) != kind:
            continue
        if speakers is not None and meta.get("speaker") not in speakers:
            continue
        if STREAM not in meta.get("streams", {}):
            skipped.append((cid, f"no {STREAM} stream: preprocess with crops including it"))
            continue
        n = int(meta["n_frames"])
        if n < min_frames:
            skipped.append((cid, f"{n} frames < {min_frames}"))
            continue
        text = tuple(str(meta.get("transcript") or "").split())
        if len(text) != 6:
            skipped.append((cid, f"transcript {' '.join(text)!r} is not a 6-word GRID sentence"))
            continue
        wav = store.audio(cid, 0, n, pad=True)
        m, s = _targets(wav, n)
        ids.append(cid)
        spk.append(str(meta.get("speaker")))
        words.append(text)
        video.append(np.asarray(store.frames(cid, STREAM)))
        mel.append(m)
        lin.append(s)
        audio.append(wav[:n * SAMPLES_PER_FRAME])
        if limit is not None and len(ids) >= limit:
            break
    return SpeechClips(ids, spk, words, video, mel, lin, audio, skipped)
