"""The Neural Turing Machine paper's tasks (Graves et al. 2014, https://arxiv.org/abs/1410.5401) as environments.

Each episode is one sequence: an *input phase* (bit vectors plus delimiter channels) followed by an
*output phase* whose inputs are all zero and during which the agent's outputs are scored. At step
``t`` the agent sees input row ``t`` and answers with ``MultiBinary(out_bits)``; on scored steps the
reward is the number of correct bits. ``info`` of every ``step`` describes the answer just scored:

- ``target``: the expected output bits of that step (``int8 [out_bits]``, zeros when nothing is expected),
- ``output_mask``: 1 when the step is scored, else 0,
- ``bit_errors``: wrong bits of that step; ``seq_bit_errors``: wrong bits of the episode so far,
- ``length``: the episode's sequence length (items for associative recall, inputs for priority sort).

``reset`` returns the same keys with zeros. Lengths: ``min_length``/``max_length`` at ``make`` time,
``reset(options={"length": L})`` for one episode (generalisation tests), and task-specific options
(``sequence``, ``repeats``, ``query``, ``priorities``) to fix an episode completely.

Registered as ``rlmorning/NTMCopy-v0``, ``NTMRepeatCopy-v0``, ``NTMAssociativeRecall-v0`` and
``NTMPrioritySort-v0``. ``checkpoint_state``/``restore_checkpoint_state`` let rlmorning's checkpoints save
and restore episodes in flight (see ``rlmorning/envs/state.py``).
"""

from __future__ import annotations

import abc
import operator
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlmorning.gym_ids import NTM_TASK_IDS, register_gym_ids

__all__ = [
    "NTM_TASK_IDS",
    "NTMAssociativeRecallEnv",
    "NTMCopyEnv",
    "NTMEpisode",
    "NTMPrioritySortEnv",
    "NTMRepeatCopyEnv",
    "NTMTaskEnv",
    "register_ntm_tasks",
]


@dataclass(frozen=True)
class NTMEpisode:
    """One sequence: ``inputs float32 [T, in]``, ``targets int8 [T, out]``, ``mask float32 [T]`` (1 = scored)."""

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    length: int

    @classmethod
    def from_phases(cls, inputs: np.ndarray, outputs: np.ndarray, length: int) -> NTMEpisode:
        """Input phase ``[Tin, in]`` then an output phase of ``len(outputs)`` zero-input steps."""
        t_in, t_out = len(inputs), len(outputs)
        full_in = np.zeros((t_in + t_out, inputs.shape[1]), dtype=np.float32)
        full_in[:t_in] = inputs
        targets = np.zeros((t_in + t_out, outputs.shape[1]), dtype=np.int8)
        targets[t_in:] = outputs
        mask = np.zeros(t_in + t_out, dtype=np.float32)
        mask[t_in:] = 1.0
        return cls(full_in, targets, mask, int(length))


def _int(value: Any, what: str, low: int = 1) -> int:
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None
    if out < low:
        raise ValueError(f"{what} must be >= {low}, got {out}")
    return out


def _bits(value: Any, trailing: tuple[int, ...], what: str) -> np.ndarray:
    """A non-empty 0/1 array of shape ``[n, *trailing]`` as float32."""
    arr = np.asarray(value)
    if arr.ndim != 1 + len(trailing) or arr.shape[1:] != trailing or len(arr) == 0 or not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{what} must be a non-empty 0/1 array of shape [n, {', '.join(map(str, trailing))}], "
                         f"got shape {arr.shape}")
    return arr.astype(np.float32)


