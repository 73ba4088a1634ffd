"""Wav2Lip's expert lip-sync discriminator ``SyncNet_color`` (spec §2.3).

A face encoder embeds the lower halves of five 96x96 BGR frames stacked as 15 channels, an
audio encoder embeds a 16-frame Wav2Lip mel window (0.2 s), and both 512-d embeddings are
L2-normalised. Training scores a pair by their cosine similarity and applies binary cross
entropy (:func:`expert_loss`). Block indices follow the official ``lipsync_expert.pth`` keys
(``face_encoder.{0..16}.conv_block.*``, ``audio_encoder.{0..13}.conv_block.*``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avlib.models.blocks import Conv2dBlock, build_conv_stack, scale_channels

FACE_SHAPE = (15, 48, 96)  # 5 frames x BGR, lower half (rows 48-95) of 96x96 crops
MEL_SHAPE = (1, 80, 16)  # 80 mel bins x 16 frames at 80 Hz = 0.2 s


def _face_layout(c):
    """Rows (out, kernel, stride, padding, residual) of the face encoder, 17 blocks."""
    return [
        (c(32), 7, 1, 3, False),  # 0: 32 x 48 x 96
        (c(64), 5, (1, 2), 1, False),  # 1: 64 x 46 x 47
        (c(64), 3, 1, 1, True),
        (c(64), 3, 1, 1, True),
        (c(128), 3, 2, 1, False),  # 4: 128 x 23 x 24
        (c(128), 3, 1, 1, True),
        (c(128), 3, 1, 1, True),
        (c(128), 3, 1, 1, True),
        (c(256), 3, 2, 1, False),  # 8: 256 x 12 x 12
        (c(256), 3, 1, 1, True),
        (c(256), 3, 1, 1, True),
        (c(512), 3, 2, 1, False),  # 11: 512 x 6 x 6
        (c(512), 3, 1, 1, True),
        (c(512), 3, 1, 1, True),
        (c(512), 3, 2, 1, False),  # 14: 512 x 3 x 3
        (c(512), 3, 1, 0, False),  # 15: 512 x 1 x 1
        (c(512), 1, 1, 0, False),  # 16: 512 x 1 x 1
    ]


def _audio_layout(c):
    """Rows (out, kernel, stride, padding, residual) of the audio encoder, 14 blocks."""
    return [
        (c(32), 3, 1, 1, False),  # 0: 32 x 80 x 16
        (c(32), 3, 1, 1, True),
        (c(32), 3, 1, 1, True),
        (c(64), 3, (3, 1), 1, False),  # 3: 64 x 27 x 16
        (c(64), 3, 1, 1, True),
        (c(64), 3, 1, 1, True),
        (c(128), 3, 3, 1, False),  # 6: 128 x 9 x 6
        (c(128), 3, 1, 1, True),
        (c(128), 3, 1, 1, True),
        (c(256), 3, (3, 2), 1, False),  # 9: 256 x 3 x 3
        (c(256), 3, 1, 1, True),
        (c(256), 3, 1, 1, True),
        (c(512), 3, 1, 0, False),  # 12: 512 x 1 x 1
        (c(512), 1, 1, 0, False),  # 13: 512 x 1 x 1
    ]


CROP = 96  #: side of the face crops the expert (and VocaLiST) read


def face_halves(frames: np.ndarray) -> np.ndarray:
    """The face stream's per-frame input: (T, 96, 96, 3) uint8 **BGR** crops -> (T, 3, 48, 96)
    float32 lower halves (rows 48-95) in [0, 1], channels first.

    Computed as float64 / 255 then rounded to float32, like upstream's numpy division followed by
    ``torch.FloatTensor``. :func:`face_windows` stacks five of them into the network's input.
    Shared by the Wav2Lip expert, the Wav2Lip generator's sync loss and VocaLiST.
    """
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[1:] != (CROP, CROP, 3) or arr.dtype != np.uint8:
        raise ValueError(f"expected (T, {CROP}, {CROP}, 3) uint8 BGR face crops, got "
                         f"{arr.shape} {arr.dtype}")
    return (arr[:, CROP // 2:].transpose(0, 3, 1, 2) / 255.0).astype(np.float32)


def face_windows(halves, starts) -> torch.Tensor:
    """Five consecutive lower halves from each start, frame-major: ``halves`` (T, 3, 48, 96)
    (array or tensor), ``starts`` (B,) -> (B, 15, 48, 96) (f0 B,G,R, f1 B,G,R, ...)."""
    halves = torch.as_tensor(halves)
    index = torch.as_tensor(starts, dtype=torch.long)[:, None] + torch.arange(5)
    windows = halves[index]  # (B, 5, 3, 48, 96)
    return windows.reshape(windows.shape[0], 15, *halves.shape[2:])


@dataclass(frozen=True)
class Wav2LipExpertConfig:
    """The size of a :class:`Wav2LipExpert`. The default is the released ``lipsync_expert.pth``."""

    width: float = 1.0  #: channel multiplier (the embedding size is ``round(512 * width)``)

    @classmethod
    def official(cls) -> "Wav2LipExpertConfig":
        return cls()

    @classmethod
    def named(cls, size: str) -> "Wav2LipExpertConfig":
        """A named size: ``"official"`` or ``"cpu"`` (width 1/8)."""
        if size not in EXPERT_SIZES:
            raise ValueError(f"unknown Wav2LipExpert size {size!r}; named sizes: "
                             f"{sorted(EXPERT_SIZES)}")
        return EXPERT_SIZES[size]


EXPERT_SIZES = {"official": Wav2LipExpertConfig(), "cpu": Wav2LipExpertConfig(0.125)}


class Wav2LipExpert(nn.Module):
    """Wav2Lip's lip-sync expert (``SyncNet_color`` upstream; before avlib 0.2 ``SyncNetColor``).

    Args:
        width: channel multiplier (1.0 = official, 16,435,072 parameters; the embedding size
            is ``round(512 * width)``).
    """

    registry_name = "wav2lip_expert"
    config_class = Wav2LipExpertConfig
    crop_stream = "face96"  #: the store's crops it reads (96 x 96 BGR faces; lower halves used)
    similarity = "cosine"  #: pairs are scored by the cosine of the embeddings

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.config = {"name": self.registry_name, "kwargs": {"width": width}}

        def c(n: int) -> int:
            return scale_channels(n, width)

        self.emb_dim = c(512)
        self.face_encoder = build_conv_stack(Conv2dBlock, FACE_SHAPE[0], _face_layout(c))
        self.audio_encoder = build_conv_stack(Conv2dBlock, MEL_SHAPE[0], _audio_layout(c))

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a mel window and a 5-frame face window.

        Args:
            mel: (B, 1, 80, 16) Wav2Lip mel (values in [-4, 4]), 16 frames at 80 Hz.
            faces: (B, 15, 48, 96) lower halves of 5 consecutive 96x96 **BGR** crops scaled to
                [0, 1], frame-major channels (f0 B,G,R, f1 B,G,R, ...).

        Returns:
            ``(audio_emb, face_emb)``, each (B, emb_dim), L2-normalised and non-negative.
        """
        if mel.ndim != 4 or tuple(mel.shape[1:]) != MEL_SHAPE:
            raise ValueError(
                f"Wav2LipExpert expects mel windows of shape (B, 1, 80, 16), got {tuple(mel.shape)}"
            )
        if faces.ndim != 4 or tuple(faces.shape[1:]) != FACE_SHAPE:
            raise ValueError(
                "Wav2LipExpert expects faces of shape (B, 15, 48, 96): the lower halves of 5 "
                f"BGR 96x96 crops stacked frame-major; got {tuple(faces.shape)}"
            )
        audio_emb = self.audio_encoder(mel).flatten(1)
        face_emb = self.face_encoder(faces).flatten(1)
        return F.normalize(audio_emb, p=2, dim=1), F.normalize(face_emb, p=2, dim=1)


