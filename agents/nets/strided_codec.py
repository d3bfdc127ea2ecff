"""Strided conv encoder/decoder bodies for world-model codecs on ALE-sized frames (64x64, 84x84, ...).

In the style of the World Models VAE (Ha & Schmidhuber 2018): four 4x4 stride-2 convs of widths
``c, 2c, 4c, 8c`` (32-64-128-256 for ``channels=32``) with ReLU, flatten, linear; the decoder mirrors it
with a linear layer and four 4x4 stride-2 transposed convs. Differences that make any frame size >= 32
work: the convs use padding 1 (each exactly halves the map), the encoder pools its last map to 4x4
(an identity for 64x64 frames), and the decoder starts from a ``ceil(H/16) x ceil(W/16)`` map, upsamples
16x and center-crops to ``out_size`` (84x84: 6x6 -> 96x96 -> crop).

:func:`strided_body` builds the pair that the codecs of
:mod:`rlmorning.agents.nets.world_model_nets` use for frames of at least 32x32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rlmorning.errors import RlmError

MIN_SIZE = 32
_POOL = 4


def _widths(channels: int) -> list[int]:
    return [channels, 2 * channels, 4 * channels, 8 * channels]


class StridedEncoder(nn.Module):
    """Float frames ``[B, C, H, W]`` -> ``[B, out_dim]`` (no activation on the output)."""

    def __init__(self, in_channels: int, channels: int = 32, *, out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out in _widths(channels):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
            c_in = c_out
        self.conv = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(_POOL), nn.Flatten())
        self.fc = nn.Linear(c_in * _POOL * _POOL, out_dim)
        self.in_channels = in_channels
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < MIN_SIZE:
            raise RlmError(f"StridedEncoder: needs frames [B, {self.in_channels}, H, W] with H, W >= {MIN_SIZE}, "
                           f"got {tuple(x.shape)}")
        return self.fc(self.conv(x.float()))


class StridedDecoder(nn.Module):
    """Latents ``[B, latent_dim]`` -> logits ``[B, out_channels, *out_size]``."""

    def __init__(self, latent_dim: int, out_channels: int, out_size: tuple[int, int], channels: int = 32) -> None:
        super().__init__()
        h, w = (int(s) for s in out_size)
        if min(h, w) < MIN_SIZE:
            raise RlmError(f"StridedDecoder: out_size must be at least {MIN_SIZE}x{MIN_SIZE}, got {(h, w)}")
        self.out_size = (h, w)
        widths = _widths(channels)[::-1]  # 8c, 4c, 2c, c
        self.start = (widths[0], math.ceil(h / 16), math.ceil(w / 16))
        self.fc = nn.Sequential(nn.Linear(latent_dim, math.prod(self.start)), nn.ReLU())
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:] + [out_channels], strict=True):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.deconv = nn.Sequential(*layers[:-1])  # logits: no activation after the last layer

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.deconv(self.fc(z).view(z.shape[0], *self.start))
        h, w = self.out_size
        top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        return x[..., top:top + h, left:left + w]


def strided_body(obs_shape: Sequence[int], latent_out: int, latent_dim: int, channels: int
                 ) -> tuple[nn.Module, nn.Module]:
    """``(encoder, decoder)`` for frames ``obs_shape = (C, H, W)`` with ``H, W >= 32``: the encoder maps
    float frames ``[B, C, H, W]`` to ``[B, latent_out]`` (``2 * latent_dim`` for a Gaussian posterior), the
    decoder maps ``[B, latent_dim]`` to logits ``[B, C, H, W]``."""
    if len(obs_shape) != 3:
        raise RlmError(f"strided codec needs image observations [C, H, W], got shape {tuple(obs_shape)}")
    c, h, w = (int(s) for s in obs_shape)
    if min(h, w) < MIN_SIZE:
        raise RlmError(f"strided codec needs frames of at least {MIN_SIZE}x{MIN_SIZE}, got {h}x{w}")
    return (StridedEncoder(c, channels, out_dim=latent_out),
            StridedDecoder(latent_dim, c, (h, w), channels))
