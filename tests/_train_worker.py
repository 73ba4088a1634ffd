"""Subprocess side of tests/test_train.py: recipes trained in a separate process.

``python tests/_train_worker.py gan WORKDIR [KILL_AT]`` trains :class:`TinyGAN` in WORKDIR; with
KILL_AT it SIGKILLs itself at that call of ``training_step`` unless ``WORKDIR/killed`` exists
(it creates the file first), so running the same command again finishes the training.

``python -m torch.distributed.run --standalone --nproc_per_node=2 tests/_train_worker.py ddp
OUTDIR`` trains :class:`TinyMLP` with DDP and writes rank 0's final weights to
``OUTDIR/weights.safetensors``.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from avlib import train

GAN_CFG = train.TrainConfig(steps=20, lr=0.01, log_every=3, eval_every=5, ckpt_every=4,
                            lr_schedule="cosine", grad_clip=1.0, seed=0, precision="fp32")
DDP_CFG = train.TrainConfig(steps=20, lr=0.01, log_every=5, eval_every=10, ckpt_every=10,
                            seed=0, precision="fp32")


class TinyGAN(train.Recipe):
    """Two trained models with their own optimizers (D with GAN betas, G at twice the rate) and
    a frozen expert that penalises the generator; ``z`` comes from the torch RNG, real samples
    from the numpy generator."""

    name = "tiny_gan"

    def __init__(self, kill_at: int | None = None, marker: Path | None = None):
        self.kill_at, self.marker, self.calls = kill_at, marker, 0

    def build(self):
        return {"G": nn.Linear(2, 2),
                "D": nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)),
                "expert": nn.Linear(2, 1)}

    def trainable(self):
        return ("G", "D")

    def optimizers(self, models, cfg):
        return {"D": train.adam(models["D"].parameters(), cfg, betas=(0.5, 0.999)),
                "G": train.adam(models["G"].parameters(), cfg, lr=2 * cfg.lr)}

    def batch(self, rng):
        real = rng.normal([1.0, -1.0], 0.5, size=(8, 2)).astype(np.float32)
        return {"real": torch.from_numpy(real)}

    def training_step(self, models, batch, opt):
        self.calls += 1
        if self.kill_at and self.calls == self.kill_at and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        G, D, expert = models["G"], models["D"], models["expert"]
        real = batch["real"]
        ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
        fake = G(torch.randn(len(real), 2))
        loss_d = (F.binary_cross_entropy_with_logits(D(real), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        opt.step("D", loss_d)
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones) + expert(fake).pow(2).mean()
        opt.step("G", loss_g)
        loss_d, loss_g = float(loss_d.detach()), float(loss_g.detach())
        return {"loss": loss_d + loss_g, "d": loss_d, "g": loss_g}

    def validate(self, models):
        z = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
        return {"fake_mean": float(models["G"](z).mean())}


class TinyMLP(train.Recipe):
    """Regression with an MLP (no batch norm), a mean loss, a global batch of 16 and SGD."""

    name = "tiny_mlp"

    def build(self):
        return {"net": nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))}

    def batch(self, rng):
        x = torch.from_numpy(rng.normal(size=(16, 4)).astype(np.float32))
        return {"x": x, "y": torch.sin(x.sum(dim=1, keepdim=True)), "note": "kept whole"}

    def optimizers(self, models, cfg):
        # SGD, not Adam: Adam hardly changes if the gradients were summed instead of averaged
        return {"net": torch.optim.SGD(models["net"].parameters(), lr=10 * cfg.lr, momentum=0.9)}

    def training_step(self, models, batch, opt):
        assert batch["note"] == "kept whole" and len(batch["x"]) == 16 // opt.world_size
        loss = F.mse_loss(models["net"](batch["x"]), batch["y"])
        opt.step("net", loss)
        return {"loss": float(loss.detach())}

    def validate(self, models):
        x = torch.linspace(-1, 1, 32).reshape(8, 4)
        return {"val": float(F.mse_loss(models["net"](x), torch.sin(x.sum(1, keepdim=True))))}


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    mode, folder = argv[0], Path(argv[1])
    if mode == "gan":
        kill_at = int(argv[2]) if len(argv) > 2 else None
        train.Trainer(TinyGAN(kill_at, folder / "killed"), GAN_CFG, folder).fit(progress=False)
    elif mode == "ddp":
        from safetensors.torch import save_file

        trainer = train.Trainer(TinyMLP(), DDP_CFG, folder / "work")
        trainer.fit(progress=False)
        if trainer.rank == 0:
            save_file({k: v.contiguous() for k, v in trainer.models["net"].state_dict().items()},
                      str(folder / "weights.safetensors"))
        torch.distributed.destroy_process_group()
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