def expert_loss(
    audio_emb: torch.Tensor, face_emb: torch.Tensor, y: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """Binary cross entropy on the cosine similarity of the two embeddings (Wav2Lip's loss).

    BCE needs a probability. The cosine is one here because both encoders end in a ReLU:
    embeddings are non-negative, so their cosine lies in [0, 1] (0 = orthogonal = off-sync,
    1 = same direction = in sync). The cosine is clamped to ``[eps, 1 - eps]`` because an exact
    0 or 1 (a dead embedding, or rounding just above 1) would make BCE return its clamped
    log value of 100 and a useless gradient.

    Args:
        audio_emb: (B, D) audio embeddings (need not be normalised).
        face_emb: (B, D) face embeddings.
        y: (B,) or (B, 1) targets, 1 = in sync, 0 = off sync.

    Returns:
        Scalar mean loss.
    """
    if audio_emb.shape != face_emb.shape or audio_emb.ndim != 2:
        raise ValueError(
            f"expert_loss needs two (B, D) embeddings of equal shape, got {tuple(audio_emb.shape)}"
            f" and {tuple(face_emb.shape)}"
        )
    target = y.reshape(-1).to(audio_emb.dtype)
    if target.shape[0] != audio_emb.shape[0]:
        raise ValueError(
            f"y must hold one target per pair ({audio_emb.shape[0]}), got {tuple(y.shape)}"
        )
    similarity = F.cosine_similarity(audio_emb, face_emb, dim=1)
    return F.binary_cross_entropy(similarity.clamp(eps, 1.0 - eps), target)
