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

from avlib.audio import mmab_mel
from avlib.models.mmab import MMAB, MMABConfig, mmab_loss
from avlib.models.syncvsr import SyncVSR, SyncVSRConfig, audio_token_loss
from avlib.train import PlateauSchedule, Recipe, TrainConfig
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


def _bind_words(recipe: Recipe, train: WordSet, val: WordSet, setup):
    """What both word recipes do with their data: one vocabulary for train and val, the network
    told the words it names and the crop size it reads, the nested training fraction."""
    if tuple(val.vocabulary) != tuple(train.vocabulary):
        raise ValueError("train and val must share one vocabulary")
    setup = dataclasses.replace(setup, model=dataclasses.replace(
        setup.model, n_classes=len(train.vocabulary), vocabulary=tuple(train.vocabulary),
        input_size=train.size))
    recipe.config = setup
    recipe.train_set, recipe.val_set = train, val
    recipe.index = fraction_subset(train.labels, setup.fraction, setup.subset_seed)
    return setup


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
        setup = _bind_words(self, train, val, setup)
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


# ============================================================================ MMAB (chapter 07)
#: MMAB's Normalize of gray VCA-GAN mouth crops in [0, 1] (spec §5.7).
MMAB_MEAN, MMAB_STD = 0.4136, 0.17
#: What an MMAB recipe trains: the paper's model (visual + recalled audio, with the real-audio
#: path and the memory losses), the visual-only baseline (no memory), or an audio-only reader.
MMAB_MODES = ("memory", "visual", "audio")


@dataclass(frozen=True)
class MMABSetup:
    """One MMAB training run (spec §5.8): SGD with Nesterov momentum, the learning rate halved
    when validation accuracy stops improving for ``patience`` validations."""

    name: str  #: product name suffix, e.g. "memory88"
    mode: str = "memory"  #: one of :data:`MMAB_MODES`
    fraction: float = 1.0
    model: MMABConfig = field(default_factory=MMABConfig)
    batch_size: int = 80
    momentum: float = 0.9
    #: "sgd" (official: Nesterov momentum) or "adamw" (for short CPU runs; see chapter 07)
    optimizer: str = "sgd"
    patience: int = 5  #: validations without a better accuracy before the rate halves
    time_mask: int = 0  #: longest time mask on the video, frames (MMAB: none)
    crop_scale: tuple[float, float] = (0.8, 1.0)
    freq_mask: int = 10  #: SpecAugment on the mel (after CMVN): one band span up to this
    mel_time_mask: int = 20  #: and one time span up to this many mel frames
    subset_seed: int = 0

    def __post_init__(self):
        if self.mode not in MMAB_MODES:
            raise ValueError(f"mode must be one of {MMAB_MODES}, got {self.mode!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", MMABConfig(**self.model))
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))


def word_mels(words: WordSet) -> torch.Tensor:
    """MMAB's mel (:func:`avlib.audio.mmab_mel`) of every clip: (N, 1, 80, 4 T) float32."""
    if words.audio is None:
        raise ValueError("these word clips were read without audio (load_words(with_audio=True))")
    return torch.from_numpy(np.stack([mmab_mel(a.astype(np.float32) / 32768.0) for a in words.audio])
                            ).unsqueeze(1).float()


def spec_augment(mel: torch.Tensor, generator: torch.Generator, freq: int, time: int) -> torch.Tensor:
    """One frequency and one time mask per clip (values set to 0, the CMVN mean)."""
    b, _, f, t = mel.shape
    out = mel.clone()
    for size, axis, n in ((freq, 2, f), (time, 3, t)):
        if size <= 0:
            continue
        width = torch.randint(0, size + 1, (b,), generator=generator)
        start = (torch.rand(b, generator=generator) * (n - width + 1).float()).long()
        pos = torch.arange(n)
        mask = (pos[None] >= start[:, None]) & (pos[None] < (start + width)[:, None])  # (B, n)
        shape = (b, 1, n, 1) if axis == 2 else (b, 1, 1, n)
        out = out.masked_fill(mask.view(shape), 0.0)
    return out


