"""Environments: name resolution and factories for every env family rlmorning trains on.

Families:

* ``atari`` — ``Breakout``, ``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4`` (see :mod:`.atari`);
* ``minatar`` — ``MinAtar/Breakout`` ... (optional extra, see :mod:`.minatar`);
* ``gym`` — any other Gymnasium id (``CartPole-v1``, ``rlmorning/Copy-v0`` ...).

Training envs are Gymnasium vector envs in same-step autoreset mode (finished episodes' last
observations in ``info['final_obs']``); evaluation envs are single Gymnasium envs that report the
true episode return.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import re
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from rlmorning.envs import atari, minatar
from rlmorning.envs.stack import FrameStack
from rlmorning.errors import RlmError, unknown_name
from rlmorning.gym_ids import register_gym_ids

__all__ = ["EnvInfo", "FrameStack", "resolve", "check_installed", "make_vector", "make_eval", "env_names",
           "unavailable_gym_ids"]


@dataclass(frozen=True)
class EnvInfo:
    """What the trainer and agents need to know about an env name."""

    family: str
    """atari | minatar | gym"""
    id: str
    """ROM id (atari), game (minatar) or Gymnasium id (gym)."""
    frame_stack: int = 1

    @property
    def display_name(self) -> str:
        if self.family == "atari":
            return atari.game_title(self.id)
        if self.family == "minatar":
            return f"MinAtar/{self.id}"
        return self.id


def _register_extra_ids() -> None:
    """Make rlmorning's own Gymnasium ids (``rlmorning/...``) known (``import rlmorning`` did; idempotent)."""
    register_gym_ids()


def resolve(name: str) -> EnvInfo:
    """Map a user-facing env name to its family; unknown names raise an RlmError with suggestions."""
    game = minatar.parse_minatar_name(name)
    if game is not None:
        if game not in minatar.MINATAR_GAMES:
            raise unknown_name("MinAtar game", game, minatar.MINATAR_GAMES)
        return EnvInfo("minatar", game)
    _register_extra_ids()
    if name in gym.registry and not name.startswith("ALE/") and "NoFrameskip" not in name:
        rom = atari.parse_atari_name(name)
        if rom is None or gym.registry[name].entry_point != "ale_py.env:AtariEnv":
            return EnvInfo("gym", name)
    rom = atari.parse_atari_name(name)
    if rom is not None:
        return EnvInfo("atari", rom, frame_stack=atari.FRAME_STACK)
    ram_game = atari.parse_atari_name(re.sub(r"-ram(?=-v\d+$|$)", "", name)) if "-ram" in name else None
    if ram_game is not None:
        raise RlmError(f"'{name}' (the console RAM as observation) is not a training env: Atari agents here see "
                       f"pixels ('{atari.game_title(ram_game)}'); the RAM can teach them while training, "
                       "--set aux=hallucination|objects")
    choices = [atari.game_title(g) for g in atari.atari_games()]
    choices += [f"MinAtar/{g}" for g in minatar.MINATAR_GAMES]
    choices += [k for k in gym.registry if atari.parse_atari_name(k) is None]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise RlmError(
        f"unknown env '{name}'.{hint} Valid: an Atari game (Breakout, Pong, SpaceInvaders, ...), "
        f"MinAtar/<{'|'.join(minatar.MINATAR_GAMES)}>, or a registered Gymnasium id; "
        "'rlmorning envs' lists them all"
    )


@functools.cache
def missing_dependency(env_id: str) -> str | None:
    """Why the registered Gymnasium id ``env_id`` cannot be made here (Gymnasium's own one-line reason: a
    package that is not installed, an env family moved elsewhere), or None when it can be."""
    entry = gym.registry[env_id].entry_point
    try:
        if callable(entry):
            if getattr(entry, "__name__", "").startswith("_raise"):  # Gymnasium's stand-in for a removed env
                entry()
            return None
        importlib.import_module(str(entry).split(":")[0])
    except Exception as exc:  # ImportError, gymnasium's DependencyNotInstalled, or a module failing to import
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    return None


def check_installed(info: EnvInfo) -> None:
    """Raise a one-line RlmError when the env needs a package this Python does not have."""
    if info.family == "gym" and info.id in gym.registry:
        reason = missing_dependency(info.id)
        if reason is not None:
            raise RlmError(f"env '{info.id}' cannot be made here: {reason}")


def _autoreset(mode: str) -> AutoresetMode:
    if mode not in ("same_step", "next_step"):
        raise RlmError(f"autoreset_mode must be same_step or next_step, got '{mode}'")
    return AutoresetMode.SAME_STEP if mode == "same_step" else AutoresetMode.NEXT_STEP


def one_hot_observations(env: gym.Env) -> gym.Env:
    """``env`` with Discrete observations (or a tuple of them: Blackjack) as uint8 one-hot vectors, as SB3
    feeds them to its networks (Gymnasium's ``FlattenObservation``); other envs are returned unchanged."""
    space = env.observation_space
    parts = space.spaces if isinstance(space, gym.spaces.Tuple) else (space,)
    if not all(isinstance(p, gym.spaces.Discrete) for p in parts):
        return env
    return gym.wrappers.DtypeObservation(gym.wrappers.FlattenObservation(env), np.uint8)


