"""Training pairs for sync models, drawn from the clip store exactly as each paper drew them.

Every sync model of the book sees a 5-frame video window and 0.2 s of audio (5 frames = 3200
samples = 16 mel frames at 80 Hz = 20 MFCC frames at 100 Hz) and learns whether they belong
together. What differs is how the pairs are made:

- **SyncNet** (Chung & Zisserman 2016, contrastive loss): a genuine pair is a video window and the
  audio at the same time; a false pair moves the audio by a few frames (``2 <= |shift| <=
  max_shift``). Inputs: 5 SyncNet-geometry crops, raw 0-255 BGR, (3, 5, S, S); MFCC (1, 13, 20).
- **Wav2Lip expert** (``color_syncnet_train.py``): a random frame f; the mel window is always
  ``mel[int(80 f / 25) : +16]``; with probability 0.5 the video window starts at f (y = 1), else
  at another frame of the same clip whose window does not overlap (y = 0). Inputs: the lower half
  of five 96x96 BGR face crops /255, frame-major (15, 48, 96); mel (1, 80, 16).
- **VocaLiST** (``train_vocalist_lrs2.py``): positive = frames f..f+4 with audio samples
  ``[640 f, 640 f + 3200)``; negative (p = 0.5) = audio from another start in the same clip. When
  the positive window is nearly silent (RMS <= 0.01), negatives are redrawn (up to 10 times) until
  one is not, so that "silence vs speech" is not the cue learned. The mel (VocaLiST's, no
  pre-emphasis) is computed from the 3200-sample chunk and its 17th frame dropped: (1, 80, 16).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from avlib import audio as A
from avlib.data.store import ClipStore
from avlib.models.syncnet import lip_windows
from avlib.models.wav2lip import face_halves, face_windows

WINDOW = A.SYNC_WINDOW_FRAMES  # 5 video frames
FACE_STREAM = "face96"
SYNCNET_STREAM = "syncnet"
RMS_SILENT = 0.01


def lower_half(frames: np.ndarray) -> np.ndarray:
    """(5, 96, 96, 3) uint8 BGR faces -> (15, 48, 96) float32 in [0, 1]: one window of the face
    stream (:func:`avlib.models.wav2lip.face_halves` and ``face_windows``)."""
    return face_windows(face_halves(frames), [0])[0].numpy()


def syncnet_video(frames: np.ndarray) -> np.ndarray:
    """(5, S, S, 3) uint8 BGR -> (3, 5, S, S) float32 raw 0-255: one window of SyncNet's lip
    stream (:func:`avlib.models.syncnet.lip_windows`)."""
    return lip_windows(frames, 1)[0].numpy()


class SyncPairs:
    """Samples sync training batches from the clips of one split of a :class:`ClipStore`."""

    def __init__(self, store: ClipStore, split="train", dataset=None, min_frames: int = 3 * WINDOW):
        self.store = store
        self.clips = [c["id"] for c in store.select(split=split, dataset=dataset, min_frames=min_frames)]
        if not self.clips:
            raise ValueError(f"no clip of split {split!r} with at least {min_frames} frames in "
                             f"{store.root}; preprocess more data or choose another split")
        self.n_frames = {c: store.n_frames(c) for c in self.clips}

    def _clip_and_frame(self, rng: np.random.Generator) -> tuple[str, int]:
        clip = self.clips[int(rng.integers(len(self.clips)))]
        return clip, int(rng.integers(0, self.n_frames[clip] - WINDOW + 1))

    def _other_frame(self, rng, clip: str, f: int, min_distance: int = WINDOW) -> int:
        """A start frame of the same clip at least ``min_distance`` frames from ``f``."""
        last = self.n_frames[clip] - WINDOW
        choices = [g for g in range(last + 1) if abs(g - f) >= min_distance]
        return int(choices[int(rng.integers(len(choices)))])

    # ---- Wav2Lip expert ----------------------------------------------------------------------
    def expert_batch(self, rng: np.random.Generator, batch_size: int) -> dict:
        faces, mels, ys = [], [], []
        for _ in range(batch_size):
            clip, f = self._clip_and_frame(rng)
            y = float(rng.random() < 0.5)
            v = f if y else self._other_frame(rng, clip, f)
            faces.append(lower_half(self.store.frames(clip, FACE_STREAM, v, WINDOW)))
            mel = self.store.feature(clip, "wav2lip_mel")
            mels.append(A.mel_window(mel, f, at_end="pad"))
            ys.append(y)
        return {"faces": torch.from_numpy(np.stack(faces)),
                "mel": torch.from_numpy(np.stack(mels)[:, None].astype(np.float32)),
                "y": torch.tensor(ys)}

    # ---- SyncNet -----------------------------------------------------------------------------
    def syncnet_batch(self, rng: np.random.Generator, batch_size: int, max_shift: int = 15,
                      min_shift: int = 2) -> dict:
        frames, mfccs, ys = [], [], []
        for _ in range(batch_size):
            clip, f = self._clip_and_frame(rng)
            y = float(rng.random() < 0.5)
            a = f
            if not y:
                last = self.n_frames[clip] - WINDOW
                shifts = [s for s in range(-max_shift, max_shift + 1)
                          if abs(s) >= min_shift and 0 <= f + s <= last]
                if not shifts:  # clip too short for a false pair here: make it genuine
                    y = 1.0
                else:
                    a = f + int(shifts[int(rng.integers(len(shifts)))])
            frames.append(syncnet_video(self.store.frames(clip, SYNCNET_STREAM, f, WINDOW)))
            mfccs.append(A.mfcc_window(self.store.feature(clip, "syncnet_mfcc"), a, at_end="pad"))
            ys.append(y)
        return {"frames": torch.from_numpy(np.stack(frames)),
                "mfcc": torch.from_numpy(np.stack(mfccs)[:, None].astype(np.float32)),
                "y": torch.tensor(ys)}

    # ---- VocaLiST ----------------------------------------------------------------------------
    def vocalist_batch(self, rng: np.random.Generator, batch_size: int) -> dict:
        faces, chunks, ys = [], [], []
        for _ in range(batch_size):
            clip, f = self._clip_and_frame(rng)
            pos = self.store.audio(clip, f, WINDOW, pad=True)
            y = float(rng.random() < 0.5)
            chunk = pos
            if not y:
                others = [g for g in range(self.n_frames[clip] - WINDOW + 1) if g != f]
                chunk = draw_false_audio(rng, self.store, clip, pos, others)
            faces.append(lower_half(self.store.frames(clip, FACE_STREAM, f, WINDOW)))
            chunks.append(chunk)
            ys.append(y)
        return {"faces": torch.from_numpy(np.stack(faces)), "mel": vocalist_mel_windows(chunks),
                "y": torch.tensor(ys)}


def draw_false_audio(rng: np.random.Generator, store, clip: str, true: np.ndarray,
                     starts: Sequence[int], tries: int = 10) -> np.ndarray:
    """VocaLiST's false audio window: a window of ``clip`` starting at one of ``starts``, redrawn
    (up to ``tries`` times, as the official sampler does) while it and the ``true`` window are
    both silent (RMS at most ``RMS_SILENT``)."""
    for _try in range(tries):
        g = int(starts[int(rng.integers(len(starts)))])
        chunk = store.audio(clip, g, WINDOW, pad=True)
        if rms(true) > RMS_SILENT or rms(chunk) > RMS_SILENT:
            break
    return chunk


def vocalist_mel_windows(chunks: Sequence[np.ndarray]) -> torch.Tensor:
    """(B, 1, 80, 16) VocaLiST mel windows of B 3200-sample audio windows (17 mel frames; the
    last is dropped, as upstream does)."""
    mel = A.vocalist_mel_torch(torch.from_numpy(np.stack(chunks)))[..., :16]
    return mel[:, None].float()


def rms(x: np.ndarray) -> float:
    """Root mean square of a waveform (VocaLiST calls a window silent below ``RMS_SILENT``)."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
