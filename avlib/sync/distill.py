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
uncertainty-based); no warm-up / StepLR schedule (the book's
:class:`~avlib.train.Trainer` uses constant-lr Adam); layers are matched one to one when the
depths agree and uniformly (student layer ``i`` <- teacher layer ``ceil((i+1) Lt / Ls) - 1``)
otherwise. The log-variances get their own, larger learning rate (``weight_lr``), because at the
model's learning rate they would barely move in a short CPU run.

:func:`distill` trains a student against a frozen teacher with the book's
:class:`~avlib.train.Trainer`; :func:`train_distilled` wraps it in
:func:`~avlib.train.train_or_load`, keyed by the teacher's weights, the student's configuration,
the distillation settings and the store.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avlib.models import VocaLiST, build_model
from avlib.models.vocalist import future_mask
from avlib.data.store import ClipStore
from avlib.sync.pairs import SyncPairs
from avlib.train import History, Trainer, TrainConfig, train_or_load

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
    "Distiller",
    "weights_fingerprint",
    "distill",
    "train_distilled",
]

ALPHA = 12.0  #: weight of the distillation sum (MTDVocaLiST's distillzoo.ini)
TEMPERATURE = 1.0  #: softmax temperature of the relation distributions (distillzoo.ini)
UNITS = ("av", "va", "mem")  #: the three cross-modal units of VocaLiST
RELATIONS = ("attn", "vv")  #: q-k cross-attention distribution and v-v value relation
_ALL_RELATIONS = ("attn", "qq", "kk", "vv")
PRODUCT_NAME = "mtd_vocalist"  #: artifact name of distilled students
WEIGHT_LR = 0.05  #: default Adam learning rate of the log-variances s_m
#: Modules whose source is part of a distilled student's product key.
DISTILL_CODE = ("avlib.sync.distill", "avlib.models.vocalist", "avlib.sync.pairs")


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
                student_extras: Mapping, teacher_extras: Mapping) -> tuple[torch.Tensor, dict[str, float]]:
        """``(loss, metrics)``: loss = BCE(student_logit, y) + alpha * sum_m 0.5 (exp(-s_m) l_m
        + s_m). Metrics: ``task`` (the BCE), ``distill`` (sum of the raw l_m), ``weighted``
        (the auto-weighted sum before alpha)."""
        task = F.binary_cross_entropy_with_logits(student_logit, y.float())
        raw = self.terms(student_logit, teacher_logit, student_extras, teacher_extras)
        weighted = 0.5 * (torch.exp(-self.log_vars) * raw + self.log_vars).sum()
        loss = task + self.alpha * weighted
        return loss, {"task": float(task.detach()), "distill": float(raw.detach().sum()),
                      "weighted": float(weighted.detach())}


class Distiller(nn.Module):
    """What distillation trains: the student and the loss's own parameters (projections and
    log-variances). The teacher is deliberately *not* a submodule: it is never optimised, never
    saved with the student, and stays in eval mode while :class:`~avlib.train.Trainer` switches
    this module between train and eval."""

    def __init__(self, student: VocaLiST, criterion: MTDLoss):
        super().__init__()
        self.student = student
        self.criterion = criterion

    def forward(self, faces: torch.Tensor, mel: torch.Tensor):
        """The student's logit (B,) and extras (features and q/k/v; ``{}`` when neither is
        distilled)."""
        need_features, need_qkv = self.criterion.features, bool(self.criterion.relations)
        if not (need_features or need_qkv):
            return self.student(faces, mel), {}
        return self.student(faces, mel, return_features=need_features, return_qkv=need_qkv)

    def loss(self, teacher: VocaLiST, batch: Mapping, device) -> tuple[torch.Tensor, dict]:
        """``(loss, metrics)`` on a :meth:`~avlib.sync.pairs.SyncPairs.vocalist_batch`."""
        faces, mel = batch["faces"].to(device), batch["mel"].to(device)
        y = batch["y"].to(device).float()
        with torch.no_grad():
            if self.criterion.features or self.criterion.relations:
                teacher_logit, teacher_extras = teacher(
                    faces, mel, return_features=self.criterion.features,
                    return_qkv=bool(self.criterion.relations))
            else:
                teacher_logit, teacher_extras = teacher(faces, mel), {}
        logit, student_extras = self(faces, mel)
        loss, metrics = self.criterion(logit, teacher_logit, y, student_extras, teacher_extras)
        metrics["acc"] = float(((logit.detach() > 0) == (y > 0.5)).float().mean())
        return loss, metrics

    def param_groups(self, weight_lr: float) -> list[dict]:
        """Adam parameter groups: student and projections at the trainer's lr, log-variances at
        ``weight_lr``."""
        others = [p for name, p in self.named_parameters() if name != "criterion.log_vars"]
        return [{"params": others}, {"params": [self.criterion.log_vars], "lr": float(weight_lr)}]


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


