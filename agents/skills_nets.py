"""Networks of the skills agent: the observation trunk, the skill-conditioned Q-network, the discriminator
q(z|s) and the intrinsic reward ``log q(z|s) - log p(z)`` (Gregor et al. 2016; Eysenbach et al. 2018).

A *code* is what conditions the policy: ``categorical`` codes are skill indices ``z in {0..K-1}`` with a
uniform prior, fed to the Q-network as one-hot vectors; ``gaussian`` codes are vectors ``z ~ N(0, I_d)`` fed
as they are, with a Gaussian ``q(z|s) = N(mu(s), diag sigma(s)^2)`` (InfoGAN's continuous latent codes).
Codes travel as float arrays ``[B, w]``: ``w = 1`` (the index) for categorical codes, ``w = d`` otherwise.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.dqn_parts import input_scale
from rlmorning.agents.nets.encoders import make_encoder

CODES = ("categorical", "gaussian")
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class Trunk(nn.Module):
    """Observation -> features: vector observations with finite Box bounds are mapped to [-1, 1] per entry
    (entries with infinite bounds pass unchanged), uint8 frames with values up to 255 are scaled to [0, 1],
    then the registry's encoder (``encoder``, ``encoder_kwargs``) runs."""

    def __init__(self, space: gym.spaces.Box, encoder: str, encoder_kwargs: dict, normalize: bool) -> None:
        super().__init__()
        shape = tuple(space.shape)
        scale = input_scale(space)
        frames = scale != 1.0  # uint8 frames with values up to 255
        self.encoder = make_encoder(encoder, shape, scale, **encoder_kwargs)
        self.out_dim = int(self.encoder.out_dim)
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        finite = np.isfinite(low) & np.isfinite(high) & (high > low)
        self.normalize = bool(normalize and len(shape) == 1 and not frames and finite.any())
        low, high = np.where(finite, low, -1.0), np.where(finite, high, 1.0)  # identity where not finite
        mid, inv_half = (low + high) / 2, 2.0 / (high - low)
        self.register_buffer("mid", torch.as_tensor(mid, dtype=torch.float32), persistent=False)
        self.register_buffer("inv_half", torch.as_tensor(inv_half, dtype=torch.float32), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            obs = (obs.float() - self.mid) * self.inv_half
        return self.encoder(obs)


def code_input(codes: torch.Tensor, kind: str, num_skills: int) -> torch.Tensor:
    """What the Q-network sees of a code ``[B, w]``: one-hot ``[B, K]`` (categorical) or the code itself."""
    if kind == "categorical":
        return F.one_hot(codes[:, 0].long(), num_skills).float()
    return codes.float()


class SkillQNetwork(nn.Module):
    """``Q(s, z, .)``: the trunk's features concatenated with the code input, then an MLP head (``hidden`` units;
    0 = one linear layer, under which a code could only shift each action's value by a constant)."""

    def __init__(self, trunk: Trunk, code_width: int, num_actions: int, hidden: int) -> None:
        super().__init__()
        self.encoder = trunk
        size = trunk.out_dim + code_width
        self.head = (nn.Sequential(nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))
                     if hidden > 0 else nn.Linear(size, num_actions))

    def forward(self, obs: torch.Tensor, code_in: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encoder(obs), code_in], dim=1))


class Discriminator(nn.Module):
    """``q(z|s)`` on top of its own trunk: K logits (categorical) or a mean and a log-std per code dimension
    (gaussian; the log-std is clamped to [-5, 2])."""

    def __init__(self, trunk: Trunk, kind: str, num_skills: int, code_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.kind = kind
        self.num_skills = num_skills
        self.code_dim = code_dim
        self.head = nn.Linear(trunk.out_dim, num_skills if kind == "categorical" else 2 * code_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(obs))

    def log_q_from_output(self, out: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """``log q(z|s)`` ``[B]`` from the head's output ``out`` and the codes ``[B, w]``."""
        if self.kind == "categorical":
            return F.log_softmax(out, dim=1).gather(1, codes[:, :1].long()).squeeze(1)
        mean, log_std = out.chunk(2, dim=1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        z = (codes - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(dim=1)

    def log_q(self, obs: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """``log q(z|s)`` ``[B]`` for observations ``[B, ...]`` and their codes ``[B, w]``."""
        return self.log_q_from_output(self(obs), codes)

    def predict_from_output(self, out: torch.Tensor) -> torch.Tensor:
        """The most likely code ``[B, w]``: the argmax skill (categorical) or the mean (gaussian)."""
        if self.kind == "categorical":
            return out.argmax(dim=1, keepdim=True).float()
        return out.chunk(2, dim=1)[0]


def log_prior(codes: torch.Tensor, kind: str, num_skills: int) -> torch.Tensor:
    """``log p(z)`` ``[B]``: ``-log K`` for the uniform categorical prior, the ``N(0, I)`` log-density otherwise."""
    if kind == "categorical":
        return torch.full((codes.shape[0],), -math.log(num_skills), device=codes.device)
    return (-0.5 * codes.float().pow(2) - 0.5 * math.log(2 * math.pi)).sum(dim=1)


def intrinsic_reward(disc: Discriminator, obs: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """The skill reward ``log q(z|s) - log p(z)`` ``[B]``; its mean over visited states is a variational lower
    bound on the mutual information I(S; Z) in nats (Barber & Agakov 2003)."""
    return disc.log_q(obs, codes) - log_prior(codes, disc.kind, disc.num_skills)


def probe_codes(kind: str, num_skills: int, code_dim: int) -> np.ndarray:
    """The code of each numbered skill ``k`` (``float32 [K, w]``): ``k`` itself (categorical), or K fixed draws
    of ``N(0, I_d)`` from a generator with a constant seed, the same in every run (gaussian)."""
    if kind == "categorical":
        return np.arange(num_skills, dtype=np.float32)[:, None]
    return np.random.default_rng(20_160_612).standard_normal((num_skills, code_dim)).astype(np.float32)
