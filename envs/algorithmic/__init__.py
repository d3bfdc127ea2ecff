"""Gym 0.19's algorithmic environments, ported to Gymnasium.

``import rlmorning`` registers ``rlmorning/Copy-v0``, ``rlmorning/DuplicatedInput-v0``,
``rlmorning/RepeatCopy-v0``, ``rlmorning/Reverse-v0``, ``rlmorning/ReversedAddition-v0`` and
``rlmorning/ReversedAddition3-v0`` (with gym's reward thresholds and without a ``TimeLimit``:
each environment enforces its own time limit, as in gym).
"""

from __future__ import annotations

from rlmorning.gym_ids import ALGORITHMIC_ENV_IDS, register_gym_ids

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

def register_algorithmic_envs() -> None:
    """Register the six algorithmic environments with Gymnasium (as ``import rlmorning`` does, from the table
    in :mod:`rlmorning.gym_ids`); ids already registered are skipped."""
    register_gym_ids(ALGORITHMIC_ENV_IDS)


register_algorithmic_envs()
from . import ntm_tasks  # noqa: E402, F401  (registers rlmorning/NTMCopy-v0 and the other NTM paper tasks)
