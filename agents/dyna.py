"""Dyna-style model-based DQN: a world model trained on the DQN's replay, and short imagined rollouts.

Chosen with DQN config keys (``rlmorning train dqn --set world_model=vae-gru --set imagined_ratio=1``):

* ``world_model``: ``<codec>-<dynamics>`` (``vae-gru``, ``ae-gru``, ``vqvae-gru``, ``vae-mdn-gru`` ...);
  ``world_model_kwargs`` sets the other :class:`~rlmorning.agents.world_model.ModelConfig` fields.
* ``model_mode: dyna`` (Sutton 1990; Dyna-DQN): every DQN batch holds ``batch_size``
  real transitions *plus* ``imagined_ratio * batch_size`` imagined ones, so the model adds data without
  taking real samples away. The fair model-free baselines are plain DQN and plain DQN with the same total
  replay ratio (``gradient_steps = 1 + imagined_ratio``), see ``bench/dyna.py``.
* ``model_mode: simple`` (SimPLe-style, Kaiser et al. 2019): the DQN learns *only* from imagined
  transitions (batches of ``batch_size``); real experience trains the model and supplies start states.
  Training is interleaved (model updates, imagination rounds and DQN updates on their own step
  schedules) rather than SimPLe's alternating phases, which keeps the one trainer loop unchanged.
  Evaluation is always in the real env (the trainer's evaluation env).

The model trains on windows of the DQN's own :class:`~rlmorning.replay.ReplayBuffer`
(:meth:`~rlmorning.replay.ReplayBuffer.sample_sequences`), one update every ``model_train_freq`` env steps
once ``model_learning_starts`` transitions are stored. From ``imagine_starts`` env steps on, every
``rollout_every`` env steps it rolls out ``rollout_horizon`` steps from ``rollout_batch`` start states drawn
from replay (a model with ``context`` > 1 first observes the ``context`` real frames up to each start,
as in its training windows), acting epsilon-greedily with the DQN's online network and current epsilon; rows stop at a
predicted termination (probability ``p > 0.5``). Imagined transitions are 1-step, in their own ring
(:class:`ImaginedBuffer`). Their reward is the reward head's output as it is (``imagined_reward: mean``):
trained by squared error, it estimates the *expected* reward, which is what a Q-learning target needs.
``round`` (the earlier default) rounds it to integers while every real reward seen was one (MinAtar,
clipped Atari); that also erases rare rewards, whose expected value stays below 0.5, and on MinAtar
SpaceInvaders it halved Dyna-DQN's score (BENCHMARKS.md). Likewise their discount is ``gamma * (1 - p)``
(``imagined_termination: expected``); ``threshold`` gives 0 where ``p > 0.5`` and ``gamma`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmorning.agents.nets.world_model_nets import CODECS, DYNAMICS
from rlmorning.agents.world_model import ModelConfig, WorldModel, build_world_model, kstep_summary
from rlmorning.errors import RlmError
from rlmorning.replay import ReplayBuffer

MODEL_MODES = ("dyna", "simple")
IMAGINED_REWARDS = ("mean", "round")
IMAGINED_TERMINATIONS = ("expected", "threshold")


def parse_world_model(name: str) -> tuple[str, str]:
    """``"vae-mdn-gru"`` -> ``("vae", "mdn-gru")``; unknown parts raise an RlmError listing the valid ones."""
    for codec in sorted(CODECS.names(), key=len, reverse=True):
        if name.startswith(codec + "-"):
            dynamics = name[len(codec) + 1:]
            if dynamics in DYNAMICS:
                return codec, dynamics
            break
    valid = [f"{c}-{d}" for c in CODECS.names() for d in DYNAMICS.names()]
    raise RlmError(f"unknown world_model '{name}'. Valid: {', '.join(valid)}")


class ImaginedBuffer:
    """A ring of 1-step imagined transitions ``(obs, action, reward, next_obs, discount)``."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: Any, seed: int = 0) -> None:
        self.capacity = int(capacity)
        self.obs = np.zeros((self.capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros(self.capacity, np.int64)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.discounts = np.zeros(self.capacity, np.float32)
        self.count = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            discounts: np.ndarray) -> None:
        n = len(obs)
        idx = (self.count + np.arange(n)) % self.capacity
        self.obs[idx], self.actions[idx], self.rewards[idx] = obs, actions, rewards
        self.next_obs[idx], self.discounts[idx] = next_obs, discounts
        self.count += n

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """Uniform batch in the layout of :meth:`ReplayBuffer.sample` (``returns`` = the reward)."""
        if len(self) == 0:
            raise RlmError("the imagined buffer is empty")
        i = self.rng.integers(0, len(self), batch_size)
        return {"obs": self.obs[i], "actions": self.actions[i], "returns": self.rewards[i],
                "discounts": self.discounts[i], "next_obs": self.next_obs[i]}

    def state_dict(self) -> dict[str, Any]:
        names = ("obs", "next_obs", "actions", "rewards", "discounts")
        out: dict[str, Any] = {n: torch.from_numpy(getattr(self, n)) for n in names}
        out.update(count=self.count, rng=self.rng.bit_generator.state)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for n in ("obs", "next_obs", "actions", "rewards", "discounts"):
            src = state[n].numpy()
            if src.shape != getattr(self, n).shape:
                raise RlmError(f"imagined buffer in checkpoint has {n} {src.shape}, this run expects "
                               f"{getattr(self, n).shape} (different imagined_buffer_size or env?)")
            getattr(self, n)[...] = src
        self.count = int(state["count"])
        self.rng.bit_generator.state = state["rng"]


class DynaPlanner:
    """The world model, its training schedule and the imagined rollouts of a model-based DQN."""

    def __init__(self, config: Any, observation_space: gym.spaces.Box, num_actions: int, replay: ReplayBuffer,
                 device: torch.device, seed: int) -> None:
        c = config
        if c.model_mode not in MODEL_MODES:
            raise RlmError(f"config key 'model_mode' must be one of {', '.join(MODEL_MODES)}, got '{c.model_mode}'")
        if c.model_mode == "simple" and c.imagined_ratio != 1.0:
            raise RlmError("imagined_ratio does not apply to model_mode=simple (the DQN learns only from "
                           "imagined transitions): leave it unset")
        for key, valid in (("imagined_reward", IMAGINED_REWARDS), ("imagined_termination", IMAGINED_TERMINATIONS)):
            if getattr(c, key) not in valid:
                raise RlmError(f"config key '{key}' must be one of {', '.join(valid)}, got '{getattr(c, key)}'")
        if c.imagined_ratio <= 0:
            raise RlmError(f"config key 'imagined_ratio' must be > 0, got {c.imagined_ratio}")
        for key in ("model_batch_size", "model_seq_len", "model_train_freq", "rollout_horizon", "rollout_batch",
                    "rollout_every", "imagined_buffer_size"):
            if getattr(c, key) < 1:
                raise RlmError(f"config key '{key}' must be >= 1, got {getattr(c, key)}")
        codec, dynamics = parse_world_model(c.world_model)
        fields = set(ModelConfig.__dataclass_fields__) - {"codec", "dynamics"}  # those come from world_model
        bad = sorted(set(c.world_model_kwargs) - fields)
        if bad:
            raise RlmError(f"unknown world_model_kwargs key(s) {', '.join(bad)}. Valid: {', '.join(sorted(fields))}")
        model_cfg = ModelConfig(**{**c.world_model_kwargs, "codec": codec, "dynamics": dynamics})
        self.config = c
        self.model: WorldModel = build_world_model(model_cfg, observation_space, num_actions, device)
        self.model.check_seq_len(c.model_seq_len, "model_seq_len")
        self.replay = replay
        self.num_actions = num_actions
        self.imagined = ImaginedBuffer(c.imagined_buffer_size, tuple(observation_space.shape),
                                       observation_space.dtype, seed=seed + 2)
        self.rng = np.random.default_rng(seed + 3)
        self.env_steps = 0
        self.model_credit = 0.0
        self.rollout_credit = 0.0
        self.integer_rewards = True

    @property
    def simple(self) -> bool:
        return self.config.model_mode == "simple"

    def observe(self, rewards: np.ndarray, new: int) -> None:
        """Count ``new`` real transitions (already in replay) and schedule model updates and rollouts."""
        c = self.config
        self.env_steps += new
        if self.integer_rewards and not np.all(np.asarray(rewards) == np.round(rewards)):
            self.integer_rewards = False
        if self.env_steps >= c.model_learning_starts:
            self.model_credit += new / c.model_train_freq
        if self.env_steps >= c.imagine_starts:
            self.rollout_credit += new / c.rollout_every

    def imagined_count(self, batch_size: int) -> int:
        """Imagined transitions in a DQN batch now (0 until imagination has begun)."""
        if len(self.imagined) == 0:
            return 0
        return batch_size if self.simple else max(1, round(self.config.imagined_ratio * batch_size))

    def ready(self, batch_size: int) -> bool:
        """Whether DQN updates may run (simple mode waits for a batch of imagined transitions)."""
        return not self.simple or len(self.imagined) >= batch_size

    def step(self, policy: Callable[[np.ndarray, float], np.ndarray], epsilon: float) -> dict[str, float]:
        """Run the model updates and imagination rounds owed; their mean metrics."""
        c = self.config
        metrics: list[dict[str, float]] = []
        if self.replay.num_sampleable() > 0:
            while self.model_credit >= 1.0:
                self.model_credit -= 1.0
                metrics.append(self.model.update(self.replay.sample_sequences(c.model_batch_size, c.model_seq_len)))
        else:
            self.model_credit = 0.0
        out = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]} if metrics else {}
        if metrics and c.kstep_every > 0 and any((self.model.updates - i) % c.kstep_every == 0
                                                 for i in range(len(metrics))):
            window = self.model.window(c.kstep_horizon)
            out.update(kstep_summary(self.model, self.replay.sample_sequences(c.kstep_batch, window)))
        rounds = 0
        if self.model.updates > 0 and self.replay.num_sampleable() > 0:
            while self.rollout_credit >= 1.0:
                self.rollout_credit -= 1.0
                out["imagined_return"] = self.rollout(policy, epsilon)
                rounds += 1
        else:
            self.rollout_credit = min(self.rollout_credit, 1.0)
        if rounds:
            out["imagined_size"] = float(len(self.imagined))
        return out

    @torch.no_grad()
    def start_states(self, n: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """``n`` real start observations from replay and the model's ``(latent, state)`` after observing them.

        A model with ``context`` > 1 observes, like in training, the ``context`` real frames up to the start
        (and the actions between them) where replay holds them in one episode; rows too near their
        episode's start fall back to the lone start frame, from which the model also learns to predict."""
        ctx = self.model.context
        if ctx == 1:
            obs = self.replay.sample(n)["obs"]
            return (obs, *self.model.start(obs))
        seq = self.replay.sample_sequences(n, ctx - 1)
        full = seq["frame_mask"].all(axis=0)
        obs = np.where(full.reshape(-1, *[1] * (seq["frames"].ndim - 2)), seq["frames"][-1], seq["frames"][0])
        groups = []  # each row's start state is computed once: after its context, or from its lone frame
        with_context, alone = np.flatnonzero(full), np.flatnonzero(~full)
        if with_context.size:
            groups.append((with_context, self.model.start(seq["frames"][:, with_context],
                                                          seq["actions"][:, with_context])))
        if alone.size:
            groups.append((alone, self.model.start(seq["frames"][0, alone])))
        z0, h0 = groups[0][1]
        z, h = z0.new_empty((n, *z0.shape[1:])), h0.new_empty((n, *h0.shape[1:]))
        for rows, (zg, hg) in groups:
            idx = torch.as_tensor(rows, device=z.device)
            z[idx], h[idx] = zg, hg
        return obs, z, h

    @torch.no_grad()
    def rollout(self, policy: Callable[[np.ndarray, float], np.ndarray], epsilon: float) -> float:
        """One imagination round into :attr:`imagined`; returns the mean imagined reward per row."""
        c = self.config
        obs, z, h = self.start_states(c.rollout_batch)
        alive = np.ones(len(obs), bool)
        total = np.zeros(len(obs), np.float64)
        for _ in range(c.rollout_horizon):
            actions = policy(obs, epsilon)
            z, h, probs, r, pt = self.model.step_latent(z, h, actions)
            nxt = self.model._to_frames(probs).cpu().numpy().astype(obs.dtype)
            rewards = r.float().cpu().numpy()
            if self.integer_rewards and c.imagined_reward == "round":
                rewards = np.round(rewards)
            p_term = pt.float().cpu().numpy()
            term = p_term > 0.5
            if c.imagined_termination == "expected":
                discounts = c.gamma * (1.0 - p_term)
            else:
                discounts = np.where(term, 0.0, c.gamma)
            rows = np.flatnonzero(alive)
            self.imagined.add(obs[rows], actions[rows], rewards[rows], nxt[rows], discounts[rows].astype(np.float32))
            total[rows] += rewards[rows]
            alive &= ~term
            if not alive.any():
                break
            obs = nxt
        return float(total.mean())

    def state_dict(self, include_buffers: bool) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.model.state_dict(), "optimizer": self.model.optimizer.state_dict(),
            "updates": self.model.updates, "env_steps": self.env_steps, "model_credit": self.model_credit,
            "rollout_credit": self.rollout_credit, "integer_rewards": self.integer_rewards,
            "rng": self.rng.bit_generator.state,
        }
        if self.model.critic_optimizer is not None:
            state["critic_optimizer"] = self.model.critic_optimizer.state_dict()
        if include_buffers:
            state["imagined"] = self.imagined.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from rlmorning.agents.base import load_module_state  # noqa: PLC0415

        load_module_state(self.model, state["model"], "world_model/env")
        self.model.optimizer.load_state_dict(state["optimizer"])
        if self.model.critic_optimizer is not None and "critic_optimizer" in state:
            self.model.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.model.updates = int(state["updates"])
        self.env_steps = int(state["env_steps"])
        self.model_credit = float(state["model_credit"])
        self.rollout_credit = float(state["rollout_credit"])
        self.integer_rewards = bool(state["integer_rewards"])
        self.rng.bit_generator.state = state["rng"]
        if "imagined" in state:
            self.imagined.load_state_dict(state["imagined"])