def distill(
    teacher: VocaLiST,
    student: VocaLiST,
    store: ClipStore,
    train_cfg: TrainConfig,
    workdir: str | Path,
    *,
    batch_size: int = 32,
    alpha: float = ALPHA,
    temperature: float = TEMPERATURE,
    relations: Sequence[str] = RELATIONS,
    features: bool = True,
    prediction: bool = True,
    relation_heads: int | None = None,
    weight_lr: float = WEIGHT_LR,
    val_batches: int = 8,
    train_split: str = "train",
    val_split: str = "val",
    progress: bool = True,
) -> History:
    """Train ``student`` to imitate ``teacher`` (frozen, eval mode) on the store's sync pairs.

    Batches are VocaLiST's (:meth:`~avlib.sync.pairs.SyncPairs.vocalist_batch`: positive = lips with
    their own 0.2 s of audio, negative = audio from elsewhere in the clip). The student and the
    loss's projections are optimised with Adam at ``train_cfg.lr``, the log-variances at
    ``weight_lr``; the teacher only runs forward, under ``torch.no_grad``.

    Args:
        teacher: a trained :class:`~avlib.models.VocaLiST`.
        student: the network to train (e.g. :func:`~avlib.models.mtd_vocalist` or a thin
            VocaLiST); trained in place.
        store: the clip store.
        train_cfg: optimisation settings (steps, lr, grad_clip, eval_every, seed, device...).
        workdir: the :class:`~avlib.train.Trainer` folder (resumable checkpoints).
        batch_size: pairs per step.
        alpha, temperature, relations, features, prediction, relation_heads: see
            :class:`MTDLoss`.
        weight_lr: learning rate of the log-variances.
        val_batches: fixed validation batches of the ``val_split`` per evaluation; the metrics
            are VocaLiST's (:func:`avlib.sync.recipes.make_evaluator`: ``val_loss`` = BCE,
            ``val_acc``, ``val_f1``, ``val_f1_official``), so curves compare with a student
            trained from scratch.
        train_split, val_split: store splits.
        progress: show the progress bar.

    Returns:
        The :class:`~avlib.train.History`: per logged step ``loss`` (total, may be < 0),
        ``task``, ``distill``, ``weighted``, ``acc``; per evaluation the ``val_*`` metrics.
    """
    from avlib.sync.recipes import make_evaluator

    _check_pair(teacher, student)
    if int(batch_size) < 2:
        raise ValueError(f"batch_size must be >= 2 (pairs of both labels), got {batch_size!r}")
    device = train_cfg.device
    teacher = teacher.to(device).eval()
    torch.manual_seed(train_cfg.seed)  # projections start from a seeded state
    criterion = MTDLoss.for_models(teacher, student, alpha=alpha, temperature=temperature,
                                   relations=relations, features=features, prediction=prediction,
                                   **({"relation_heads": relation_heads} if relation_heads else {}))
    distiller = Distiller(student, criterion)
    try:
        pairs = SyncPairs(store, split=train_split)
    except ValueError as err:
        raise ValueError(f"cannot distil on split {train_split!r}: {err}") from None
    evaluate_student = make_evaluator("vocalist", store, batch_size, val_batches, train_cfg.seed,
                                      val_split, {}, device)

    def sample(rng: np.random.Generator) -> dict:
        return pairs.vocalist_batch(rng, batch_size)

    def step(model: Distiller, batch: dict):
        return model.loss(teacher, batch, device)

    def evaluate(model: Distiller) -> dict:
        return evaluate_student(model.student)

    trainer = Trainer(distiller, sample, step, train_cfg, workdir, evaluate=evaluate,
                      params=distiller.to(device).param_groups(weight_lr))
    return trainer.fit(progress=progress)


