"""The Atari training vector env in Python: resumable exactly, and with the console RAM beside every observation.

ale-py's fast C++ vector env (:class:`ale_py.vector_env.AtariVectorEnv`) steps its envs in C++ threads, but
its state cannot be saved (a resumed run would start fresh episodes), and it returns frames, rewards, lives
and frame numbers but not the 128 bytes of console RAM: its ``info`` holds ``env_id``, ``lives``,
``frame_number`` and ``episode_frame_number`` only, and ``ALEVectorInterface`` has no RAM accessor
(ale-py 0.12).

:class:`PythonAtariVectorEnv` is a Python twin of that env (``stack_num=1``): one
:class:`ale_py.ALEInterface` per env, stepped in turn, following the C++ ``PreprocessedEnv`` of
ale-py 0.12 step for step, so that the same seed and actions give the same frames, rewards, flags, lives
and no-op starts (tested against the C++ env):

* **reset**: ``reset_game``; FIRE if the game has it; then ``max(d - 1, 0)`` no-ops (``max(d, 0)``
  without FIRE) with ``d`` uniform in ``[0, noop_max - 1]`` from a ``std::mt19937`` seeded with the
  env's seed (``reset(seed=s)`` seeds env ``i`` with ``s + i``, for the emulator's ``random_seed`` too,
  and reloads the ROM); the observation is the current screen;
* **step**: the action is repeated ``frame_skip`` times; the observation is the pixel-wise max of the
  last two frames, grayscale, resized to ``frame_size`` with ``cv2.INTER_AREA``; a game over or the
  frame cap stops the repeats early (the screens of the unplayed repeats are then not captured, exactly
  as in C++); rewards are summed and clipped to {-1, 0, 1}; ``terminated`` on game over or on a life
  lost with lives left (``life_loss_info``: the game goes on); ``truncated`` after ``max_frames``
  emulator frames;
* **autoreset**: same-step (finished envs are reset in the same call, their last observation in
  ``info["final_obs"]``) or next-step.

Added to ``info``: ``ram`` ``uint8 [N, 128]``, the RAM after the last emulated frame of the step
(after the reset for envs reset in this call), and, where any env finished in a same-step call,
``final_ram`` ``uint8 [N, 128]``: the RAM at the end of the finished episodes (rows of the other envs
equal ``ram``, like ``final_obs``); with every step ``obs_ram`` ``uint8 [N, 128]``: the RAM of the
observation the actions were taken in (what replay stores beside that observation's frame). The
observation is a max over the last two frames, so a moving
object may also show where it was one frame before its RAM position.

**Saving**: :meth:`PythonAtariVectorEnv.checkpoint_state` holds each emulator's state (ALE's
``cloneState(include_rng=True)``, so sticky actions continue the same random stream), the last two raw
screens, the no-op generator and the step counters; restored into a new env, the episodes in flight go on
exactly as if never interrupted (tested).

:func:`~rlmorning.envs.atari.make_atari_vector` builds it (``backend="python"``, which ``"auto"`` picks for one
env or with ``ram=True``) with the C++ env's keyword arguments and wraps it exactly as the C++ env
(``_GameEndInfo`` for ``episode_end``, :class:`~rlmorning.envs.stack.FrameStack`); the envs step one after the
other in the calling thread. For one env that is as fast as the C++ env (≈ 1.1–1.4 ms per agent step for
both here: the C++ env hands each step to a worker thread and waits).
"""

from __future__ import annotations

from typing import Any

import ale_py
import cv2
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from rlmorning.envs.atari import atari_games
from rlmorning.errors import RlmError

RAM_SIZE = 128
RAW_HEIGHT, RAW_WIDTH = 210, 160


