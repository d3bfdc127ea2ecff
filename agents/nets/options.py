"""Checks of an encoder's observation shape and options, each failing with a one-line RlmError."""

from __future__ import annotations

from collections.abc import Sequence

from rlmorning.errors import RlmError


def check_image_shape(name: str, obs_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image observation, or a one-line RlmError for anything else."""
    if len(obs_shape) != 3 or min(int(d) for d in obs_shape) < 1:
        raise RlmError(f"encoder '{name}' needs image observations [C, H, W], got shape {tuple(obs_shape)}")
    c, h, w = (int(d) for d in obs_shape)
    if min(h, w) < 4:
        raise RlmError(f"encoder '{name}' needs frames of at least 4x4, got {h}x{w}")
    return c, h, w


def positive_ints(name: str, key: str, value: object, length: int | None = None) -> list[int]:
    """Validate an encoder option that is a list of positive integers (one-line RlmError otherwise)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    ok = isinstance(value, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                 for v in value)
    if not ok or not value or (length is not None and len(value) != length):
        want = f"{length} positive integers" if length else "a list of positive integers"
        raise RlmError(f"encoder '{name}' option '{key}' expects {want}, got {value!r}")
    return [int(v) for v in value]


def positive_int(name: str, key: str, value: object) -> int:
    """Validate an integer option > 0."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RlmError(f"encoder '{name}' option '{key}' expects a positive integer, got {value!r}")
    return int(value)
