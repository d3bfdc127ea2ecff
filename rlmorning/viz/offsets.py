"""Learned sampling locations of a deformable encoder, drawn on real frames (Dai et al. 2017, Figs. 5-6).

For a unit (an output position) of the last deformable layer, its k x k sampling points are its regular
grid plus the learned offsets. Each point is a fractional position in the layer's input map; through
every earlier deformable layer it expands into that layer's k x k deformed samples (offsets bilinearly
interpolated at fractional positions), and through plain conv layers it maps to the centre of the
receptive field (``y_in = stride * y - padding + (k - 1) / 2``). At the first layer's input the
positions are frame pixels (pixel centres at integer coordinates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmorning.agents.capabilities import HasEncoder
from rlmorning.errors import RlmError
from rlmorning.viz.media import png_out


def _interp(field: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``field [C, H, W]`` at points ``y, x [M]`` (clamped to the map) -> ``[C, M]``."""
    _, h, w = field.shape
    y = np.clip(y, 0, h - 1)
    x = np.clip(x, 0, w - 1)
    y0 = np.floor(y).astype(int)
    x0 = np.floor(x).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy, wx = y - y0, x - x0
    return (field[:, y0, x0] * (1 - wy) * (1 - wx) + field[:, y0, x1] * (1 - wy) * wx
            + field[:, y1, x0] * wy * (1 - wx) + field[:, y1, x1] * wy * wx)


def _through_layer(points: np.ndarray, layer: Any, index: int, expand: bool, deformed: bool) -> np.ndarray:
    """Map points ``[M, 2]`` (y, x) in a layer's output to its input: all k*k samples (``expand``) or their
    mean; with ``deformed`` False (or a plain layer) the offsets are taken as zero."""
    k, s, p = layer.kernel, layer.stride, layer.padding
    grid = np.stack(np.meshgrid(np.arange(k), np.arange(k), indexing="ij"), -1).reshape(-1, 2).astype(float)
    base = points[:, None, :] * s - p + grid[None, :, :]  # [M, k*k, 2]
    if layer.offset is not None and deformed:
        field = layer.offset[index].float().cpu().numpy()  # [2*k*k, Ho, Wo]: dy, dx per kernel position
        off = _interp(field, points[:, 0], points[:, 1])  # [2*k*k, M]
        base = base + off.T.reshape(-1, k * k, 2)
    if expand and layer.offset is not None:
        return base.reshape(-1, 2)
    return base.mean(axis=1)


def sampling_locations(trace: list[Any], unit: tuple[int, int], index: int = 0) -> dict[str, np.ndarray]:
    """Frame-pixel positions ``[M, 2]`` (y, x) for ``unit`` (row, col) of the last deformable layer.

    ``trace`` is :meth:`DeformableEncoder.trace`'s output and ``index`` the observation in its batch.
    Returns ``unit`` (the unit's receptive-field centre), ``top`` (its own k x k samples), ``all`` (samples
    expanded through every deformable layer) and ``regular`` (the k x k grid with zero offsets).
    """
    last = max(i for i, t in enumerate(trace) if t.offset is not None)
    start = np.array([unit], dtype=float)

    def down(level_points: np.ndarray, expand_top: bool, expand_below: bool, deformed: bool) -> np.ndarray:
        pts = level_points
        for i in range(last, -1, -1):
            expand = expand_top if i == last else expand_below
            pts = _through_layer(pts, trace[i], index, expand, deformed)
        return pts

    return {
        "unit": down(start, False, False, False),
        "top": down(start, True, False, True),
        "all": down(start, True, True, True),
        "regular": down(start, True, False, False),
    }


