"""Wav2Lip-style convolution blocks shared by the Wav2Lip expert and VocaLiST.

One block is ``conv -> batch norm -> (+ input if residual) -> ReLU``. The convolution and the
norm live in a two-element ``nn.Sequential`` called ``conv_block`` so that the state-dict keys
are ``conv_block.0.{weight,bias}`` (the convolution keeps its bias even though a norm follows)
and ``conv_block.1.{weight,bias,running_mean,running_var,num_batches_tracked}``: the layout of
the official checkpoints (spec §2.3, §3.2).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IntOrTuple = int | Sequence[int]


def scale_channels(channels: int, width: float) -> int:
    """Channel count ``channels * width`` rounded to an integer, at least 1.

    ``width=1.0`` returns ``channels`` unchanged (official sizes); smaller widths give the
    lighter CPU variants used in the book.
    """
    if width <= 0:
        raise ValueError(f"width must be > 0 (1.0 = official size), got {width}")
    return max(1, int(round(channels * width)))


class _ConvNormBlock(nn.Module):
    """Base class: ``conv_block = Sequential(Conv, BatchNorm)``, optional residual, ReLU."""

    _conv: type[nn.Module]
    _norm: type[nn.Module]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if residual and in_channels != out_channels:
            raise ValueError(
                f"a residual block needs in_channels == out_channels, got {in_channels} -> "
                f"{out_channels}"
            )
        self.residual = residual
        self.conv_block = nn.Sequential(
            self._conv(in_channels, out_channels, kernel_size, stride, padding),
            self._norm(out_channels),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            # Residual blocks keep stride 1 and the padding that preserves the shape.
            out = out + x
        return self.act(out)


class Conv2dBlock(_ConvNormBlock):
    """Conv2d(bias) + BatchNorm2d (+ residual) + ReLU on ``(B, C, H, W)``."""

    _conv = nn.Conv2d
    _norm = nn.BatchNorm2d


class Conv3dBlock(_ConvNormBlock):
    """Conv3d(bias) + BatchNorm3d (+ residual) + ReLU on ``(B, C, D1, D2, D3)``."""

    _conv = nn.Conv3d
    _norm = nn.BatchNorm3d


def build_conv_stack(
    block: type[_ConvNormBlock],
    in_channels: int,
    layout: Sequence[tuple[int, IntOrTuple, IntOrTuple, IntOrTuple, bool]],
) -> nn.Sequential:
    """Chain blocks from a layout table.

    Args:
        block: :class:`Conv2dBlock` or :class:`Conv3dBlock`.
        in_channels: channels of the input tensor.
        layout: one row ``(out_channels, kernel, stride, padding, residual)`` per block, in the
            order of the official index (the Sequential index becomes the state-dict index).
    """
    layers = []
    channels = in_channels
    for out_channels, kernel, stride, padding, residual in layout:
        layers.append(block(channels, out_channels, kernel, stride, padding, residual))
        channels = out_channels
    return nn.Sequential(*layers)


class ConvTranspose2dBlock(nn.Module):
    """ConvTranspose2d(bias) + BatchNorm2d + ReLU on ``(B, C, H, W)``: the Wav2Lip decoder's
    upsampling block (``Conv2dTranspose`` upstream, spec §2.4).

    Keys ``conv_block.0.{weight,bias}`` (the weight is laid out ``(in, out, k, k)``, as for
    every transposed convolution) and ``conv_block.1.*`` (the norm). Never residual.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding,
                               output_padding),
            nn.BatchNorm2d(out_channels),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


class LeakyConv2dBlock(nn.Module):
    """Conv2d(bias) + LeakyReLU(0.01), no norm (``nonorm_Conv2d`` upstream, spec §2.5).

    The convolution sits alone in ``conv_block`` so its keys are ``conv_block.0.{weight,bias}``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
        )
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))
