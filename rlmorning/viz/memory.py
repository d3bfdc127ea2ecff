"""See the memory: one episode's inputs, outputs and NTM read/write weightings over time (the NTM
paper's Figures 6-8), for runs whose agent has an NTM core (``ntm``, or ``a2c`` with ``core=ntm``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlmorning.agents.capabilities import HasMemory
from rlmorning.config import check_seed
from rlmorning.errors import RlmError
from rlmorning.viz.media import png_out


def _as_row(x: Any, space: gym.Space) -> np.ndarray:
    """An observation or action as a flat float row for display (one-hot for discrete parts)."""
    if isinstance(space, gym.spaces.Discrete):
        row = np.zeros(int(space.n), np.float32)
        row[int(x) - int(space.start)] = 1.0
        return row
    if isinstance(space, gym.spaces.Tuple):
        return np.concatenate([_as_row(p, s) for p, s in zip(x, space.spaces, strict=True)])
    return np.asarray(x, np.float32).ravel()


def record_episode(agent: Any, env: gym.Env, options: dict[str, Any] | None = None,
                   seed: int = 0) -> dict[str, Any]:
    """Play one greedy episode; returns per-step ``inputs``, ``outputs`` (NTM tasks: scored steps only),
    ``targets`` (NTM tasks; else None), ``read_w [T, R, N]``, ``write_w [T, W, N]``, ``return`` and
    ``bit_errors`` (NTM tasks)."""
    obs, _ = env.reset(seed=seed, options=options)
    state = agent.initial_state(1)
    rec: dict[str, list] = {"inputs": [], "outputs": [], "targets": [], "read_w": [], "write_w": []}
    total, bit_errors, done = 0.0, None, False
    while not done:
        actions, state = agent.act(np.asarray(obs)[None], state, explore=False)
        a = tuple(part[0] for part in actions) if isinstance(actions, tuple) else actions[0]
        rec["inputs"].append(_as_row(obs, env.observation_space))
        rec["outputs"].append(_as_row(a, env.action_space))
        rec["read_w"].append(state["read_w"][0].detach().cpu().numpy())
        rec["write_w"].append(state["write_w"][0].detach().cpu().numpy())
        obs, r, terminated, truncated, info = env.step(a)
        total += float(r)
        done = bool(terminated or truncated)
        target = info.get("target")
        if isinstance(target, np.ndarray) and "output_mask" in info:
            rec["targets"].append(target * int(info["output_mask"]))
            rec["outputs"][-1] = rec["outputs"][-1] * int(info["output_mask"])  # unscored outputs: blank
            bit_errors = int(info.get("seq_bit_errors", 0))
    out: dict[str, Any] = {k: np.stack(v) for k, v in rec.items() if v}
    out.setdefault("targets", None)
    out["return"], out["bit_errors"] = total, bit_errors
    return out


def episode_options(env: gym.Env, length: int | None) -> dict[str, Any] | None:
    """Reset options that ask ``env`` for an episode of (about) ``length``."""
    if length is None:
        return None
    if length < 1:
        raise RlmError(f"--length must be >= 1, got {length}")
    from rlmorning.envs.algorithmic import AlgorithmicEnv
    from rlmorning.envs.algorithmic.ntm_tasks import NTMTaskEnv

    base = env.unwrapped
    if isinstance(base, NTMTaskEnv):
        return {"length": length}
    if isinstance(base, AlgorithmicEnv):
        return {"min_length": length}  # gym's curriculum level: inputs of length..length+2
    raise RlmError("--length works for the NTM tasks and the algorithmic envs only")


def _focus_rows(w: np.ndarray, margin: int = 2, threshold: float = 0.01) -> slice:
    """Memory slots worth showing: those ever weighted above ``threshold``, plus a margin."""
    used = np.flatnonzero(w.max(axis=0) > threshold)
    if len(used) == 0:
        return slice(0, w.shape[1])
    return slice(max(0, int(used.min()) - margin), min(w.shape[1], int(used.max()) + margin + 1))


def plot_episode(rec: dict[str, Any], path: Path, title: str) -> Path:
    """Write the episode's panels to ``path`` (PNG): inputs, targets, outputs, write and read weightings."""
    from matplotlib.figure import Figure

    gray = "gray_r"
    panels: list[tuple[str, np.ndarray, str, int]] = [("inputs", rec["inputs"].T, gray, 0)]
    if rec.get("targets") is not None:
        panels.append(("targets", rec["targets"].T, gray, 0))
    panels.append(("outputs", rec["outputs"].T, gray, 0))
    for kind in ("write", "read"):
        w = rec[f"{kind}_w"]  # [T, H, N]
        for h in range(w.shape[1]):
            rows = _focus_rows(w[:, h])
            label = f"{kind} weighting" + (f" (head {h})" if w.shape[1] > 1 else "") + "\nmemory slot"
            panels.append((label, w[:, h, rows].T, "viridis", rows.start))
    heights = [max(1.0, min(4.0, p[1].shape[0] / 8)) for p in panels]
    fig = Figure(figsize=(max(6.0, rec["inputs"].shape[0] / 6), sum(heights) + 1.2))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, gridspec_kw={"height_ratios": heights}))
    for ax, (label, data, cmap, offset) in zip(axes, panels, strict=True):
        extent = (-0.5, data.shape[1] - 0.5, offset + data.shape[0] - 0.5, offset - 0.5)
        vmax = max(1.0, float(np.max(data))) if cmap == gray else None
        ax.imshow(data, aspect="auto", interpolation="nearest", cmap=cmap, extent=extent, vmin=0.0, vmax=vmax)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("time step")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_memory(run: str | Path, checkpoint: str = "latest", length: int | None = None,
                out: str | Path | None = None, seed: int = 0, device: str = "cpu") -> Path:
    """Play one greedy episode with a run's agent and plot its memory use; returns the PNG's path.

    Default path: ``RUN/plots/memory-<checkpoint>-L<length>-s<seed>.png``.
    """
    from rlmorning import api
    from rlmorning import envs as envs_mod

    check_seed("--seed", seed)
    path = png_out(Path(out)) if out is not None else None  # before the episode is played
    agent, cfg = api.load_policy(run, checkpoint, device)
    if not (isinstance(agent, HasMemory) and agent.has_memory):
        what = f"agent '{cfg.agent}'" + (f" with core={agent.core_name}" if isinstance(agent, HasMemory) else "")
        raise RlmError(f"plot-memory needs a run with an NTM memory core (agent ntm, or a2c with core=ntm); "
                       f"'{run}' has {what}")
    info = envs_mod.resolve(cfg.env)
    env = envs_mod.make_eval(info, seed, **dict(cfg.trainer.env_kwargs))
    try:
        rec = record_episode(agent, env, episode_options(env, length), seed)
    finally:
        env.close()
    steps = rec["inputs"].shape[0]
    tag = Path(checkpoint).stem if checkpoint not in ("best", "latest") else checkpoint
    if path is None:
        path = png_out(Path(run) / "plots" / f"memory-{tag}{f'-L{length}' if length is not None else ''}-s{seed}.png")
    errors = f", bit errors {rec['bit_errors']}" if rec["bit_errors"] is not None else ""
    title = f"{cfg.env} ({cfg.agent}, {tag}): {steps} steps, return {rec['return']:.1f}{errors}"
    try:
        return plot_episode(rec, path, title)
    except OSError as exc:
        raise RlmError(f"cannot write '{path}': {exc.strerror or exc}") from None
