"""What the inspection tools may ask of an agent beyond the training protocol (``agents/base.py``).

Each capability is a small ``typing.Protocol``; an agent offers it by having the attribute, and the tools in
``rlmorning.viz`` check it with ``isinstance`` instead of reaching into an agent's internals.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


@runtime_checkable
class QValues(Protocol):
    """Value-based agents: ``float [B, A]`` Q-values of a batch (None when the agent has none)."""

    def q_values(self, obs: np.ndarray) -> torch.Tensor | None: ...


@runtime_checkable
class HasEncoder(Protocol):
    """Agents whose acting network starts with an observation encoder (``agents/nets/encoders.py``)."""

    @property
    def encoder(self) -> nn.Module: ...


@runtime_checkable
class HasWorldModel(Protocol):
    """Agents that hold a generative world model (``worldmodel``, Dyna-DQN); None when this one has none."""

    @property
    def world_model(self) -> Any | None: ...


@runtime_checkable
class HasMemory(Protocol):
    """Recurrent agents: whether their core is an external-memory (NTM) core, and the core's name."""

    @property
    def has_memory(self) -> bool: ...

    @property
    def core_name(self) -> str: ...


@runtime_checkable
class PolicyOutputs(Protocol):
    """Agents that report more than Q-values per step (policy probabilities, value, memory reads, ...)."""

    def policy_outputs(self, obs: np.ndarray, state: Any) -> dict[str, Any]: ...
