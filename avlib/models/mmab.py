"""MMAB: Multi-Modality Associative Bridging through memory (Kim, Hong, Park, Ro, ICCV 2021;
spec §5.7-5.8, code ``ms-dot-k/Visual-Audio-Memory``).

A word lip reader that *recalls audio* it never hears at test time. Parts, each its own module
and its own entry of the official checkpoint:

1. ``v_front`` (:class:`MMABVisualFront`): gray mouth crops ``(B, 1, T, 112, 112)`` ->
   Conv3d(1 -> 64, (5, 7, 7), stride (1, 2, 2), pad (2, 3, 3), no bias), BatchNorm3d, PReLU(64),
   MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) -> a per-frame ResNet-18 (BasicBlocks with two
   per-channel PReLUs, 1x1 conv + BN downsample) -> ``AvgPool2d(3)`` -> Dropout 0.3 ->
   ``(B, T, 512)``. No temporal model.

   **Quirk kept deliberately**: a 112-px input leaves a 4 x 4 map after the last stage and
   ``AvgPool2d(3)`` (stride 3, no padding) keeps one cell, the mean of the **top-left 3 x 3**:
   the last row and column of the map never reach the classifier (VCA-GAN's otherwise identical
   ResNet uses ``AvgPool2d(4)``). Here the feature is always ``AvgPool2d(3)``'s first cell when
   the map is at least 3 x 3 (the same numbers as upstream for maps of 3-5 px, i.e. inputs of
   65-160 px; upstream would break on larger maps, whose pooled grid has several cells), and the
   mean of the whole map when it is smaller (CPU crops of 32-64 px: upstream's pool would have no
   output there). ``pool="mean"`` averages the whole map at every size (the fix, for ablations).
2. ``a_front`` (:class:`MMABAudioFront`): an 80-band mel ``(B, 1, 80, 4T)`` (:func:`avlib.audio.
   mmab_mel`) -> Conv3x3 s2 (1 -> 128, bias) + BN + PReLU -> Conv3x3 s2 (128 -> 256, bias) + BN +
   PReLU -> a ReLU BasicBlock(256) -> ``(B, 256, 20, T)`` read channel-major per frame (feature
   ``c * 20 + f``) -> Dropout 0.3 -> Linear(5120 -> 512) -> ``(B, T, 512)``. Keys as VCA-GAN's
   sync discriminator: ``frontend``, ``Res_block.0``, ``Linear``.
3. ``mem`` (:class:`Memory`): a key memory and a value memory (``n_slot x 512``). Each visual
   frame addresses the key slots, ``softmax(radius * cos(q_embd(v), key))``; the same weights
   read the (detached) value slots: the recalled "virtual audio". ``fusion`` (Linear 1024 ->
   512 after Dropout 0.5) joins the frame and its recalled audio. In training the real audio
   addresses the value slots through ``v_embd``; ``recon_loss`` makes the value memory
   reconstruct the audio and ``add_loss`` (KL) pulls the key addressing towards the value
   addressing, which is how the memory *bridges* the two modalities.
4. ``back``: :class:`GRUBackend` (2-layer BiGRU(512), mean over time, Linear(1024 -> 500)) or
   :class:`MSTCNBackend` (4 levels of a multi-branch TCN, 3 x 256 channels with kernels 3/5/7,
   dilation 2^i, mean over time, Linear(768 -> 500)).

Training loss (all weight 1): CE(back(visual + recalled audio)) + CE(back(visual + real audio))
+ add_loss + recon_loss (:func:`mmab_loss`). At test time only the visual path runs.

Official sizes (parameters / state-dict entries, spec §5.8): v_front 11,186,688 / 137; a_front
4,100,224 / 30; mem 1,140,224 / 8 (88 slots) or 1,222,144 / 8 (168); GRU backend 8,389,108 / 18;
MS-TCN backend 25,187,828 / 206. Released pairs: GRU with 88 slots, MS-TCN with 168
(:meth:`MMABConfig.released`). Key names were checked against the stored upstream modules
(visual front, ResNet, memory, backends) and VCA-GAN's audio front, which the spec says MMAB's
shares; MMAB's own ``audio_front.py`` was not available: its layout is that assumption.
CPU sizes are options of the same classes (:meth:`MMABConfig.named`).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlib.checkpoints import LoadReport, load_official_parts, read_official

__all__ = [
    "MMAB",
    "MMABConfig",
    "MMABOutput",
    "MMAB_SIZES",
    "MMAB_PARTS",
    "MMABVisualFront",
    "MMABAudioFront",
    "Memory",
    "GRUBackend",
    "MSTCNBackend",
    "spatial_pool",
    "mmab_loss",
]

LRW_CLASSES = 500
BACKENDS = ("gru", "mstcn")
POOLS = ("avg3", "mean")
MODES = ("memory", "audiovisual", "visual", "audio")
#: The entries of an official checkpoint, in the order of the parts they hold.
MMAB_PARTS = ("v_front_state_dict", "a_front_state_dict", "mem_state_dict", "back_state_dict")
#: Memory slots of the released checkpoints, per backend (README; argparse default is 88).
RELEASED_SLOTS = {"gru": 88, "mstcn": 168}


@dataclass(frozen=True)
class MMABConfig:
    """The size of an :class:`MMAB`. The defaults are the released Bi-GRU model (88 slots)."""

    n_classes: int = LRW_CLASSES  #: words
    n_slot: int = 88  #: memory slots (released: 88 with the GRU, 168 with the MS-TCN)
    radius: float = 16.0  #: softmax temperature of the cosine addressing
    backend: str = "gru"  #: "gru" or "mstcn"
    dim: int = 512  #: feature width of both fronts, the memory and the backend input
    #: Visual stem channels, then the 4 ResNet-18 stages; the last must equal ``dim``.
    front_widths: tuple[int, ...] = (64, 64, 128, 256, 512)
    audio_widths: tuple[int, ...] = (128, 256)  #: the audio front's two convolutions
    n_mels: int = 80  #: mel bands of the audio input (a multiple of 4)
    gru_hidden: int = 512
    gru_layers: int = 2
    tcn_channels: int = 768  #: per level, split evenly over the kernels (3 x 256)
    tcn_levels: int = 4
    tcn_kernels: tuple[int, ...] = (3, 5, 7)
    front_dropout: float = 0.3  #: after the visual front
    audio_dropout: float = 0.3  #: before the audio front's Linear
    fusion_dropout: float = 0.5  #: before the memory's fusion Linear
    gru_dropout: float = 0.3  #: between the GRU layers
    tcn_dropout: float = 0.2
    #: Visual pooling: "avg3" (upstream: AvgPool2d(3)'s first cell, see the module docstring)
    #: or "mean" (the whole map).
    pool: str = "avg3"
    #: The words of the classes, in class order (empty: unknown). Saved with the model.
    vocabulary: tuple[str, ...] = ()
    #: Side of the square gray mouth crops it was trained on (112 official).
    input_size: int = 112

    def __post_init__(self) -> None:
        for name in ("front_widths", "audio_widths", "tcn_kernels"):
            object.__setattr__(self, name, tuple(int(w) for w in getattr(self, name)))
        object.__setattr__(self, "vocabulary", tuple(str(w) for w in self.vocabulary))
        object.__setattr__(self, "radius", float(self.radius))
        if self.vocabulary and len(self.vocabulary) != int(self.n_classes):
            raise ValueError(f"vocabulary has {len(self.vocabulary)} words but n_classes is {self.n_classes}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if len(self.front_widths) != 5 or min(self.front_widths) < 1:
            raise ValueError(f"front_widths must be 5 positive channel counts (stem + 4 stages), "
                             f"got {self.front_widths}")
        if self.front_widths[-1] != self.dim:
            raise ValueError(f"the last visual width ({self.front_widths[-1]}) must equal dim ({self.dim})")
        if len(self.audio_widths) != 2 or min(self.audio_widths) < 1:
            raise ValueError(f"audio_widths must be 2 positive channel counts, got {self.audio_widths}")
        if self.n_mels < 4 or self.n_mels % 4:
            raise ValueError(f"n_mels must be a positive multiple of 4, got {self.n_mels}")
        if not self.tcn_kernels or any(k < 1 or k % 2 == 0 for k in self.tcn_kernels):
            raise ValueError(f"tcn_kernels must be odd (symmetric chomp), got {self.tcn_kernels}")
        if self.tcn_channels % len(self.tcn_kernels):
            raise ValueError(f"tcn_channels ({self.tcn_channels}) must split evenly over "
                             f"{len(self.tcn_kernels)} kernels")
        for name in ("n_classes", "n_slot", "dim", "gru_hidden", "gru_layers", "tcn_channels",
                     "tcn_levels", "input_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.radius <= 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")
        for name in ("front_dropout", "audio_dropout", "fusion_dropout", "gru_dropout", "tcn_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def mel_bins_out(self) -> int:
        """Frequency rows left after the audio front's two stride-2 convolutions (20 of 80)."""
        return self.n_mels // 4

    @classmethod
    def official(cls) -> "MMABConfig":
        return cls()

    @classmethod
    def released(cls, backend: str = "gru", **changes) -> "MMABConfig":
        """A released pair: ``"gru"`` (88 slots) or ``"mstcn"`` (168 slots)."""
        if backend not in RELEASED_SLOTS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        return cls(**{"backend": backend, "n_slot": RELEASED_SLOTS[backend], **changes})

    @classmethod
    def named(cls, size: str, **changes) -> "MMABConfig":
        """A named size: ``"official"`` (Bi-GRU, 88 slots: 24.82 M parameters) or ``"cpu"``
        (every width / 4, dim 128, 32 x 32 crops: 1.67 M with the GRU, 2.70 M with the
        MS-TCN), with field changes."""
        if size not in MMAB_SIZES:
            raise ValueError(f"unknown MMAB size {size!r}; named sizes: {sorted(MMAB_SIZES)}")
        return cls(**{**asdict(MMAB_SIZES[size]), **changes})


