"""A world model as a Gymnasium vector env (:meth:`rlmorning.agents.nets.world_model.WorldModel.as_env`)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlmorning.agents.nets.world_model import WorldModel
from rlmorning.errors import RlmError


class ImaginedVectorEnv(VectorEnv):
    """The world model as a Gymnasium vector env (next-step autoreset, like Gymnasium's default).

    ``reset`` draws ``num_envs`` start frames from the pool ``start_obs`` (row ``i`` when the pool has
    exactly ``num_envs`` rows, else uniformly at random) and returns them as they are (real frames);
    with ``start_obs=None`` start frames are sampled from the model's PixelCNN prior instead.
    ``step`` advances the latent dynamics: observations are the binarised decoded frames, rewards the
    reward head, ``terminated`` is the termination head's probability > 0.5 and ``truncated`` is set after
    ``horizon`` imagined steps. Autoreset is *next-step*: the step after an episode's end returns a fresh
    start frame with reward 0 and both flags False (the trainer treats that step as no transition);
    ``metadata['autoreset_mode']`` says so. No same-step ``final_obs`` is provided.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, model: WorldModel, start_obs: Any, num_envs: int | None = None, horizon: int = 50,
                 seed: int | None = None) -> None:
        if start_obs is None:
            if model.prior is None:
                raise RlmError("as_env: give start frames, or train the model with a prior (prior=pixelcnn)")
            if not num_envs:
                raise RlmError("as_env: num_envs is needed when start frames come from the prior")
            pool = None
        else:
            pool = np.asarray(start_obs.cpu() if isinstance(start_obs, torch.Tensor) else start_obs)
        if pool is not None and (pool.ndim != 4 or tuple(pool.shape[1:]) != model.obs_shape):
            raise RlmError(f"as_env: start frames must be [N, {', '.join(map(str, model.obs_shape))}], "
                           f"got {pool.shape}")
        if horizon < 1:
            raise RlmError(f"as_env: horizon must be >= 1, got {horizon}")
        self.model = model
        self.pool = pool
        self.num_envs = int(num_envs or len(pool))  # type: ignore[arg-type]
        self.horizon = horizon
        high = 1 if model.input_scale == 1.0 else 255
        self.single_observation_space = gym.spaces.Box(0, high, model.obs_shape, dtype=np.uint8)
        self.single_action_space = gym.spaces.Discrete(model.num_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.rng = np.random.default_rng(seed)
        self._z: torch.Tensor | None = None
        self._h: torch.Tensor | None = None
        self._t = np.zeros(self.num_envs, np.int64)
        self._needs_reset = np.zeros(self.num_envs, bool)

    def _draw(self, n: int) -> np.ndarray:
        if self.pool is None:
            gen = torch.Generator().manual_seed(int(self.rng.integers(2**62)))
            return self.model.sample_frames(n, generator=gen).cpu().numpy()
        if len(self.pool) == self.num_envs and n == self.num_envs:
            return self.pool.astype(np.uint8)
        return self.pool[self.rng.integers(0, len(self.pool), n)].astype(np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        obs = self._draw(self.num_envs)
        self._z, self._h = self.model.start(obs)
        self._t[:] = 0
        self._needs_reset[:] = False
        return obs, {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._z is None or self._h is None:
            raise RlmError("ImaginedVectorEnv: call reset() before step()")
        actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        z, h, probs, r, pt = self.model.step_latent(self._z, self._h, actions)
        obs = self.model._to_frames(probs).cpu().numpy()
        rewards = r.float().cpu().numpy().astype(np.float64)
        terminated = pt.cpu().numpy() > 0.5
        self._t += 1
        truncated = (self._t >= self.horizon) & ~terminated
        restart = self._needs_reset.copy()
        if restart.any():
            idx = np.flatnonzero(restart)
            fresh = self._draw(len(idx))
            z0, h0 = self.model.start(fresh)
            z[idx], h[idx] = z0, h0
            obs[idx] = fresh
            rewards[idx] = 0.0
            terminated[idx] = truncated[idx] = False
            self._t[idx] = 0
        self._z, self._h = z, h
        self._needs_reset = terminated | truncated
        return obs, rewards, terminated, truncated, {}