class NoopSampler:
    """``std::uniform_int_distribution<int>(0, n - 1)`` over ``std::mt19937(seed)``, as compiled into
    ale-py's C++ env: libstdc++'s algorithm for a 32-bit generator (Lemire's multiply-shift with
    rejection); its draws reproduce the C++ env's no-op starts (tested).

    The generator is numpy's MT19937 given the state of ``np.random.RandomState(seed)``, which seeds with
    the reference ``init_genrand`` exactly like ``std::mt19937(seed)``.
    """

    def __init__(self, n: int, seed: int = 5489) -> None:
        self.n = max(int(n), 1)
        self.seed(seed)

    def seed(self, seed: int) -> None:
        key, pos = np.random.RandomState(int(seed) & 0xFFFFFFFF).get_state()[1:3]
        self._bits = np.random.MT19937()
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": pos}}

    def get_state(self) -> dict[str, Any]:
        """The generator's position (plain data for a checkpoint)."""
        state = self._bits.state["state"]
        return {"key": np.asarray(state["key"], dtype=np.int64), "pos": int(state["pos"])}

    def set_state(self, state: dict[str, Any]) -> None:
        key = np.asarray(state["key"], dtype=np.int64).astype(np.uint32)
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": int(state["pos"])}}

    def _raw(self) -> int:
        return int(self._bits.random_raw())

    def __call__(self) -> int:
        n = self.n
        product = self._raw() * n
        low = product & 0xFFFFFFFF
        if low < n:
            threshold = (2**32 - n) % n
            while low < threshold:
                product = self._raw() * n
                low = product & 0xFFFFFFFF
        return product >> 32


class _Game:
    """One preprocessed ALE game (the C++ ``PreprocessedEnv`` with ``stack_num=1``)."""

    def __init__(self, rom_path: str, *, frame_skip: int, noop_max: int, life_loss_info: bool,
                 clip_rewards: bool, sticky_actions: float, max_frames: int, use_fire_reset: bool,
                 frame_size: int) -> None:
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale = ale_py.ALEInterface()
        self.ale.setFloat("repeat_action_probability", float(sticky_actions))
        self.ale.setInt("random_seed", 0)
        self.rom_path = rom_path
        self.ale.loadROM(rom_path)
        self.actions = list(self.ale.getMinimalActionSet())
        self.fire = use_fire_reset and ale_py.Action.FIRE in self.actions
        self.frame_skip, self.life_loss_info, self.clip = frame_skip, life_loss_info, clip_rewards
        self.max_frames, self.size = max_frames, frame_size
        self.noops = NoopSampler(noop_max)
        self.raw = [np.zeros((RAW_HEIGHT, RAW_WIDTH), np.uint8) for _ in range(2)]
        self.frame = np.zeros((frame_size, frame_size), np.uint8)
        self.pending_seed = -1
        self.elapsed, self.lives, self.game_over, self.life_lost, self.reward = max_frames + 1, 0, False, False, 0.0

    def _process(self) -> None:
        np.maximum(self.raw[0], self.raw[1], out=self.raw[0])
        if self.size != RAW_HEIGHT or self.size != RAW_WIDTH:
            self.frame = cv2.resize(self.raw[0], (self.size, self.size), interpolation=cv2.INTER_AREA)
        else:
            self.frame = self.raw[0].copy()

    def reset(self) -> None:
        ale = self.ale
        if self.pending_seed >= 0:
            ale.setInt("random_seed", self.pending_seed)
            self.noops.seed(self.pending_seed)
            ale.loadROM(self.rom_path)
            self.pending_seed = -1
        ale.reset_game()
        if self.fire:
            ale.act(ale_py.Action.FIRE)
        for _ in range(self.noops() - int(self.fire)):
            ale.act(ale_py.Action.NOOP)
            if ale.game_over():
                ale.reset_game()
        ale.getScreenGrayscale(self.raw[0])
        self.raw[1][:] = 0
        self._process()
        self.elapsed, self.reward, self.game_over = 0, 0.0, False
        self.lives, self.life_lost = ale.lives(), False

    def step(self, action: int) -> None:
        ale = self.ale
        if not 0 <= action < len(self.actions):
            raise RlmError(f"invalid action {action}: the game has {len(self.actions)} actions")
        act = self.actions[action]
        reward = 0
        for skip in range(self.frame_skip, 0, -1):
            reward += ale.act(act)
            self.game_over = ale.game_over()
            self.elapsed += 1
            lives = ale.lives()
            self.life_lost = 0 < lives < self.lives
            if self.game_over or self.elapsed >= self.max_frames:
                break
            if skip <= 2:
                ale.getScreenGrayscale(self.raw[skip - 1])
        self._process()
        self.lives = ale.lives()
        self.reward = float(max(-1, min(1, reward))) if self.clip else float(reward)

    def checkpoint_state(self) -> dict[str, Any]:
        """The emulator (with its RNG), both raw screens, the observed frame, the no-op generator, the counters."""
        ale_state = self.ale.cloneState(include_rng=True).serialize()
        return {"ale": np.frombuffer(ale_state, dtype=np.uint8).copy(), "raw": np.stack(self.raw),
                "frame": self.frame.copy(), "noops": self.noops.get_state(), "pending_seed": self.pending_seed,
                "elapsed": self.elapsed, "lives": self.lives, "game_over": self.game_over,
                "life_lost": self.life_lost, "reward": self.reward}

    def restore_checkpoint_state(self, data: dict[str, Any]) -> None:
        self.ale.restoreState(ale_py.ALEState(np.asarray(data["ale"], dtype=np.uint8).tobytes()))
        self.raw = [np.array(screen, dtype=np.uint8) for screen in data["raw"]]
        self.frame = np.array(data["frame"], dtype=np.uint8)
        self.noops.set_state(data["noops"])
        self.pending_seed, self.elapsed = int(data["pending_seed"]), int(data["elapsed"])
        self.lives = int(data["lives"])
        self.game_over, self.life_lost = bool(data["game_over"]), bool(data["life_lost"])
        self.reward = float(data["reward"])

    @property
    def terminated(self) -> bool:
        return self.game_over or (self.life_loss_info and self.life_lost)

    @property
    def truncated(self) -> bool:
        return self.elapsed >= self.max_frames and not self.terminated


