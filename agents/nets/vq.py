"""VQ-VAE frame codec (van den Oord et al. 2017), registered as ``vqvae`` in :data:`CODECS`.

A small conv encoder maps a frame ``[C, H, W]`` to a spatial grid ``(h, w)`` of ``code_dim``-vectors;
each cell is replaced by its nearest of ``num_codes`` codebook vectors, and the decoder maps the
quantised grid back to per-cell logits ``[C, H, W]`` (Bernoulli likelihood, as the ``ae``/``vae``
codecs). Gradients pass the quantiser with the straight-through estimator.

* Grid: by default the frame is halved (stride-2 3x3 convs, ``ceil(n / 2)`` per halving) while its larger
  side exceeds 8, so MinAtar's 10x10 frames give a 5x5 grid (one stride-2 conv), 64x64 frames 8x8 and
  84x84 frames 6x6; frames of side <= 8 keep their size. ``grid=(h, w)`` overrides: the encoder halves
  while both sides stay >= the grid, then average-pools to it exactly. The decoder retraces the encoder
  (nearest-neighbour resize back from a pooled grid, then one 4x4 stride-2 transposed conv per halving,
  cropped to the encoder's sizes), so its output is exactly ``H x W``.
* Flat latent: ``z [B, D]`` is the quantised grid ``[B, code_dim, h, w]`` flattened (channel first),
  ``D = latent_size = code_dim * h * w`` (200 for 10x10 frames with the defaults). The ``latent_dim``
  argument is accepted for the codecs' common signature and ignored; ``latent_dim`` the attribute is
  ``latent_size``.
* Codes on the unit sphere (``normalize=True``, as in Yu et al. 2022, "Vector-quantized Image Modeling
  with Improved VQGAN"): encoder outputs and codebook vectors are L2-normalised before the look-up.
  MinAtar frames are sparse, so an unnormalised encoder starts with tiny, bias-dominated outputs and the
  codebook collapses onto a few codes; on the sphere the output scale cannot shrink.
* Regulariser: ``reg [B]`` = codebook loss + ``commitment`` * commitment loss, where each is the squared
  L2 distance between a cell's encoder output and its code (one side stop-gradient), averaged over the
  sample's cells. The world model adds it with weight 1 (``reg_uses_beta = False``).
* Dead codes: in training mode (with gradients enabled) ``encode`` first keeps an exponential moving
  average (``usage_decay``) of each code's share of the batch's cells (buffer ``usage``, saved with the
  state dict). Codes whose share is below ``dead_threshold`` are re-seeded k-means++ style: one at a
  time, at an encoder output of the batch drawn with probability proportional to its squared distance to
  the nearest live or re-seeded code (so they land on badly represented outputs, not on copies of the
  common background), and their usage is reset to ``1 / num_codes``. All codes start with usage 0, so the first
  training batch seeds the codebook from data. Draws use the torch default generator: deterministic
  under ``torch.manual_seed``. ``restart_dead=False`` turns this off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.nets.world_model_nets import CODECS
from rlmorning.errors import RlmError


def default_grid(height: int, width: int, max_side: int = 8) -> tuple[int, int]:
    """The code grid of an ``height x width`` frame: halve (``ceil``) while the larger side exceeds ``max_side``."""
    h, w = height, width
    while max(h, w) > max_side:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


@CODECS.register("vqvae", "VQ-VAE (van den Oord et al. 2017): conv encoder to a grid of codebook vectors, "
                          "straight-through, Bernoulli decoder")
class VQVAE(nn.Module):
    """VQ-VAE codec with the ``ae``/``vae`` interface (``encode``/``decode``) plus code-level helpers.

    ``channels``: conv width; ``num_codes`` x ``code_dim``: the codebook; ``commitment``: weight of the
    commitment loss; ``grid``: code grid ``(h, w)`` (default from :func:`default_grid`); ``restart_dead``,
    ``dead_threshold``, ``usage_decay``: dead-code re-seeding; ``normalize``: codes on the unit sphere.
    ``latent_dim`` is ignored (the latent size follows from the grid: :attr:`latent_size`).
    """

    stochastic = False
    reg_uses_beta = False
    has_latent_grid = True

    def __init__(self, obs_shape: Sequence[int], latent_dim: int = 32, channels: int = 16, input_scale: float = 1.0,
                 num_codes: int = 32, code_dim: int = 8, commitment: float = 0.25,
                 grid: Sequence[int] | None = None, restart_dead: bool = True, dead_threshold: float = 1e-3,
                 usage_decay: float = 0.95, normalize: bool = True) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise RlmError(f"vqvae needs image observations [C, H, W], got shape {tuple(obs_shape)}")
        c, h, w = (int(s) for s in obs_shape)
        if num_codes < 2 or code_dim < 1 or channels < 1:
            raise RlmError(f"vqvae needs num_codes >= 2, code_dim >= 1 and channels >= 1, got {num_codes}, "
                           f"{code_dim} and {channels}")
        if commitment < 0 or not 0.0 <= usage_decay < 1.0:
            raise RlmError(f"vqvae needs commitment >= 0 and 0 <= usage_decay < 1, got {commitment}, {usage_decay}")
        if grid is None:
            gh, gw = default_grid(h, w)
        else:
            if len(grid) != 2:
                raise RlmError(f"vqvae grid must be (h, w), got {tuple(grid)}")
            gh, gw = (int(s) for s in grid)
            if not (1 <= gh <= h and 1 <= gw <= w):
                raise RlmError(f"vqvae grid {(gh, gw)} must lie between (1, 1) and the frame size {(h, w)}")
        self.obs_shape = (c, h, w)
        self.grid = (gh, gw)
        self.num_codes = int(num_codes)
        self.code_dim = int(code_dim)
        self.commitment = float(commitment)
        self.input_scale = float(input_scale)
        self.latent_size = self.code_dim * gh * gw
        self.latent_grid = (self.code_dim, gh, gw)  # the flat latent is this grid, channel-first
        self.latent_dim = self.latent_size  # what the dynamics must use; the argument is ignored
        self.restart_dead = bool(restart_dead)
        self.dead_threshold = float(dead_threshold)
        self.usage_decay = float(usage_decay)
        self.normalize = bool(normalize)

        layers: list[nn.Module] = [nn.Conv2d(c, channels, 3, padding=1), nn.ReLU()]
        sizes = [(h, w)]  # spatial size after each stride-2 conv; the decoder retraces it
        while math.ceil(sizes[-1][0] / 2) >= gh and math.ceil(sizes[-1][1] / 2) >= gw and sizes[-1] != (gh, gw):
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU()]
            sizes.append((math.ceil(sizes[-1][0] / 2), math.ceil(sizes[-1][1] / 2)))
        if sizes[-1] != (gh, gw):
            layers.append(nn.AdaptiveAvgPool2d((gh, gw)))
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, code_dim, 1)]
        self.enc = nn.Sequential(*layers)
        self._sizes = sizes
        self.codebook = nn.Parameter(torch.randn(num_codes, code_dim))
        self.register_buffer("usage", torch.zeros(num_codes))
        self.dec_in = nn.Sequential(nn.Conv2d(code_dim, channels, 3, padding=1), nn.ReLU())
        # one transposed conv (exact 2x, then cropped to the encoder's size) per stride-2 conv of the encoder
        self.dec_up = nn.ModuleList(nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
                                    for _ in range(len(sizes) - 1))
        self.dec_out = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(channels, c, 3, padding=1))

    # ------------------------------------------------------------------------------------------ helpers
    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.input_scale

    def _check_frames(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.obs_shape:
            raise RlmError(f"vqvae expects frames [B, {', '.join(map(str, self.obs_shape))}], "
                           f"got {tuple(x.shape)}")

    def _grid_of(self, z: torch.Tensor) -> torch.Tensor:
        """Flat latents ``[B, D]`` -> cell vectors ``[B, h, w, code_dim]``."""
        if z.dim() != 2 or z.shape[1] != self.latent_size:
            raise RlmError(f"vqvae latents must be [B, {self.latent_size}], got {tuple(z.shape)}")
        return z.view(z.shape[0], self.code_dim, *self.grid).permute(0, 2, 3, 1)

    def _flat_of(self, cells: torch.Tensor) -> torch.Tensor:
        """Cell vectors ``[B, h, w, code_dim]`` -> flat latents ``[B, D]`` (channel-first order)."""
        return cells.permute(0, 3, 1, 2).reshape(cells.shape[0], -1)

    @torch.no_grad()
    def nearest(self, cells: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook vector of each vector ``[..., code_dim]`` (squared L2)."""
        flat = cells.detach().reshape(-1, self.code_dim)
        e = self.embeddings().detach()
        dist = flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ e.t() + e.pow(2).sum(1)[None]
        return dist.argmin(1).view(cells.shape[:-1])

    def _encode_cells(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder outputs (before quantisation) ``[B, h, w, code_dim]``."""
        self._check_frames(x)
        cells = self.enc(self.scale(x)).permute(0, 2, 3, 1)
        return F.normalize(cells, dim=-1) if self.normalize else cells

    def embeddings(self) -> torch.Tensor:
        """The code vectors ``[num_codes, code_dim]`` (unit length when ``normalize``)."""
        return F.normalize(self.codebook, dim=1) if self.normalize else self.codebook

    @torch.no_grad()
    def _track_usage(self, idx: torch.Tensor, cells: torch.Tensor) -> None:
        counts = torch.bincount(idx.reshape(-1), minlength=self.num_codes).float()
        self.usage.mul_(self.usage_decay).add_(counts / counts.sum(), alpha=1.0 - self.usage_decay)
        if not self.restart_dead:
            return
        dead = (self.usage < self.dead_threshold).nonzero().squeeze(1).tolist()
        if not dead:
            return
        pool = cells.detach().reshape(-1, self.code_dim).float()
        live = self.embeddings().detach()[self.usage >= self.dead_threshold].float()
        err = torch.cdist(pool, live).pow(2).min(1).values if len(live) else None
        for k in dead:  # k-means++ seeding: each new code at an output drawn with p ~ squared distance
            if err is None or not float(err.sum()) > 0.0:
                pick = torch.randint(0, pool.shape[0], (1,), device=pool.device)
            else:
                pick = torch.multinomial(err, 1)
            new = pool[pick[0]]
            self.codebook.data[k] = new.to(self.codebook.dtype)
            d2 = (pool - new).pow(2).sum(1)
            err = d2 if err is None else torch.minimum(err, d2)
        self.usage[dead] = 1.0 / self.num_codes

    # ---------------------------------------------------------------------------------- codec interface
    def encode(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, mean, reg [B])`` for frames ``x [B, C, H, W]``: the quantised grid flattened (straight-through
        gradients to the encoder), the same latent, and the per-sample VQ loss. ``sample`` is ignored."""
        cells = self._encode_cells(x)
        idx = self.nearest(cells)
        if self.training and torch.is_grad_enabled():
            self._track_usage(idx, cells)
            idx = self.nearest(cells)  # restarted codes may now be nearer
        q = self.embeddings()[idx]
        codebook_loss = (cells.detach() - q).pow(2).sum(-1).flatten(1).mean(1)
        commit_loss = (cells - q.detach()).pow(2).sum(-1).flatten(1).mean(1)
        z = self._flat_of(q.detach() + (cells - cells.detach()))  # straight-through, exactly the code values
        return z, z, codebook_loss + self.commitment * commit_loss

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-cell logits ``[B, C, H, W]`` of flat latents ``z [B, D]``."""
        g = self.dec_in(self._grid_of(z).permute(0, 3, 1, 2))
        if tuple(g.shape[-2:]) != self._sizes[-1]:  # undo the average pooling of a custom grid
            g = F.interpolate(g, size=self._sizes[-1], mode="nearest")
        for up, (sh, sw) in zip(self.dec_up, reversed(self._sizes[:-1]), strict=True):
            g = F.relu(up(g)[..., :sh, :sw])
        return self.dec_out(g)

    # ------------------------------------------------------------------------------------ code helpers
    def snap(self, z: torch.Tensor) -> torch.Tensor:
        """Replace each cell's vector of ``z [B, D]`` by its nearest codebook vector (straight-through)."""
        cells = self._grid_of(z)
        q = self.embeddings().detach()[self.nearest(cells)]
        return self._flat_of(q + (cells - cells.detach()))

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices ``LongTensor [B, h, w]`` of frames ``x [B, C, H, W]``."""
        with torch.no_grad():
            return self.nearest(self._encode_cells(x))

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Flat latents ``[B, D]`` of code indices ``[B, h, w]``."""
        if codes.dim() != 3 or tuple(codes.shape[1:]) != self.grid:
            raise RlmError(f"vqvae codes must be [B, {self.grid[0]}, {self.grid[1]}], got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.num_codes):
            raise RlmError(f"vqvae codes must lie in [0, {self.num_codes}), got {int(codes.min())}..{int(codes.max())}")
        return self._flat_of(self.embeddings()[codes.long()])

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Per-cell logits ``[B, C, H, W]`` of code indices ``[B, h, w]``."""
        return self.decode(self.embed_codes(codes))

    def perplexity(self) -> float:
        """``exp(entropy)`` of the tracked code usage (how many codes are in effect used; 0 before training)."""
        p = self.usage / self.usage.sum().clamp(min=1e-12)
        return float(torch.exp(-(p * p.clamp(min=1e-12).log()).sum())) if self.usage.sum() > 0 else 0.0
