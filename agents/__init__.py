"""Agents: each registers a config dataclass, a factory and default presets per env family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlmorning.agents.base import Agent, AgentSetting, FeedForwardAgent
from rlmorning.agents.dqn import DQNAgent, DQNConfig
from rlmorning.agents.dyna import DynaDQNAgent, DynaDQNConfig, make_dqn_agent
from rlmorning.registry import Registry


@dataclass(frozen=True)
class AgentSpec:
    """How to build an agent: its config dataclass, its class, and its preset for each env family."""

    config_cls: type
    factory: Callable[[Any, AgentSetting], Agent]
    """``factory(config, setting)``: builds the agent from an instance of ``config_cls`` and an
    :class:`~rlmorning.agents.base.AgentSetting` (usually the agent class itself)."""
    presets: dict[str, str]
    """env family -> preset name in configs/ (used when --config is not given)."""
    description: str


AGENTS: Registry[AgentSpec] = Registry("agent")
AGENTS.register("dqn", "DQN (Mnih et al. 2015) with Double/Dueling/n-step switches")(
    AgentSpec(
        DynaDQNConfig,  # DQN's keys plus an optional world model (model: ...), which makes it Dyna-DQN
        make_dqn_agent,
        {"atari": "dqn_atari", "minatar": "dqn_minatar", "gym": "dqn_classic"},
        "DQN (Mnih et al. 2015) with Double/Dueling/n-step switches",
    )
)

__all__ = ["AGENTS", "Agent", "AgentSetting", "AgentSpec", "DQNAgent", "DQNConfig", "DynaDQNAgent", "DynaDQNConfig",
           "FeedForwardAgent"]

from rlmorning.agents.a2c import A2CAgent, A2CConfig  # noqa: E402
from rlmorning.agents.ntm import NTMAgent, NTMConfig  # noqa: E402

AGENTS.register("ntm", "Neural Turing Machine (Graves et al. 2014) trained by BPTT on the NTM tasks' targets")(
    AgentSpec(NTMConfig, NTMAgent, {"gym": "ntm_copy"},
              "Neural Turing Machine (Graves et al. 2014) trained by BPTT on the NTM tasks' targets; core=lstm "
              "for the LSTM baseline")
)
AGENTS.register("a2c", "recurrent actor-critic with an LSTM or NTM memory core (RL-NTM setting)")(
    AgentSpec(A2CConfig, A2CAgent, {"gym": "a2c_algorithmic"},
              "recurrent n-step actor-critic with an LSTM or NTM memory core (core=lstm|ntm) for the "
              "algorithmic envs")
)
__all__ += ["A2CAgent", "A2CConfig", "NTMAgent", "NTMConfig"]

from rlmorning.agents.world_model import WorldModelAgent, WorldModelConfig  # noqa: E402

AGENTS.register("worldmodel", "generative world model (codec + recurrent dynamics) trained on real transitions")(
    AgentSpec(WorldModelConfig, WorldModelAgent, {"minatar": "worldmodel_minatar"},
              "generative world model: frame codec (ae|vae|vqvae|grid-ae) + dynamics (gru|mdn-gru|conv-gru) with "
              "reward and termination heads, trained on real transitions of a uniformly random policy or of a run's "
              "replay (from_run=RUN); logs k-step prediction accuracy")
)
__all__ += ["WorldModelAgent", "WorldModelConfig"]

from rlmorning.agents.skills import SkillsAgent, SkillsConfig  # noqa: E402

AGENTS.register("skills", "unsupervised skill discovery: skill-conditioned DQN rewarded by log q(z|s) - log p(z)")(
    AgentSpec(SkillsConfig, SkillsAgent, {"gym": "skills_classic", "minatar": "skills_minatar"},
              "unsupervised skill discovery (InfoGAN's MI objective, DIAYN): skill-conditioned DQN rewarded by a "
              "discriminator's log q(z|s') - log p(z); code=categorical|gaussian; init_from=RUN fine-tunes the best "
              "skill on the env's reward")
)
__all__ += ["SkillsAgent", "SkillsConfig"]
