"""Stable-Baselines3 DQN models as rlmorning agents, so ``record``/``plot-q`` show them the same way.

Observation mapping. rlmorning's Atari evaluation env gives ``uint8 [4, 84, 84]``: 84x84 gray frames
(Gymnasium ``AtariPreprocessing``: 30 no-op starts, frame skip 4 with a max over the last two frames,
INTER_AREA resize), FIRE on reset, the 4 newest frames stacked oldest-first with zeros before the
episode start. SB3's ``make_atari_env`` + ``VecFrameStack(4)`` gives ``uint8 [84, 84, 4]`` with the
same steps (``AtariWrapper``: no-op reset, MaxAndSkip(4), FireReset, WarpFrame 84x84 INTER_AREA) in
the same order with the same zero padding; SB3 transposes it to ``[4, 84, 84]`` (``VecTransposeImage``)
before the network, so a saved model's ``observation_space`` is usually ``[4, 84, 84]`` and rlmorning's
stack is passed unchanged. A model saved with a channels-last space ``[84, 84, 4]`` gets the stack
transposed (``obs.transpose(0, 2, 3, 1)``). The network scales uint8 by 1/255 itself (SB3's
``preprocess_obs``). Remaining differences: ALE's own grayscale vs OpenCV's RGB->gray (values differ
by at most a few levels), and the evaluation is on ``ALE/<Game>-v5`` (minimal action set, like
``<Game>NoFrameskip-v4``) with rlmorning's eval protocol (all lives, unclipped score).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmorning import envs as envs_mod
from rlmorning.agents.base import FeedForwardAgent
from rlmorning.config import TrainerConfig
from rlmorning.errors import RlmError


class SB3QAgent(FeedForwardAgent):
    """An SB3 DQN's online Q-network behind rlmorning's agent interface (``q_values``, greedy ``act``)."""

    def __init__(self, model: Any, obs_shape: tuple[int, ...]) -> None:
        self.model = model
        self.q_net = model.policy.q_net
        self.q_net.eval()
        self.device = model.device
        self.num_actions = int(model.action_space.n)
        want = tuple(model.observation_space.shape)
        self.transpose: tuple[int, ...] | None = None
        if want == tuple(obs_shape):
            pass
        elif len(obs_shape) == 3 and want == (obs_shape[1], obs_shape[2], obs_shape[0]):
            self.transpose = (0, 2, 3, 1)
        else:
            raise RlmError(f"the SB3 model expects observations of shape {list(want)}, but this env gives "
                           f"{list(obs_shape)} (was it trained on another env or with other wrappers?)")

    def to_sb3(self, obs: np.ndarray) -> torch.Tensor:
        """rlmorning observations ``[B, *obs_shape]`` -> the tensor the SB3 network takes."""
        obs = np.asarray(obs)
        if self.transpose is not None:
            obs = obs.transpose(self.transpose)
        return torch.as_tensor(np.ascontiguousarray(obs), device=self.device)

    def q_values(self, obs: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self.q_net(self.to_sb3(obs)).float()

    def act(self, obs: np.ndarray, state: Any, explore: bool = False) -> tuple[np.ndarray, Any]:
        return self.q_values(obs).argmax(dim=1).cpu().numpy(), state

    def observe(self, *args: Any, **kwargs: Any) -> None:
        raise RlmError("SB3 models are for viewing only; train them with SB3")

    def update(self, step: int) -> dict[str, float]:
        return {}

    def state_dict(self, include_buffers: bool = True) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def load_sb3(path: str, env: str | None, device: str = "cpu", epsilon: float | None = None) -> Any:
    """Load an SB3 DQN ``.zip`` as a :class:`~rlmorning.viz.rollout.PolicySource` on rlmorning's eval env."""
    from rlmorning.viz.rollout import PolicySource

    model_path = Path(path)
    if not path or not model_path.is_file():
        raise RlmError(f"SB3 model '{path}' does not exist")
    if not env:
        raise RlmError("sb3: models need --env (e.g. --env Breakout)")
    info = envs_mod.resolve(env)
    try:
        from stable_baselines3 import DQN
    except ImportError:
        raise RlmError("sb3: models need stable-baselines3: pip install stable-baselines3") from None
    try:
        model = DQN.load(str(model_path), device=device)
    except Exception as exc:  # SB3 raises many types for wrong or corrupt files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RlmError(f"cannot load '{path}' as an SB3 DQN model: {first[:200]}") from None
    defaults = TrainerConfig()
    probe = envs_mod.make_eval(info, 0, max_frames=defaults.eval_max_frames)
    try:
        obs_shape = tuple(probe.observation_space.shape)
        n = int(probe.action_space.n)
    finally:
        probe.close()
    if int(model.action_space.n) != n:
        raise RlmError(f"the SB3 model has {model.action_space.n} actions, {info.display_name} has {n}")
    agent = SB3QAgent(model, obs_shape)
    eps = defaults.eval_epsilon if epsilon is None else epsilon
    return PolicySource(
        agent=agent, info=info, source=f"sb3:{path}", checkpoint=str(model_path),
        checkpoint_step=int(getattr(model, "num_timesteps", 0)) or None, epsilon=eps,
        sticky_actions=defaults.eval_sticky_actions, max_frames=defaults.eval_max_frames, env_kwargs={},
        protocol=envs_mod.eval_protocol(info, sticky_actions=defaults.eval_sticky_actions, epsilon=eps,
                                        max_frames=defaults.eval_max_frames),
        out_dir=model_path.parent, run_dir=None, num_actions=n, action_meanings=envs_mod.action_meanings(info, n),
        agent_name="sb3-dqn",
    )
