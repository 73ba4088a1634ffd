"""SyncNet as released in syncnet_python (``syncnet_v2``), the network behind LSE-D / LSE-C.

The released network is not the paper's grayscale-mouth model (spec §1.1): it embeds five
colour face crops with 3-D convolutions and a 13x20 MFCC window with 2-D convolutions, each
into a 1024-d vector (no L2 normalisation). Submodule names and ``nn.Sequential`` indices
follow the official state dict (spec §1.3-§1.4) so ``syncnet_v2.model`` loads strictly once its
``num_batches_tracked`` buffers are filled (see :func:`avlib.checkpoints.load_official`).

Inputs follow the released pipeline: frames are **BGR**, raw 0-255 floats, no mean/std
normalisation; MFCCs are computed on the raw int16-scale signal (see ``avlib.audio``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from avlib.models.blocks import scale_channels

# Official geometry (spec §1.2-§1.3).
MFCC_SHAPE = (13, 20)  # 13 coefficients x 20 frames at 100 Hz = 0.2 s = 5 video frames
NUM_FRAMES = 5
OFFICIAL_IMG_SIZE = 224
MIN_IMG_SIZE = 51  # smallest square crop for which every lip-stream stage keeps >= 1 pixel


def _lip_spatial_size(img_size: int) -> int:
    """Spatial size entering the last lip conv (6 at 224, 2 at 112 and 96); 0 if too small."""

    def out(size: int, kernel: int, stride: int, pad: int) -> int:
        return (size + 2 * pad - kernel) // stride + 1

    s = out(img_size, 7, 2, 0)  # conv 0
    s = out(s, 3, 2, 0)  # max-pool 3
    s = out(s, 5, 2, 1)  # conv 4
    s = out(s, 3, 2, 1)  # max-pool 7
    s = out(s, 3, 2, 0)  # max-pool 17 (convs 8, 11, 14 keep the size)
    return max(s, 0)


def lip_windows(frames: np.ndarray, count: int | None = None) -> torch.Tensor:
    """The lip stream's input: frames (T, H, W, 3) uint8 **BGR** -> the ``count`` (default
    ``T - 4``) windows starting at frames 0, 1, ... as (count, 3, 5, H, W) float32, raw 0-255,
    channels then time, as syncnet_python's ``imtv[:, :, i:i+5]``."""
    count = len(frames) - NUM_FRAMES + 1 if count is None else int(count)
    if count < 1 or len(frames) < count + NUM_FRAMES - 1:
        raise ValueError(f"{len(frames)} frames hold no {count} windows of {NUM_FRAMES} frames")
    x = torch.from_numpy(np.ascontiguousarray(frames[: count + NUM_FRAMES - 1])).float()
    windows = x.permute(3, 0, 1, 2).unfold(1, NUM_FRAMES, 1)  # (3, count, H, W, 5)
    return windows.permute(1, 0, 4, 2, 3).contiguous()


@dataclass(frozen=True)
class SyncNetConfig:
    """The size of a :class:`SyncNet`. The defaults are the released ``syncnet_v2``."""

    width: float = 1.0  #: channel multiplier of every conv and the FC hidden layer
    emb_dim: int = 1024  #: embedding size of both streams
    img_size: int = OFFICIAL_IMG_SIZE  #: side of the square face crops

    @classmethod
    def official(cls) -> "SyncNetConfig":
        return cls()

    @classmethod
    def named(cls, size: str) -> "SyncNetConfig":
        """A named size: ``"official"`` or ``"cpu"`` (width 1/8, 128-d, 112-pixel crops)."""
        return _named(SYNCNET_SIZES, size, cls.__name__)


SYNCNET_SIZES = {"official": SyncNetConfig(), "cpu": SyncNetConfig(0.125, 128, 112)}


def _named(sizes: dict, size: str, what: str):
    if size not in sizes:
        raise ValueError(f"unknown {what} size {size!r}; named sizes: {sorted(sizes)}")
    return sizes[size]


