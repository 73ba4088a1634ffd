"""Wav2Lip's training windows, drawn from the clip store as ``wav2lip_train.py`` draws them.

One sample (spec §2.6) is a random clip and a random start frame ``f``:

- **target**: the five 96x96 BGR face crops ``f .. f+4``; the generator sees them with rows
  48-95 (the lower half, where the mouth is) set to zero, and must paint that half back;
- **reference**: five crops from another random start ``w != f`` of the *same* clip (the
  "wrong" window): the identity and pose the generator copies, deliberately out of step with the
  target so that the mouth cannot simply be copied from it;
- **per-frame mel windows** ``indiv_mels``: for frame ``f+k`` the 16 mel columns starting at
  ``floor(80 (f+k-1) / 25)``, i.e. **one video frame earlier** than the frame. This is a quirk of
  the official training code (``get_segmented_mels`` starts at ``start_frame_num - 1``); the
  official *inference* code takes ``mel[floor(80 i / 25):+16]`` for frame ``i`` with no shift.
  The generator is therefore trained to draw a mouth from audio centred 40 ms later than at test
  time; :data:`MEL_FRAME_SHIFT` keeps the quirk (``-1``) and ``0`` removes it. Windows that need
  frame ``f-1`` are rejected, as upstream rejects ``f < 1``.
- **the expert's mel window** ``mel``: ``mel[floor(80 f / 25):+16]``, the 0.2 s that belongs to
  the whole 5-frame window; the frozen lip-sync expert judges the generated window against it.

Tensors come out in the layout :class:`avlib.models.Wav2Lip` reads: BGR / 255, channels first,
time on axis 2 (``(B, 6, 5, 96, 96)`` for the input, ``(B, 3, 5, 96, 96)`` for the truth).
"""
from __future__ import annotations

import numpy as np
import torch

from avlib import audio as A
from avlib.data.store import ClipStore
from avlib.models.wav2lip import CROP

WINDOW = A.SYNC_WINDOW_FRAMES  # 5 video frames
FACE_STREAM = "face96"
MEL_FEATURE = "wav2lip_mel"
MEL_FRAME_SHIFT = -1  #: the per-frame mel windows start this many video frames before the frame
MIN_FRAMES = 16  #: upstream draws from videos with more than 15 frames

__all__ = ["WINDOW", "MEL_FRAME_SHIFT", "to_channels_first", "mask_lower_half", "generator_input",
           "frame_mel_starts", "Wav2LipWindows"]


def to_channels_first(frames: np.ndarray) -> np.ndarray:
    """(T, 96, 96, 3) uint8 BGR crops -> (3, T, 96, 96) float32 in [0, 1]."""
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[1:] != (CROP, CROP, 3) or arr.dtype != np.uint8:
        raise ValueError(f"expected (T, {CROP}, {CROP}, 3) uint8 BGR face crops, got "
                         f"{arr.shape} {arr.dtype}")
    return (arr.transpose(3, 0, 1, 2) / 255.0).astype(np.float32)


