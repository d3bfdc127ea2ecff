"""Gym 0.19's algorithmic environments, ported to Gymnasium.

Importing this package registers ``rlmorning/Copy-v0``, ``rlmorning/DuplicatedInput-v0``,
``rlmorning/RepeatCopy-v0``, ``rlmorning/Reverse-v0``, ``rlmorning/ReversedAddition-v0`` and
``rlmorning/ReversedAddition3-v0`` (with gym's reward thresholds and without a ``TimeLimit``:
each environment enforces its own time limit, as in gym).
"""

from __future__ import annotations

import gymnasium

from .base import Action, AlgorithmicEnv, GridAlgorithmicEnv, TapeAlgorithmicEnv
from .tasks import (
    CopyEnv,
    DuplicatedInputEnv,
    RepeatCopyEnv,
    ReversedAddition3Env,
    ReversedAdditionEnv,
    ReverseEnv,
)
from .wrappers import FlattenedActions

__all__ = [
    "ALGORITHMIC_ENV_IDS",
    "Action",
    "AlgorithmicEnv",
    "CopyEnv",
    "DuplicatedInputEnv",
    "FlattenedActions",
    "GridAlgorithmicEnv",
    "RepeatCopyEnv",
    "ReverseEnv",
    "ReversedAddition3Env",
    "ReversedAdditionEnv",
    "TapeAlgorithmicEnv",
    "register_algorithmic_envs",
]

# (id, class in .tasks, reward threshold from gym 0.19's registry)
_REGISTRATIONS: tuple[tuple[str, str, float], ...] = (
    ("rlmorning/Copy-v0", "CopyEnv", 25.0),
    ("rlmorning/DuplicatedInput-v0", "DuplicatedInputEnv", 9.0),
    ("rlmorning/RepeatCopy-v0", "RepeatCopyEnv", 75.0),
    ("rlmorning/Reverse-v0", "ReverseEnv", 25.0),
    ("rlmorning/ReversedAddition-v0", "ReversedAdditionEnv", 25.0),
    ("rlmorning/ReversedAddition3-v0", "ReversedAddition3Env", 25.0),
)

ALGORITHMIC_ENV_IDS: tuple[str, ...] = tuple(env_id for env_id, _, _ in _REGISTRATIONS)
"""The Gymnasium ids registered by :func:`register_algorithmic_envs`."""


def register_algorithmic_envs() -> None:
    """Register the six algorithmic environments with Gymnasium; ids already registered are skipped."""
    for env_id, class_name, threshold in _REGISTRATIONS:
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point=f"rlmorning.envs.algorithmic.tasks:{class_name}",
            reward_threshold=threshold,
        )


register_algorithmic_envs()
from . import ntm_tasks  # noqa: E402, F401  (registers rlmorning/NTMCopy-v0 and the other NTM paper tasks)
