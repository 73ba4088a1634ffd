"""SyncVSR training: word classification plus audio-token prediction, as one recipe.

The loss of a batch (spec §4.1-4.2) is

    L = CE(word logits, word) + lambda * CE(token logits of every frame, its audio tokens)

with lambda = 10 in the paper (``lam=0`` is the plain lip reader; its audio head gets no
gradient). Optimiser: AdamW (lr 1e-4, betas (0.9, 0.999), eps 1e-6, weight decay 0.01 on
matrices only, none on 1-D parameters), a linear warm-up then cosine decay
(:attr:`avlib.train.TrainConfig.warmup_steps`), gradient clipping at 1.0, optional sequential
CutMix (:func:`avlib.vsr.data.cutmix`).

:class:`SyncVSRSetup` holds what differs between the chapter's runs (lambda, token source,
training fraction, model size, input size); :class:`SyncVSRRecipe` is the recipe the one trainer
runs (:func:`avlib.train.train_recipe`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from avlib.models.syncvsr import SyncVSR, SyncVSRConfig, audio_token_loss
from avlib.train import Recipe, TrainConfig
from avlib.vsr.data import WordSet, augment, cutmix, fraction_subset

__all__ = ["SyncVSRSetup", "SyncVSRRecipe", "TOKEN_SOURCES", "predict", "adamw"]

#: Where the audio-token targets come from: the book's k-means tokenizer, the corpus's exact
#: phonemes (a labelled upper bound no real dataset has), SyncVSR's released vq-wav2vec tokens,
#: or none (lambda must be 0).
TOKEN_SOURCES = ("learned", "phonemes", "released", "none")


@dataclass(frozen=True)
class SyncVSRSetup:
    """One training run of the chapter."""

    name: str  #: product name suffix, e.g. "lam10_f25"
    lam: float = 10.0  #: weight of the audio-token loss (paper: 10)
    tokens: str = "learned"  #: one of :data:`TOKEN_SOURCES`
    fraction: float = 1.0  #: share of the training clips (class-stratified, nested)
    model: SyncVSRConfig = field(default_factory=SyncVSRConfig)
    batch_size: int = 96
    cutmix: float = 0.0  #: probability that a batch is CutMix-ed (upstream: always on)
    time_mask: int = 15  #: longest time mask, frames
    crop_scale: tuple[float, float] = (0.6, 1.0)
    subset_seed: int = 0

    def __post_init__(self):
        if self.tokens not in TOKEN_SOURCES:
            raise ValueError(f"tokens must be one of {TOKEN_SOURCES}, got {self.tokens!r}")
        if self.lam < 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")
        if self.lam > 0 and self.tokens == "none":
            raise ValueError("lam > 0 needs audio tokens: choose tokens='learned', 'phonemes' or 'released'")
        if not 0.0 <= self.cutmix <= 1.0:
            raise ValueError(f"cutmix is a probability, got {self.cutmix}")
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", SyncVSRConfig(**self.model))
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))


def adamw(model: torch.nn.Module, cfg: TrainConfig, eps: float = 1e-6) -> torch.optim.AdamW:
    """SyncVSR's AdamW: weight decay on matrices and kernels only (none on biases, norms,
    the cls token's... 1-D parameters)."""
    decay, plain = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else plain).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": plain, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=tuple(cfg.betas), eps=eps)