MMAB_SIZES = {
    "official": MMABConfig(),
    "cpu": MMABConfig(dim=128, front_widths=(16, 16, 32, 64, 128), audio_widths=(32, 64),
                      gru_hidden=128, tcn_channels=192, input_size=32),
}


# ------------------------------------------------------------------------------ fronts
class BasicBlock(nn.Module):
    """ResNet BasicBlock: conv3x3-BN-act, conv3x3-BN, + shortcut, act. ``prelu`` gives the
    visual front's per-channel PReLUs (``relu1``, ``relu2``: keys); otherwise ReLUs (the audio
    front's block, no parameters). Shortcut ``downsample`` = 1x1 conv (stride) + BN."""

    def __init__(self, cin: int, cout: int, stride: int = 1, prelu: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.PReLU(cout) if prelu else nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.PReLU(cout) if prelu else nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        short = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + short)


def spatial_pool(x: torch.Tensor, pool: str = "avg3") -> torch.Tensor:
    """(N, C, H, W) -> (N, C). ``"avg3"``: the first cell of ``AvgPool2d(3)``, i.e. the mean of
    the top-left 3 x 3 (upstream's numbers for 3-5 px maps), or the mean of the whole map when
    it is smaller than 3 x 3; ``"mean"``: the mean of the whole map."""
    if pool == "avg3" and min(x.shape[-2:]) >= 3:
        return F.avg_pool2d(x, 3)[:, :, 0, 0]
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    return x.mean(dim=(2, 3))