class NTMTaskEnv(gym.Env[np.ndarray, np.ndarray], abc.ABC):
    """Common logic: episodes are drawn at ``reset``, stepped row by row, outputs scored bitwise."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}
    #: reset options every task accepts, plus the task's own ``OPTIONS``.
    OPTIONS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, bits: int, in_dim: int, out_dim: int, min_length: int, max_length: int,
                 render_mode: str | None, obs_low: np.ndarray | None = None,
                 obs_high: np.ndarray | None = None) -> None:
        self.bits = _int(bits, "bits")
        self.min_length = _int(min_length, "min_length")
        self.max_length = _int(max_length, "max_length")
        if self.max_length < self.min_length:
            raise ValueError(f"max_length ({max_length}) must be >= min_length ({min_length})")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unsupported render_mode {render_mode!r}; use one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.in_dim, self.out_dim = in_dim, out_dim
        low = np.zeros(in_dim, np.float32) if obs_low is None else obs_low.astype(np.float32)
        high = np.ones(in_dim, np.float32) if obs_high is None else obs_high.astype(np.float32)
        self.observation_space = spaces.Box(low, high, (in_dim,), np.float32)
        self.action_space = spaces.MultiBinary(out_dim)
        self.episode: NTMEpisode | None = None
        self.time = 0
        self.seq_bit_errors = 0
        self.outputs = np.zeros((0, out_dim), np.int8)

    # ------------------------------------------------------------------ task hooks
    @abc.abstractmethod
    def _generate(self, length: int, options: dict[str, Any]) -> NTMEpisode:
        """Draw (or build from ``options``) an episode of the given length from ``self.np_random``."""

    def sample_episode(self, length: int | None = None, **options: Any) -> NTMEpisode:
        """A fresh episode without touching the episode in progress (for batched evaluation)."""
        if length is None:
            length = int(self.np_random.integers(self.min_length, self.max_length + 1))
        return self._generate(_int(length, "length"), options)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw an episode; ``options``: ``length`` and the task's own keys (see the class docstring)."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"length", *self.OPTIONS}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected {['length', *self.OPTIONS]}")
        length = options.pop("length", None)
        self.episode = self.sample_episode(length, **options)
        self.time = 0
        self.seq_bit_errors = 0
        self.outputs = np.zeros((len(self.episode.mask), self.out_dim), np.int8)
        return self.episode.inputs[0].copy(), self._info(np.zeros(self.out_dim, np.int8), 0, 0)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score ``action`` against this step's target (if scored), then show the next input row."""
        ep = self.episode
        if ep is None or self.time >= len(ep.mask):
            raise gym.error.ResetNeeded("call reset() before step() (and after an episode ends)")
        a = np.asarray(action)
        if a.shape != (self.out_dim,) or not np.isin(a, (0, 1)).all():
            raise ValueError(f"action must be a 0/1 array of shape ({self.out_dim},), got {action!r}")
        t = self.time
        target = ep.targets[t]
        scored = int(ep.mask[t] > 0)
        correct = int(np.count_nonzero(a.astype(np.int8) == target)) if scored else 0
        errors = self.out_dim - correct if scored else 0
        self.seq_bit_errors += errors
        self.outputs[t] = a
        self.time += 1
        terminated = self.time >= len(ep.mask)
        obs = np.zeros(self.in_dim, np.float32) if terminated else ep.inputs[self.time].copy()
        return obs, float(correct), terminated, False, self._info(target.copy(), scored, errors)

    def _info(self, target: np.ndarray, scored: int, errors: int) -> dict[str, Any]:
        length = self.episode.length if self.episode is not None else 0
        return {"target": target, "output_mask": scored, "bit_errors": errors,
                "seq_bit_errors": self.seq_bit_errors, "length": length}

    # ------------------------------------------------------------------ checkpoint state
    def checkpoint_state(self) -> dict[str, Any] | None:
        """The whole episode state as arrays and ints (None before the first reset; see
        ``rlmorning/envs/state.py``, which saves the RNG besides)."""
        ep = self.episode
        if ep is None:
            return None
        return {"inputs": ep.inputs.copy(), "targets": ep.targets.copy(), "mask": ep.mask.copy(),
                "length": ep.length, "time": self.time, "seq_bit_errors": self.seq_bit_errors,
                "outputs": self.outputs.copy()}

    def restore_checkpoint_state(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`checkpoint_state` returned."""
        self.episode = NTMEpisode(np.array(data["inputs"], np.float32), np.array(data["targets"], np.int8),
                                  np.array(data["mask"], np.float32), int(data["length"]))
        self.outputs = np.array(data["outputs"], np.int8)
        self.time, self.seq_bit_errors = int(data["time"]), int(data["seq_bit_errors"])

    # ------------------------------------------------------------------ rendering
    def render(self) -> str | None:  # type: ignore[override]
        """Inputs, targets and outputs so far as text (rows = channels, columns = time)."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; create the env with render_mode='ansi'.")
            return None
        ep = self.episode
        if ep is None:
            return "(not reset)\n"

        def cell(v: float) -> str:
            return "#" if v >= 0.5 else ("." if v == 0 else ("+" if v > 0 else "-"))

        def rows(label: str, m: np.ndarray, upto: int) -> list[str]:
            out = []
            for c in range(m.shape[1]):
                chars = "".join(cell(float(m[t, c])) if t < upto else " " for t in range(len(m)))
                out.append(f"{label if c == 0 else '':<8}|{chars}|")
            return out

        scored = ep.mask > 0
        marker = "".join("^" if t == self.time else ("o" if scored[t] else " ") for t in range(len(ep.mask)))
        lines = [f"{type(self).__name__} length {ep.length}  step {self.time}/{len(ep.mask)}  "
                 f"bit errors {self.seq_bit_errors}"]
        lines += rows("input", ep.inputs, min(self.time + 1, len(ep.mask)))
        lines += rows("target", np.where(scored[:, None], ep.targets, 0), len(ep.mask))
        lines += rows("output", np.where(scored[:, None], self.outputs, 0), self.time)
        lines.append(f"{'':<8} {marker}")
        return "\n".join(lines) + "\n"

    def _sequence(self, length: int, options: dict[str, Any]) -> np.ndarray:
        """The input vectors ``float32 [L, bits]``: ``options["sequence"]`` when given, else ``length``
        uniformly random ones from the env's RNG."""
        if "sequence" in options:
            return _bits(options["sequence"], (self.bits,), "sequence")
        return self.np_random.integers(0, 2, (length, self.bits)).astype(np.float32)


