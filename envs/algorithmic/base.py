"""Base classes of the algorithmic environments (a Gymnasium port of gym 0.19).

Every algorithmic environment has

- an input tape (1-d) or input grid (2-d) of symbols ``0 .. base-1``, and
- a target string, a deterministic function of the input.

The agent moves a read head over the input and observes only the symbol under
it (``base`` stands for the blank seen off the tape).  An action is a triple
``(move, write, symbol)``: where to move the read head (left/right, plus up/down
on a grid), whether to write to the output tape, and which symbol to write
(ignored when ``write`` is 0).  The write happens *before* the read head moves.

Rewards, as in gym 0.19: a correct write earns ``+1``; a wrong write ``-0.5`` and
ends the episode; writing the last target symbol ends the episode; a step past
the time limit (``len(input) + len(target) + 4`` unless a task says otherwise)
earns ``-1`` (replacing that step's reward) and ends the episode.  Every other
step earns ``0``.  Episode ends are reported as ``terminated=True`` (gym's
``done``); these environments never truncate.

Curriculum, as in gym 0.19: an input has ``min_length + {0, 1, 2}`` symbols.
At each ``reset`` after the first, the finished episode's *shortfall*
(total reward minus ``len(target)``, its maximal reward) is appended to a window
of the last ``PROMOTION_WINDOW`` shortfalls; once the window is full and its
worst entry is ``>= MIN_REWARD_SHORTFALL_FOR_PROMOTION``, ``min_length`` grows by
one (up to ``MAX_MIN_LENGTH``) and the window is emptied.  Any episode ended by
``reset`` counts, finished or not, as in gym.  The curriculum state
(``min_length``, ``reward_shortfalls``) belongs to each instance, so two
environments in one process never promote each other (the original 2016 gym code
kept it on the class, shared by all instances; gym 0.19 already had it per
instance).  Gym 0.19 called ``reset`` in its constructor, so the user's first
``reset`` recorded a spurious, unplayed episode; Gymnasium environments are not
reset on construction, so here the first ``reset`` records nothing.

Seeding goes through Gymnasium's ``self.np_random`` (a ``numpy.random.Generator``);
``reset(seed=s)`` is reproducible but draws other inputs than gym's ``RandomState``.
"""

from __future__ import annotations

import abc
import operator
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import colorize

Action = tuple[int, int, int]
"""An action: ``(move, write, symbol)``."""

InputT = TypeVar("InputT")
PosT = TypeVar("PosT")

_LABEL_WIDTH = 22  # width of the "Observation Tape    : " style labels


def _as_int(value: Any, what: str) -> int:
    """Return ``value`` as a python int, rejecting bools and non-integers."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None


def _frozen(value: Any) -> Any:
    """Lists (as a checkpoint may return tuples) back to the nested int tuples the envs keep."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


