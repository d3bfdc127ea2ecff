"""What the visualizations play: a policy (a run's checkpoint or an SB3 model) and one evaluation episode.

:func:`load_source` turns ``runs/<run>`` or ``sb3:path/to/model.zip`` into a :class:`PolicySource`;
:func:`play` runs one episode on the run's evaluation env (same protocol as ``rlmorning eval``) and
yields a :class:`Moment` per state, with the RGB screen, the Q-values and the action taken. Everything
drawn or plotted comes from an :class:`EpisodeLog`, which is also what the JSON sidecars contain.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from rlmorning import envs as envs_mod
from rlmorning.envs import EnvInfo
from rlmorning.errors import RlmError
from rlmorning.viz.source import PolicySource

DEFAULT_SEED = 12_345
"""Seed of the first recorded episode (episode i uses seed + i), as in ``rlmorning eval``."""


def load_source(source: str, checkpoint: str = "best", env: str | None = None, device: str = "cpu",
                epsilon: float | None = None) -> PolicySource:
    """Load ``RUN_DIR`` (checkpoint ``best``/``latest``/PATH) or ``sb3:MODEL.zip`` (needs ``env``)."""
    from rlmorning.config import check_probability
    from rlmorning.trainer import resolve_device

    check_probability("--epsilon", epsilon)
    device = str(resolve_device(device))  # cuda without a GPU, or an unknown device: one clear line
    if source.startswith("sb3:"):
        from rlmorning.viz.sb3 import load_sb3

        if checkpoint not in ("best", "latest"):
            raise RlmError(f"--checkpoint '{checkpoint}' is for run directories; an sb3: model is one file")
        return load_sb3(source[4:], env, device=device, epsilon=epsilon)
    from rlmorning.api import load_policy
    from rlmorning.run import check_run_dir, checkpoint_step, find_checkpoint, read_config

    run = check_run_dir(source)
    if env is not None:
        raise RlmError("--env is only for sb3: models (a run directory knows its env)")
    read_config(run)
    ckpt = find_checkpoint(run, checkpoint)
    agent, cfg = load_policy(run, checkpoint, device)
    t = cfg.trainer
    info = envs_mod.resolve(cfg.env)
    eps = t.eval_epsilon if epsilon is None else epsilon
    n = _num_actions(info, t.env_kwargs)
    return PolicySource(
        agent=agent, info=info, source=str(run), checkpoint=str(ckpt),
        checkpoint_step=checkpoint_step(ckpt), epsilon=eps,
        sticky_actions=t.eval_sticky_actions, max_frames=t.eval_max_frames, env_kwargs=dict(t.env_kwargs),
        protocol=envs_mod.eval_protocol(info, sticky_actions=t.eval_sticky_actions, epsilon=eps,
                                        max_frames=t.eval_max_frames),
        out_dir=run, run_dir=run, num_actions=n, action_meanings=envs_mod.action_meanings(info, n),
        agent_name=cfg.agent,
    )


def _num_actions(info: EnvInfo, env_kwargs: dict[str, Any]) -> int:
    """Number of actions of a Discrete action space; 0 for other spaces (Tuple, MultiBinary ...)."""
    env = envs_mod.make_eval(info, 0, **dict(env_kwargs))
    try:
        space = env.action_space
        return int(space.n) if isinstance(space, gym.spaces.Discrete) else 0
    finally:
        env.close()


def obs_digest(obs: np.ndarray) -> str:
    """A short hash of an observation's bytes (lets tests and users replay an episode exactly)."""
    return hashlib.sha1(np.ascontiguousarray(obs).tobytes()).hexdigest()[:16]


@dataclass
class Moment:
    """One state of an episode, as drawn in a video frame."""

    t: int
    obs: np.ndarray
    frame: np.ndarray
    """RGB screen ``uint8 [H, W, 3]``."""
    q: np.ndarray | None
    """``float32 [A]`` Q-values of ``obs`` (None for agents without Q-values)."""
    action: int | None
    """The action taken from this state (None at the final state)."""
    greedy: int | None
    random: bool
    lives: int | None
    score: float
    """Sum of rewards before this state."""
    ram: np.ndarray | None = None
    """The console RAM at this state (``play(..., with_ram=True)`` on Atari; for drawing, never for acting)."""

    @property
    def final(self) -> bool:
        return self.action is None


