"""``rlmorning plot RUN... --metric kstep_error``: a world model's open-loop error against the horizon.

World-model runs (``train worldmodel`` and Dyna-DQN) log ``kstep_err_K`` and ``copy_err_K`` for K = 1..H
at every k-step check. This plot takes each run's last check, draws the per-cell error of the model's
k-step prediction against k (seeds of one setting as mean ± std) and, dashed, the copy-last-frame
baseline of the same windows. The plotted numbers are saved as JSON next to the PNG.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlmorning.errors import RlmError
from rlmorning.viz.figure import grouped_figure, save_figure

if TYPE_CHECKING:
    from rlmorning.viz.curves import RunData

KSTEP = re.compile(r"^kstep_err_(\d+)$")


def last_kstep(run: RunData) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """``(step, ks, model error, copy error)`` of the run's last row with k-step errors."""
    for row in reversed(run.rows):
        ks = sorted(int(m.group(1)) for k, v in row.items() if k and v not in (None, "") and (m := KSTEP.match(k)))
        if ks:
            model = np.array([float(row[f"kstep_err_{k}"]) for k in ks])
            copy = np.array([float(row.get(f"copy_err_{k}") or "nan") for k in ks])
            return int(float(row["step"])), np.array(ks), model, copy
    raise RlmError(no_kstep_message(f"run '{run.path}'"))


def no_kstep_message(where: str) -> str:
    """Why a run has no k-step errors to plot, and what logs them."""
    return (f"{where} logged no k-step errors (kstep_err_K) yet: they come from world-model training (train "
            "worldmodel, or dqn with a model: section, e.g. --config dyna_minatar) every kstep_every model updates "
            "(not env steps; 0: never)")


def plot_kstep_error(groups: dict[str, list[RunData]], differing: list[str], png: Path,
                     group_label: Callable[[dict, list[str]], str]) -> dict[str, Path]:
    """Draw the k-step error plot of grouped runs to ``png`` (+ ``.json``); ``group_label(config, differing)``
    names a group (the curves plot's labels)."""
    fig, ax, colored = grouped_figure(groups, (8, 5))
    out_groups = []
    for color, members in colored:
        label = group_label(members[0].config, differing)
        per_run = [last_kstep(m) for m in members]
        horizon = min(len(r[1]) for r in per_run)
        ks = per_run[0][1][:horizon]
        model = np.stack([r[2][:horizon] for r in per_run])
        copy = np.stack([r[3][:horizon] for r in per_run])
        steps = [r[0] for r in per_run]
        seeds = [m.seed for m in members]
        suffix = f", seed {seeds[0]}" if len(members) == 1 else f", {len(members)} seeds: mean ± std"
        ax.plot(ks, model.mean(0), color=color, marker="o", ms=4, lw=1.8, label=f"{label} model{suffix}")
        if len(members) > 1:
            ax.fill_between(ks, model.mean(0) - model.std(0), model.mean(0) + model.std(0), color=color,
                            alpha=0.2, lw=0)
        ax.plot(ks, np.nanmean(copy, 0), color=color, ls="--", lw=1.2, label=f"{label} copy-last-frame")
        out_groups.append({"label": label, "runs": [str(m.path) for m in members], "seeds": seeds,
                           "at_step": steps, "k": ks.tolist(), "model_err_mean": model.mean(0).tolist(),
                           "model_err_std": model.std(0).tolist(), "copy_err_mean": np.nanmean(copy, 0).tolist(),
                           "per_run_model_err": model.tolist()})
    ax.set_xlabel("prediction horizon k (open loop, real actions)")
    ax.set_ylabel("per-cell error of frame k")
    ax.set_xticks(ks)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, title="each run's last k-step check", title_fontsize=8)
    return save_figure(fig, png, {"metric": "kstep_error", "groups": out_groups})
