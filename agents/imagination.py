"""Imagined experience for model-based DQN: rollouts of a world model from real start states, their ring
buffer, and how they enter the DQN's batches (:class:`Imagination`, a DQN
:class:`~rlmorning.agents.dqn.BatchSource`).

From ``imagine_starts`` env steps on, every ``rollout_every`` env steps it rolls out ``rollout_horizon``
steps from ``rollout_batch`` start states drawn from replay (a model with ``context`` > 1 first observes the
``context`` real frames up to each start, as in its training windows), acting epsilon-greedily with the
DQN's online network and current epsilon; rows stop at a predicted termination (probability ``p > 0.5``).
Imagined transitions are 1-step, in their own ring (:class:`ImaginedBuffer`). Their reward is the reward
head's output as it is (``imagined_reward: mean``): trained by squared error, it estimates the *expected*
reward, which is what a Q-learning target needs. ``round`` (the earlier default) rounds it to integers while
every real reward seen was one (MinAtar, clipped Atari); that also erases rare rewards, whose expected value
stays below 0.5, and on MinAtar SpaceInvaders it halved Dyna-DQN's score (BENCHMARKS.md). Likewise their
discount is ``gamma * (1 - p)`` (``imagined_termination: expected``); ``threshold`` gives 0 where ``p > 0.5``
and ``gamma`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rlmorning.agents.wm_trainer import WorldModelTrainer
from rlmorning.checkpointed import Checkpointed
from rlmorning.errors import RlmError
from rlmorning.replay import ReplayBuffer

if TYPE_CHECKING:
    from rlmorning.agents.dyna import DynaModelConfig

MODEL_MODES = ("dyna", "simple")
IMAGINED_REWARDS = ("mean", "round")
IMAGINED_TERMINATIONS = ("expected", "threshold")
Batch = dict[str, np.ndarray]


class ImaginedBuffer(Checkpointed):
    """A ring of 1-step imagined transitions ``(obs, action, reward, next_obs, discount)``."""

    saved = ("obs", "next_obs", "actions", "rewards", "discounts", "count", "rng")
    checkpoint_name = "imagined buffer"
    load_hint = "model.imagined_buffer_size or env"

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

    def sample(self, batch_size: int) -> Batch:
        """Uniform batch in the layout of :meth:`ReplayBuffer.sample` (``returns`` = the reward)."""
        if len(self) == 0:
            raise RlmError("the imagined buffer is empty")
        i = self.rng.integers(0, len(self), batch_size)
        return {"obs": self.obs[i], "actions": self.actions[i], "returns": self.rewards[i],
                "discounts": self.discounts[i], "next_obs": self.next_obs[i]}


def check_imagination(c: DynaModelConfig) -> None:
    """One-line errors for bad imagination keys of Dyna-DQN's ``model:`` section."""
    choices = (("mode", MODEL_MODES), ("imagined_reward", IMAGINED_REWARDS),
               ("imagined_termination", IMAGINED_TERMINATIONS))
    for key, valid in choices:
        if getattr(c, key) not in valid:
            raise RlmError(f"config key 'model.{key}' must be one of {', '.join(valid)}, got '{getattr(c, key)}'")
    if c.mode == "simple" and c.imagined_ratio != 1.0:
        raise RlmError("model.imagined_ratio does not apply to model.mode=simple (the DQN learns only from "
                       "imagined transitions): leave it unset")
    if c.imagined_ratio <= 0:
        raise RlmError(f"config key 'model.imagined_ratio' must be > 0, got {c.imagined_ratio}")
    for key in ("rollout_horizon", "rollout_batch", "rollout_every", "imagined_buffer_size"):
        if getattr(c, key) < 1:
            raise RlmError(f"config key 'model.{key}' must be >= 1, got {getattr(c, key)}")


class Imagination(Checkpointed):
    """The world model's trainer, its imagined rollouts and their share of each DQN batch.

    ``imagined`` is None when the agent was built for inference (no training state). The checkpoint keys of
    the trainer sit beside this part's own (one ``world_model`` dict in a Dyna-DQN checkpoint).
    """

    saved_inline = ("trainer",)
    saved = ("env_steps", "rollout_credit", "integer_rewards", "rng")
    saved_buffers = ("imagined",)
    saved_renamed = {"update_credit": "model_credit"}  # the trainer's credit, named as Dyna checkpoints always had it
    checkpoint_name = "world model in checkpoint"

    def __init__(self, config: DynaModelConfig, gamma: float, trainer: WorldModelTrainer, replay: ReplayBuffer | None,
                 obs_shape: tuple[int, ...], obs_dtype: Any, seed: int, inference: bool = False) -> None:
        self.config = config
        self.gamma = gamma
        self.trainer = trainer
        self.replay = replay
        self.imagined = None if inference else ImaginedBuffer(config.imagined_buffer_size, obs_shape, obs_dtype,
                                                              seed=seed + 2)
        self.rng = np.random.default_rng(seed + 3)
        self.env_steps = 0
        self.rollout_credit = 0.0
        self.integer_rewards = True

    @property
    def model(self) -> Any:
        """The world model (:class:`~rlmorning.agents.nets.world_model.WorldModel`)."""
        return self.trainer.model

    @property
    def simple(self) -> bool:
        return self.config.mode == "simple"

    def observe(self, rewards: np.ndarray, new: int) -> None:
        """Count ``new`` real transitions (already in replay) and schedule model updates and rollouts."""
        c = self.config
        self.env_steps += new
        if self.integer_rewards and not np.all(np.asarray(rewards) == np.round(rewards)):
            self.integer_rewards = False
        self.trainer.observe(new)
        if self.env_steps >= c.imagine_starts:
            self.rollout_credit += new / c.rollout_every

    # ----------------------------------------------------------------------------- the DQN's BatchSource
    def imagined_count(self, batch_size: int) -> int:
        """Imagined transitions in a DQN batch now (0 until imagination has begun)."""
        if self.imagined is None or len(self.imagined) == 0:
            return 0
        return batch_size if self.simple else max(1, round(self.config.imagined_ratio * batch_size))

    def ready(self, batch_size: int) -> bool:
        """Whether DQN updates may run (simple mode waits for a batch of imagined transitions)."""
        return not self.simple or (self.imagined is not None and len(self.imagined) >= batch_size)

    def batch(self, sample_real: Callable[[int], Batch], batch_size: int) -> Batch:
        """``batch_size`` real transitions plus ``imagined_ratio x batch_size`` imagined ones (dyna), or
        imagined ones alone (simple); real ones alone until imagination has begun."""
        n_imagined = self.imagined_count(batch_size)
        if n_imagined == 0:
            return sample_real(batch_size)
        imagined = self.imagined.sample(n_imagined)
        if self.simple:
            return imagined
        real = sample_real(batch_size)
        return {k: np.concatenate([real[k], imagined[k].astype(real[k].dtype)]) for k in real}

    # ------------------------------------------------------------------------------------ imagining
    def step(self, policy: Callable[[np.ndarray, float], np.ndarray], epsilon: float) -> dict[str, float]:
        """Run the model updates and imagination rounds owed; their mean metrics."""
        out = self.trainer.update()
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
                discounts = self.gamma * (1.0 - p_term)
            else:
                discounts = np.where(term, 0.0, self.gamma)
            rows = np.flatnonzero(alive)
            self.imagined.add(obs[rows], actions[rows], rewards[rows], nxt[rows], discounts[rows].astype(np.float32))
            total[rows] += rewards[rows]
            alive &= ~term
            if not alive.any():
                break
            obs = nxt
        return float(total.mean())