def _gym_wrappers(info: EnvInfo) -> list[Any]:
    """Wrappers of every env of a Gymnasium id: one-hot discrete observations (Gymnasium's toy-text envs);
    rlmorning's own ids (algorithmic tasks) keep their symbols, which their agents embed themselves."""
    return [] if info.id.startswith("rlmorning/") else [one_hot_observations]


def make_vector(info: EnvInfo, num_envs: int, seed: int, *, ram: bool = False, **kwargs: Any) -> VectorEnv:
    """The training vector env for ``info``, reset with ``seed``. ``kwargs`` are family options.

    ``ram=True`` (Atari only): the same env with the console RAM in ``info`` (``obs_ram``, ``ram``,
    ``final_ram``; :mod:`rlmorning.envs.atari_python`), for learning with side information."""
    if ram and info.family != "atari":
        raise RlmError(f"side information from the console RAM needs an Atari game; {info.display_name} is not one")
    try:
        if info.family == "atari":
            return atari.make_atari_vector(info.id, num_envs, seed, ram=ram, **kwargs)
        mode = _autoreset(kwargs.pop("autoreset_mode", "same_step"))
        if info.family == "minatar":
            fns = [lambda i=i: minatar.make_minatar(info.id, seed + i, **kwargs) for i in range(num_envs)]
            env = gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
        else:
            env = gym.make_vec(
                info.id, num_envs=num_envs, vectorization_mode="sync",
                vector_kwargs={"autoreset_mode": mode}, wrappers=_gym_wrappers(info), **kwargs
            )
    except TypeError as exc:
        raise RlmError(f"bad env_kwargs for {info.display_name}: {exc}") from None
    env.reset(seed=seed)
    return env


def make_eval(
    info: EnvInfo,
    seed: int,
    *,
    sticky_actions: float = 0.0,
    max_frames: int = 108_000,
    render_rgb: bool = False,
    **kwargs: Any,
) -> gym.Env:
    """A single evaluation env reporting true returns (Atari: unclipped, all lives)."""
    kwargs.pop("autoreset_mode", None)
    try:
        if info.family == "atari":
            for key in ("clip_rewards", "num_threads", "backend"):  # training-env options
                kwargs.pop(key, None)
            kwargs.pop("sticky_actions", None)
            kwargs.pop("max_frames", None)
            return atari.make_atari_eval(
                info.id, seed, sticky_actions=sticky_actions, max_frames=max_frames,
                render_rgb=render_rgb, **kwargs
            )
        if info.family == "minatar":
            return minatar.make_minatar(info.id, seed, **kwargs)
        env = gym.make(info.id, render_mode="rgb_array" if render_rgb else None, **kwargs)
        for wrap in _gym_wrappers(info):
            env = wrap(env)
    except TypeError as exc:
        raise RlmError(f"bad env_kwargs for {info.display_name}: {exc}") from None
    env.reset(seed=seed)
    return env


def action_meanings(info: EnvInfo, n: int) -> list[str]:
    """Human names of the discrete actions (ALE's for Atari, ``0..n-1`` otherwise)."""
    if info.family == "atari":
        return atari.atari_action_meanings(info.id)
    return [str(i) for i in range(n)]


def eval_protocol(info: EnvInfo, *, sticky_actions: float, epsilon: float, max_frames: int) -> str:
    """How evaluation returns were measured; printed and written next to every score."""
    if info.family == "atari":
        return atari.eval_protocol(sticky_actions, epsilon, max_frames)
    return f"undiscounted episode return, epsilon={epsilon}"


def _other_gym_ids() -> list[str]:
    return sorted(k for k in gym.registry if "/" not in k and atari.parse_atari_name(k) is None)


def env_names() -> dict[str, list[str]]:
    """Env names that can be trained on here, by family (for ``rlmorning envs``); Gymnasium ids whose
    packages are missing are in :func:`unavailable_gym_ids` instead."""
    _register_extra_ids()
    return {
        "atari": [atari.game_title(g) for g in atari.atari_games()],
        "minatar": [f"MinAtar/{g}" for g in minatar.MINATAR_GAMES],
        "rlmorning": sorted(k for k in gym.registry if k.startswith("rlmorning/")),
        "gymnasium": [k for k in _other_gym_ids() if missing_dependency(k) is None],
    }


def unavailable_gym_ids() -> dict[str, list[str]]:
    """Registered Gymnasium ids that cannot be made here, grouped by Gymnasium's reason (what to install)."""
    out: dict[str, list[str]] = {}
    for k in _other_gym_ids():
        reason = missing_dependency(k)
        if reason is not None:
            out.setdefault(reason, []).append(k)
    return out


def real_next_obs(next_obs: np.ndarray, info: dict, done: np.ndarray) -> np.ndarray:
    """The true next observations of a same-step-autoreset vector step (final obs where done)."""
    if not done.any():
        return next_obs
    final = info["final_obs"]
    if isinstance(final, np.ndarray) and final.dtype != object:
        return np.where(done.reshape(-1, *([1] * (next_obs.ndim - 1))), final, next_obs)
    out = np.array(next_obs, copy=True)
    for i in np.flatnonzero(done):
        out[i] = final[i]
    return out
