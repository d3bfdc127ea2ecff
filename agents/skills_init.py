"""``init_from``: choose the skill of a skills run with the best greedy extrinsic return, to fine-tune it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmorning.errors import RlmError

ARCHITECTURE_KEYS = ("code", "num_skills", "code_dim", "encoder", "encoder_kwargs", "head_hidden", "normalize_obs")
"""Keys a fine-tuning config must share with its init_from run (they shape the networks it loads)."""


@dataclass
class SkillChoice:
    """The chosen skill, every skill's mean greedy return, and the run's network weights."""

    skill: int
    returns: list[float]
    online: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor]


def evaluate_skills(agent: Any, env: str, episodes: int, seed: int, env_kwargs: dict | None = None,
                    max_frames: int = 108_000) -> list[float]:
    """Mean greedy (epsilon 0) return of each of ``agent``'s skills over ``episodes`` episodes on ``env``;
    every skill plays the same env seeds. The agent's fixed skill is restored afterwards."""
    from rlmorning import envs as envs_mod
    from rlmorning.evaluation import evaluate

    info = envs_mod.resolve(env)

    def make(i: int) -> gym.Env:
        return envs_mod.make_eval(info, seed + i, max_frames=max_frames, **dict(env_kwargs or {}))

    before = agent.fixed_skill
    try:
        means = []
        for k in range(agent.num_skills):
            agent.set_skill(k)
            means.append(float(np.mean(evaluate(agent, make, episodes, 0.0, seed))))
    finally:
        agent.fixed_skill = before
    return means


def check_init_run(config: Any, run: str | Path) -> None:
    """One-line RlmError unless ``run`` is a skills run with a checkpoint whose networks ``config`` builds."""
    from rlmorning.run import CHECKPOINTS, read_config

    flat = read_config(Path(run))
    if flat["agent"] != "skills":
        raise RlmError(f"init_from: '{run}' is a {flat['agent']} run, not a skills run")
    differ = [k for k in ARCHITECTURE_KEYS if k in flat and flat[k] != getattr(config, k)]
    if differ:
        shown = ", ".join(f"{k}={flat[k]!r}" for k in differ)
        raise RlmError(f"init_from: '{run}' was trained with {shown}; set the same values for fine-tuning")
    if not (Path(run) / CHECKPOINTS / "latest.pt").is_file():
        raise RlmError(f"init_from: '{run}' has no checkpoints/latest.pt to fine-tune from")


def choose_skill(config: Any, run: str | Path, observation_space: gym.Space, num_actions: int, *, seed: int,
                 device: torch.device) -> SkillChoice:
    """Load skills run ``run`` (its latest checkpoint), check that ``config`` builds the same networks for the
    same spaces, evaluate every skill greedily for ``config.init_episodes`` episodes and pick the best
    (ties: the lowest index)."""
    from rlmorning.api import load_policy

    check_init_run(config, run)
    agent, cfg = load_policy(run, "latest", str(device))
    if tuple(observation_space.shape) != tuple(agent.observation_space.shape) or num_actions != agent.num_actions:
        raise RlmError(f"init_from: '{run}' was trained on {cfg.env}, whose observations or actions differ from "
                       "this env's")
    t = cfg.trainer
    returns = evaluate_skills(agent, cfg.env, config.init_episodes, seed, t.env_kwargs, t.eval_max_frames)
    return SkillChoice(skill=int(np.argmax(returns)), returns=returns, online=agent.online.state_dict(),
                       discriminator=agent.discriminator.state_dict())
