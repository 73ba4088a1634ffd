"""Training recipes of the book's sync models, and the one evaluation that serves all of them.

Three recipes share one shape (:class:`SyncRecipe`): a batch drawn from the clip store the way the
paper drew it (:class:`avlib.sync.pairs.SyncPairs`), a loss, and the per-batch metrics.

============  =====================================  ==========================================
kind          objective                              official optimiser (upstream)
============  =====================================  ==========================================
``syncnet``   contrastive loss on the Euclidean      not released (paper: BBC TV, time-shifted
              distance of unnormalised embeddings,   false pairs)
              genuine vs time-shifted pairs
``expert``    BCE on the cosine of the ReLU'd,       Adam lr 1e-4, batch 64; eval every 10k
              L2-normalised embeddings (Wav2Lip)     steps over 1400 batches; eval loss ~0.25
``vocalist``  BCE-with-logits on in-sync vs          Adam lr 5e-5, batch 128; val every epoch
              shifted-in-clip windows (RMS check)
============  =====================================  ==========================================

:func:`train_sync_model` trains (or loads) any of them through :func:`avlib.train.train_or_load`,
keyed by the recipe, the model's constructor arguments, the optimisation settings, the batch
size and the identity of the store's content (:func:`store_fingerprint`), so that a later chapter
gets the same weights back with the same call and ``policy="load"``. Every finished model is also
recorded as the *current* one of its kind (:func:`find_sync_model`).

Shared-video batches (``negatives=m > 1``, :func:`shared_video_batch`) pair each video window
with its true audio and ``m`` false audio windows drawn as the paper draws false pairs: the video
stream (the video prenet, for VocaLiST) is the expensive half of SyncNet, of the expert and of
VocaLiST at CPU sizes, so a CPU run sees ``m`` times more false
pairs per video pass. The loss weighs the genuine and false halves equally, like the papers'
half-and-half batches. ``negatives=1`` (default) is the papers' sampling.

Validation uses fixed batches of the papers' pairs from the ``val`` split: they are drawn from a
fixed seed, and re-drawn from that seed at every evaluation (identical batches, flat memory: a
batch of 224-pixel SyncNet windows is 190 MB).

:func:`evaluate_store` runs the shared accuracy protocol of :mod:`avlib.sync` over the store's
test clips (GRID clips at offset 0, sync-test clips at their recorded shift) for any scorer, so
one table compares SyncNet, the Wav2Lip expert, VocaLiST and MTDVocaLiST on the same clips.
:class:`AudioOracleScorer` and :func:`accuracy_on_speech` measure what digital silence does to
that protocol: identical silent audio windows tie, and no model can win those windows.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avlib import audio as A
from avlib.artifacts import atomic_write_json
from avlib.models import SyncNet, SyncNetColor, VocaLiST, build_model, expert_loss
from avlib.models.syncnet import contrastive_loss
from avlib.data.store import ClipStore, StoreError
from avlib.sync.pairs import (FACE_STREAM, SYNCNET_STREAM, WINDOW, SyncPairs,
                            draw_false_audio, lower_half, syncnet_video, vocalist_mel_windows)
from avlib.train import History, Trainer, TrainConfig, train_or_load

__all__ = [
    "KINDS",
    "OFFICIAL",
    "MARGIN_PER_SQRT_DIM",
    "EXPERT_TARGET_EVAL_LOSS",
    "SyncRecipe",
    "RECIPES",
    "shared_video_batch",
    "default_margin",
    "weighted_f1",
    "vocalist_f1",
    "build",
    "store_fingerprint",
    "syncnet_crop_size",
    "product_name",
    "product_config",
    "make_evaluator",
    "train_sync_model",
    "find_sync_model",
]

KINDS = ("syncnet", "expert", "vocalist")
#: The chapter that trains each kind (recorded in the product's metadata).
PRODUCERS = {"syncnet": "02_syncnet", "expert": "02_syncnet", "vocalist": "03_vocalist"}
#: Modules whose source is part of a trained model's product key.
TRAIN_CODE = {
    "syncnet": ("avlib.sync.recipes", "avlib.sync.pairs", "avlib.models.syncnet", "avlib.models.blocks"),
    "expert": ("avlib.sync.recipes", "avlib.sync.pairs", "avlib.models.wav2lip", "avlib.models.blocks"),
    "vocalist": ("avlib.sync.recipes", "avlib.sync.pairs", "avlib.models.vocalist"),
}

#: Published optimisation settings (spec §2.3, §3.4). SyncNet's training code was never released.
OFFICIAL = {
    "syncnet": {"lr": None, "batch_size": None, "source": "not released (paper model differs, §1.1)"},
    "expert": {"lr": 1e-4, "batch_size": 64, "eval_every": 10_000, "eval_batches": 1400,
               "source": "Wav2Lip color_syncnet_train.py"},
    "vocalist": {"lr": 5e-5, "batch_size": 128, "source": "VocaLiST train_vocalist_lrs2.py"},
}

#: SyncNet margin per sqrt(embedding size): 0.5 gives 16 at the official 1024-d. With the
#: released model, real LRS2 videos have LSE-D ~ 6.4 and LSE-C ~ 7.8 (spec §2.9), so the median
#: distance over offsets (= LSE-D + LSE-C) of off-sync pairs is ~ 14: a margin of 16 asks for
#: false pairs a little beyond where the released network puts them. A randomly initialised head
#: (Linear after BN + ReLU) gives distances near sqrt(D / 3) (18 at 1024-d, 6.5 at 128-d), so
#: scaling with sqrt(D) keeps the margin at the same place relative to the initial distances
#: whatever the width of a CPU model.
MARGIN_PER_SQRT_DIM = 0.5

#: The eval loss the Wav2Lip README says the expert should reach on LRS2 (spec §2.3).
EXPERT_TARGET_EVAL_LOSS = 0.25

_VAL_SEED_OFFSET = 1_000_003  # validation batches never share the training generator's stream


def default_margin(emb_dim: int) -> float:
    """SyncNet contrastive margin for ``emb_dim``-d embeddings: ``0.5 * sqrt(emb_dim)``."""
    if int(emb_dim) < 1:
        raise ValueError(f"emb_dim must be a positive integer, got {emb_dim!r}")
    return MARGIN_PER_SQRT_DIM * math.sqrt(int(emb_dim))


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def weighted_f1(pred, target) -> float:
    """F1 per class (0 and 1) averaged with weights = class support (sklearn's ``"weighted"``).

    Args:
        pred: (N,) predicted labels in {0, 1} (bool or int).
        target: (N,) true labels in {0, 1}.

    A class with no predicted and no true sample contributes F1 = 0 with weight 0.
    """
    p = np.asarray(pred).astype(bool).reshape(-1)
    t = np.asarray(target).astype(bool).reshape(-1)
    if p.shape != t.shape or p.size == 0:
        raise ValueError(f"pred and target must be two non-empty (N,) arrays, got {p.shape}, {t.shape}")
    total = 0.0
    for cls in (False, True):
        tp = np.sum((p == cls) & (t == cls))
        fp = np.sum((p == cls) & (t != cls))
        fn = np.sum((p != cls) & (t == cls))
        denom = 2 * tp + fp + fn
        f1 = 2 * tp / denom if denom else 0.0
        total += f1 * np.sum(t == cls)
    return float(total / t.size)


def vocalist_f1(logits, target) -> dict[str, float]:
    """VocaLiST's validation F1, both ways.

    * ``f1_official``: upstream thresholds the **logits** at 0.5 (``out > 0.5`` on the output of a
      network trained with BCE-with-logits), i.e. probabilities at sigmoid(0.5) = 0.62: a quirk
      that calls borderline in-sync pairs "off sync".
    * ``f1``: the correct rule, probabilities at 0.5, i.e. logits at 0.

    Args:
        logits: (N,) raw network outputs.
        target: (N,) labels, 1 = in sync.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    return {"f1_official": weighted_f1(z > 0.5, target), "f1": weighted_f1(z > 0.0, target)}


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------
StepOutput = tuple[torch.Tensor, dict[str, float], torch.Tensor]


@dataclass(frozen=True)
class SyncRecipe:
    """How one sync model is trained.

    Attributes:
        kind: ``"syncnet"``, ``"expert"`` or ``"vocalist"``.
        model_name: registry name of the network (:data:`avlib.models.MODEL_REGISTRY`).
        stream: the store's crop stream the model reads (``"syncnet"`` or ``"face96"``).
        objective: one line for tables and plots.
    """

    kind: str
    model_name: str
    stream: str
    objective: str

    def batch(self, pairs: SyncPairs, rng: np.random.Generator, batch_size: int,
              options: Mapping[str, Any]) -> dict:
        """One training batch drawn as the paper drew it (see :mod:`avlib.sync.pairs`), or, with
        ``options["negatives"] = m > 1``, a shared-video batch (:func:`shared_video_batch`)."""
        if options.get("negatives", 1) > 1:
            return shared_video_batch(self.kind, pairs, rng, batch_size, options)
        if self.kind == "syncnet":
            return pairs.syncnet_batch(rng, batch_size, max_shift=options["max_shift"],
                                       min_shift=options["min_shift"])
        if self.kind == "expert":
            return pairs.expert_batch(rng, batch_size)
        return pairs.vocalist_batch(rng, batch_size)

    def forward(self, model, batch: dict, options: Mapping[str, Any], device) -> StepOutput:
        """``(loss, metrics, score)``: score (B,) is higher for pairs the model calls in sync
        (negative distance, cosine, or logit)."""
        if "audio_sets" in batch:
            return self._forward_shared(model, batch, options, device)
        y = batch["y"].to(device).float()
        if self.kind == "syncnet":
            audio, video = model(batch["mfcc"].to(device), batch["frames"].to(device))
            loss = contrastive_loss(audio, video, y, options["margin"])
            dist = torch.linalg.vector_norm(audio - video, dim=1).detach()
            # A pair counts as "called genuine" when it is nearer than half the margin.
            called = dist < options["margin"] / 2
            metrics = {"acc": float((called == y.bool()).float().mean()),
                       **_mean_by_label(dist, y, "dist")}
            return loss, metrics, -dist
        if self.kind == "expert":
            audio, face = model(batch["mel"].to(device), batch["faces"].to(device))
            loss = expert_loss(audio, face, y)
            cos = F.cosine_similarity(audio, face, dim=1).detach()
            metrics = {"acc": float(((cos > 0.5) == y.bool()).float().mean()),
                       **_mean_by_label(cos, y, "cos")}
            return loss, metrics, cos
        logits = model(batch["faces"].to(device), batch["mel"].to(device))
        loss = F.binary_cross_entropy_with_logits(logits, y)
        z = logits.detach()
        return loss, {"acc": float(((z > 0) == y.bool()).float().mean())}, z


    def _forward_shared(self, model, batch: dict, options: Mapping[str, Any], device) -> StepOutput:
        """Loss of a shared-video batch: half on the B genuine pairs, half on the B m false ones,
        each half with the paper's loss function, so the objective equals the paper's in
        expectation (its batches are half genuine, half false)."""
        audio_sets = batch["audio_sets"].to(device)  # (B, 1 + m, 1, H, W)
        n, k = audio_sets.shape[:2]
        flat = audio_sets.reshape(n * k, *audio_sets.shape[2:])
        if self.kind == "vocalist":
            # the video prenet runs once per video window; the transformer runs on every pair
            video = model.video_tokens(batch["video"].to(device)).repeat_interleave(k, dim=0)
            logits = model.forward_tokens(video, model.audio_tokens(flat)).view(n, k)
            pos, neg = logits[:, 0], logits[:, 1:]
            loss = 0.5 * (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                          + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))
            pos, neg = pos.detach(), neg.detach()
            acc = 0.5 * float((pos > 0).float().mean() + (neg <= 0).float().mean())
            return loss, {"acc": acc, "logit_pos": float(pos.mean()), "logit_neg": float(neg.mean())}, pos
        if self.kind == "syncnet":
            audio = model.forward_aud(flat)
            video = model.forward_lip(batch["video"].to(device))
        else:
            audio, video = model(flat, batch["video"].to(device))
        audio = audio.view(n, k, -1)
        pos_a, neg_a = audio[:, 0], audio[:, 1:].reshape(n * (k - 1), -1)
        neg_v = video.repeat_interleave(k - 1, dim=0)
        ones, zeros = torch.ones(n, device=device), torch.zeros(n * (k - 1), device=device)
        if self.kind == "syncnet":
            loss = 0.5 * (contrastive_loss(pos_a, video, ones, options["margin"])
                          + contrastive_loss(neg_a, neg_v, zeros, options["margin"]))
            pos = torch.linalg.vector_norm(pos_a - video, dim=1).detach()
            neg = torch.linalg.vector_norm(neg_a - neg_v, dim=1).detach()
            half = options["margin"] / 2
            acc = 0.5 * float((pos < half).float().mean() + (neg >= half).float().mean())
            return loss, {"acc": acc, "dist_pos": float(pos.mean()), "dist_neg": float(neg.mean())}, -pos
        loss = 0.5 * (expert_loss(pos_a, video, ones) + expert_loss(neg_a, neg_v, zeros))
        pos = F.cosine_similarity(pos_a, video, dim=1).detach()
        neg = F.cosine_similarity(neg_a, neg_v, dim=1).detach()
        acc = 0.5 * float((pos > 0.5).float().mean() + (neg <= 0.5).float().mean())
        return loss, {"acc": acc, "cos_pos": float(pos.mean()), "cos_neg": float(neg.mean())}, pos


