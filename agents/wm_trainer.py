"""Fitting a world model on a replay buffer: the one schedule shared by ``train worldmodel`` and Dyna-DQN.

* :class:`ModelConfig`: the model's parts and optimiser; :func:`build_world_model` makes the
  :class:`~rlmorning.agents.nets.world_model.WorldModel` for an env's observation space.
* :class:`ModelTraining`: that plus the training schedule (windows per update, their length, env steps per
  update, when to start, the k-step check). ``train worldmodel``'s config is one (flat keys); Dyna-DQN's is
  nested under ``model:``.
* :class:`WorldModelTrainer`: one model update every ``train_freq`` env steps once the replay holds
  ``learning_starts`` transitions, and every ``kstep_every`` model updates the open-loop k-step check
  (:func:`kstep_summary`) on replay windows. Its checkpoint state (model, optimizers, update count, credit) is
  declared once (:class:`~rlmorning.checkpointed.Checkpointed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmorning.agents.nets.world_model import WorldModel
from rlmorning.checkpointed import Checkpointed
from rlmorning.errors import RlmError
from rlmorning.replay import ReplayBuffer


@dataclass
class ModelConfig:
    """The world model's parts and optimiser (shared by ``train worldmodel`` and Dyna-DQN)."""

    codec: str = "vae"
    """ae | vae | vqvae | grid-ae"""
    dynamics: str = "gru"
    """gru | mdn-gru | conv-gru (codecs with a latent grid: grid-ae, vqvae)"""
    latent_dim: int = 32
    """Latent size of ae/vae (vqvae: code_dim x grid cells; grid-ae: latent_channels x grid cells)."""
    codec_channels: int = 16
    hidden: int = 256
    """GRU state size (conv-gru: width of its reward/termination heads; its state is
    dynamics_kwargs.channels per grid cell)."""
    beta: float = 0.1
    """KL weight of the VAE (0 turns it into a noisy autoencoder)."""
    latent_weight: float = 1.0
    reward_weight: float = 1.0
    reward_nonzero_weight: float = 1.0
    """Weight of the reward error on steps whose real reward is non-zero (> 1 for rare rewards; on
    SpaceInvaders 3 changed nothing and 10 over-predicted: docs/world_models.md)."""
    term_weight: float = 1.0
    adversarial: float = 0.0
    """Weight of the PatchGAN generator term on decoded frames (0: no critic)."""
    prior: str = "none"
    """none | pixelcnn (over the vqvae code grid)"""
    codec_kwargs: dict = field(default_factory=dict)
    """e.g. vqvae: {num_codes: 32, code_dim: 8, commitment: 0.25}"""
    dynamics_kwargs: dict = field(default_factory=dict)
    """e.g. mdn-gru: {mixtures: 5, temperature: 1.0}"""
    prior_kwargs: dict = field(default_factory=dict)
    frame_skip: bool = False
    """Predicted frames add a 3x3 conv of the previous (predicted) frame to the decoded logits."""
    context: int = 1
    """Observed frames before open-loop prediction, in training windows and k-step evaluations (<= seq_len)."""
    lr: float = 1e-3
    max_grad_norm: float = 100.0


