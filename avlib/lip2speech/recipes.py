"""Training recipes of lip-to-speech: VCA-GAN, its ablation without visual context attention,
and a plain L1 regression baseline, all trained by :mod:`avlib.train`'s one trainer.

===================  ==========================================================================
setup (``SETUPS``)   what
===================  ==========================================================================
``vcagan``           the paper's model: the generator with visual context attention, three
                     multi-scale discriminators (unconditional and conditional heads), R1 and
                     the sync discriminator (spec §5.4)
``no_attention``     the paper's ablation: the same GAN without ``att1``/``att2``
``l1``               the baseline: the VCA-GAN synthesizer trained on the reconstruction loss
                     alone (no discriminator, no sync term)
===================  ==========================================================================

**The discriminator step** (``train.py``): for each scale ``k`` (20, 40, 80 mel rows; the real
mel is bilinearly resized to the two coarser scales) the non-saturating GAN loss
``softplus(-D(real)) + softplus(D(fake))`` of the unconditional and the conditional (``sent``)
heads, divided by 3; the **R1 penalty** ``mean ||d D_uncond(real) / d real||^2``, weight ``r1 /
3`` per scale; and the **sync loss**: a symmetric InfoNCE over the clip's frames between the
local visual features ``phon`` and ``s_dis``'s audio features of the real mel (cosine
similarities divided by the temperature, the diagonal positive).

**The generator step**: the GAN terms ``softplus(-D(fake))`` of both heads over the three
scales (/3); the **sync term, upstream's quirk**: ``5 - |cos(phon, s_dis(fake))|``, averaged over
frames. The absolute value rewards a generated frame whose audio features are *anti*-correlated
with its lips as much as a correlated one, and the 5 shifts the logged value only; kept because
it is what the official weights were trained with. Then ``50 x`` the reconstruction: the mean
over the three scales of the L1 between **de-normalised** log-mels (``vcagan_denormalise``: the
natural-log scale, 5.76 times the normalised one) plus the L1 between the postnet's linear
spectrogram and the true raw magnitude.

What each term trains, as upstream: the discriminators see generated mels, ``sent`` and ``phon``
detached; in the generator step the conditional heads read ``sent`` detached and the sync term
``phon`` detached, so neither moves the visual front. Upstream's visual front does learn from the
sync InfoNCE: its gradient flows into ``v_front`` in the discriminator step. Here the trainer
zeroes each optimizer's gradients before its own backward pass, so the generator step adds the
same InfoNCE on ``phon`` against the discriminator step's audio features of the *real* mel
(detached): the same gradient, routed through the generator's optimizer.

Adam with amsgrad for both; upstream: lr 1e-4, weight decay 1e-5, batch 88 windows of 40 frames.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avlib.audio import vcagan_denormalise
from avlib.lip2speech.data import MEL_PER_FRAME, SpeechClips
from avlib.models.vcagan import VCAGAN, VCAGANConfig, VCAGANCritics
from avlib.train import History, Recipe, TrainConfig, train_recipe

__all__ = ["VCAGANSetup", "SETUPS", "VCAGANRecipe", "sync_nce", "sync_term", "recon_loss",
           "synthesize", "train"]

_VAL_SEED = 10_007


@dataclass(frozen=True)
class VCAGANSetup:
    """What a lip-to-speech training run is (the recipe's part of the product key).

    Attributes:
        name: the product name's suffix (``vcagan``, ``no_attention``, ``l1``).
        model: :class:`VCAGANConfig` fields of the synthesizer (width, attention, ...).
        gan: train with the discriminators and the sync terms (False: the L1 baseline).
        recon_wt: weight of the reconstruction (50 upstream).
        r1: weight of the R1 penalty summed over the three scales (1 upstream: 1/3 each).
        sync_wt: weight of the generator's sync term (1 upstream).
        temperature: the sync InfoNCE's temperature (``--temp`` 1.0 upstream).
        betas: Adam's betas; amsgrad is on, as upstream.
    """

    name: str = "vcagan"
    model: dict = field(default_factory=dict)
    gan: bool = True
    recon_wt: float = 50.0
    r1: float = 1.0
    sync_wt: float = 1.0
    temperature: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self):
        VCAGANConfig(**self.model)  # fails early on unknown or bad fields
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.recon_wt < 0 or self.r1 < 0 or self.sync_wt < 0:
            raise ValueError("recon_wt, r1 and sync_wt must be >= 0")

    @property
    def config(self) -> VCAGANConfig:
        return VCAGANConfig(**self.model)


#: The chapter's three setups at official sizes (``with_model`` sets CPU sizes).
SETUPS = {
    "vcagan": VCAGANSetup("vcagan"),
    "no_attention": VCAGANSetup("no_attention", model={"attention": False}),
    "l1": VCAGANSetup("l1", gan=False),
}


def with_model(setup: VCAGANSetup, **fields) -> VCAGANSetup:
    """``setup`` with synthesizer fields changed (e.g. ``width=0.125, input_size=32``)."""
    return replace(setup, model={**setup.model, **fields})


def _cos_matrix(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """(B, T, D) x (B, T, D) -> (B, T, T) cosine similarities of every visual and audio frame."""
    return torch.einsum("btd,bsd->bts", F.normalize(v.float(), dim=-1),
                        F.normalize(a.float(), dim=-1))


def sync_nce(phon: torch.Tensor, audio: torch.Tensor, lengths: torch.Tensor,
             temperature: float = 1.0) -> torch.Tensor:
    """The sync discriminator's symmetric InfoNCE: frame ``t`` of the lips against every audio
    frame of the clip (and the reverse), the same frame the positive; frames beyond a clip's
    length are neither anchors nor candidates."""
    sim = _cos_matrix(phon, audio) / temperature
    b, t, _ = sim.shape
    valid = torch.arange(t, device=sim.device)[None] < lengths.to(sim.device)[:, None]
    pair = valid[:, :, None] & valid[:, None, :]
    sim = sim.masked_fill(~pair, float("-inf"))
    target = torch.arange(t, device=sim.device).expand(b, t)
    losses = []
    for logits in (sim, sim.transpose(1, 2)):
        ce = F.cross_entropy(logits[valid], target[valid])
        losses.append(ce)
    return 0.5 * (losses[0] + losses[1])


def sync_term(phon: torch.Tensor, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The generator's sync term as upstream computes it: ``5 - |cos|`` of each frame's lips and
    generated audio, averaged over valid frames (the quirk: |cos| counts anti-correlation too)."""
    cos = (F.normalize(phon.float(), dim=-1) * F.normalize(audio.float(), dim=-1)).sum(-1)
    valid = torch.arange(cos.shape[1], device=cos.device)[None] < lengths.to(cos.device)[:, None]
    return 5.0 - cos.abs()[valid].mean()


def recon_loss(mels, linear, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Upstream's reconstruction: the mean over the three scales of L1 on de-normalised log-mels
    (targets bilinearly resized to 20 and 40 rows), plus L1 of the linear spectrogram."""
    real = VCAGANCritics.pyramid(batch["mel"])
    per_scale = [F.l1_loss(vcagan_denormalise(m.float()), vcagan_denormalise(r))
                 for m, r in zip(mels, real)]
    loss = sum(per_scale) / len(per_scale)
    terms = {f"mel{k + 1}": float(v.detach()) for k, v in enumerate(per_scale)}
    if linear is not None:
        lin = F.l1_loss(linear.float(), batch["linear"])
        loss = loss + lin
        terms["linear"] = float(lin.detach())
    return loss, terms


class VCAGANRecipe(Recipe):
    """A lip-to-speech synthesizer trained on in-memory clips (:mod:`avlib.lip2speech.data`).

    Args:
        train: the training clips; ``val``: the validation clips (whole clips).
        setup: a :class:`VCAGANSetup`.
        data_id: what identifies the clips in the product key (e.g. the store's fingerprint).
        batch_size: windows per step (upstream 88 over 4 GPUs); window: frames per window.
        val_clips: validation clips per evaluation (the first ones of ``val``).
        seed: initial weights and the validation noise.

    Models: ``"G"`` (:class:`VCAGAN`, trained, the product) and, with a GAN, ``"D"``
    (:class:`VCAGANCritics`, trained and saved). Optimizers ``"G"`` and ``"D"``.
    """

    def __init__(self, train: SpeechClips, val: SpeechClips, setup: VCAGANSetup, *,
                 data_id: str, batch_size: int = 8, window: int = 40, val_clips: int = 8,
                 seed: int = 0):
        if int(batch_size) < 1 or int(val_clips) < 1 or int(window) < 20:
            raise ValueError("batch_size and val_clips must be >= 1, window >= 20 frames "
                             "(the coarsest discriminator needs 20)")
        if not len(train) or not len(val):
            raise ValueError(f"need training and validation clips, got {len(train)} and "
                             f"{len(val)}")
        self.train_clips, self.val_clips = train, val
        self.config, self.data_id = setup, data_id
        self.batch_size, self.window = int(batch_size), int(window)
        self.n_val, self.seed = min(int(val_clips), len(val)), int(seed)

    @property
    def name(self) -> str:
        return f"lip2speech_{self.config.name}"

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("G", "D") if self.config.gan else ("G",)

    def key(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "window": self.window, "seed": self.seed,
                "val_clips": self.n_val, "data": self.data_id}

    def build(self) -> dict[str, torch.nn.Module]:
        torch.manual_seed(self.seed)
        cfg = self.config.config
        models = {"G": VCAGAN(**asdict(cfg))}
        if self.config.gan:
            models["D"] = VCAGANCritics(width=cfg.width)
        return models

    def optimizers(self, models, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        def opt(m):
            return torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=self.config.betas,
                                    weight_decay=cfg.weight_decay, amsgrad=True)
        return {name: opt(models[name]) for name in self.outputs}

    def batch(self, rng: np.random.Generator) -> dict:
        out = self.train_clips.batch(rng, self.batch_size, self.window)
        out.pop("clip")
        return out

    def training_step(self, models, batch: dict, opt) -> dict[str, float]:
        """One discriminator update (with a GAN), then one generator update."""
        g, s = models["G"], self.config
        out = g(batch["video"], batch["lengths"])
        metrics: dict[str, float] = {}
        real_audio = None
        if s.gan:
            d_metrics, real_audio = self._d_step(models["D"], out, batch, opt)
            metrics.update(d_metrics)
        recon, terms = recon_loss(out.mels, out.linear, batch)
        loss = s.recon_wt * recon
        metrics.update(recon=float(recon.detach()), **terms)
        if s.gan:
            d = models["D"]
            d.requires_grad_(False)  # the critics pass gradients on, they do not collect any
            try:
                fake = d(out.mels, out.sent.detach())
                adv = sum(F.softplus(-u).mean() + F.softplus(-c).mean() for u, c in fake) / 3
                sync = sync_term(out.phon.detach(), d.s_dis(out.mels[-1]), batch["lengths"])
            finally:
                d.requires_grad_(True)
            nce = sync_nce(out.phon, real_audio, batch["lengths"], s.temperature)
            loss = loss + adv + s.sync_wt * sync + nce
            metrics.update(g_adv=float(adv.detach()), g_sync=float(sync.detach()),
                           g_nce=float(nce.detach()))
        opt.step("G", loss)
        metrics["loss"] = float(loss.detach())
        return metrics

    def _d_step(self, d: VCAGANCritics, out, batch: dict, opt) -> dict[str, float]:
        s = self.config
        real = [m.detach().requires_grad_(True) for m in d.pyramid(batch["mel"])]
        sent = out.sent.detach()
        on_real = d(real, sent)
        on_fake = d([m.detach() for m in out.mels], sent)
        loss_real = sum(F.softplus(-u).mean() + F.softplus(-c).mean() for u, c in on_real) / 3
        loss_fake = sum(F.softplus(u).mean() + F.softplus(c).mean() for u, c in on_fake) / 3
        r1 = real[0].new_zeros(())
        if s.r1:
            grads = torch.autograd.grad(sum(u.sum() for u, _ in on_real), real,
                                        create_graph=True)
            r1 = sum(gr.pow(2).flatten(1).sum(1).mean() for gr in grads) / 3
        audio = d.s_dis(batch["mel"])
        nce = sync_nce(out.phon.detach(), audio, batch["lengths"], s.temperature)
        opt.step("D", loss_real + loss_fake + s.r1 * r1 + nce)
        return ({"d_real": float(loss_real.detach()), "d_fake": float(loss_fake.detach()),
                 "r1": float(r1.detach()), "d_nce": float(nce.detach())}, audio.detach())

    def validate(self, models) -> dict[str, float]:
        """``val_recon`` (the reconstruction loss on whole validation clips, fixed noise; over
        padded frames too when the clips differ in length) and ``val_mel_l1`` (L1 of the
        80-band mel on the normalised scale, valid frames only)."""
        g = models["G"]
        device = next(g.parameters()).device
        batch = {k: v.to(device) for k, v in self.val_clips.clips(range(self.n_val)).items()}
        gen = torch.Generator(device=device).manual_seed(self.seed + _VAL_SEED)
        out = g(batch["video"], batch["lengths"], generator=gen)
        recon, _ = recon_loss(out.mels, out.linear, batch)
        n = batch["lengths"] * MEL_PER_FRAME
        mask = (torch.arange(batch["mel"].shape[-1], device=device)[None] < n[:, None])
        err = (out.mels[-1].float() - batch["mel"]).abs().mean(dim=(1, 2))
        return {"val_recon": float(recon), "val_mel_l1": float(err[mask].mean())}


@torch.no_grad()
def synthesize(net: VCAGAN, clips: SpeechClips, index=None, *, seed: int = 0,
               batch_size: int = 8, flip: bool = False) -> list[dict[str, np.ndarray]]:
    """Whole clips through the synthesizer in eval mode: per clip ``mel`` (80, 4T) and
    ``linear`` (321, 4T) (clamped at 0; None without a postnet), cut to the clip's length.
    ``flip``: average the 80-band mels with those of the mirrored video (upstream's test-time
    augmentation; the postnet then reads the average)."""
    was_training = net.training
    net.eval()
    index = list(range(len(clips))) if index is None else list(index)
    device = next(net.parameters()).device
    gen = torch.Generator(device=device).manual_seed(int(seed))
    out = []
    for a in range(0, len(index), batch_size):
        part = index[a:a + batch_size]
        batch = clips.clips(part)
        video, lengths = batch["video"].to(device), batch["lengths"].to(device)
        res = net(video, lengths, generator=gen)
        mel = res.mels[-1]
        if flip:
            mel = 0.5 * (mel + net(video.flip(-1), lengths, generator=gen).mels[-1])
        linear = net.post(mel) if net.post is not None else None
        for k, n in enumerate(lengths.tolist()):
            f = n * MEL_PER_FRAME
            out.append({"mel": mel[k, 0, :, :f].float().cpu().numpy(),
                        "linear": None if linear is None else
                        linear[k, 0, :, :f].float().clamp_min(0).cpu().numpy()})
    net.train(was_training)
    return out


def train(recipe: VCAGANRecipe, cfg: TrainConfig, policy: str, artifacts_root, *,
          producer: str = "05_lip2speech", progress: bool = True
          ) -> tuple[dict[str, torch.nn.Module], History, Any]:
    """Train (or load) a lip-to-speech recipe: ``(models by name, history, product folder)``."""
    return train_recipe(recipe, cfg, policy, artifacts_root, producer=producer,
                        extra_key=recipe.key(), progress=progress,
                        not_in_key=("device", "log_every", "ckpt_every"))


__all__ += ["with_model"]
