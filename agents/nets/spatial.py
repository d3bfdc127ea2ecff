"""Spatial world-model parts: a codec whose latent is a grid (``grid-ae``) and conv-GRU dynamics (``conv-gru``).

The flat-latent models (``ae``/``vae`` + ``gru``) squeeze a frame through one vector, so every object's
position must be rebuilt from it at every step; on MinAtar games with many small moving objects (the cars
of Freeway, the aliens of SpaceInvaders) the one-step prediction then loses to simply copying the last
frame. Here the latent keeps the frame's layout and the dynamics act on it locally, as video-prediction
models do (SimPLe, Kaiser et al. 2019, predicts frames with convolutions):

* ``grid-ae`` (codec): a deterministic conv autoencoder to a ``latent_channels x h x w`` grid. MinAtar's
  10x10 frames keep their size; larger frames are halved by stride-2 convs while their larger side
  exceeds ``max_side`` (64x64 -> 16x16, 84x84 -> 11x11), and the decoder retraces the encoder with
  transposed convs cropped to the encoder's sizes. The flat latent is the grid flattened channel-first.
* ``conv-gru`` (dynamics): a convolutional GRU (Cho et al. 2014's gates, computed by 3x3 convs as in
  Ballas et al. 2016) whose state is a ``channels x h x w`` grid. Input: the latent grid and the action as
  one-hot planes. The next latent is a two-layer conv of the new state; the reward and termination heads
  read the state's spatial mean and max with the action (``reward_head="pooled"``), or the reward is a sum
  over cells of a per-cell conv score (``reward_head="map"``: rewards come from local events, a bullet
  meeting an alien). It works with any codec that exposes a
  ``latent_grid`` ``(channels, h, w)``: ``grid-ae`` and ``vqvae``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.nets.world_model_nets import CODECS, DYNAMICS
from rlmorning.errors import RlmError


def halving_sizes(height: int, width: int, max_side: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 conv (``ceil`` halving) while the larger side exceeds ``max_side``."""
    sizes = [(height, width)]
    while max(sizes[-1]) > max_side:
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