class _ResNet(nn.Module):
    """The four stages of a ResNet-18 (``layer1..4``, strides 1, 2, 2, 2), PReLU blocks."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        channels = cin
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2, 2)), start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(channels, width, stride),
                                                      BasicBlock(width, width, 1)))
            channels = width
        # Upstream's initialisation of the ResNet's 2-D convolutions (He normal on fan-out).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return x


class MMABVisualFront(nn.Module):
    """(B, 1, T, H, W) normalised gray crops (or (B, T, H, W)) -> (B, T, widths[-1]).

    Keys: ``frontend.{0 conv, 1 BN, 2 PReLU}``, ``resnet.layer{1-4}.{0,1}.{conv1, bn1, relu1,
    conv2, bn2, relu2, downsample.0/1}``. Pooling per :func:`spatial_pool` (the top-left 3 x 3
    quirk on 112-px input), then dropout.
    """

    def __init__(self, widths: tuple[int, ...] = (64, 64, 128, 256, 512), dropout: float = 0.3,
                 pool: str = "avg3"):
        super().__init__()
        stem = widths[0]
        self.pool = pool
        self.frontend = nn.Sequential(
            nn.Conv3d(1, stem, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False), nn.BatchNorm3d(stem),
            nn.PReLU(stem), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        self.resnet = _ResNet(stem, tuple(widths[1:]))
        self.dropout = nn.Dropout(dropout)

    def feature_map(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, H, W) -> the last stage's map (B * T, C, h, w), before pooling."""
        if video.dim() == 4:
            video = video.unsqueeze(1)
        if video.dim() != 5 or video.shape[1] != 1:
            raise ValueError(f"video must be (B, 1, T, H, W) gray, got {tuple(video.shape)}")
        x = self.frontend(video)
        b, c, t = x.shape[:3]
        return self.resnet(x.transpose(1, 2).reshape(b * t, c, *x.shape[3:]))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, t = video.shape[0], video.shape[-3]
        x = spatial_pool(self.feature_map(video), self.pool)
        return self.dropout(x).view(b, t, -1)


