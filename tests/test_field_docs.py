"""Config keys' one-line docs, read from the attribute docstrings under dataclass fields."""

from __future__ import annotations

from dataclasses import dataclass

from rlmorning.field_docs import field_docs


@dataclass
class _Base:
    a: int = 1
    """First line of a.

    More about a."""
    b: int = 2
    c: str = "x"
    """c in the base."""


@dataclass
class _Child(_Base):
    c: str = "y"
    """c in the child
    spans two lines."""


def test_docs_are_first_paragraphs_and_subclasses_win() -> None:
    assert field_docs(_Base) == {"a": "First line of a.", "c": "c in the base."}
    assert field_docs(_Child) == {"a": "First line of a.", "c": "c in the child spans two lines."}