def shared_video_batch(kind: str, pairs: SyncPairs, rng: np.random.Generator, batch_size: int,
                       options: Mapping[str, Any]) -> dict:
    """``batch_size`` video windows, each with its true audio window and ``m`` false ones.

    The video stream is the expensive half of both networks (a 5-frame image stack against 0.2 s
    of audio), so pairing each video window with ``m = options["negatives"]`` false audio windows
    multiplies the false pairs per video pass by ``m`` for ``m`` extra passes of the cheap audio
    encoder. The false audio windows are drawn the way each paper draws its false pairs:

    * ``syncnet``: the audio moved by ``min_shift..max_shift`` frames either way;
    * ``expert``: another window of the same clip that does not overlap the video window
      (upstream keeps the audio and moves the video; the pairs (video start, audio start) are the
      same set of non-overlapping window pairs of the clip either way).
    * ``vocalist``: any other window of the same clip, redrawn (up to 10 times) while it and the
      true window are both silent, as VocaLiST's sampler does. The video *prenet* runs once per
      video window; the cross-modal transformer, which scores each pair jointly, runs on all
      ``1 + m`` pairs (it is the cheap part at the CPU sizes).

    Returns ``{"video": (B, ...), "audio_sets": (B, 1 + m, 1, H, W)}`` (entry 0 = the true audio):
    SyncNet video (B, 3, 5, S, S) raw 0-255 BGR with MFCC (13 x 20) audio; expert and VocaLiST
    video (B, 15, 48, 96) in [0, 1] with Wav2Lip mel (80 x 16) or VocaLiST mel (80 x 16) audio.
    """
    m = int(options["negatives"])
    videos, audio_sets = [], []
    for _ in range(batch_size):
        clip = pairs.clips[int(rng.integers(len(pairs.clips)))]
        last = pairs.n_frames[clip] - WINDOW
        f = int(rng.integers(0, last + 1))
        if kind == "syncnet":
            starts = [f + s for s in range(-options["max_shift"], options["max_shift"] + 1)
                      if abs(s) >= options["min_shift"] and 0 <= f + s <= last]
        elif kind == "vocalist":
            starts = [g for g in range(last + 1) if g != f]
        else:
            starts = [g for g in range(last + 1) if abs(g - f) >= WINDOW]
        if not starts:
            raise ValueError(f"clip {clip!r} is too short for a false pair; train on clips of at "
                             f"least {3 * WINDOW} frames (SyncPairs(min_frames=...))")
        if kind == "vocalist":
            video, audio = _vocalist_shared_item(pairs, rng, clip, f, starts, m)
            videos.append(video)
            audio_sets.append(audio)
            continue
        chosen = rng.choice(starts, size=m, replace=len(starts) < m)
        if kind == "syncnet":
            videos.append(syncnet_video(pairs.store.frames(clip, SYNCNET_STREAM, f, WINDOW)))
            feature = pairs.store.feature(clip, "syncnet_mfcc")
            audio_sets.append(np.stack([A.mfcc_window(feature, int(a), at_end="pad") for a in (f, *chosen)]))
        else:
            videos.append(lower_half(pairs.store.frames(clip, FACE_STREAM, f, WINDOW)))
            feature = pairs.store.feature(clip, "wav2lip_mel")
            audio_sets.append(np.stack([A.mel_window(feature, int(a), at_end="pad") for a in (f, *chosen)]))
    return {"video": torch.from_numpy(np.stack(videos)),
            "audio_sets": torch.from_numpy(np.stack(audio_sets)[:, :, None].astype(np.float32))}