@dataclass
class EpisodeLog:
    """Per-step data of one episode (columns of equal length ``steps``) and its final state."""

    seed: int
    action: list[int] = field(default_factory=list)
    greedy_action: list[int] = field(default_factory=list)
    random_action: list[bool] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    q_values: list[list[float] | None] = field(default_factory=list)
    lives: list[int | None] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    obs_sha1: list[str] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False
    stopped_at_max_steps: bool = False

    @property
    def steps(self) -> int:
        return len(self.action)

    @property
    def total(self) -> float:
        """The episode's true score (the sum of its unclipped rewards)."""
        return float(sum(self.reward))

    def v(self) -> np.ndarray:
        """V(s) = max_a Q(s, a) for every state including the final one, ``float [steps + 1]``."""
        qs = self.q_values + [self.final.get("q_values")]
        return np.array([np.nan if q is None else max(q) for q in qs], dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "steps": self.steps,
            "score": self.total,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "stopped_at_max_steps": self.stopped_at_max_steps,
            "per_step": {
                "action": self.action,
                "greedy_action": self.greedy_action,
                "random_action": self.random_action,
                "reward": self.reward,
                "q_values": self.q_values,
                "lives": self.lives,
                "score": self.score,
                "obs_sha1": self.obs_sha1,
            },
            "final": self.final,
        }


def play(src: PolicySource, seed: int, log: EpisodeLog, max_steps: int | None = None,
         with_ram: bool = False) -> Iterator[Moment]:
    """Play one evaluation episode from ``seed``; yields every state (the last one with ``action=None``).

    The policy is the agent's greedy action, replaced with probability ``src.epsilon`` by a uniformly
    random one (drawn from ``numpy.random.default_rng(seed)``, so an episode replays exactly). ``log`` is
    filled as the episode goes; its numbers are the ones yielded. ``with_ram``: each moment carries the
    emulator's RAM (Atari), read after the agent has acted on the pixels.
    """
    env = src.make_env(seed)
    ale = getattr(env.unwrapped, "ale", None) if with_ram else None
    if with_ram and ale is None:
        raise RlmError(f"{src.info.display_name} has no console RAM to read")
    frames = FrameSource(env, src.info)
    rng = np.random.default_rng(seed)
    agent = src.agent
    try:
        obs, info = env.reset(seed=seed)
        state = agent.initial_state(1)
        score, t = 0.0, 0
        while True:
            batch = np.asarray(obs)[None]
            q_t = agent.q_values(batch)
            q = None if q_t is None else q_t[0].detach().float().cpu().numpy()
            lives = _lives(info)
            frame = frames(obs)
            if log.terminated or log.truncated or (max_steps is not None and t >= max_steps):
                log.stopped_at_max_steps = not (log.terminated or log.truncated)
                log.final = {"score": score, "lives": lives, "q_values": None if q is None else q.tolist(),
                             "obs_sha1": obs_digest(obs)}
                yield Moment(t, obs, frame, q, None, None, False, lives, score,
                             None if ale is None else ale.getRAM().copy())
                return
            actions, state = agent.act(batch, state, explore=False)
            greedy = int(np.asarray(actions).reshape(-1)[0])
            random = src.epsilon > 0 and bool(rng.random() < src.epsilon)
            action = int(rng.integers(src.num_actions)) if random else greedy
            log.action.append(action)
            log.greedy_action.append(greedy)
            log.random_action.append(random)
            log.q_values.append(None if q is None else q.tolist())
            log.lives.append(lives)
            log.score.append(score)
            log.obs_sha1.append(obs_digest(obs))
            yield Moment(t, obs, frame, q, action, greedy, random, lives, score,
                         None if ale is None else ale.getRAM().copy())
            obs, reward, terminated, truncated, info = env.step(action)
            log.reward.append(float(reward))
            log.terminated, log.truncated = bool(terminated), bool(truncated)
            score += float(reward)
            t += 1
    finally:
        env.close()


def _lives(info: dict[str, Any]) -> int | None:
    lives = info.get("lives")
    return None if lives is None else int(np.asarray(lives).reshape(-1)[0])