class AlgorithmicEnv(gym.Env[int, Action], Generic[InputT, PosT], abc.ABC):
    """Common logic of the tape and grid algorithmic environments.

    Subclasses define ``MOVEMENTS``, ``READ_HEAD_START`` and the input-related
    hooks.  ``reset`` accepts ``options={"input": ...}`` to fix the input (a list
    of symbols for a tape; a list of columns, each ``rows`` symbols, for a grid)
    and ``options={"min_length": k}`` to set the curriculum level (which also
    empties the promotion window).  The curriculum state (``min_length`` and
    ``reward_shortfalls``) is per instance, never shared between instances.
    ``checkpoint_state``/``restore_checkpoint_state`` save and restore the episode
    and curriculum state (rlmorning's checkpoints add the RNG).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    MOVEMENTS: ClassVar[tuple[str, ...]]
    READ_HEAD_START: ClassVar[Any]
    #: Number of past episodes looked at for promotion (gym's ``last``).
    PROMOTION_WINDOW: ClassVar[int] = 10
    #: Promote only if the worst episode of the window fell short of its
    #: maximal reward by no more than this (a non-positive number).
    MIN_REWARD_SHORTFALL_FOR_PROMOTION: ClassVar[float] = -1.0
    #: ``min_length`` is never promoted beyond this.
    MAX_MIN_LENGTH: ClassVar[int] = 30

    def __init__(
        self,
        base: int = 10,
        chars: bool = False,
        starting_min_length: int = 2,
        render_mode: str | None = None,
    ) -> None:
        """Create the environment.

        Args:
            base: number of distinct symbols.
            chars: render symbols as ``A, B, ...`` instead of digits (rendering only).
            starting_min_length: initial minimal input length.
            render_mode: ``None`` or ``"ansi"``.
        """
        if base < 1:
            raise ValueError(f"base must be >= 1, got {base}")
        if starting_min_length < 1:
            raise ValueError(f"starting_min_length must be >= 1, got {starting_min_length}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"unsupported render_mode {render_mode!r}; use one of {self.metadata['render_modes']}"
            )
        self.base = base
        self.chars = chars
        self.render_mode = render_mode
        symbols = [chr(ord("A") + i) for i in range(base)] if chars else [str(i) for i in range(base)]
        self.charmap: tuple[str, ...] = (*symbols, " ")
        self.min_length = starting_min_length
        self.reward_shortfalls: list[float] = []

        self.action_space = spaces.Tuple(
            (spaces.Discrete(len(self.MOVEMENTS)), spaces.Discrete(2), spaces.Discrete(base))
        )
        self.observation_space = spaces.Discrete(base + 1)

        # Episode state; ``episode_total_reward is None`` means "never reset".
        self.input_data: InputT = self._empty_input()
        self.target: tuple[int, ...] = ()
        self.read_head_position: PosT = self.READ_HEAD_START
        self.write_head_position = 0
        self.time = 0
        self.episode_total_reward: float | None = None
        self.last_action: Action | None = None
        self.last_reward = 0.0

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def _empty_input(self) -> InputT:
        """Input used before the first reset."""

    @abc.abstractmethod
    def generate_input_data(self, size: int) -> InputT:
        """Draw a random input of (about) ``size`` symbols/columns from ``self.np_random``."""

    @abc.abstractmethod
    def validate_input_data(self, data: Any) -> InputT:
        """Check a user-given input (``reset`` option ``"input"``) and normalise it."""

    @abc.abstractmethod
    def target_from_input_data(self, input_data: InputT) -> list[int]:
        """Return the target string of ``input_data``."""

    @abc.abstractmethod
    def _get_obs(self, pos: PosT | None = None) -> int:
        """Symbol at ``pos`` (default: the read head), or ``base`` off the input."""

    @abc.abstractmethod
    def _move(self, movement: int) -> None:
        """Move the read head by the movement of index ``movement``."""

    @abc.abstractmethod
    def render_observation(self) -> str:
        """Draw the input tape/grid with the read head highlighted (ends with a newline)."""

    # ------------------------------------------------------------- properties
    @property
    def input_width(self) -> int:
        """Number of symbols on the tape (columns of the grid)."""
        return len(self.input_data)  # type: ignore[arg-type]

    @property
    def time_limit(self) -> int:
        """The episode ends with reward -1 on the first step whose index exceeds this."""
        return self.input_width + len(self.target) + 4

    @classmethod
    def movement_index(cls, name: str) -> int:
        """Index of the movement called ``name`` (e.g. ``"left"``) in the action's first part."""
        return cls.MOVEMENTS.index(name)

    # -------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Start an episode; see the class docstring for ``options``."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"input", "min_length"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'input' and/or 'min_length'")

        self._check_levelup()
        if "min_length" in options:
            min_length = _as_int(options["min_length"], "min_length")
            if min_length < 1:
                raise ValueError(f"min_length must be >= 1, got {min_length}")
            self.min_length = min_length
            self.reward_shortfalls = []

        if "input" in options:
            self.input_data = self.validate_input_data(options["input"])
        else:
            length = int(self.np_random.integers(3)) + self.min_length
            self.input_data = self.generate_input_data(length)
        self.target = tuple(self.target_from_input_data(self.input_data))

        self.last_action = None
        self.last_reward = 0.0
        self.read_head_position = self.READ_HEAD_START
        self.write_head_position = 0
        self.episode_total_reward = 0.0
        self.time = 0
        return self._get_obs(), self._info()

    def step(self, action: Action) -> tuple[int, float, bool, bool, dict[str, Any]]:
        """Write (maybe), then move the read head; see the module docstring for rewards."""
        if self.episode_total_reward is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        move, write, symbol = (int(a) for a in action)
        self.last_action = (move, write, symbol)
        self.time += 1
        reward = 0.0
        terminated = False
        if write == 1:
            if self.write_head_position >= len(self.target):
                gym.logger.warn(
                    "step() called after the episode ended (the whole target was written); "
                    "the write counts as wrong. Call reset() after terminated=True."
                )
                correct = False
            else:
                correct = symbol == self.target[self.write_head_position]
            if correct:
                reward = 1.0
            else:
                reward = -0.5
                terminated = True
            self.write_head_position += 1
            if self.write_head_position >= len(self.target):
                terminated = True
        self._move(move)
        if self.time > self.time_limit:
            reward = -1.0
            terminated = True
        self.last_reward = reward
        self.episode_total_reward += reward
        return self._get_obs(), reward, terminated, False, self._info()

    def render(self) -> str | None:  # type: ignore[override]
        """Return the ansi drawing of input, output tape and targets; ``None`` without a render mode."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; create the env with render_mode='ansi'.")
            return None
        return self._render_ansi()

    # ------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict[str, Any]:
        """The episode and curriculum state as plain data (see ``rlmorning/envs/state.py``; not the RNG)."""
        return {
            "input": self.input_data,
            "target": self.target,
            "read_head": self.read_head_position,
            "write_head": self.write_head_position,
            "time": self.time,
            "episode_total_reward": self.episode_total_reward,
            "last_action": self.last_action,
            "last_reward": self.last_reward,
            "min_length": self.min_length,
            "reward_shortfalls": list(self.reward_shortfalls),
        }

    def restore_checkpoint_state(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`checkpoint_state` returned."""
        self.input_data = _frozen(data["input"])
        self.target = _frozen(data["target"])
        self.read_head_position = _frozen(data["read_head"])
        self.write_head_position = int(data["write_head"])
        self.time = int(data["time"])
        total = data["episode_total_reward"]
        self.episode_total_reward = None if total is None else float(total)
        self.last_action = _frozen(data["last_action"])
        self.last_reward = float(data["last_reward"])
        self.min_length = int(data["min_length"])
        self.reward_shortfalls = [float(x) for x in data["reward_shortfalls"]]

    # ------------------------------------------------------------ internals
    def _info(self) -> dict[str, Any]:
        return {"target": self.target, "min_length": self.min_length}

    def _check_levelup(self) -> None:
        """Record the episode that just ended and promote ``min_length`` if earned (gym's bookkeeping)."""
        if self.episode_total_reward is None:  # first reset: no episode to record
            return
        self.reward_shortfalls.append(self.episode_total_reward - len(self.target))
        self.reward_shortfalls = self.reward_shortfalls[-self.PROMOTION_WINDOW :]
        if (
            len(self.reward_shortfalls) == self.PROMOTION_WINDOW
            and min(self.reward_shortfalls) >= self.MIN_REWARD_SHORTFALL_FOR_PROMOTION
            and self.min_length < self.MAX_MIN_LENGTH
        ):
            self.min_length += 1
            self.reward_shortfalls = []

    def _str_obs(self, pos: PosT) -> str:
        return self.charmap[self._get_obs(pos)]

    def _str_target(self, index: int) -> str:
        if 0 <= index < len(self.target):
            return self.charmap[self.target[index]]
        return " "

    def _render_ansi(self) -> str:
        header = f"Total length of input instance: {self.input_width}, step: {self.time}"
        lines = [header, "=" * len(header)]
        lines.extend(self.render_observation().rstrip("\n").split("\n"))

        written = self.write_head_position
        output = "Output Tape".ljust(_LABEL_WIDTH - 2) + ": "
        targets = "Targets".ljust(_LABEL_WIDTH - 2) + ": "
        action = self.last_action
        for i in range(-2, len(self.target) + 2):
            targets += self._str_target(i)
            if i < written - 1:
                output += self._str_target(i)
            elif i == written - 1:
                if action is not None and action[1] == 1:
                    # The symbol just written: green if right, red if wrong.
                    correct = i < len(self.target) and action[2] == self.target[i]
                    output += colorize(self.charmap[action[2]], "green" if correct else "red", highlight=True)
                else:
                    output += self._str_target(i)
        lines += [output, targets, ""]

        if action is not None:
            move, write, symbol = action
            pad = " " * 30
            lines += [
                f"Current reward      :   {self.last_reward:.3f}",
                f"Cumulative reward   :   {self.episode_total_reward or 0.0:.3f}",
                f"Action              :   Tuple(move over input: {self.MOVEMENTS[move]},",
                f"{pad}write to the output tape: {write == 1},",
                f"{pad}prediction: {self.charmap[symbol]})",
            ]
        else:
            lines += [""] * 4
        return "\n".join(lines) + "\n"