def _vocalist_shared_item(pairs: SyncPairs, rng: np.random.Generator, clip: str, f: int,
                          starts: list[int], m: int) -> tuple[np.ndarray, np.ndarray]:
    """One video window of a VocaLiST shared-video batch: its lower-half faces and the mel
    windows of its true audio and of ``m`` false ones. A false window is redrawn (up to 10 times,
    as the official sampler does) while both it and the true window are silent."""
    true = pairs.store.audio(clip, f, WINDOW, pad=True)
    chunks = [true, *(draw_false_audio(rng, pairs.store, clip, true, starts) for _ in range(m))]
    return (lower_half(pairs.store.frames(clip, FACE_STREAM, f, WINDOW)),
            vocalist_mel_windows(chunks)[:, 0].numpy())


def _mean_by_label(values: torch.Tensor, y: torch.Tensor, name: str) -> dict[str, float]:
    """Mean of ``values`` over positives and negatives (NaN when a batch lacks one of them)."""
    out = {}
    for label, suffix in ((1.0, "pos"), (0.0, "neg")):
        sel = y == label
        out[f"{name}_{suffix}"] = float(values[sel].mean()) if bool(sel.any()) else float("nan")
    return out


RECIPES: dict[str, SyncRecipe] = {
    "syncnet": SyncRecipe("syncnet", SyncNet.registry_name, SYNCNET_STREAM,
                          "contrastive loss on ||a - v|| (genuine vs time-shifted pairs)"),
    "expert": SyncRecipe("expert", SyncNetColor.registry_name, FACE_STREAM,
                         "BCE on cos(a, v) of ReLU'd, normalised embeddings"),
    "vocalist": SyncRecipe("vocalist", VocaLiST.registry_name, FACE_STREAM,
                           "BCE with logits on in-sync vs shifted windows"),
}


