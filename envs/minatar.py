"""MinAtar (Young & Tian 2019): 10x10 miniature Atari games, the CPU-scale stand-in for Atari.

Needs the optional extra ``pip install rlmorning[minatar]``. Observations become ``uint8 [C, 10, 10]``
(channels first, like Atari frames); MinAtar's own sticky actions (p=0.1) stay on, as in its paper. The game's
state (its variables, the last action for sticky actions, the random generator) is saved in checkpoints, so
``--resume`` continues the episodes in flight exactly.
"""

from __future__ import annotations

from functools import lru_cache
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


_STATIC = frozenset({"channels", "action_map", "random"})
"""Game attributes that never change (or, ``random``, are saved on their own)."""


def _plain(value: Any) -> bool:
    """Whether ``value`` is data a checkpoint holds as it is (numbers, flags, None, arrays, nested lists)."""
    if value is None or isinstance(value, bool | int | float | np.generic | np.ndarray):
        return not (isinstance(value, np.ndarray) and value.dtype == object)
    if isinstance(value, list | tuple):
        return all(map(_plain, value))
    return False


def game_state(game: Any) -> dict[str, Any] | None:
    """The state of a ``minatar.Environment``: its game's variables, the last action (for sticky actions) and
    the random generator; None where a variable is of a kind a checkpoint cannot hold (another minatar)."""
    variables = {k: v for k, v in vars(game.env).items() if k not in _STATIC}
    if not all(map(_plain, variables.values())) or game.env.random is not game.random:
        return None
    kind, key, pos, has_gauss, gauss = game.random.get_state()
    return {"variables": variables, "last_action": int(game.last_action),
            "random": {"key": np.asarray(key, dtype=np.int64), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(gauss)}}


def set_game_state(game: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`game_state` returned."""
    for name, value in state["variables"].items():
        setattr(game.env, name, value)
    game.last_action = int(state["last_action"])
    r = state["random"]
    game.random.set_state(("MT19937", np.asarray(r["key"]).astype(np.uint32), int(r["pos"]), int(r["has_gauss"]),
                           float(r["gauss"])))


@lru_cache(maxsize=1)
def _env_class() -> type[gym.Env]:
    base = _import_minatar().BaseEnv

    class MinAtarEnv(base):  # type: ignore[misc, valid-type]
        """minatar's Gymnasium env, with a state that checkpoints hold (``--resume`` continues exactly)."""

        def checkpoint_state(self) -> dict[str, Any] | None:
            return game_state(self.game)

        def restore_checkpoint_state(self, data: dict[str, Any]) -> None:
            set_game_state(self.game, data)

    return MinAtarEnv


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
    snake = {"SpaceInvaders": "space_invaders"}.get(game, game.lower())
    env = _env_class()(snake, use_minimal_action_set=True)
    env = gym.wrappers.TimeLimit(ChannelsFirst(env), max_episode_steps=max_steps)
    env.reset(seed=seed)
    return env
