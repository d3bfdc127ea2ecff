"""Wrappers for the algorithmic environments."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
from gymnasium import spaces


class FlattenedActions(gym.ActionWrapper[Any, int, tuple[int, ...]], gym.utils.RecordConstructorArgs):
    """Expose a ``Tuple`` of ``Discrete`` action spaces as one ``Discrete`` space.

    For the algorithmic environments the action ``(move, write, symbol)`` gets the
    index ``(move * 2 + write) * base + symbol``: row-major (mixed-radix) order with
    the *first* component most significant, i.e. ``numpy.ravel_multi_index`` over
    the shape ``(n_moves, 2, base)``.  The flat space is
    ``Discrete(n_moves * 2 * base)``.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        """Wrap ``env``, whose action space must be a ``Tuple`` of ``Discrete`` spaces."""
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        space = env.action_space
        if not isinstance(space, spaces.Tuple) or not all(
            isinstance(s, spaces.Discrete) for s in space.spaces
        ):
            raise TypeError(f"FlattenedActions needs a Tuple of Discrete action spaces, got {space}")
        self._sizes: tuple[int, ...] = tuple(int(s.n) for s in space.spaces)  # type: ignore[attr-defined]
        self._starts: tuple[int, ...] = tuple(int(s.start) for s in space.spaces)  # type: ignore[attr-defined]
        self.action_space = spaces.Discrete(math.prod(self._sizes))

    def unflatten(self, action: int) -> tuple[int, ...]:
        """Map a flat index to the wrapped environment's tuple action."""
        index = operator.index(action)
        if not 0 <= index < self.action_space.n:
            raise ValueError(f"flat action {action!r} is not in [0, {self.action_space.n})")
        parts = []
        for size in reversed(self._sizes):
            index, part = divmod(index, size)
            parts.append(part)
        return tuple(part + start for part, start in zip(reversed(parts), self._starts, strict=True))

    def flatten(self, action: Sequence[int]) -> int:
        """Map a tuple action of the wrapped environment to its flat index (inverse of :meth:`unflatten`)."""
        if len(action) != len(self._sizes):
            raise ValueError(f"expected {len(self._sizes)} components, got {action!r}")
        index = 0
        for part, size, start in zip(action, self._sizes, self._starts, strict=True):
            value = operator.index(part) - start
            if not 0 <= value < size:
                raise ValueError(f"action {action!r} is not in {self.env.action_space}")
            index = index * size + value
        return index

    def action(self, action: int) -> tuple[int, ...]:
        """Translate the flat action for the wrapped environment."""
        return self.unflatten(action)