class FrameSource:
    """The RGB screen of an env: ``env.render()``, or (when the env cannot render, e.g. classic control
    without pygame) a picture drawn from the observation: CartPole's cart and pole, image channels, or
    one bar per observation entry."""

    def __init__(self, env: Any, info: EnvInfo) -> None:
        self.env = env
        self.info = info
        self.use_render: bool | None = None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.use_render is not False:
            frame = self._render()
            if frame is not None:
                self.use_render = True
                return frame
            if self.use_render is None:
                hint = (" (classic-control envs draw with pygame: pip install 'gymnasium[classic-control]')"
                        if self.info.family == "gym" else "")
                print(f"rlmorning: note: {self.info.display_name} cannot render RGB frames here{hint}; drawing the "
                      "observation instead", file=sys.stderr)
            self.use_render = False
        return draw_observation(np.asarray(obs), self.info.id)

    def _render(self) -> np.ndarray | None:
        try:
            frame = self.env.render()
        except Exception:  # missing renderer (pygame), no render_mode, ...
            return None
        if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] in (3, 4):
            return np.ascontiguousarray(frame[..., :3].astype(np.uint8))
        return None


_PALETTE = np.array([(230, 80, 60), (60, 160, 230), (250, 200, 40), (120, 200, 90), (190, 110, 220),
                     (240, 140, 40), (70, 210, 200), (230, 90, 160), (160, 160, 160), (110, 90, 200)], np.uint8)


def draw_observation(obs: np.ndarray, env_id: str = "") -> np.ndarray:
    """An RGB picture of an observation, for envs without a renderer."""
    if obs.ndim == 1 and obs.shape[0] == 4 and "CartPole" in env_id:
        return draw_cartpole(obs)
    if obs.ndim == 3:  # channels-first image planes (MinAtar: 0/1 planes; frames: the newest plane)
        if float(obs.max(initial=0)) <= 1:
            h, w = obs.shape[1:]
            img = np.zeros((h, w, 3), np.uint8)
            for c in range(obs.shape[0]):
                img[obs[c] > 0] = _PALETTE[c % len(_PALETTE)]
        else:
            img = np.repeat(obs[-1][..., None], 3, axis=2).astype(np.uint8)
        k = max(1, 210 // img.shape[0])
        return np.ascontiguousarray(cv2.resize(img, (img.shape[1] * k, img.shape[0] * k),
                                               interpolation=cv2.INTER_NEAREST))
    flat = obs.reshape(-1).astype(np.float64)
    n = len(flat)
    h, w = 240, max(160, 40 * n)
    img = np.full((h, w, 3), 255, np.uint8)
    cv2.line(img, (0, h // 2), (w, h // 2), (150, 150, 150), 1)
    bw = w // n
    for i, x in enumerate(flat):
        y = int(h // 2 - np.tanh(x) * (h // 2 - 10))
        cv2.rectangle(img, (i * bw + 6, min(y, h // 2)), ((i + 1) * bw - 6, max(y, h // 2)),
                      tuple(int(c) for c in _PALETTE[i % len(_PALETTE)]), -1)
    return img


def draw_cartpole(obs: np.ndarray, width: int = 600, height: int = 400) -> np.ndarray:
    """CartPole's state (x, x_dot, theta, theta_dot) drawn like Gymnasium's renderer."""
    x, _, theta, _ = (float(v) for v in obs)
    img = np.full((height, width, 3), 255, np.uint8)
    scale = width / 4.8
    track_y = int(height * 0.75)
    cv2.line(img, (0, track_y), (width, track_y), (0, 0, 0), 1)
    cx = int(width / 2 + x * scale)
    cv2.rectangle(img, (cx - 25, track_y - 15), (cx + 25, track_y + 15), (0, 0, 0), -1)
    length = scale * 1.0
    tip = (int(cx + length * np.sin(theta)), int(track_y - 15 - length * np.cos(theta)))
    cv2.line(img, (cx, track_y - 15), tip, (202, 152, 101), 10, cv2.LINE_AA)
    cv2.circle(img, (cx, track_y - 15), 5, (129, 132, 203), -1, cv2.LINE_AA)
    return img
