"""Training recipes of the book's sync models: what a batch is, what the loss is, what is
validated. Each is an :class:`avlib.train.Recipe` that the one trainer runs
(:func:`avlib.train.train_recipe`).

======================  ===================================  ======================================
recipe                  objective                            official optimiser (upstream)
======================  ===================================  ======================================
:class:`SyncNetRecipe`  contrastive loss on the Euclidean    not released (paper: BBC TV,
                        distance of unnormalised embeddings  time-shifted false pairs)
:class:`ExpertRecipe`   BCE on the cosine of the ReLU'd,     Adam lr 1e-4, batch 64; eval every
                        L2-normalised embeddings (Wav2Lip)   10k steps over 1400 batches (~0.25)
:class:`VocaLiSTRecipe` BCE-with-logits on in-sync vs        Adam lr 5e-5, batch 128; val every
                        shifted-in-clip windows (RMS check)  epoch
======================  ===================================  ======================================

A recipe holds the network's size (its config dataclass, e.g. :class:`avlib.models.SyncNetConfig`),
the clip store it reads and the sampling settings. Its product key (see
:func:`avlib.train.train_recipe`) adds the store's identity (:func:`store_fingerprint`) and the
sampling settings (:meth:`SyncRecipe.key`) to the config and the training settings, so a later
chapter gets the same weights back with the same recipe and ``policy="load"``. :func:`train`
also records the finished model as the *current* one of its name (:func:`find_trained`).

Adding a sync model is one subclass here: its ``model_class`` (which declares the crops it reads,
``crop_stream``, and how its pairs are scored, ``similarity``), how the paper drew its pairs
(:meth:`SyncRecipe.paper_batch`) and its loss (:meth:`SyncRecipe.loss`).

Shared-video batches (``negatives=m > 1``) pair each video window with its true audio and ``m``
false audio windows drawn as the paper draws false pairs: the video stream is the expensive half
of every sync network at CPU sizes, so a CPU run sees ``m`` times more false pairs per video
pass. The loss weighs the genuine and false halves equally, like the papers' half-and-half
batches. ``negatives=1`` (default) is the papers' sampling.

Validation uses fixed batches of the papers' pairs from the ``val`` split: they are drawn from a
fixed seed, and re-drawn from that seed at every evaluation (identical batches, flat memory: a
batch of 224-pixel SyncNet windows is 190 MB).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from avlib import audio as A
from avlib.artifacts import find_current, record_current
from avlib.checkpoints import load_checkpoint
from avlib.data.store import ClipStore, StoreError
from avlib.models import SyncNet, VocaLiST, Wav2LipExpert, expert_loss, from_config
from avlib.models.syncnet import contrastive_loss
from avlib.sync.pairs import (FACE_STREAM, SYNCNET_STREAM, WINDOW, SyncPairs, draw_false_audio,
                              lower_half, syncnet_video, vocalist_mel_windows)
from avlib.train import History, Recipe, TrainConfig, train_recipe

__all__ = [
    "OFFICIAL",
    "MARGIN_PER_SQRT_DIM",
    "EXPERT_TARGET_EVAL_LOSS",
    "SyncRecipe",
    "SyncNetRecipe",
    "ExpertRecipe",
    "VocaLiSTRecipe",
    "RECIPES",
    "recipe_class",
    "default_margin",
    "weighted_f1",
    "vocalist_f1",
    "store_fingerprint",
    "syncnet_crop_size",
    "train",
    "find_trained",
]

#: Published optimisation settings (spec §2.3, §3.4). SyncNet's training code was never released.
OFFICIAL = {
    "syncnet": {"lr": None, "batch_size": None, "source": "not released (paper model differs, §1.1)"},
    "wav2lip_expert": {"lr": 1e-4, "batch_size": 64, "eval_every": 10_000,
                       "eval_batches": 1400, "source": "Wav2Lip color_syncnet_train.py"},
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


class SyncRecipe(Recipe):
    """A sync network trained on pairs of a clip store's video and audio windows.

    Args:
        store: the clip store (its ``train_split`` trains, its ``val_split`` validates).
        config: the network's size (``model_class.config_class``); None = official.
        batch_size: pairs per step (the papers' batches: half genuine on average; shared-video
            batches: ``batch_size`` video windows, each with ``1 + negatives`` audio windows).
        negatives: false audio windows per video window; 1 = the papers' batches.
        val_batches: fixed validation batches of ``batch_size`` of the papers' pairs.
        seed: initial weights and validation batches (the trainer's seed draws the batches).
        val_split, train_split: store splits.

    The network is the model ``"net"``; one Adam optimizer of the same name trains it.
    """

    model_class: ClassVar[type[torch.nn.Module]]
    producer: ClassVar[str] = "02_syncnet"  #: the chapter that trains it
    objective: ClassVar[str] = ""  #: one line for tables and plots

    def __init__(self, store: ClipStore, config=None, *, batch_size: int = 32,
                 negatives: int = 1, val_batches: int = 8, seed: int = 0,
                 val_split: str = "val", train_split: str = "train"):
        if int(batch_size) < 2:
            raise ValueError(f"batch_size must be >= 2 (pairs of both labels), got {batch_size!r}")
        if int(negatives) != negatives or negatives < 1:
            raise ValueError(f"negatives must be a positive integer (1 = the papers' pairs), "
                             f"got {negatives!r}")
        if int(val_batches) < 1:
            raise ValueError(f"val_batches must be >= 1, got {val_batches!r}")
        config = self.model_class.config_class() if config is None else config
        if not isinstance(config, self.model_class.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.model_class.config_class.__name__},"
                            f" got {type(config).__name__}")
        self.store, self.config = store, config
        self.batch_size, self.negatives = int(batch_size), int(negatives)
        self.val_batches, self.seed = int(val_batches), int(seed)
        self.val_split, self.train_split = val_split, train_split
        self._pairs: dict[str, SyncPairs] = {}

    # ---- identity --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Product name: ``sync_<registry name>`` (e.g. ``sync_syncnet``)."""
        return f"sync_{self.model_class.registry_name}"

    @property
    def stream(self) -> str:
        """The store's crop stream the network reads."""
        return self.model_class.crop_stream

    def options(self) -> dict[str, Any]:
        """Loss and sampling options beyond the common ones (part of the product key)."""
        return {}

    def key(self) -> dict:
        """What besides the config and the training settings determines the weights."""
        return {"batch_size": self.batch_size, "negatives": self.negatives,
                "options": self.options(), "seed": self.seed, "train_split": self.train_split,
                "val": {"split": self.val_split, "batches": self.val_batches},
                "store": store_fingerprint(self.store)}

    def pairs(self, split: str) -> SyncPairs:
        if split not in self._pairs:
            try:
                self._pairs[split] = SyncPairs(self.store, split=split)
            except ValueError as err:
                raise ValueError(f"cannot use split {split!r} for {self.name}: {err}") from None
        return self._pairs[split]

    # ---- the protocol ----------------------------------------------------------------------
    def build(self) -> dict[str, torch.nn.Module]:
        torch.manual_seed(self.seed)
        return {"net": from_config(self.config)}

    def batch(self, rng: np.random.Generator) -> dict:
        pairs = self.pairs(self.train_split)
        if self.negatives > 1:
            return self.shared_batch(pairs, rng)
        return self.paper_batch(pairs, rng, self.batch_size)

    def training_step(self, models, batch: dict, opt) -> dict[str, float]:
        loss, metrics, _ = self.loss(models["net"], batch)
        opt.step("net", loss)
        return {"loss": float(loss.detach()), **metrics}

    def validate(self, models) -> dict[str, float]:
        """``val_loss`` (the loss over the fixed batches), ``val_acc`` and the recipe's own
        ``val_*`` metrics, always on the papers' pairs (so curves compare across samplings)."""
        net = models["net"]
        device = next(net.parameters()).device
        rng = np.random.default_rng(self.seed + _VAL_SEED_OFFSET)
        pairs = self.pairs(self.val_split)
        total, count, scores, labels, sums = 0.0, 0, [], [], {}
        for _ in range(self.val_batches):
            batch = self.paper_batch(pairs, rng, self.batch_size)
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            loss, metrics, score = self.loss(net, batch)
            n = len(batch["y"])
            total, count = total + float(loss) * n, count + n
            scores.append(score.float().cpu().numpy())
            labels.append(batch["y"].cpu().numpy())
            for key, value in metrics.items():
                if key != "acc" and np.isfinite(value):
                    sums.setdefault(key, []).append(value)
        s, y = np.concatenate(scores), np.concatenate(labels) > 0.5
        out = {"val_loss": total / count, "val_acc": float(np.mean(self.called_in_sync(s) == y))}
        out.update({f"val_{k}": float(np.mean(v)) for k, v in sums.items()})
        out.update({f"val_{k}": v for k, v in self.score_metrics(s, y).items()})
        return out

    # ---- what each paper defines -------------------------------------------------------------
    def paper_batch(self, pairs: SyncPairs, rng: np.random.Generator, n: int) -> dict:
        """``n`` pairs drawn as the paper drew them (:mod:`avlib.sync.pairs`)."""
        raise NotImplementedError

    def loss(self, net, batch: dict) -> StepOutput:
        """``(loss, metrics, score)`` of a papers' batch or a shared-video batch; ``score`` (B,)
        is higher for pairs the network calls in sync."""
        raise NotImplementedError

    def called_in_sync(self, score: np.ndarray) -> np.ndarray:
        """Which pairs the network calls in sync, from their scores."""
        raise NotImplementedError

    def false_starts(self, pairs: SyncPairs, clip: str, f: int) -> list[int]:
        """Start frames of the false audio windows the paper pairs with video window ``f``."""
        raise NotImplementedError

    def shared_item(self, pairs: SyncPairs, rng, clip: str, f: int,
                    starts: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """One video window and its audio windows: the true one first, then ``negatives``
        false ones starting at frames drawn from ``starts``."""
        raise NotImplementedError

    def _choose(self, rng: np.random.Generator, starts: list[int]) -> np.ndarray:
        return rng.choice(starts, size=self.negatives, replace=len(starts) < self.negatives)

    def score_metrics(self, score: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Validation metrics computed from all the validation scores (default: none)."""
        return {}

    def chance_loss(self) -> tuple[float, str]:
        """The loss of a network that cannot tell genuine from false pairs, and its name: for
        BCE, ln 2 = 0.693 (every pair scored 0.5), where a stuck expert sits for days."""
        return math.log(2), "chance: ln 2 (s = 0.5 for every pair)"

    def summary(self, hist: History, label: str | None = None) -> str:
        """One line that summarises a training run: updates, seconds, and the last validation
        loss and accuracy next to their chance values."""
        from avlib.plotting import model_label

        label = label or model_label(self.model_class.registry_name)
        last = hist.last_eval()
        done = hist.train[-1] if hist.train else {"step": 0, "seconds": 0.0}
        chance, _ = self.chance_loss()
        line = f"{label}: {done['step']} updates in {done.get('seconds', 0.0):.0f} s"
        if last:
            line += (f"; validation loss {last['val_loss']:.3f} (chance {chance:.3f}), "
                     f"accuracy {100 * last['val_acc']:.1f} % (chance 50 %)")
        if hist.stopped_early:
            line += f"; stopped early: {hist.stopped_early}"
        return line

    def shared_batch(self, pairs: SyncPairs, rng: np.random.Generator) -> dict:
        """``batch_size`` video windows, each with its true audio window and ``negatives``
        false ones: ``{"video": (B, ...), "audio_sets": (B, 1 + m, 1, H, W)}``."""
        videos, audio_sets = [], []
        for _ in range(self.batch_size):
            clip = pairs.clips[int(rng.integers(len(pairs.clips)))]
            f = int(rng.integers(0, pairs.n_frames[clip] - WINDOW + 1))
            starts = self.false_starts(pairs, clip, f)
            if not starts:
                raise ValueError(f"clip {clip!r} is too short for a false pair; train on clips "
                                 f"of at least {3 * WINDOW} frames (SyncPairs(min_frames=...))")
            video, audio = self.shared_item(pairs, rng, clip, f, starts)
            videos.append(video)
            audio_sets.append(audio)
        return {"video": torch.from_numpy(np.stack(videos)),
                "audio_sets": torch.from_numpy(np.stack(audio_sets)[:, :, None].astype(np.float32))}

    @classmethod
    def scorer(cls, net, device: str = "cpu", batch_size: int = 64):
        """The :mod:`avlib.sync.protocol` scorer of a trained network."""
        from avlib.sync.protocol import EmbeddingScorer

        return EmbeddingScorer(net, batch_size=batch_size, device=device)


def _split_shared(audio_sets: torch.Tensor) -> tuple[int, int, torch.Tensor]:
    n, k = audio_sets.shape[:2]
    return n, k, audio_sets.reshape(n * k, *audio_sets.shape[2:])


def _mean_by_label(values: torch.Tensor, y: torch.Tensor, name: str) -> dict[str, float]:
    """Mean of ``values`` over positives and negatives (NaN when a batch lacks one of them)."""
    out = {}
    for label, suffix in ((1.0, "pos"), (0.0, "neg")):
        sel = y == label
        out[f"{name}_{suffix}"] = float(values[sel].mean()) if bool(sel.any()) else float("nan")
    return out


class SyncNetRecipe(SyncRecipe):
    """SyncNet: contrastive loss on ``||a - v||``, genuine vs time-shifted pairs.

    Extra args: ``margin`` (default :func:`default_margin` of the embedding size), false pairs
    move the audio by ``min_shift..max_shift`` frames either way. The config's ``img_size``
    must equal the store's SyncNet crops (:func:`syncnet_crop_size`).
    """

    model_class = SyncNet
    objective = "contrastive loss on ||a - v|| (genuine vs time-shifted pairs)"

    def __init__(self, store, config=None, *, margin: float | None = None, max_shift: int = 15,
                 min_shift: int = 2, **kwargs):
        super().__init__(store, config, **kwargs)
        crop = syncnet_crop_size(store)
        if int(self.config.img_size) != crop:
            raise ValueError(
                f"SyncNet img_size={self.config.img_size} but the store's SyncNet crops are "
                f"{crop}x{crop}; set img_size={crop} or preprocess with syncnet_size="
                f"{self.config.img_size}")
        if not 1 <= int(min_shift) <= int(max_shift):
            raise ValueError(f"SyncNet false pairs need 1 <= min_shift <= max_shift, got "
                             f"{min_shift}, {max_shift}")
        self.margin = float(margin if margin is not None else default_margin(self.config.emb_dim))
        self.max_shift, self.min_shift = int(max_shift), int(min_shift)

    def options(self) -> dict[str, Any]:
        return {"margin": self.margin, "max_shift": self.max_shift, "min_shift": self.min_shift}

    def chance_loss(self) -> tuple[float, str]:
        """The contrastive loss's resting point m²/4: every pair at distance m/2."""
        return self.margin ** 2 / 4, "resting point m²/4 (every pair at m/2)"

    def paper_batch(self, pairs, rng, n):
        return pairs.syncnet_batch(rng, n, max_shift=self.max_shift, min_shift=self.min_shift)

    def false_starts(self, pairs, clip, f):
        last = pairs.n_frames[clip] - WINDOW
        return [f + s for s in range(-self.max_shift, self.max_shift + 1)
                if abs(s) >= self.min_shift and 0 <= f + s <= last]

    def shared_item(self, pairs, rng, clip, f, starts):
        chosen = self._choose(rng, starts)
        video = syncnet_video(pairs.store.frames(clip, SYNCNET_STREAM, f, WINDOW))
        feature = pairs.store.feature(clip, "syncnet_mfcc")
        return video, np.stack([A.mfcc_window(feature, int(a), at_end="pad") for a in (f, *chosen)])

    def loss(self, net, batch):
        half = self.margin / 2  # a pair counts as "called genuine" when nearer than this
        if "audio_sets" in batch:  # shared video: half on the genuine, half on the false pairs
            n, k, flat = _split_shared(batch["audio_sets"])
            audio = net.forward_aud(flat).view(n, k, -1)
            video = net.forward_lip(batch["video"])
            pos_a, neg_a = audio[:, 0], audio[:, 1:].reshape(n * (k - 1), -1)
            neg_v = video.repeat_interleave(k - 1, dim=0)
            ones, zeros = torch.ones(n, device=video.device), torch.zeros(len(neg_a), device=video.device)
            loss = 0.5 * (contrastive_loss(pos_a, video, ones, self.margin)
                          + contrastive_loss(neg_a, neg_v, zeros, self.margin))
            pos = torch.linalg.vector_norm(pos_a - video, dim=1).detach()
            neg = torch.linalg.vector_norm(neg_a - neg_v, dim=1).detach()
            acc = 0.5 * float((pos < half).float().mean() + (neg >= half).float().mean())
            return loss, {"acc": acc, "dist_pos": float(pos.mean()),
                          "dist_neg": float(neg.mean())}, -pos
        y = batch["y"].float()
        audio, video = net(batch["mfcc"], batch["frames"])
        loss = contrastive_loss(audio, video, y, self.margin)
        dist = torch.linalg.vector_norm(audio - video, dim=1).detach()
        metrics = {"acc": float(((dist < half) == y.bool()).float().mean()),
                   **_mean_by_label(dist, y, "dist")}
        return loss, metrics, -dist

    def called_in_sync(self, score):
        return -score < self.margin / 2


class ExpertRecipe(SyncRecipe):
    """The Wav2Lip expert: BCE on the cosine of the two normalised embeddings."""

    model_class = Wav2LipExpert
    objective = "BCE on cos(a, v) of ReLU'd, normalised embeddings"

    def paper_batch(self, pairs, rng, n):
        return pairs.expert_batch(rng, n)

    def false_starts(self, pairs, clip, f):
        # the expert's false pairs: another window of the same clip that does not overlap
        return [g for g in range(pairs.n_frames[clip] - WINDOW + 1) if abs(g - f) >= WINDOW]

    def shared_item(self, pairs, rng, clip, f, starts):
        chosen = self._choose(rng, starts)
        video = lower_half(pairs.store.frames(clip, FACE_STREAM, f, WINDOW))
        feature = pairs.store.feature(clip, "wav2lip_mel")
        return video, np.stack([A.mel_window(feature, int(a), at_end="pad") for a in (f, *chosen)])

    def loss(self, net, batch):
        if "audio_sets" in batch:
            n, k, flat = _split_shared(batch["audio_sets"])
            audio, video = net(flat, batch["video"])
            audio = audio.view(n, k, -1)
            pos_a, neg_a = audio[:, 0], audio[:, 1:].reshape(n * (k - 1), -1)
            neg_v = video.repeat_interleave(k - 1, dim=0)
            ones, zeros = torch.ones(n, device=video.device), torch.zeros(len(neg_a), device=video.device)
            loss = 0.5 * (expert_loss(pos_a, video, ones) + expert_loss(neg_a, neg_v, zeros))
            pos = F.cosine_similarity(pos_a, video, dim=1).detach()
            neg = F.cosine_similarity(neg_a, neg_v, dim=1).detach()
            acc = 0.5 * float((pos > 0.5).float().mean() + (neg <= 0.5).float().mean())
            return loss, {"acc": acc, "cos_pos": float(pos.mean()),
                          "cos_neg": float(neg.mean())}, pos
        y = batch["y"].float()
        audio, face = net(batch["mel"], batch["faces"])
        loss = expert_loss(audio, face, y)
        cos = F.cosine_similarity(audio, face, dim=1).detach()
        metrics = {"acc": float(((cos > 0.5) == y.bool()).float().mean()),
                   **_mean_by_label(cos, y, "cos")}
        return loss, metrics, cos

    def called_in_sync(self, score):
        return score > 0.5


class VocaLiSTRecipe(SyncRecipe):
    """VocaLiST: BCE with logits on in-sync vs shifted-in-clip windows; validation adds both
    F1s (:func:`vocalist_f1`).

    Extra arg ``near_shift``: the share of the false audio windows of a shared-video batch drawn
    ``near_min..near_max`` frames from the true one (default 2..5), the rest anywhere in the clip
    as the paper draws them. The ±1-frame accuracy protocol is decided between the true window
    and its near neighbours, which the paper's sampling rarely shows the network; 0 (default) is
    the paper's sampling.
    """

    model_class = VocaLiST
    producer = "03_vocalist"
    objective = "BCE with logits on in-sync vs shifted windows"

    def __init__(self, store, config=None, *, near_shift: float = 0.0, near_min: int = 2,
                 near_max: int = 5, **kwargs):
        super().__init__(store, config, **kwargs)
        if not 0.0 <= near_shift <= 1.0:
            raise ValueError(f"near_shift is a share in [0, 1], got {near_shift!r}")
        if not 1 <= int(near_min) <= int(near_max):
            raise ValueError(f"need 1 <= near_min <= near_max, got {near_min}, {near_max}")
        if near_shift and self.negatives == 1:
            raise ValueError("near_shift shapes the false windows of shared-video batches; "
                             "set negatives > 1")
        self.near_shift = float(near_shift)
        self.near_min, self.near_max = int(near_min), int(near_max)

    def options(self) -> dict[str, Any]:
        if not self.near_shift:
            return {}  # the paper's sampling keeps its key
        return {"near_shift": self.near_shift, "near_min": self.near_min,
                "near_max": self.near_max}

    def paper_batch(self, pairs, rng, n):
        return pairs.vocalist_batch(rng, n)

    def false_starts(self, pairs, clip, f):
        return [g for g in range(pairs.n_frames[clip] - WINDOW + 1) if g != f]

    def shared_item(self, pairs, rng, clip, f, starts):
        # each false window is redrawn (up to 10 times) while it and the true one are silent
        true = pairs.store.audio(clip, f, WINDOW, pad=True)
        near = [g for g in starts if self.near_min <= abs(g - f) <= self.near_max]
        chunks = [true]
        for _ in range(self.negatives):
            pool = near if self.near_shift and near and rng.random() < self.near_shift else starts
            chunks.append(draw_false_audio(rng, pairs.store, clip, true, pool))
        return (lower_half(pairs.store.frames(clip, FACE_STREAM, f, WINDOW)),
                vocalist_mel_windows(chunks)[:, 0].numpy())

    def loss(self, net, batch):
        if "audio_sets" in batch:
            # the video prenet runs once per video window; the transformer on every pair
            n, k, flat = _split_shared(batch["audio_sets"])
            video = net.video_tokens(batch["video"]).repeat_interleave(k, dim=0)
            logits = net.forward_tokens(video, net.audio_tokens(flat)).view(n, k)
            pos, neg = logits[:, 0], logits[:, 1:]
            loss = 0.5 * (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                          + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))
            pos, neg = pos.detach(), neg.detach()
            acc = 0.5 * float((pos > 0).float().mean() + (neg <= 0).float().mean())
            return loss, {"acc": acc, "logit_pos": float(pos.mean()),
                          "logit_neg": float(neg.mean())}, pos
        y = batch["y"].float()
        logits = net(batch["faces"], batch["mel"])
        loss = F.binary_cross_entropy_with_logits(logits, y)
        z = logits.detach()
        return loss, {"acc": float(((z > 0) == y.bool()).float().mean())}, z

    def called_in_sync(self, score):
        return score > 0

    def score_metrics(self, score, y):
        return vocalist_f1(score, y)

    @classmethod
    def scorer(cls, net, device: str = "cpu", batch_size: int = 64):
        from avlib.sync.protocol import PairScorer

        return PairScorer(net, batch_size=4 * batch_size, device=device)


#: The recipe of each sync network, by its registry name.
RECIPES: dict[str, type[SyncRecipe]] = {
    cls.model_class.registry_name: cls for cls in (SyncNetRecipe, ExpertRecipe, VocaLiSTRecipe)
}


def recipe_class(model_or_name) -> type[SyncRecipe]:
    """The recipe class of a network, a network class or a registry name."""
    name = model_or_name if isinstance(model_or_name, str) else getattr(
        model_or_name, "registry_name", None)
    if name not in RECIPES:
        raise ValueError(f"no sync recipe for {model_or_name!r}; sync networks: {sorted(RECIPES)}")
    return RECIPES[name]


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
# Training as a product
# ---------------------------------------------------------------------------------------------
#: Training settings that do not change the weights (left out of the product key).
_NOT_IN_KEY = ("device", "log_every", "ckpt_every")


def train(recipe: SyncRecipe, cfg: TrainConfig, policy: str, artifacts_root, *,
          progress: bool = True) -> tuple[torch.nn.Module, History, Path]:
    """Train (or load) ``recipe``'s network; record it as the current one of its name.

    Returns ``(net in eval mode on the CPU, history, product folder)``. See
    :func:`avlib.train.train_recipe` for the key and the policies.
    """
    models, history, folder = train_recipe(recipe, cfg, policy, artifacts_root,
                                           producer=recipe.producer, extra_key=recipe.key(),
                                           progress=progress, not_in_key=_NOT_IN_KEY)
    record_current(artifacts_root, recipe.name, folder)
    return models["net"], history, folder


def find_trained(name: str, artifacts_root) -> tuple[torch.nn.Module, History, Path]:
    """The network last trained or loaded by :func:`train` under this artifacts root, by product
    name (``"sync_syncnet"``, ``"sync_wav2lip_expert"``, ``"sync_vocalist"``, ...):
    ``(network in eval mode on the CPU, history, folder)``."""
    producers = {f"sync_{k}": v.producer for k, v in RECIPES.items()}
    folder = find_current(artifacts_root, name, producer=producers.get(name))
    net, _ = load_checkpoint(folder / "net")
    history = History(**json.loads((folder / "history.json").read_text()))
    return net, history, folder
