"""VCA-GAN: lip-to-speech with a Visual Context Attentional GAN (Kim, Hong, Ro,
NeurIPS 2021; spec §5, code ``ms-dot-k/Visual-Context-Attentional-GAN``).

Gray mouth crops ``(B, 1, T, 112, 112)`` at 25 fps become mel spectrograms at 100 Hz
(4 mel frames per video frame) at three scales, and a linear spectrogram for
Griffin-Lim. Parts, each its own entry of the official checkpoint:

1. ``v_front`` (:class:`VCAGANVisualFront`): MMAB's visual front (Conv3d stem + PReLU
   ResNet-18, :class:`~avlib.models.mmab.MMABVisualFront`) pooled over the whole 4 x 4
   map (upstream's ``AvgPool2d(4)``), Dropout 0.3 => local features ``phon``
   (B, T, 512); a 2-layer BiGRU(512, dropout 0.3) + Linear(1024 -> 512) => global
   context ``sent`` (B, 512, T).
2. ``gen`` (:class:`VCAGANGenerator`): ``phon`` repeated over 20 rows ‖ Gaussian noise
   (B, 128, 20, T) -> ``decode`` (3 blocks) -> ``g1`` (3 blocks) => coarse mel 20 x T;
   visual context attention ``att1`` + ``attconv1`` -> ``g2`` (x2 up) => 40 x 2T;
   ``att2`` + ``attconv2`` -> ``g3`` (x2 up) => 80 x 4T. Each ``to_mel`` ends in tanh:
   the mels are on :func:`avlib.audio.vcagan_normalise`'s scale ([-1, 1]).
3. ``post`` (:class:`VCAGANPostnet`): 80 x 4T mel -> 321 x 4T linear spectrogram.
4. Critics (:class:`VCAGANCritics`, training only): ``dis1``/``dis2``/``dis3``
   (:class:`VCAGANDiscriminator`, one per scale, unconditional and
   ``sent``-conditional logits) and the sync discriminator ``s_dis`` = MMAB's audio
   front (:class:`~avlib.models.mmab.MMABAudioFront`, no dropout): mel -> (B, T, 512)
   frame features that the sync loss compares with ``phon``.

**The postnet's scale** (GRID, the official setting): no output activation; it is
trained with L1 against the *raw* |STFT| magnitude (``vcagan_linear(wav)``,
``linear="magnitude"``) and upstream hands its output to Griffin-Lim as is
(``inverse_spec``). So ``output.linear`` is a raw magnitude for
:func:`avlib.audio.griffin_lim`, except that it can dip below 0 (upstream's
Griffin-Lim takes a negative value as a phase flip): clamp it first,
``griffin_lim(out.linear[b, 0, :, :n].clamp_min(0).numpy())``. The LRS loader's target
is a normalised log scale (``linear="lrs"``): a postnet trained there outputs that.

Upstream quirks reproduced: the noise is drawn inside ``forward``, in eval mode too
(upstream: ``torch.randn(...).cuda()``, from the global CPU generator; here on the
input's device, from ``generator`` when given: the values differ from upstream's for
the same seed); the BiGRU runs over padded frames as well (no packing) and the
conditional discriminators average ``sent`` over all T frames, padding included: only
the attention masks keys at ``t >= lengths[b]``. The attention's query reads the
generator map channel-major (feature ``c * F + f``) and its output Linear writes
frequency-major (feature ``f * C + c``), as upstream's ``view`` calls do. At test time
upstream averages the 80-band mels of the video and of its horizontal flip before the
postnet; that is left to the caller.

Official sizes (parameters, spec §5.3): v_front 19,588,096; gen 30,477,283; post
1,744,896; dis1 3,263,202; dis2 9,850,594; dis3 32,921,314; s_dis 4,100,224. ``width``
scales every channel count (:meth:`VCAGANConfig.named` ``"cpu"``); the 80 mel bands,
20 coarse rows and 321 linear bins stay.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlib.checkpoints import (
    CheckpointMismatch,
    LoadReport,
    load_official_parts,
    read_official,
)
from avlib.models.blocks import scale_channels
from avlib.models.mmab import MMABAudioFront, MMABVisualFront

__all__ = [
    "VCAGAN",
    "VCAGANConfig",
    "VCAGANCritics",
    "VCAGANDiscriminator",
    "VCAGANGenerator",
    "VCAGANOutput",
    "VCAGANPostnet",
    "VCAGANVisualFront",
    "VCAGAN_SIZES",
    "VCAGAN_PARTS",
    "VCAGAN_CRITIC_PARTS",
    "VCAGAN_CHECKPOINT_PARTS",
    "GenResBlk",
    "ResBlk",
    "VisualContextAttention",
    "load_vcagan_official",
]

MEL_BINS = 80  #: mel bands of the finest scale
LINEAR_BINS = 321  #: bins of the 640-point STFT the postnet predicts
COARSE_ROWS = MEL_BINS // 4  #: rows of the generator's first scale (and of its input)
#: The synthesizer's entries of an official checkpoint, in order.
VCAGAN_PARTS = ("v_front_state_dict", "gen_state_dict", "post_state_dict")
#: The critics' entries.
VCAGAN_CRITIC_PARTS = ("dis1_state_dict", "dis2_state_dict", "dis3_state_dict",
                       "s_dis_state_dict")
#: All seven entries of an official checkpoint (``train.py`` / ``train_LRS.py``).
VCAGAN_CHECKPOINT_PARTS = VCAGAN_PARTS + VCAGAN_CRITIC_PARTS
_SQRT2 = math.sqrt(2.0)


def _checked_width(width: float) -> float:
    width = float(width)
    if not width > 0 or not math.isfinite(width):
        raise ValueError(f"width must be a positive number (1.0 = official), "
                         f"got {width}")
    return width


@dataclass(frozen=True)
class VCAGANConfig:
    """The size of a :class:`VCAGAN`. The defaults are the official (GRID) network."""

    #: Multiplies every channel count (ResNet, GRU, the 512-d features, noise,
    #: generator, attention, postnet, discriminators); 1.0 = official.
    width: float = 1.0
    #: Visual context attention (False: the paper's ablation, g1 -> g2 -> g3 directly).
    attention: bool = True
    postnet: bool = True  #: the linear-spectrogram postnet (``post``)
    noise_dim: int = 128  #: noise channels before ``width`` scaling (0: no noise)
    front_dropout: float = 0.3  #: after the ResNet (on ``phon``)
    gru_dropout: float = 0.3  #: between the two BiGRU layers
    #: Side of the mouth crops the front reads; other sizes are resized (bilinear) by
    #: :meth:`VCAGAN.forward`. Official 112; CPU runs read smaller crops.
    input_size: int = 112

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", _checked_width(self.width))
        for name in ("attention", "postnet"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{name} must be True or False, got {getattr(self, name)!r}")
        if int(self.noise_dim) != self.noise_dim or self.noise_dim < 0:
            raise ValueError(f"noise_dim must be an integer >= 0, got {self.noise_dim}")
        object.__setattr__(self, "noise_dim", int(self.noise_dim))
        if int(self.input_size) != self.input_size or not 16 <= self.input_size <= 224:
            raise ValueError(f"input_size must be an integer in [16, 224], got "
                             f"{self.input_size!r}")
        object.__setattr__(self, "input_size", int(self.input_size))
        for name in ("front_dropout", "gru_dropout"):
            value = float(getattr(self, name))
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
            object.__setattr__(self, name, value)

    def channels(self, official: int) -> int:
        """An official channel count at this width."""
        return scale_channels(official, self.width)

    @property
    def dim(self) -> int:
        """Width of ``phon``, ``sent`` and the attention context (512 official)."""
        return self.channels(512)

    @classmethod
    def official(cls) -> "VCAGANConfig":
        return cls()

    @classmethod
    def named(cls, size: str, **changes) -> "VCAGANConfig":
        """A named size, with field changes: ``"official"`` (synthesizer 51.81 M
        parameters, critics 50.14 M) or ``"cpu"``, chapter 05's ``cpu`` profile (width 1/8:
        0.83 M and 0.78 M; 32 x 32 mouths, no dropout; the finest generator stage has 4
        channels)."""
        if size not in VCAGAN_SIZES:
            raise ValueError(
                f"unknown VCA-GAN size {size!r}; named sizes: {sorted(VCAGAN_SIZES)}")
        return cls(**{**asdict(VCAGAN_SIZES[size]), **changes})


VCAGAN_SIZES = {
    "official": VCAGANConfig(),
    "cpu": VCAGANConfig(width=0.125, input_size=32, front_dropout=0.0, gru_dropout=0.0),
}


# ------------------------------------------------------------------------------ blocks
class GenResBlk(nn.Module):
    """The generator's block: BN -> LeakyReLU(0.2) -> (nearest x2) -> Conv5x5 -> BN ->
    LeakyReLU -> Conv5x5, plus the input (upsampled, then 1x1-projected when the width
    changes); the sum / sqrt(2). Keys ``norm1``, ``conv1``, ``norm2``, ``conv2``,
    ``conv1x1``."""

    def __init__(self, cin: int, cout: int, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.conv1 = nn.Conv2d(cin, cout, 5, 1, 2)
        self.conv2 = nn.Conv2d(cout, cout, 5, 1, 2)
        self.norm1 = nn.BatchNorm2d(cin)
        self.norm2 = nn.BatchNorm2d(cout)
        self.conv1x1 = None
        if cin != cout:
            self.conv1x1 = nn.Conv2d(cin, cout, 1, 1, 0, bias=False)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm1(x))
        if self.upsample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.conv2(self.act(self.norm2(self.conv1(h))))
        short = x if self.conv1x1 is None else self.conv1x1(x)
        return (h + short) / _SQRT2


class ResBlk(nn.Module):
    """The critics' and the postnet's block (no normalisation): LeakyReLU(0.2) -> Conv5
    (cin -> cin) -> (avg-pool /2) -> LeakyReLU -> Conv5 (cin -> cout), plus the input
    (1x1-projected when the width changes, then pooled); the sum / sqrt(2). ``dims`` 2
    (discriminators) or 1 (postnet, along time). Keys ``conv1``, ``conv2``,
    ``conv1x1``."""

    def __init__(self, cin: int, cout: int, dims: int = 2, downsample: bool = False):
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
        self.dims = dims
        self.downsample = downsample
        self.conv1 = conv(cin, cin, 5, 1, 2)
        self.conv2 = conv(cin, cout, 5, 1, 2)
        self.conv1x1 = conv(cin, cout, 1, 1, 0, bias=False) if cin != cout else None
        self.act = nn.LeakyReLU(0.2)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if not self.downsample:
            return x
        return F.avg_pool2d(x, 2) if self.dims == 2 else F.avg_pool1d(x, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self._pool(x if self.conv1x1 is None else self.conv1x1(x))
        h = self.conv2(self.act(self._pool(self.conv1(self.act(x)))))
        return (h + short) / _SQRT2


class VisualContextAttention(nn.Module):
    """Attention of each generator step over the global visual context (upstream's
    ``AVAttention``).

    Keys: ``q`` Linear(C * F -> att_dim) over the generator map ``g`` (B, C, F, Tq),
    read channel-major per step; ``k``, ``v`` Linear(context_dim -> att_dim) over
    ``sent`` transposed (B, Tk, context_dim); ``mel`` Linear(att_dim -> out_channels *
    F), written frequency-major. ``softmax(q k^T / sqrt(att_dim))`` over the keys,
    masked keys at -inf. Returns ``(context map (B, out_channels, F, Tq), weights
    (B, Tq, Tk))``. Upstream hard-codes ``mel`` to 1280 outputs at both scales (64 x 20
    at the first, 32 x 40 at the second): ``out_channels`` is that split.
    """

    def __init__(self, channels: int, rows: int, context_dim: int, att_dim: int,
                 out_channels: int):
        super().__init__()
        self.rows = rows
        self.att_dim = att_dim
        self.k = nn.Linear(context_dim, att_dim)
        self.v = nn.Linear(context_dim, att_dim)
        self.q = nn.Linear(channels * rows, att_dim)
        self.mel = nn.Linear(att_dim, out_channels * rows)

    def forward(self, context: torch.Tensor, g: torch.Tensor,
                key_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, f, t = g.shape
        q = self.q(g.reshape(b, c * f, t).transpose(1, 2))  # (B, Tq, A)
        scores = q @ self.k(context).transpose(1, 2) / math.sqrt(self.att_dim)
        if key_mask is not None:  # (B, Tk), True = not a frame of that sample
            scores = scores.masked_fill(key_mask[:, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        out = self.mel(weights @ self.v(context))  # (B, Tq, F * C')
        return out.view(b, t, f, -1).permute(0, 3, 2, 1), weights


def _to_mel(channels: int) -> nn.Sequential:
    """``to_mel``: BN, LeakyReLU(0.2), Conv1x1 -> 1, tanh."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.LeakyReLU(0.2),
                         nn.Conv2d(channels, 1, 1, 1, 0), nn.Tanh())