class NTMCopyEnv(NTMTaskEnv):
    """Copy: ``L`` random ``bits``-bit vectors, then a delimiter on channel ``bits``; write them back.

    Observation ``[bits + 1]``; ``T = 2L + 1`` steps, the last ``L`` scored. Option ``sequence``: a 0/1
    array ``[L, bits]`` fixing the episode.
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("sequence",)

    def __init__(self, bits: int = 8, min_length: int = 1, max_length: int = 20,
                 render_mode: str | None = None) -> None:
        super().__init__(bits, bits + 1, bits, min_length, max_length, render_mode)

    def _generate(self, length: int, options: dict[str, Any]) -> NTMEpisode:
        seq = self._sequence(length, options)
        length = len(seq)
        inputs = np.zeros((length + 1, self.in_dim), np.float32)
        inputs[:length, : self.bits] = seq
        inputs[length, self.bits] = 1.0
        return NTMEpisode.from_phases(inputs, seq.astype(np.int8), length)


class NTMRepeatCopyEnv(NTMTaskEnv):
    """Repeat copy: ``L`` vectors, a delimiter (channel ``bits``), then the number of copies ``R``
    normalised by ``repeats_norm`` (channel ``bits + 1``); write the sequence ``R`` times, then raise
    the end marker (output channel ``bits``). ``R`` may go up to ``max(max_repeats, 100)`` via options.

    Observation ``[bits + 2]``, action ``MultiBinary(bits + 1)``; ``T = (L + 2) + (L R + 1)``. Defaults as
    in the paper: ``L`` and ``R`` uniform in 1..10. Options ``repeats`` and ``sequence`` (``[L, bits]``).
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("repeats", "sequence")

    def __init__(self, bits: int = 8, min_length: int = 1, max_length: int = 10, min_repeats: int = 1,
                 max_repeats: int = 10, repeats_norm: float = 10.0, render_mode: str | None = None) -> None:
        self.min_repeats = _int(min_repeats, "min_repeats")
        self.max_repeats = _int(max_repeats, "max_repeats")
        if self.max_repeats < self.min_repeats:
            raise ValueError(f"max_repeats ({max_repeats}) must be >= min_repeats ({min_repeats})")
        if repeats_norm <= 0:
            raise ValueError(f"repeats_norm must be > 0, got {repeats_norm}")
        self.repeats_norm = float(repeats_norm)
        self.repeats_limit = max(self.max_repeats, 100)  # the largest count ``reset`` options may ask for
        high = np.ones(bits + 2, np.float32)
        high[-1] = self.repeats_limit / self.repeats_norm
        super().__init__(bits, bits + 2, bits + 1, min_length, max_length, render_mode, obs_high=high)

    def _generate(self, length: int, options: dict[str, Any]) -> NTMEpisode:
        if "repeats" in options:
            repeats = _int(options["repeats"], "repeats")
            if repeats > self.repeats_limit:
                raise ValueError(f"repeats must be <= {self.repeats_limit} (raise max_repeats), got {repeats}")
        else:
            repeats = int(self.np_random.integers(self.min_repeats, self.max_repeats + 1))
        seq = self._sequence(length, options)
        length = len(seq)
        inputs = np.zeros((length + 2, self.in_dim), np.float32)
        inputs[:length, : self.bits] = seq
        inputs[length, self.bits] = 1.0
        inputs[length + 1, self.bits + 1] = repeats / self.repeats_norm
        outputs = np.zeros((length * repeats + 1, self.out_dim), np.int8)
        outputs[:-1, : self.bits] = np.tile(seq, (repeats, 1))
        outputs[-1, self.bits] = 1
        return NTMEpisode.from_phases(inputs, outputs, length)


