"""Atari 2600 games through ale-py: a fast C++ vector env for training, a Gymnasium env for evaluation.

Training (``make_atari_vector``): 84x84 gray frames, frame skip 4 with a max over the last two frames, up to
30 no-op starts, FIRE on reset, reward clipping to {-1, 0, 1} and episodic life (a life loss ends the
learner's episode, the game goes on); frames are stacked by :class:`~rlmorning.envs.stack.FrameStack`. Two
backends give the same frames and flags for the same seed and actions: ale-py's C++
``ale_py.vector_env.AtariVectorEnv`` (C++ threads: the faster with several envs; its state cannot be saved)
and its Python twin :class:`~rlmorning.envs.atari_python.PythonAtariVectorEnv` (as fast with one env; its
state is saved in checkpoints, so ``--resume`` continues the episodes in flight exactly).

Evaluation (``make_atari_eval``): one ``ALE/<Game>-v5`` env with the same preprocessing through
Gymnasium's ``AtariPreprocessing``, but **true game scores**: unclipped rewards, all lives, episodes
capped at 108,000 frames, optional sticky actions (Machado et al. 2018), and RGB screens for video.
The agent's view is the one it learned from: where training ends the learner's episode at a life loss,
the evaluation frame stack is zero-padded again after each life loss (the game goes on; Dopamine's runner
does the same by starting a new agent episode at each life loss). ROMs ship inside ale-py; nothing is
downloaded.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from rlmorning.envs.stack import FrameStack
from rlmorning.errors import RlmError

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner per emulator; errors still show

FRAME_STACK = 4


@lru_cache(maxsize=1)
def atari_games() -> tuple[str, ...]:
    """ROM ids shipped with ale-py (``breakout``, ``space_invaders``, ...)."""
    return tuple(sorted(ale_py.roms.get_all_rom_ids()))


def game_title(rom: str) -> str:
    """``space_invaders`` -> ``SpaceInvaders``."""
    return "".join(part.title() for part in rom.split("_"))


def parse_atari_name(name: str) -> str | None:
    """Map ``Breakout``, ``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4`` or ``breakout`` to a ROM id."""
    base = name.split("/", 1)[1] if name.startswith("ALE/") else name
    base = re.sub(r"-v\d+$", "", base)
    base = re.sub(r"(NoFrameskip|Deterministic)$", "", base)
    # compare without underscores and case: ``UpNDown`` is ``up_n_down``, ``TicTacToe3D`` ``tic_tac_toe_3d``
    # (no two ROM ids differ only in underscores)
    return _roms_by_key().get(base.replace("_", "").lower())


@lru_cache(maxsize=1)
def _roms_by_key() -> dict[str, str]:
    return {rom.replace("_", ""): rom for rom in atari_games()}


class _GameEndInfo(VectorWrapper):
    """Marks whole-game ends and repairs ``final_obs`` of life losses.

    Adds ``info['episode_end']``: True where a whole game ended, not just a life. With same-step
    autoreset ``info['lives']`` already shows the next game's lives, so a game over is a termination
    where the lives did not go down; with next-step autoreset it is a termination with 0 lives left.
    On a life loss the ALE does not reset, so it leaves ``info['final_obs']`` unwritten: the final frame
    of that learner episode is the observation returned in the same step, and is put there.
    """

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env)
        self._same_step = env.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP
        self._lives = np.zeros(self.num_envs, dtype=np.int64)

    def reset(self, *, seed: Any = None, options: Any = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._lives = np.asarray(info["lives"]).copy()
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        terminated, truncated = np.asarray(terminated), np.asarray(truncated)
        lives = np.asarray(info["lives"])
        game_over = lives >= self._lives if self._same_step else lives == 0
        info = dict(info)
        info["episode_end"] = truncated | (terminated & game_over)
        if self._same_step:
            life_lost = terminated & ~info["episode_end"]
            if life_lost.any():
                final = np.array(info["final_obs"], copy=True)
                final[life_lost] = obs[life_lost]
                info["final_obs"] = final
        self._lives = lives.copy()
        return obs, rewards, terminated, truncated, info

    def checkpoint_state(self) -> dict[str, Any]:
        """The lives seen last step (how the next step tells a game over from a life loss)."""
        return {"lives": self._lives.copy()}

    def restore_checkpoint_state(self, data: dict[str, Any]) -> None:
        self._lives = np.array(data["lives"], dtype=np.int64)


def make_atari_vector(
    rom: str,
    num_envs: int,
    seed: int,
    *,
    ram: bool = False,
    frame_skip: int = 4,
    noop_max: int = 30,
    episodic_life: bool = True,
    clip_rewards: bool = True,
    sticky_actions: float = 0.0,
    max_frames: int = 108_000,
    autoreset_mode: str = "same_step",
    num_threads: int = 0,
    frame_size: int = 84,
    backend: str = "auto",
) -> VectorEnv:
    """The training vector env: obs ``uint8 [N, 4, S, S]`` (``S = frame_size``, 84 by default; 64 for the
    World Models / SimPLe-scale world models), clipped rewards, episodic life.

    ``backend``: ``cpp`` is ale-py's C++ ``AtariVectorEnv`` (``num_threads`` C++ threads, 0 = one per env);
    ``python`` its Python twin :class:`~rlmorning.envs.atari_python.PythonAtariVectorEnv`: the same frames and
    flags, plus the console RAM in ``info`` (``obs_ram``, ``ram``, ``final_ram``), and a state that checkpoints
    save (exact resume); its envs step in the calling thread (``num_threads`` is an error there). ``auto`` (the
    default) picks ``python`` for one env (as fast as C++ there) or with ``ram=True``, else ``cpp``."""
    _check_frame_size(frame_size)
    backend = resolve_backend(backend, num_envs, ram)
    if backend == "python" and num_threads:
        raise RlmError(f"env_kwargs num_threads ({num_threads}) sets the C++ backend's threads; this run uses the "
                       "Python backend (one env, or RAM): leave num_threads out, or set env_kwargs backend: cpp")
    if autoreset_mode not in ("same_step", "next_step"):
        raise RlmError(f"autoreset_mode must be same_step or next_step, got '{autoreset_mode}'")
    settings: dict[str, Any] = dict(
        frameskip=frame_skip, noop_max=noop_max, life_loss_info=episodic_life, reward_clipping=clip_rewards,
        repeat_action_probability=sticky_actions, max_num_frames_per_episode=max_frames,
        img_height=frame_size, img_width=frame_size,
        autoreset_mode=AutoresetMode.SAME_STEP if autoreset_mode == "same_step" else AutoresetMode.NEXT_STEP,
    )
    env: VectorEnv
    if backend == "python":
        from rlmorning.envs.atari_python import PythonAtariVectorEnv

        env = PythonAtariVectorEnv(rom, num_envs, **settings)
    else:
        env = ale_py.vector_env.AtariVectorEnv(
            rom, num_envs, num_threads=num_threads, stack_num=1, episodic_life=False, use_fire_reset=True,
            **settings)
        env.metadata = dict(env.metadata)
    return stack_game_frames(env, seed)


BACKENDS = ("auto", "cpp", "python")


def resolve_backend(backend: str, num_envs: int, ram: bool) -> str:
    """``cpp`` or ``python`` for ``env_kwargs.backend`` (see :func:`make_atari_vector`)."""
    if backend not in BACKENDS:
        raise RlmError(f"env_kwargs backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "cpp" and ram:
        raise RlmError("the console RAM (aux: hallucination | objects) needs env_kwargs backend python or auto, "
                       "not cpp (ale-py's C++ vector env does not return the RAM)")
    if backend == "auto":
        return "python" if ram or num_envs == 1 else "cpp"
    return backend


def stack_game_frames(env: VectorEnv, seed: int) -> FrameStack:
    """The last step of the Atari training factory: game-end info, a ``FRAME_STACK`` frame stack, a seeded reset."""
    stacked = FrameStack(_GameEndInfo(env), FRAME_STACK)
    stacked.metadata = dict(env.metadata)
    stacked.reset(seed=seed)
    return stacked


def _check_frame_size(size: int) -> None:
    if not isinstance(size, int) or not 16 <= size <= 210:
        raise RlmError(f"env_kwargs frame_size must be an integer in [16, 210] (84: DQN, 64: world models), "
                       f"got {size!r}")


class FireOnReset(gym.Wrapper):
    """Press FIRE after reset in games that need it to start (as the training env does)."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        meanings = self.env.unwrapped.get_action_meanings()
        if "FIRE" in meanings:
            obs, _, terminated, truncated, info = self.env.step(meanings.index("FIRE"))
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


