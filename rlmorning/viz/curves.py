"""``rlmorning plot``: learning curves of any ``metrics.csv`` column against environment steps.

``--metric kstep_error`` (world-model runs) plots error against the prediction horizon instead, see
:mod:`rlmorning.viz.kstep`.

Runs that share env, agent and config and differ only in seed form one group, drawn as the mean over
seeds with a ± std band (values are interpolated onto the first run's steps where the runs overlap).
Atari plots get a second x axis in emulator frames (steps x frame skip). For evaluation metrics the
legend states the evaluation protocol. The plotted numbers are saved as JSON next to the PNG.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlmorning import envs as envs_mod
from rlmorning.errors import RlmError
from rlmorning.run import METRIC_ALIASES, MetricsCSV, check_run_dir, read_config
from rlmorning.viz.figure import grouped_figure, save_figure
from rlmorning.viz.kstep import plot_kstep_error
from rlmorning.viz.media import png_out

EVAL_METRICS = {"eval_return_mean", "eval_return_std", "eval_episodes", "heldout_q"}
NOT_GROUPING = {"seed", "device", "progress", "torch_threads"}
"""Config keys that do not separate groups (runs differing only in these are seeds of one setting)."""


@dataclass
class RunData:
    path: Path
    config: dict[str, Any]
    rows: list[dict[str, str]]

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    def numeric_columns(self) -> set[str]:
        cols: set[str] = set()
        for row in self.rows:
            for k, v in row.items():
                if k and v not in (None, "") and k not in ("step", "eval_protocol") and _is_float(v):
                    cols.add(k)
        return cols

    def series(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of the rows where ``column`` is set (the last value per step)."""
        by_step: dict[float, float] = {}
        for row in self.rows:
            v = row.get(column)
            if v not in (None, "") and _is_float(v) and _is_float(row.get("step")):
                by_step[float(row["step"])] = float(v)
        steps = np.array(sorted(by_step), dtype=np.float64)
        return steps, np.array([by_step[s] for s in steps], dtype=np.float64)

    def protocols(self) -> set[str]:
        return {r["eval_protocol"] for r in self.rows if r.get("eval_protocol")}


def _is_float(s: Any) -> bool:
    try:
        float(s)
    except (TypeError, ValueError):
        return False
    return True


def load_run(path: str | Path) -> RunData:
    """A run's config and metrics rows; one-line errors for missing dirs or metrics."""
    p = check_run_dir(path)
    config = read_config(p)
    csv_path = p / "metrics.csv"
    if not csv_path.is_file():
        raise RlmError(f"run '{path}' has no metrics.csv yet")
    return RunData(p, config, MetricsCSV.read(csv_path))


def group_key(config: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in NOT_GROUPING}, sort_keys=True, default=str)


def group_label(config: dict[str, Any], differing: list[str]) -> str:
    """Legend label of a group: env, agent and the config keys that differ between the plotted groups."""
    label = f"{envs_mod.resolve(str(config['env'])).display_name} {config['agent']}"
    if differing:
        label += " (" + ", ".join(f"{k}={config.get(k)}" for k in differing) + ")"
    return "\n".join(textwrap.wrap(label, 60))  # long labels wrap inside the figure


def frames_per_step(config: dict[str, Any]) -> int | None:
    """Emulator frames per agent step for Atari runs (frame skip, default 4); None otherwise."""
    try:
        info = envs_mod.resolve(str(config["env"]))
    except RlmError:
        return None
    if info.family != "atari":
        return None
    return int((config.get("env_kwargs") or {}).get("frame_skip", 4))


