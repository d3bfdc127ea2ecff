"""The six algorithmic tasks of gym 0.19 (Zaremba et al., https://arxiv.org/abs/1511.07275)."""

from __future__ import annotations

from typing import ClassVar

from .base import GridAlgorithmicEnv, TapeAlgorithmicEnv


class CopyEnv(TapeAlgorithmicEnv):
    """Copy the input tape to the output tape (default base 5)."""

    def __init__(self, base: int = 5, chars: bool = True, render_mode: str | None = None) -> None:
        """Create the task; ``chars`` only affects rendering."""
        super().__init__(base=base, chars=chars, render_mode=render_mode)

    def target_from_input_data(self, input_data: tuple[int, ...]) -> list[int]:
        """The input itself."""
        return list(input_data)


class DuplicatedInputEnv(TapeAlgorithmicEnv):
    """Each symbol appears ``duplication`` times in a row on the tape; write each symbol once."""

    def __init__(self, duplication: int = 2, base: int = 5, render_mode: str | None = None) -> None:
        """Create the task with runs of ``duplication`` equal symbols."""
        if duplication < 1:
            raise ValueError(f"duplication must be >= 1, got {duplication}")
        self.duplication = duplication
        super().__init__(base=base, chars=True, render_mode=render_mode)

    def generate_input_data(self, size: int) -> tuple[int, ...]:
        """``max(size, duplication) // duplication`` random symbols, each repeated ``duplication`` times.

        As in gym, the length is rounded down to a multiple of ``duplication``
        (but is at least ``duplication``).
        """
        size = max(size, self.duplication)
        symbols = self.np_random.integers(self.base, size=size // self.duplication)
        return tuple(int(s) for s in symbols for _ in range(self.duplication))

    def target_from_input_data(self, input_data: tuple[int, ...]) -> list[int]:
        """Every ``duplication``-th symbol, starting with the first."""
        return list(input_data[:: self.duplication])


class RepeatCopyEnv(TapeAlgorithmicEnv):
    """Write the input, then its reverse, then the input again (default base 5).

    Promotion needs 50 perfect episodes in a row (gym's ``last = 50`` and shortfall 0.1).
    """

    PROMOTION_WINDOW: ClassVar[int] = 50
    MIN_REWARD_SHORTFALL_FOR_PROMOTION: ClassVar[float] = -0.1

    def __init__(self, base: int = 5, render_mode: str | None = None) -> None:
        """Create the task."""
        super().__init__(base=base, chars=True, render_mode=render_mode)

    def target_from_input_data(self, input_data: tuple[int, ...]) -> list[int]:
        """``x + reversed(x) + x``."""
        forward = list(input_data)
        return forward + forward[::-1] + forward


class ReverseEnv(TapeAlgorithmicEnv):
    """Write the input reversed (default base 2, starting minimal length 1).

    Promotion needs 50 perfect episodes in a row (gym's ``last = 50`` and shortfall 0.1).
    """

    PROMOTION_WINDOW: ClassVar[int] = 50
    MIN_REWARD_SHORTFALL_FOR_PROMOTION: ClassVar[float] = -0.1

    def __init__(self, base: int = 2, render_mode: str | None = None) -> None:
        """Create the task."""
        super().__init__(base=base, chars=True, starting_min_length=1, render_mode=render_mode)

    def target_from_input_data(self, input_data: tuple[int, ...]) -> list[int]:
        """The input reversed."""
        return list(reversed(input_data))


class ReversedAdditionEnv(GridAlgorithmicEnv):
    """Add the ``rows`` numbers written on the grid (default 2 rows, base 3).

    Each column holds one digit of every number, least-significant column first;
    the target is the sum's digits, least-significant first, with the final
    carry appended when non-zero.
    """

    def __init__(self, rows: int = 2, base: int = 3, render_mode: str | None = None) -> None:
        """Create the task with ``rows`` summands in base ``base``."""
        super().__init__(rows=rows, base=base, chars=False, render_mode=render_mode)

    def target_from_input_data(self, input_data: tuple[tuple[int, ...], ...]) -> list[int]:
        """Column-wise addition with carry, least-significant digit first."""
        carry = 0
        digits = []
        for column in input_data:
            carry, digit = divmod(sum(column) + carry, self.base)
            digits.append(digit)
        # gym appended the final carry as one symbol; it is < base whenever
        # rows <= base (always true for the registered tasks).  Larger carries
        # are written out digit by digit so that every target symbol is writable.
        while carry > 0:
            carry, digit = divmod(carry, self.base)
            digits.append(digit)
        return digits

    @property
    def time_limit(self) -> int:
        """``2 * input_width + 4``: gym's quirk, independent of the (maybe longer) target."""
        return 2 * self.input_width + 4


class ReversedAddition3Env(ReversedAdditionEnv):
    """:class:`ReversedAdditionEnv` with three summands (gym's ``ReversedAddition3-v0``)."""

    def __init__(self, rows: int = 3, base: int = 3, render_mode: str | None = None) -> None:
        """Create the task (three rows by default)."""
        super().__init__(rows=rows, base=base, render_mode=render_mode)
