"""Training recipes of the Wav2Lip generator: the paper's two models, its ablation, and a
VocaLiST judge in place of the expert.

=========================  ==================================================================
recipe (``Wav2LipSetup``)  what
=========================  ==================================================================
``wav2lip``                L1 reconstruction + the frozen expert's sync loss, whose weight is
                           0 until the validation sync loss drops below 0.75, then 0.01
                           (``wav2lip_train.py``)
``wav2lip_gan``            + the visual-quality discriminator: disc_wt 0.07, sync 0.03, Adam
                           betas (0.5, 0.999) for G and D (``hq_wav2lip_train.py``)
``no_expert``              the paper's ablation: the same generator, sync weight 0 throughout
                           (the expert still *measures* the sync loss, for the curves)
``vocalist_judge``         the Wav2Lip recipe with a trained VocaLiST (or MTDVocaLiST) as the
                           frozen judge in place of the Wav2Lip expert
=========================  ==================================================================

The total loss of a generator step is upstream's convex combination::

    syncnet_wt * L_sync + disc_wt * L_gen + (1 - syncnet_wt - disc_wt) * L1

**The sync-loss switch.** Upstream starts ``syncnet_wt`` at 0 and sets it once the *validation*
sync loss (the expert's BCE on generated windows) drops below 0.75: the expert says nothing useful
about the blurry mouths of a young generator, and its gradient would only fight L1. Users of the
official code wait a day or more for it; here it is explicit: :class:`SyncSwitch` holds the current
weight and the step it opened at (a buffer, so a resumed run keeps it, and broadcast from rank 0
under DDP, since only rank 0 validates), every validation logs ``val_sync`` and ``val_sync_wt``,
and a :class:`SyncSwitchWarning` says so when the switch has not opened after
``Wav2LipSetup.warn_after`` steps.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avlib.lipsync.data import WINDOW, Wav2LipWindows
from avlib.models import VocaLiST, Wav2Lip, Wav2LipDisc, Wav2LipExpert, expert_loss
from avlib.train import History, Recipe, TrainConfig, adam, train_recipe

__all__ = ["Wav2LipSetup", "SETUPS", "SyncSwitch", "SyncSwitchWarning", "Wav2LipRecipe",
           "lower_half_windows", "sync_loss", "train"]

_VAL_SEED_OFFSET = 10_007


@dataclass(frozen=True)
class Wav2LipSetup:
    """What a Wav2Lip training run is (the recipe's part of the product key).

    Attributes:
        name: the product name (``wav2lip``, ``wav2lip_gan``, ``no_expert``, ...).
        width: the generator's channel multiplier (1.0 = official, 36.3 M parameters).
        disc_width: the quality discriminator's multiplier; None = no GAN.
        syncnet_wt: the sync-loss weight once the switch opens (0: never; the ablation).
        disc_wt: the adversarial weight (0.07 upstream with the discriminator).
        sync_threshold: the switch opens when the validation sync loss drops below it.
        warn_after: steps after which a closed switch is warned about (None: never).
        gan_betas: Adam betas of G and D when there is a discriminator.
        judge: ``"expert"`` (the Wav2Lip expert) or ``"vocalist"`` (VocaLiST / MTDVocaLiST).
        mel_shift: the per-frame mel windows' start in video frames (-1, the official quirk).
    """

    name: str = "wav2lip"
    width: float = 1.0
    disc_width: float | None = None
    syncnet_wt: float = 0.01
    disc_wt: float = 0.0
    sync_threshold: float = 0.75
    warn_after: int | None = 3000
    gan_betas: tuple[float, float] = (0.5, 0.999)
    judge: str = "expert"
    mel_shift: int = -1

    def __post_init__(self):
        if self.judge not in ("expert", "vocalist"):
            raise ValueError(f"judge is 'expert' or 'vocalist', got {self.judge!r}")
        if not 0 <= self.syncnet_wt + self.disc_wt < 1:
            raise ValueError("syncnet_wt + disc_wt must lie in [0, 1): the rest weighs L1")
        if self.disc_wt and self.disc_width is None:
            raise ValueError("disc_wt > 0 needs a discriminator: set disc_width")


#: The four setups of chapter 04 at official sizes (``dataclasses.replace`` sets the widths).
SETUPS = {
    "wav2lip": Wav2LipSetup("wav2lip"),
    "wav2lip_gan": Wav2LipSetup("wav2lip_gan", disc_width=1.0, syncnet_wt=0.03, disc_wt=0.07),
    "no_expert": Wav2LipSetup("no_expert", syncnet_wt=0.0),
    "vocalist_judge": Wav2LipSetup("vocalist_judge", judge="vocalist"),
}


class SyncSwitchWarning(UserWarning):
    """The sync loss has not switched on after the stated number of steps."""


class SyncSwitch(torch.nn.Module):
    """The state of the sync-loss switch, as buffers (saved with every checkpoint):
    ``weight`` (the current sync weight), ``opened_at`` (the step it opened, -1: closed) and
    ``steps`` (training steps so far)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", torch.zeros((), dtype=torch.float64))
        self.register_buffer("opened_at", torch.full((), -1, dtype=torch.int64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    @property
    def is_open(self) -> bool:
        return int(self.opened_at) >= 0

    def open(self, weight: float) -> None:
        self.weight.fill_(float(weight))
        self.opened_at.fill_(int(self.steps))


def lower_half_windows(frames: torch.Tensor) -> torch.Tensor:
    """Generated windows (B, 3, 5, 96, 96) -> the judges' face input (B, 15, 48, 96): the lower
    halves, frame-major channels (f0 B,G,R, f1 B,G,R, ...)."""
    b, c, t, h, w = frames.shape
    return frames[..., h // 2:, :].permute(0, 2, 1, 3, 4).reshape(b, t * c, h - h // 2, w)


def sync_loss(judge: torch.nn.Module, frames: torch.Tensor, batch: dict) -> torch.Tensor:
    """The frozen judge's BCE that ``frames`` (B, 3, 5, 96, 96) are in sync with the window's
    audio: the expert's BCE on its cosine (``batch["mel"]``), or VocaLiST's BCE with logits
    (``batch["vocalist_mel"]``)."""
    faces = lower_half_windows(frames)
    if isinstance(judge, Wav2LipExpert):
        audio, video = judge(batch["mel"], faces)
        return expert_loss(audio, video, torch.ones(len(faces), device=faces.device))
    if isinstance(judge, VocaLiST):
        logits = judge(faces, batch["vocalist_mel"])
        return F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits.float()))
    raise TypeError(f"no sync loss for a {type(judge).__name__} judge")


class Wav2LipRecipe(Recipe):
    """A Wav2Lip generator trained on a clip store's windows (:mod:`avlib.lipsync.data`).

    Args:
        store: the clip store.
        setup: a :class:`Wav2LipSetup` (e.g. ``SETUPS["wav2lip"]`` with CPU widths).
        judge: the frozen, trained sync judge (a :class:`Wav2LipExpert` or :class:`VocaLiST`);
            None only for a setup whose sync weight is 0 (then nothing measures sync).
        judge_id: what identifies the judge's weights in the product key (its product folder).
        batch_size: windows per step (upstream 16 windows = 80 frames).
        val_batches: fixed validation batches per evaluation.
        seed: initial weights and validation batches.
        init: a trained generator to start from (its weights are copied; same width), e.g. the
            shared L1-only warm start whose branches a chapter compares; None: random weights.
        init_id: what identifies ``init`` in the product key (its product folder).

    Models: ``"G"`` (trained), ``"D"`` (trained, with a discriminator), ``"judge"`` (frozen),
    ``"switch"`` (:class:`SyncSwitch`). Optimizers ``"G"`` and ``"D"``.
    """

    def __init__(self, store, setup: Wav2LipSetup, judge: torch.nn.Module | None = None, *,
                 judge_id: str | None = None, batch_size: int = 16, val_batches: int = 4,
                 seed: int = 0, train_split: str = "train", val_split: str = "val",
                 init: torch.nn.Module | None = None, init_id: str | None = None):
        if judge is None and setup.syncnet_wt:
            raise ValueError(f"setup {setup.name!r} has a sync loss: pass its frozen judge")
        if judge is not None:
            wanted = Wav2LipExpert if setup.judge == "expert" else VocaLiST
            if not isinstance(judge, wanted):
                raise TypeError(f"setup {setup.name!r} judges with a {wanted.__name__}, got a "
                                f"{type(judge).__name__}")
        if int(batch_size) < 1 or int(val_batches) < 1:
            raise ValueError("batch_size and val_batches must be >= 1")
        self.store, self.config, self.judge = store, setup, judge
        self.judge_id = judge_id
        if init is not None and init_id is None:
            raise ValueError("init needs an init_id (what identifies its weights in the key)")
        self.init, self.init_id = init, init_id
        self.batch_size, self.val_batches, self.seed = int(batch_size), int(val_batches), int(seed)
        self.train_split, self.val_split = train_split, val_split
        self._windows: dict[str, Wav2LipWindows] = {}
        self._warned = False

    @property
    def name(self) -> str:
        return f"lipsync_{self.config.name}"

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("G", "D") if self.config.disc_width is not None else ("G",)

    def key(self) -> dict[str, Any]:
        from avlib.sync.recipes import store_fingerprint

        return {"batch_size": self.batch_size, "seed": self.seed, "judge": self.judge_id,
                "init": self.init_id,
                "train_split": self.train_split,
                "val": {"split": self.val_split, "batches": self.val_batches},
                "store": store_fingerprint(self.store)}

    def windows(self, split: str) -> Wav2LipWindows:
        if split not in self._windows:
            self._windows[split] = Wav2LipWindows(
                self.store, split, mel_shift=self.config.mel_shift,
                vocalist_mel=self.config.judge == "vocalist" and self.judge is not None)
        return self._windows[split]

    # ---- the protocol ------------------------------------------------------------------------
    def build(self) -> dict[str, torch.nn.Module]:
        torch.manual_seed(self.seed)
        models = {"G": Wav2Lip(width=self.config.width), "switch": SyncSwitch()}
        if self.init is not None:
            try:
                models["G"].load_state_dict(self.init.state_dict())
            except RuntimeError as err:
                raise ValueError(f"init does not fit a width-{self.config.width} generator: "
                                 f"{str(err).splitlines()[0]}") from None
        if self.config.disc_width is not None:
            models["D"] = Wav2LipDisc(width=self.config.disc_width)
        if self.judge is not None:
            models["judge"] = self.judge
        return models

    def trainable(self, models) -> tuple[str, ...]:
        return tuple(n for n in ("G", "D") if n in models)

    def optimizers(self, models, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        gan = "D" in models
        betas = self.config.gan_betas if gan else None
        opts = {"G": adam(models["G"].parameters(), cfg, betas=betas)}
        if gan:
            opts["D"] = adam(models["D"].parameters(), cfg, betas=betas)
        return opts

    def batch(self, rng: np.random.Generator) -> dict:
        return self.windows(self.train_split).batch(rng, self.batch_size)

    def losses(self, models, batch: dict, *, sync: bool) -> tuple[torch.Tensor, dict]:
        """The generator's output and its loss terms (``l1``; ``sync`` when asked and a judge
        exists; ``gen`` with a discriminator)."""
        g = models["G"](batch["indiv_mels"], batch["x"])
        terms = {"l1": F.l1_loss(g, batch["gt"])}
        if sync and "judge" in models:
            terms["sync"] = sync_loss(models["judge"], g, batch)
        if "D" in models:
            terms["gen"] = models["D"].perceptual_forward(g)
        return g, terms

    def training_step(self, models, batch: dict, opt) -> dict[str, float]:
        """One generator update (and one discriminator update with a GAN), as upstream."""
        switch = models["switch"]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buf in (switch.weight, switch.opened_at):  # rank 0 alone validates
                torch.distributed.broadcast(buf, src=0)
        s_wt, d_wt = float(switch.weight), self.config.disc_wt if "D" in models else 0.0
        g, terms = self.losses(models, batch, sync=s_wt > 0)
        loss = (1.0 - s_wt - d_wt) * terms["l1"]
        if s_wt > 0:
            loss = loss + s_wt * terms["sync"]
        if d_wt > 0:
            loss = loss + d_wt * terms["gen"]
        opt.step("G", loss)
        metrics = {"loss": float(loss.detach()), "l1": float(terms["l1"].detach()),
                   "sync": float(terms["sync"].detach()) if "sync" in terms else float("nan"),
                   "sync_wt": s_wt}
        if "D" in models:
            d = models["D"]
            real = d(batch["gt"])
            fake = d(g.detach())
            d_real = F.binary_cross_entropy(real, torch.ones_like(real))
            d_fake = F.binary_cross_entropy(fake, torch.zeros_like(fake))
            opt.step("D", d_real + d_fake)
            metrics.update(gen=float(terms["gen"].detach()), d_real=float(d_real.detach()),
                           d_fake=float(d_fake.detach()))
        switch.steps += 1
        return metrics

    def validate(self, models) -> dict[str, float]:
        """``val_l1``, ``val_sync`` (the judge's loss on generated windows) and ``val_sync_wt``
        (the weight after this validation: the switch opens here)."""
        device = next(models["G"].parameters()).device
        rng = np.random.default_rng(self.seed + _VAL_SEED_OFFSET)
        sums: dict[str, list[float]] = {}
        for _ in range(self.val_batches):
            batch = self.windows(self.val_split).batch(rng, self.batch_size)
            batch = {k: v.to(device) for k, v in batch.items()}
            _, terms = self.losses(models, batch, sync=True)
            for k, v in terms.items():
                sums.setdefault(k, []).append(float(v))
        out = {f"val_{k}": float(np.mean(v)) for k, v in sums.items()}
        switch = models["switch"]
        if (not switch.is_open and self.config.syncnet_wt > 0 and "val_sync" in out
                and out["val_sync"] < self.config.sync_threshold):
            switch.open(self.config.syncnet_wt)
        warn_after = self.config.warn_after
        if (self.config.syncnet_wt > 0 and not switch.is_open and warn_after is not None
                and int(switch.steps) >= warn_after and not self._warned):
            self._warned = True
            warnings.warn(
                f"{self.name}: the sync loss is still off after {int(switch.steps)} steps: the "
                f"validation sync loss is {out.get('val_sync', float('nan')):.3f}, above the "
                f"threshold {self.config.sync_threshold} (upstream users wait a day or more for "
                "it). Train longer, check the judge (its own validation loss), or lower "
                "Wav2LipSetup.sync_threshold.", SyncSwitchWarning, stacklevel=2)
        out["val_sync_wt"] = float(switch.weight)
        return out

    # ---- reading a run -----------------------------------------------------------------------
    @staticmethod
    def switch_step(hist: History) -> int | None:
        """The step whose validation opened the sync loss (None: it never opened)."""
        for record in hist.eval:
            if record.get("val_sync_wt", 0) > 0:
                return int(record["step"])
        return None

    def summary(self, hist: History, label: str | None = None) -> str:
        """One line: steps, time, final L1 and sync loss, and when the switch opened."""
        last = hist.train[-1] if hist.train else {}
        ev = hist.last_eval()
        opened = self.switch_step(hist)
        switch = ("sync loss never used" if not self.config.syncnet_wt else
                  f"sync loss on at step {opened}" if opened is not None else
                  "sync loss never switched on")
        return (f"{label or self.name}: {last.get('step', 0)} steps in {last.get('seconds', 0):.0f}"
                f" s; val L1 {ev.get('val_l1', float('nan')):.4f}, val sync "
                f"{ev.get('val_sync', float('nan')):.3f}; {switch}")


def train(recipe: Wav2LipRecipe, cfg: TrainConfig, policy: str, artifacts_root, *,
          producer: str = "04_wav2lip", progress: bool = True
          ) -> tuple[dict[str, torch.nn.Module], History, Any]:
    """Train (or load) a Wav2Lip recipe: ``(models by name, history, product folder)``."""
    return train_recipe(recipe, cfg, policy, artifacts_root, producer=producer,
                        extra_key=recipe.key(), progress=progress,
                        not_in_key=("device", "log_every", "ckpt_every"))


def with_widths(setup: Wav2LipSetup, width: float, disc_width: float | None = None) -> Wav2LipSetup:
    """``setup`` at other sizes (the discriminator's only when it has one)."""
    return replace(setup, width=width,
                   disc_width=None if setup.disc_width is None else (disc_width or width))


__all__ += ["with_widths", "WINDOW"]