def plot_curves(runs: Sequence[str | Path], metric: str = "eval_return",
                out: str | Path | None = None) -> dict[str, Path]:
    """Plot ``metric`` of ``runs`` (seeds of one setting grouped into mean ± std); returns ``{"png", "json"}``.

    Default output: ``<first run>/plots/<metric>.png``.
    """
    if not runs:
        raise RlmError("plot needs at least one run directory")
    unique: dict[Path, str | Path] = {}
    for r in runs:  # a run named twice (overlapping globs) counts once
        unique.setdefault(Path(r).resolve(), r)
    data = [load_run(r) for r in unique.values()]
    column = METRIC_ALIASES.get(metric, metric)
    available = set.union(*(d.numeric_columns() for d in data))
    special = {"kstep_error"} if any(c.startswith("kstep_err_") for c in available) else set()
    if column not in available | special:
        names = sorted(available | special | {a for a, c in METRIC_ALIASES.items() if c in available})
        runs_shown = f"run '{data[0].path}'" if len(data) == 1 else f"the {len(data)} runs"
        if metric == "kstep_error":
            from rlmorning.viz.kstep import no_kstep_message

            raise RlmError(no_kstep_message(runs_shown))
        if column == METRIC_ALIASES["eval_return"]:
            raise RlmError(f"{runs_shown} logged no evaluation yet (eval_every: 0, or not reached); "
                           f"--metric can plot: {', '.join(names)}")
        raise RlmError(f"unknown metric '{metric}'. Available: {', '.join(names)}")
    needed = "kstep_err_1" if column in special else column
    missing = [str(d.path) for d in data if needed not in d.numeric_columns()]
    if missing:
        raise RlmError(f"metric '{column}' is not in the metrics.csv of: {', '.join(missing)}")
    name = f"{metric}.png" if len(data) == 1 else f"{metric}-{len(data)}-runs.png"  # never the one-run plot's file
    png = Path(out) if out is not None else data[0].path / "plots" / name
    png_out(png)

    groups: dict[str, list[RunData]] = {}
    for d in data:
        groups.setdefault(group_key(d.config), []).append(d)
    differing = differing_keys([members[0].config for members in groups.values()])
    if column in special:
        return plot_kstep_error(groups, differing, png, group_label)
    is_eval = column in EVAL_METRICS
    protocols = sorted(set.union(*(d.protocols() for d in data))) if is_eval else []

    fig, ax, colored = grouped_figure(groups, (9, 5.2))
    out_groups = []
    for color, members in colored:
        label = group_label(members[0].config, differing)
        seeds = [m.seed for m in members]
        per_run = {str(m.path): dict(zip(("step", "value"), (a.tolist() for a in m.series(column)), strict=True))
                   for m in members}
        steps, mean, std, suffix = group_series(members, column)
        label += suffix
        if is_eval and len(protocols) > 1:
            label += f"\n[{'; '.join(sorted(set.union(*(m.protocols() for m in members))))}]"
        ax.plot(steps, mean, color=color, lw=1.8, marker="o" if len(steps) < 40 else None, ms=3, label=label)
        if std is not None and len(steps):
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        if len(members) > 1:
            for m in members:
                s, v = m.series(column)
                ax.plot(s, v, color=color, lw=0.6, alpha=0.35)
        out_groups.append({
            "label": label, "runs": [str(m.path) for m in members], "seeds": seeds, "step": steps.tolist(),
            "mean": mean.tolist(), "std": None if std is None else std.tolist(), "per_run": per_run,
        })
    ax.set_xlabel("environment steps")
    ax.set_ylabel(metric if metric == column else f"{metric} ({column})")
    ax.grid(alpha=0.25)
    fps = {frames_per_step(d.config) for d in data}
    frame_factor = fps.pop() if len(fps) == 1 else None
    if frame_factor:
        sec = ax.secondary_xaxis("top", functions=(lambda s: s * frame_factor, lambda f: f / frame_factor))
        sec.set_xlabel(f"emulator frames (steps x {frame_factor})")
    title = None
    if is_eval and len(protocols) == 1:
        title = "\n".join(textwrap.wrap(f"eval protocol: {protocols[0]}", 80))
    ax.legend(fontsize=8, title=title, title_fontsize=7, loc="best")
    return save_figure(fig, png, {"metric": metric, "column": column, "eval_protocols": protocols,
                                  "frames_per_step": frame_factor, "groups": out_groups})


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Config keys whose values differ between ``configs`` (the keys that name groups apart)."""
    if len(configs) < 2:
        return []
    keys = sorted(set().union(*configs) - NOT_GROUPING)
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]


def group_series(members: list[RunData], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """``(steps, mean, std or None, label suffix)`` of ``column`` for the runs of one group: one run's own series
    (with its eval episodes' std for eval returns), or the mean ± std over several seeds."""
    if len(members) == 1:
        steps, mean = members[0].series(column)
        std, suffix = None, f", seed {members[0].seed}"
        if column == "eval_return_mean":
            _, ep_std = members[0].series("eval_return_std")
            if len(ep_std) == len(mean):
                std, suffix = ep_std, suffix + " (± std over eval episodes)"
        return steps, mean, std, suffix
    steps, mean, std = mean_std([m.series(column) for m in members])
    return steps, mean, std, f", {len(members)} seeds ({', '.join(str(m.seed) for m in members)}): mean ± std"


def mean_std(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std over runs, on the first run's steps inside the range every run covers."""
    nonempty = [(s, v) for s, v in series if len(s)]
    if not nonempty:
        return np.array([]), np.array([]), np.array([])
    lo = max(s[0] for s, _ in nonempty)
    hi = min(s[-1] for s, _ in nonempty)
    grid = nonempty[0][0]
    grid = grid[(grid >= lo) & (grid <= hi)]
    stacked = np.stack([np.interp(grid, s, v) for s, v in nonempty])
    return grid, stacked.mean(axis=0), stacked.std(axis=0)