def _key_mask(lengths, batch: int, frames: int, device) -> torch.Tensor | None:
    """(B, T) bool, True at ``t >= lengths[b]``; None when ``lengths`` is None."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, device=device).reshape(-1).long()
    if lengths.numel() != batch:
        raise ValueError(
            f"lengths has {lengths.numel()} entries for a batch of {batch}")
    if lengths.numel() and (lengths.min() < 1 or lengths.max() > frames):
        raise ValueError(f"lengths must be in [1, {frames}] (the video frames), got "
                         f"{lengths.tolist()}")
    return torch.arange(frames, device=device)[None, :] >= lengths[:, None]


# ------------------------------------------------------------------------------ parts
class VCAGANVisualFront(MMABVisualFront):
    """(B, 1, T, H, W) gray crops -> ``(phon (B, T, D), sent (B, D, T))``,
    D = 512 x width.

    MMAB's front (keys ``frontend.*``, ``resnet.*``) pooled over the whole last map
    (what upstream's ``AvgPool2d(4)`` does on 112-px input: a 4 x 4 map), then Dropout;
    and ``sentence_encoder`` (2-layer BiGRU, hidden D, dropout between the layers) +
    ``fc`` Linear(2D -> D) over all T frames (no packing: padded frames reach ``sent``).
    """

    def __init__(self, width: float = 1.0, dropout: float = 0.3,
                 gru_dropout: float = 0.3):
        widths = tuple(scale_channels(n, width) for n in (64, 64, 128, 256, 512))
        super().__init__(widths, dropout, pool="mean")
        self.dim = widths[-1]
        self.sentence_encoder = nn.GRU(self.dim, self.dim, 2, batch_first=True,
                                       bidirectional=True, dropout=gru_dropout)
        self.fc = nn.Linear(2 * self.dim, self.dim)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phon = super().forward(video)
        sent, _ = self.sentence_encoder(phon)
        return phon, self.fc(sent).transpose(1, 2)


class VCAGANGenerator(nn.Module):
    """(phon (B, T, D), sent (B, D, T)) -> mels (B, 1, 20, T), (B, 1, 40, 2T),
    (B, 1, 80, 4T).

    Keys ``decode.{0-2}``, ``g1``/``g2``/``g3.{0-2}`` (:class:`GenResBlk`),
    ``to_mel1-3``, and with ``attention`` ``att1``, ``attconv1`` (Conv5x5 192 -> 128),
    ``att2``, ``attconv2`` (96 -> 64) (:class:`VisualContextAttention`, 256-d).
    Official widths: decode 640 -> 512 -> 256 -> 256, g1 128, g2 64, g3 32.

    ``forward(phon, sent, lengths=None, *, generator=None, return_attention=False)``:
    ``lengths`` (B,) video frames per sample (None: all T) masks the attention's keys;
    the noise is drawn here, ``torch.randn(..., generator=generator)`` on ``phon``'s
    device (a ``generator`` must live there), in eval mode too, as upstream. Returns the
    3 mels, or ``(mels, attention)`` with ``return_attention``: the two weight maps
    (B, T, T) and (B, 2T, T), or None without attention.
    """

    def __init__(self, width: float = 1.0, noise_dim: int = 128,
                 attention: bool = True):
        super().__init__()
        c = {n: scale_channels(n, width) for n in (512, 256, 128, 64, 32)}
        self.dim = c[512]
        self.noise_channels = scale_channels(noise_dim, width) if noise_dim else 0
        self.attention = attention
        self.decode = nn.ModuleList([
            GenResBlk(self.dim + self.noise_channels, c[512]),
            GenResBlk(c[512], c[256]), GenResBlk(c[256], c[256])])
        self.g1 = nn.ModuleList([GenResBlk(c[256], c[128]), GenResBlk(c[128], c[128]),
                                 GenResBlk(c[128], c[128])])
        self.g2 = nn.ModuleList([GenResBlk(c[128], c[64], upsample=True),
                                 GenResBlk(c[64], c[64]), GenResBlk(c[64], c[64])])
        self.g3 = nn.ModuleList([GenResBlk(c[64], c[32], upsample=True),
                                 GenResBlk(c[32], c[32]), GenResBlk(c[32], c[32])])
        if attention:
            self.att1 = VisualContextAttention(c[128], COARSE_ROWS, self.dim, c[256],
                                               c[64])
            self.attconv1 = nn.Conv2d(c[128] + c[64], c[128], 5, 1, 2)
            self.att2 = VisualContextAttention(c[64], 2 * COARSE_ROWS, self.dim, c[256],
                                               c[32])
            self.attconv2 = nn.Conv2d(c[64] + c[32], c[64], 5, 1, 2)
        self.to_mel1 = _to_mel(c[128])
        self.to_mel2 = _to_mel(c[64])
        self.to_mel3 = _to_mel(c[32])

    def forward(self, phon: torch.Tensor, sent: torch.Tensor, lengths=None, *,
                generator: torch.Generator | None = None,
                return_attention: bool = False):
        if phon.dim() != 3 or phon.shape[2] != self.dim:
            raise ValueError(
                f"phon must be (B, T, {self.dim}), got {tuple(phon.shape)}")
        b, t, _ = phon.shape
        if tuple(sent.shape) != (b, self.dim, t):
            raise ValueError(f"sent must be (B, {self.dim}, T) = {(b, self.dim, t)}, "
                             f"got {tuple(sent.shape)}")
        key_mask = _key_mask(lengths, b, t, phon.device)
        x = phon.transpose(1, 2).unsqueeze(2).expand(-1, -1, COARSE_ROWS, -1)
        if self.noise_channels:
            noise = torch.randn((b, self.noise_channels, COARSE_ROWS, t),
                                generator=generator, device=phon.device,
                                dtype=phon.dtype)
            x = torch.cat([x, noise], dim=1)
        for block in (*self.decode, *self.g1):
            x = block(x)
        g1 = x
        context = sent.transpose(1, 2)  # (B, T, D): keys and values
        weights = []
        if self.attention:
            ctx, w = self.att1(context, g1, key_mask)
            x = self.attconv1(torch.cat([g1, ctx], dim=1))
            weights.append(w)
        for block in self.g2:
            x = block(x)
        g2 = x
        if self.attention:
            ctx, w = self.att2(context, g2, key_mask)
            x = self.attconv2(torch.cat([g2, ctx], dim=1))
            weights.append(w)
        for block in self.g3:
            x = block(x)
        mels = (self.to_mel1(g1), self.to_mel2(g2), self.to_mel3(x))
        if return_attention:
            return mels, (tuple(weights) if self.attention else None)
        return mels


class VCAGANPostnet(nn.Module):
    """(B, 1, 80, 4T) mel -> (B, 1, 321, 4T) linear spectrogram (GRID: the raw |STFT|
    magnitude scale, unbounded; see the module docstring before Griffin-Lim).

    Keys ``postnet.{0 Conv1d(80 -> 128, 7), 1 BN, 3-5 ResBlk 128 -> 256, 256, 256 (1-D,
    no norm), 6 Conv1d(256 -> 321, 1, no bias)}`` (2 is the LeakyReLU).
    """

    def __init__(self, width: float = 1.0):
        super().__init__()
        c128, c256 = scale_channels(128, width), scale_channels(256, width)
        self.postnet = nn.Sequential(
            nn.Conv1d(MEL_BINS, c128, 7, 1, 3), nn.BatchNorm1d(c128), nn.LeakyReLU(0.2),
            ResBlk(c128, c256, dims=1), ResBlk(c256, c256, dims=1),
            ResBlk(c256, c256, dims=1),
            nn.Conv1d(c256, LINEAR_BINS, 1, 1, 0, bias=False))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() == 3:
            mel = mel.unsqueeze(1)
        if mel.dim() != 4 or mel.shape[1] != 1 or mel.shape[2] != MEL_BINS:
            raise ValueError(
                f"mel must be (B, 1, {MEL_BINS}, 4T), got {tuple(mel.shape)}")
        return self.postnet(mel.squeeze(1)).unsqueeze(1)


class _SpatialMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class VCAGANDiscriminator(nn.Module):
    """One scale's critic: ``forward(mel, sent) -> (uncond, cond)``, (B, 1) logits each.

    ``phase`` 1, 2, 3 takes the 20 x T, 40 x 2T, 80 x 4T mel. Keys: ``main`` = Conv5x5
    (1 -> 32) and ``phase + 1`` down-sampling :class:`ResBlk` (channels x2 up to 512)
    down to (C, 5, T/4); ``uncond.{1 Conv5x5 p0, 4 Linear -> 1}``; ``cond.{1 Conv5x5
    (C + 512 -> C), 3 Conv5x5 p0, 6 Linear -> 1}`` on the map concatenated with the
    time-mean of ``sent`` (B, 512, T) broadcast over the (5, T/4) map (upstream sizes
    the broadcast from the video length, T // 4: the same map). The p0 convolutions
    need T/4 >= 5: at least 20 video frames.
    """

    registry_name = "vcagan_discriminator"

    def __init__(self, phase: int = 1, width: float = 1.0):
        super().__init__()
        if str(phase) not in ("1", "2", "3"):
            raise ValueError(f"phase must be 1, 2 or 3, got {phase!r}")
        phase, width = int(phase), _checked_width(width)
        self.phase = phase
        self.rows = COARSE_ROWS * 2 ** (phase - 1)
        self.config = {"name": self.registry_name,
                       "kwargs": {"phase": phase, "width": width}}
        dim_in, max_dim = scale_channels(32, width), scale_channels(512, width)
        self.context_dim = scale_channels(512, width)
        blocks: list[nn.Module] = [nn.Conv2d(1, dim_in, 5, 1, 2)]
        for _ in range(phase + 1):
            dim_out = min(2 * dim_in, max_dim)
            blocks.append(ResBlk(dim_in, dim_out, dims=2, downsample=True))
            dim_in = dim_out
        self.main = nn.Sequential(*blocks)
        self.uncond = nn.Sequential(
            nn.LeakyReLU(0.2), nn.Conv2d(dim_out, dim_out, 5, 1, 0), nn.LeakyReLU(0.2),
            _SpatialMean(), nn.Linear(dim_out, 1))
        self.cond = nn.Sequential(
            nn.LeakyReLU(0.2), nn.Conv2d(dim_out + self.context_dim, dim_out, 5, 1, 2),
            nn.LeakyReLU(0.2), nn.Conv2d(dim_out, dim_out, 5, 1, 0), nn.LeakyReLU(0.2),
            _SpatialMean(), nn.Linear(dim_out, 1))

    def forward(self, mel: torch.Tensor,
                sent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if mel.dim() != 4 or mel.shape[1] != 1 or mel.shape[2] != self.rows:
            raise ValueError(f"dis{self.phase} takes a (B, 1, {self.rows}, W) mel, got "
                             f"{tuple(mel.shape)}")
        if sent.dim() != 3 or sent.shape[:2] != (mel.shape[0], self.context_dim):
            raise ValueError(f"sent must be (B, {self.context_dim}, T), got "
                             f"{tuple(sent.shape)}")
        h = self.main(mel)
        if min(h.shape[-2:]) < 5:
            raise ValueError(f"dis{self.phase} needs a mel of at least "
                             f"{5 * 2 ** (self.phase + 1)} frames (20 video frames), "
                             f"got {mel.shape[-1]}")
        context = sent.mean(dim=2)[:, :, None, None].expand(-1, -1, *h.shape[-2:])
        return self.uncond(h), self.cond(torch.cat([h, context], dim=1))


# ------------------------------------------------------------------------------ models
@dataclass
class VCAGANOutput:
    """What :meth:`VCAGAN.forward` returns.

    Attributes:
        mels: (B, 1, 20, T), (B, 1, 40, 2T), (B, 1, 80, 4T) in [-1, 1]
            (:func:`avlib.audio.vcagan_normalise`'s scale).
        linear: (B, 1, 321, 4T) postnet output (GRID: raw magnitude, may be < 0: clamp
            before :func:`avlib.audio.griffin_lim`), None without a postnet.
        phon: (B, T, D) local visual features (the sync loss's visual side).
        sent: (B, D, T) global context (the discriminators' condition).
        attention: the two attention maps (B, T, T), (B, 2T, T) when asked (None
            otherwise, and without attention).
    """

    mels: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    linear: torch.Tensor | None
    phon: torch.Tensor
    sent: torch.Tensor
    attention: tuple[torch.Tensor, torch.Tensor] | None = None


class VCAGAN(nn.Module):
    """VCA-GAN's synthesizer: ``v_front``, ``gen``, ``post`` (absent when
    ``postnet=False``).

    Args: the fields of :class:`VCAGANConfig` (defaults: the official network).

    ``forward(video, lengths=None, *, generator=None, return_attention=False) ->
    VCAGANOutput`` with ``video`` (B, 1, T, H, W) normalised gray crops (official
    112 x 112) and ``lengths`` (B,) real frames per sample (None: all T). The output is
    random through the generator's noise unless ``generator`` is given. The critics are
    a separate module (:class:`VCAGANCritics`); :meth:`from_official` loads the
    synthesizer's entries of an official checkpoint, :func:`load_vcagan_official` all
    seven.
    """

    registry_name = "vcagan"
    config_class = VCAGANConfig
    crop_stream = "vcagan112"  #: the store's crops it reads (112 x 112 gray mouths)
    audio_feature = "vcagan_features"  #: :func:`avlib.audio.vcagan_features` targets

    def __init__(self, **kwargs):
        super().__init__()
        cfg = VCAGANConfig(**kwargs)
        self.cfg = cfg
        self.config = {"name": self.registry_name, "kwargs": asdict(cfg)}
        self.v_front = VCAGANVisualFront(cfg.width, cfg.front_dropout, cfg.gru_dropout)
        self.gen = VCAGANGenerator(cfg.width, cfg.noise_dim, cfg.attention)
        self.post = VCAGANPostnet(cfg.width) if cfg.postnet else None

    def official_parts(self) -> dict[str, nn.Module]:
        """The official checkpoint's synthesizer entries and the parts they load
        into."""
        parts = {"v_front_state_dict": self.v_front, "gen_state_dict": self.gen}
        if self.post is not None:
            parts["post_state_dict"] = self.post
        return parts

    def forward(self, video: torch.Tensor, lengths=None, *,
                generator: torch.Generator | None = None,
                return_attention: bool = False) -> VCAGANOutput:
        side = self.cfg.input_size
        if video.shape[-2:] != (side, side):
            b, c, t, h, w = video.shape
            frames = video.transpose(1, 2).reshape(b * t, c, h, w)
            frames = F.interpolate(frames, size=(side, side), mode="bilinear",
                                   align_corners=False, antialias=True)
            video = frames.reshape(b, t, c, side, side).transpose(1, 2)
        phon, sent = self.v_front(video)
        out = self.gen(phon, sent, lengths, generator=generator,
                       return_attention=return_attention)
        mels, attention = out if return_attention else (out, None)
        linear = self.post(mels[2]) if self.post is not None else None
        return VCAGANOutput(mels, linear, phon, sent, attention)

    @classmethod
    def from_official(cls, path_or_obj: str | os.PathLike | Mapping,
                      **changes) -> tuple["VCAGAN", LoadReport]:
        """Build the synthesizer (``changes``: config fields) and load the ``v_front``,
        ``gen`` (and ``post``) entries of an official checkpoint strictly; the critics'
        entries are reported as ignored. Returns ``(model in eval mode, report)``."""
        model = cls(**changes)
        raw, source = _read(path_or_obj)
        report = _load(model.official_parts(), raw, source, model.cfg)
        return model.eval(), report


class VCAGANCritics(nn.Module):
    """VCA-GAN's training critics: ``dis1``, ``dis2``, ``dis3``
    (:class:`VCAGANDiscriminator` phases 1-3) and ``s_dis``, the sync discriminator's
    audio encoder (MMAB's audio front: (B, 1, 80, 4T) -> (B, T, 512 x width), keys
    ``frontend``, ``Res_block.0``, ``Linear``; upstream's ``sync_Discriminator`` has no
    dropout). The losses are not part of it.

    ``forward(mels, sent)`` scores the three scales: ``((u1, c1), (u2, c2), (u3, c3))``;
    :meth:`pyramid` makes a real mel's three scales.
    """

    registry_name = "vcagan_critics"

    def __init__(self, width: float = 1.0):
        super().__init__()
        width = _checked_width(width)
        self.width = width
        self.config = {"name": self.registry_name, "kwargs": {"width": width}}
        self.dis1 = VCAGANDiscriminator(1, width)
        self.dis2 = VCAGANDiscriminator(2, width)
        self.dis3 = VCAGANDiscriminator(3, width)
        widths = (scale_channels(128, width), scale_channels(256, width))
        self.s_dis = MMABAudioFront(widths, scale_channels(512, width), MEL_BINS,
                                    dropout=0.0)

    def official_parts(self) -> dict[str, nn.Module]:
        """The official checkpoint's critic entries and the parts they load into."""
        parts = (self.dis1, self.dis2, self.dis3, self.s_dis)
        return dict(zip(VCAGAN_CRITIC_PARTS, parts))

    @staticmethod
    def pyramid(mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A real (B, 1, 80, 4T) mel at the generator's three scales, as upstream:
        bilinear ``F.interpolate`` by 0.25 and 0.5 (``align_corners=False``), and the
        mel itself."""
        def scaled(factor: float) -> torch.Tensor:
            return F.interpolate(mel, scale_factor=factor, mode="bilinear",
                                 align_corners=False)

        return scaled(0.25), scaled(0.5), mel

    def forward(self, mels: Sequence[torch.Tensor], sent: torch.Tensor):
        if len(mels) != 3:
            raise ValueError(
                f"mels must be the 3 scales (20, 40, 80 rows), got {len(mels)}")
        critics = (self.dis1, self.dis2, self.dis3)
        return tuple(dis(mel, sent) for dis, mel in zip(critics, mels))


# ------------------------------------------------------------------------------ loading
def _read(path_or_obj) -> tuple[object, str]:
    if isinstance(path_or_obj, Mapping):
        return path_or_obj, "<state dict>"
    return read_official(path_or_obj), str(path_or_obj)


def _load(parts: Mapping[str, nn.Module], raw: object, source: str,
          cfg: VCAGANConfig) -> LoadReport:
    try:
        return load_official_parts(parts, raw, source=source)
    except CheckpointMismatch as err:
        if (cfg.postnet and isinstance(raw, Mapping) and "post_state_dict" not in raw
                and "post_state_dict" in parts):
            raise CheckpointMismatch(
                f"{err} (a checkpoint without a postnet: pass postnet=False)") from None
        raise


def load_vcagan_official(path_or_obj: str | os.PathLike | Mapping, *,
                         return_report: bool = False, **changes):
    """Build :class:`VCAGAN` and :class:`VCAGANCritics` and load an official checkpoint
    (the seven ``<part>_state_dict`` entries of spec §5.3) into them strictly.

    ``path_or_obj``: a file (read with ``weights_only=True``) or the loaded dict;
    ``changes``: :class:`VCAGANConfig` fields (the critics take its ``width``).
    ``module.`` prefixes are stripped; every part is checked before any is loaded, and
    a missing entry, key or shape raises :class:`~avlib.checkpoints.CheckpointMismatch`
    naming the part. Returns ``(model, critics)`` in eval mode (``.train()`` them to
    resume training), and the :class:`~avlib.checkpoints.LoadReport` third with
    ``return_report=True``.
    """
    model = VCAGAN(**changes)
    critics = VCAGANCritics(model.cfg.width)
    raw, source = _read(path_or_obj)
    parts = {**model.official_parts(), **critics.official_parts()}
    report = _load(parts, raw, source, model.cfg)
    if return_report:
        return model.eval(), critics.eval(), report
    return model.eval(), critics.eval()