class TapeAlgorithmicEnv(AlgorithmicEnv[tuple[int, ...], int]):
    """An algorithmic environment whose input is a 1-d tape; moves are left/right."""

    MOVEMENTS: ClassVar[tuple[str, ...]] = ("left", "right")
    READ_HEAD_START: ClassVar[int] = 0

    def _empty_input(self) -> tuple[int, ...]:
        return ()

    def generate_input_data(self, size: int) -> tuple[int, ...]:
        """``size`` uniform symbols."""
        return tuple(int(s) for s in self.np_random.integers(self.base, size=size))

    def validate_input_data(self, data: Any) -> tuple[int, ...]:
        """A non-empty sequence of symbols in ``[0, base)``."""
        if isinstance(data, str | bytes) or not isinstance(data, Sequence | np.ndarray):
            raise TypeError(f"input must be a sequence of symbols, got {data!r}")
        tape = tuple(_as_int(s, "input symbol") for s in data)
        if not tape:
            raise ValueError("input must not be empty")
        if any(not 0 <= s < self.base for s in tape):
            raise ValueError(f"input symbols must lie in [0, {self.base}), got {list(tape)}")
        return tape

    def _get_obs(self, pos: int | None = None) -> int:
        if pos is None:
            pos = self.read_head_position
        if 0 <= pos < len(self.input_data):
            return self.input_data[pos]
        return self.base

    def _move(self, movement: int) -> None:
        self.read_head_position += 1 if self.MOVEMENTS[movement] == "right" else -1

    def render_observation(self) -> str:
        """The tape from two cells before to two cells after the input."""
        row = "Observation Tape".ljust(_LABEL_WIDTH - 2) + ": "
        for i in range(-2, self.input_width + 2):
            cell = self._str_obs(i)
            row += colorize(cell, "green", highlight=True) if i == self.read_head_position else cell
        return row + "\n"


