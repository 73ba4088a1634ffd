"""VocaLiST (Interspeech 2022) and its distilled student MTDVocaLiST (ICASSP 2024).

VocaLiST scores whether a 5-frame lip window and a 0.2 s voice window are in sync:

1. ``vid_prenet``: 17 Wav2Lip-style Conv3d blocks over (B, 3, 48, 96, T) with **time as the
   last axis**; strides never touch it, so it returns T video tokens.
2. ``aud_prenet``: 14 Conv2d blocks over the (B, 1, 80, 16) mel window whose strides shrink
   only the frequency axis: 16 audio tokens.
3. Three cross-modal transformer encoders in the style of the Multimodal Transformer (MulT):
   ``av_transformer`` (audio queries attend to video), ``va_transformer`` (video queries attend
   to audio) and ``mem_transformer`` (the A->V output attends to the V->A output).
4. Max-pool over time, ``fc`` + tanh, ``classifier`` -> one logit per pair.

Module names, buffers and shapes follow the official ``vocalist_5f_lrs2.pth`` (spec §3.2-§3.3),
including two documented quirks of the reference encoder that change the numbers, so that
official weights give official scores:

* Quirk 1: positions are value-dependent (:meth:`SinusoidalPositions.positions`).
* Quirk 2: a partial "future" mask that only bites in the V->A unit (:func:`future_mask`).

Sequences are batch-first ``(B, L, D)`` throughout; the layout does not affect the weights.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlib.models.blocks import Conv2dBlock, Conv3dBlock, build_conv_stack

OFFICIAL_PRENET_WIDTHS = (32, 64, 128, 256, 512)
STUDENT_PRENET_WIDTHS = (16, 32, 64, 128, 200)
FACE_HW = (48, 96)  # lower half of a 96x96 crop
N_MELS = 80


# --------------------------------------------------------------------------- positions, masks
def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """Sinusoidal embeddings in the fairseq / tensor2tensor layout, shape (num_positions, dim).

    Row p is ``[sin(p * f_0..f_{h-1}) | cos(p * f_0..f_{h-1})]`` with ``h = dim // 2`` and
    ``f_i = exp(-i * log(10000) / (h - 1))`` (an odd ``dim`` gets a trailing zero column).
    Row 0 is reserved for padding and is all zeros; real positions start at 1.
    """
    half = dim // 2
    if half < 2:
        raise ValueError(f"sinusoidal positions need dim >= 4, got {dim}")
    step = math.log(10000.0) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -step)
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2 == 1:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    table[0] = 0.0
    return table


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal positions with the reference encoder's padding rule.

    Holds no weights; its only state is the ``_float_tensor`` buffer of the official state dict
    (upstream uses it to remember dtype and device, we keep it so strict loading works).
    """

    def __init__(self, dim: int, value_dependent: bool = True):
        super().__init__()
        self.dim = dim
        #: Quirk 1 (True, the reference): a step whose channel 0 is exactly 0 gets no position.
        #: False: every step t gets position t + 1.
        self.value_dependent = bool(value_dependent)
        self.register_buffer("_float_tensor", torch.zeros(1))

    @staticmethod
    def positions(tokens: torch.Tensor) -> torch.Tensor:
        """Position index of every step of ``tokens`` (B, L, D): (B, L) int64.

        Quirk 1, reproduced on purpose: the reference implementation passes only the first
        feature channel to a padding detector that treats the value 0 as "padding", so a step
        whose channel 0 is exactly 0.0 gets index 0 (the all-zero embedding) while every other
        step t gets t + 1, without renumbering. The prenet outputs are post-ReLU, so exact zeros
        in channel 0 are common and official weights were trained with this behaviour.
        """
        length = tokens.shape[1]
        steps = torch.arange(1, length + 1, device=tokens.device).expand(tokens.shape[0], length)
        return torch.where(tokens[:, :, 0] != 0, steps, torch.zeros_like(steps))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Positional embeddings (B, L, D) for ``tokens`` (B, L, D) (no gradient)."""
        if self.value_dependent:
            positions = self.positions(tokens)
        else:
            length = tokens.shape[1]
            positions = torch.arange(1, length + 1, device=tokens.device).expand(
                tokens.shape[0], length)
        table = sinusoidal_table(tokens.shape[1] + 1, self.dim).to(tokens.device, tokens.dtype)
        return table[positions].detach()


def future_mask(len_q: int, len_k: int, device: torch.device | None = None) -> torch.Tensor:
    """Additive attention mask (len_q, len_k): -inf where query i may not see key j, else 0.

    Quirk 2, reproduced on purpose: the reference encoder builds a causal mask for two
    sequences of different lengths as ``triu(-inf, diagonal=1 + |len_k - len_q|)``, i.e. key j
    is hidden from query i when ``j >= i + 1 + |len_k - len_q|``. For the A->V and memory units
    (16 queries x 5 keys) this hides nothing; for the V->A unit (5 x 16) it hides keys
    ``j >= i + 12``: video token 0 cannot see audio tokens 12-15, token 3 cannot see 15,
    token 4 sees all.
    """
    full = torch.full((len_q, len_k), float("-inf"), device=device)
    return torch.triu(full, diagonal=1 + abs(len_k - len_q))


# --------------------------------------------------------------------------- attention, layers
class PackedMultiheadAttention(nn.Module):
    """Multi-head attention with one packed input projection, as in the reference encoder.

    Parameters: ``in_proj_weight`` (3D, D) holding the q, k, v projections stacked in that
    order, ``in_proj_bias`` (3D,), ``out_proj`` Linear(D, D).
    """

    def __init__(self, dim: int, n_heads: int, attn_dropout: float = 0.0):
        super().__init__()
        if dim % n_heads != 0:
            raise ValueError(f"d_model={dim} must be divisible by n_heads={n_heads}")
        self.dim = dim
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.attn_dropout = attn_dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def _project(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Slice ``index`` (0 = q, 1 = k, 2 = v) of the packed projection, split into heads."""
        rows = slice(index * self.dim, (index + 1) * self.dim)
        y = F.linear(x, self.in_proj_weight[rows], self.in_proj_bias[rows])
        batch, length, _ = y.shape
        return y.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        return_qkv: bool = False,
    ):
        """Attend.

        Args:
            query: (B, Lq, D); key, value: (B, Lk, D).
            attn_mask: optional additive mask (Lq, Lk).
            return_qkv: also return the projected queries, keys and values (for distillation).

        Returns:
            ``(output (B, Lq, D), weights (B, heads, Lq, Lk))``; the weights are the softmax
            probabilities before attention dropout. With ``return_qkv`` a third element
            ``{"q": (B, heads, Lq, head_dim), "k", "v": (B, heads, Lk, head_dim)}`` holds the
            per-head projections (``q`` before the 1/sqrt(head_dim) scaling).
        """
        q_heads = self._project(query, 0)
        k = self._project(key, 1)
        v = self._project(value, 2)
        q = q_heads * self.head_dim**-0.5
        scores = q @ k.transpose(-1, -2)
        if attn_mask is not None:
            scores = scores + attn_mask
        weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        attended = F.dropout(weights, self.attn_dropout, self.training) @ v
        batch, _, len_q, _ = attended.shape
        attended = attended.transpose(1, 2).reshape(batch, len_q, self.dim)
        if return_qkv:
            return self.out_proj(attended), weights, {"q": q_heads, "k": k, "v": v}
        return self.out_proj(attended), weights


