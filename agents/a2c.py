"""Recurrent actor-critic with a memory core (LSTM or NTM) for the algorithmic envs (RL-NTM setting).

n-step advantage actor-critic (Mnih et al. 2016) with GAE (Schulman et al. 2016) over ``num_envs``
envs: every ``n_steps`` vector steps the rollout is replayed through the core from the recurrent state
it started with (truncated BPTT over the rollout; rows restart where episodes ended), and one gradient
step minimises ``policy loss + vf_coef * value loss - ent_coef * entropy``. With ``gae_lambda=1``,
``gamma=1`` and rollouts longer than the episodes this is REINFORCE with a learned baseline, the
estimator of Zaremba & Sutskever's RL-NTM (2015).

Actions: one categorical head per component of a ``Tuple`` of ``Discrete`` (the algorithmic envs'
``(move, write, symbol)``), of a ``MultiDiscrete`` or ``MultiBinary`` (the NTM tasks, rewarded per correct
bit), or a single one for ``Discrete``. Inputs: the
observation (one-hot for ``Discrete``, flattened for ``Box``) and, with ``prev_action_input``, the
previous action (one-hot per component), so the core knows what it wrote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.base import AgentSetting
from rlmorning.agents.nets.ntm import CoreConfig, State, make_core, reset_rows
from rlmorning.agents.ntm import (
    RecurrentStateMixin,
    clip_gradients,
    cpu_copy,
    make_optimizer,
    step_info,
    to_numpy_tree,
    to_tensor_tree,
)
from rlmorning.checkpointed import Checkpointed, Form
from rlmorning.errors import RlmError


@dataclass
class A2CConfig(CoreConfig):
    """Recurrent A2C; the core keys are those of :class:`CoreConfig` (smaller defaults here)."""

    core: str = "lstm"
    """lstm | ntm"""
    controller_size: int = 64
    memory_size: int = 32
    memory_width: int = 16
    lstm_size: int = 128
    lstm_layers: int = 1
    n_steps: int = 10
    """vector steps per rollout (the BPTT window)"""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    lr: float = 2e-3
    optimizer: str = "adam"
    """adam | rmsprop"""
    momentum: float = 0.0
    """RMSProp momentum"""
    rmsprop_alpha: float = 0.99
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 1.0
    """clip the global gradient norm (0 disables)"""
    normalize_advantage: bool = False
    prev_action_input: bool = True
    """feed the previous action (one-hot per component) to the core"""


def _empty_rollout() -> dict[str, list[np.ndarray]]:
    return {k: [] for k in ("obs", "actions", "rewards", "terminated", "truncated", "valid", "next_obs")}


def _save_rollout(rollout: dict[str, list[np.ndarray]]) -> dict[str, torch.Tensor | None]:
    """The rollout's steps stacked per field (None for a field with no steps yet)."""
    return {k: to_tensor_tree(np.stack(v)) if v else None for k, v in rollout.items()}


def _load_rollout(saved: dict[str, torch.Tensor | None], agent: Any) -> dict[str, list[np.ndarray]]:
    """Inverse of :func:`_save_rollout`: each field as a list of steps again."""
    return {k: (list(to_numpy_tree(v)) if v is not None else []) for k, v in saved.items()}