@CODECS.register("grid-ae", "deterministic conv autoencoder to a spatial latent grid (pair with conv-gru)")
class GridAE(nn.Module):
    """Autoencoder ``[B, C, H, W] -> [B, latent_channels * h * w]`` keeping the frame's layout.

    ``channels``: conv width; ``latent_channels``: channels per latent cell; ``max_side``: frames are halved
    while their larger side exceeds it. ``latent_dim`` is accepted for the codecs' common signature and
    ignored (the latent size follows from the grid: :attr:`latent_size`).
    """

    stochastic = False
    reg_uses_beta = True
    has_latent_grid = True

    def __init__(self, obs_shape: Sequence[int], latent_dim: int = 32, channels: int = 32, input_scale: float = 1.0,
                 latent_channels: int = 8, max_side: int = 16) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise RlmError(f"grid-ae needs image observations [C, H, W], got shape {tuple(obs_shape)}")
        if channels < 1 or latent_channels < 1 or max_side < 1:
            raise RlmError(f"grid-ae needs channels, latent_channels and max_side >= 1, got {channels}, "
                           f"{latent_channels} and {max_side}")
        c, h, w = (int(s) for s in obs_shape)
        self.obs_shape = (c, h, w)
        self.input_scale = float(input_scale)
        self._sizes = halving_sizes(h, w, int(max_side))
        gh, gw = self._sizes[-1]
        self.latent_grid = (int(latent_channels), gh, gw)
        self.latent_size = int(latent_channels) * gh * gw
        self.latent_dim = self.latent_size
        layers: list[nn.Module] = [nn.Conv2d(c, channels, 3, padding=1), nn.ReLU()]
        for _ in self._sizes[1:]:
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, latent_channels, 1)]
        self.enc = nn.Sequential(*layers)
        self.dec_in = nn.Sequential(nn.Conv2d(latent_channels, channels, 3, padding=1), nn.ReLU())
        self.dec_up = nn.ModuleList(nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
                                    for _ in self._sizes[1:])
        self.dec_out = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(channels, c, 3, padding=1))

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.input_scale

    def encode(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, z, zeros [B])`` for frames ``x [B, C, H, W]`` (deterministic; ``sample`` is ignored)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.obs_shape:
            raise RlmError(f"grid-ae expects frames [B, {', '.join(map(str, self.obs_shape))}], got {tuple(x.shape)}")
        z = self.enc(self.scale(x)).flatten(1)
        return z, z, torch.zeros(z.shape[0], device=z.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-cell logits ``[B, C, H, W]`` of flat latents ``z [B, latent_size]``."""
        g = self.dec_in(z.view(z.shape[0], *self.latent_grid))
        for up, (sh, sw) in zip(self.dec_up, reversed(self._sizes[:-1]), strict=True):
            g = F.relu(up(g)[..., :sh, :sw])
        return self.dec_out(g)


class ConvGRUCell(nn.Module):
    """``h' = (1 - u) * h + u * tanh(W * [x, r * h])`` with reset ``r`` and update ``u`` gates from a 3x3
    conv of ``[x, h]`` (Cho et al. 2014's GRU with convolutions for matrix products)."""

    def __init__(self, in_channels: int, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.gates = nn.Conv2d(in_channels + channels, 2 * channels, kernel, padding=kernel // 2)
        self.candidate = nn.Conv2d(in_channels + channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        r, u = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        cand = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        return (1.0 - u) * h + u * cand


@DYNAMICS.register("conv-gru", "convolutional GRU on a latent grid (codecs grid-ae, vqvae): local dynamics, "
                               "reward/termination from pooled state")
class ConvGRUDynamics(nn.Module):
    """Conv-GRU dynamics on the latent grid ``grid = (latent_channels, h, w)`` (given by the world model from the
    codec's ``latent_grid``). ``channels``: state channels per cell; ``hidden``: width of the reward and
    termination heads; ``reward_head``: ``pooled`` | ``map`` (see the module docstring). The flat recurrent
    state has :attr:`hidden` ``= channels * h * w`` entries."""

    spatial = True

    def __init__(self, latent_dim: int, num_actions: int, hidden: int = 256, *, grid: Sequence[int],
                 channels: int = 32, reward_head: str = "pooled") -> None:
        super().__init__()
        if reward_head not in ("pooled", "map"):
            raise RlmError(f"conv-gru option 'reward_head' must be pooled or map, got {reward_head!r}")
        self.reward_head = reward_head
        zc, gh, gw = (int(s) for s in grid)
        if zc * gh * gw != latent_dim:
            raise RlmError(f"conv-gru: latent grid {tuple(grid)} does not match the latent size {latent_dim}")
        if channels < 1 or hidden < 1:
            raise RlmError(f"conv-gru needs channels >= 1 and hidden >= 1, got {channels} and {hidden}")
        self.grid = (zc, gh, gw)
        self.channels = int(channels)
        self.num_actions = int(num_actions)
        self.latent_dim = latent_dim
        self.hidden = self.channels * gh * gw
        self.init = nn.Sequential(nn.Conv2d(zc, channels, 3, padding=1), nn.Tanh())
        self.cell = ConvGRUCell(zc + num_actions, channels)
        self.next_latent = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                         nn.Conv2d(channels, zc, 3, padding=1))
        head_in = 2 * channels + num_actions
        if reward_head == "map":  # per-cell score from the state and the action planes, summed over the grid
            self.reward = nn.Sequential(nn.Conv2d(channels + num_actions, hidden, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(hidden, 1, 1))
            nn.init.zeros_(self.reward[-1].weight)  # a sum over cells: start at reward 0, not at a sum of biases
            nn.init.zeros_(self.reward[-1].bias)
        else:
            self.reward = nn.Sequential(nn.Linear(head_in, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.terminal = nn.Sequential(nn.Linear(head_in, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def _grid(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(z.shape[0], *self.grid)

    def _state(self, h: torch.Tensor) -> torch.Tensor:
        return h.view(h.shape[0], self.channels, *self.grid[1:])

    def initial(self, z: torch.Tensor) -> torch.Tensor:
        """Flat recurrent state ``[B, channels * h * w]`` from the start frame's latent."""
        return self.init(self._grid(z)).flatten(1)

    def forward(self, z: torch.Tensor, actions: torch.Tensor, h: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: ``(h', next latent [B, D], reward [B], termination logit [B])`` (flat tensors)."""
        a = F.one_hot(actions.long(), self.num_actions).float()
        zg = self._grid(z)
        planes = a[:, :, None, None].expand(-1, -1, *zg.shape[-2:])
        state = self.cell(torch.cat([zg, planes], dim=1), self._state(h))
        pooled = torch.cat([state.mean(dim=(2, 3)), state.amax(dim=(2, 3)), a], dim=1)
        if self.reward_head == "map":
            reward = self.reward(torch.cat([state, planes], dim=1)).sum(dim=(1, 2, 3))
        else:
            reward = self.reward(pooled).squeeze(1)
        return state.flatten(1), self.next_latent(state).flatten(1), reward, self.terminal(pooled).squeeze(1)
