"""Saving and restoring the state of simple Python vector envs, so ``--resume`` continues exactly.

Supported: ``gymnasium.vector.SyncVectorEnv`` of envs whose whole state is ``unwrapped.state`` (the
classic-control family: CartPole, Acrobot, MountainCar, Pendulum ...) plus their RNG and time-limit
counter. Other envs (the ALE's C++ vector env, MinAtar) return None: a resumed run starts fresh
episodes there, and the trainer says so.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def capture_env_state(env: Any) -> dict[str, Any] | None:
    """Plain-data state (tensors, ints, dicts) of a supported vector env, else None."""
    if not isinstance(env, gym.vector.SyncVectorEnv):
        return None
    subs = []
    for e in env.envs:
        base = e.unwrapped
        raw = getattr(base, "state", None)
        if raw is None or not hasattr(base, "np_random"):
            return None
        limit = _time_limit(e)
        subs.append({
            "state": torch.from_numpy(np.array(raw, dtype=np.float64)),
            "dtype": str(np.asarray(raw).dtype),
            "steps_beyond_terminated": getattr(base, "steps_beyond_terminated", None),
            "rng": base.np_random.bit_generator.state,
            "elapsed": getattr(limit, "_elapsed_steps", None) if limit is not None else None,
        })
    return {
        "kind": "sync",
        "envs": subs,
        "autoreset": torch.from_numpy(np.asarray(env._autoreset_envs, dtype=bool).copy()),
    }


def restore_env_state(env: Any, state: dict[str, Any]) -> bool:
    """Restore what :func:`capture_env_state` saved; False when ``env`` is not of that kind."""
    if state.get("kind") != "sync" or not isinstance(env, gym.vector.SyncVectorEnv):
        return False
    if len(state["envs"]) != len(env.envs):
        return False
    for e, s in zip(env.envs, state["envs"], strict=True):
        base = e.unwrapped
        base.state = s["state"].numpy().astype(s["dtype"])
        if s["steps_beyond_terminated"] is not None or hasattr(base, "steps_beyond_terminated"):
            base.steps_beyond_terminated = s["steps_beyond_terminated"]
        base.np_random.bit_generator.state = s["rng"]
        limit = _time_limit(e)
        if limit is not None and s["elapsed"] is not None:
            limit._elapsed_steps = s["elapsed"]
    env._autoreset_envs = state["autoreset"].numpy().copy()
    return True
