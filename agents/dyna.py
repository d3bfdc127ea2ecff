"""Model-based DQN: a DQN agent composed with a world model trained on its replay, and imagined rollouts.

Chosen with the nested ``model:`` section of the ``dqn`` agent's config (``rlmorning train dqn --set
model.codec=vae --set model.dynamics=gru``, or ``--config dyna_minatar``); without it ``dqn`` is plain DQN.
:func:`make_dqn_agent` builds one or the other. :class:`DynaDQNAgent` holds

* a :class:`~rlmorning.agents.dqn.DQNAgent`, which knows nothing of world models: it asks its
  :class:`~rlmorning.agents.dqn.BatchSource` for each batch;
* a :class:`~rlmorning.agents.wm_trainer.WorldModelTrainer` on the DQN's replay (the same schedule and k-step
  check as ``train worldmodel``: one update every ``model.train_freq`` env steps once replay holds
  ``model.learning_starts`` transitions);
* the :class:`~rlmorning.agents.imagination.Imagination` that rolls the model out and is the DQN's batch
  source.

Modes (``model.mode``):

* ``dyna`` (Sutton 1990; Dyna-DQN): every DQN batch holds ``batch_size`` real transitions *plus*
  ``model.imagined_ratio * batch_size`` imagined ones, so the model adds data without taking real samples
  away. The fair model-free baselines are plain DQN and plain DQN with the same total replay ratio
  (``gradient_steps = 1 + imagined_ratio``), see ``bench/dyna.py``.
* ``simple`` (SimPLe-style, Kaiser et al. 2019): the DQN learns *only* from imagined transitions (batches of
  ``batch_size``); real experience trains the model and supplies start states. Training is interleaved
  (model updates, imagination rounds and DQN updates on their own step schedules) rather than SimPLe's
  alternating phases, which keeps the one trainer loop unchanged. Evaluation is always in the real env.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from rlmorning.agents.base import AgentSetting, FeedForwardAgent
from rlmorning.agents.dqn import DQNAgent, DQNConfig
from rlmorning.agents.dqn import _validate as _validate_dqn
from rlmorning.agents.imagination import Imagination, check_imagination
from rlmorning.agents.nets.world_model import WorldModel
from rlmorning.agents.nets.world_model_nets import CODECS, DYNAMICS
from rlmorning.agents.wm_trainer import ModelTraining, WorldModelTrainer, build_world_model
from rlmorning.checkpointed import Checkpointed
from rlmorning.errors import RlmError


@dataclass
class DynaModelConfig(ModelTraining):
    """Dyna-DQN's ``model:`` section: the world model, its training on the DQN's replay, and imagination."""

    learning_starts: int = 2_000
    """Transitions in replay before the first model update."""
    kstep_every: int = 1_000
    kstep_batch: int = 128
    mode: str = "dyna"
    """dyna (real + imagined transitions per batch) | simple (the DQN learns only from imagined ones)"""
    imagined_ratio: float = 1.0
    """dyna: imagined transitions per real one in each batch (batch_size real + ratio x batch_size imagined)."""
    imagine_starts: int = 5_000
    """Env steps before imagined rollouts begin."""
    rollout_horizon: int = 5
    rollout_batch: int = 64
    """Start states (from replay) per imagination round."""
    rollout_every: int = 16
    """Env steps per imagination round."""
    imagined_buffer_size: int = 50_000
    imagined_reward: str = "mean"
    """mean (the reward head's regression output, an estimate of the expected reward, as it is) | round
    (rounded to integers while every real reward was one; erases rare rewards: docs/world_models.md)"""
    imagined_termination: str = "expected"
    """expected (discount gamma * (1 - p), p the predicted termination probability; rows stop at p > 0.5)
    | threshold (discount 0 where p > 0.5, gamma elsewhere)"""


MOVED = {
    "world_model": "model.codec and model.dynamics",
    "world_model_kwargs": "its keys inside model (e.g. model.latent_dim, model.hidden)",
    "model_mode": "model.mode",
    "model_batch_size": "model.batch_size",
    "model_seq_len": "model.seq_len",
    "model_train_freq": "model.train_freq",
    "model_learning_starts": "model.learning_starts",
    **{k: f"model.{k}" for k in ("imagined_ratio", "imagine_starts", "rollout_horizon", "rollout_batch",
                                  "rollout_every", "imagined_buffer_size", "imagined_reward",
                                  "imagined_termination", "kstep_every", "kstep_horizon", "kstep_batch")},
}
"""The flat world-model keys of earlier versions and where each one went."""


@dataclass
class DynaDQNConfig(DQNConfig):
    """The ``dqn`` agent's config: DQN's keys plus an optional world model (``model: null`` is plain DQN)."""

    model: DynaModelConfig | None = None
    """World model, its training and imagination (docs/world_models.md); null: model-free DQN."""

    moved_keys: ClassVar[dict[str, str]] = MOVED

    @staticmethod
    def upgrade(flat: dict[str, Any]) -> str | None:
        """Translate an older run's config.yaml in place: the flat world-model keys into ``model:`` (a warning
        line when a world model was set; a model-free run's defaults are dropped silently), and a run that
        predates ``flush_subnormals`` keeps the CPU's subnormal arithmetic it trained with."""
        flat.setdefault("flush_subnormals", False)
        old = {k: flat.pop(k) for k in list(flat) if k in MOVED}
        if not old.get("world_model"):
            return None
        codec, dynamics = parse_world_model(old.pop("world_model"))
        model = {"codec": codec, "dynamics": dynamics, **old.pop("world_model_kwargs", {})}
        for key, value in old.items():
            model[MOVED[key].removeprefix("model.")] = value
        flat["model"] = model
        return ("this run's config.yaml uses the flat world-model keys of an earlier rlmorning; read as "
                "model.* (world_model -> model.codec/model.dynamics, model_batch_size -> model.batch_size, ...)")


def parse_world_model(name: str) -> tuple[str, str]:
    """``"vae-mdn-gru"`` -> ``("vae", "mdn-gru")`` (the earlier ``world_model`` key); unknown parts raise an
    RlmError listing the valid ones."""
    for codec in sorted(CODECS.names(), key=len, reverse=True):
        if name.startswith(codec + "-"):
            dynamics = name[len(codec) + 1:]
            if dynamics in DYNAMICS:
                return codec, dynamics
            break
    valid = [f"{c}-{d}" for c in CODECS.names() for d in DYNAMICS.names()]
    raise RlmError(f"unknown world_model '{name}'. Valid: {', '.join(valid)}")


def _from_dqn(name: str, doc: str) -> property:
    """A read-only attribute of the composed DQN agent."""
    return property(lambda self: getattr(self.dqn, name), doc=doc)


class DynaDQNAgent(Checkpointed, FeedForwardAgent):
    """DQN plus a world model trained on its replay, learning also (dyna) or only (simple) in imagination.

    The checkpoint is the DQN's state with the model's beside it under ``world_model``."""

    saved_inline = ("dqn",)
    saved = ("world_model=planner",)

    def __init__(self, config: DynaDQNConfig, setting: AgentSetting) -> None:
        """``setting.inference=True``: networks and world model only (no replay, optimizers' state or imagined
        buffer)."""
        m = config.model
        if m is None:
            raise RlmError("DynaDQNAgent needs the config's model section (model.codec, model.dynamics, ...)")
        self.dqn = DQNAgent(config, setting)
        check_imagination(m)
        self.config = config
        space = setting.observation_space
        model = build_world_model(m, space, self.dqn.num_actions, setting.device)
        trainer = WorldModelTrainer(m, model, self.dqn.replay, prefix="model.")
        self.planner = Imagination(m, config.gamma, trainer, self.dqn.replay, tuple(space.shape), space.dtype,
                                   setting.seed, setting.inference)
        self.dqn.batch_source = self.planner

    # ------------------------------------------------------------------------------- what tools look at
    @property
    def world_model(self) -> WorldModel:
        """The world model (:class:`~rlmorning.agents.capabilities.HasWorldModel`)."""
        return self.planner.model

    encoder = _from_dqn("encoder", "The DQN's encoder (:class:`~rlmorning.agents.capabilities.HasEncoder`).")
    replay = _from_dqn("replay", "The DQN's replay, on which the world model trains too.")
    online = _from_dqn("online", "The DQN's online Q-network.")
    updates = _from_dqn("updates", "The DQN's gradient steps.")
    env_steps = _from_dqn("env_steps", "Real transitions observed.")
    epsilon = _from_dqn("epsilon", "The DQN's exploration rate now.")

    # ------------------------------------------------------------------------------------ the protocol
    def q_values(self, obs: np.ndarray) -> torch.Tensor:
        return self.dqn.q_values(obs)

    def act(self, obs: np.ndarray, state: Any, explore: bool) -> tuple[np.ndarray, Any]:
        return self.dqn.act(obs, state, explore)

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                truncated: np.ndarray, next_obs: np.ndarray, valid: np.ndarray | None = None,
                info: dict | None = None) -> None:
        """The DQN stores the step; the model's and imagination's schedules count it."""
        self.dqn.observe(obs, actions, rewards, terminated, truncated, next_obs, valid, info)
        rows = slice(None) if valid is None else np.asarray(valid, bool)
        new = int(obs.shape[0] if valid is None else np.count_nonzero(valid))
        self.planner.observe(np.asarray(rewards)[rows], new)

    def _imagination_policy(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """Epsilon-greedy actions for imagined rollouts (the planner's RNG, not the acting one)."""
        rng = self.planner.rng
        greedy = self.dqn.q_values(obs).argmax(dim=1).cpu().numpy()
        explore = rng.random(len(obs)) < epsilon
        return np.where(explore, rng.integers(0, self.dqn.num_actions, len(obs)), greedy)

    def update(self, step: int) -> dict[str, float]:
        """Model updates and imagination rounds owed, then the DQN's gradient steps; all their metrics."""
        model_metrics = self.planner.step(self._imagination_policy, self.dqn.epsilon)
        out = self.dqn.update(step)
        if not out:
            return model_metrics
        out.update(model_metrics)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "world_model" not in state:
            raise RlmError("checkpoint has no world model, but this config sets model")
        super().load_state_dict(state)


def make_dqn_agent(config: DQNConfig, setting: AgentSetting) -> DQNAgent | DynaDQNAgent:
    """The ``dqn`` agent: :class:`DynaDQNAgent` when ``config.model`` is set, else plain :class:`DQNAgent`."""
    if getattr(config, "model", None) is not None:
        _validate(config)
        return DynaDQNAgent(config, setting)
    return DQNAgent(config, setting)


def _validate(config: DQNConfig) -> None:
    """The ``dqn`` agent's own config checks (DQN's, and imagination's when a model is set), before building it
    (``rlmorning sweep`` checks every grid point with them)."""
    _validate_dqn(config)
    if getattr(config, "model", None) is not None:
        check_imagination(config.model)
        if config.aux != "none":
            raise RlmError("config key 'aux' does not combine with a world model (model: ...): imagined "
                           "transitions have no console RAM")