class GridAlgorithmicEnv(AlgorithmicEnv[tuple[tuple[int, ...], ...], tuple[int, int]]):
    """An algorithmic environment whose input is a 2-d grid; moves are left/right/up/down.

    The grid is stored as a tuple of *columns* (``input_data[x][y]``), each of
    ``rows`` symbols; "up" decreases the row index ``y``, "down" increases it.
    """

    MOVEMENTS: ClassVar[tuple[str, ...]] = ("left", "right", "up", "down")
    READ_HEAD_START: ClassVar[tuple[int, int]] = (0, 0)

    _STEPS: ClassVar[dict[str, tuple[int, int]]] = {
        "left": (-1, 0),
        "right": (1, 0),
        "up": (0, -1),
        "down": (0, 1),
    }

    def __init__(
        self,
        rows: int,
        base: int = 10,
        chars: bool = False,
        starting_min_length: int = 2,
        render_mode: str | None = None,
    ) -> None:
        """Create a grid environment with ``rows`` rows (see :class:`AlgorithmicEnv` for the rest)."""
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        self.rows = rows
        super().__init__(
            base=base, chars=chars, starting_min_length=starting_min_length, render_mode=render_mode
        )

    def _empty_input(self) -> tuple[tuple[int, ...], ...]:
        return ()

    def generate_input_data(self, size: int) -> tuple[tuple[int, ...], ...]:
        """``size`` columns of ``rows`` uniform symbols."""
        grid = self.np_random.integers(self.base, size=(size, self.rows))
        return tuple(tuple(int(s) for s in column) for column in grid)

    def validate_input_data(self, data: Any) -> tuple[tuple[int, ...], ...]:
        """A non-empty sequence of columns, each ``rows`` symbols in ``[0, base)``."""
        if isinstance(data, str | bytes) or not isinstance(data, Sequence | np.ndarray):
            raise TypeError(f"input must be a sequence of columns, got {data!r}")
        columns = []
        for column in data:
            if isinstance(column, str | bytes) or not isinstance(column, Sequence | np.ndarray):
                raise TypeError(
                    f"each input column must be a sequence of {self.rows} symbols, got {column!r}"
                )
            col = tuple(_as_int(s, "input symbol") for s in column)
            if len(col) != self.rows:
                raise ValueError(f"each input column must have {self.rows} symbols, got {list(col)}")
            if any(not 0 <= s < self.base for s in col):
                raise ValueError(f"input symbols must lie in [0, {self.base}), got {list(col)}")
            columns.append(col)
        if not columns:
            raise ValueError("input must not be empty")
        return tuple(columns)

    def _get_obs(self, pos: tuple[int, int] | None = None) -> int:
        x, y = self.read_head_position if pos is None else pos
        if 0 <= x < len(self.input_data) and 0 <= y < self.rows:
            return self.input_data[x][y]
        return self.base

    def _move(self, movement: int) -> None:
        dx, dy = self._STEPS[self.MOVEMENTS[movement]]
        x, y = self.read_head_position
        self.read_head_position = (x + dx, y + dy)

    def render_observation(self) -> str:
        """The grid with one blank border row above and below, two blank columns each side."""
        lines = []
        for j in range(-1, self.rows + 1):
            label = "Observation Grid".ljust(_LABEL_WIDTH - 2) + ": " if j == -1 else " " * _LABEL_WIDTH
            row = label
            for i in range(-2, self.input_width + 2):
                cell = self._str_obs((i, j))
                row += colorize(cell, "green", highlight=True) if (i, j) == self.read_head_position else cell
            lines.append(row)
        return "\n".join(lines) + "\n"
