"""CLI subcommands: every module here has ``register(subparsers) -> {name: handler}``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rlmorning.errors import RlmError


def refuse_with_resume(flags: Iterable[tuple[str, Any]], note: str) -> None:
    """One-line RlmError naming the given (truthy) ``(flag, value)`` options, which ``--resume`` does not take."""
    given = [flag for flag, value in flags if value]
    if given:
        raise RlmError(f"{', '.join(given)} cannot be combined with --resume ({note})")