def mask_lower_half(x: np.ndarray | torch.Tensor):
    """A copy of ``x`` (..., 96, 96) with rows 48-95 set to zero: the generator's target input."""
    out = x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)
    out[..., CROP // 2:, :] = 0
    return out


def generator_input(target: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The generator's face input of one window: (6, T, 96, 96) = [masked target || reference].

    ``target``, ``reference``: (T, 96, 96, 3) uint8 BGR crops (training: ``reference`` is a random
    other window of the clip; inference: the same frames as ``target``).
    """
    t, r = to_channels_first(target), to_channels_first(reference)
    if t.shape != r.shape:
        raise ValueError(f"target {t.shape} and reference {r.shape} windows differ in shape")
    return np.concatenate([mask_lower_half(t), r], axis=0)


def frame_mel_starts(f: int, n: int = WINDOW, shift: int = MEL_FRAME_SHIFT) -> list[int]:
    """First mel column of each frame's window for frames ``f .. f+n-1``:
    ``floor(80 (f + k + shift) / 25)`` (training: ``shift = -1``, the official quirk)."""
    if f + shift < 0:
        raise ValueError(f"frame {f} has no mel window {shift:+d} frame(s) earlier")
    return [A.mel_start_index(f + k + shift) for k in range(n)]


class Wav2LipWindows:
    """Draws Wav2Lip training batches from the clips of one split of a :class:`ClipStore`.

    Args:
        store: the clip store (its ``face96`` crops and ``wav2lip_mel`` feature).
        split, dataset: which clips (as :meth:`ClipStore.select`).
        mel_shift: :data:`MEL_FRAME_SHIFT` (-1, the official quirk) or 0.
        vocalist_mel: also return VocaLiST's mel of the window's audio (``"vocalist_mel"``), for a
            VocaLiST judge in place of the Wav2Lip expert.
    """

    def __init__(self, store: ClipStore, split: str = "train", dataset=None, *,
                 mel_shift: int = MEL_FRAME_SHIFT, vocalist_mel: bool = False):
        if mel_shift not in (-1, 0):
            raise ValueError(f"mel_shift is -1 (the official training quirk) or 0, got {mel_shift!r}")
        self.store, self.split, self.mel_shift = store, split, int(mel_shift)
        self.vocalist_mel = bool(vocalist_mel)
        self.starts: dict[str, np.ndarray] = {}
        for clip in store.select(split=split, dataset=dataset, min_frames=MIN_FRAMES):
            cid = clip["id"]
            n_mel = store.feature(cid, MEL_FEATURE).shape[-1]
            last = store.n_frames(cid) - WINDOW
            ok = [f for f in range(-self.mel_shift, last + 1)
                  if A.mel_start_index(f + WINDOW - 1 + self.mel_shift) + A.MEL_WINDOW <= n_mel
                  and A.mel_start_index(f) + A.MEL_WINDOW <= n_mel]
            if ok and last >= 1:
                self.starts[cid] = np.asarray(ok)
        self.clips = sorted(self.starts)
        if not self.clips:
            raise ValueError(f"no clip of split {split!r} with at least {MIN_FRAMES} frames in "
                             f"{store.root}; preprocess more data or choose another split")

    def draw(self, rng: np.random.Generator) -> tuple[str, int, int]:
        """A random ``(clip, target start f, reference start w != f)``."""
        clip = self.clips[int(rng.integers(len(self.clips)))]
        f = int(rng.choice(self.starts[clip]))
        others = [w for w in range(self.store.n_frames(clip) - WINDOW + 1) if w != f]
        return clip, f, int(others[int(rng.integers(len(others)))])

    def sample(self, clip: str, f: int, w: int) -> dict[str, np.ndarray]:
        """The arrays of one window (no batch axis)."""
        target = self.store.frames(clip, FACE_STREAM, f, WINDOW)
        reference = self.store.frames(clip, FACE_STREAM, w, WINDOW)
        mel = self.store.feature(clip, MEL_FEATURE).astype(np.float32)
        n = A.MEL_WINDOW
        indiv = np.stack([mel[:, s:s + n] for s in frame_mel_starts(f, shift=self.mel_shift)])
        s0 = A.mel_start_index(f)
        out = {"x": generator_input(target, reference), "gt": to_channels_first(target),
               "indiv_mels": indiv[:, None], "mel": mel[None, :, s0:s0 + n]}
        if self.vocalist_mel:
            out["chunk"] = self.store.audio(clip, f, WINDOW, pad=True)
        return out

    def batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        """``batch_size`` windows: ``x`` (B, 6, 5, 96, 96), ``gt`` (B, 3, 5, 96, 96),
        ``indiv_mels`` (B, 5, 1, 80, 16), ``mel`` (B, 1, 80, 16) [, ``vocalist_mel``]."""
        items = [self.sample(*self.draw(rng)) for _ in range(batch_size)]
        out = {k: torch.from_numpy(np.stack([it[k] for it in items]))
               for k in ("x", "gt", "indiv_mels", "mel")}
        if self.vocalist_mel:
            from avlib.sync.pairs import vocalist_mel_windows

            out["vocalist_mel"] = vocalist_mel_windows([it["chunk"] for it in items])
        return out