class A2CAgent(RecurrentStateMixin, Checkpointed):
    """Recurrent n-step actor-critic with factorised categorical heads.

    A checkpoint holds the networks, optimizer, counters, sampling generator and curriculum levels; with buffers
    also the rollout, the recurrent state it started from and the trainer's recurrent state."""

    saved = ("net", "optimizer", "env_steps", "updates", "skipped", "generator", "curriculum")
    saved_buffers = ("rollout", "rollout_state")
    saved_optional = ("skipped", "curriculum")
    saved_forms = {
        "curriculum": Form(save=list, load=lambda saved, agent: [float(x) for x in saved], empty=list),
        "rollout": Form(save=_save_rollout, load=_load_rollout, empty=_empty_rollout),
        "rollout_state": Form(save=cpu_copy, empty=lambda: None,
                              load=lambda saved, agent: {k: v.to(agent.device) for k, v in saved.items()}),
    }
    load_hint = "core/sizes/env"

    def __init__(self, config: A2CConfig, setting: AgentSetting) -> None:
        """``setting.inference`` changes nothing here (this agent holds no replay buffer)."""
        _validate(config)
        self.config = config
        device = self.device = setting.device
        self.action_kind, self.action_sizes, self.action_starts = _action_parts(setting.action_space)
        self.obs_kind, self.obs_dim = _obs_encoding(setting.observation_space)
        self.prev_dim = sum(self.action_sizes) if config.prev_action_input else 0
        self.core = make_core(self.obs_dim + self.prev_dim, config).to(device)
        self.policy = nn.Linear(self.core.out_dim, sum(self.action_sizes)).to(device)
        self.value = nn.Linear(self.core.out_dim, 1).to(device)
        self.net = nn.ModuleDict({"core": self.core, "policy": self.policy, "value": self.value})
        self.optimizer = make_optimizer(self.net.parameters(), config.optimizer, config.lr, config.momentum,
                                        config.rmsprop_alpha)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(setting.seed + 7)
        self.env_steps = 0
        self.updates = 0
        self.skipped = 0  # gradient steps skipped because the gradient was not finite
        self.rollout: dict[str, list[np.ndarray]] = _empty_rollout()
        self.rollout_state: State | None = None  # the state the rollout started from
        self.curriculum: list[float] = []

    # --------------------------------------------------------------------------------------- encoding
    def fresh_state(self, batch_size: int) -> State:
        """The core's initial state plus a zero previous action, for ``batch_size`` episodes."""
        state = self.core.initial_state(batch_size, self.device)
        state["prev_action"] = torch.zeros(batch_size, self.prev_dim, device=self.device)
        return state

    def _encode_obs(self, obs: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(obs), device=self.device)
        if self.obs_kind == "discrete":
            return F.one_hot(x.long().reshape(-1), self.obs_dim).float()
        return x.float().reshape(x.shape[0], -1)

    def _one_hot_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """``actions [..., K]`` (0-based) -> concatenated one-hots ``[..., sum(sizes)]``."""
        if not self.prev_dim:
            return actions.new_zeros((*actions.shape[:-1], 0), dtype=torch.float32)
        parts = [F.one_hot(actions[..., k].long(), n).float() for k, n in enumerate(self.action_sizes)]
        return torch.cat(parts, dim=-1)

    def _step(self, x_obs: torch.Tensor, state: State) -> tuple[list[torch.Tensor], torch.Tensor, State]:
        """One core step: per-component logits, value ``[B]`` and the next core state (prev_action unchanged)."""
        core_state = {k: v for k, v in state.items() if k != "prev_action"}
        x = torch.cat([x_obs, state["prev_action"]], dim=-1) if self.prev_dim else x_obs
        feats, core_state = self.core(x, core_state)
        logits = list(torch.split(self.policy(feats), self.action_sizes, dim=-1))
        return logits, self.value(feats).squeeze(-1), core_state

    def _env_actions(self, a: np.ndarray) -> Any:
        """0-based ``int [B, K]`` -> what the vector env takes (tuple of arrays for Tuple spaces)."""
        a = a + np.asarray(self.action_starts)
        if self.action_kind == "tuple":
            return tuple(a[:, k] for k in range(a.shape[1]))
        if self.action_kind == "discrete":
            return a[:, 0]
        if self.action_kind == "multibinary":
            return a.astype(np.int8)
        return a

    def _agent_actions(self, actions: Any) -> np.ndarray:
        """Inverse of :meth:`_env_actions`: 0-based ``int64 [B, K]``."""
        if self.action_kind == "tuple":
            a = np.stack([np.asarray(p) for p in actions], axis=1)
        elif self.action_kind == "discrete":
            a = np.asarray(actions).reshape(-1, 1)
        else:
            a = np.asarray(actions)
        return a.astype(np.int64) - np.asarray(self.action_starts)

    # ------------------------------------------------------------------------------------------ acting
    def act(self, obs: np.ndarray, state: State, explore: bool) -> tuple[Any, State]:
        """Sample each action component (argmax when not exploring); the core state flows through ``state``."""
        n = np.asarray(obs).shape[0]
        state = self._take_resumed(state, n)
        if explore and not self.rollout["rewards"]:
            self.rollout_state = {k: v.detach().clone() for k, v in state.items()}
        with torch.no_grad():
            logits, _, core_state = self._step(self._encode_obs(obs), state)
            if explore:
                picks = [torch.multinomial(torch.softmax(lg.float().cpu(), -1), 1, generator=self.generator)[:, 0]
                         for lg in logits]
            else:
                picks = [lg.argmax(-1).cpu() for lg in logits]
            a = torch.stack(picks, dim=1)
            core_state["prev_action"] = self._one_hot_actions(a.to(self.device))
        return self._env_actions(a.numpy()), core_state

    def q_values(self, obs: np.ndarray) -> None:
        """No Q-values: an actor-critic."""
        return None

    def policy_outputs(self, obs: np.ndarray, state: State) -> dict[str, Any]:
        """What the policy computes in ``state`` for ``obs`` (``rlmorning record`` logs it): the value
        ``float32 [B]`` and the probabilities of each action component (``action_probs``, ``[B, n_k]`` each)."""
        with torch.no_grad():
            logits, value, _ = self._step(self._encode_obs(obs), state)
        return {"value": value.float().cpu().numpy(),
                "action_probs": [torch.softmax(lg.float(), -1).cpu().numpy() for lg in logits]}

    # ----------------------------------------------------------------------------------------- observe
    def observe(self, obs: np.ndarray, actions: Any, rewards: np.ndarray, terminated: np.ndarray,
                truncated: np.ndarray, next_obs: np.ndarray, valid: np.ndarray | None = None,
                info: dict | None = None) -> None:
        """Append the vector step to the rollout."""
        n = np.asarray(obs).shape[0]
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        r = self.rollout
        r["obs"].append(np.array(obs, copy=True))
        r["actions"].append(self._agent_actions(actions))
        r["rewards"].append(np.asarray(rewards, np.float32))
        r["terminated"].append(terminated)
        r["truncated"].append(truncated)
        r["valid"].append(np.ones(n, bool) if valid is None else np.asarray(valid, bool))
        r["next_obs"].append(np.array(next_obs, copy=True))
        self.env_steps += int(r["valid"][-1].sum())
        level = step_info(info, "min_length", terminated | truncated)
        if level is not None:
            self.curriculum.append(float(np.mean(level)))

    def interrupt_episodes(self) -> None:
        """Episodes in flight were lost: drop the unfinished rollout."""
        self.rollout = _empty_rollout()
        self.rollout_state = None
        self._resume_state = None

    # ---------------------------------------------------------------------------------------- learning
    def update(self, step: int) -> dict[str, float]:
        """A gradient step once the rollout holds ``n_steps`` vector steps."""
        if len(self.rollout["rewards"]) < self.config.n_steps or self.rollout_state is None:
            return {}
        metrics = self._train()
        self.rollout = _empty_rollout()
        self.rollout_state = None
        if self.curriculum:
            metrics["curriculum_min_length"] = float(np.mean(self.curriculum))
            self.curriculum = []
        return metrics

    def _train(self) -> dict[str, float]:
        """Replay the rollout through the core from its start state, then one actor-critic gradient step."""
        c = self.config
        r = {k: np.stack(v) for k, v in self.rollout.items()}  # [T, B, ...]
        t_len, b = r["rewards"].shape
        dev = self.device
        actions = torch.as_tensor(r["actions"], device=dev)  # [T, B, K]
        done = torch.as_tensor(r["terminated"] | r["truncated"], device=dev)
        rewards = torch.as_tensor(r["rewards"], device=dev)
        valid = torch.as_tensor(r["valid"], device=dev).float()
        prev = self._one_hot_actions(actions)  # [T, B, P]

        state = dict(self.rollout_state)  # type: ignore[arg-type]
        fresh = self.fresh_state(b)
        logps, ents, values, states = [], [], [], []
        for t in range(t_len):
            if t > 0:
                state = reset_rows(state, fresh, done[t - 1])
            logits, v, core_state = self._step(self._encode_obs(r["obs"][t]), state)
            logps.append(sum(F.log_softmax(lg, -1).gather(-1, actions[t, :, k : k + 1]).squeeze(-1)
                             for k, lg in enumerate(logits)))
            ents.append(sum(-(F.softmax(lg, -1) * F.log_softmax(lg, -1)).sum(-1) for lg in logits))
            values.append(v)
            core_state["prev_action"] = prev[t]
            state = core_state
            states.append(state)
        logp, ent, value = torch.stack(logps), torch.stack(ents), torch.stack(values)  # [T, B]

        with torch.no_grad():
            # bootstrap values: after the last step, and at truncations (episode cut, not ended)
            boot = torch.zeros(t_len, b, device=dev)
            trunc = torch.as_tensor(r["truncated"], device=dev)
            for t in range(t_len):
                need = trunc[t] if t < t_len - 1 else ~torch.as_tensor(r["terminated"][t], device=dev)
                if need.any():
                    _, v_next, _ = self._step(self._encode_obs(r["next_obs"][t]), states[t])
                    boot[t] = torch.where(need, v_next, torch.zeros_like(v_next))
            adv = torch.zeros(t_len, b, device=dev)
            nonterminal = 1.0 - done.float()
            last = torch.zeros(b, device=dev)
            for t in reversed(range(t_len)):
                next_v = value[t + 1].detach() * nonterminal[t] if t < t_len - 1 else torch.zeros(b, device=dev)
                delta = rewards[t] + c.gamma * (next_v + boot[t]) - value[t].detach()
                last = delta + c.gamma * c.gae_lambda * nonterminal[t] * last
                adv[t] = last
            returns = adv + value.detach()
            if c.normalize_advantage:
                adv = (adv - adv[valid > 0].mean()) / (adv[valid > 0].std() + 1e-8)

        n_valid = valid.sum().clamp_min(1.0)
        policy_loss = -(logp * adv * valid).sum() / n_valid
        value_loss = 0.5 * (((value - returns) ** 2) * valid).sum() / n_valid
        entropy = (ent * valid).sum() / n_valid
        loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(list(self.net.parameters()), c.max_grad_norm, 0.0)
        if math.isfinite(grad_norm):
            self.optimizer.step()
        else:  # a non-finite loss or gradient never reaches the weights
            self.skipped += 1
        self.updates += 1
        return {"loss": float(loss.detach()), "policy_loss": float(policy_loss.detach()),
                "value_loss": float(value_loss.detach()), "entropy": float(entropy.detach()),
                "grad_norm": grad_norm, "value_mean": float(value.detach().mean())}