class SyncNet(nn.Module):
    """syncnet_python's released ``syncnet_v2`` network (class ``S`` upstream).

    Args:
        width: channel multiplier for every conv and the FC hidden layer (1.0 = official).
        emb_dim: embedding size of both streams (official 1024).
        img_size: side of the square face crops. 224 is official; any size >= 51 works
            (e.g. 112 or 96 for CPU runs): the last lip conv takes the whole remaining map, so
            its kernel adapts (6x6 at 224, 2x2 at 112 and 96). Only 224 loads official weights.

    At the defaults the network has 13,631,616 parameters.
    """

    registry_name = "syncnet"
    config_class = SyncNetConfig
    crop_stream = "syncnet"  #: the store's crops it reads (square, BGR, raw 0-255)
    similarity = "l2"  #: pairs are scored by the negative distance of the embeddings

    def __init__(self, width: float = 1.0, emb_dim: int = 1024, img_size: int = OFFICIAL_IMG_SIZE):
        super().__init__()
        last_lip = _lip_spatial_size(img_size)
        if last_lip < 1:
            raise ValueError(
                f"img_size={img_size} is too small for the SyncNet lip stream; use a square crop "
                f"of at least {MIN_IMG_SIZE} pixels (224 is official, 112 and 96 work)"
            )
        if emb_dim < 1:
            raise ValueError(f"emb_dim must be a positive integer, got {emb_dim}")
        self.config = {
            "name": self.registry_name,
            "kwargs": {"width": width, "emb_dim": emb_dim, "img_size": img_size},
        }
        self.img_size = img_size
        self.emb_dim = emb_dim

        def c(n: int) -> int:
            return scale_channels(n, width)

        # Index layout matters: ReLU and MaxPool modules occupy Sequential slots, so conv/BN
        # keys land on 0/1, 4/5, 8/9, 11/12, 14/15, 18/19 exactly as in the official file.
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, c(64), 3, padding=1), nn.BatchNorm2d(c(64)), nn.ReLU(inplace=True),
            nn.MaxPool2d(1, stride=1),  # a no-op kept because it owns index 3
            nn.Conv2d(c(64), c(192), 3, padding=1), nn.BatchNorm2d(c(192)), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=(1, 2)),
            nn.Conv2d(c(192), c(384), 3, padding=1), nn.BatchNorm2d(c(384)), nn.ReLU(inplace=True),
            nn.Conv2d(c(384), c(256), 3, padding=1), nn.BatchNorm2d(c(256)), nn.ReLU(inplace=True),
            nn.Conv2d(c(256), c(256), 3, padding=1), nn.BatchNorm2d(c(256)), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(c(256), c(512), (5, 4)), nn.BatchNorm2d(c(512)), nn.ReLU(inplace=True),
        )
        self.netfcaud = self._fc_head(c(512), emb_dim)

        self.netcnnlip = nn.Sequential(
            # The first kernel spans all 5 frames: time collapses to 1 right away.
            nn.Conv3d(3, c(96), (NUM_FRAMES, 7, 7), stride=(1, 2, 2)),
            nn.BatchNorm3d(c(96)), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(c(96), c(256), (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(c(256)), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(c(256)), nn.ReLU(inplace=True),
            nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(c(256)), nn.ReLU(inplace=True),
            nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(c(256)), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(c(256), c(512), (1, last_lip, last_lip)),
            nn.BatchNorm3d(c(512)), nn.ReLU(inplace=True),
        )
        self.netfclip = self._fc_head(c(512), emb_dim)

    @staticmethod
    def _fc_head(channels: int, emb_dim: int) -> nn.Sequential:
        # Keys 0 (Linear), 1 (BN1d), 3 (Linear); index 2 is the parameter-free ReLU.
        return nn.Sequential(
            nn.Linear(channels, channels), nn.BatchNorm1d(channels), nn.ReLU(inplace=True),
            nn.Linear(channels, emb_dim),
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """Audio embedding.

        Args:
            mfcc: (B, 1, 13, 20) MFCC windows (13 coefficients x 20 frames at 100 Hz),
                computed from int16-scale audio as in the released pipeline.

        Returns:
            (B, emb_dim) unnormalised embeddings.
        """
        if mfcc.ndim != 4 or tuple(mfcc.shape[1:]) != (1, *MFCC_SHAPE):
            raise ValueError(
                f"SyncNet.forward_aud expects MFCC windows of shape (B, 1, 13, 20), got "
                f"{tuple(mfcc.shape)}; add the channel axis with mfcc[:, None] if needed"
            )
        features = self.netcnnaud(mfcc)
        return self.netfcaud(features.flatten(1))

    def forward_lipfeat(self, frames: torch.Tensor) -> torch.Tensor:
        """512-d (times width) lip feature before the FC head, shape (B, C)."""
        expected = (3, NUM_FRAMES, self.img_size, self.img_size)
        if frames.ndim != 5 or tuple(frames.shape[1:]) != expected:
            raise ValueError(
                f"SyncNet lip stream expects frames of shape (B, {', '.join(map(str, expected))}) "
                f"= (batch, BGR, time, height, width), raw 0-255 values; got {tuple(frames.shape)}"
            )
        return self.netcnnlip(frames).flatten(1)

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """Video embedding.

        Args:
            frames: (B, 3, 5, S, S) five consecutive **BGR** face crops, raw 0-255 floats,
                channels first then time (S = ``img_size``).

        Returns:
            (B, emb_dim) unnormalised embeddings.
        """
        return self.netfclip(self.forward_lipfeat(frames))

    def forward(
        self, mfcc: torch.Tensor, frames: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both embeddings ``(audio (B, emb_dim), video (B, emb_dim))``."""
        return self.forward_aud(mfcc), self.forward_lip(frames)


def contrastive_loss(
    audio_emb: torch.Tensor, video_emb: torch.Tensor, y: torch.Tensor, margin: float
) -> torch.Tensor:
    """SyncNet's contrastive loss on the Euclidean distance of unnormalised embeddings.

    ``L = mean_n [ y_n d_n^2 + (1 - y_n) max(margin - d_n, 0)^2 ]`` with ``d_n = ||a_n - v_n||_2``
    (Chung & Zisserman 2016, after Hadsell et al. 2006; the paper writes the sum with a factor
    1/(2N), which only rescales the gradient). Genuine pairs (y = 1) are pulled together; false
    pairs (y = 0) are pushed apart until they are ``margin`` away, after which they cost nothing.
    The embeddings are not normalised, so ``margin`` sets the scale of every distance the network
    learns (and so of LSE-D / LSE-C).

    Args:
        audio_emb: (B, D) audio embeddings.
        video_emb: (B, D) video embeddings.
        y: (B,) or (B, 1) targets, 1 = genuine (in sync), 0 = false (shifted).
        margin: distance beyond which false pairs stop contributing (> 0).

    Returns:
        Scalar mean loss.
    """
    if audio_emb.ndim != 2 or audio_emb.shape != video_emb.shape:
        raise ValueError(
            "contrastive_loss needs two (B, D) embeddings of equal shape, got "
            f"{tuple(audio_emb.shape)} and {tuple(video_emb.shape)}"
        )
    if not margin > 0:
        raise ValueError(f"margin must be a positive distance, got {margin!r}")
    target = y.reshape(-1).to(audio_emb.dtype)
    if target.shape[0] != audio_emb.shape[0]:
        raise ValueError(
            f"y must hold one target per pair ({audio_emb.shape[0]}), got {tuple(y.shape)}"
        )
    # A tiny epsilon keeps the gradient of the square root finite for identical embeddings.
    dist = torch.sqrt(torch.sum((audio_emb - video_emb) ** 2, dim=1) + 1e-12)
    hinge = torch.clamp(margin - dist, min=0.0)
    return torch.mean(target * dist**2 + (1.0 - target) * hinge**2)