def train_distilled(
    teacher: VocaLiST,
    student_kwargs: Mapping,
    store: ClipStore,
    train_cfg: TrainConfig,
    batch_size: int,
    policy: str,
    artifacts_root,
    *,
    alpha: float = ALPHA,
    temperature: float = TEMPERATURE,
    relations: Sequence[str] = RELATIONS,
    features: bool = True,
    prediction: bool = True,
    relation_heads: int | None = None,
    weight_lr: float = WEIGHT_LR,
    val_batches: int = 8,
    train_split: str = "train",
    val_split: str = "val",
    progress: bool = True,
) -> tuple[VocaLiST, History, Path]:
    """The distilled student for this configuration: loaded, or trained by :func:`distill`.

    Args:
        teacher: the trained teacher (its weights are part of the key, through
            :func:`weights_fingerprint`).
        student_kwargs: :class:`~avlib.models.VocaLiST` constructor arguments of the student
            (``{"d_model": 200, "prenet_widths": (16, 32, 64, 128, 200)}`` is MTDVocaLiST).
        store, train_cfg, batch_size: as :func:`distill`; ``train_cfg.seed`` also seeds the
            student's initial weights.
        policy: ``"load"``, ``"train"`` or ``"auto"``.
        artifacts_root: the chapter's artifacts root; the product is ``mtd_vocalist/<key>/``.
        the rest: as :func:`distill`.

    Returns:
        ``(student in eval mode on the CPU, history, product folder)``.
    """
    from avlib.sync.recipes import store_fingerprint

    if not isinstance(teacher, VocaLiST):
        raise ValueError(f"the teacher must be a VocaLiST, got {type(teacher).__name__}")
    probe = build_model({"name": VocaLiST.registry_name, "kwargs": dict(student_kwargs)})
    train_fields = dataclasses.asdict(train_cfg)
    for name in ("device", "log_every", "ckpt_every"):  # they do not change the weights
        train_fields.pop(name, None)
    config = {
        "kind": "mtd_vocalist",
        "teacher": weights_fingerprint(teacher),
        "student": probe.config,
        "train": train_fields,
        "batch_size": int(batch_size),
        "distill": {"alpha": float(alpha), "temperature": float(temperature),
                    "relations": list(relations), "features": bool(features),
                    "prediction": bool(prediction),
                    "relation_heads": relation_heads, "weight_lr": float(weight_lr)},
        "val": {"split": val_split, "batches": int(val_batches)},
        "train_split": train_split,
        "store": store_fingerprint(store),
    }
    del probe

    def build() -> VocaLiST:
        torch.manual_seed(train_cfg.seed)
        return build_model({"name": VocaLiST.registry_name, "kwargs": dict(student_kwargs)})

    def fit(student: VocaLiST, workdir: Path) -> History:
        return distill(teacher, student, store, train_cfg, workdir, batch_size=batch_size,
                       alpha=alpha, temperature=temperature, relations=relations,
                       features=features, prediction=prediction, relation_heads=relation_heads,
                       weight_lr=weight_lr,
                       val_batches=val_batches, train_split=train_split, val_split=val_split,
                       progress=progress)

    # The loss, the network and the pair sampler determine the weights: editing them retrains.
    return train_or_load(PRODUCT_NAME, config, build, fit, policy, artifacts_root,
                         producer="03_vocalist", code=DISTILL_CODE)
