"""Looking at the skills of a skills run: state-space coverage per skill (``plot-skills``) and one skill's
videos (``record --skill``).

Each skill plays ``episodes`` greedy episodes on the run's evaluation envs (the same env seeds for every
skill). The visited states are drawn as one colour per skill: MountainCar's position x velocity, the two
entries of any 2-D observation, a PCA of longer observations (or their first two entries), and for image
observations a PCA of the discriminator trunk's features, the space in which it tells skills apart, beside each
skill's mean frame (where on the screen it spends its time). How distinct the skills' coverage is, is one
number: the mean total variation distance between the skills' histograms of the plotted points (0: the same
states, 1: disjoint).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmorning import envs as envs_mod
from rlmorning.errors import RlmError
from rlmorning.viz.media import png_out
from rlmorning.viz.source import PolicySource

PROJECTIONS = ("auto", "dims", "pca")


def require_skills(agent: Any, source: str) -> Any:
    """``agent`` if it is a skills agent, else one RlmError line."""
    from rlmorning.agents.skills import SkillsAgent

    if not isinstance(agent, SkillsAgent):
        raise RlmError(f"'{source}' is not a skills run (train one with `rlmorning train skills`)")
    return agent


def select_skill(src: PolicySource, skill: int) -> PolicySource:
    """``src`` playing skill ``skill`` in every episode; the skill shows in the title and the sidecar."""
    agent = require_skills(src.agent, src.source)
    agent.set_skill(skill)
    return dataclasses.replace(src, agent_name=f"{src.agent_name} skill {skill}")


@dataclasses.dataclass
class SkillRollouts:
    """Per skill: the visited observations ``[N_k, *obs_shape]`` and the episodes' returns."""

    obs: list[np.ndarray]
    returns: list[list[float]]


def rollout_skills(agent: Any, env: str, episodes: int, seed: int, *, epsilon: float = 0.0,
                   max_steps: int = 1000, env_kwargs: dict | None = None) -> SkillRollouts:
    """Play ``episodes`` episodes of every skill (env seeds ``seed + i``; random actions with probability
    ``epsilon`` from ``numpy.random.default_rng(seed)``), at most ``max_steps`` steps each; every state visited,
    the first and the last included, is kept."""
    info = envs_mod.resolve(env)
    rng = np.random.default_rng(seed)
    all_obs: list[np.ndarray] = []
    all_returns: list[list[float]] = []
    before = agent.fixed_skill
    try:
        for k in range(agent.num_skills):
            agent.set_skill(k)
            envs = [envs_mod.make_eval(info, seed + i, **dict(env_kwargs or {})) for i in range(episodes)]
            try:
                obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
                seen = [np.asarray(o) for o in obs]
                returns = np.zeros(episodes)
                active = np.ones(episodes, bool)
                state = agent.initial_state(episodes)
                for _ in range(max_steps):
                    if not active.any():
                        break
                    actions, state = agent.act(np.stack(obs), state, explore=False)
                    for i in np.flatnonzero(active):
                        a = int(actions[i])
                        if epsilon > 0 and rng.random() < epsilon:
                            a = int(rng.integers(agent.num_actions))
                        obs[i], r, terminated, truncated, _ = envs[i].step(a)
                        returns[i] += float(r)
                        seen.append(np.asarray(obs[i]))
                        active[i] = not (terminated or truncated)
            finally:
                for e in envs:
                    e.close()
            all_obs.append(np.stack(seen))
            all_returns.append(returns.tolist())
    finally:
        agent.fixed_skill = before
    return SkillRollouts(all_obs, all_returns)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of the rows of ``x`` ``[N, D]`` and their explained variance ratios."""
    x = x.astype(np.float64).reshape(len(x), -1)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = np.zeros((2, x.shape[1]))
    comps[: min(2, len(vt))] = vt[:2]
    var = s**2
    ratio = np.zeros(2)
    ratio[: min(2, len(var))] = (var[:2] / var.sum()) if var.sum() > 0 else 0.0
    return centred @ comps.T, ratio


def mean_frames(obs: list[np.ndarray]) -> list[np.ndarray]:
    """Each skill's mean frame as an RGB image ``[H, W, 3]`` in [0, 1], from its observations ``[N_k, C, H, W]``.

    Binary object channels (MinAtar: every value 0 or 1) get a colour each; each channel is scaled by its
    largest mean over all skills, so a small object (a paddle, a player) shows where each skill keeps it as
    clearly as the bricks. Other frames (Atari's stacked grey frames) show the newest channel in grey."""
    import matplotlib

    colours = np.asarray(matplotlib.colormaps["tab10"].colors)
    means = np.stack([o.astype(np.float64).mean(axis=0) if len(o) else np.zeros(o.shape[1:]) for o in obs])
    if all(o.size == 0 or float(o.max()) <= 1.0 for o in obs):
        peak = means.max(axis=(0, 2, 3), keepdims=True)
        scaled = means / np.where(peak > 0, peak, 1.0)  # [K, C, H, W]
        rgb = np.einsum("kchw,ci->khwi", scaled, colours[np.arange(means.shape[1]) % len(colours)])
        return list(np.clip(rgb, 0.0, 1.0))
    grey = means[:, -1] / max(float(means[:, -1].max()), 1e-12)
    return list(np.repeat(grey[..., None], 3, axis=3))


def coverage_distinctness(pts: np.ndarray, labels: np.ndarray, num_skills: int, bins: int = 20) -> float:
    """How distinct the skills' coverage is: the mean total variation distance, over pairs of skills, between
    their histograms of visited states on the plotted 2-D points (``bins`` x ``bins`` over the common range).
    0 when every skill visits the same states, 1 when no two skills share a bin."""
    span = [(float(a), float(b) if b > a else float(a) + 1.0)
            for a, b in zip(pts.min(axis=0), pts.max(axis=0), strict=True)]
    hists = [np.histogram2d(pts[labels == k, 0], pts[labels == k, 1], bins=bins, range=span)[0].ravel()
             for k in range(num_skills)]
    p = [h / h.sum() for h in hists if h.sum() > 0]
    pairs = [(i, j) for i in range(len(p)) for j in range(i + 1, len(p))]
    return float(np.mean([0.5 * np.abs(p[i] - p[j]).sum() for i, j in pairs])) if pairs else 0.0


def shuffled_distinctness(pts: np.ndarray, labels: np.ndarray, num_skills: int, seed: int, repeats: int = 5) -> float:
    """:func:`coverage_distinctness` with the skill labels shuffled (mean of ``repeats`` seeded permutations):
    what finite samples of one shared distribution score, the baseline to compare against."""
    rng = np.random.default_rng(seed)
    return float(np.mean([coverage_distinctness(pts, rng.permutation(labels), num_skills) for _ in range(repeats)]))


def _features(agent: Any, obs: np.ndarray, batch: int = 512) -> np.ndarray:
    """The discriminator trunk's features of image observations."""
    trunk = agent.discriminator.trunk
    trunk.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(obs), batch):
            out.append(trunk(torch.as_tensor(obs[i : i + batch], device=agent.device)).float().cpu().numpy())
    return np.concatenate(out)


