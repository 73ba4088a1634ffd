"""Layer-wise distillation of a VocaLiST teacher into a smaller student (MTDVocaLiST).

MTDVocaLiST (Chen et al., ICASSP 2024; spec §3.7) keeps VocaLiST's topology with thinner prenets
and transformers (d_model 200 instead of 512) and trains it to imitate the teacher layer by
layer: "the cross-attention distribution and value-relation in the Transformer", CNN features and
per-layer embeddings, combined with uncertainty weighting across all layers (config: temperature
1, alpha 12). This module implements that recipe from those facts:

.. math::

    L = \\mathrm{BCE}(z_s, y) + \\alpha \\sum_m \\tfrac12 \\left(e^{-s_m} \\ell_m + s_m\\right)

* ``z_s`` the student's logit, ``y`` the in-sync label (the same BCE-with-logits task loss as
  VocaLiST itself, :mod:`avlib.sync.recipes`).
* ``\\ell_m`` one distillation term per matched site ``m`` (see :class:`MTDLoss`):

  - **features** (normalised MSE): the video and audio prenet tokens (B, T, D) and (B, L, D),
    and every layer's output of the three cross-modal units. Where the student is narrower than
    the teacher a learned linear map ``W`` (D_s -> D_t, one per site kind, shared by the layers
    of a unit as in TinyBERT) projects the student's features first; equal widths use no map.
    The MSE is divided by the variance of the teacher's features at that site, so that a term
    reads "1 = no better than predicting the teacher's mean" whatever the scale of the site
    (raw layer outputs carry the sqrt(d_model) embedding scale).
  - **relations** (KL(teacher || student), temperature ``tau``): per layer and unit, the
    cross-attention distribution ``softmax(q k^T / sqrt(d) / tau)`` (with the unit's mask, Quirk 2)
    and the value relation ``softmax(v v^T / sqrt(d) / tau)``. Relations are (Lq x Lk) or
    (Lk x Lk) matrices per head whatever the width, so they need no projection; both models are
    re-split into the same number of relation heads.
  - **prediction** (binary KL, temperature ``tau``, times ``tau^2``): the student's in-sync
    probability against the teacher's, classic soft-label distillation.

* ``s_m`` a learned log-variance per term: Kendall et al.'s uncertainty weighting. Its optimum is
  ``s_m = log l_m``, so every term ends up weighted by ``1 / l_m``: terms of very different
  scales (raw features vs KL divergences) contribute comparable gradients, and nobody tunes 60
  weights by hand. Because ``s_m`` can become negative, the total loss can go **below zero**;
  the task loss and the raw distillation sum are logged separately (``task``, ``distill``).

What is simplified with respect to the released code (which we do not copy): the exact set of
sites, the normalisation of the feature terms, the prediction term and the form of the
auto-weighting are ours (the facts say only what is distilled and that the weighting is
uncertainty-based); no warm-up / StepLR schedule (the book's trainer uses Adam with a constant
or cosine rate); layers are matched one to one when the
depths agree and uniformly (student layer ``i`` <- teacher layer ``ceil((i+1) Lt / Ls) - 1``)
otherwise. The log-variances get their own, larger learning rate (``weight_lr``), because at the
model's learning rate they would barely move in a short CPU run.

:class:`DistillRecipe` is the recipe (student, frozen teacher and the loss as named models);
:func:`distill` trains or loads it through :func:`avlib.train.train_recipe`, keyed by the
teacher's weights, the student's configuration, the distillation settings and the store.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avlib.artifacts import record_current
from avlib.data.store import ClipStore
from avlib.models import VocaLiST, VocaLiSTConfig, from_config
from avlib.models.vocalist import future_mask
from avlib.sync.recipes import VocaLiSTRecipe
from avlib.train import History, Recipe, TrainConfig, adam, train_recipe

__all__ = [
    "ALPHA",
    "TEMPERATURE",
    "UNITS",
    "RELATIONS",
    "PRODUCT_NAME",
    "layer_map",
    "relation_log_probs",
    "relation_kl",
    "feature_loss",
    "prediction_kl",
    "MTDLoss",
    "DistillRecipe",
    "weights_fingerprint",
    "distill",
]

ALPHA = 12.0  #: weight of the distillation sum (MTDVocaLiST's distillzoo.ini)
TEMPERATURE = 1.0  #: softmax temperature of the relation distributions (distillzoo.ini)
UNITS = ("av", "va", "mem")  #: the three cross-modal units of VocaLiST
RELATIONS = ("attn", "vv")  #: q-k cross-attention distribution and v-v value relation
_ALL_RELATIONS = ("attn", "qq", "kk", "vv")
PRODUCT_NAME = "mtd_vocalist"  #: artifact name of distilled students
WEIGHT_LR = 0.05  #: default Adam learning rate of the log-variances s_m
#: Modules whose source is part of a distilled student's product key.


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer matched to each student layer: identity for equal depths, else uniform
    (student layer i <- teacher layer ``ceil((i + 1) * Lt / Ls) - 1``, so the last layers meet)."""
    if student_layers < 1 or teacher_layers < 1:
        raise ValueError(f"layer counts must be >= 1, got {student_layers}, {teacher_layers}")
    return [math.ceil((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, H, L, d) per-head tensor -> (B, heads, L, H d / heads): merge, then re-split."""
    batch, h, length, d = x.shape
    merged = x.transpose(1, 2).reshape(batch, length, h * d)
    return merged.view(batch, length, heads, h * d // heads).transpose(1, 2)


def relation_log_probs(a: torch.Tensor, b: torch.Tensor, heads: int, temperature: float = 1.0,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """Log of ``softmax(a_r b_r^T / sqrt(d_r) / temperature)`` per relation head r.

    Args:
        a: (B, H, La, d) per-head vectors (e.g. queries); b: (B, H, Lb, d) (e.g. keys).
        heads: relation heads R; ``H * d`` must be divisible by R.
        temperature: softmax temperature (1 = the attention itself for q-k with R = H).
        mask: optional additive (La, Lb) mask (-inf = hidden), as the attention used.

    Returns:
        (B, R, La, Lb) log-probabilities (-inf where masked).
    """
    a_r, b_r = _split_heads(a, heads), _split_heads(b, heads)
    scores = a_r @ b_r.transpose(-1, -2) / math.sqrt(a_r.shape[-1])
    if mask is not None:
        scores = scores + mask
    return torch.log_softmax(scores.float() / temperature, dim=-1)


def relation_kl(teacher_logp: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the last axis, averaged over everything else (a scalar).

    Entries the teacher gives probability 0 (masked keys, -inf in both) contribute nothing.
    """
    p = teacher_logp.exp()
    diff = torch.where(p > 0, teacher_logp - student_logp, torch.zeros_like(p))
    return (p * diff).sum(-1).mean()


def feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between (projected) student and teacher features, divided by the variance of the
    teacher's features: 0 = identical, about 1 = no better than the teacher's mean."""
    return F.mse_loss(student, teacher) / (teacher.detach().var() + 1e-6)


def prediction_kl(teacher_logit: torch.Tensor, student_logit: torch.Tensor,
                  temperature: float = 1.0) -> torch.Tensor:
    """Binary KL(teacher || student) of the in-sync probabilities sigmoid(z / T), times T^2
    (Hinton's scaling keeps gradients comparable across temperatures); mean over the batch."""
    target = torch.sigmoid(teacher_logit.detach() / temperature)
    cross = F.binary_cross_entropy_with_logits(student_logit / temperature, target)
    entropy = F.binary_cross_entropy_with_logits(teacher_logit.detach() / temperature, target)
    return (cross - entropy) * temperature**2


def _check_pair(teacher: VocaLiST, student: VocaLiST) -> None:
    for name, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, VocaLiST):
            raise ValueError(f"the {name} must be a VocaLiST (or mtd_vocalist), got "
                             f"{type(model).__name__}")


def _n_layers(model: VocaLiST) -> int:
    return len(model.av_transformer.layers)


def _n_heads(model: VocaLiST) -> int:
    return model.av_transformer.layers[0].self_attn.n_heads


# ---------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------
class MTDLoss(nn.Module):
    """Task loss + alpha x uncertainty-weighted layer-wise distillation terms (module docstring).

    Args:
        teacher_dim, student_dim: d_model of the two networks (the prenet token widths too).
        teacher_layers, student_layers: layers per cross-modal unit.
        relation_heads: heads the relations are computed in; must divide both widths
            (default: the student's head count, which must then divide the teacher's width).
        alpha: weight of the distillation sum (12 in MTDVocaLiST).
        temperature: relation softmax temperature (1 in MTDVocaLiST).
        relations: which relations to distil, a subset of ``("attn", "qq", "kk", "vv")``
            (default: the paper's cross-attention distribution and value relation).
        features: distil the prenet tokens and per-layer outputs (normalised MSE) too.
        prediction: distil the output probability (binary KL) too.

    Parameters: ``projections`` (``vid``, ``aud``, ``av``, ``va``, ``mem``: Linear(D_s, D_t)
    without bias, only when the widths differ) and ``log_vars`` (one per term, zero at start,
    named in :attr:`term_names`).
    """

    def __init__(self, teacher_dim: int, student_dim: int, teacher_layers: int,
                 student_layers: int, relation_heads: int, alpha: float = ALPHA,
                 temperature: float = TEMPERATURE, relations: Sequence[str] = RELATIONS,
                 features: bool = True, prediction: bool = True):
        super().__init__()
        relations = tuple(relations)
        unknown = sorted(set(relations) - set(_ALL_RELATIONS))
        if unknown:
            raise ValueError(f"unknown relations {unknown}; choose from {_ALL_RELATIONS}")
        if not relations and not features and not prediction:
            raise ValueError("nothing to distil: pass features=True, prediction=True or at least "
                             "one relation")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        for width in (teacher_dim, student_dim):
            if relations and width % relation_heads:
                raise ValueError(
                    f"relation_heads={relation_heads} must divide both widths ({teacher_dim}, "
                    f"{student_dim}); pick a common divisor")
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.relations, self.features, self.prediction = relations, bool(features), bool(prediction)
        self.relation_heads = int(relation_heads)
        self.layer_map = layer_map(student_layers, teacher_layers)
        self.projections = nn.ModuleDict()
        if features and student_dim != teacher_dim:
            for site in ("vid", "aud", *UNITS):
                self.projections[site] = nn.Linear(student_dim, teacher_dim, bias=False)
        names = []
        if features:
            names += ["vid_prenet", "aud_prenet"]
            names += [f"{u}_layer{i}" for u in UNITS for i in range(student_layers)]
        names += [f"{u}_{r}{i}" for u in UNITS for r in relations for i in range(student_layers)]
        if prediction:
            names.append("prediction")
        self.term_names = names
        self.log_vars = nn.Parameter(torch.zeros(len(names)))

    @classmethod
    def for_models(cls, teacher: VocaLiST, student: VocaLiST, **kwargs) -> "MTDLoss":
        """The loss for this teacher/student pair (widths, depths and heads read off them)."""
        _check_pair(teacher, student)
        kwargs.setdefault("relation_heads", _n_heads(student))
        return cls(teacher.d_model, student.d_model, _n_layers(teacher), _n_layers(student),
                   **kwargs)

    def _project(self, site: str, x: torch.Tensor) -> torch.Tensor:
        return self.projections[site](x) if site in self.projections else x

    def terms(self, student_logit: torch.Tensor | None, teacher_logit: torch.Tensor | None,
              student_extras: Mapping, teacher_extras: Mapping) -> torch.Tensor:
        """The raw distillation terms ``l_m`` (len(term_names),), in :attr:`term_names` order.

        ``*_logit`` are the (B,) logits (needed with ``prediction``); ``*_extras`` the second
        outputs of ``VocaLiST.forward(..., return_features=True, return_qkv=True)``. The
        teacher's should be computed without gradients.
        """
        values = []
        if self.features:
            fs, ft = student_extras["features"], teacher_extras["features"]
            values.append(feature_loss(self._project("vid", fs["vid_prenet"]), ft["vid_prenet"]))
            values.append(feature_loss(self._project("aud", fs["aud_prenet"]), ft["aud_prenet"]))
            for unit in UNITS:
                for i, j in enumerate(self.layer_map):
                    values.append(feature_loss(self._project(unit, fs[f"{unit}_layers"][i]),
                                               ft[f"{unit}_layers"][j]))
        if self.relations:
            qs, qt = student_extras["qkv"], teacher_extras["qkv"]
            for unit in UNITS:
                for rel in self.relations:
                    for i, j in enumerate(self.layer_map):
                        values.append(self._relation(rel, qs[unit][i], qt[unit][j]))
        if self.prediction:
            if student_logit is None or teacher_logit is None:
                raise ValueError("the prediction term needs both logits")
            values.append(prediction_kl(teacher_logit, student_logit, self.temperature))
        return torch.stack(values)

    def _relation(self, rel: str, student: Mapping, teacher: Mapping) -> torch.Tensor:
        a, b = {"attn": ("q", "k"), "qq": ("q", "q"), "kk": ("k", "k"), "vv": ("v", "v")}[rel]
        mask = None
        if rel == "attn":
            # The same partial causal mask as the attention itself (Quirk 2): the V->A unit
            # hides late audio tokens from early video queries in both networks.
            mask = future_mask(teacher["q"].shape[2], teacher["k"].shape[2], teacher["q"].device)
        logp_t = relation_log_probs(teacher[a], teacher[b], self.relation_heads, self.temperature,
                                    mask)
        logp_s = relation_log_probs(student[a], student[b], self.relation_heads, self.temperature,
                                    mask)
        return relation_kl(logp_t, logp_s)

    def forward(self, student_logit: torch.Tensor, teacher_logit: torch.Tensor, y: torch.Tensor,
                student_extras: Mapping, teacher_extras: Mapping,
                weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """``(loss, metrics)``: loss = BCE(student_logit, y) + alpha * sum_m 0.5 (exp(-s_m) l_m
        + s_m). ``weight`` (B,), summing to 1, weighs the pairs of the BCE (None: the mean;
        shared-video batches weigh their genuine and false halves equally). Metrics: ``task``
        (the BCE), ``distill`` (sum of the raw l_m), ``weighted`` (the auto-weighted sum before
        alpha)."""
        if weight is None:
            task = F.binary_cross_entropy_with_logits(student_logit, y.float())
        else:
            task = F.binary_cross_entropy_with_logits(student_logit, y.float(), weight=weight,
                                                      reduction="sum")
        raw = self.terms(student_logit, teacher_logit, student_extras, teacher_extras)
        weighted = 0.5 * (torch.exp(-self.log_vars) * raw + self.log_vars).sum()
        loss = task + self.alpha * weighted
        return loss, {"task": float(task.detach()), "distill": float(raw.detach().sum()),
                      "weighted": float(weighted.detach())}


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def weights_fingerprint(model: nn.Module) -> str:
    """Short SHA-256 of a model's state dict (names, shapes and values): the teacher's identity
    in a distilled student's key."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()[:16]


class DistillRecipe(Recipe):
    """MTDVocaLiST: a student VocaLiST trained to imitate a frozen teacher, layer by layer.

    Models: ``"student"`` (trained, the product), ``"criterion"`` (the :class:`MTDLoss`: its
    projections and log-variances are trained with the student, not kept) and ``"teacher"``
    (frozen: eval mode, no gradients). One Adam optimizer, ``"student"``, holds two parameter
    groups: the student and the projections at the trainer's rate, the log-variances at
    ``weight_lr`` (at the model's rate they would barely move in a short CPU run).

    Batches are VocaLiST's (:meth:`~avlib.sync.pairs.SyncPairs.vocalist_batch`: lips with their
    own 0.2 s of audio, or audio from elsewhere in the clip), or with ``negatives`` > 1 the
    shared-video batches of :class:`~avlib.sync.recipes.VocaLiSTRecipe` (each video window with
    its true audio and ``negatives`` false ones, ``near_shift`` of them 2..5 frames away): the
    batches the teacher was trained on, so the student sees the pairs its teacher learnt from.
    Validation is VocaLiST's on the student (``val_loss`` = BCE, ``val_acc``, ``val_f1``,
    ``val_f1_official``), so its curves compare with a student trained from scratch.

    Args:
        teacher: a trained :class:`~avlib.models.VocaLiST` (its weights join the product key).
        store: the clip store.
        config: the student's :class:`~avlib.models.VocaLiSTConfig` (``named("mtd")`` is
            MTDVocaLiST).
        batch_size, negatives, near_shift, val_batches, seed, val_split, train_split: as
            :class:`~avlib.sync.recipes.VocaLiSTRecipe`.
        alpha, temperature, relations, features, prediction, relation_heads: see
            :class:`MTDLoss`.
        weight_lr: learning rate of the log-variances.
    """

    name = PRODUCT_NAME
    producer = "03_vocalist"
    outputs = ("student",)

    def __init__(self, teacher: VocaLiST, store: ClipStore, config: VocaLiSTConfig, *,
                 batch_size: int = 32, alpha: float = ALPHA, temperature: float = TEMPERATURE,
                 relations: Sequence[str] = RELATIONS, features: bool = True,
                 prediction: bool = True, relation_heads: int | None = None,
                 weight_lr: float = WEIGHT_LR, val_batches: int = 8, seed: int = 0,
                 train_split: str = "train", val_split: str = "val", negatives: int = 1,
                 near_shift: float = 0.0):
        if not isinstance(teacher, VocaLiST):
            raise ValueError(f"the teacher must be a VocaLiST, got {type(teacher).__name__}")
        self.teacher, self.config = teacher, config
        # the student's own task and validation are VocaLiST's
        self.task = VocaLiSTRecipe(store, config, batch_size=batch_size, val_batches=val_batches,
                                   seed=seed, val_split=val_split, train_split=train_split,
                                   negatives=negatives, near_shift=near_shift)
        self.loss_options = {"alpha": float(alpha), "temperature": float(temperature),
                             "relations": tuple(relations), "features": bool(features),
                             "prediction": bool(prediction)}
        if relation_heads:
            self.loss_options["relation_heads"] = int(relation_heads)
        self.weight_lr, self.seed = float(weight_lr), int(seed)
        _check_pair(teacher, from_config(config))

    def key(self) -> dict:
        return {**self.task.key(), "teacher": weights_fingerprint(self.teacher),
                "distill": {**self.loss_options, "relations": list(self.loss_options["relations"]),
                            "weight_lr": self.weight_lr}}

    def build(self) -> dict[str, nn.Module]:
        torch.manual_seed(self.seed)
        student = from_config(self.config)
        criterion = MTDLoss.for_models(self.teacher, student, **self.loss_options)
        return {"student": student, "criterion": criterion, "teacher": self.teacher}

    def trainable(self, models) -> tuple[str, ...]:
        return ("student", "criterion")

    def optimizers(self, models, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        crit = models["criterion"]
        rest = [*models["student"].parameters(),
                *(p for n, p in crit.named_parameters() if n != "log_vars")]
        return {"student": adam([{"params": rest},
                                 {"params": [crit.log_vars], "lr": self.weight_lr}], cfg)}

    def batch(self, rng: np.random.Generator) -> dict:
        return self.task.batch(rng)

    def training_step(self, models, batch, opt) -> dict[str, float]:
        student, teacher, criterion = models["student"], models["teacher"], models["criterion"]
        need = {"return_features": criterion.features, "return_qkv": bool(criterion.relations)}
        inputs, y, weight = _pairs_of(batch)
        with torch.no_grad():  # the teacher only shows what to imitate
            t_logit, t_extras = _run(teacher, *inputs, need)
        s_logit, s_extras = _run(student, *inputs, need)
        loss, metrics = criterion(s_logit, t_logit, y, s_extras, t_extras, weight)
        opt.step("student", loss)
        called = (s_logit.detach() > 0) == (y > 0.5)
        acc = called.float().mean() if weight is None else (called.float() * weight).sum()
        return {"loss": float(loss.detach()), **metrics, "acc": float(acc)}

    def validate(self, models) -> dict[str, float]:
        return self.task.validate({"net": models["student"]})


def _pairs_of(batch: dict):
    """``(inputs, y, weight)`` of a papers' batch (``(faces, mel)``, no weight) or of a
    shared-video batch (``(video, audio_sets)``: each video window's true audio first; the
    weights give the genuine and the false pairs half of the loss each, as
    :meth:`~avlib.sync.recipes.VocaLiSTRecipe.loss` does)."""
    if "audio_sets" not in batch:
        return (batch["faces"], batch["mel"]), batch["y"].float(), None
    audio_sets = batch["audio_sets"]
    n, k = audio_sets.shape[:2]
    y = torch.zeros(n, k)
    y[:, 0] = 1.0
    weight = torch.full((n, k), 0.5 / (n * (k - 1)))
    weight[:, 0] = 0.5 / n
    return (batch["video"], audio_sets), y.reshape(-1), weight.reshape(-1)


def _run(model: VocaLiST, faces, mel, need: dict):
    """``(logit, extras)``: features and q/k/v only when a term needs them. With a shared-video
    batch (``mel`` of shape (n, k, 1, 80, 16)) the video prenet runs once per video window and
    its tokens are paired with each of the k audio windows."""
    if mel.dim() == 5:
        n, k = mel.shape[:2]
        video = model.video_tokens(faces).repeat_interleave(k, dim=0)
        audio = model.audio_tokens(mel.reshape(n * k, *mel.shape[2:]))
        if not any(need.values()):
            return model.forward_tokens(video, audio), {}
        return model.forward_tokens(video, audio, **need)
    if not any(need.values()):
        return model(faces, mel), {}
    return model(faces, mel, **need)


def distill(
    teacher: VocaLiST,
    config: VocaLiSTConfig,
    store: ClipStore,
    train_cfg: TrainConfig,
    policy: str,
    artifacts_root,
    *,
    progress: bool = True,
    **options,
) -> tuple[VocaLiST, History, Path]:
    """The distilled student for this configuration: loaded, or trained by a
    :class:`DistillRecipe` (``options`` go to it) through :func:`avlib.train.train_recipe`.

    Returns ``(student in eval mode on the CPU, history, product folder)``; the folder is also
    recorded as the current ``mtd_vocalist`` product.
    """
    recipe = DistillRecipe(teacher, store, config, seed=train_cfg.seed, **options)
    models, history, folder = train_recipe(recipe, train_cfg, policy, artifacts_root,
                                           producer=recipe.producer, extra_key=recipe.key(),
                                           progress=progress,
                                           not_in_key=("device", "log_every", "ckpt_every"))
    record_current(artifacts_root, PRODUCT_NAME, folder)
    return models["student"], history, folder
