"""SyncVSR's word-level lip reader (Ahn et al., Interspeech 2024; spec §4.2).

A video of gray mouth crops ``(B, 1, T, H, W)`` (LRW: T = 29, 96 x 96) goes through

1. ``stem3d``: Conv3d(1 -> 64, kernel (5, 7, 7), stride (1, 2, 2), no bias), BatchNorm3d, **GELU**
   and MaxPool3d((1, 3, 3), stride (1, 2, 2)): (B, 64, T, H/4, W/4);
2. ``resnet``: the four stages of a ResNet-18 (``layer1..4``, BasicBlocks with timm's names
   ``conv1, bn1, conv2, bn2, downsample.0/1``) on every frame, then the spatial mean: (B, T, 512).
   Upstream builds a whole timm ``resnet18``; its ``conv1``, ``bn1`` and ``fc`` are in the
   state dict but never called. They are kept here, unused, so official files load strictly;
3. the **word-boundary** channel (1 on the frames of the word, 0 elsewhere) concatenated as a
   513th feature, and a learned ``cls_token`` prepended;
4. ``encoder``: a pre-norm transformer in the state-dict layout of x-transformers 1.9.2 (12 layers
   of attention then feed-forward; RMSNorm; 8 heads of 64; GLU feed-forward with GELU, x4;
   rotary positions on the first 32 dimensions of every head, layer dropout 0.2, feed-forward
   dropout 0.3; no final norm);
5. two heads: ``category_classifier`` on the cls output (the word), and ``audio_projection`` on
   every frame output: the **audio tokens** of that frame, ``4`` token steps (100 Hz against 25
   fps) x ``2`` codebook groups x ``320`` codes = 2,560 logits. The audio head is the paper's
   whole idea; it is used by the training loss only.

Quirk kept deliberately (official weights need it): x-transformers 1.9.x rotates the values as
well as the queries and keys (``rotate_values=True``); later versions rotate only q and k.

The official LRW model has 63,850,213 parameters (63,327,677 used) and 254 state-dict entries.
CPU sizes are options of the same class (:meth:`SyncVSRConfig.named`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SyncVSR",
    "SyncVSRConfig",
    "SYNCVSR_SIZES",
    "RMSNorm",
    "RotaryEmbedding",
    "apply_rotary",
    "audio_token_loss",
]

#: Official LRW sizes (spec §4.1-4.2).
LRW_CLASSES = 500
TOKEN_VOCAB = 320  #: codes per vq-wav2vec group
TOKEN_GROUPS = 2  #: vq-wav2vec codebook groups
TOKENS_PER_FRAME = 4  #: 100 Hz tokens per 25 fps video frame


@dataclass(frozen=True)
class SyncVSRConfig:
    """The size of a :class:`SyncVSR`. The defaults are the released LRW model."""

    n_classes: int = LRW_CLASSES  #: words
    stem_channels: int = 64  #: stem3d output = ResNet input channels
    widths: tuple[int, ...] = (64, 128, 256, 512)  #: channels of ResNet stages 1-4
    depth: int = 12  #: attention + feed-forward pairs
    heads: int = 8
    dim_head: int = 64
    ff_mult: int = 4
    word_boundary: bool = True  #: concatenate the word-boundary channel (hidden + 1)
    layer_dropout: float = 0.2  #: probability of skipping a whole sub-layer in training
    ff_dropout: float = 0.3
    attn_dropout: float = 0.0
    token_vocab: int = TOKEN_VOCAB
    token_groups: int = TOKEN_GROUPS
    tokens_per_frame: int = TOKENS_PER_FRAME
    rotate_values: bool = True  #: x-transformers 1.9.x quirk (see the module docstring)
    #: The words of the classes, in class order (empty: unknown, e.g. official weights without
    #: their word list). Saved with the model so that a checkpoint can name what it predicts.
    vocabulary: tuple[str, ...] = ()
    #: Side of the square gray mouth crops it was trained on (96 official). The network ends in
    #: a spatial mean and runs on any size, but readers resize their crops to this one.
    input_size: int = 96

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "vocabulary", tuple(str(w) for w in self.vocabulary))
        if self.vocabulary and len(self.vocabulary) != int(self.n_classes):
            raise ValueError(f"vocabulary has {len(self.vocabulary)} words but n_classes is {self.n_classes}")
        if len(self.widths) != 4 or min(self.widths) < 1:
            raise ValueError(f"widths must be 4 positive channel counts, got {self.widths}")
        for name in ("n_classes", "input_size", "stem_channels", "depth", "heads", "dim_head", "ff_mult",
                     "token_vocab", "token_groups", "tokens_per_frame"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("layer_dropout", "ff_dropout", "attn_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def dim(self) -> int:
        """Transformer width: the last ResNet width, + 1 with the word-boundary channel."""
        return self.widths[-1] + int(self.word_boundary)

    @property
    def rotary_dim(self) -> int:
        """Dimensions of each head that rotate (x-transformers: max(dim_head // 2, 32))."""
        return min(max(self.dim_head // 2, 32), self.dim_head)

    @property
    def audio_logits(self) -> int:
        return self.tokens_per_frame * self.token_groups * self.token_vocab

    @classmethod
    def official(cls) -> "SyncVSRConfig":
        return cls()

    @classmethod
    def named(cls, size: str, **changes) -> "SyncVSRConfig":
        """A named size: ``"official"`` (63.85 M parameters) or ``"cpu"`` (stem and ResNet widths
        / 4, 2 layers of 4 x 32 heads, feed-forward x2: 1.57 M), with optional field changes."""
        if size not in SYNCVSR_SIZES:
            raise ValueError(f"unknown SyncVSR size {size!r}; named sizes: {sorted(SYNCVSR_SIZES)}")
        return cls(**{**asdict(SYNCVSR_SIZES[size]), **changes})


SYNCVSR_SIZES = {
    "official": SyncVSRConfig(),
    "cpu": SyncVSRConfig(stem_channels=16, widths=(16, 32, 64, 128), depth=2, heads=4, dim_head=32,
                         ff_mult=2),
}


# ------------------------------------------------------------------------------ visual front
class BasicBlock(nn.Module):
    """ResNet BasicBlock with timm's attribute names (ReLU after each conv and after the sum)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.downsample is None else self.downsample(x)
        return F.relu(out + short)


class ResNet18Trunk(nn.Module):
    """The four stages of a ResNet-18 (2 BasicBlocks each, strides 1, 2, 2, 2).

    ``conv1``, ``bn1`` and ``fc`` exist only so that the state dict matches timm's ``resnet18``
    as SyncVSR saves it; :meth:`forward` starts at ``layer1`` (the 3-D stem replaces them).
    """

    def __init__(self, cin: int, widths: tuple[int, ...], n_fc: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, cin, 7, 2, 3, bias=False)  # unused, as upstream
        self.bn1 = nn.BatchNorm2d(cin)  # unused
        channels = cin
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2, 2)), start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(channels, width, stride),
                                                      BasicBlock(width, width, 1)))
            channels = width
        self.fc = nn.Linear(channels, n_fc)  # unused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return x


# ------------------------------------------------------------------------------ transformer
class RMSNorm(nn.Module):
    """x-transformers' RMSNorm: ``x / max(||x|| * dim^-1/2, eps) * g``."""

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.scale = dim ** -0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class RotaryEmbedding(nn.Module):
    """Rotary position angles for ``dim`` dimensions: ``inv_freq = 10000^(-2i/dim)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim)))

    def forward(self, n: int, device=None) -> torch.Tensor:
        t = torch.arange(n, device=device or self.inv_freq.device, dtype=self.inv_freq.dtype)
        freqs = torch.outer(t, self.inv_freq)
        return torch.cat((freqs, freqs), dim=-1)  # (n, dim)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``freqs.shape[-1]`` dimensions of ``x`` (..., n, d); the rest pass."""
    rot = freqs.shape[-1]
    head, tail = x[..., :rot], x[..., rot:]
    freqs = freqs.to(x.dtype)
    head = head * freqs.cos() + _rotate_half(head) * freqs.sin()
    return torch.cat((head, tail), dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float, rotate_values: bool):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.rotate_values = heads, rotate_values
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t):
            return t.view(b, n, self.heads, -1).transpose(1, 2)

        q, k, v = split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x))
        q, k = apply_rotary(q, freqs), apply_rotary(k, freqs)
        if self.rotate_values:
            v = apply_rotary(v, freqs)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class GLU(nn.Module):
    """``proj`` to twice the inner width, then ``a * gelu(gate)``."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float):
        super().__init__()
        inner = int(dim * mult)
        # Indices as x-transformers: 0 GLU, 1 (no post-activation norm), 2 dropout, 3 output.
        self.ff = nn.Sequential(GLU(dim, inner), nn.Identity(), nn.Dropout(dropout), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class _Residual(nn.Module):
    """The residual sum at index 2 of a layer, parameter-free (x-transformers' ``Residual``)."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return x + residual


class Encoder(nn.Module):
    """Pre-norm transformer: ``layers.{2i}`` attention, ``layers.{2i+1}`` feed-forward, each a
    ModuleList ``[norms, block, residual]`` whose ``norms.0`` is the pre-norm (``.0.0.g``)."""

    def __init__(self, cfg: SyncVSRConfig):
        super().__init__()
        dim = cfg.dim
        self.layer_dropout = cfg.layer_dropout
        layers = []
        for _ in range(cfg.depth):
            for block in (Attention(dim, cfg.heads, cfg.dim_head, cfg.attn_dropout, cfg.rotate_values),
                          FeedForward(dim, cfg.ff_mult, cfg.ff_dropout)):
                norms = nn.ModuleList([RMSNorm(dim), nn.Identity(), nn.Identity()])
                layers.append(nn.ModuleList([norms, block, _Residual()]))
        self.layers = nn.ModuleList(layers)
        self.rotary_pos_emb = RotaryEmbedding(cfg.rotary_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        freqs = self.rotary_pos_emb(x.shape[1], x.device)
        for norms, block, residual in self.layers:
            if self.training and self.layer_dropout > 0 and torch.rand(()) < self.layer_dropout:
                continue  # layer dropout: the whole sub-layer is skipped
            h = norms[0](x)
            h = block(h, freqs) if isinstance(block, Attention) else block(h)
            x = residual(h, x)
        return x


# ------------------------------------------------------------------------------ the model
class SyncVSR(nn.Module):
    """SyncVSR's LRW word classifier with its audio-token head.

    Args: the fields of :class:`SyncVSRConfig` (defaults: the released LRW model).

    ``forward(video, boundary=None)`` takes (B, 1, T, H, W) normalised gray video (or
    (B, T, H, W)) and the (B, T) word-boundary mask (required when ``word_boundary``), and
    returns ``(word_logits (B, n_classes), token_logits (B, T, tokens_per_frame * groups,
    vocab))``.
    """

    registry_name = "syncvsr"
    config_class = SyncVSRConfig
    crop_stream = "mouth96"  #: the store's crops it reads (96 x 96 gray mouths)

    def __init__(self, **kwargs):
        super().__init__()
        cfg = SyncVSRConfig(**kwargs)
        self.cfg = cfg
        self.config = {"name": self.registry_name,
                       "kwargs": {**asdict(cfg), "widths": list(cfg.widths), "vocabulary": list(cfg.vocabulary)}}
        c = cfg.stem_channels
        self.cls_token = nn.Parameter(torch.randn(1, 1, cfg.dim) * 0.02)
        self.stem3d = nn.Sequential(
            nn.Conv3d(1, c, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False), nn.BatchNorm3d(c), nn.GELU(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        self.resnet = ResNet18Trunk(c, cfg.widths)
        self.encoder = Encoder(cfg)
        self.audio_projection = nn.Linear(cfg.dim, cfg.audio_logits)
        self.category_classifier = nn.Linear(cfg.dim, cfg.n_classes)

    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, H, W) -> (B, T, widths[-1]): stem, per-frame ResNet, spatial mean."""
        if video.dim() == 4:
            video = video.unsqueeze(1)
        if video.dim() != 5 or video.shape[1] != 1:
            raise ValueError(f"video must be (B, 1, T, H, W) gray, got {tuple(video.shape)}")
        x = self.stem3d(video)  # (B, C, T, H', W')
        b, c, t = x.shape[:3]
        x = x.transpose(1, 2).reshape(b * t, c, *x.shape[3:])
        x = self.resnet(x).mean(dim=(2, 3))
        return x.view(b, t, -1)

    def forward(self, video: torch.Tensor, boundary: torch.Tensor | None = None):
        feats = self.frame_features(video)
        b, t, _ = feats.shape
        if self.cfg.word_boundary:
            if boundary is None:
                raise ValueError("this SyncVSR uses word boundaries (word_boundary=True): pass "
                                 "boundary, a (B, T) mask that is 1 on the word's frames")
            if tuple(boundary.shape) != (b, t):
                raise ValueError(f"boundary must be (B, T) = {(b, t)}, got {tuple(boundary.shape)}")
            feats = torch.cat([feats, boundary.to(feats.dtype).unsqueeze(-1)], dim=-1)
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(feats.dtype), feats], dim=1)
        x = self.encoder(x)
        words = self.category_classifier(x[:, 0])
        tokens = self.audio_projection(x[:, 1:]).view(
            b, t, self.cfg.tokens_per_frame * self.cfg.token_groups, self.cfg.token_vocab)
        return words, tokens


def audio_token_loss(token_logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """SyncVSR's sync loss: cross-entropy of every frame's audio-token logits.

    Args:
        token_logits: (B, T, steps * groups, vocab) from :class:`SyncVSR`.
        tokens: (B, >= steps * T, groups) integer codes at the audio token rate (100 Hz for
            25 fps video: 4 steps per frame); codes < 0 are ignored (padding).

    The token tensor is cut to ``steps * T`` rows and flattened step-major, group-minor, so the 8
    labels of frame ``f`` are tokens ``4f .. 4f+3`` of group 0 and 1 interleaved, as upstream.
    """
    b, t, labels, vocab = token_logits.shape
    groups = tokens.shape[-1]
    steps = labels // groups
    if tokens.dim() != 3 or labels % groups:
        raise ValueError(f"tokens must be (B, steps * T, groups) with groups dividing the "
                         f"{labels} labels per frame, got {tuple(tokens.shape)}")
    if tokens.shape[1] < steps * t:
        raise ValueError(f"need {steps * t} token steps for {t} frames, got {tokens.shape[1]}")
    target = tokens[:, :steps * t].reshape(b, t, steps * groups).long()
    target = target.masked_fill(target < 0, -1)  # every negative code is padding, not just -1
    return F.cross_entropy(token_logits.reshape(-1, vocab).float(), target.reshape(-1), ignore_index=-1)
