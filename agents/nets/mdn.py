"""``mdn-gru`` dynamics: a GRU with a mixture-density head (MDN-RNN of Ha & Schmidhuber 2018, "World Models").

``h' = GRU([z, onehot(a)], h)``; an MLP on ``h'`` gives a mixture of ``K`` diagonal Gaussians over the next
latent: logits ``pi [B, K]``, means ``mu [B, K, D]`` and log-sigmas ``[B, K, D]`` (clamped to
``[LOG_SIGMA_MIN, LOG_SIGMA_MAX]``). The reward and termination heads are those of
:class:`~rlmorning.agents.nets.world_model_nets.GRUDynamics`.

One mixture weight per component shared by all latent dims (a mixture of *diagonal Gaussians*), unlike
the World Models code, which keeps a separate 1-D mixture per dim: a shared component keeps a sampled
latent inside one mode (e.g. "the ball went left" in every dim at once) instead of mixing modes dim by dim.
The components' mean biases start as N(0, 1) draws (the VAE prior): identical components sit on a
saddle of the likelihood and can stay merged into one Gaussian.

What :meth:`MDNGRUDynamics.forward` returns as the next latent:

* training mode (``self.training``): the mixture mean ``sum_k pi_k mu_k``, deterministic and differentiable,
  so the world model can decode it and feed it back in open loop; the mixture itself is trained by
  :meth:`MDNGRUDynamics.latent_loss` (negative log-likelihood).
* eval mode: a sample at temperature ``tau = self.temperature`` (logits divided by ``tau``, sigmas
  multiplied by ``sqrt(tau)``); ``tau = 0`` returns the mean of the most likely component. Sampling
  draws from torch's global RNG, so a seeded run is deterministic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.nets.world_model_nets import DYNAMICS
from rlmorning.errors import RlmError

LOG_SIGMA_MIN = -5.0
LOG_SIGMA_MAX = 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@DYNAMICS.register("mdn-gru", "MDN-RNN (Ha & Schmidhuber 2018): GRU + mixture of diagonal Gaussians over the "
                              "next latent, sampled at a temperature; reward and termination heads")
class MDNGRUDynamics(nn.Module):
    """GRU dynamics whose next latent is a mixture of ``mixtures`` diagonal Gaussians."""

    def __init__(self, latent_dim: int, num_actions: int, hidden: int = 256, mixtures: int = 5,
                 temperature: float = 1.0) -> None:
        super().__init__()
        if mixtures < 1:
            raise RlmError(f"mdn-gru: mixtures must be >= 1, got {mixtures}")
        if temperature < 0:
            raise RlmError(f"mdn-gru: temperature must be >= 0, got {temperature}")
        self.latent_dim = latent_dim
        self.num_actions = num_actions
        self.hidden = hidden
        self.mixtures = mixtures
        self.temperature = float(temperature)
        self.init = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh())
        self.cell = nn.GRUCell(latent_dim + num_actions, hidden)
        self.mdn = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, mixtures * (1 + 2 * latent_dim)))
        with torch.no_grad():  # spread the components' means over the N(0, 1) prior: breaks their symmetry
            self.mdn[-1].bias[mixtures:mixtures * (1 + latent_dim)].normal_()
        self.reward = nn.Sequential(nn.Linear(hidden + num_actions, 64), nn.ReLU(), nn.Linear(64, 1))
        self.terminal = nn.Sequential(nn.Linear(hidden + num_actions, 64), nn.ReLU(), nn.Linear(64, 1))

    def initial(self, z: torch.Tensor) -> torch.Tensor:
        """Recurrent state ``[B, hidden]`` from the start frame's latent."""
        return self.init(z)

    def mixture(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits [B, K], mu [B, K, D], log_sigma [B, K, D])`` of the next latent given state ``h``."""
        k, d = self.mixtures, self.latent_dim
        out = self.mdn(h)
        logits, mu, log_sigma = out.split([k, k * d, k * d], dim=1)
        log_sigma = log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
        return logits, mu.view(-1, k, d), log_sigma.view(-1, k, d)

    def latent_loss(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood ``[B]`` of ``target [B, D]`` under the mixture of state ``h`` (nats)."""
        if target.shape != (h.shape[0], self.latent_dim):
            raise RlmError(f"mdn-gru: target must be [{h.shape[0]}, {self.latent_dim}], got {tuple(target.shape)}")
        logits, mu, log_sigma = self.mixture(h)
        zs = (target.unsqueeze(1) - mu) * torch.exp(-log_sigma)
        log_comp = (-0.5 * zs.pow(2) - log_sigma - _HALF_LOG_2PI).sum(dim=2)  # [B, K]
        return -torch.logsumexp(F.log_softmax(logits, dim=1) + log_comp, dim=1)

    def sample(self, h: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        """A next latent ``[B, D]`` drawn at temperature ``tau`` (default ``self.temperature``); ``tau = 0``
        gives the mean of the most likely component."""
        tau = self.temperature if temperature is None else float(temperature)
        if tau < 0:
            raise RlmError(f"mdn-gru: temperature must be >= 0, got {tau}")
        logits, mu, log_sigma = self.mixture(h)
        rows = torch.arange(h.shape[0], device=h.device)
        if tau == 0:
            return mu[rows, logits.argmax(dim=1)]
        k = torch.multinomial(F.softmax(logits / tau, dim=1), 1).squeeze(1)
        sigma = torch.exp(log_sigma[rows, k]) * math.sqrt(tau)
        return mu[rows, k] + sigma * torch.randn_like(sigma)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        """The mixture mean ``sum_k pi_k mu_k`` ``[B, D]``."""
        logits, mu, _ = self.mixture(h)
        return (F.softmax(logits, dim=1).unsqueeze(2) * mu).sum(dim=1)

    def forward(self, z: torch.Tensor, actions: torch.Tensor, h: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: ``(h', next latent [B, D], reward [B], termination logit [B])``; the next latent is the
        mixture mean in training mode and a sample at ``self.temperature`` in eval mode."""
        a = F.one_hot(actions.long(), self.num_actions).float()
        h = self.cell(torch.cat([z, a], dim=1), h)
        ha = torch.cat([h, a], dim=1)
        zhat = self.mean(h) if self.training else self.sample(h)
        return h, zhat, self.reward(ha).squeeze(1), self.terminal(ha).squeeze(1)