def _recipe(kind: str) -> SyncRecipe:
    if kind not in RECIPES:
        raise ValueError(f"unknown sync model kind {kind!r}; choose one of {KINDS}")
    return RECIPES[kind]


def build(kind: str, seed: int | None = None, **size) -> torch.nn.Module:
    """A fresh network of ``kind``; ``size`` goes to its constructor.

    ``syncnet``: :class:`~avlib.models.SyncNet` (``width``, ``emb_dim``, ``img_size``);
    ``expert``: :class:`~avlib.models.SyncNetColor` (``width``); ``vocalist``:
    :class:`~avlib.models.VocaLiST` (``d_model``, ``prenet_widths``, ``n_layers``, ...).
    No arguments give the official sizes. ``seed`` makes the initial weights reproducible.
    """
    recipe = _recipe(kind)
    if seed is not None:
        torch.manual_seed(int(seed))
    return build_model({"name": recipe.model_name, "kwargs": dict(size)})


def _options(kind: str, model: torch.nn.Module, margin: float | None, max_shift: int,
             min_shift: int, negatives: int = 1) -> dict[str, Any]:
    """The recipe's loss/sampling options (part of the product key)."""
    if int(negatives) != negatives or negatives < 1:
        raise ValueError(f"negatives must be a positive integer (1 = the papers' pairs), "
                         f"got {negatives!r}")
    # negatives=1 keeps the key of the papers' sampling unchanged
    extra = {} if negatives == 1 else {"negatives": int(negatives)}
    if kind != "syncnet":
        return extra
    if not 1 <= int(min_shift) <= int(max_shift):
        raise ValueError(f"SyncNet false pairs need 1 <= min_shift <= max_shift, got {min_shift}, "
                         f"{max_shift}")
    return {"margin": float(margin if margin is not None else default_margin(model.emb_dim)),
            "max_shift": int(max_shift), "min_shift": int(min_shift), **extra}