def _frame_image(obs: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """What to show for one observation ``[C, H, W]``: the newest frame of a stack, or (small multi-channel
    frames such as MinAtar's object planes) a map of the highest active channel."""
    c, h, w = obs.shape
    if min(h, w) >= 36 or c == 1:
        return obs[-1], {"cmap": "gray", "vmin": 0, "vmax": 255 if obs.max() > 1 else 1}
    planes = (obs > 0) * np.arange(1, c + 1)[:, None, None]
    return planes.max(axis=0), {"cmap": "tab20", "vmin": 0, "vmax": max(c, 1)}


def _states(run: Path, cfg: Any, count: int) -> np.ndarray:
    """Held-out states of the run (``heldout_states.npz``), else fresh random-policy states."""
    from rlmorning import envs as envs_mod
    from rlmorning.evaluation import gather_heldout_states, load_states

    path = run / "heldout_states.npz"
    if path.is_file():
        states = load_states(path)
    else:
        t = cfg.trainer
        env = envs_mod.make_vector(envs_mod.resolve(cfg.env), 1, t.seed + 54_321, **dict(t.env_kwargs))
        try:
            states = gather_heldout_states(env, max(count * 10, 10), t.seed + 54_321)
        finally:
            env.close()
    if len(states) == 0:
        raise RlmError(f"'{path}' holds no states")
    pick = np.unique(np.linspace(0, len(states) - 1, min(count, len(states))).round().astype(int))
    return states[pick]


def plot_offsets(run_dir: str | Path, checkpoint: str = "best", out: str | Path | None = None, units: int = 3,
                 frames: int = 3) -> Path:
    """Draw the sampling locations of the ``units`` most active units of the last deformable layer on
    ``frames`` held-out frames of a ``deformable`` run; returns the PNG path (default
    ``RUN/plots/offsets-<checkpoint>.png``)."""
    from matplotlib.figure import Figure

    from rlmorning.agents.nets.deformable import DeformableEncoder
    from rlmorning.api import load_policy
    from rlmorning.run import find_checkpoint, read_config

    run = Path(run_dir)
    path = png_out(Path(out)) if out is not None else None  # before the drawing
    flat = read_config(run)
    name = flat.get("encoder", "auto")
    if name != "deformable":
        raise RlmError(f"run '{run}' uses encoder '{name}'; plot-offsets needs a run trained with "
                       "--set encoder=deformable")
    where = find_checkpoint(run, checkpoint).stem
    agent, cfg = load_policy(run, checkpoint)
    encoder = agent.encoder if isinstance(agent, HasEncoder) else None
    if not isinstance(encoder, DeformableEncoder) or not encoder.deformable_layers:
        raise RlmError(f"run '{run}' has no deformable conv layers to plot")
    encoder.eval()
    states = _states(run, cfg, frames)
    trace = encoder.trace(torch.as_tensor(states))
    last = max(i for i, t in enumerate(trace) if t.offset is not None)
    act = trace[last].activation.norm(dim=1).cpu().numpy()  # [N, Ho, Wo]
    n_units = min(units, act.shape[1] * act.shape[2])

    rows, cols = len(states), n_units
    fig = Figure(figsize=(3.2 * cols, 3.6 * rows + 0.6), dpi=100)
    deformable = ", ".join(str(i + 1) for i in encoder.deformable_layers)
    fig.suptitle(f"{run.name} ({where}): sampling locations of conv {last + 1} units "
                 f"(deformable convs: {deformable})", fontsize=9)
    for r, obs in enumerate(states):
        order = np.argsort(-act[r].ravel(), kind="stable")[:n_units]
        image, style = _frame_image(np.asarray(obs))
        for c, flat_index in enumerate(order):
            unit = divmod(int(flat_index), act.shape[2])
            pts = sampling_locations(trace, unit, index=r)
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.imshow(image, interpolation="nearest", **style)
            ax.scatter(pts["all"][:, 1], pts["all"][:, 0], s=4, c="red", alpha=0.7, linewidths=0,
                       label="samples (all deformable layers)")
            ax.scatter(pts["regular"][:, 1], pts["regular"][:, 0], s=14, c="deepskyblue", marker="x",
                       linewidths=0.8, label="regular grid")
            ax.scatter(pts["top"][:, 1], pts["top"][:, 0], s=16, c="yellow", edgecolors="black", linewidths=0.4,
                       label=f"conv {last + 1} samples")
            ax.scatter(pts["unit"][:, 1], pts["unit"][:, 0], s=36, c="lime", edgecolors="black", linewidths=0.6,
                       label="unit")
            h, w = image.shape
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"state {r}, unit (row {unit[0]}, col {unit[1]})", fontsize=8)
            if r == 0 and c == 0:
                fig.legend(loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    if path is None:
        path = png_out(run / "plots" / f"offsets-{where}.png")
    try:
        fig.savefig(path)
    except OSError as exc:
        raise RlmError(f"cannot write '{path}': {exc.strerror or exc}") from None
    return path
