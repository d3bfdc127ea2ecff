"""State declared once: a class lists the attributes a checkpoint holds, and gets ``state_dict`` and
``load_state_dict`` built from that list (in the manner of pfrl's ``AttributeSavingMixin``).

::

    class MyAgent(Checkpointed):
        saved = ("online", "optimizer", "env_steps", "_update_credit", "rng", "augment_rng=_aug_generator")
        saved_buffers = ("replay",)

Each entry is an attribute path (``model.optimizer``), saved under its last name without leading underscores
(``update_credit``), or ``key=path`` to choose the key. What an entry holds decides how it is saved: a
:class:`Checkpointed` part or anything with ``state_dict``/``load_state_dict`` (modules, optimizers) as its
state dict, numpy and torch generators as their state, numpy arrays as tensors (loaded in place, shapes
checked), numbers and flags as they are. An attribute that is None (no optimizer when built for inference) is
neither saved nor loaded. A new counter therefore needs one edit: its name in ``saved``.

A value of another kind (a list, a deque of arrays, state that may be None) names its :class:`Form` in
``saved_forms``: how it is written, read back and emptied when the checkpoint lacks it::

    saved_buffers = ("pending",)
    saved_forms = {"pending": Form(save=lambda d: [torch.from_numpy(a.copy()) for a in d],
                                   load=lambda saved, agent: collections.deque(t.cpu().numpy() for t in saved),
                                   empty=collections.deque)}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from rlmorning.errors import RlmError


def load_module_state(module: torch.nn.Module, state: dict[str, Any], hint: str) -> None:
    """``module.load_state_dict(state)``; a shape/key mismatch becomes one RlmError line naming ``hint``
    (what usually differs, e.g. "encoder/env")."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RlmError(f"checkpoint does not fit this network (different {hint}?): {first}") from None


def _entry(entry: str) -> tuple[str, str]:
    """``"key=path"`` or ``"path"`` -> ``(key, path)``; the default key is the last name, underscores stripped."""
    key, sep, path = entry.partition("=")
    if not sep:
        path, key = entry, entry.rsplit(".", 1)[-1].lstrip("_")
    return key, path


def _owner(obj: Any, path: str) -> tuple[Any, str]:
    """The object holding the last attribute of ``path``, and that attribute's name."""
    *parents, name = path.split(".")
    for p in parents:
        obj = getattr(obj, p)
    return obj, name


@dataclass(frozen=True)
class Form:
    """How a checkpoint holds one declared attribute whose kind :class:`Checkpointed` does not handle itself."""

    save: Callable[[Any], Any]
    """The attribute's value (never None: None is not saved) -> what the checkpoint holds; a copy, as the state
    dict may outlive the call while the attribute changes."""
    load: Callable[[Any, Any], Any]
    """``(saved, obj)`` -> the attribute's new value, whatever it holds now (None included); ``obj`` is the
    object that declares the entry (for its ``device``, say)."""
    empty: Callable[[], Any] | None = None
    """The attribute's value when the checkpoint lacks the key (a buffer or an optional key); None: left as it is."""


class Checkpointed:
    """Mixin: ``state_dict``/``load_state_dict`` from the declared attribute lists below."""

    saved: ClassVar[tuple[str, ...]] = ()
    """Attribute paths a checkpoint holds (``key=path`` to choose the key)."""
    saved_buffers: ClassVar[tuple[str, ...]] = ()
    """Like ``saved``, but left out by ``state_dict(include_buffers=False)``; on load, when absent, left as they
    are (or emptied, where their form says how)."""
    saved_inline: ClassVar[tuple[str, ...]] = ()
    """Checkpointed parts whose keys go into this state dict itself rather than into a sub-dict."""
    saved_optional: ClassVar[tuple[str, ...]] = ()
    """Keys that earlier checkpoints of the same format may lack (left as they are on load, or emptied where their
    form says how)."""
    saved_forms: ClassVar[dict[str, Form]] = {}
    """Keys whose values are saved, loaded and emptied by a :class:`Form` of their own (key -> form)."""
    saved_renamed: ClassVar[dict[str, str]] = {}
    """Keys of inline parts written under another name in this part's layout (part's key -> key written)."""
    checkpoint_name: ClassVar[str] = "checkpoint"
    """How load errors name this part (``replay in checkpoint has ...``)."""
    load_hint: ClassVar[str] = "config or env"
    """What usually differs when a saved network or array does not fit this one (one line of RlmError)."""

    def state_dict(self, include_buffers: bool = True) -> dict[str, Any]:
        """Everything declared: inline parts' keys, ``saved`` and (with ``include_buffers``) ``saved_buffers``."""
        out: dict[str, Any] = {}
        for part in self.saved_inline:
            inner = getattr(*_owner(self, part)).state_dict(include_buffers)
            out.update({self.saved_renamed.get(k, k): v for k, v in inner.items()})
        entries = self.saved + (self.saved_buffers if include_buffers else ())
        for key, path in map(_entry, entries):
            owner, name = _owner(self, path)
            value = getattr(owner, name)
            if value is None:
                continue
            form = self.saved_forms.get(key)
            out[key] = form.save(value) if form is not None else self._save_value(value, include_buffers)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; a missing key is one RlmError line."""
        if self.saved_inline:
            back = {v: k for k, v in self.saved_renamed.items()}
            inner = {back.get(k, k): v for k, v in state.items()}
            for part in self.saved_inline:
                getattr(*_owner(self, part)).load_state_dict(inner)
        for entry in self.saved + self.saved_buffers:
            key, path = _entry(entry)
            owner, name = _owner(self, path)
            current = getattr(owner, name)
            form = self.saved_forms.get(key)
            if current is None and form is None:
                continue
            if key not in state:
                if entry not in self.saved_buffers and key not in self.saved_optional:
                    raise RlmError(f"{self.checkpoint_name} has no '{key}' (saved by another agent or config?)")
                if form is not None and form.empty is not None:
                    setattr(owner, name, form.empty())
                continue
            new = form.load(state[key], self) if form is not None else self._load_value(key, current, state[key])
            if new is not current:
                setattr(owner, name, new)

    @staticmethod
    def _save_value(value: Any, include_buffers: bool) -> Any:
        if isinstance(value, Checkpointed):
            return value.state_dict(include_buffers)
        if hasattr(value, "state_dict"):
            return value.state_dict()
        if isinstance(value, np.random.Generator):
            return value.bit_generator.state
        if isinstance(value, torch.Generator):
            return value.get_state()
        if isinstance(value, np.ndarray):
            return torch.from_numpy(value)
        return value

    def _load_value(self, key: str, current: Any, saved: Any) -> Any:
        """Load ``saved`` into ``current`` in place, or return the value that replaces it (numbers, flags)."""
        if isinstance(current, torch.nn.Module):
            load_module_state(current, saved, self.load_hint)
        elif hasattr(current, "load_state_dict"):
            current.load_state_dict(saved)
        elif isinstance(current, np.random.Generator):
            current.bit_generator.state = saved
        elif isinstance(current, torch.Generator):
            current.set_state(saved.cpu())
        elif isinstance(current, np.ndarray):
            src = saved.cpu().numpy() if isinstance(saved, torch.Tensor) else np.asarray(saved)
            if src.shape != current.shape or src.dtype != current.dtype:
                raise RlmError(f"{self.checkpoint_name} in checkpoint has {key} {src.shape} {src.dtype}, this run "
                               f"expects {current.shape} {current.dtype} (different {self.load_hint}?)")
            current[...] = src
        else:
            return type(current)(saved)
        return current
