"""Frame stacking for vector envs, zero-padded at every episode start.

rlmorning stacks frames itself (rather than in ALE) so that the stack is reset at *every* episode end the
learner sees, including the life losses of episodic-life training. The replay buffer rebuilds stacks
with the same zero padding, so a sampled stack equals the observation the agent acted on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper


class FrameStack(VectorWrapper):
    """Stack the last ``k`` frames of a vector env: obs ``[N, k, *frame]``, zeros before an episode's start.

    The wrapped env's single observation is a frame ``[*frame]`` or ``[1, *frame]``. Works with the
    same-step and next-step autoreset modes; with same-step autoreset ``info["final_obs"]`` becomes the
    stacked final observations ``[N, k, *frame]`` (rows of envs that did not finish hold the next obs).
    """

    def __init__(self, env: VectorEnv, k: int) -> None:
        super().__init__(env)
        inner = env.single_observation_space
        assert isinstance(inner, spaces.Box)
        self._squeeze = len(inner.shape) == 3 and inner.shape[0] == 1
        frame_shape = inner.shape[1:] if self._squeeze else inner.shape
        self.k = k
        low = np.zeros((k, *frame_shape), dtype=inner.dtype)
        high = np.full((k, *frame_shape), np.max(inner.high), dtype=inner.dtype)
        self.single_observation_space = spaces.Box(low, high, dtype=inner.dtype)
        self.observation_space = spaces.Box(
            np.broadcast_to(low, (self.num_envs, *low.shape)),
            np.broadcast_to(high, (self.num_envs, *high.shape)),
            dtype=inner.dtype,
        )
        self._stack = np.zeros((self.num_envs, k, *frame_shape), dtype=inner.dtype)
        self._mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self._pending_reset = np.zeros(self.num_envs, dtype=bool)

    def _frames(self, obs: np.ndarray) -> np.ndarray:
        return obs[:, 0] if self._squeeze else obs

    def reset(self, *, seed: Any = None, options: Any = None) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._stack[:] = 0
        self._stack[:, -1] = self._frames(obs)
        self._pending_reset[:] = False
        return self._stack.copy(), info

    def step(self, actions: Any) -> tuple[np.ndarray, Any, Any, Any, dict]:
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        done = np.asarray(terminated) | np.asarray(truncated)
        frames = self._frames(obs)
        if self._mode == AutoresetMode.NEXT_STEP and self._pending_reset.any():
            self._stack[self._pending_reset] = 0
        self._stack[:, :-1] = self._stack[:, 1:]
        self._stack[:, -1] = frames
        if self._mode == AutoresetMode.SAME_STEP and done.any():
            final = self._stack.copy()
            final_frames = self._frames(np.asarray(_final_obs_array(info, obs, done)))
            final[done, -1] = final_frames[done]  # finished rows: the shifted stack plus the final frame
            info = dict(info)
            info["final_obs"] = final
            info["_final_obs"] = done.copy()
            self._stack[done] = 0
            self._stack[done, -1] = frames[done]
        if self._mode == AutoresetMode.NEXT_STEP:
            self._pending_reset = done
        return self._stack.copy(), rewards, terminated, truncated, info

    def checkpoint_state(self) -> dict[str, Any]:
        """The stacked frames and the envs whose stack a next-step reset will clear."""
        return {"stack": self._stack.copy(), "pending_reset": self._pending_reset.copy()}

    def restore_checkpoint_state(self, data: dict[str, Any]) -> None:
        stack = np.asarray(data["stack"], dtype=self._stack.dtype)
        if stack.shape != self._stack.shape:
            raise ValueError(f"saved frame stack has shape {stack.shape}, this env's is {self._stack.shape}")
        self._stack = stack.copy()
        self._pending_reset = np.array(data["pending_reset"], dtype=bool)


def _final_obs_array(info: dict, obs: np.ndarray, done: np.ndarray) -> np.ndarray:
    """``info['final_obs']`` as one array (gymnasium's object arrays or ALE's dense array)."""
    final = info["final_obs"]
    if isinstance(final, np.ndarray) and final.dtype != object:
        return final
    out = np.array(obs, copy=True)
    for i in np.flatnonzero(done):
        out[i] = final[i]
    return out