class MMABAudioFront(nn.Module):
    """(B, 1, n_mels, 4T) mel (or (B, n_mels, 4T)) -> (B, T, dim).

    Two 3x3 stride-2 convolutions (padding 1, with bias) each with BN and PReLU take 80 x 4T to
    20 x T; a ReLU BasicBlock follows; each time step's (C, 20) map is flattened channel-major
    (feature ``c * 20 + f``), dropped out, and projected by ``Linear``.
    """

    def __init__(self, widths: tuple[int, ...] = (128, 256), dim: int = 512, n_mels: int = 80,
                 dropout: float = 0.3):
        super().__init__()
        c1, c2 = widths
        self.n_mels = n_mels
        self.frontend = nn.Sequential(
            nn.Conv2d(1, c1, 3, 2, 1), nn.BatchNorm2d(c1), nn.PReLU(c1),
            nn.Conv2d(c1, c2, 3, 2, 1), nn.BatchNorm2d(c2), nn.PReLU(c2))
        self.Res_block = nn.Sequential(BasicBlock(c2, c2, 1, prelu=False))
        self.dropout = nn.Dropout(dropout)
        self.Linear = nn.Linear(c2 * (n_mels // 4), dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() == 3:
            mel = mel.unsqueeze(1)
        if mel.dim() != 4 or mel.shape[1] != 1 or mel.shape[2] != self.n_mels:
            raise ValueError(f"audio must be a (B, 1, {self.n_mels}, 4T) mel, got {tuple(mel.shape)}")
        x = self.Res_block(self.frontend(mel))  # (B, C, n_mels / 4, T)
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t).transpose(1, 2)  # channel-major: feature c * f_rows + f
        return self.Linear(self.dropout(x))


# ------------------------------------------------------------------------------ memory
class Memory(nn.Module):
    """The visual-audio memory (keys ``key``, ``value``, ``q_embd``, ``v_embd``, ``fusion``).

    ``forward(query, value=None, inference=False)`` with ``query`` and ``value`` (B, T, dim)
    returns ``(te_fusion, tr_fusion, recon_loss, add_loss)`` (spec §5.8):

    * key addressing, per (B * T) row: ``softmax(radius * cos(q_embd(query), key))`` over the
      slots (the query itself is not normalised before ``q_embd``);
    * recall ``key_add @ value.detach()`` (no gradient reaches the value memory this way);
    * ``te_fusion = fusion(dropout(cat([query, recall])))``, ``tr_fusion`` the same Linear and
      dropout on ``cat([query, value])``: (B, T, dim);
    * value addressing ``softmax(radius * cos(v_embd(value.detach()), value memory))``;
      ``recon_loss = mse(value_add @ value memory, value.detach())`` and
      ``add_loss = kl_div(log(key_add), value_add.detach(), 'batchmean')``, both of shape (1,).

    ``inference=True`` returns ``(te_fusion, None, None, None)``. The last key addressing
    (B, T, n_slot, detached) is kept in :attr:`last_key_address` for slot-usage figures;
    :meth:`address` computes it without the rest. The dropout sits before ``fusion`` as at the
    commit the spec read (aa5dda7); an earlier upstream commit applied it after.
    """

    def __init__(self, radius: float = 16.0, n_slot: int = 88, dim: int = 512, dropout: float = 0.5):
        super().__init__()
        self.radius = float(radius)
        self.key = nn.Parameter(torch.empty(n_slot, dim))
        self.value = nn.Parameter(torch.empty(n_slot, dim))
        nn.init.normal_(self.key, 0.0, 0.5)
        nn.init.normal_(self.value, 0.0, 0.5)
        self.q_embd = nn.Linear(dim, dim)
        self.v_embd = nn.Linear(dim, dim)
        self.fusion = nn.Linear(2 * dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.last_key_address: torch.Tensor | None = None

    def _key_address(self, query: torch.Tensor) -> torch.Tensor:
        """(B * T, dim) raw query rows -> (B * T, n_slot) key addressing weights."""
        sim = F.linear(F.normalize(self.q_embd(query), dim=1), F.normalize(self.key, dim=1))
        return torch.softmax(self.radius * sim, dim=1)

    def address(self, query: torch.Tensor) -> torch.Tensor:
        """(B, T, dim) -> (B, T, n_slot): the key addressing of every frame."""
        b, t, _ = query.shape
        return self._key_address(query.reshape(b * t, -1)).view(b, t, -1)

    def forward(self, query: torch.Tensor, value: torch.Tensor | None = None, inference: bool = False):
        if query.dim() != 3:
            raise ValueError(f"query must be (B, T, dim), got {tuple(query.shape)}")
        b, t, _ = query.shape
        key_add = self._key_address(query.reshape(b * t, -1))
        self.last_key_address = key_add.detach().view(b, t, -1)
        recall = (key_add @ self.value.detach()).view(b, t, -1)  # the "virtual audio"
        te_fusion = self.fusion(self.dropout(torch.cat([query, recall], dim=2)))
        if inference:
            return te_fusion, None, None, None
        if value is None:
            raise ValueError("Memory needs the audio features (value) in training; pass "
                             "inference=True to run on video alone")
        if value.shape != query.shape:
            raise ValueError(f"value {tuple(value.shape)} must have the query's shape {tuple(query.shape)}")
        rows = value.reshape(b * t, -1).detach()
        value_sim = F.linear(F.normalize(self.v_embd(rows), dim=1), F.normalize(self.value, dim=1))
        value_add = torch.softmax(self.radius * value_sim, dim=1)
        recon_loss = F.mse_loss(value_add @ self.value, rows).unsqueeze(0)
        tr_fusion = self.fusion(self.dropout(torch.cat([query, value], dim=2)))
        add_loss = F.kl_div(torch.log(key_add), value_add.detach(), reduction="batchmean").unsqueeze(0)
        return te_fusion, tr_fusion, recon_loss, add_loss


# ------------------------------------------------------------------------------ backends
class GRUBackend(nn.Module):
    """(B, T, dim) -> (B, n_classes): BiGRU (keys ``gru.*``), mean over time, ``fc``."""

    def __init__(self, dim: int = 512, hidden: int = 512, layers: int = 2, n_classes: int = LRW_CLASSES,
                 dropout: float = 0.3):
        super().__init__()
        self.gru = nn.GRU(dim, hidden, layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.fc = nn.Linear(2 * hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.fc(out.mean(dim=1))


class _Branch(nn.Module):
    """One TCN branch: Conv1d (padding (k-1)d both sides) -> BN -> symmetric chomp of (k-1)d/2
    frames at each end -> PReLU. The BatchNorm sees the padded ends before they are chomped (as
    upstream): the output has T frames, a centred "same" convolution."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(cin, cout, kernel, padding=self.pad, dilation=dilation)
        self.batchnorm = nn.BatchNorm1d(cout)
        self.non_lin = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.batchnorm(self.conv(x))
        if self.pad:
            out = out[:, :, self.pad // 2: -(self.pad // 2)]
        return self.non_lin(out)


class _MultibranchBlock(nn.Module):
    """Two multi-branch convolution sets (``cbcr0_k``, ``cbcr1_k``, outputs concatenated, each
    followed by dropout), a 1x1 ``downsample`` on the shortcut and a final PReLU.

    Upstream builds ``downsample`` when ``cin // branches != cout``, which holds for every block
    of these sizes (512 // 3 and 768 // 3 are not 768): every block has it.
    """

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...], dilation: int, dropout: float):
        super().__init__()
        self.n_branches = len(kernels)
        width = cout // len(kernels)
        for k_idx, k in enumerate(kernels):
            setattr(self, f"cbcr0_{k_idx}", _Branch(cin, width, k, dilation))
        self.dropout0 = nn.Dropout(dropout)
        for k_idx, k in enumerate(kernels):
            setattr(self, f"cbcr1_{k_idx}", _Branch(cout, width, k, dilation))
        self.dropout1 = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(cin, cout, 1)
        self.relu_final = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout0(torch.cat([getattr(self, f"cbcr0_{i}")(x) for i in range(self.n_branches)], 1))
        out = self.dropout1(torch.cat([getattr(self, f"cbcr1_{i}")(out) for i in range(self.n_branches)], 1))
        return self.relu_final(out + self.downsample(x))


class _TemporalConvNet(nn.Module):
    def __init__(self, cin: int, channels: int, levels: int, kernels: tuple[int, ...], dropout: float):
        super().__init__()
        self.network = nn.Sequential(*[
            _MultibranchBlock(cin if i == 0 else channels, channels, kernels, 2 ** i, dropout)
            for i in range(levels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


class _MultiscaleTCN(nn.Module):
    def __init__(self, cin: int, channels: int, levels: int, kernels: tuple[int, ...], n_classes: int,
                 dropout: float):
        super().__init__()
        self.mb_ms_tcn = _TemporalConvNet(cin, channels, levels, kernels, dropout)
        self.tcn_output = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        return self.tcn_output(self.mb_ms_tcn(x.transpose(1, 2)).mean(dim=2))


class MSTCNBackend(nn.Module):
    """(B, T, dim) -> (B, n_classes): the multi-scale multi-branch TCN of Martinez et al. as MMAB
    uses it (keys ``tcn.mb_ms_tcn.network.{level}.{cbcr0_k, cbcr1_k}.{conv, batchnorm,
    non_lin}``, ``.downsample``, ``.relu_final``, ``tcn.tcn_output``), mean over time."""

    def __init__(self, dim: int = 512, channels: int = 768, levels: int = 4,
                 kernels: tuple[int, ...] = (3, 5, 7), n_classes: int = LRW_CLASSES, dropout: float = 0.2):
        super().__init__()
        self.tcn = _MultiscaleTCN(dim, channels, levels, tuple(kernels), n_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tcn(x)


# ------------------------------------------------------------------------------ the model
@dataclass
class MMABOutput:
    """What :meth:`MMAB.forward` returns.

    Attributes:
        logits: (B, n_classes) of the mode: in ``"memory"`` mode the visual + recalled-audio
            path (``back(te_fusion)``), in ``"audiovisual"`` the visual + real-audio path.
        logits_av: ``back(tr_fusion)`` (B, n_classes) in ``"memory"`` mode when audio is given.
        recon_loss, add_loss: the memory's losses as scalars when audio is given (memory modes).
        key_address: (B, T, n_slot) key addressing weights (memory modes; detached).
    """

    logits: torch.Tensor
    logits_av: torch.Tensor | None = None
    recon_loss: torch.Tensor | None = None
    add_loss: torch.Tensor | None = None
    key_address: torch.Tensor | None = None


class MMAB(nn.Module):
    """MMAB's LRW word lip reader: ``v_front``, ``a_front``, ``mem``, ``back``.

    Args: the fields of :class:`MMABConfig` (defaults: the released Bi-GRU model, 88 slots).

    ``forward(video, audio=None, mode="memory") -> MMABOutput`` with ``video`` (B, 1, T, H, W)
    normalised gray crops and ``audio`` (B, 1, n_mels, 4T) :func:`avlib.audio.mmab_mel`:

    * ``"memory"``: the paper's model. Video alone: ``back(te_fusion)`` (the test path); with
      audio (training) also ``logits_av`` and the two memory losses (:func:`mmab_loss`);
    * ``"audiovisual"``: ``back(tr_fusion)`` with the real audio (needs audio);
    * ``"visual"``: ``back(v_front(video))``, no memory (a baseline trained that way);
    * ``"audio"``: ``back(a_front(audio))`` (video not needed).

    :meth:`classify` returns the logits of a mode, optionally with the flip test-time
    augmentation; :meth:`from_official` builds and loads an official checkpoint.
    """

    registry_name = "mmab"
    config_class = MMABConfig
    crop_stream = "vcagan112"  #: the store's crops it reads (112 x 112 gray mouths)
    audio_feature = "mmab_mel"  #: :func:`avlib.audio.mmab_mel`, 4 frames per video frame

    def __init__(self, **kwargs):
        super().__init__()
        cfg = MMABConfig(**kwargs)
        self.cfg = cfg
        self.config = {"name": self.registry_name,
                       "kwargs": {**asdict(cfg), "front_widths": list(cfg.front_widths),
                                  "audio_widths": list(cfg.audio_widths),
                                  "tcn_kernels": list(cfg.tcn_kernels), "vocabulary": list(cfg.vocabulary)}}
        self.v_front = MMABVisualFront(cfg.front_widths, cfg.front_dropout, cfg.pool)
        self.a_front = MMABAudioFront(cfg.audio_widths, cfg.dim, cfg.n_mels, cfg.audio_dropout)
        self.mem = Memory(cfg.radius, cfg.n_slot, cfg.dim, cfg.fusion_dropout)
        if cfg.backend == "gru":
            self.back: nn.Module = GRUBackend(cfg.dim, cfg.gru_hidden, cfg.gru_layers, cfg.n_classes,
                                              cfg.gru_dropout)
        else:
            self.back = MSTCNBackend(cfg.dim, cfg.tcn_channels, cfg.tcn_levels, cfg.tcn_kernels,
                                     cfg.n_classes, cfg.tcn_dropout)

    def official_parts(self) -> dict[str, nn.Module]:
        """The official checkpoint's entries and the parts they load into."""
        return dict(zip(MMAB_PARTS, (self.v_front, self.a_front, self.mem, self.back)))

    def _audio(self, audio: torch.Tensor, frames: int | None) -> torch.Tensor:
        a = self.a_front(audio)
        if frames is not None and a.shape[1] != frames:
            raise ValueError(
                f"the audio gives {a.shape[1]} steps but the video has {frames} frames: the mel "
                f"must have 4 frames per video frame ({4 * frames}, got {audio.shape[-1]}); "
                "mmab_mel drops the extra last frame of a centred STFT")
        return a

    def forward(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None,
                mode: str = "memory") -> MMABOutput:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "audio":
            if audio is None:
                raise ValueError("mode 'audio' needs audio")
            return MMABOutput(self.back(self._audio(audio, None)))
        if video is None:
            raise ValueError(f"mode {mode!r} needs video")
        v = self.v_front(video)
        if mode == "visual":
            return MMABOutput(self.back(v))
        if mode == "audiovisual" and audio is None:
            raise ValueError("mode 'audiovisual' needs audio")
        if audio is None:
            te, _, _, _ = self.mem(v, inference=True)
            return MMABOutput(self.back(te), key_address=self.mem.last_key_address)
        te, tr, recon, add = self.mem(v, self._audio(audio, v.shape[1]))
        address = self.mem.last_key_address
        if mode == "audiovisual":
            return MMABOutput(self.back(tr), recon_loss=recon.mean(), add_loss=add.mean(),
                              key_address=address)
        return MMABOutput(self.back(te), self.back(tr), recon.mean(), add.mean(), address)

    def classify(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None,
                 mode: str = "memory", flip: bool = False) -> torch.Tensor:
        """(B, n_classes) logits of ``mode`` for evaluation. ``"memory"`` uses the video alone
        (audio, if given, is ignored: the test path). ``flip=True`` adds the logits of the
        horizontally flipped video (upstream's test-time augmentation: raw logits summed)."""
        if flip and mode == "audio":
            raise ValueError("flip augments the video; mode 'audio' has none")
        used = None if mode == "memory" else audio
        logits = self.forward(video, used, mode).logits
        if flip:
            logits = logits + self.forward(video.flip(-1), used, mode).logits
        return logits

    @classmethod
    def from_official(cls, path_or_obj: str | os.PathLike | Mapping, **changes) -> tuple["MMAB", LoadReport]:
        """Build the network an official checkpoint holds and load it strictly.

        The backend, the number of slots and of classes are read from the file's tensors;
        ``changes`` set other config fields (e.g. ``vocabulary``). Returns ``(model in eval
        mode, report)``. Files are read with ``weights_only=True``.
        """
        raw = path_or_obj if isinstance(path_or_obj, Mapping) else read_official(path_or_obj)
        found = {}
        if isinstance(raw, Mapping):
            mem = raw.get("mem_state_dict")
            back = raw.get("back_state_dict")
            if isinstance(mem, Mapping) and isinstance(mem.get("key"), torch.Tensor):
                found["n_slot"] = int(mem["key"].shape[0])
            if isinstance(back, Mapping):
                if isinstance(back.get("fc.weight"), torch.Tensor):
                    found.update(backend="gru", n_classes=int(back["fc.weight"].shape[0]))
                elif isinstance(back.get("tcn.tcn_output.weight"), torch.Tensor):
                    found.update(backend="mstcn", n_classes=int(back["tcn.tcn_output.weight"].shape[0]))
        model = cls(**{**found, **changes})
        source = "<state dict>" if isinstance(path_or_obj, Mapping) else str(path_or_obj)
        report = load_official_parts(model.official_parts(), raw, source=source)
        return model.eval(), report


def mmab_loss(out: MMABOutput, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """MMAB's training loss (all weights 1): ``{"total", "ce_memory", "ce_av", "add",
    "recon"}``; terms missing from ``out`` (no audio) are left out of the dict and the total."""
    parts = {"ce_memory": F.cross_entropy(out.logits, target)}
    if out.logits_av is not None:
        parts["ce_av"] = F.cross_entropy(out.logits_av, target)
    if out.add_loss is not None:
        parts["add"] = out.add_loss
    if out.recon_loss is not None:
        parts["recon"] = out.recon_loss
    parts["total"] = sum(parts.values())
    return parts