class PythonAtariVectorEnv(VectorEnv):
    """ale-py's ``AtariVectorEnv(stack_num=1)`` in Python, with ``info["ram"]`` (and ``info["final_ram"]``),
    whose state can be saved.

    Observations ``uint8 [N, 1, S, S]``; see the module docstring for the exact semantics.
    """

    def __init__(self, rom: str, num_envs: int, *, frameskip: int = 4, noop_max: int = 30,
                 life_loss_info: bool = True, reward_clipping: bool = True, repeat_action_probability: float = 0.0,
                 max_num_frames_per_episode: int = 108_000, use_fire_reset: bool = True, img_height: int = 84,
                 img_width: int = 84, autoreset_mode: AutoresetMode = AutoresetMode.SAME_STEP) -> None:
        """The C++ env's keyword names and meanings; the frames must be square (``img_height == img_width``)."""
        if rom not in atari_games():
            raise RlmError(f"unknown Atari ROM '{rom}' (ROM ids are snake_case: breakout, space_invaders, ...)")
        rom_path = ale_py.roms.get_rom_path(rom)
        if not isinstance(frameskip, int) or frameskip < 1:
            raise RlmError(f"frame_skip must be a positive integer, got {frameskip!r}")
        if img_height != img_width:
            raise RlmError(f"the RAM env makes square frames; got {img_height}x{img_width}")
        frame_size = img_height
        self.games = [
            _Game(str(rom_path), frame_skip=frameskip, noop_max=noop_max, life_loss_info=life_loss_info,
                  clip_rewards=reward_clipping, sticky_actions=repeat_action_probability,
                  max_frames=max_num_frames_per_episode, use_fire_reset=use_fire_reset, frame_size=frame_size)
            for _ in range(num_envs)
        ]
        self.num_envs = num_envs
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {"autoreset_mode": self.autoreset_mode}
        self.single_observation_space = spaces.Box(0, 255, (1, frame_size, frame_size), np.uint8)
        self.single_action_space = spaces.Discrete(len(self.games[0].actions))
        self.observation_space = spaces.Box(0, 255, (num_envs, 1, frame_size, frame_size), np.uint8)
        self.action_space = spaces.MultiDiscrete(np.full(num_envs, len(self.games[0].actions)))
        self._size = frame_size
        self._needs_reset = np.zeros(num_envs, dtype=bool)

    def _obs(self) -> np.ndarray:
        return np.stack([g.frame for g in self.games])[:, None]

    def _info(self) -> dict[str, Any]:
        g = self.games
        return {
            "env_id": np.arange(self.num_envs, dtype=np.int32),
            "lives": np.array([x.lives for x in g], dtype=np.int32),
            "frame_number": np.array([x.ale.getFrameNumber() for x in g], dtype=np.int32),
            "episode_frame_number": np.array([x.ale.getEpisodeFrameNumber() for x in g], dtype=np.int32),
            "ram": self.ram(),
        }

    def ram(self) -> np.ndarray:
        """The current RAM of every env, ``uint8 [N, 128]``."""
        return np.stack([g.ale.getRAM() for g in self.games]).astype(np.uint8, copy=False)

    def screens_rgb(self) -> np.ndarray:
        """The current full-size RGB screens ``uint8 [N, 210, 160, 3]`` (for drawing labels)."""
        return np.stack([g.ale.getScreenRGB() for g in self.games])

    def reset(self, *, seed: Any = None, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        mask = np.ones(self.num_envs, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
        idx = np.flatnonzero(mask)
        if seed is not None:
            seeds = np.arange(seed, seed + len(idx)) if isinstance(seed, int | np.integer) else np.asarray(seed)
            if seeds.shape != (len(idx),):
                raise RlmError(f"reset seed must be an int or one seed per env reset, got shape {seeds.shape}")
            for i, s in zip(idx, seeds, strict=True):
                self.games[i].pending_seed = int(s)
        for i in idx:
            self.games[i].reset()
        self._needs_reset[idx] = False
        return self._obs(), self._info()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise RlmError(f"actions must be {self.num_envs} integers, got {actions.dtype} {actions.shape}")
        n = self.num_envs
        obs_ram = self.ram()  # the RAM of the observation the actions are taken in
        rewards = np.zeros(n, dtype=np.float32)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        for i, g in enumerate(self.games):
            if self._needs_reset[i]:  # next-step autoreset: this call resets env i
                g.reset()
                self._needs_reset[i] = False
                continue
            g.step(int(actions[i]))
            rewards[i], terminated[i], truncated[i] = g.reward, g.terminated, g.truncated
        over = np.array([g.game_over or g.elapsed >= g.max_frames for g in self.games]) & (terminated | truncated)
        done = terminated | truncated
        info: dict[str, Any]
        if same_step and done.any():
            final_obs, final_ram = self._obs(), self.ram()
            for i in np.flatnonzero(over):
                self.games[i].reset()
            info = self._info()
            final_ram[~over] = info["ram"][~over]
            info["final_obs"], info["final_ram"] = final_obs, final_ram
        else:
            self._needs_reset = over
            info = self._info()
        info["obs_ram"] = obs_ram
        return self._obs(), rewards, terminated, truncated, info

    def checkpoint_state(self) -> dict[str, Any]:
        """Every game's state and the pending next-step resets: :meth:`restore_checkpoint_state` continues
        the episodes in flight exactly."""
        return {"games": [g.checkpoint_state() for g in self.games], "needs_reset": self._needs_reset.copy()}

    def restore_checkpoint_state(self, data: dict[str, Any]) -> None:
        if len(data["games"]) != self.num_envs:
            raise RlmError(f"saved Atari state holds {len(data['games'])} envs, this env has {self.num_envs}")
        for game, saved in zip(self.games, data["games"], strict=True):
            game.restore_checkpoint_state(saved)
        self._needs_reset = np.array(data["needs_reset"], dtype=bool)

    def close_extras(self, **kwargs: Any) -> None:
        self.games = []

