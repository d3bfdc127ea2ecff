"""Name -> factory registries, so a YAML key or a CLI flag picks a part (agent, encoder, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from rlmorning.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to factories; looking up an unknown name lists the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator: ``@ENCODERS.register("nature", "Mnih et al. 2015")``."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = item
            self._help[name] = help or (getattr(item, "__doc__", "") or "").strip().split("\n")[0]
            return item

        return add

    def get(self, name: str) -> T:
        """Return the factory registered under ``name`` or raise an RlmError naming the valid ones."""
        if name not in self._items:
            raise unknown_name(self.kind, name, self._items)
        return self._items[name]

    def describe(self, name: str) -> str:
        """One line of help for ``name``."""
        return self._help.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
