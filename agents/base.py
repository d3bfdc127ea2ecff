"""The Agent protocol: the one interface the trainer drives for every agent.

The trainer owns the loop (see ``rlmorning/trainer.py``); an agent never owns a loop of its own::

    actions, state = agent.act(obs, state, explore=True)
    next_obs, rewards, terminated, truncated, info = env.step(actions)
    agent.observe(obs, actions, rewards, terminated, truncated, real_next_obs, valid, info)
    metrics = agent.update(step)

Recurrent agents (e.g. memory policies) carry their memory in ``state``; the trainer calls
``reset_state`` for the envs whose episodes ended. Value-based agents expose ``q_values`` for the
visualization tools; others return None.

Every agent class is built as ``Agent(config, setting)``: ``config`` is the agent's own config dataclass and
``setting`` an :class:`AgentSetting`, the facts of the run it is built for (the spaces of one env, the number of
envs, frame stack, run length, device, seed). ``setting.inference=True`` (``rlmorning.api.load_policy``: eval,
record, plots, dream) builds only what acting and inspection need: no replay buffer, no optimizer state to fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch

from rlmorning.checkpointed import Checkpointed, load_module_state

__all__ = ["Agent", "AgentSetting", "Checkpointed", "FeedForwardAgent", "linear_schedule", "load_module_state"]


@dataclass(frozen=True)
class AgentSetting:
    """The facts of the run an agent is built for: the second argument of every ``Agent(config, setting)``."""

    observation_space: gym.Space
    """The observation space of one env (not of the vector env)."""
    action_space: gym.Space
    """The action space of one env (not of the vector env)."""
    total_steps: int
    """Env steps the run will take, so schedules (epsilon, learning rate) can be fractions of the run."""
    num_envs: int = 1
    """Envs stepped side by side: the batch size of ``act`` and ``observe`` while training."""
    frame_stack: int = 1
    """Frames stacked in an observation (4 for Atari, else 1); replay rebuilds stacks from single frames."""
    device: torch.device = torch.device("cpu")
    """Where the networks live and compute."""
    seed: int = 0
    """Seed of the agent's own RNGs (exploration, replay sampling, augmentation)."""
    inference: bool = False
    """Build only what acting and inspection need (``rlmorning.api.load_policy``): no replay buffer, no
    optimizer; such an agent acts and loads checkpoints but cannot learn."""


@runtime_checkable
class Agent(Protocol):
    """What the trainer, evaluator, recorder and checkpoints need from an agent."""

    def initial_state(self, batch_size: int) -> Any:
        """Recurrent state for ``batch_size`` fresh episodes (None for feed-forward agents)."""

    def reset_state(self, state: Any, mask: np.ndarray) -> Any:
        """Reset the entries of ``state`` where ``mask`` [B] is True (their episodes ended)."""

    def act(self, obs: np.ndarray, state: Any, explore: bool) -> tuple[np.ndarray, Any]:
        """Actions for a batch of observations ``obs [B, ...]``; ``explore`` selects the behaviour policy."""

    def observe(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        next_obs: np.ndarray,
        valid: np.ndarray | None = None,
        info: dict | None = None,
    ) -> None:
        """Record one vector step; rows where ``valid`` is False are not real transitions.

        ``info`` is the vector env's info dict of this step (e.g. supervised targets of algorithmic tasks).
        """

    def update(self, step: int) -> dict[str, float]:
        """Learn from what was observed; returns metrics (empty when nothing was done)."""

    def q_values(self, obs: np.ndarray) -> torch.Tensor | None:
        """Q-values ``float32 [B, A]`` for visualization, or None for agents without them."""

    def interrupt_episodes(self) -> None:
        """The episodes in progress were lost (resume with fresh envs): close them in any buffers."""

    def state_dict(self, include_buffers: bool = True) -> dict[str, Any]:
        """Everything needed to resume: networks, optimizer, counters, RNG and (optionally) replay."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""


class FeedForwardAgent:
    """Mixin for agents without recurrent state."""

    def initial_state(self, batch_size: int) -> None:
        return None

    def reset_state(self, state: Any, mask: np.ndarray) -> Any:
        return state

    def interrupt_episodes(self) -> None:
        replay = getattr(self, "replay", None)
        if replay is not None:
            replay.interrupt_episodes()


def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    """Linear interpolation from ``start`` to ``end`` over ``duration`` steps, constant afterwards."""
    if duration <= 0:
        return end
    frac = min(max(t / duration, 0.0), 1.0)
    return start + frac * (end - start)
