"""Lip-sync generators judged on a clip store: the paper's protocol and the corpus's truth.

:func:`evaluate_generators` runs every generator (and the baselines) on the same pairs and
returns one row per system:

- **cross pairs** (spec §2.8): the face of one clip lip-synced to the audio of another clip,
  another speaker's (:func:`avlib.lipsync.metrics.cross_pairs`), on the store's unseen speakers;
  inference as upstream's (reference = the same frame, no mel shift). Measured: **LSE-D** and
  **LSE-C** with a SyncNet through the syncnet_python protocol, on SyncNet's own view of the
  result: each generated 96x96 face is pasted back into the face clip's frame at the box it was
  cut from (:func:`avlib.lipsync.infer.paste_face`) and the frame cut again as
  ``run_pipeline.py`` cuts faces for SyncNet (:func:`avlib.data.crops.crop_syncnet`, the store's
  ``syncnet`` crop size), as Wav2Lip's evaluation scores the videos it generated; the
  **lip-gap correlation**
  with the renderer's true opening of the *audio* clip (corpus clips only: a real dataset's
  store has no such truth, and the metric is NaN), and the **lip-landmark distance** to the
  audio clip's real mouth (mouth widths; both meshed on 96x96 crops);
- **self pairs**: each unseen clip re-synced to its own audio, its reference frames taken in
  reverse order (same identity, another mouth: the reference cannot give the answer away), for
  **SSIM** and **PSNR** of the lower half against the real frames.

Baselines: ``real`` (the audio clip's own video: what a perfect generator would produce),
``reference copy`` (the face clip's first frame for every frame: no lip motion at all) and
``face video`` (the face clip unchanged: lips that move, to other words; the corpus's sentences
share their rhythm, which this row measures).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from avlib import media
from avlib.data.crops import crop_syncnet
from avlib.data.store import ClipStore
from avlib.data.tracking import syncnet_params
from avlib.lipsync.infer import paste_face, synthesize_crops
from avlib.lipsync.metrics import (cross_pairs, lip_gap_correlation, lip_landmark_distance,
                                   lse_scores, mesh_landmarks, psnr, ssim, true_mouth)
from avlib.progress import progress_bar

__all__ = ["BASELINES", "LipsyncEvaluation", "evaluate_generators"]

FACE_STREAM = "face96"
SYNCNET_STREAM = "syncnet"
MEL_FEATURE = "wav2lip_mel"
BASELINES = ("real", "reference copy", "face video")
METRICS = ("LSE-D", "LSE-C", "lip-gap r", "lip landmark distance", "SSIM", "PSNR")


@dataclass
class LipsyncEvaluation:
    """What :func:`evaluate_generators` measured.

    ``rows``: system -> metric -> mean over pairs (NaN where undefined); ``per_pair``: system ->
    list of per-pair dicts; ``pairs``: the cross pairs; ``samples``: system -> the frames
    generated for the first cross pair (for figures and videos); ``opening``: which truth the
    lip gap was correlated with (None: the clips have no corpus truth, e.g. LRS2).
    """

    rows: dict[str, dict[str, float]]
    per_pair: dict[str, list[dict]]
    pairs: list[tuple[str, str]]
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    opening: str | None = "gap"

    def table(self):
        """The rows as a pandas DataFrame (systems x metrics)."""
        import pandas as pd

        return pd.DataFrame(self.rows).T.reindex(columns=list(METRICS))


def _mean(values) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _face96_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """The whole-pixel box a ``face96`` crop was cut from (the clipping of
    :func:`avlib.data.crops.crop_face96`)."""
    x0 = int(min(max(box[0], 0), width - 2))
    y0 = int(min(max(box[1], 0), height - 2))
    return x0, y0, int(min(max(box[2], x0 + 2), width)), int(min(max(box[3], y0 + 2), height))


def _has_truth(store: ClipStore, clip: str) -> bool:
    """Whether ``clip`` has the renderer's ground truth: a corpus clip's sidecar (a real
    dataset's clip has none)."""
    return bool((store.meta(clip).get("extra") or {}).get("sidecar"))


class SyncNetView:
    """SyncNet's crops of a face clip whose 96x96 faces were replaced (pasted back at their
    boxes, cut again in syncnet_python's geometry at the store's ``syncnet`` size)."""

    def __init__(self, store: ClipStore):
        self.store = store
        self._frames: dict[str, np.ndarray] = {}

    def size(self, clip: str) -> int:
        return int(self.store.meta(clip)["streams"][SYNCNET_STREAM]["shape"][1])

    def frames(self, clip: str) -> np.ndarray:
        """The clip's full RGB frames at the size its boxes refer to."""
        if clip not in self._frames:
            meta = self.store.meta(clip)
            side = max(int(v) for v in meta["frame_size"])
            frames, _ = media.read_video(meta["source"], max_side=side)
            self._frames = {clip: frames}  # one clip at a time: bounded memory
        return self._frames[clip]

    def __call__(self, clip: str, faces96: np.ndarray) -> np.ndarray:
        frames = self.frames(clip)
        boxes = self.store.feature(clip, "face_boxes")
        n = min(len(faces96), len(frames), len(boxes))
        params = syncnet_params(boxes)
        h, w = frames.shape[1:3]
        size = self.size(clip)
        pasted = (paste_face(frames[t], faces96[t], _face96_box(boxes[t], w, h))
                  for t in range(n))
        return np.stack([crop_syncnet(frame, *params[t], size=size)
                         for t, frame in enumerate(pasted)])


def evaluate_generators(generators: dict[str, torch.nn.Module], store: ClipStore, syncnet, *,
                        split: str = "test_unseen", n_pairs: int | None = 12, seed: int = 0,
                        opening: str = "gap", device: str = "cpu", batch_size: int = 32,
                        progress: bool = True) -> LipsyncEvaluation:
    """Generate and measure every system on the same pairs (see the module docstring).

    Args:
        generators: name -> trained :class:`avlib.models.Wav2Lip` (in eval mode).
        store: the clip store; ``split`` holds the pairs' clips (unseen speakers).
        syncnet: the LSE judge (the book's SyncNet, or an official syncnet_v2).
        n_pairs: cross pairs (and self pairs) measured; None: every clip of the split.
        opening: the truth the lip gap is correlated with (``"gap"``: the renderer's inner-lip
            gap; or a mouth parameter such as ``"jaw_open"``).
    """
    pairs = cross_pairs(store, split=split, seed=seed, n=n_pairs)
    has_truth = all(_has_truth(store, audio_clip) for audio_clip, _ in pairs)
    systems = [*BASELINES, *generators]
    per_pair: dict[str, list[dict]] = {s: [] for s in systems}
    samples: dict[str, np.ndarray] = {}
    faces_of = {}

    def faces(clip: str) -> np.ndarray:
        if clip not in faces_of:
            faces_of[clip] = store.frames(clip, FACE_STREAM)
        return faces_of[clip]

    view = SyncNetView(store)
    bar = progress_bar(len(pairs) * len(systems), "lip-sync evaluation", "video",
                       disable=not progress)
    for i, (audio_clip, face_clip) in enumerate(pairs):
        wav = store.audio(audio_clip)
        mel = store.feature(audio_clip, MEL_FEATURE).astype(np.float32)
        truth = true_mouth(store, audio_clip, opening=opening)["opening"] if has_truth else None
        real = faces(audio_clip)
        real_mesh = mesh_landmarks(real)
        n = min(len(faces(face_clip)), len(real))
        # self pair: this face clip re-synced to its own audio, references in reverse order
        own = faces(face_clip)[:n]
        own_mel = store.feature(face_clip, MEL_FEATURE).astype(np.float32)
        for name in systems:
            if name == "real":
                video = real[:n]
            elif name == "reference copy":
                video = np.repeat(faces(face_clip)[:1], n, axis=0)
            elif name == "face video":
                video = faces(face_clip)[:n]
            else:
                video = synthesize_crops(generators[name], faces(face_clip)[:n], mel,
                                         batch_size=batch_size, device=device)
            if name == "real":
                seen = store.frames(audio_clip, SYNCNET_STREAM)[:n]
            elif name == "reference copy":
                seen = np.repeat(store.frames(face_clip, SYNCNET_STREAM)[:1], n, axis=0)
            elif name == "face video":
                seen = store.frames(face_clip, SYNCNET_STREAM)[:n]
            else:
                seen = view(face_clip, video)
            scores = lse_scores(seen, wav[: len(seen) * 640], syncnet, cropped=True,
                                device=device)
            mesh = real_mesh[: len(video)] if name == "real" else mesh_landmarks(video)
            row = {"LSE-D": scores["lse_d"], "LSE-C": scores["lse_c"],
                   "offset": scores["offset"],
                   "lip-gap r": (math.nan if truth is None
                                 else lip_gap_correlation(mesh, truth)),
                   "lip landmark distance": lip_landmark_distance(mesh, real_mesh[: len(mesh)])}
            if name in generators:
                again = synthesize_crops(generators[name], own, own_mel, batch_size=batch_size,
                                         device=device, references=own[::-1])
                row["SSIM"] = ssim(again, own[: len(again)])
                row["PSNR"] = psnr(again, own[: len(again)], reduce="pooled")
            elif name == "reference copy":
                still = np.repeat(own[:1], n, axis=0)
                row["SSIM"], row["PSNR"] = ssim(still, own), psnr(still, own, reduce="pooled")
            per_pair[name].append(row)
            if i == 0:
                samples[name] = video
            bar.update(1)
    bar.close()
    rows = {name: {m: _mean(r.get(m) for r in per_pair[name]) for m in (*METRICS, "offset")}
            for name in systems}
    return LipsyncEvaluation(rows, per_pair, pairs, samples, opening if has_truth else None)
