"""A PatchGAN discriminator (Isola et al. 2017) for an adversarial term (Goodfellow et al. 2014) on decoded frames.

Inputs are float frames in ``[0, 1]``: the decoder's sigmoid probabilities for fakes, real 0/1 planes or
grey levels scaled to ``[0, 1]`` for reals. The output is a map of logits ``[B, 1, h', w']``, one per
receptive-field patch, so the adversarial signal is local (sharp edges, crisp objects) and the
reconstruction loss keeps the global layout.

Losses: **hinge** by default (Lim & Ye 2017; Miyato et al. 2018, used with spectral norm in SAGAN/BigGAN):
``D: mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``, ``G: -mean(D(fake))``. ``kind="bce"`` gives the
non-saturating BCE of Goodfellow et al.: ``D: softplus(-D(real)) + softplus(D(fake))``,
``G: softplus(-D(fake))``. The discriminator loss detaches ``fake``, so it never trains the generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from rlmorning.errors import RlmError

LOSS_KINDS = ("hinge", "bce")


class PatchDiscriminator(nn.Module):
    """Conv stack -> logits map ``[B, 1, h', w']``.

    ``layers`` conv layers of widths ``channels * 2**i`` (capped at ``8 * channels``) with LeakyReLU(0.2),
    then a 3x3 conv to one logit per patch. The first ``downsample`` layers are 4x4 stride-2 convs (each
    halves the map), the others 3x3 stride-1: with the default ``downsample=1`` a 10x10 MinAtar frame gives
    a 5x5 map and a 64x64 frame a 32x32 map (use ``downsample=3`` for 8x8 patches of a 64x64 frame). No
    batch norm (real and fake batches go through separately); spectral norm on every conv by default.
    """

    def __init__(self, in_channels: int, channels: int = 32, layers: int = 2, downsample: int = 1,
                 spectral_norm: bool = True) -> None:
        super().__init__()
        if layers < 1:
            raise RlmError(f"PatchDiscriminator: layers must be >= 1, got {layers}")
        if not 0 <= downsample <= layers:
            raise RlmError(f"PatchDiscriminator: downsample must be in 0..{layers} (layers), got {downsample}")
        self.downsample = downsample
        norm = _sn if spectral_norm else (lambda m: m)
        mods: list[nn.Module] = []
        c_in = in_channels
        for i in range(layers):
            c_out = channels * min(2 ** i, 8)
            if i < downsample:
                conv = nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)
            else:
                conv = nn.Conv2d(c_in, c_out, 3, padding=1)
            mods += [norm(conv), nn.LeakyReLU(0.2)]
            c_in = c_out
        mods.append(norm(nn.Conv2d(c_in, 1, 3, padding=1)))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1, h', w']`` for frames ``x [B, C, H, W]`` in ``[0, 1]`` (inputs are mapped to [-1, 1])."""
        min_side = 2 ** (self.downsample + 1)
        if x.dim() != 4 or min(x.shape[-2:]) < min_side:
            raise RlmError(f"PatchDiscriminator: needs frames [B, C, H, W] of at least {min_side}x{min_side}, "
                           f"got {tuple(x.shape)}")
        return self.net(x.float() * 2.0 - 1.0)


def _check(kind: str) -> None:
    if kind not in LOSS_KINDS:
        raise RlmError(f"unknown GAN loss '{kind}'. Valid: {', '.join(LOSS_KINDS)}")


def discriminator_loss(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Scalar discriminator loss (``fake`` is detached); see the module docstring for ``kind``."""
    _check(kind)
    lr, lf = d(real), d(fake.detach())
    if kind == "hinge":
        return F.relu(1.0 - lr).mean() + F.relu(1.0 + lf).mean()
    return F.softplus(-lr).mean() + F.softplus(lf).mean()


def generator_loss(d: nn.Module, fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Scalar generator loss; gradients flow through ``d`` into ``fake`` (they also reach ``d``'s parameters:
    step only the generator's optimizer with it, and zero ``d``'s gradients before its own step)."""
    _check(kind)
    lf = d(fake)
    return -lf.mean() if kind == "hinge" else F.softplus(-lf).mean()
