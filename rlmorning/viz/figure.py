"""Matplotlib figures of grouped runs, shared by the learning-curve and k-step plots: a new figure with each
group's colour, and the PNG written with the plotted numbers as JSON beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def grouped_figure(groups: dict[str, list[T]],
                   figsize: tuple[float, float]) -> tuple[Any, Any, list[tuple[Any, list[T]]]]:
    """A new figure and axes (Agg backend, 100 dpi) and each group's members with its colour (tab10, in order)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, dpi=100)
    colors = plt.get_cmap("tab10")
    return fig, ax, [(colors(gi % 10), members) for gi, members in enumerate(groups.values())]


def save_figure(fig: Any, png: Path, numbers: dict[str, Any]) -> dict[str, Path]:
    """Write ``fig`` to ``png`` (tight layout; the figure is closed) and ``numbers`` to the ``.json`` beside it;
    returns ``{"png", "json"}``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    js = png.with_suffix(".json")
    js.write_text(json.dumps(numbers, indent=1))
    return {"png": png, "json": js}
