"""DrQ image augmentation for replay batches (Kostrikov et al. 2020; DrQ(epsilon), Agarwal et al. 2021).

Random shift: pad each frame by ``pad`` pixels on every side by repeating the border pixels, then crop a
window of the original size at a random offset, one offset per sample (the same for all of a sample's
stacked frames). Intensity: multiply each sample by ``1 + scale * clip(N(0, 1), -2, 2)``.

The shift is done as one gather on the uint8 frames with clamped row/column indices (the replicate pad is
never built), then the uint8 -> float conversion and an in-place multiply by the intensity factor. Learning
applies it to ``obs`` and ``next_obs`` of every sampled batch, independently; acting and evaluation never do.
"""

from __future__ import annotations

import torch

from rlmorning.errors import RlmError

AUGMENTATIONS = ("none", "shift", "shift+intensity", "intensity")


def check_augment(name: str, pad: int, scale: float) -> None:
    """One-line errors for bad augmentation settings."""
    if name not in AUGMENTATIONS:
        raise RlmError(f"config key 'augment' must be one of {', '.join(AUGMENTATIONS)}, got '{name}'")
    if pad < 0:
        raise RlmError(f"config key 'augment_pad' must be >= 0, got {pad}")
    if not 0 <= scale < 0.5:
        raise RlmError(f"config key 'augment_intensity' must be in [0, 0.5), got {scale}")


def random_shift(obs: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replicate-pad by ``pad`` and crop back to ``[B, C, H, W]`` at one random offset per sample.

    Works on any dtype (uint8 frames stay uint8). Offsets are uniform in ``[-pad, pad]`` on each axis.
    """
    return random_shift_with_offsets(obs, pad, generator)[0]


def random_shift_with_offsets(obs: torch.Tensor, pad: int, generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`random_shift` and its offsets ``long [B, 2]`` (rows, columns): output pixel ``(r, c)`` is input
    pixel ``(r + dr, c + dc)`` (clamped), so content moves by ``(-dr, -dc)``. Zero offsets at pad 0."""
    if obs.dim() != 4:
        raise RlmError(f"random shift needs image batches [B, C, H, W], got shape {tuple(obs.shape)}")
    b, _, h, w = obs.shape
    if pad == 0:
        return obs, torch.zeros(b, 2, dtype=torch.long, device=obs.device)
    shift = torch.randint(-pad, pad + 1, (b, 2), generator=generator, device=obs.device)
    rows = (torch.arange(h, device=obs.device) + shift[:, :1]).clamp_(0, h - 1)  # [B, H]
    cols = (torch.arange(w, device=obs.device) + shift[:, 1:]).clamp_(0, w - 1)  # [B, W]
    index = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, obs.shape[1], h * w)
    return obs.reshape(b, obs.shape[1], h * w).gather(2, index).view(obs.shape), shift


def intensity_factors(batch: int, scale: float, device: torch.device,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """``1 + scale * clip(N(0, 1), -2, 2)`` per sample, shape ``[B, 1, 1, 1]``."""
    noise = torch.randn(batch, 1, 1, 1, generator=generator, device=device).clamp_(-2.0, 2.0)
    return noise.mul_(scale).add_(1.0)


def augment_batch(obs: torch.Tensor, mode: str, pad: int, scale: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply ``mode`` (``shift``, ``intensity``, ``shift+intensity`` or ``none``) to ``obs [B, C, H, W]``.

    Returns float32 in the input's value range (uint8 frames stay in [0, 255] times the intensity factor;
    the encoder scales them as it scales unaugmented frames). ``none`` returns ``obs`` unchanged.
    """
    return augment_batch_with_offsets(obs, mode, pad, scale, generator)[0]


def augment_batch_with_offsets(obs: torch.Tensor, mode: str, pad: int, scale: float,
                               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`augment_batch` and the shift offsets ``long [B, 2]`` (see :func:`random_shift_with_offsets`;
    zeros without a shift), for labels that must move with the pixels (object boxes)."""
    if "shift" in mode:
        x, shift = random_shift_with_offsets(obs, pad, generator)
    else:  # no shift: zero offsets (a small allocation only on this path)
        x, shift = obs, torch.zeros(obs.shape[0], 2, dtype=torch.long, device=obs.device)
        if mode == "none":
            return x, shift
    if "intensity" in mode:
        # convert, then multiply in place: the same values as uint8 * float32's promotion, but that mixed-dtype
        # kernel allocates an extra float copy per call, which glibc hands back to the system and faults in again
        # (2.9 against 0.06 ms for a batch of 32 here)
        return x.float().mul_(intensity_factors(x.shape[0], scale, x.device, generator)), shift
    return x.float(), shift