class CrossModalLayer(nn.Module):
    """One pre-LN cross-modal layer: LN -> attention -> residual, LN -> FFN -> residual.

    ``layer_norms.0`` normalises the queries *and* the keys and values (one shared LayerNorm,
    as in the reference); ``layer_norms.1`` precedes the feed-forward block (``fc1``, ReLU,
    ``fc2``, width 4 * D).
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        attn_dropout: float = 0.0,
        relu_dropout: float = 0.1,
        res_dropout: float = 0.1,
        attn_mask: bool = True,
    ):
        super().__init__()
        self.self_attn = PackedMultiheadAttention(dim, n_heads, attn_dropout)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.layer_norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.relu_dropout = relu_dropout
        self.res_dropout = res_dropout
        self.use_mask = attn_mask
        for linear in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(
        self, x: torch.Tensor, x_k: torch.Tensor, x_v: torch.Tensor, return_qkv: bool = False
    ):
        """Update the queries ``x`` (B, Lq, D) from ``x_k``, ``x_v`` (B, Lk, D).

        Returns ``(x (B, Lq, D), attention weights (B, heads, Lq, Lk))``, plus the per-head
        ``{"q", "k", "v"}`` projections of :class:`PackedMultiheadAttention` with ``return_qkv``.
        """
        mask = future_mask(x.shape[1], x_k.shape[1], x.device) if self.use_mask else None
        norm = self.layer_norms[0]
        attended, weights, *qkv = self.self_attn(norm(x), norm(x_k), norm(x_v), attn_mask=mask,
                                                 return_qkv=return_qkv)
        x = x + F.dropout(attended, self.res_dropout, self.training)
        hidden = F.relu(self.fc1(self.layer_norms[1](x)))
        hidden = F.dropout(hidden, self.relu_dropout, self.training)
        hidden = self.fc2(hidden)
        x = x + F.dropout(hidden, self.res_dropout, self.training)
        return (x, weights, qkv[0]) if return_qkv else (x, weights)


class CrossModalEncoder(nn.Module):
    """MulT-style cross-modal transformer encoder: queries from one modality, keys/values from
    another.

    State-dict layout (per encoder, 52 entries at 4 layers): ``version`` (buffer, [2.]),
    ``embed_positions._float_tensor`` (buffer), ``layers.{i}.self_attn.in_proj_weight``,
    ``...in_proj_bias``, ``...out_proj.*``, ``layers.{i}.fc1/fc2.*``,
    ``layers.{i}.layer_norms.{0,1}.*``, ``layer_norm.*``.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int = 8,
        n_layers: int = 4,
        attn_dropout: float = 0.0,
        relu_dropout: float = 0.1,
        res_dropout: float = 0.1,
        embed_dropout: float = 0.25,
        attn_mask: bool = True,
        value_positions: bool = True,
    ):
        super().__init__()
        self.dim = dim
        self.embed_scale = math.sqrt(dim)
        self.embed_dropout = embed_dropout
        self.embed_positions = SinusoidalPositions(dim, value_positions)
        self.layers = nn.ModuleList(
            CrossModalLayer(dim, n_heads, attn_dropout, relu_dropout, res_dropout, attn_mask)
            for _ in range(n_layers)
        )
        # The reference registers a format-version buffer; kept so strict loading works.
        self.register_buffer("version", torch.tensor([2.0]))
        self.layer_norm = nn.LayerNorm(dim)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Scale by sqrt(D) and add positions (Quirk 1 applies), before dropout: (B, L, D)."""
        return self.embed_scale * tokens + self.embed_positions(tokens)

    def forward(self, x_q: torch.Tensor, x_kv: torch.Tensor, return_qkv: bool = False):
        """Encode queries ``x_q`` (B, Lq, D) against keys/values ``x_kv`` (B, Lk, D).

        Returns:
            ``(output (B, Lq, D) after the final LayerNorm, per-layer outputs (each (B, Lq, D),
            before the final LayerNorm), per-layer attention weights (each (B, heads, Lq, Lk)))``,
            and with ``return_qkv`` a fourth element: per layer the ``{"q", "k", "v"}`` per-head
            projections (see :meth:`PackedMultiheadAttention.forward`).
        """
        x = F.dropout(self.embed(x_q), self.embed_dropout, self.training)
        # Keys and values come from the same tensor but are embedded and dropped out
        # separately (independent dropout masks in training), and they are never updated by
        # the layers: every layer attends to the same embedded input.
        x_k = F.dropout(self.embed(x_kv), self.embed_dropout, self.training)
        x_v = F.dropout(self.embed(x_kv), self.embed_dropout, self.training)
        layer_outputs, attentions, projections = [], [], []
        for layer in self.layers:
            x, weights, *qkv = layer(x, x_k, x_v, return_qkv=return_qkv)
            layer_outputs.append(x)
            attentions.append(weights)
            projections.extend(qkv)
        if return_qkv:
            return self.layer_norm(x), layer_outputs, attentions, projections
        return self.layer_norm(x), layer_outputs, attentions


# --------------------------------------------------------------------------- prenets, model
#: Largest folded Conv2d weight (elements) the CPU fast path builds (16 MB in float32); wider
#: blocks (the official 256- and 512-channel ones) keep their Conv3d.
FOLD_MAX_WEIGHT = 4_000_000


def time_folded_weight(weight: torch.Tensor, frames: int, pad_t: int) -> torch.Tensor:
    """The Conv2d weight equivalent to a Conv3d whose **last** axis is time, for ``frames`` steps.

    A Conv3d with weight (Co, Ci, kh, kw, kt), stride 1 and zero padding ``pad_t`` along time
    maps step ``t_in`` to step ``t_out`` through the slice ``k = t_in - t_out + pad_t`` (no
    contribution when k is outside [0, kt)). Folding time into channels (channel ``c * T + t``)
    turns it into one Conv2d with weight (Co T, Ci T, kh, kw) whose block (t_out, t_in) is that
    slice: the same sums, computed by the far better-optimised 2-D kernels of the CPU backend.
    """
    co, ci, kh, kw, kt = weight.shape
    steps = torch.arange(frames, device=weight.device)
    offset = steps[None, :] - steps[:, None] + pad_t  # [t_out, t_in]
    valid = (offset >= 0) & (offset < kt)
    blocks = weight[..., offset.clamp(0, kt - 1)] * valid.to(weight.dtype)  # (Co,Ci,kh,kw,T,T)
    return blocks.permute(0, 4, 1, 5, 2, 3).reshape(co * frames, ci * frames, kh, kw)


def _foldable(block: Conv3dBlock, frames: int) -> bool:
    """Whether the time-folded Conv2d is exact and faster for this block.

    Exact: stride 1, no dilation and shape-preserving zero padding along time. Faster
    (measured on a 2-core CPU): the folded conv also multiplies the zero blocks (T / kt times
    the Conv3d's work), which pays off when the time kernel spans the window (kt >= T: the
    7- and 5-wide first blocks) or the channels are few (Ci Co <= 256, the thin CPU models);
    for wide 3x3x3 blocks the Conv3d kernel wins.
    """
    conv = block.conv_block[0]
    kt, stride_t, pad_t = conv.kernel_size[2], conv.stride[2], conv.padding[2]
    exact = stride_t == 1 and conv.dilation[2] == 1 and 2 * pad_t == kt - 1 and kt > 1
    size = conv.out_channels * conv.in_channels * frames * frames * conv.kernel_size[0] * conv.kernel_size[1]
    faster = kt >= frames or conv.in_channels * conv.out_channels <= 256
    # The folded path does not call the modules, so a block someone hooks into (to look at its
    # Conv3d-layout output) runs as itself.
    hooked = any(m._forward_hooks or m._forward_pre_hooks for m in block.modules())
    return exact and faster and size <= FOLD_MAX_WEIGHT and not hooked


def _folded_block(block: Conv3dBlock, x: torch.Tensor, frames: int) -> torch.Tensor:
    """One Conv3dBlock on time-folded input (B, Ci T, H, W) -> (B, Co T, H', W')."""
    conv, norm = block.conv_block
    weight = time_folded_weight(conv.weight, frames, conv.padding[2])
    bias = conv.bias.repeat_interleave(frames) if conv.bias is not None else None
    out = F.conv2d(x, weight, bias, stride=conv.stride[:2], padding=conv.padding[:2])
    batch, channels, height, width = out.shape
    # BatchNorm3d over (B, C, T, H, W): the same per-channel statistics as over (B, C, H, W, T).
    out = norm(out.view(batch, channels // frames, frames, height, width)).view(out.shape)
    if block.residual:
        out = out + x
    return block.act(out)


def _video_layout(w: Sequence[int]):
    """Rows (out, kernel, stride (H,W,T), padding, residual) of the video prenet, 17 blocks."""
    c1, c2, c3, c4, c5 = w
    return [
        (c1, 7, 1, 3, False),  # 0: 32 x 48 x 96 x T
        (c2, 5, (1, 2, 1), (1, 1, 2), False),  # 1: 64 x 46 x 47 x T
        (c2, 3, 1, 1, True),
        (c2, 3, 1, 1, True),
        (c3, 3, (2, 2, 1), 1, False),  # 4: 128 x 23 x 24 x T
        (c3, 3, 1, 1, True),
        (c3, 3, 1, 1, True),
        (c3, 3, 1, 1, True),
        (c4, 3, (2, 2, 1), 1, False),  # 8: 256 x 12 x 12 x T
        (c4, 3, 1, 1, True),
        (c4, 3, 1, 1, True),
        (c5, 3, (2, 2, 1), 1, False),  # 11: 512 x 6 x 6 x T
        (c5, 3, 1, 1, True),
        (c5, 3, 1, 1, True),
        (c5, 3, (2, 2, 1), 1, False),  # 14: 512 x 3 x 3 x T
        (c5, 3, 1, (0, 0, 1), False),  # 15: 512 x 1 x 1 x T
        (c5, 1, 1, 0, False),  # 16: 512 x 1 x 1 x T
    ]


def _audio_layout(w: Sequence[int]):
    """Rows (out, kernel, stride, padding, residual) of the audio prenet, 14 blocks."""
    c1, c2, c3, c4, c5 = w
    return [
        (c1, 3, 1, 1, False),  # 0: 32 x 80 x 16
        (c1, 3, 1, 1, True),
        (c1, 3, 1, 1, True),
        (c2, 3, (3, 1), 1, False),  # 3: 64 x 27 x 16
        (c2, 3, 1, 1, True),
        (c2, 3, 1, 1, True),
        (c3, 3, (3, 1), 1, False),  # 6: 128 x 9 x 16
        (c3, 3, 1, 1, True),
        (c3, 3, 1, 1, True),
        (c4, 3, (3, 1), 1, False),  # 9: 256 x 3 x 16
        (c4, 3, 1, 1, True),
        (c4, 3, 1, 1, True),
        (c5, 3, 1, (0, 1), False),  # 12: 512 x 1 x 16
        (c5, 1, 1, 0, False),  # 13: 512 x 1 x 16
    ]


@dataclass(frozen=True)
class VocaLiSTConfig:
    """The size of a :class:`VocaLiST`. The defaults are the released LRS2 model; ``named("mtd")``
    is the MTDVocaLiST student (spec §3.7)."""

    d_model: int = 512  #: token width; equals the last prenet width
    n_layers: int = 4  #: layers per cross-modal unit
    n_heads: int = 8  #: attention heads
    prenet_widths: tuple[int, ...] = OFFICIAL_PRENET_WIDTHS  #: the five prenet channel stages
    attn_dropout: float = 0.0
    relu_dropout: float = 0.1
    res_dropout: float = 0.1
    embed_dropout: float = 0.25
    #: Quirk 1 of the reference encoder (True, needed by official weights): a token whose
    #: channel 0 is exactly 0 gets no position. False gives every token its position, which
    #: narrow CPU-size networks need (their channel 0 is often zero).
    value_positions: bool = True

    def __post_init__(self) -> None:  # lists from a profile become tuples (hashable, frozen)
        object.__setattr__(self, "prenet_widths", tuple(int(w) for w in self.prenet_widths))

    @classmethod
    def official(cls) -> "VocaLiSTConfig":
        return cls()

    @classmethod
    def named(cls, size: str) -> "VocaLiSTConfig":
        """A named size: ``"official"`` (80.1 M parameters) or ``"mtd"`` (the MTDVocaLiST
        student, 13.3 M)."""
        if size not in VOCALIST_SIZES:
            raise ValueError(f"unknown VocaLiST size {size!r}; named sizes: {sorted(VOCALIST_SIZES)}")
        return VOCALIST_SIZES[size]

    @classmethod
    def small(cls, widths, n_layers: int, n_heads: int, dropout: float | None = None,
              value_positions: bool = True):
        """A CPU-size VocaLiST: prenet ``widths`` (the last is d_model), ``n_layers`` per unit,
        ``n_heads``, one dropout for embeddings, FFN and residuals (None: official), and
        whether Quirk 1 applies (``value_positions``)."""
        drop = {} if dropout is None else {"relu_dropout": dropout, "res_dropout": dropout,
                                           "embed_dropout": dropout}
        return cls(d_model=int(widths[-1]), n_layers=int(n_layers), n_heads=int(n_heads),
                   prenet_widths=tuple(widths), value_positions=bool(value_positions), **drop)


VOCALIST_SIZES = {"official": VocaLiSTConfig(),
                  "mtd": VocaLiSTConfig(d_model=200, prenet_widths=STUDENT_PRENET_WIDTHS)}


class VocaLiST(nn.Module):
    """VocaLiST synchronisation scorer (``SyncTransformer`` upstream).

    Args:
        d_model: token width of the transformers; must equal ``prenet_widths[-1]``.
        n_layers: layers per cross-modal encoder (official 4).
        n_heads: attention heads (official 8).
        prenet_widths: the five channel stages of both prenets (official 32, 64, 128, 256, 512).
        attn_dropout, relu_dropout, res_dropout, embed_dropout: encoder dropouts
            (official 0.0, 0.1, 0.1, 0.25).
        value_positions: Quirk 1 (official True): tokens whose channel 0 is exactly zero get
            no position. False numbers every token (:class:`SinusoidalPositions`).

    Defaults are the official model (80,106,561 parameters). ``d_model=200`` with
    ``prenet_widths=(16, 32, 64, 128, 200)`` is the MTDVocaLiST student (:func:`mtd_vocalist`).
    The geometry is not tied to 5 frames: T frames with 3.2 T mel frames work (the released
    singing model uses 25 frames and 80 mel frames).
    """

    registry_name = "vocalist"
    config_class = VocaLiSTConfig
    crop_stream = "face96"  #: the store's crops it reads (96 x 96 BGR faces; lower halves used)
    similarity = "logit"  #: pairs are scored jointly: one logit per (video, audio) window pair

    def __init__(
        self,
        d_model: int = 512,
        n_layers: int = 4,
        n_heads: int = 8,
        prenet_widths: Sequence[int] = OFFICIAL_PRENET_WIDTHS,
        attn_dropout: float = 0.0,
        relu_dropout: float = 0.1,
        res_dropout: float = 0.1,
        embed_dropout: float = 0.25,
        value_positions: bool = True,
    ):
        super().__init__()
        widths = [int(w) for w in prenet_widths]
        if len(widths) != 5 or min(widths) < 1:
            raise ValueError(
                f"prenet_widths needs five positive channel counts, got {prenet_widths}"
            )
        if widths[-1] != d_model:
            raise ValueError(
                f"the prenets feed the transformers directly, so prenet_widths[-1] must equal "
                f"d_model; got {widths[-1]} and {d_model}"
            )
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.config = {
            "name": self.registry_name,
            "kwargs": {
                "d_model": d_model,
                "n_layers": n_layers,
                "n_heads": n_heads,
                "prenet_widths": widths,
                "attn_dropout": attn_dropout,
                "relu_dropout": relu_dropout,
                "res_dropout": res_dropout,
                "embed_dropout": embed_dropout,
                "value_positions": bool(value_positions),
            },
        }
        self.d_model = d_model
        #: Run the leading Conv3d blocks of the video prenet as time-folded Conv2d on the CPU
        #: (:func:`time_folded_weight`): the same numbers up to float rounding, several times
        #: faster there (about 4x for a training step of the CPU-size model). Not part of the
        #: weights or the config; set False to run every block as Conv3d.
        self.fold_time = True
        self.vid_prenet = build_conv_stack(Conv3dBlock, 3, _video_layout(widths))
        self.aud_prenet = build_conv_stack(Conv2dBlock, 1, _audio_layout(widths))
        encoder_kwargs = dict(
            dim=d_model,
            n_heads=n_heads,
            n_layers=n_layers,
            attn_dropout=attn_dropout,
            relu_dropout=relu_dropout,
            res_dropout=res_dropout,
            embed_dropout=embed_dropout,
            attn_mask=True,
            value_positions=value_positions,
        )
        self.av_transformer = CrossModalEncoder(**encoder_kwargs)
        self.va_transformer = CrossModalEncoder(**encoder_kwargs)
        self.mem_transformer = CrossModalEncoder(**encoder_kwargs)
        self.fc = nn.Linear(d_model, d_model)
        self.classifier = nn.Linear(d_model, 1)

    @staticmethod
    def _check_faces(faces: torch.Tensor) -> None:
        if faces.ndim != 4 or faces.shape[1] % 3 != 0 or tuple(faces.shape[2:]) != FACE_HW:
            raise ValueError(
                "VocaLiST expects faces of shape (B, 3T, 48, 96): lower halves of T BGR 96x96 "
                f"crops in [0, 1], stacked frame-major (15 channels for 5 frames); got "
                f"{tuple(faces.shape)}"
            )

    @staticmethod
    def _check_mel(mel: torch.Tensor) -> None:
        if mel.ndim != 4 or mel.shape[1] != 1 or mel.shape[2] != N_MELS:
            raise ValueError(
                f"VocaLiST expects mel windows of shape (B, 1, 80, L) (L = 16 for 5 frames), "
                f"got {tuple(mel.shape)}"
            )

    def _check_inputs(self, faces: torch.Tensor, mel: torch.Tensor) -> None:
        self._check_faces(faces)
        self._check_mel(mel)
        if faces.shape[0] != mel.shape[0]:
            raise ValueError(f"batch sizes differ: faces {faces.shape[0]}, mel {mel.shape[0]}")

    def prenets(self, faces: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Video tokens (B, T, D) and audio tokens (B, L, D) from the two conv prenets."""
        self._check_inputs(faces, mel)
        return self.video_tokens(faces), self.audio_tokens(mel)

    def video_tokens(self, faces: torch.Tensor) -> torch.Tensor:
        """The video prenet alone: (B, 3T, 48, 96) faces -> (B, T, D) tokens. Training with
        several audio windows per video window computes these once (:mod:`avlib.sync.recipes`)."""
        self._check_faces(faces)
        batch, channels, height, width = faces.shape
        frames = channels // 3
        blocks = list(self.vid_prenet)
        n_folded = 0
        if self.fold_time and faces.device.type == "cpu":
            while n_folded < len(blocks) and _foldable(blocks[n_folded], frames):
                n_folded += 1
        if n_folded:
            # (B, 3T, H, W) frame-major -> channel c * T + t, the folded layout.
            video = faces.view(batch, frames, 3, height, width).transpose(1, 2)
            video = video.reshape(batch, 3 * frames, height, width)
            for block in blocks[:n_folded]:
                video = _folded_block(block, video, frames)
            # Back to Conv3d's layout (B, C, H, W, T) for the remaining blocks.
            video = video.view(batch, -1, frames, *video.shape[2:]).permute(0, 1, 3, 4, 2)
        else:
            # (B, 3T, H, W) -> (B, T, 3, H, W) -> (B, 3, H, W, T): time becomes the last axis.
            video = faces.view(batch, frames, 3, height, width).permute(0, 2, 3, 4, 1)
        for block in blocks[n_folded:]:
            video = block(video)  # ends as (B, D, 1, 1, T)
        return video.flatten(1, 3).transpose(1, 2)

    def audio_tokens(self, mel: torch.Tensor) -> torch.Tensor:
        """The audio prenet alone: (B, 1, 80, L) mel -> (B, L', D) tokens."""
        self._check_mel(mel)
        audio = self.aud_prenet(mel)  # (B, D, 1, L)
        return audio.flatten(1, 2).transpose(1, 2)

    def forward(
        self,
        faces: torch.Tensor,
        mel: torch.Tensor,
        *,
        return_features: bool = False,
        return_attention: bool = False,
        return_qkv: bool = False,
    ):
        """Sync logit of each (lips, voice) pair.

        Args:
            faces: (B, 15, 48, 96) lower halves of 5 consecutive 96x96 **BGR** crops in [0, 1],
                frame-major channels (f0 B,G,R, f1 B,G,R, ...).
            mel: (B, 1, 80, 16) VocaLiST mel window (no pre-emphasis, values in [-4, 4]).
            return_features: also return intermediate features for layer-wise distillation.
            return_attention: also return the attention maps of the three units.
            return_qkv: also return every layer's per-head queries, keys and values (the
                relations that MTDVocaLiST distils, :mod:`avlib.sync.distill`).

        Returns:
            ``logit`` (B,) (> 0 means "in sync"), or ``(logit, extras)`` when a flag is set.
            ``extras["features"]``: ``vid_prenet`` (B, T, D), ``aud_prenet`` (B, L, D), for each
            unit ``av``/``va``/``mem``: ``<unit>_layers`` (list of per-layer outputs (B, Lq, D))
            and ``<unit>_out`` (B, Lq, D), then ``pooled`` (B, D) and ``hidden`` (B, D) (after
            ``fc`` and tanh). ``extras["attention"]``: ``av`` (audio queries attending to video
            keys, (n_layers, B, heads, L, T)), ``va`` ((n_layers, B, heads, T, L)), ``mem``
            ((n_layers, B, heads, L, T)). ``extras["qkv"]``: for each unit ``av``/``va``/``mem``
            a list over layers of ``{"q": (B, heads, Lq, head_dim), "k", "v": (B, heads, Lk,
            head_dim)}`` (``q`` before the 1/sqrt(head_dim) scaling).
        """
        video, audio = self.prenets(faces, mel)
        return self.forward_tokens(video, audio, return_features=return_features,
                                   return_attention=return_attention, return_qkv=return_qkv)

    def forward_tokens(self, video: torch.Tensor, audio: torch.Tensor, *,
                       return_features: bool = False, return_attention: bool = False,
                       return_qkv: bool = False):
        """The network after its prenets: video tokens (B, T, D) and audio tokens (B, L, D) ->
        logit (B,) (and extras, as :meth:`forward`). Evaluation scores one video window against
        31 audio windows; computing each window's tokens once and pairing them here saves 30
        prenet passes per window."""
        av_out, av_layers, av_attn, *av_qkv = self.av_transformer(audio, video, return_qkv)
        va_out, va_layers, va_attn, *va_qkv = self.va_transformer(video, audio, return_qkv)
        mem_out, mem_layers, mem_attn, *mem_qkv = self.mem_transformer(av_out, va_out, return_qkv)
        pooled = mem_out.max(dim=1).values
        hidden = torch.tanh(self.fc(pooled))
        logit = self.classifier(hidden).squeeze(-1)
        if not (return_features or return_attention or return_qkv):
            return logit
        extras: dict[str, dict] = {}
        if return_features:
            extras["features"] = {
                "vid_prenet": video,
                "aud_prenet": audio,
                "av_layers": av_layers,
                "av_out": av_out,
                "va_layers": va_layers,
                "va_out": va_out,
                "mem_layers": mem_layers,
                "mem_out": mem_out,
                "pooled": pooled,
                "hidden": hidden,
            }
        if return_attention:
            extras["attention"] = {
                "av": torch.stack(av_attn),
                "va": torch.stack(va_attn),
                "mem": torch.stack(mem_attn),
            }
        if return_qkv:
            extras["qkv"] = {"av": av_qkv[0], "va": va_qkv[0], "mem": mem_qkv[0]}
        return logit, extras


def mtd_vocalist(**overrides) -> VocaLiST:
    """The MTDVocaLiST student: d_model 200, prenet widths (16, 32, 64, 128, 200), 8 heads,
    3 x 4 layers (about 13.28 M parameters). Keyword overrides go to :class:`VocaLiST`."""
    kwargs = {"d_model": 200, "prenet_widths": STUDENT_PRENET_WIDTHS}
    kwargs.update(overrides)
    return VocaLiST(**kwargs)
