"""rlmorning's own Gymnasium ids (``rlmorning/...``), registered by ``import rlmorning``.

Entry points are strings, so registering imports only Gymnasium (not torch, ale_py or the env modules):
an env's module is imported by ``gym.make``. Registration skips ids already registered, so importing
:mod:`rlmorning.envs.algorithmic` (which registers the same ids) later does not warn.
"""

from __future__ import annotations

from collections.abc import Iterable

_ALGORITHMIC = "rlmorning.envs.algorithmic.tasks"
_NTM = "rlmorning.envs.algorithmic.ntm_tasks"

GYM_IDS: dict[str, tuple[str, float | None]] = {
    # gym 0.19's algorithmic envs, with gym's reward thresholds and no TimeLimit (each enforces its own)
    "rlmorning/Copy-v0": (f"{_ALGORITHMIC}:CopyEnv", 25.0),
    "rlmorning/DuplicatedInput-v0": (f"{_ALGORITHMIC}:DuplicatedInputEnv", 9.0),
    "rlmorning/RepeatCopy-v0": (f"{_ALGORITHMIC}:RepeatCopyEnv", 75.0),
    "rlmorning/Reverse-v0": (f"{_ALGORITHMIC}:ReverseEnv", 25.0),
    "rlmorning/ReversedAddition-v0": (f"{_ALGORITHMIC}:ReversedAdditionEnv", 25.0),
    "rlmorning/ReversedAddition3-v0": (f"{_ALGORITHMIC}:ReversedAddition3Env", 25.0),
    # the NTM paper's tasks (no time limit: episodes have a fixed length)
    "rlmorning/NTMCopy-v0": (f"{_NTM}:NTMCopyEnv", None),
    "rlmorning/NTMRepeatCopy-v0": (f"{_NTM}:NTMRepeatCopyEnv", None),
    "rlmorning/NTMAssociativeRecall-v0": (f"{_NTM}:NTMAssociativeRecallEnv", None),
    "rlmorning/NTMPrioritySort-v0": (f"{_NTM}:NTMPrioritySortEnv", None),
}
"""Gymnasium id -> (entry point, reward threshold)."""

ALGORITHMIC_ENV_IDS: tuple[str, ...] = tuple(k for k, (ep, _) in GYM_IDS.items() if ep.startswith(_ALGORITHMIC + ":"))
NTM_TASK_IDS: tuple[str, ...] = tuple(k for k, (ep, _) in GYM_IDS.items() if ep.startswith(_NTM + ":"))


def register_gym_ids(ids: Iterable[str] | None = None) -> None:
    """Register ``ids`` (default: all of :data:`GYM_IDS`) with Gymnasium; ids already registered are skipped."""
    import gymnasium as gym

    for env_id in GYM_IDS if ids is None else ids:
        if env_id in gym.registry:
            continue
        entry_point, threshold = GYM_IDS[env_id]
        gym.register(id=env_id, entry_point=entry_point, reward_threshold=threshold)
