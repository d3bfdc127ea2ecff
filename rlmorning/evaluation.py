"""Greedy evaluation on separate envs, and the held-out states of the DQN paper's Fig. 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rlmorning.agents.base import Agent


def evaluate(
    agent: Agent,
    make_env: Callable[[int], gym.Env],
    episodes: int,
    epsilon: float,
    seed: int,
) -> np.ndarray:
    """Run ``episodes`` full episodes (one env each, stepped together so the agent acts in batches).

    ``make_env(i)`` builds the i-th evaluation env. With probability ``epsilon`` a uniformly random
    action replaces the agent's greedy one. Returns the undiscounted episode returns ``float [episodes]``.
    """
    envs = [make_env(i) for i in range(episodes)]
    rng = np.random.default_rng(seed)
    obs = []
    for i, env in enumerate(envs):
        o, _ = env.reset(seed=seed + i)
        env.action_space.seed(seed + i)  # the epsilon-random actions are reproducible too
        obs.append(o)
    returns = np.zeros(episodes)
    active = np.ones(episodes, dtype=bool)
    state = agent.initial_state(episodes)
    try:
        while active.any():
            idx = np.flatnonzero(active)
            batch = np.stack([obs[i] for i in idx])
            actions, sub_state = agent.act(batch, _select(state, idx), explore=False)
            state = _scatter(state, sub_state, idx)
            for j, i in enumerate(idx):
                a = tuple(part[j] for part in actions) if isinstance(actions, tuple) else actions[j]
                if epsilon > 0 and rng.random() < epsilon:
                    a = envs[i].action_space.sample()
                o, r, terminated, truncated, _ = envs[i].step(a)
                returns[i] += float(r)
                obs[i] = o
                if terminated or truncated:
                    active[i] = False
    finally:
        for env in envs:
            env.close()
    return returns


def _select(state: object, idx: np.ndarray) -> object:
    """Rows ``idx`` of a recurrent state (tensors/arrays, or tuples/dicts of them); None stays None."""
    if state is None:
        return None
    if isinstance(state, tuple | list):
        return type(state)(_select(s, idx) for s in state)
    if isinstance(state, dict):
        return {k: _select(v, idx) for k, v in state.items()}
    return state[idx]


def _scatter(state: object, sub: object, idx: np.ndarray) -> object:
    if state is None:
        return None
    if isinstance(state, tuple | list):
        return type(state)(_scatter(s, u, idx) for s, u in zip(state, sub, strict=True))
    if isinstance(state, dict):
        return {k: _scatter(state[k], sub[k], idx) for k in state}
    state[idx] = sub
    return state


def gather_heldout_states(env: gym.vector.VectorEnv, count: int, seed: int) -> np.ndarray:
    """Observations visited by a uniformly random policy (the DQN paper's held-out set)."""
    rng = np.random.default_rng(seed)
    space = env.action_space  # batched: works for Discrete, Tuple, MultiBinary ... alike
    space.seed(int(rng.integers(2**31)))
    obs, _ = env.reset(seed=seed)
    states = []
    for _ in range(count):
        states.append(obs[0].copy())
        obs, *_ = env.step(space.sample())
    return np.stack(states)


def heldout_mean_max_q(agent: Agent, states: np.ndarray, batch: int = 256) -> float | None:
    """Mean over ``states`` of max_a Q(s, a), or None for agents without Q-values."""
    values = []
    for start in range(0, len(states), batch):
        q = agent.q_values(states[start : start + batch])
        if q is None:
            return None
        values.append(q.max(dim=1).values.float().cpu().numpy())
    return float(np.concatenate(values).mean())


def heldout_dead_units(agent: Agent, states: np.ndarray, batch: int = 256) -> tuple[float, int] | None:
    """(fraction, count) of the Q-network's feature units that are zero on every one of ``states`` (see
    ``dead_unit_fraction``), or None for agents without a ``features`` method."""
    features = getattr(agent, "features", None)
    if features is None or len(states) == 0:
        return None
    alive = None
    for start in range(0, len(states), batch):
        active = (features(states[start : start + batch]) > 0).any(dim=0)
        alive = active if alive is None else alive | active
    assert alive is not None
    return float((~alive).float().mean()), int(alive.numel())


def heldout_feature_inputs(agent: Agent, states: np.ndarray, batch: int = 256) -> tuple[float, float] | None:
    """``(cosine, norm)`` of what the Q-network's feature layer reads (``feature_inputs``: a conv encoder's
    flattened features) on ``states``: the mean cosine similarity over all pairs of distinct states, and the
    mean L2 norm; None for agents without ``feature_inputs`` or fewer than two states. A cosine near 1 means
    the layer sees almost the same input on every state: each of its ReLU units is then on for all states or
    off for all, and a unit off for all is dead (``heldout_dead_units``)."""
    inputs = getattr(agent, "feature_inputs", None)
    if inputs is None or len(states) < 2:
        return None
    total, norms = None, 0.0
    for start in range(0, len(states), batch):
        x = inputs(states[start : start + batch]).double()
        norms += float(x.norm(dim=1).sum())
        unit = torch.nn.functional.normalize(x, dim=1)
        total = unit.sum(0) if total is None else total + unit.sum(0)
    assert total is not None
    n = len(states)
    return float((total.square().sum() - n) / (n * (n - 1))), norms / n


def save_states(path: Path, states: np.ndarray) -> None:
    np.savez_compressed(path, states=states)


def load_states(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        return data["states"]