class SyncVSRRecipe(Recipe):
    """Train a :class:`~avlib.models.SyncVSR` on word clips.

    Args:
        train, val: :class:`~avlib.vsr.data.WordSet` splits (same vocabulary).
        setup: the run (:class:`SyncVSRSetup`).
        tokens: (N_train, >= 4 T, groups) int audio tokens of ``train`` (required when
            ``setup.lam > 0``).
        tokens_id: what identifies the tokens in the product key (e.g. the tokenizer's key).
        data_id: what identifies the data (e.g. the store's folder name).
    """

    outputs = ("net",)

    def __init__(self, train: WordSet, val: WordSet, setup: SyncVSRSetup, tokens: np.ndarray | None = None,
                 *, tokens_id: str | None = None, data_id: str | None = None, val_batch: int = 64):
        if setup.lam > 0 and tokens is None:
            raise ValueError(f"setup {setup.name!r} has lam={setup.lam}: pass the training clips' tokens")
        if tokens is not None and len(tokens) != len(train):
            raise ValueError(f"tokens has {len(tokens)} clips but train has {len(train)}")
        if tuple(val.vocabulary) != tuple(train.vocabulary):
            raise ValueError("train and val must share one vocabulary")
        # The network records what it reads and names: the classes' words and the crop size.
        setup = dataclasses.replace(setup, model=dataclasses.replace(
            setup.model, n_classes=len(train.vocabulary), vocabulary=tuple(train.vocabulary),
            input_size=train.size))
        self.config = setup
        self.train_set, self.val_set = train, val
        self.index = fraction_subset(train.labels, setup.fraction, setup.subset_seed)
        self.tokens = None if tokens is None else torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        self.key_extra = {"tokens": tokens_id if setup.lam > 0 else None, "data": data_id,
                          "n_train": int(len(self.index))}
        self.val_batch = val_batch

    @property
    def name(self) -> str:
        return f"vsr_{self.config.name}"

    def build(self) -> dict[str, torch.nn.Module]:
        return {"net": SyncVSR(**dataclasses.asdict(self.config.model))}

    def optimizers(self, models, cfg: TrainConfig):
        return {"net": adamw(models["net"], cfg)}

    def batch(self, rng: np.random.Generator) -> dict:
        s = self.config
        pick = self.index[rng.integers(0, len(self.index), s.batch_size)]
        t = torch.from_numpy(pick)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        video = augment(self.train_set.video[t], train=True, generator=gen, scale=s.crop_scale,
                        time_mask=s.time_mask)
        boundary = self.train_set.boundary[t]
        target = F.one_hot(torch.from_numpy(self.train_set.labels[pick]), len(self.train_set.vocabulary)).float()
        tokens = self.tokens[t] if self.tokens is not None else None
        if s.cutmix and torch.rand((), generator=gen) < s.cutmix:
            video, boundary, target, tokens = cutmix(video, boundary, target, tokens, generator=gen)
        out = {"video": video, "boundary": boundary, "target": target}
        if tokens is not None:
            out["tokens"] = tokens
        return out

    def training_step(self, models, batch, opt) -> dict[str, float]:
        words, token_logits = models["net"](batch["video"], batch["boundary"])
        word_loss = torch.sum(-batch["target"] * F.log_softmax(words.float(), dim=-1), dim=-1).mean()
        loss = word_loss
        token_loss = torch.tensor(float("nan"))
        if "tokens" in batch:
            token_loss = audio_token_loss(token_logits, batch["tokens"])
            if self.config.lam > 0:
                loss = word_loss + self.config.lam * token_loss
        opt.step("net", loss)
        acc = (words.argmax(-1) == batch["target"].argmax(-1)).float().mean()
        return {"loss": loss.item(), "word_loss": word_loss.item(), "token_loss": token_loss.item(),
                "acc": acc.item()}

    def validate(self, models) -> dict[str, float]:
        logits = predict(models["net"], self.val_set, batch=self.val_batch)
        labels = torch.from_numpy(self.val_set.labels)
        return {"val_acc": (logits.argmax(-1) == labels).float().mean().item(),
                "val_loss": F.cross_entropy(logits, labels).item()}


@torch.no_grad()
def predict(net: torch.nn.Module, words: WordSet, *, batch: int = 64, flip_tta: bool = False) -> torch.Tensor:
    """Word logits (N, C) of every clip of ``words`` (evaluation transform; with ``flip_tta``
    the mean of the clip's and its mirror's logits). Runs on the net's device and dtype."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    out = []
    for i in range(0, len(words), batch):
        video = augment(words.video[i:i + batch], train=False).to(device)
        boundary = words.boundary[i:i + batch].to(device)
        logits = net(video, boundary)[0].float()
        if flip_tta:
            logits = (logits + net(video.flip(-1), boundary)[0].float()) / 2
        out.append(logits.cpu())
    net.train(was_training)
    return torch.cat(out)


def train(recipe: SyncVSRRecipe, cfg: TrainConfig, policy: str, artifacts_root, *,
          producer: str = "06_syncvsr", progress: bool = True):
    """Train (or load) a SyncVSR recipe: ``(models by name, history, product folder)``; the
    device and logging intervals stay out of the product key."""
    from avlib.train import train_recipe

    return train_recipe(recipe, cfg, policy, artifacts_root, producer=producer,
                        extra_key=recipe.key_extra, progress=progress,
                        not_in_key=("device", "log_every", "ckpt_every"))


__all__ += ["train"]
