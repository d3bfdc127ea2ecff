"""Pieces of the DQN learning loop shared by :mod:`~rlmorning.agents.dqn` and :mod:`~rlmorning.agents.skills`:
replay-ratio credit, owed gradient steps, target-net sync (hard or Polyak), epsilon-greedy acting and the
uint8 input scale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlmorning.errors import RlmError


def require_discrete_box(agent: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """One-line RlmError unless the env has a Discrete action space and a Box observation space."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise RlmError(f"{agent} needs a discrete action space, this env has {action_space}")
    if not isinstance(observation_space, gym.spaces.Box):
        raise RlmError(f"{agent} needs a Box observation space, this env has {observation_space}")


def input_scale(space: gym.spaces.Box) -> float:
    """uint8 frames with values up to 255 are scaled to [0, 1]; 0/1 planes and floats stay as they are."""
    if space.dtype == np.uint8 and float(np.max(space.high)) > 1:
        return 1.0 / 255.0
    return 1.0


def new_transitions(obs: np.ndarray, valid: np.ndarray | None) -> int:
    """How many rows of a vector step are real transitions (all of them when ``valid`` is None)."""
    return int(obs.shape[0] if valid is None else np.count_nonzero(valid))


def owed_credit(replay_size: int, new: int, learning_starts: int, buffer_size: int, train_freq: int) -> float:
    """Update rounds that ``new`` transitions earn: none until the buffer holds ``learning_starts`` (at most
    ``buffer_size``) transitions, also after a resume without a saved buffer, which must refill first."""
    if replay_size >= min(learning_starts, buffer_size):
        return new / train_freq
    return 0.0


def take_owed_steps(credit: float, can_learn: bool, gradient_steps: int,
                    gradient_step: Callable[[], dict[str, float]]) -> tuple[list[dict[str, float]], float]:
    """Run ``gradient_steps`` gradient steps per whole update round of ``credit`` when ``can_learn``
    (else the credit is dropped); returns each step's metrics and the credit left."""
    metrics: list[dict[str, float]] = []
    if not can_learn:
        return metrics, 0.0
    while credit >= 1.0:
        credit -= 1.0
        for _ in range(gradient_steps):
            metrics.append(gradient_step())
    return metrics, credit


def target_sync_due(env_steps: int, last_sync: int, period: int) -> int | None:
    """The new last-sync step (a multiple of ``period``) when a target sync is due, else None."""
    if env_steps - last_sync >= period:
        return env_steps - env_steps % period
    return None


def mean_metrics(metrics: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each key over a non-empty list of gradient-step metrics, over the steps that report it (a
    one-off such as ``compile_s`` comes from one step only)."""
    keys = dict.fromkeys(k for m in metrics for k in m)
    return {k: float(np.mean([m[k] for m in metrics if k in m])) for k in keys}


def sync_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Copy ``online`` into ``target`` (``tau`` >= 1) or move it a Polyak step ``tau`` towards ``online``."""
    with torch.no_grad():
        if tau >= 1.0:
            target.load_state_dict(online.state_dict())
        else:
            for t, o in zip(target.parameters(), online.parameters(), strict=True):
                t.lerp_(o, tau)


def epsilon_greedy(rng: np.random.Generator, epsilon: float, num_actions: int, n: int,
                   greedy: Callable[[], np.ndarray]) -> np.ndarray:
    """``n`` epsilon-greedy actions: random rows drawn from ``rng`` (mask first, then actions), the others from
    ``greedy()``, which is not called when every row is random."""
    random_mask = rng.random(n) < epsilon
    random_actions = rng.integers(0, num_actions, n)
    if random_mask.all():
        return random_actions
    return np.where(random_mask, random_actions, greedy())


class ReplayRatioMixin:
    """The replay-ratio bookkeeping of a DQN-style agent: ``env_steps``, ``_update_credit`` and
    ``_last_target_sync`` counters driven by a ``config`` with ``learning_starts``, ``buffer_size``,
    ``train_freq``, ``gradient_steps``, ``target_update_period`` and ``tau``; the agent defines
    ``_gradient_step`` and holds ``online`` and ``target`` networks."""

    config: Any
    online: nn.Module
    target: nn.Module
    env_steps: int
    _update_credit: float
    _last_target_sync: int
    _gradient_step: Callable[[], dict[str, float]]
    """One gradient step, defined by the agent; returns its metrics."""

    def _count_observed(self, replay_size: int, obs: np.ndarray, valid: np.ndarray | None) -> None:
        """Count a vector step's transitions and the update rounds they earn."""
        new = new_transitions(obs, valid)
        self.env_steps += new
        c = self.config
        self._update_credit += owed_credit(replay_size, new, c.learning_starts, c.buffer_size, c.train_freq)

    def _owed_gradient_steps(self, can_learn: bool) -> list[dict[str, float]]:
        """Take the gradient steps owed by the replay ratio (none, and the credit dropped, unless ``can_learn``)."""
        metrics, self._update_credit = take_owed_steps(self._update_credit, can_learn, self.config.gradient_steps,
                                                       self._gradient_step)
        return metrics

    def _target_sync_due(self) -> bool:
        """Whether a target sync is due now; when it is, the sync is recorded as done."""
        synced = target_sync_due(self.env_steps, self._last_target_sync, self.config.target_update_period)
        if synced is None:
            return False
        self._last_target_sync = synced
        return True

    def _sync_target(self) -> None:
        sync_target(self.target, self.online, self.config.tau)