def project(agent: Any, env_id: str, obs: np.ndarray, projection: str) -> tuple[np.ndarray, list[str], str]:
    """2-D points for observations ``[N, ...]``, axis labels and a description of the projection."""
    if projection not in PROJECTIONS:
        raise RlmError(f"unknown --projection '{projection}'. Valid: {', '.join(PROJECTIONS)}")
    if obs.ndim > 2:
        if projection == "dims":
            raise RlmError("--projection dims is for vector observations; image observations use pca")
        pts, ratio = pca_2d(_features(agent, obs))
        return pts, [f"PC{i + 1} ({ratio[i]:.0%})" for i in range(2)], "PCA of the discriminator trunk's features"
    flat = obs.reshape(len(obs), -1).astype(np.float64)
    dims = flat.shape[1]
    if dims == 1:
        return flat[:, [0, 0]], ["obs[0]", "obs[0]"], "the observation's only entry"
    if projection == "dims" or (projection == "auto" and dims == 2):
        labels = ["position", "velocity"] if "MountainCar" in env_id else ["obs[0]", "obs[1]"]
        return flat[:, :2], labels, "the observation's first two entries"
    pts, ratio = pca_2d(flat)
    return pts, [f"PC{i + 1} ({ratio[i]:.0%})" for i in range(2)], "PCA of the observations"


