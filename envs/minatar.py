"""MinAtar (Young & Tian 2019): 10x10 miniature Atari games, the CPU-scale stand-in for Atari.

Needs the optional extra ``pip install rlmorning[minatar]``. Observations become ``uint8 [C, 10, 10]``
(channels first, like Atari frames); MinAtar's own sticky actions (p=0.1) stay on, as in its paper.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlmorning.errors import RlmError

MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")


def _import_minatar() -> Any:
    try:
        import minatar.gym as minatar_gym
    except ImportError:
        raise RlmError("MinAtar envs need the minatar package: pip install 'rlmorning[minatar]'") from None
    return minatar_gym


class ChannelsFirst(gym.ObservationWrapper):
    """``bool [10, 10, C]`` -> ``uint8 [C, 10, 10]``."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = spaces.Box(0, 1, (c, h, w), dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(observation, (2, 0, 1))).astype(np.uint8)


def parse_minatar_name(name: str) -> str | None:
    """``MinAtar/Breakout`` or ``MinAtar/Breakout-v1`` -> ``Breakout``; None when not a MinAtar name."""
    if not name.lower().startswith("minatar/"):
        return None
    game = name.split("/", 1)[1].split("-v")[0]
    for g in MINATAR_GAMES:
        if g.lower() == game.lower().replace("_", ""):
            return g
    return game  # unknown game: make_minatar reports it


def make_minatar(game: str, seed: int, max_steps: int = 100_000) -> gym.Env:
    """One MinAtar env (minimal action set), seeded."""
    if game not in MINATAR_GAMES:
        raise RlmError(f"unknown MinAtar game '{game}'. Valid: {', '.join(MINATAR_GAMES)}")
    minatar_gym = _import_minatar()
    snake = {"SpaceInvaders": "space_invaders"}.get(game, game.lower())
    env = minatar_gym.BaseEnv(snake, use_minimal_action_set=True)
    env = gym.wrappers.TimeLimit(ChannelsFirst(env), max_episode_steps=max_steps)
    env.reset(seed=seed)
    return env
