"""Agents: each registers a config dataclass, a factory and default presets per env family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rlmorning.agents.base import Agent, FeedForwardAgent
from rlmorning.agents.dqn import DQNAgent, DQNConfig

from rlmorning.registry import Registry


@dataclass(frozen=True)
class AgentSpec:
    """How to build an agent: its config dataclass, its class, and its preset for each env family."""

    config_cls: type
    factory: Callable[..., Agent]
    presets: dict[str, str]
    """env family -> preset name in configs/ (used when --config is not given)."""
    description: str


AGENTS: Registry[AgentSpec] = Registry("agent")
AGENTS.register("dqn", "DQN (Mnih et al. 2015) with Double/Dueling/n-step switches")(
    AgentSpec(
        DQNConfig,
        DQNAgent,
        {"atari": "dqn_atari", "minatar": "dqn_minatar", "gym": "dqn_classic"},
        "DQN (Mnih et al. 2015) with Double/Dueling/n-step switches",
    )
)

__all__ = ["AGENTS", "Agent", "AgentSpec", "DQNAgent", "DQNConfig", "FeedForwardAgent"]
