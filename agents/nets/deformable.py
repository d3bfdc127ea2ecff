"""Deformable convolutions (Dai et al. 2017; modulated DCNv2, Zhu et al. 2019) and the ``deformable`` encoder.

A deformable conv samples its k x k input grid at learned fractional offsets (bilinear interpolation),
predicted per output position by an ordinary conv over the same input (the *offset branch*). The offset
branch starts at zero, so a fresh deformable layer computes exactly the plain convolution.

Two interchangeable kernels compute the same function (``backend``):

* ``torchvision``: :func:`torchvision.ops.deform_conv2d` (fast CUDA kernel; its CPU kernel, above all the
  backward pass, is slow: ~10x the gather form on this project's development CPU);
* ``gather``: :func:`deform_conv2d_gather`, the same bilinear sampling written as one
  :func:`torch.nn.functional.grid_sample` over all kernel taps followed by a matmul with the weights
  (im2col with fractional positions). Forward and gradients match torchvision's to float rounding (tested).

``auto`` (default) takes torchvision on CUDA and the gather form elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from rlmorning.agents.nets.conv_blocks import large_frames
from rlmorning.agents.nets.encoders import ENCODERS, Encoder
from rlmorning.agents.nets.options import check_image_shape, positive_int, positive_ints
from rlmorning.errors import RlmError

BACKENDS = ("auto", "torchvision", "gather")


def deform_conv2d_gather(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         stride: int = 1, padding: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`torchvision.ops.deform_conv2d` (one offset group, no dilation) through ``grid_sample``.

    Kernel tap ``(i, j)`` of output ``(y, x)`` reads the input at ``(y*stride - padding + i + dy,
    x*stride - padding + j + dx)`` with ``dy, dx`` from ``offset [B, 2*k*k, Ho, Wo]`` (torchvision's layout:
    ``dy`` then ``dx`` per tap, taps row-major), bilinearly, corners outside the input reading zero. All
    taps are sampled by one ``grid_sample`` call into columns ``[B, C*k*k, Ho*Wo]`` (scaled by ``mask [B, k*k,
    Ho, Wo]`` when given), then multiplied by the weights ``[O, C*k*k]``.
    """
    b, c, h, w = x.shape
    out_c, _, k, _ = weight.shape
    ho, wo = offset.shape[-2:]
    taps = k * k
    off = offset.view(b, taps, 2, ho, wo)
    ar = torch.arange(k, device=x.device, dtype=x.dtype)
    tap_y, tap_x = ar.repeat_interleave(k).view(1, taps, 1, 1), ar.repeat(k).view(1, taps, 1, 1)
    out_y = (torch.arange(ho, device=x.device, dtype=x.dtype) * stride - padding).view(1, 1, ho, 1)
    out_x = (torch.arange(wo, device=x.device, dtype=x.dtype) * stride - padding).view(1, 1, 1, wo)
    py, px = out_y + tap_y + off[:, :, 0], out_x + tap_x + off[:, :, 1]
    # pixel p -> normalised (2p + 1) / size - 1 under align_corners=False: exact for every size, even 1
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1).view(b, taps * ho, wo, 2)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.view(b, c, taps, ho * wo)
    if mask is not None:
        cols = cols * mask.reshape(b, 1, taps, ho * wo)
    out = torch.matmul(weight.reshape(out_c, c * taps), cols.view(b, c * taps, ho * wo))
    if bias is not None:
        out = out + bias.view(1, out_c, 1)
    return out.view(b, out_c, ho, wo)


class DeformConv2d(nn.Module):
    """A k x k deformable conv with its own offset branch (and, if ``modulated``, a DCNv2 mask branch).

    ``weight``/``bias`` have the shapes of ``nn.Conv2d``'s, so plain conv weights load into it. The offset
    branch is a conv with the same kernel, stride and padding producing ``2*k*k`` channels (``dy, dx`` per
    kernel position, torchvision's layout), weights and bias zero. The mask is ``2*sigmoid(m)`` with ``m``
    from a zero-initialised conv, i.e. 1 at the start (DCNv2 uses ``sigmoid``, 0.5 at the start; the
    factor 2 keeps a fresh layer equal to the plain conv). ``backend``: ``auto`` | ``torchvision`` |
    ``gather`` (see the module docstring; ``auto`` picks by the input's device at each call).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 modulated: bool = False, backend: str = "auto") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise RlmError(f"unknown deformable conv backend {backend!r}. Valid: {', '.join(BACKENDS)}")
        self.backend = backend
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
        backend = self.backend
        if backend == "auto":
            backend = "torchvision" if x.is_cuda else "gather"
        if backend == "gather":
            return deform_conv2d_gather(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                                        mask=mask)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             mask=mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.sampling(x)
        return self.apply(x, offset, mask)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, modulated={self.mask is not None}, backend={self.backend}")


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
    ``[1, 2]``: the last two) replaced by :class:`DeformConv2d`; ``modulated=true`` adds DCNv2 masks;
    ``backend`` picks the kernel (``auto``: torchvision on CUDA, the ``gather`` form elsewhere).

    Large frames use Nature's 8x8/4, 4x4/2, 3x3/1; frames smaller than 36x36 use three 3x3/1 convs
    without padding (10x10 -> 4x4). Parameter names match ``nature``'s (``conv.0``, ``conv.2``,
    ``conv.4``, ``fc.0``), so a Nature state dict loads with ``strict=False`` (only the offset/mask
    branches are missing), and a fresh deformable encoder computes what that Nature CNN computes.
    """

    def __init__(self, obs_shape: Sequence[int], input_scale: float = 1.0,
                 deformable_layers: Sequence[int] = (1, 2), modulated: bool = False, hidden: int = 512,
                 channels: Sequence[int] = (32, 64, 64), backend: str = "auto") -> None:
        super().__init__(input_scale)
        name = "deformable"
        if backend not in BACKENDS:
            raise RlmError(f"encoder 'deformable' option 'backend' expects one of {', '.join(BACKENDS)}, "
                           f"got {backend!r}")
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
                layers.append(DeformConv2d(in_c, out_c, k, stride=s, padding=p, modulated=modulated,
                                           backend=backend))
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
