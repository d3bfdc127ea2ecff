"""Deformable convolutions (Dai et al. 2017; modulated DCNv2, Zhu et al. 2019) and the ``deformable`` encoder.

A deformable conv samples its k x k input grid at learned fractional offsets (bilinear interpolation),
predicted per output position by an ordinary conv over the same input (the *offset branch*). The offset
branch starts at zero, so a fresh deformable layer computes exactly the plain convolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import deform_conv2d

from rlmorning.agents.nets.conv_blocks import check_image_shape, large_frames, positive_int, positive_ints
from rlmorning.agents.nets.encoders import ENCODERS, Encoder
from rlmorning.errors import RlmError


class DeformConv2d(nn.Module):
    """A k x k deformable conv with its own offset branch (and, if ``modulated``, a DCNv2 mask branch).

    ``weight``/``bias`` have the shapes of ``nn.Conv2d``'s, so plain conv weights load into it. The offset
    branch is a conv with the same kernel, stride and padding producing ``2*k*k`` channels (``dy, dx`` per
    kernel position, torchvision's layout), weights and bias zero. The mask is ``2*sigmoid(m)`` with ``m``
    from a zero-initialised conv, i.e. 1 at the start (DCNv2 uses ``sigmoid``, 0.5 at the start; the
    factor 2 keeps a fresh layer equal to the plain conv).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 modulated: bool = False) -> None:
        super().__init__()
        k = int(kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = k, int(stride), int(padding)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k))
        self.bias = nn.Parameter(torch.empty(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Conv2d.reset_parameters
        bound = 1.0 / math.sqrt(in_channels * k * k)
        nn.init.uniform_(self.bias, -bound, bound)
        self.offset = nn.Conv2d(in_channels, 2 * k * k, k, stride=stride, padding=padding)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.mask: nn.Conv2d | None = None
        if modulated:
            self.mask = nn.Conv2d(in_channels, k * k, k, stride=stride, padding=padding)
            nn.init.zeros_(self.mask.weight)
            nn.init.zeros_(self.mask.bias)

    def sampling(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Offsets ``[B, 2*k*k, Ho, Wo]`` (``dy, dx`` per kernel position) and mask ``[B, k*k, Ho, Wo]`` or None."""
        mask = 2.0 * torch.sigmoid(self.mask(x)) if self.mask is not None else None
        return self.offset(x), mask

    def apply(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The deformable conv of ``x`` at the given offsets and mask (in the weights' dtype: torchvision's CPU
        kernel has no bfloat16, so under bf16 autocast this layer runs in float32)."""
        dtype = self.weight.dtype
        if x.dtype != dtype or offset.dtype != dtype:
            x, offset = x.to(dtype), offset.to(dtype)
            mask = mask.to(dtype) if mask is not None else None
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             mask=mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.sampling(x)
        return self.apply(x, offset, mask)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, modulated={self.mask is not None}")


@dataclass
class LayerTrace:
    """One conv layer of a traced forward pass (for plotting sampling locations)."""

    kernel: int
    stride: int
    padding: int
    offset: torch.Tensor | None
    """``[B, 2*k*k, Ho, Wo]`` for deformable layers, None for plain ones."""
    mask: torch.Tensor | None
    activation: torch.Tensor
    """The layer's output after ReLU ``[B, C, Ho, Wo]``."""


LARGE_LAYOUT = ((8, 4, 0), (4, 2, 0), (3, 1, 0))
"""(kernel, stride, padding) of the Nature CNN's convs."""
SMALL_LAYOUT = ((3, 1, 0), (3, 1, 0), (3, 1, 0))
"""Small frames (MinAtar 10x10): three unpadded 3x3/1 convs (10 -> 8 -> 6 -> 4)."""


@ENCODERS.register("deformable", "Dai et al. 2017: Nature CNN with deformable convs (default the last two)")
class DeformableEncoder(Encoder):
    """The Nature CNN (32-64-64 channels, FC 512) with the convs in ``deformable_layers`` (0-based, default
    ``[1, 2]``: the last two) replaced by :class:`DeformConv2d`; ``modulated=true`` adds DCNv2 masks.

    Large frames use Nature's 8x8/4, 4x4/2, 3x3/1; frames smaller than 36x36 use three 3x3/1 convs
    without padding (10x10 -> 4x4). Parameter names match ``nature``'s (``conv.0``, ``conv.2``,
    ``conv.4``, ``fc.0``), so a Nature state dict loads with ``strict=False`` (only the offset/mask
    branches are missing), and a fresh deformable encoder computes what that Nature CNN computes.
    """

    def __init__(self, obs_shape: Sequence[int], input_scale: float = 1.0,
                 deformable_layers: Sequence[int] = (1, 2), modulated: bool = False, hidden: int = 512,
                 channels: Sequence[int] = (32, 64, 64)) -> None:
        super().__init__(input_scale)
        name = "deformable"
        c, h, w = check_image_shape(name, obs_shape)
        chans = positive_ints(name, "channels", channels, length=3)
        hidden = positive_int(name, "hidden", hidden)
        if isinstance(deformable_layers, int) and not isinstance(deformable_layers, bool):
            deformable_layers = [deformable_layers]
        if not isinstance(deformable_layers, list | tuple) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 2 for i in deformable_layers
        ):
            raise RlmError(f"encoder 'deformable' option 'deformable_layers' expects indices among 0, 1, 2 "
                           f"(0 = first conv), got {deformable_layers!r}")
        if not isinstance(modulated, bool):
            raise RlmError(f"encoder 'deformable' option 'modulated' expects true/false, got {modulated!r}")
        layout = LARGE_LAYOUT if large_frames(obs_shape) else SMALL_LAYOUT
        side = min(h, w)
        for k, s, p in layout:
            side = (side + 2 * p - k) // s + 1
        if side < 1:
            raise RlmError(f"encoder 'deformable' needs frames of at least 7x7, got {h}x{w}")
        self.deformable_layers = sorted(set(int(i) for i in deformable_layers))
        self.layout = layout
        layers: list[nn.Module] = []
        in_c = c
        for i, ((k, s, p), out_c) in enumerate(zip(layout, chans, strict=True)):
            if i in self.deformable_layers:
                layers.append(DeformConv2d(in_c, out_c, k, stride=s, padding=p, modulated=modulated))
            else:
                layers.append(nn.Conv2d(in_c, out_c, k, stride=s, padding=p))
            layers.append(nn.ReLU())
            in_c = out_c
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = int(self.conv(torch.zeros(1, c, h, w)).shape[1])
        self.fc = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU())
        self.out_dim = hidden

    @property
    def convs(self) -> list[nn.Module]:
        """The three conv layers (``nn.Conv2d`` or :class:`DeformConv2d`), input first."""
        return [self.conv[0], self.conv[2], self.conv[4]]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.scale(obs)))

    @torch.no_grad()
    def trace(self, obs: torch.Tensor) -> list[LayerTrace]:
        """Run the conv stack on ``obs``, recording each layer's offsets, mask and activation."""
        x = self.scale(obs)
        out = []
        for layer, (k, s, p) in zip(self.convs, self.layout, strict=True):
            if isinstance(layer, DeformConv2d):
                offset, mask = layer.sampling(x)
                x = torch.relu(layer.apply(x, offset, mask))
            else:
                offset = mask = None
                x = torch.relu(layer(x))
            out.append(LayerTrace(k, s, p, offset, mask, x))
        return out
