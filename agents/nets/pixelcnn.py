"""Gated PixelCNN prior over VQ code grids (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders"), for the ``vqvae`` codec of :mod:`rlmorning.agents.nets.vq`.

The grid ``[B, h, w]`` of code indices is modelled autoregressively in raster order,
``p(c) = prod_{i,j} p(c_ij | cells before (i, j))``. Each code is embedded, then ``layers`` gated blocks
run two stacks:

* the vertical stack sees only rows strictly above the current cell (its kernel covers the rows above and
  the current row, and the first block masks the current row), over a width that grows with depth;
* the horizontal stack sees the current row strictly left of the cell (first block, mask type A) or up to
  and including it (later blocks, type B, whose inputs are already shifted), plus the vertical stack at the
  same position.

Splitting the stacks removes the blind spot of a single masked 3x3 convolution (the cells above and to
the right that it never sees): with ``layers >= max(h, w) - 1`` the last cell's receptive field covers
every earlier cell. Masks are applied to the weights in every forward, so training cannot break them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.errors import RlmError


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedMaskedConv(nn.Module):
    """One gated block: ``(vertical, horizontal) -> (vertical, horizontal)``, mask type ``"A"`` or ``"B"``."""

    def __init__(self, channels: int, kernel: int, mask_type: str) -> None:
        super().__init__()
        if mask_type not in ("A", "B"):
            raise RlmError(f"PixelCNN mask type must be 'A' or 'B', got '{mask_type}'")
        self.mask_type = mask_type
        self.half = kernel // 2
        # vertical: rows i-half..i, all columns j-half..j+half (padded on top, left and right)
        self.vert = nn.Conv2d(channels, 2 * channels, (self.half + 1, kernel))
        # horizontal: current row, columns j-half..j (padded on the left)
        self.horiz = nn.Conv2d(channels, 2 * channels, (1, self.half + 1))
        self.v2h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        vmask = torch.ones_like(self.vert.weight)
        hmask = torch.ones_like(self.horiz.weight)
        if mask_type == "A":
            vmask[:, :, -1] = 0.0  # not the current row
            hmask[:, :, :, -1] = 0.0  # not the current cell
        self.register_buffer("vmask", vmask, persistent=False)
        self.register_buffer("hmask", hmask, persistent=False)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hv = F.conv2d(F.pad(v, (self.half, self.half, self.half, 0)), self.vert.weight * self.vmask, self.vert.bias)
        hh = F.conv2d(F.pad(h, (self.half, 0, 0, 0)), self.horiz.weight * self.hmask, self.horiz.bias)
        h_new = self.h_out(_gate(hh + self.v2h(hv)))
        if self.mask_type == "B":
            h_new = h_new + h  # a type-A input holds the current cell: no residual
        return _gate(hv), h_new


class PixelCNNPrior(nn.Module):
    """Autoregressive prior ``p(codes)`` over code grids ``[B, h, w]`` with ``num_codes`` classes."""

    def __init__(self, num_codes: int, grid: tuple[int, int], channels: int = 64, layers: int = 5,
                 kernel: int = 3) -> None:
        super().__init__()
        if num_codes < 2 or layers < 1 or channels < 1:
            raise RlmError(f"PixelCNN needs num_codes >= 2, layers >= 1 and channels >= 1, got {num_codes}, "
                           f"{layers} and {channels}")
        if kernel < 3 or kernel % 2 == 0:
            raise RlmError(f"PixelCNN kernel must be odd and >= 3, got {kernel}")
        if len(grid) != 2 or min(grid) < 1:
            raise RlmError(f"PixelCNN grid must be (h, w) with positive sides, got {tuple(grid)}")
        self.num_codes = int(num_codes)
        self.grid = (int(grid[0]), int(grid[1]))
        self.embed = nn.Embedding(num_codes, channels)
        self.blocks = nn.ModuleList(GatedMaskedConv(channels, kernel, "A" if i == 0 else "B") for i in range(layers))
        self.head = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, num_codes, 1))

    def _check(self, codes: torch.Tensor) -> None:
        if codes.dim() != 3 or tuple(codes.shape[1:]) != self.grid:
            raise RlmError(f"PixelCNN codes must be [B, {self.grid[0]}, {self.grid[1]}], got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.num_codes):
            raise RlmError(f"PixelCNN codes must lie in [0, {self.num_codes}), "
                           f"got {int(codes.min())}..{int(codes.max())}")

    def logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_codes, h, w]`` of each cell given the cells before it in raster order."""
        self._check(codes)
        x = self.embed(codes.long()).permute(0, 3, 1, 2)
        v, h = x, x
        for block in self.blocks:
            v, h = block(v, h)
        return self.head(h)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.logits(codes)

    def loss(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood in nats per code (scalar)."""
        return F.cross_entropy(self.logits(codes), codes.long())

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """Log-probability ``[B]`` of each grid (sum over its cells, nats)."""
        nll = F.cross_entropy(self.logits(codes), codes.long(), reduction="none")
        return -nll.flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` grids ``LongTensor [n, h, w]`` in raster order (one forward per cell).

        ``temperature`` divides the logits (> 0; lower is greedier). ``generator`` makes the draw
        reproducible; it may live on another device than the model.
        """
        if n < 0 or temperature <= 0:
            raise RlmError(f"PixelCNN sample needs n >= 0 and temperature > 0, got {n} and {temperature}")
        device = self.embed.weight.device
        codes = torch.zeros(n, *self.grid, dtype=torch.long, device=device)
        if n == 0:
            return codes
        gen_device = generator.device if generator is not None else device
        for i in range(self.grid[0]):
            for j in range(self.grid[1]):
                probs = torch.softmax(self.logits(codes)[:, :, i, j].float() / temperature, dim=1)
                draw = torch.multinomial(probs.to(gen_device), 1, generator=generator).squeeze(1)
                codes[:, i, j] = draw.to(device)
        return codes