def build_world_model(cfg: ModelConfig, observation_space: gym.spaces.Box, num_actions: int,
                      device: torch.device | str) -> WorldModel:
    """A :class:`WorldModel` for ``observation_space`` (uint8 grey frames are scaled to [0, 1])."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 3:
        raise RlmError(f"world models need image observations [C, H, W], this env has {observation_space}")
    grey = observation_space.dtype == np.uint8 and float(np.max(observation_space.high)) > 1
    return WorldModel(
        tuple(observation_space.shape), num_actions, codec=cfg.codec, dynamics=cfg.dynamics,
        latent_dim=cfg.latent_dim, codec_channels=cfg.codec_channels, hidden=cfg.hidden, beta=cfg.beta,
        lr=cfg.lr, input_scale=1.0 / 255.0 if grey else 1.0, latent_weight=cfg.latent_weight,
        reward_weight=cfg.reward_weight, reward_nonzero_weight=cfg.reward_nonzero_weight,
        term_weight=cfg.term_weight, max_grad_norm=cfg.max_grad_norm,
        adversarial=cfg.adversarial, prior=cfg.prior, codec_kwargs=cfg.codec_kwargs,
        dynamics_kwargs=cfg.dynamics_kwargs, prior_kwargs=cfg.prior_kwargs, frame_skip=cfg.frame_skip,
        context=cfg.context, device=device,
    )


def kstep_summary(model: WorldModel, batch: dict[str, Any]) -> dict[str, float]:
    """Logged k-step metrics of a sequence batch: ``kstep_err_K`` / ``copy_err_K`` (per-cell error rate of
    the open-loop prediction and of copy-last-frame) for every K up to the window length,
    ``kstep_acc_K`` / ``copy_acc_K`` for K in 1, 5 and the horizon, the reward-sign accuracies and the
    mean predicted and real rewards."""
    res = model.kstep_metrics(batch)
    horizon = len(res["acc"])
    out: dict[str, float] = {}
    for k in range(1, horizon + 1):
        if res["valid"][k - 1] > 0:
            out[f"kstep_err_{k}"] = 1.0 - float(res["acc"][k - 1])
            out[f"copy_err_{k}"] = 1.0 - float(res["copy_acc"][k - 1])
            if k in (1, min(5, horizon), horizon):
                out[f"kstep_acc_{k}"] = float(res["acc"][k - 1])
                out[f"copy_acc_{k}"] = float(res["copy_acc"][k - 1])
    out["reward_sign_acc"] = res["reward_sign_acc"]
    out["reward_pred_mean"], out["reward_real_mean"] = res["reward_pred_mean"], res["reward_real_mean"]
    if not np.isnan(res["reward_nonzero_acc"]):
        out["reward_nonzero_acc"] = res["reward_nonzero_acc"]
    return out


@dataclass
class ModelTraining(ModelConfig):
    """A world model and its training schedule on a replay buffer (:class:`WorldModelTrainer`)."""

    batch_size: int = 32
    """Windows per update."""
    seq_len: int = 8
    """Steps per window (open-loop training horizon)."""
    learning_starts: int = 1_000
    """Transitions in replay before the first model update."""
    train_freq: int = 4
    """Env steps per model update."""
    kstep_every: int = 250
    """Model updates between k-step evaluations (0 disables them)."""
    kstep_horizon: int = 10
    """Open-loop steps scored after the ``context`` observed frames."""
    kstep_batch: int = 256


class WorldModelTrainer(Checkpointed):
    """Trains ``model`` on windows of ``replay`` on the :class:`ModelTraining` schedule.

    Call :meth:`observe` with the number of new transitions after they are in replay, and :meth:`update` when
    the agent learns. ``prefix`` is how config errors name the keys (``model.`` for Dyna-DQN's nested ones).
    """

    saved = ("model", "model.optimizer", "model.critic_optimizer", "model.updates", "update_credit")
    saved_optional = ("critic_optimizer",)
    load_hint = "world-model settings or env"

    def __init__(self, config: ModelTraining, model: WorldModel, replay: ReplayBuffer | None,
                 prefix: str = "") -> None:
        for key in ("batch_size", "seq_len", "train_freq", "kstep_horizon", "kstep_batch"):
            if getattr(config, key) < 1:
                raise RlmError(f"config key '{prefix}{key}' must be >= 1, got {getattr(config, key)}")
        model.check_seq_len(config.seq_len, prefix)
        self.config = config
        self.model = model
        self.replay = replay
        self.update_credit = 0.0  # model updates owed (fractional with many envs)

    def _replay(self) -> ReplayBuffer:
        if self.replay is None:
            raise RlmError("this agent was loaded for inference (load_policy): it cannot train its world model")
        return self.replay

    def observe(self, new: int) -> None:
        """Count ``new`` real transitions, already in replay."""
        replay = self._replay()
        if len(replay) >= min(self.config.learning_starts, replay.stream_capacity * replay.num_envs):
            self.update_credit += new / self.config.train_freq

    def train_step(self) -> dict[str, float]:
        """One model update on a fresh batch of windows."""
        c = self.config
        return self.model.update(self._replay().sample_sequences(c.batch_size, c.seq_len))

    def evaluate(self, batch: int | None = None, horizon: int | None = None) -> dict[str, float]:
        """k-step metrics (:func:`kstep_summary`) on windows from the replay (seen data, not held out)."""
        c = self.config
        window = self.model.window(horizon or c.kstep_horizon)  # observed frames, then the horizon
        return kstep_summary(self.model, self._replay().sample_sequences(batch or c.kstep_batch, window))

    def update(self) -> dict[str, float]:
        """The model updates owed, and the k-step check when one of them is a multiple of ``kstep_every``;
        their mean metrics (empty when no update was due)."""
        c = self.config
        metrics: list[dict[str, float]] = []
        if self._replay().num_sampleable() > 0:
            while self.update_credit >= 1.0:
                self.update_credit -= 1.0
                metrics.append(self.train_step())
        else:
            self.update_credit = 0.0
        if not metrics:
            return {}
        out = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
        if c.kstep_every > 0 and any((self.model.updates - i) % c.kstep_every == 0 for i in range(len(metrics))):
            out.update(self.evaluate())
        return out