class MMABRecipe(Recipe):
    """Train an :class:`~avlib.models.MMAB` on word clips (VCA-GAN mouth crops + MMAB's mel).

    Args:
        train, val: :class:`~avlib.vsr.data.WordSet` splits read from the ``vcagan112`` stream
            (same vocabulary), with audio.
        setup: the run (:class:`MMABSetup`).
        data_id: what identifies the data in the product key.
    """

    outputs = ("net",)

    def __init__(self, train: WordSet, val: WordSet, setup: MMABSetup, *, data_id: str | None = None,
                 val_batch: int = 64):
        _bind_words(self, train, val, setup)
        self.mels = word_mels(train)
        self.val_mels = word_mels(val)
        self.key_extra = {"data": data_id, "n_train": int(len(self.index))}
        self.val_batch = val_batch

    @property
    def name(self) -> str:
        return f"mmab_{self.config.name}"

    def build(self) -> dict[str, torch.nn.Module]:
        return {"net": MMAB(**dataclasses.asdict(self.config.model)),
                "plateau": PlateauSchedule(self.config.patience)}

    def trainable(self, models) -> tuple[str, ...]:
        return ("net",)

    def optimizers(self, models, cfg: TrainConfig):
        if self.config.optimizer == "adamw":
            return {"net": adamw(models["net"], cfg)}
        return {"net": torch.optim.SGD(models["net"].parameters(), lr=cfg.lr, momentum=self.config.momentum,
                                       nesterov=True, weight_decay=cfg.weight_decay)}

    def batch(self, rng: np.random.Generator) -> dict:
        s = self.config
        pick = self.index[rng.integers(0, len(self.index), s.batch_size)]
        t = torch.from_numpy(pick)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        video = augment(self.train_set.video[t], train=True, generator=gen, scale=s.crop_scale,
                        time_mask=s.time_mask, mean=MMAB_MEAN, std=MMAB_STD)
        mel = spec_augment(self.mels[t], gen, s.freq_mask, s.mel_time_mask)
        return {"video": video, "mel": mel, "label": torch.from_numpy(self.train_set.labels[pick])}

    def training_step(self, models, batch, opt) -> dict[str, float]:
        net, mode = models["net"], self.config.mode
        out = net(batch["video"], batch["mel"], mode=mode)  # "memory": both paths + losses
        parts = mmab_loss(out, batch["label"])
        opt.step("net", parts["total"], lr_scale=models["plateau"].scale)
        acc = (out.logits.argmax(-1) == batch["label"]).float().mean()
        nan = float("nan")
        return {"loss": parts["total"].item(), "acc": acc.item(),
                **{k: parts[k].item() if k in parts else nan for k in ("ce_av", "add", "recon")},
                "lr_scale": models["plateau"].scale}

    def validate(self, models) -> dict[str, float]:
        mode = "audio" if self.config.mode == "audio" else ("visual" if self.config.mode == "visual"
                                                          else "memory")
        logits = mmab_predict(models["net"], self.val_set, self.val_mels, mode=mode,
                              batch=self.val_batch)
        acc = (logits.argmax(-1) == torch.from_numpy(self.val_set.labels)).float().mean().item()
        lowered = models["plateau"].update(acc)
        return {"val_acc": acc, "lr_halved": float(lowered)}


@torch.no_grad()
def mmab_predict(net: torch.nn.Module, words: WordSet, mels: torch.Tensor | None = None, *,
                 mode: str = "memory", flip_tta: bool = False, batch: int = 64) -> torch.Tensor:
    """Word logits (N, C) of an MMAB in ``mode`` ("memory": video alone, the paper's test path;
    "audiovisual": video + ``mels``; "visual"; "audio": ``mels`` alone). ``flip_tta`` sums the
    logits of each clip and its mirror, as upstream's test."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    out = []
    for i in range(0, len(words), batch):
        video = augment(words.video[i:i + batch], train=False, mean=MMAB_MEAN, std=MMAB_STD).to(device)
        mel = None if mels is None else mels[i:i + batch].to(device)
        out.append(net.classify(None if mode == "audio" else video, mel, mode=mode,
                                flip=flip_tta and mode != "audio").float().cpu())
    net.train(was_training)
    return torch.cat(out)


def train_mmab(recipe: MMABRecipe, cfg: TrainConfig, policy: str, artifacts_root, *,
               producer: str = "07_mmab", progress: bool = True):
    """Train (or load) an MMAB recipe: ``(models by name, history, product folder)``."""
    from avlib.train import train_recipe

    return train_recipe(recipe, cfg, policy, artifacts_root, producer=producer,
                        extra_key=recipe.key_extra, progress=progress,
                        not_in_key=("device", "log_every", "ckpt_every"))


__all__ += ["MMAB_MEAN", "MMAB_STD", "MMAB_MODES", "MMABSetup", "MMABRecipe", "word_mels",
            "spec_augment", "mmab_predict", "train_mmab"]
