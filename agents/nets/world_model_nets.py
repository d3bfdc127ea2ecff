"""Frame codecs and latent dynamics for the world models of :mod:`rlmorning.agents.world_model`.

Chosen by config name from two registries:

* ``CODECS``: ``ae`` (deterministic conv autoencoder) and ``vae`` (Gaussian latent with a KL term,
  Kingma & Welling 2014). Both decode to per-cell logits, trained with a Bernoulli (binary
  cross-entropy) likelihood, which fits MinAtar's 0/1 planes (and grey levels in [0, 1]).
* ``DYNAMICS``: ``gru`` (latent + one-hot action -> next latent through a GRU cell, Cho et al. 2014,
  with reward and termination heads).

More parts live in their own modules and register here: ``vqvae`` (:mod:`.vq`, discrete codes),
``mdn-gru`` (:mod:`.mdn`, mixture density dynamics), and the spatial pair ``grid-ae`` + ``conv-gru``
(:mod:`.spatial`: a latent grid and convolutional GRU dynamics on it). ``ae`` and ``vae`` pick their body by frame size:
stride-1 convolutions for small frames such as MinAtar's 10x10, the World Models VAE's stride-2 stack
for ALE frames of 32 px and more (64x64, 84x84).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.nets.strided_codec import MIN_SIZE, strided_body
from rlmorning.errors import RlmError
from rlmorning.registry import Registry

CODECS: Registry[Callable[..., nn.Module]] = Registry("world-model codec")
DYNAMICS: Registry[Callable[..., nn.Module]] = Registry("world-model dynamics")


class _ConvCodec(nn.Module):
    """Shared body. Small frames (< 32 px, e.g. MinAtar's 10x10): conv 3x3 x2 -> linear to the latent;
    linear -> conv 3x3 -> per-cell logits, keeping the spatial size. Frames of 32 px and more (ALE at
    64x64 or 84x84): the World Models VAE's four stride-2 convolutions and their transposed mirror
    (:func:`rlmorning.agents.nets.strided_codec.strided_body`, widths ``channels`` x 1, 2, 4, 8)."""

    stochastic = False
    reg_uses_beta = True

    def __init__(self, obs_shape: Sequence[int], latent_dim: int = 32, channels: int = 16,
                 input_scale: float = 1.0) -> None:
        super().__init__()
        c, h, w = (int(s) for s in obs_shape)
        self.obs_shape = (c, h, w)
        self.latent_dim = latent_dim
        self.latent_size = latent_dim
        self.input_scale = float(input_scale)
        out = latent_dim * (2 if self.stochastic else 1)
        self.strided = min(h, w) >= MIN_SIZE
        if self.strided:
            self.encoder, self.decoder = strided_body(self.obs_shape, out, latent_dim, channels)
            return
        self.enc = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Flatten(),
        )
        self.enc_head = nn.Linear(channels * h * w, out)
        self.dec_fc = nn.Sequential(nn.Linear(latent_dim, channels * h * w), nn.ReLU())
        self.dec = nn.Conv2d(channels, c, 3, padding=1)
        self._channels = channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output ``[B, latent_dim]`` (``[B, 2 * latent_dim]`` for a Gaussian posterior)."""
        x = self.scale(x)
        return self.encoder(x) if self.strided else self.enc_head(self.enc(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-cell logits ``[B, C, H, W]`` of latents ``z [B, latent_dim]``."""
        if self.strided:
            return self.decoder(z)
        _, h, w = self.obs_shape
        return self.dec(self.dec_fc(z).view(z.shape[0], self._channels, h, w))

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.input_scale


@CODECS.register("ae", "deterministic conv autoencoder (Bernoulli reconstruction loss)")
class ConvAE(_ConvCodec):
    """Deterministic autoencoder: ``encode`` returns the code itself and a zero KL."""

    def encode(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, mean, kl [B])`` for frames ``x [B, C, H, W]``."""
        z = self.features(x)
        return z, z, torch.zeros(z.shape[0], device=z.device)


@CODECS.register("vae", "Gaussian-latent VAE (Kingma & Welling 2014), beta-weighted KL, Bernoulli decoder")
class ConvVAE(_ConvCodec):
    """VAE with a diagonal Gaussian posterior and a standard normal prior."""

    stochastic = True

    def encode(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, mean, kl [B])``: a reparameterised sample (the mean when ``sample`` is False)."""
        mu, logvar = self.features(x).chunk(2, dim=1)
        logvar = logvar.clamp(-10.0, 5.0)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return z, mu, kl


@DYNAMICS.register("gru", "GRU cell (Cho et al. 2014): latent + one-hot action -> next latent, reward, termination")
class GRUDynamics(nn.Module):
    """``h' = GRU([z, onehot(a)], h)``; heads read ``h'``: next latent, reward, termination logit."""

    def __init__(self, latent_dim: int, num_actions: int, hidden: int = 256) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_actions = num_actions
        self.hidden = hidden
        self.init = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh())
        self.cell = nn.GRUCell(latent_dim + num_actions, hidden)
        self.next_latent = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim))
        self.reward = nn.Sequential(nn.Linear(hidden + num_actions, 64), nn.ReLU(), nn.Linear(64, 1))
        self.terminal = nn.Sequential(nn.Linear(hidden + num_actions, 64), nn.ReLU(), nn.Linear(64, 1))

    def initial(self, z: torch.Tensor) -> torch.Tensor:
        """Recurrent state ``[B, hidden]`` from the start frame's latent."""
        return self.init(z)

    def forward(self, z: torch.Tensor, actions: torch.Tensor, h: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step from latent ``z [B, D]``, integer ``actions [B]`` and state ``h``:
        ``(h', next latent [B, D], reward [B], termination logit [B])``."""
        a = F.one_hot(actions.long(), self.num_actions).float()
        h = self.cell(torch.cat([z, a], dim=1), h)
        ha = torch.cat([h, a], dim=1)
        return h, self.next_latent(h), self.reward(ha).squeeze(1), self.terminal(ha).squeeze(1)


def make_codec(name: str, obs_shape: Sequence[int], **kwargs: object) -> nn.Module:
    """Build codec ``name`` (unknown names raise an RlmError listing the valid ones)."""
    return CODECS.get(name)(obs_shape, **kwargs)


def make_dynamics(name: str, latent_dim: int, num_actions: int, codec: nn.Module | None = None,
                  **kwargs: object) -> nn.Module:
    """Build dynamics ``name`` (unknown names raise an RlmError listing the valid ones). Spatial dynamics
    (``conv-gru``) take their latent grid from ``codec.latent_grid``; codecs without one are refused."""
    cls = DYNAMICS.get(name)
    if getattr(cls, "spatial", False):
        grid = getattr(codec, "latent_grid", None)
        if grid is None:
            with_grid = [n for n in CODECS.names() if getattr(CODECS.get(n), "has_latent_grid", False)]
            raise RlmError(f"dynamics '{name}' acts on a latent grid: use codec {' or '.join(with_grid)}")
        kwargs = {**kwargs, "grid": tuple(grid)}
    return cls(latent_dim, num_actions, **kwargs)


# Parts in their own modules register themselves on import (they import the registries above).
from rlmorning.agents.nets import mdn as _mdn  # noqa: E402, F401
from rlmorning.agents.nets import spatial as _spatial  # noqa: E402, F401
from rlmorning.agents.nets import vq as _vq  # noqa: E402, F401