# ---------------------------------------------------------------------------------------------
# Store identity and geometry
# ---------------------------------------------------------------------------------------------
def store_fingerprint(store: ClipStore) -> str:
    """A short hash of what a store holds: its preprocessing config and every clip's id, split
    and length. It does not depend on where the store lies or when it was finalized, so moving
    or re-finalizing a store keeps the trained products that depend on it."""
    content = {
        "config": store.manifest.get("config"),
        "clips": [(rec["id"], rec.get("split"), rec["n_frames"]) for rec in store.clips],
    }
    blob = json.dumps(content, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def syncnet_crop_size(store: ClipStore) -> int:
    """Side (pixels) of the store's SyncNet crops (``syncnet`` stream; 224 = SyncNet v2)."""
    for rec in store.clips:
        info = rec.get("streams", {}).get(SYNCNET_STREAM)
        if info:
            return int(info["shape"][1])
    raise StoreError(f"the store at {store.root} has no {SYNCNET_STREAM!r} crops; preprocess with "
                     "crops including 'syncnet' (PreprocessConfig(crops=...))")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def product_name(kind: str) -> str:
    """Artifact name of a trained sync model: ``sync_<kind>`` (folder under the artifacts root)."""
    _recipe(kind)
    return f"sync_{kind}"


def product_config(kind: str, store: ClipStore, model_config: Mapping, train_cfg: TrainConfig,
                   batch_size: int, options: Mapping, val_batches: int, val_split: str,
                   train_split: str) -> dict:
    """The key of a trained model: everything that determines its weights.

    The device is left out (a model trained on a GPU is the same product as on the CPU, up to
    float rounding), and so are logging intervals that do not change the weights.
    """
    train_fields = dataclasses.asdict(train_cfg)
    for name in ("device", "log_every", "ckpt_every"):
        train_fields.pop(name, None)
    return {
        "kind": kind,
        "model": {"name": model_config["name"], "kwargs": dict(model_config.get("kwargs") or {})},
        "train": train_fields,
        "batch_size": int(batch_size),
        "options": dict(options),
        "val": {"split": val_split, "batches": int(val_batches)},
        "train_split": train_split,
        "store": store_fingerprint(store),
    }


def _fixed_batches(recipe: SyncRecipe, pairs: SyncPairs, seed: int, n_batches: int,
                   batch_size: int, options: Mapping) -> Iterator[dict]:
    """The same ``n_batches`` batches on every call (drawn from one fixed seed)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        yield recipe.batch(pairs, rng, batch_size, options)


def make_evaluator(kind: str, store: ClipStore, batch_size: int, n_batches: int = 8,
                   seed: int = 0, split: str = "val", options: Mapping | None = None,
                   device: str = "cpu") -> Callable[[torch.nn.Module], dict]:
    """``evaluate(model) -> metrics`` on fixed validation batches of ``split``.

    Metrics: ``val_loss`` (the recipe's loss averaged over the batches), ``val_acc``; SyncNet:
    ``val_dist_pos`` / ``val_dist_neg`` (mean distance of genuine / false pairs); expert:
    ``val_cos_pos`` / ``val_cos_neg``; VocaLiST: ``val_f1`` (logits > 0) and
    ``val_f1_official`` (logits > 0.5, upstream's quirk). The model is called under
    ``torch.no_grad`` in eval mode by :class:`avlib.train.Trainer`.
    """
    recipe = _recipe(kind)
    if int(n_batches) < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches!r}")
    try:
        pairs = SyncPairs(store, split=split)
    except ValueError as err:
        raise ValueError(f"cannot validate {kind} on split {split!r}: {err}") from None
    # validation always draws the papers' pairs, whatever the training batches were
    opts = {k: v for k, v in dict(options or {}).items() if k != "negatives"}

    def evaluate(model: torch.nn.Module) -> dict:
        losses, weights, scores, labels, sums = [], [], [], [], {}
        for batch in _fixed_batches(recipe, pairs, seed + _VAL_SEED_OFFSET, n_batches, batch_size, opts):
            loss, metrics, score = recipe.forward(model, batch, opts, device)
            n = len(batch["y"])
            losses.append(float(loss) * n)
            weights.append(n)
            scores.append(score.float().cpu().numpy())
            labels.append(batch["y"].numpy())
            for key, value in metrics.items():
                if key != "acc" and np.isfinite(value):
                    sums.setdefault(key, []).append(value)
        y = np.concatenate(labels)
        s = np.concatenate(scores)
        out = {"val_loss": sum(losses) / sum(weights)}
        out.update({f"val_{k}": float(np.mean(v)) for k, v in sums.items()})
        if kind == "syncnet":
            out["val_acc"] = float(np.mean((-s < opts["margin"] / 2) == (y > 0.5)))
        elif kind == "expert":
            out["val_acc"] = float(np.mean((s > 0.5) == (y > 0.5)))
        else:
            out["val_acc"] = float(np.mean((s > 0) == (y > 0.5)))
            out.update({f"val_{k}": v for k, v in vocalist_f1(s, y).items()})
        return out

    return evaluate


def _current_path(kind: str, artifacts_root) -> Path:
    return Path(artifacts_root) / product_name(kind) / "current.json"


def train_sync_model(
    kind: str,
    store: ClipStore,
    model_kwargs: Mapping | None,
    train_cfg: TrainConfig,
    batch_size: int,
    policy: str,
    artifacts_root,
    *,
    margin: float | None = None,
    max_shift: int = 15,
    min_shift: int = 2,
    negatives: int = 1,
    val_batches: int = 8,
    val_split: str = "val",
    train_split: str = "train",
    progress: bool = True,
) -> tuple[torch.nn.Module, History, Path]:
    """Train (or load) a sync model of ``kind`` on the store's ``train_split``.

    Args:
        kind: ``"syncnet"``, ``"expert"`` or ``"vocalist"``.
        store: the clip store (its ``train`` and ``val`` splits are used).
        model_kwargs: constructor arguments (see :func:`build`); ``None`` = official size. For
            SyncNet ``img_size`` defaults to the store's crop size and must match it.
        train_cfg: optimisation settings (:class:`avlib.train.TrainConfig`); its ``seed`` also
            seeds the initial weights and the validation batches.
        batch_size: pairs per step (half genuine, half false on average).
        policy: ``"load"``, ``"train"`` or ``"auto"`` (:func:`avlib.artifacts.produce_or_load`).
        artifacts_root: the chapter's artifacts root.
        margin: SyncNet's contrastive margin (default :func:`default_margin` of the embedding size).
        max_shift, min_shift: SyncNet false pairs move the audio by ``min_shift..max_shift``
            frames either way.
        negatives: false pairs per video window. 1 = the papers' batches (half genuine, half
            false pairs, each with its own video window); m > 1 = shared-video batches
            (:func:`shared_video_batch`): each video window with its true audio and m false audio
            windows, the two halves of the loss weighted equally. Validation always uses the
            papers' pairs, so ``val_loss`` is comparable either way.
        val_batches: fixed validation batches of ``batch_size`` pairs per evaluation.
        val_split, train_split: store splits to validate and train on.
        progress: show the training progress bar.

    Returns:
        ``(model, history, folder)``: the model in eval mode on the CPU, its
        :class:`avlib.train.History` (train loss per logged step; ``val_*`` metrics per
        evaluation) and the product folder (``model.safetensors``/``.json``, ``history.json``,
        ``artifact.json``). The folder is also recorded as the current model of ``kind``
        (:func:`find_sync_model`).
    """
    recipe = _recipe(kind)
    if int(batch_size) < 2:
        raise ValueError(f"batch_size must be >= 2 (pairs of both labels), got {batch_size!r}")
    kwargs = dict(model_kwargs or {})
    if kind == "syncnet":
        crop = syncnet_crop_size(store)
        kwargs.setdefault("img_size", crop)
        if int(kwargs["img_size"]) != crop:
            raise ValueError(
                f"SyncNet img_size={kwargs['img_size']} but the store's SyncNet crops are "
                f"{crop}x{crop}; set img_size={crop} or preprocess with syncnet_size="
                f"{kwargs['img_size']}")
    probe = build(kind, **kwargs)  # validates the arguments and gives the normalised config
    options = _options(kind, probe, margin, max_shift, min_shift, negatives)
    config = product_config(kind, store, probe.config, train_cfg, batch_size, options,
                            val_batches, val_split, train_split)
    del probe

    def make_model() -> torch.nn.Module:
        return build(kind, seed=train_cfg.seed, **kwargs)

    def fit(model: torch.nn.Module, workdir: Path) -> History:
        try:
            pairs = SyncPairs(store, split=train_split)
        except ValueError as err:
            raise ValueError(f"cannot train {kind} on split {train_split!r}: {err}") from None
        device = train_cfg.device

        def sample(rng: np.random.Generator) -> dict:
            return recipe.batch(pairs, rng, batch_size, options)

        def step(m: torch.nn.Module, batch: dict):
            loss, metrics, _ = recipe.forward(m, batch, options, device)
            return loss, {k: v for k, v in metrics.items() if np.isfinite(v)}

        evaluate = make_evaluator(kind, store, batch_size, val_batches, train_cfg.seed, val_split,
                                  options, device)
        trainer = Trainer(model, sample, step, train_cfg, workdir, evaluate=evaluate)
        return trainer.fit(progress=progress)

    # The recipe, the pair sampler and the network determine the weights: editing them retrains.
    model, history, folder = train_or_load(product_name(kind), config, make_model, fit, policy,
                                           artifacts_root, producer=PRODUCERS[kind],
                                           code=TRAIN_CODE[kind])
    atomic_write_json(_current_path(kind, artifacts_root), {"path": str(Path(folder).resolve())})
    return model, history, folder


def find_sync_model(kind: str, artifacts_root) -> tuple[torch.nn.Module, History, Path]:
    """The model of ``kind`` last trained or loaded by :func:`train_sync_model` under this
    artifacts root: ``(model in eval mode on the CPU, history, folder)``."""
    from avlib.checkpoints import load_checkpoint

    pointer = _current_path(kind, artifacts_root)
    if not pointer.is_file():
        raise FileNotFoundError(
            f"no trained {kind} under {artifacts_root}; run chapter 02_syncnet with the same "
            "profile first (avlib book run --only 02_syncnet)")
    folder = Path(json.loads(pointer.read_text())["path"])
    model, _ = load_checkpoint(folder / "model")
    history = History(**json.loads((folder / "history.json").read_text()))
    return model, history, folder


