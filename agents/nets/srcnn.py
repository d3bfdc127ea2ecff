"""SRCNN super-resolution (Dong et al. 2014, 2016) for upscaling frames, e.g. decoded world-model frames.

Three convolutions on the bicubically upsampled image: patch extraction (``f1 x f1``, ``n1`` maps, ReLU),
non-linear mapping (``f2 x f2``, ``n2`` maps, ReLU) and reconstruction (``f3 x f3``, one map per channel).
Two departures from the paper, both documented choices:

* **residual**: the net predicts the correction to the bicubic image (``y = x + net(x)``, as in VDSR,
  Kim et al. 2016) and the reconstruction layer starts at zero, so an untrained model *is* bicubic
  upsampling and training only has to learn the missing high frequencies;
* "same" convolutions with replicate padding (the paper used valid convolutions and a cropped target),
  so the output has the input's size; trained with Adam instead of SGD.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.errors import RlmError


def bicubic(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of ``frames [B, C, h, w]`` to ``size``, clamped to ``[0, 1]``."""
    return F.interpolate(frames.float(), size=tuple(size), mode="bicubic", align_corners=False).clamp(0.0, 1.0)


class SRCNN(nn.Module):
    """Residual SRCNN on bicubically upsampled frames in ``[0, 1]`` (see the module docstring)."""

    def __init__(self, channels: int = 1, n1: int = 64, n2: int = 32, f1: int = 9, f2: int = 5, f3: int = 5) -> None:
        super().__init__()
        for name, f in (("f1", f1), ("f2", f2), ("f3", f3)):
            if f < 1 or f % 2 == 0:
                raise RlmError(f"SRCNN: {name} must be an odd kernel size >= 1, got {f}")
        self.channels = channels

        def conv(c_in: int, c_out: int, f: int) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, f, padding=f // 2, padding_mode="replicate")

        self.extract = conv(channels, n1, f1)
        self.mapping = conv(n1, n2, f2)
        self.reconstruct = conv(n2, channels, f3)
        nn.init.zeros_(self.reconstruct.weight)
        nn.init.zeros_(self.reconstruct.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Refined frames ``[B, C, H, W]`` (not clamped) from bicubically upsampled ``x [B, C, H, W]``."""
        return x + self.reconstruct(F.relu(self.mapping(F.relu(self.extract(x)))))

    def upsample(self, frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Frames ``[B, C, h, w]`` in ``[0, 1]`` -> ``[B, C, *size]``: bicubic, then the net, clamped to [0, 1]."""
        if frames.dim() != 4 or frames.shape[1] != self.channels:
            raise RlmError(f"SRCNN: frames must be [B, {self.channels}, h, w], got {tuple(frames.shape)}")
        return self(bicubic(frames, size)).clamp(0.0, 1.0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in ``[0, 1]`` (inf when equal)."""
    mse = float(F.mse_loss(a.float(), b.float()))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def fit_srcnn(model: SRCNN, high_res: torch.Tensor, low_size: tuple[int, int], steps: int, batch_size: int = 16,
              lr: float = 1e-3, seed: int = 0) -> list[float]:
    """Train ``model`` to recover ``high_res [N, C, H, W]`` (in ``[0, 1]``) from the bicubic upsample of its
    area-downsampling to ``low_size``; Adam on the MSE, random minibatches. Returns the loss of every step."""
    if high_res.dim() != 4 or high_res.shape[1] != model.channels:
        raise RlmError(f"fit_srcnn: high_res must be [N, {model.channels}, H, W], got {tuple(high_res.shape)}")
    size = tuple(int(s) for s in high_res.shape[-2:])
    if len(low_size) != 2 or not all(0 < lo <= hi for lo, hi in zip(low_size, size, strict=True)):
        raise RlmError(f"fit_srcnn: low_size must be 2 sizes in 1..{size}, got {tuple(low_size)}")
    if steps < 0 or batch_size < 1:
        raise RlmError(f"fit_srcnn: need steps >= 0 and batch_size >= 1, got {steps} and {batch_size}")
    device = next(model.parameters()).device
    target = high_res.float().to(device)
    with torch.no_grad():
        inputs = bicubic(F.interpolate(target, size=tuple(low_size), mode="area"), size)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    was_training = model.training
    model.train()
    history: list[float] = []
    for _ in range(steps):
        idx = torch.randint(0, len(target), (batch_size,), generator=gen).to(device)
        loss = F.mse_loss(model(inputs[idx]), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    model.train(was_training)
    return history