class NTMAssociativeRecallEnv(NTMTaskEnv):
    """Associative recall: ``L`` items of ``item_length`` vectors, each preceded by an item delimiter
    (channel ``bits``); then a query delimiter (channel ``bits + 1``), a copy of one item (not the last)
    and another query delimiter; write the item that followed the queried one.

    Observation ``[bits + 2]``, action ``MultiBinary(bits)``; paper defaults: 6 bits, items of 3
    vectors, 2..6 items. Items are distinct. Options ``query`` (index in ``0..L-2``) and ``sequence``
    (``[L, item_length, bits]``).
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("query", "sequence")

    def __init__(self, bits: int = 6, item_length: int = 3, min_length: int = 2, max_length: int = 6,
                 render_mode: str | None = None) -> None:
        self.item_length = _int(item_length, "item_length")
        if min_length < 2:
            raise ValueError(f"associative recall needs at least 2 items, got min_length={min_length}")
        super().__init__(bits, bits + 2, bits, min_length, max_length, render_mode)

    def _generate(self, length: int, options: dict[str, Any]) -> NTMEpisode:
        k = self.item_length
        if "sequence" in options:
            items = _bits(options["sequence"], (k, self.bits), "sequence")
            length = len(items)
        else:
            if 2 ** (k * self.bits) < length:
                raise ValueError(f"cannot draw {length} distinct items of {k}x{self.bits} bits")
            rows: list[np.ndarray] = []
            seen: set[bytes] = set()
            while len(rows) < length:
                item = self.np_random.integers(0, 2, (k, self.bits)).astype(np.float32)
                if item.tobytes() not in seen:
                    seen.add(item.tobytes())
                    rows.append(item)
            items = np.stack(rows)
        if length < 2:
            raise ValueError(f"associative recall needs at least 2 items, got {length}")
        if "query" in options:
            query = _int(options["query"], "query", low=0)
            if query > length - 2:
                raise ValueError(f"query must lie in 0..{length - 2} (an item with a successor), got {query}")
        else:
            query = int(self.np_random.integers(0, length - 1))
        inputs = np.zeros((length * (k + 1) + k + 2, self.in_dim), np.float32)
        for i, item in enumerate(items):
            inputs[i * (k + 1), self.bits] = 1.0
            inputs[i * (k + 1) + 1 : (i + 1) * (k + 1), : self.bits] = item
        q0 = length * (k + 1)
        inputs[q0, self.bits + 1] = 1.0
        inputs[q0 + 1 : q0 + 1 + k, : self.bits] = items[query]
        inputs[q0 + 1 + k, self.bits + 1] = 1.0
        return NTMEpisode.from_phases(inputs, items[query + 1].astype(np.int8), length)


class NTMPrioritySortEnv(NTMTaskEnv):
    """Priority sort: ``L`` vectors, each with a priority in ``[-1, 1]`` on channel ``bits``; then a
    delimiter (channel ``bits + 1``); write the ``num_outputs`` highest-priority vectors, highest first.

    Observation ``[bits + 2]``, action ``MultiBinary(bits)``; paper defaults: 8 bits, 20 inputs, 16
    outputs (``min(num_outputs, L)`` outputs for other lengths). Options ``sequence`` (``[L, bits]``)
    and ``priorities`` (``[L]``).
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("sequence", "priorities")

    def __init__(self, bits: int = 8, min_length: int = 20, max_length: int = 20, num_outputs: int = 16,
                 render_mode: str | None = None) -> None:
        self.num_outputs = _int(num_outputs, "num_outputs")
        low = np.zeros(bits + 2, np.float32)
        low[bits] = -1.0
        super().__init__(bits, bits + 2, bits, min_length, max_length, render_mode, obs_low=low)

    def _generate(self, length: int, options: dict[str, Any]) -> NTMEpisode:
        seq = self._sequence(length, options)
        length = len(seq)
        if "priorities" in options:
            prio = np.asarray(options["priorities"], np.float32)
            if prio.shape != (length,) or np.abs(prio).max(initial=0) > 1:
                raise ValueError(f"priorities must be {length} numbers in [-1, 1], got {options['priorities']!r}")
        else:
            prio = self.np_random.uniform(-1.0, 1.0, length).astype(np.float32)
        inputs = np.zeros((length + 1, self.in_dim), np.float32)
        inputs[:length, : self.bits] = seq
        inputs[:length, self.bits] = prio
        inputs[length, self.bits + 1] = 1.0
        order = np.argsort(-prio, kind="stable")[: min(self.num_outputs, length)]
        return NTMEpisode.from_phases(inputs, seq[order].astype(np.int8), length)


def register_ntm_tasks() -> None:
    """Register the NTM tasks with Gymnasium (no time limit: episodes have a fixed length), as ``import
    rlmorning`` does from the table in :mod:`rlmorning.gym_ids`; ids already registered are skipped."""
    register_gym_ids(NTM_TASK_IDS)


register_ntm_tasks()
