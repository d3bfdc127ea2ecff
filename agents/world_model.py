"""``rlmorning train worldmodel``: a world model trained on the real experience of a uniformly random policy.

:class:`WorldModelAgent` acts uniformly at random (or starts from another run's saved replay, ``from_run``:
:mod:`rlmorning.agents.replay_import`), keeps real transitions in a :class:`rlmorning.replay.ReplayBuffer`
and trains the model in ``update`` with the :class:`~rlmorning.agents.wm_trainer.WorldModelTrainer` that
Dyna-DQN (:mod:`rlmorning.agents.dyna`) uses too. Every ``kstep_every`` model updates its metrics also hold the
open-loop k-step per-cell error next to the copy-last-frame baseline (``kstep_err_K``, ``copy_err_K``) and
the reward-sign accuracy.

The model itself is :class:`rlmorning.agents.nets.world_model.WorldModel` (also importable from here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rlmorning.agents.base import AgentSetting, FeedForwardAgent
from rlmorning.agents.nets.world_model import WorldModel
from rlmorning.agents.replay_import import replay_from_run
from rlmorning.agents.wm_trainer import ModelConfig, ModelTraining, WorldModelTrainer, build_world_model
from rlmorning.checkpointed import Checkpointed
from rlmorning.errors import RlmError
from rlmorning.replay import ReplayBuffer, smallest_int_dtype

__all__ = ["ModelConfig", "WorldModel", "WorldModelAgent", "WorldModelConfig"]


@dataclass
class WorldModelConfig(ModelTraining):
    """World-model training on real experience gathered by a uniformly random policy (or a run's replay)."""

    buffer_size: int = 100_000
    from_run: str = ""
    """Run directory whose saved replay (checkpoints/latest.pt) seeds the buffer, e.g. a DQN run's."""


class WorldModelAgent(Checkpointed, FeedForwardAgent):
    """Collects real experience with a uniformly random policy and trains a :class:`WorldModel`.

    ``act`` is uniformly random whether exploring or not (so the trainer's evaluation measures a random
    policy's return); ``q_values`` is None. Transitions go to a :class:`rlmorning.replay.ReplayBuffer`
    (frames stored once) whose :meth:`~rlmorning.replay.ReplayBuffer.sample_sequences` gives the training
    windows; with ``from_run`` it starts as the saved replay of another run (and keeps adding new steps).
    """

    saved_inline = ("trainer",)
    saved = ("env_steps", "rng")
    saved_buffers = ("replay",)

    def __init__(self, config: WorldModelConfig, setting: AgentSetting) -> None:
        """``setting.inference=True``: the model only (for ``dream`` and inspection), no replay buffer."""
        observation_space, action_space = setting.observation_space, setting.action_space
        num_envs, frame_stack, seed = setting.num_envs, setting.frame_stack, setting.seed
        if not isinstance(action_space, gym.spaces.Discrete):
            raise RlmError(f"worldmodel needs a discrete action space, this env has {action_space}")
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 3:
            raise RlmError(f"worldmodel needs image observations [C, H, W], this env has {observation_space}")
        if config.buffer_size < 1:
            raise RlmError(f"config key 'buffer_size' must be >= 1, got {config.buffer_size}")
        self.config = config
        self.device = setting.device
        self.num_actions = int(action_space.n)
        model = build_world_model(config, observation_space, self.num_actions, self.device)
        obs_shape = tuple(observation_space.shape)
        action_dtype = smallest_int_dtype(self.num_actions)
        self.replay: ReplayBuffer | None
        if setting.inference:
            self.replay = None
        elif config.from_run:
            self.replay = replay_from_run(config.from_run, num_envs, obs_shape, observation_space.dtype,
                                          frame_stack, action_dtype, seed)
        else:
            self.replay = ReplayBuffer(config.buffer_size, num_envs, obs_shape, observation_space.dtype,
                                       frame_stack, action_dtype=action_dtype, seed=seed)
        self.trainer = WorldModelTrainer(config, model, self.replay)
        self.rng = np.random.default_rng(seed + 1)
        self.env_steps = 0

    @property
    def model(self) -> WorldModel:
        return self.trainer.model

    @property
    def updates(self) -> int:
        return self.model.updates

    @property
    def world_model(self) -> WorldModel:
        """The model being trained (:class:`~rlmorning.agents.capabilities.HasWorldModel`)."""
        return self.model

    def act(self, obs: np.ndarray, state: Any, explore: bool) -> tuple[np.ndarray, Any]:
        return self.rng.integers(0, self.num_actions, obs.shape[0]), state

    def q_values(self, obs: np.ndarray) -> None:
        return None

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                truncated: np.ndarray, next_obs: np.ndarray, valid: np.ndarray | None = None,
                info: dict | None = None) -> None:
        self.replay.add(obs, actions, rewards, terminated, truncated, next_obs, valid)
        new = int(obs.shape[0] if valid is None else np.count_nonzero(valid))
        self.env_steps += new
        self.trainer.observe(new)

    def sample(self, batch_size: int, length: int) -> dict[str, np.ndarray]:
        """Training windows from the replay (see :meth:`ReplayBuffer.sample_sequences`)."""
        return self.replay.sample_sequences(batch_size, length)

    def train_step(self) -> dict[str, float]:
        """One model update on a fresh batch of windows."""
        return self.trainer.train_step()

    def evaluate_model(self, batch: int | None = None, horizon: int | None = None) -> dict[str, float]:
        """k-step metrics on windows from the replay (:meth:`WorldModelTrainer.evaluate`)."""
        return self.trainer.evaluate(batch, horizon)

    def update(self, step: int) -> dict[str, float]:
        return self.trainer.update()