def _action_parts(space: gym.Space) -> tuple[str, list[int], list[int]]:
    """(kind, sizes, starts) of a Discrete, Tuple-of-Discrete or MultiDiscrete action space."""
    if isinstance(space, gym.spaces.Discrete):
        return "discrete", [int(space.n)], [int(space.start)]
    if isinstance(space, gym.spaces.Tuple) and all(isinstance(s, gym.spaces.Discrete) for s in space.spaces):
        return "tuple", [int(s.n) for s in space.spaces], [int(s.start) for s in space.spaces]
    if isinstance(space, gym.spaces.MultiDiscrete) and len(space.shape) == 1:
        return "multidiscrete", [int(n) for n in space.nvec], [0] * len(space.nvec)
    if isinstance(space, gym.spaces.MultiBinary) and len(space.shape) == 1:
        return "multibinary", [2] * int(space.shape[0]), [0] * int(space.shape[0])
    raise RlmError(f"a2c needs Discrete, Tuple(Discrete, ...), MultiDiscrete or MultiBinary actions, this env has "
                   f"{space}")


def _obs_encoding(space: gym.Space) -> tuple[str, int]:
    if isinstance(space, gym.spaces.Discrete):
        if space.start != 0:
            raise RlmError(f"a2c needs Discrete observations starting at 0, this env has {space}")
        return "discrete", int(space.n)
    if isinstance(space, gym.spaces.Box):
        return "box", int(np.prod(space.shape))
    raise RlmError(f"a2c needs Discrete or Box observations, this env has {space}")


def _validate(c: A2CConfig) -> None:
    if c.n_steps < 1:
        raise RlmError(f"config key 'n_steps' must be >= 1, got {c.n_steps}")
    if not 0 <= c.gamma <= 1 or not 0 <= c.gae_lambda <= 1:
        raise RlmError(f"config keys 'gamma' and 'gae_lambda' must be in [0, 1], got {c.gamma}, {c.gae_lambda}")
    if c.lr <= 0:
        raise RlmError(f"config key 'lr' must be > 0, got {c.lr}")