def plot_skills(run: str | Path, *, out: str | Path | None = None, checkpoint: str = "latest", episodes: int = 3,
                seed: int = 12_345, projection: str = "auto", epsilon: float = 0.0, max_steps: int = 1000,
                device: str = "cpu") -> dict[str, Any]:
    """Draw the states each skill visits; returns ``{"png", "json", "accuracy", "returns"}``.

    ``accuracy``: how often the discriminator names the skill that visited a state (categorical codes; None
    for gaussian codes), against chance ``1/K``. Default output ``<run>/plots/skills-<checkpoint>.png``.
    """
    from rlmorning.api import load_policy
    from rlmorning.config import check_probability, check_seed
    from rlmorning.run import checkpoint_step, find_checkpoint, read_config

    check_seed("--seed", seed)
    check_probability("--epsilon", epsilon)
    for name, value in (("--episodes", episodes), ("--max-steps", max_steps)):
        if value < 1:
            raise RlmError(f"{name} must be >= 1, got {value}")
    if projection not in PROJECTIONS:
        raise RlmError(f"unknown --projection '{projection}'. Valid: {', '.join(PROJECTIONS)}")
    run = Path(run)
    if read_config(run)["agent"] != "skills":
        raise RlmError(f"'{run}' is not a skills run (train one with `rlmorning train skills`)")
    ckpt = find_checkpoint(run, checkpoint)
    png = Path(out) if out is not None else run / "plots" / f"skills-{ckpt.stem}.png"
    png_out(png)
    agent, cfg = load_policy(run, str(ckpt), device)
    require_skills(agent, str(run))
    t = cfg.trainer
    rolls = rollout_skills(agent, cfg.env, episodes, seed, epsilon=epsilon, max_steps=max_steps,
                           env_kwargs=t.env_kwargs)
    counts = [len(o) for o in rolls.obs]
    stacked = np.concatenate(rolls.obs)
    labels = np.repeat(np.arange(agent.num_skills), counts)
    pts, axes, how = project(agent, envs_mod.resolve(cfg.env).id, stacked, projection)
    distinct = coverage_distinctness(pts, labels, agent.num_skills)
    shuffled = shuffled_distinctness(pts, labels, agent.num_skills, seed)
    accuracy = None
    if agent.config.code == "categorical":
        accuracy = float((agent.discriminate(stacked)[:, 0] == labels).mean())
    step = checkpoint_step(ckpt)
    _draw(png, pts, labels, rolls.returns, axes,
          title=f"{cfg.env} | skills ({agent.num_skills}, {agent.config.code}) | {ckpt.name}"
                + (f" @ {step:,} steps" if step is not None else ""),
          subtitle=f"{how}; {episodes} greedy episode(s) per skill\ncoverage distinctness {distinct:.2f} "
                   f"(skills shuffled: {shuffled:.2f})"
                   + (f", discriminator accuracy {accuracy:.2f} (chance {1 / agent.num_skills:.2f})"
                      if accuracy is not None else ""),
          frames=mean_frames(rolls.obs) if stacked.ndim > 2 else None)
    js = png.with_suffix(".json")
    js.write_text(json.dumps({
        "run": str(run), "checkpoint": str(ckpt), "checkpoint_step": step, "env": cfg.env,
        "num_skills": agent.num_skills, "code": agent.config.code, "projection": how, "axes": axes,
        "episodes_per_skill": episodes, "seed": seed, "epsilon": epsilon, "discriminator_accuracy": accuracy,
        "chance": 1 / agent.num_skills, "coverage_distinctness": distinct,
        "coverage_distinctness_shuffled": shuffled,
        "skills": [{"skill": k, "returns": rolls.returns[k], "states": counts[k],
                    "points": np.round(pts[labels == k], 5).tolist()} for k in range(agent.num_skills)],
    }, separators=(",", ":")))
    return {"png": png, "json": js, "accuracy": accuracy, "returns": rolls.returns, "distinctness": distinct,
            "distinctness_shuffled": shuffled}


def _draw(png: Path, pts: np.ndarray, labels: np.ndarray, returns: list[list[float]], axes: list[str], title: str,
          subtitle: str, frames: list[np.ndarray] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(returns)
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    if frames is None:
        fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
    else:  # the scatter on the left, each skill's mean frame in a grid on the right
        cols = int(np.ceil(np.sqrt(k)))
        rows = int(np.ceil(k / cols))
        fig = plt.figure(figsize=(8 + 2 * cols, 6), dpi=100)
        grid = fig.add_gridspec(rows, 1 + cols, width_ratios=[4] + [1] * cols)
        ax = fig.add_subplot(grid[:, 0])
        for s, frame in enumerate(frames):
            sub = fig.add_subplot(grid[s // cols, 1 + s % cols])
            sub.imshow(frame, interpolation="nearest")
            sub.set_title(f"skill {s}", fontsize=8, color=cmap(s % cmap.N))
            sub.set_xticks([])
            sub.set_yticks([])
    for s in range(k):
        sel = labels == s
        ax.scatter(pts[sel, 0], pts[sel, 1], s=6, alpha=0.5, color=cmap(s % cmap.N), linewidths=0,
                   label=f"skill {s}: return {np.mean(returns[s]):.1f}")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"{title}\n{subtitle}", fontsize=9)
    ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