class StackFrames(gym.Wrapper):
    """Stack the last ``k`` frames: obs ``[k, H, W]``, zeros before the episode's start and, with
    ``restart_on_life_loss``, zeros before the frame of each life loss (the training env's episodic-life
    view). Rewards, lives and episode ends are untouched."""

    def __init__(self, env: gym.Env, k: int, restart_on_life_loss: bool) -> None:
        super().__init__(env)
        inner = env.observation_space
        assert isinstance(inner, gym.spaces.Box)
        self.restart_on_life_loss = restart_on_life_loss
        self.observation_space = gym.spaces.Box(0, 255, (k, *inner.shape), dtype=inner.dtype)
        self._stack = np.zeros((k, *inner.shape), dtype=inner.dtype)
        self._lives = 0

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        self._lives = int(info.get("lives", 0))
        self._stack[:] = 0
        self._stack[-1] = obs
        return self._stack.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = int(info.get("lives", 0))
        if self.restart_on_life_loss and lives < self._lives:
            self._stack[:] = 0
        else:
            self._stack[:-1] = self._stack[1:]
        self._stack[-1] = obs
        self._lives = lives
        return self._stack.copy(), reward, terminated, truncated, info


def make_atari_eval(
    rom: str,
    seed: int,
    *,
    sticky_actions: float = 0.0,
    max_frames: int = 108_000,
    noop_max: int = 30,
    frame_skip: int = 4,
    render_rgb: bool = False,
    frame_size: int = 84,
    episodic_life: bool = True,
) -> gym.Env:
    """The evaluation env: obs ``uint8 [4, S, S]`` like training, true (unclipped, all-lives) scores.

    ``episodic_life`` (as the run trained) zero-pads the frame stack after each life loss, as the
    training env does when it ends the learner's episode there; the score still counts every life."""
    _check_frame_size(frame_size)
    env = gym.make(
        f"ALE/{game_title(rom)}-v5",
        frameskip=1,
        repeat_action_probability=sticky_actions,
        max_num_frames_per_episode=max_frames,
        render_mode="rgb_array" if render_rgb else None,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=frame_size,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    env = FireOnReset(env)
    env = StackFrames(env, FRAME_STACK, restart_on_life_loss=episodic_life)
    env.reset(seed=seed)
    return env


def atari_action_meanings(rom: str) -> list[str]:
    """ALE's names of the minimal action set (NOOP, FIRE, RIGHT, LEFT ...)."""
    env = gym.make(f"ALE/{game_title(rom)}-v5")
    try:
        return list(env.unwrapped.get_action_meanings())
    finally:
        env.close()


def eval_protocol(sticky_actions: float, epsilon: float, max_frames: int) -> str:
    """The one-line description of how an Atari score was measured, printed beside every score."""
    return (
        f"true game score: unclipped, all lives, <= {max_frames} frames, 30 no-op starts, "
        f"epsilon={epsilon}, sticky actions p={sticky_actions}"
    )
